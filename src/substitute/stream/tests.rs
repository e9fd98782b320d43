//! Compiled only under #[cfg(test)], from the parent module.
//! Unit tests of the streaming engine, and the property that every chunking
//! of a body gives what [`replace_all`] gives on the whole body.

use std::ops::Range;

use proptest::prelude::*;

use super::*;

/// Replaces pattern `i` by `replacements[i]`, or keeps it when `None`;
/// records every call.
struct Script {
    replacements: Vec<Option<Bytes>>,
    calls: Vec<usize>,
}

impl Script {
    fn new(replacements: Vec<Option<&'static [u8]>>) -> Script {
        Script {
            replacements: replacements
                .into_iter()
                .map(|r| r.map(Bytes::from_static))
                .collect(),
            calls: Vec::new(),
        }
    }
}

impl Decide for Script {
    fn decide(&mut self, pattern: usize) -> Option<Bytes> {
        self.calls.push(pattern);
        self.replacements.get(pattern).cloned().flatten()
    }
}

fn patterns(list: &[&str]) -> Arc<Patterns> {
    match Patterns::new(list) {
        Ok(p) => Arc::new(p),
        Err(e) => panic!("patterns: {e}"),
    }
}

fn concat(out: &[Bytes]) -> Vec<u8> {
    out.iter().flat_map(|b| b.iter().copied()).collect()
}

/// Feeds `chunks` and finishes; returns the output, its pieces, and the
/// number of replacements reported.
fn run(patterns: &Arc<Patterns>, chunks: &[&str], decide: &mut Script) -> (Vec<u8>, usize) {
    let mut stream = Stream::new(Arc::clone(patterns));
    let mut out = Vec::new();
    let mut replaced = 0;
    for chunk in chunks {
        replaced += stream.push(Bytes::copy_from_slice(chunk.as_bytes()), decide, &mut out);
        assert!(stream.held() < patterns.max_len().max(1));
    }
    replaced += stream.finish(decide, &mut out);
    assert_eq!(stream.held(), 0);
    assert!(
        out.iter().all(|b| !b.is_empty()),
        "an empty piece was emitted"
    );
    (concat(&out), replaced)
}

#[test]
fn empty_patterns_pass_through() {
    let patterns = patterns(&[]);
    assert!(patterns.is_empty());
    assert_eq!((patterns.len(), patterns.max_len()), (0, 0));
    let mut stream = Stream::new(Arc::clone(&patterns));
    let mut out = Vec::new();
    let mut decide = |_: usize| -> Option<Bytes> { panic!("no pattern can match") };
    for text in ["abc", "", "kh_ph_"] {
        let chunk = Bytes::copy_from_slice(text.as_bytes());
        out.clear();
        assert_eq!(stream.push(chunk.clone(), &mut decide, &mut out), 0);
        assert_eq!(stream.held(), 0);
        if text.is_empty() {
            assert!(out.is_empty());
        } else {
            assert_eq!(out.len(), 1);
            assert_eq!(out[0].as_ptr(), chunk.as_ptr());
            assert_eq!(out[0], chunk);
        }
    }
    out.clear();
    assert_eq!(stream.finish(&mut decide, &mut out), 0);
    assert!(out.is_empty());
    assert_eq!(replace_all(&patterns, b"abc", &mut decide), b"abc");
}

#[test]
fn empty_pattern_is_refused_by_index() {
    match Patterns::new(&["abc", ""]) {
        Err(StreamError::EmptyPattern { index: 1 }) => {}
        other => panic!("expected EmptyPattern {{ index: 1 }}, got {other:?}"),
    }
}

#[test]
fn debug_shows_no_pattern_bytes() {
    let patterns = patterns(&["kh_ph_SECRETPLACEHOLDER"]);
    let mut stream = Stream::new(Arc::clone(&patterns));
    let mut out = Vec::new();
    stream.push(
        Bytes::from_static(b"x kh_ph_SECRET"),
        &mut |_| None,
        &mut out,
    );
    let shown = format!("{patterns:?} {stream:?}");
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(shown.contains("held: 12"), "{shown}");
}

#[test]
fn chunk_without_match_is_passed_on_uncopied() {
    let patterns = patterns(&["kh_ph_AAAA", "kh_ph_BBBB"]);
    let mut stream = Stream::new(patterns);
    let mut out = Vec::new();
    let mut decide = |_: usize| Some(Bytes::from_static(b"SECRET"));
    let chunk = Bytes::from_static(b"{\"text\": \"no placeholder here\"}\n\n");
    assert_eq!(stream.push(chunk.clone(), &mut decide, &mut out), 0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].as_ptr(), chunk.as_ptr());
    assert_eq!(out[0].len(), chunk.len());
    assert_eq!(stream.held(), 0);

    // A chunk ending in what may begin a placeholder: all but that end goes
    // out, as a slice of the chunk.
    out.clear();
    let chunk = Bytes::from_static(b"first part, then kh_p");
    assert_eq!(stream.push(chunk.clone(), &mut decide, &mut out), 0);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].as_ptr(), chunk.as_ptr());
    assert_eq!(&out[0][..], b"first part, then ");
    assert_eq!(stream.held(), 4);

    // The next chunk completes it; the rest of that chunk is a slice of it.
    out.clear();
    let chunk = Bytes::from_static(b"h_AAAA and a long enough rest of the body");
    assert_eq!(stream.push(chunk.clone(), &mut decide, &mut out), 1);
    assert_eq!(concat(&out), b"SECRET and a long enough rest of the body");
    let last = out.last().map(|b| b.as_ptr());
    let rest = chunk.slice(6..);
    assert_eq!(last, Some(rest.as_ptr()));
    assert_eq!(stream.held(), 0);
}

#[test]
fn event_stream_chunks_are_not_delayed() {
    let patterns = patterns(&["kh_ph_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"]);
    let mut stream = Stream::new(patterns);
    let mut out = Vec::new();
    for event in [
        "data: {\"delta\": \"Hel\"}\n\n",
        "data: {\"delta\": \"lo\"}\n\n",
    ] {
        stream.push(
            Bytes::from_static(event.as_bytes()),
            &mut |_| None,
            &mut out,
        );
        assert_eq!(stream.held(), 0);
    }
    assert_eq!(
        concat(&out),
        b"data: {\"delta\": \"Hel\"}\n\ndata: {\"delta\": \"lo\"}\n\n"
    );
}

#[test]
fn placeholder_split_across_chunks_is_replaced() {
    let patterns = patterns(&["kh_ph_AAAA"]);
    for split in 0..=14 {
        let text = "x kh_ph_AAAA y";
        let (a, b) = text.split_at(split);
        let mut decide = Script::new(vec![Some(b"secret")]);
        let (out, replaced) = run(&patterns, &[a, b], &mut decide);
        assert_eq!(out, b"x secret y", "split at {split}");
        assert_eq!(replaced, 1);
        assert_eq!(decide.calls, [0]);
    }
    // One byte at a time.
    let mut decide = Script::new(vec![Some(b"secret")]);
    let chunks: Vec<&str> = "ab kh_ph_AAAA kh_ph_AAAkh_ph_AAAA"
        .split_inclusive(|_| true)
        .collect();
    let (out, replaced) = run(&patterns, &chunks, &mut decide);
    assert_eq!(out, b"ab secret kh_ph_AAAsecret");
    assert_eq!(replaced, 2);
}

#[test]
fn a_shorter_match_waits_for_a_longer_one() {
    let patterns = patterns(&["ab", "abcd"]);
    let replace = || Script::new(vec![Some(b"1"), Some(b"2")]);
    // "ab" could become "abcd": held, not committed.
    let mut stream = Stream::new(Arc::clone(&patterns));
    let mut out = Vec::new();
    let mut decide = replace();
    stream.push(Bytes::from_static(b"xxab"), &mut decide, &mut out);
    assert_eq!(concat(&out), b"xx");
    assert_eq!(stream.held(), 2);
    assert!(decide.calls.is_empty());
    stream.push(Bytes::from_static(b"cdyy"), &mut decide, &mut out);
    assert_eq!(concat(&out), b"xx2yy");
    assert_eq!(decide.calls, [1]);

    let mut decide = replace();
    assert_eq!(run(&patterns, &["xxab", "cx"], &mut decide).0, b"xx1cx");
    assert_eq!(decide.calls, [0]);
    let mut decide = replace();
    assert_eq!(run(&patterns, &["xxab"], &mut decide).0, b"xx1");
    let mut decide = replace();
    assert_eq!(
        run(&patterns, &["xxa", "b", "c", "d"], &mut decide).0,
        b"xx2"
    );
}

#[test]
fn a_later_match_waits_for_an_earlier_longer_one() {
    // In "abc", "bc" is complete but "abcd" may still start at "a".
    let patterns = patterns(&["abcd", "bc"]);
    let replace = || Script::new(vec![Some(b"1"), Some(b"2")]);
    let mut stream = Stream::new(Arc::clone(&patterns));
    let mut out = Vec::new();
    let mut decide = replace();
    stream.push(Bytes::from_static(b"abc"), &mut decide, &mut out);
    assert!(out.is_empty());
    assert_eq!(stream.held(), 3);
    assert!(decide.calls.is_empty());

    let mut decide = replace();
    assert_eq!(run(&patterns, &["abc", "d"], &mut decide).0, b"1");
    let mut decide = replace();
    assert_eq!(run(&patterns, &["abc", "x"], &mut decide).0, b"a2x");
    let mut decide = replace();
    assert_eq!(run(&patterns, &["abc"], &mut decide).0, b"a2");
}

#[test]
fn a_kept_match_is_not_scanned_again() {
    let patterns = patterns(&["abc", "cd"]);
    for chunks in [&["abcd"][..], &["ab", "cd"], &["abc", "d"], &["a", "bcd"]] {
        let mut decide = Script::new(vec![None, Some(b"!")]);
        let (out, replaced) = run(&patterns, chunks, &mut decide);
        assert_eq!(out, b"abcd", "{chunks:?}");
        assert_eq!(replaced, 0);
        assert_eq!(decide.calls, [0]);
    }
}

#[test]
fn replacements_are_not_scanned() {
    let patterns = patterns(&["ab"]);
    let mut decide = Script::new(vec![Some(b"aab")]);
    let (out, replaced) = run(&patterns, &["ab", "b", "ab"], &mut decide);
    assert_eq!(out, b"aabbaab");
    assert_eq!(replaced, 2);
}

#[test]
fn empty_replacement_removes_the_match() {
    let patterns = patterns(&["kh_ph_AAAA"]);
    let mut decide = Script::new(vec![Some(b"")]);
    let (out, replaced) = run(&patterns, &["a kh_ph_", "AAAA b kh_ph_AAAA"], &mut decide);
    assert_eq!(out, b"a  b ");
    assert_eq!(replaced, 2);
}

#[test]
fn finish_flushes_the_held_tail_with_its_matches() {
    let patterns = patterns(&["ab", "abcd"]);
    let mut stream = Stream::new(Arc::clone(&patterns));
    let mut out = Vec::new();
    let mut decide = Script::new(vec![Some(b"1"), Some(b"2")]);
    stream.push(Bytes::from_static(b"zabc"), &mut decide, &mut out);
    assert_eq!(stream.held(), 3);
    assert_eq!(stream.finish(&mut decide, &mut out), 1);
    assert_eq!(concat(&out), b"z1c");
    assert_eq!(stream.held(), 0);
    assert_eq!(stream.finish(&mut decide, &mut out), 0);
    assert_eq!(concat(&out), b"z1c");
}

#[test]
fn held_bytes_stay_below_the_longest_pattern() {
    // A self-overlapping pattern over a text that keeps almost matching.
    let long = "a".repeat(40) + "b";
    let patterns = patterns(&[long.as_str(), "aab"]);
    let mut stream = Stream::new(Arc::clone(&patterns));
    let mut out = Vec::new();
    let chunk = Bytes::from("a".repeat(1000));
    for _ in 0..100 {
        stream.push(chunk.clone(), &mut |_| None, &mut out);
        assert_eq!(stream.held(), 40);
    }
    stream.push(
        Bytes::from_static(b"b"),
        &mut |p: usize| Some(Bytes::from(p.to_string())),
        &mut out,
    );
    stream.finish(&mut |_| None, &mut out);
    let out = concat(&out);
    assert_eq!(out.len(), 100 * 1000 - 40 + 1);
    assert!(out.ends_with(b"a0"));
}

// === the property ===

/// The alphabet of generated patterns, inputs and replacements: small, so
/// that matches are dense and overlap.
const ALPHABET: &[u8] = b"abc";

fn word(len: Range<usize>) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(proptest::sample::select(ALPHABET), len)
}

/// 1-8 patterns of 1-12 bytes; many are prefixes or extensions of one stem,
/// so patterns share prefixes and contain one another.
fn pattern_set() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (
        word(1..13),
        proptest::collection::vec((any::<bool>(), 1usize..13, word(1..13)), 1..9),
    )
        .prop_map(|(stem, specs)| {
            specs
                .into_iter()
                .map(|(from_stem, len, fresh)| {
                    if from_stem {
                        let mut p = stem.clone();
                        p.extend_from_slice(&fresh);
                        p.truncate(len);
                        p
                    } else {
                        fresh
                    }
                })
                .collect()
        })
}

/// Per pattern: keep (`None`) or replace with 0-5 bytes (the same alphabet,
/// so that rescanning a replacement would show).
fn actions() -> impl Strategy<Value = Vec<Option<Vec<u8>>>> {
    proptest::collection::vec(proptest::option::weighted(0.75, word(0..6)), 8)
}

/// Records calls and answers from fixed actions.
struct Recorder<'a> {
    actions: &'a [Bytes],
    keep: &'a [bool],
    calls: Vec<usize>,
}

impl Decide for Recorder<'_> {
    fn decide(&mut self, pattern: usize) -> Option<Bytes> {
        self.calls.push(pattern);
        if self.keep.get(pattern).copied().unwrap_or(true) {
            None
        } else {
            self.actions.get(pattern).cloned()
        }
    }
}

/// Whether the piece `b` lies inside `within`.
fn inside(b: &Bytes, within: &Bytes) -> bool {
    let (start, end) = (
        within.as_ptr() as usize,
        within.as_ptr() as usize + within.len(),
    );
    let p = b.as_ptr() as usize;
    p >= start && p + b.len() <= end
}

proptest! {
    // No regression files: a failure prints its minimal input.
    #![proptest_config(ProptestConfig {
        cases: 1024,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every chunking gives the output and the `decide` calls of
    /// `replace_all` on the whole input; held bytes are a proper prefix of a
    /// pattern ending the input seen; output so far is a prefix of the final
    /// output; nothing but replacements and short seams is copied.
    #[test]
    fn any_chunking_equals_whole_buffer(
        set in pattern_set(),
        actions in actions(),
        input in word(0..2001),
        mut splits in proptest::collection::vec(0usize..2001, 0..24),
        small in proptest::collection::vec(0usize..2001, 0..40),
    ) {
        let patterns = Arc::new(Patterns::new(&set).map_err(|e| TestCaseError::fail(e.to_string()))?);
        let max_len = patterns.max_len();
        let keep: Vec<bool> = actions.iter().map(Option::is_none).collect();
        let replacements: Vec<Bytes> = actions
            .iter()
            .map(|a| Bytes::from(a.clone().unwrap_or_default()))
            .collect();

        let mut whole = Recorder { actions: &replacements, keep: &keep, calls: Vec::new() };
        let expected = replace_all(&patterns, &input, &mut whole);

        // Split points: some anywhere, some close together (short chunks,
        // empty ones included).
        splits.retain(|&s| s <= input.len());
        let mut at = splits.first().copied().unwrap_or(0);
        for step in &small {
            at += step % (max_len + 2);
            if at <= input.len() {
                splits.push(at);
            }
        }
        splits.push(0);
        splits.push(input.len());
        splits.sort_unstable();

        let input = Bytes::from(input);
        let mut stream = Stream::new(Arc::clone(&patterns));
        let mut decide = Recorder { actions: &replacements, keep: &keep, calls: Vec::new() };
        let mut out = Vec::new();
        let mut replaced = 0;
        let mut chunks = Vec::new();
        for pair in splits.windows(2) {
            let chunk = Bytes::copy_from_slice(&input[pair[0]..pair[1]]);
            chunks.push(chunk.clone());
            replaced += stream.push(chunk, &mut decide, &mut out);
            let seen = &input[..pair[1]];
            let held = &stream.tail[..];
            prop_assert!(held.len() < max_len.max(1), "held {} of max {}", held.len(), max_len);
            prop_assert!(seen.ends_with(held));
            prop_assert!(
                held.is_empty() || set.iter().any(|p| p.len() > held.len() && p.starts_with(held)),
                "held bytes are not a proper prefix of a pattern"
            );
            let so_far = concat(&out);
            prop_assert!(expected.starts_with(&so_far), "output so far is not a prefix");
        }
        replaced += stream.finish(&mut decide, &mut out);

        prop_assert_eq!(stream.held(), 0);
        prop_assert_eq!(concat(&out), expected);
        prop_assert_eq!(&decide.calls, &whole.calls);
        let replaced_whole = whole.calls.iter().filter(|&&p| !keep[p]).count();
        prop_assert_eq!(replaced, replaced_whole);
        for piece in &out {
            prop_assert!(!piece.is_empty());
            let zero_copy = chunks.iter().chain(&replacements).any(|c| inside(piece, c));
            prop_assert!(
                zero_copy || piece.len() <= 2 * max_len,
                "a piece of {} bytes was copied", piece.len()
            );
        }
    }
}

#[test]
fn patterns_are_shared_and_streams_move_across_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Patterns>();
    send_sync::<Stream>();
    send_sync::<StreamError>();
}
