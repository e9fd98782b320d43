//! Fuzz target `stream`: the streaming substitution engine against a
//! whole-buffer oracle.
//!
//! A case is a pattern list, a keep-or-replace action per pattern, a body
//! and a list of chunk lengths. The oracle, written here without the
//! crate's automaton, scans the whole body leftmost-longest and
//! non-overlapping: at the first position where some pattern starts, the
//! longest pattern there (the first listed among equal ones) is a match,
//! its bytes are never scanned again, and scanning resumes after it.
//!
//! Properties checked (see docs/FUZZING.md):
//! - `Patterns::new` refuses exactly the lists with an empty pattern, naming
//!   the first one;
//! - `replace_all` gives the oracle's output and `decide` calls;
//! - `Stream` fed the body in the given chunks gives the same output, the
//!   same `decide` calls in the same order, and the same replacement count;
//! - after every push: fewer than `max_len` bytes are held (none when there
//!   is no pattern), the held bytes are a proper prefix of some pattern and
//!   end the data seen, the output so far is a prefix of the final output,
//!   and when nothing is held the output so far is exactly the oracle's
//!   output for the data seen (nothing is delayed needlessly);
//! - no empty piece is ever emitted; `finish` leaves nothing held.

#![no_main]

use std::sync::Arc;

use arbitrary::Arbitrary;
use bytes::Bytes;
use keyhole::substitute::stream::Stream;
use keyhole::substitute::stream::{replace_all, Decide, Patterns, StreamError};
use libfuzzer_sys::fuzz_target;

const MAX_PATTERNS: usize = 10;
const MAX_PATTERN_LEN: usize = 24;
const MAX_BODY: usize = 4096;
const MAX_CHUNKS: usize = 96;

#[derive(Debug, Arbitrary)]
struct Case {
    /// Map every byte to `a`, `b` or `c`, so that matches are dense and
    /// patterns share prefixes (most cases), or keep bytes as they are.
    small_alphabet: bool,
    patterns: Vec<Vec<u8>>,
    /// Per pattern (cycled): `None` keeps the match, `Some` replaces it.
    actions: Vec<Option<Vec<u8>>>,
    /// Chunk lengths, cycled; a 0 pushes an empty chunk.
    chunks: Vec<u8>,
    body: Vec<u8>,
}

fn squash(bytes: &[u8], small: bool, max: usize) -> Vec<u8> {
    bytes
        .iter()
        .take(max)
        .map(|&b| if small { b'a' + b % 3 } else { b })
        .collect()
}

/// Records every call and answers from the fixed actions.
struct Recorder<'a> {
    actions: &'a [Option<Bytes>],
    calls: Vec<usize>,
    replaced: usize,
}

impl Decide for Recorder<'_> {
    fn decide(&mut self, pattern: usize) -> Option<Bytes> {
        self.calls.push(pattern);
        let answer = if self.actions.is_empty() {
            None
        } else {
            self.actions[pattern % self.actions.len()].clone()
        };
        if answer.is_some() {
            self.replaced += 1;
        }
        answer
    }
}

/// The oracle: leftmost-longest, non-overlapping, kept matches not
/// rescanned.
fn oracle(patterns: &[Vec<u8>], body: &[u8], decide: &mut impl Decide) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len());
    let mut at = 0;
    while at < body.len() {
        let rest = &body[at..];
        let mut best: Option<(usize, usize)> = None; // (index, len)
        for (i, p) in patterns.iter().enumerate() {
            if rest.starts_with(p) && best.is_none_or(|(_, len)| p.len() > len) {
                best = Some((i, p.len()));
            }
        }
        match best {
            Some((i, len)) => {
                match decide.decide(i) {
                    Some(replacement) => out.extend_from_slice(&replacement),
                    None => out.extend_from_slice(&rest[..len]),
                }
                at += len;
            }
            None => {
                out.push(body[at]);
                at += 1;
            }
        }
    }
    out
}

fn concat(out: &[Bytes]) -> Vec<u8> {
    out.iter().flat_map(|b| b.iter().copied()).collect()
}

fuzz_target!(|case: Case| {
    let small = case.small_alphabet;
    let list: Vec<Vec<u8>> = case
        .patterns
        .iter()
        .take(MAX_PATTERNS)
        .map(|p| squash(p, small, MAX_PATTERN_LEN))
        .collect();
    let actions: Vec<Option<Bytes>> = case
        .actions
        .iter()
        .take(MAX_PATTERNS)
        .map(|a| a.as_ref().map(|r| Bytes::from(squash(r, small, 8))))
        .collect();
    let body = squash(&case.body, small, MAX_BODY);

    let patterns = match Patterns::new(&list) {
        Ok(p) => Arc::new(p),
        Err(StreamError::EmptyPattern { index }) => {
            let first = list.iter().position(Vec::is_empty);
            assert_eq!(first, Some(index), "wrong index for the empty pattern");
            return;
        }
        Err(e) => panic!("patterns refused: {e}"),
    };
    assert!(
        list.iter().all(|p| !p.is_empty()),
        "an empty pattern was accepted"
    );
    let max_len = list.iter().map(Vec::len).max().unwrap_or(0);
    assert_eq!(patterns.max_len(), max_len);
    assert_eq!(patterns.len(), list.len());
    assert_eq!(patterns.is_empty(), list.is_empty());

    let mut reference = Recorder {
        actions: &actions,
        calls: Vec::new(),
        replaced: 0,
    };
    let expected = oracle(&list, &body, &mut reference);

    let mut whole = Recorder {
        actions: &actions,
        calls: Vec::new(),
        replaced: 0,
    };
    let got = replace_all(&patterns, &body, &mut whole);
    assert!(got == expected, "replace_all differs from the oracle");
    assert_eq!(
        whole.calls, reference.calls,
        "replace_all decide calls differ"
    );

    // The stream, chunk by chunk.
    let body = Bytes::from(body);
    let mut stream = Stream::new(Arc::clone(&patterns));
    let mut decide = Recorder {
        actions: &actions,
        calls: Vec::new(),
        replaced: 0,
    };
    let mut out: Vec<Bytes> = Vec::new();
    let mut replaced = 0;
    let mut at = 0;
    let mut lengths = case.chunks.iter().cycle();
    let mut pushes = 0;
    while at < body.len() {
        let len = if case.chunks.is_empty() || pushes + 1 >= MAX_CHUNKS {
            body.len() - at
        } else {
            usize::from(*lengths.next().unwrap_or(&0)).min(body.len() - at)
        };
        pushes += 1;
        let chunk = body.slice(at..at + len);
        at += len;
        replaced += stream.push(chunk, &mut decide, &mut out);
        let held = stream.held();
        assert!(
            held < max_len.max(1),
            "held {held} bytes, longest pattern {max_len}"
        );
        let seen = &body[..at];
        if held > 0 {
            let tail = &seen[seen.len() - held..];
            assert!(
                list.iter().any(|p| p.len() > held && p.starts_with(tail)),
                "held bytes are not a proper prefix of any pattern"
            );
        }
        assert!(
            out.iter().all(|b| !b.is_empty()),
            "an empty piece was emitted"
        );
        let so_far = concat(&out);
        assert!(
            expected.starts_with(&so_far),
            "output so far is not a prefix"
        );
        if held == 0 {
            let mut prefix = Recorder {
                actions: &actions,
                calls: Vec::new(),
                replaced: 0,
            };
            let due = oracle(&list, seen, &mut prefix);
            assert!(so_far == due, "nothing is held, yet output is delayed");
            assert_eq!(decide.calls, prefix.calls);
        }
    }
    replaced += stream.finish(&mut decide, &mut out);
    assert_eq!(stream.held(), 0);
    assert!(
        out.iter().all(|b| !b.is_empty()),
        "an empty piece was emitted"
    );
    assert!(
        concat(&out) == expected,
        "stream output differs from the oracle"
    );
    assert_eq!(decide.calls, reference.calls, "stream decide calls differ");
    assert_eq!(replaced, reference.replaced, "replacement count differs");
    // finish on an empty stream does nothing.
    assert_eq!(stream.finish(&mut decide, &mut out), 0);
});
