//! Body substitution: keyhole's streaming engine
//! ([`keyhole::substitute::stream`]) over 1 MiB bodies fed in 16 KiB chunks,
//! as hyper delivers them.
//!
//! - `substitute`: 8 placeholders (`kh_ph_` + 32 base32 characters, 38
//!   bytes) replaced by 40-byte secrets, in JSON-like text holding 0, 1 and
//!   64 of them (some split across chunks).
//! - `scrub`: 16 secrets in 4 encodings each (raw, percent-encoded, base64
//!   standard and URL-safe: 64 patterns of 20-60 bytes) replaced by their
//!   placeholders, in JSON-like text holding 0 and 16 of them.
//! - `aho_corasick_find` in each group: a bare leftmost-longest `find_iter`
//!   over the same chunks with the same patterns, emitting nothing: the floor
//!   the engine's own work sits on.
//!
//! Each iteration rewrites the whole body with a fresh [`Stream`], pushing
//! every chunk and finishing. Before any timing, every fixture checks that
//! the streamed output equals [`replace_all`] on the whole body and that the
//! number of replacements is the number planted, so a benchmark cannot
//! silently measure nothing.
//!
//! Run with `cargo bench --bench substitute`; see docs/PERFORMANCE.md.

use std::sync::Arc;

use aho_corasick::{AhoCorasick, MatchKind};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use keyhole::substitute::stream::{replace_all, Patterns, Stream};

/// Body size.
const BODY: usize = 1 << 20;
/// Chunk size (hyper's usual read size).
const CHUNK: usize = 16 << 10;

// === deterministic generation ===

/// splitmix64: a tiny deterministic generator, so every run measures the
/// same bodies and patterns.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    fn below(&mut self, n: usize) -> usize {
        (((self.next() >> 32) * n as u64) >> 32) as usize
    }

    /// `len` characters drawn from `alphabet`.
    fn string(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| char::from(alphabet[self.below(alphabet.len())]))
            .collect()
    }
}

const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
const ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Words of the generated text, separated by spaces.
const WORDS: &str = "the model returned a response with tokens and content tool call result \
    message assistant user system stream delta index finish reason stop length usage prompt \
    completion choices object created function arguments query search file path line error";

/// About `len` bytes of JSON-like records (API responses, tool results),
/// cut to exactly `len`.
fn json_text(rng: &mut Rng, len: usize) -> Vec<u8> {
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let mut out = String::with_capacity(len + 512);
    let mut id = 1000u64;
    while out.len() < len {
        id += 1 + rng.below(7) as u64;
        let text: Vec<&str> = (0..8 + rng.below(24))
            .map(|_| words[rng.below(words.len())])
            .collect();
        let tag = words[rng.below(words.len())];
        out.push_str(&format!(
            "{{\"id\": {id}, \"object\": \"chat.completion.chunk\", \"index\": {}, \"tag\": \"{tag}\", \"text\": \"{}\", \"hash\": \"{}\"}},\n",
            rng.below(100),
            text.join(" "),
            rng.string(ALNUM, 16),
        ));
    }
    let mut out = out.into_bytes();
    out.truncate(len);
    out
}

/// Overwrites `body` with `needles[i % needles.len()]` at `count` spread
/// positions; every third needle (but the last) straddles a chunk boundary.
fn plant(body: &mut [u8], needles: &[Vec<u8>], count: usize, rng: &mut Rng) {
    let spacing = body.len() / count.max(1);
    for i in 0..count {
        let needle = &needles[i % needles.len()];
        let base = i * spacing;
        let boundary = (base / CHUNK + 1) * CHUNK;
        let at = if i % 3 == 0 && boundary + needle.len() < body.len() {
            // Across the first chunk boundary after `base`.
            boundary - 1 - rng.below(needle.len() - 1)
        } else {
            base + 64 + rng.below(spacing - needle.len() - 128)
        };
        body[at..at + needle.len()].copy_from_slice(needle);
    }
}

// === fixtures ===

/// One body to rewrite: its chunks, the patterns and what each becomes.
struct Fixture {
    chunks: Vec<Bytes>,
    patterns: Arc<Patterns>,
    pattern_list: Vec<Vec<u8>>,
    replacements: Vec<Bytes>,
}

impl Fixture {
    fn new(
        body: Vec<u8>,
        pattern_list: Vec<Vec<u8>>,
        replacements: Vec<Bytes>,
        planted: usize,
    ) -> Fixture {
        let patterns = match Patterns::new(&pattern_list) {
            Ok(p) => Arc::new(p),
            Err(e) => panic!("patterns: {e}"),
        };
        let body = Bytes::from(body);
        let chunks = (0..body.len())
            .step_by(CHUNK)
            .map(|at| body.slice(at..(at + CHUNK).min(body.len())))
            .collect();
        let fixture = Fixture {
            chunks,
            patterns,
            pattern_list,
            replacements,
        };
        // Check before timing: streaming equals the whole-buffer reference,
        // and every planted needle (and nothing else) was replaced.
        let mut decide = |p: usize| Some(fixture.replacements[p].clone());
        let expected = replace_all(&fixture.patterns, &body, &mut decide);
        let mut out = Vec::new();
        let replaced = fixture.rewrite(&mut out);
        let streamed: Vec<u8> = out.iter().flat_map(|b| b.iter().copied()).collect();
        assert!(
            streamed == expected,
            "streamed output differs from replace_all"
        );
        assert_eq!(replaced, planted, "replacements made");
        fixture
    }

    /// Rewrites the body with a fresh stream; returns the replacements made.
    fn rewrite(&self, out: &mut Vec<Bytes>) -> usize {
        out.clear();
        let mut decide = |p: usize| Some(self.replacements[p].clone());
        let mut stream = Stream::new(Arc::clone(&self.patterns));
        let mut replaced = 0;
        for chunk in &self.chunks {
            replaced += stream.push(chunk.clone(), &mut decide, out);
        }
        replaced + stream.finish(&mut decide, out)
    }

    /// The bare automaton, for `aho_corasick_find`.
    fn automaton(&self) -> AhoCorasick {
        match AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&self.pattern_list)
        {
            Ok(ac) => ac,
            Err(e) => panic!("automaton: {e}"),
        }
    }
}

/// 8 placeholders, their 40-byte secrets, and bodies with `count` of them.
fn substitute_fixture(count: usize) -> Fixture {
    let mut rng = Rng(0x5eed_0001);
    let placeholders: Vec<Vec<u8>> = (0..8)
        .map(|_| format!("kh_ph_{}", rng.string(BASE32, 32)).into_bytes())
        .collect();
    let secrets: Vec<Bytes> = (0..8)
        .map(|_| Bytes::from(format!("sk-live-{}", rng.string(ALNUM, 32))))
        .collect();
    let mut body = json_text(&mut rng, BODY);
    plant(&mut body, &placeholders, count, &mut rng);
    Fixture::new(body, placeholders, secrets, count)
}

/// 16 secrets in 4 encodings each, their placeholders, and bodies with
/// `count` of them.
fn scrub_fixture(count: usize) -> Fixture {
    let mut rng = Rng(0x5eed_0002);
    let mut patterns = Vec::new();
    let mut placeholders = Vec::new();
    for _ in 0..16 {
        // 20-36 bytes with two characters that percent-encoding changes.
        let len = 20 + rng.below(17);
        let mut secret = rng.string(ALNUM, len).into_bytes();
        secret[len / 3] = b'/';
        secret[2 * len / 3] = b'+';
        let percent: Vec<u8> = secret
            .iter()
            .flat_map(|&b| match b {
                b'/' => b"%2F".to_vec(),
                b'+' => b"%2B".to_vec(),
                b => vec![b],
            })
            .collect();
        let placeholder = Bytes::from(format!("kh_ph_{}", rng.string(BASE32, 32)));
        for encoding in [
            secret.clone(),
            percent,
            STANDARD.encode(&secret).into_bytes(),
            URL_SAFE_NO_PAD.encode(&secret).into_bytes(),
        ] {
            assert!((20..=60).contains(&encoding.len()));
            patterns.push(encoding);
            placeholders.push(placeholder.clone());
        }
    }
    let mut body = json_text(&mut rng, BODY);
    // One of each secret, cycling through the encodings.
    let needles: Vec<Vec<u8>> = (0..16).map(|i| patterns[i * 4 + i % 4].clone()).collect();
    plant(&mut body, &needles, count, &mut rng);
    Fixture::new(body, patterns, placeholders, count)
}

// === benchmarks ===

fn group(c: &mut Criterion, name: &str, cases: &[(&str, Fixture)]) {
    let mut group = c.benchmark_group(name);
    group.throughput(Throughput::Bytes(BODY as u64));
    let mut out = Vec::with_capacity(256);
    for (function, fixture) in cases {
        group.bench_function(*function, |b| {
            b.iter(|| black_box(fixture.rewrite(&mut out)));
        });
    }
    if let Some((_, fixture)) = cases.first() {
        let automaton = fixture.automaton();
        group.bench_function("aho_corasick_find", |b| {
            b.iter(|| {
                fixture
                    .chunks
                    .iter()
                    .map(|chunk| automaton.find_iter(&chunk[..]).count())
                    .sum::<usize>()
            });
        });
    }
    group.finish();
}

fn substitute(c: &mut Criterion) {
    let cases = [
        ("no_match", substitute_fixture(0)),
        ("one_placeholder", substitute_fixture(1)),
        ("64_placeholders", substitute_fixture(64)),
    ];
    group(c, "substitute", &cases);
}

fn scrub(c: &mut Criterion) {
    let cases = [
        ("no_match", scrub_fixture(0)),
        ("16_matches", scrub_fixture(16)),
    ];
    group(c, "scrub", &cases);
}

criterion_group!(benches, substitute, scrub);
criterion_main!(benches);
