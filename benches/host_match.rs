//! Host matching: keyhole's compiled [`HostSet`] against a [`GlobSet`] and a
//! linear scan with [`HostPattern::matches`], on 16, 1,000 and 100,000
//! `allowed_hosts` entries.
//!
//! Every function answers the same question: which entries match this
//! host. Each iteration looks up one host, cycling through 1,024 pre-built
//! hosts so that no single host sits in the cache or trains the branch
//! predictor; normalisation ([`Host::parse`], lower-casing for globset)
//! happens before timing. Before any timing, every fixture asserts that its
//! hit hosts hit and its miss hosts miss, for keyhole, globset and the
//! linear scan alike, so a benchmark cannot silently measure nothing.
//!
//! Run with `cargo bench --bench host_match`; see docs/PERFORMANCE.md.

use std::collections::HashSet;
use std::time::Duration;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use keyhole::host::{Host, HostPattern, HostSet, HostSetBuilder};

/// Pattern counts benchmarked.
const SIZES: [usize; 3] = [16, 1_000, 100_000];
/// Hosts per fixture and kind (hit, miss); a power of two.
const HOSTS: usize = 1024;

// === deterministic generation ===

/// splitmix64: a tiny deterministic generator, so every run measures the
/// same patterns and hosts.
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

    /// True with probability `percent` / 100.
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ta", "ren", "vo", "zu", "pel", "dra", "gon", "sil", "ver", "nat", "ex",
    "am", "ple", "cor", "bit", "hub", "zen", "flo", "qua", "rix", "mo", "dus", "tel", "ar", "sto",
    "la", "shi", "ne", "pa", "to", "ru", "ve", "ga", "bo", "ly", "ci", "fen",
];
/// Top-level domains, weighted by repetition.
const TLDS: &[&str] = &[
    "com", "com", "com", "com", "net", "io", "io", "dev", "org", "co.uk", "ai", "app",
];
/// Common first labels of service host names.
const PREFIXES: &[&str] = &[
    "api", "www", "auth", "cdn", "static", "app", "login", "files", "git", "registry", "upload",
    "eu", "us", "grpc", "ws", "objects", "oauth2", "mcp", "uploads", "status",
];

/// A word of 2-3 syllables.
fn word(rng: &mut Rng) -> String {
    let n = 2 + rng.below(2);
    (0..n).map(|_| rng.pick(SYLLABLES)).collect()
}

/// A registrable domain of 2-3 labels: `word.tld`, `word.word.tld` or
/// `word.co.uk`.
fn domain(rng: &mut Rng) -> String {
    let tld = rng.pick(TLDS);
    if !tld.contains('.') && rng.chance(30) {
        format!("{}.{}.{tld}", word(rng), word(rng))
    } else {
        format!("{}.{tld}", word(rng))
    }
}

/// A first label: usually a service prefix, sometimes a word.
fn sub_label(rng: &mut Rng) -> String {
    if rng.chance(70) {
        rng.pick(PREFIXES).to_owned()
    } else {
        word(rng)
    }
}

fn ipv4(rng: &mut Rng) -> String {
    let v = rng.next();
    format!(
        "{}.{}.{}.{}",
        1 + (v & 0xff) % 223,
        (v >> 8) & 0xff,
        (v >> 16) & 0xff,
        1 + (v >> 24) % 254
    )
}

/// `n` distinct entries: ~60% exact names of 3-5 labels, ~37% `*.` wildcards
/// over domains of 2-3 labels, ~3% IPv4 addresses.
fn patterns(n: usize, rng: &mut Rng) -> Vec<String> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let roll = rng.below(100);
        let entry = if roll < 60 {
            let mut name = format!("{}.{}", sub_label(rng), domain(rng));
            if rng.chance(10) {
                name = format!("{}.{name}", rng.pick(PREFIXES));
            }
            name
        } else if roll < 97 {
            format!("*.{}", domain(rng))
        } else {
            ipv4(rng)
        };
        if seen.insert(entry.clone()) {
            out.push(entry);
        }
    }
    out
}

/// An independent oracle of "some entry matches": exact names and
/// addresses, and the domains of wildcards.
struct Reference {
    exact: HashSet<String>,
    wildcard: HashSet<String>,
}

impl Reference {
    fn new(patterns: &[String]) -> Reference {
        let mut r = Reference {
            exact: HashSet::new(),
            wildcard: HashSet::new(),
        };
        for p in patterns {
            match p.strip_prefix("*.") {
                Some(domain) => r.wildcard.insert(domain.to_owned()),
                None => r.exact.insert(p.clone()),
            };
        }
        r
    }

    fn matches(&self, host: &str) -> bool {
        self.exact.contains(host)
            || host
                .match_indices('.')
                .any(|(i, _)| self.wildcard.contains(&host[i + 1..]))
    }
}

/// 1,024 hosts of 3-5 labels that each match some entry: exact names and
/// addresses, and subdomains 1-2 labels below wildcard domains.
fn hit_hosts(patterns: &[String], rng: &mut Rng) -> Vec<String> {
    (0..HOSTS)
        .map(|_| {
            let p = &patterns[rng.below(patterns.len())];
            match p.strip_prefix("*.") {
                Some(domain) if rng.chance(70) => format!("{}.{domain}", sub_label(rng)),
                Some(domain) => format!("{}.{}.{domain}", sub_label(rng), sub_label(rng)),
                None => p.clone(),
            }
        })
        .collect()
}

/// 1,024 hosts of the same shape that match nothing, many of them near
/// misses: the bare domain of a wildcard, sibling domains (another TLD, a
/// glued-on syllable), another service under an exact name's domain.
fn miss_hosts(patterns: &[String], reference: &Reference, rng: &mut Rng) -> Vec<String> {
    let wildcards: Vec<&str> = patterns
        .iter()
        .filter_map(|p| p.strip_prefix("*."))
        .collect();
    let exacts: Vec<&str> = patterns
        .iter()
        .filter(|p| !p.starts_with("*.") && !p.ends_with(|c: char| c.is_ascii_digit()))
        .map(String::as_str)
        .collect();
    let mut out = Vec::with_capacity(HOSTS);
    while out.len() < HOSTS {
        let host = match rng.below(6) {
            // The bare domain of a wildcard.
            0 if !wildcards.is_empty() => wildcards[rng.below(wildcards.len())].to_owned(),
            // A subdomain of a sibling of a wildcard domain: another TLD.
            1 if !wildcards.is_empty() => {
                let d = wildcards[rng.below(wildcards.len())];
                let (first, _) = d.split_once('.').expect("two labels");
                format!("{}.{first}.{}", sub_label(rng), rng.pick(TLDS))
            }
            // `api.evilexample.com` for `*.example.com`.
            2 if !wildcards.is_empty() => {
                let d = wildcards[rng.below(wildcards.len())];
                format!("{}.{}{d}", sub_label(rng), rng.pick(SYLLABLES))
            }
            // Another service beside an exact name.
            3 if !exacts.is_empty() => {
                let e = exacts[rng.below(exacts.len())];
                let (_, rest) = e.split_once('.').expect("three labels");
                format!("{}.{rest}", sub_label(rng))
            }
            // Below an exact name (exact names do not cover subdomains).
            4 if !exacts.is_empty() => {
                format!("{}.{}", sub_label(rng), exacts[rng.below(exacts.len())])
            }
            _ => format!("{}.{}", sub_label(rng), domain(rng)),
        };
        if !reference.matches(&host) {
            out.push(host);
        }
    }
    out
}

// === fixtures ===

/// One pattern count: the patterns compiled three ways and the hosts.
struct Fixture {
    n: usize,
    patterns: Vec<HostPattern>,
    set: HostSet,
    builder: HostSetBuilder,
    globs: GlobSet,
    hits: Hosts,
    misses: Hosts,
}

/// The same 1,024 hosts, normalised for keyhole and lower-cased for globset.
struct Hosts {
    keyhole: Vec<Host>,
    globset: Vec<String>,
}

impl Hosts {
    fn new(texts: &[String]) -> Hosts {
        let keyhole: Vec<Host> = texts
            .iter()
            .map(|t| Host::parse(t).unwrap_or_else(|e| panic!("{t:?}: {e}")))
            .collect();
        let globset = keyhole
            .iter()
            .map(|h| h.as_str().to_ascii_lowercase())
            .collect();
        Hosts { keyhole, globset }
    }
}

impl Fixture {
    fn new(n: usize) -> Fixture {
        let mut rng = Rng(0x6b65_7968_6f6c_6500 ^ n as u64);
        let texts = patterns(n, &mut rng);
        let reference = Reference::new(&texts);
        let hits = hit_hosts(&texts, &mut rng);
        let misses = miss_hosts(&texts, &reference, &mut rng);
        assert!(hits.iter().all(|h| reference.matches(h)));

        let patterns: Vec<HostPattern> = texts
            .iter()
            .map(|t| HostPattern::parse(t).unwrap_or_else(|e| panic!("{t:?}: {e}")))
            .collect();
        let mut builder = HostSetBuilder::new();
        let mut globs = GlobSetBuilder::new();
        for (id, pattern) in patterns.iter().enumerate() {
            builder.insert(pattern, id as u32);
            // globset at its best here: entries already lower case, globs
            // case-sensitive, `*` free to cross dots.
            let glob = GlobBuilder::new(&pattern.to_string())
                .literal_separator(false)
                .build()
                .expect("every entry is a valid glob");
            globs.add(glob);
        }
        let fixture = Fixture {
            n,
            set: builder.build(),
            builder,
            globs: globs.build().expect("globset builds"),
            patterns,
            hits: Hosts::new(&hits),
            misses: Hosts::new(&misses),
        };
        fixture.check();
        fixture
    }

    /// Hits hit and misses miss, for keyhole, globset and the linear scan,
    /// which all give the same ids.
    fn check(&self) {
        let mut globbed = Vec::new();
        let mut scanned = Vec::new();
        // The scan is slow at 100,000 entries in unoptimised builds
        // (`cargo test --benches`): check every 16th host there.
        let stride = if cfg!(debug_assertions) && self.n > 1_000 {
            16
        } else {
            1
        };
        for (hosts, hit) in [(&self.hits, true), (&self.misses, false)] {
            for (i, (host, text)) in hosts.keyhole.iter().zip(&hosts.globset).enumerate() {
                let ids = self.set.lookup(host);
                self.globs.matches_into(text, &mut globbed);
                let what = if hit { "hit" } else { "miss" };
                assert_eq!(
                    !ids.is_empty(),
                    hit,
                    "keyhole: {host} must {what} ({} entries)",
                    self.n
                );
                assert_eq!(
                    !globbed.is_empty(),
                    hit,
                    "globset: {text} must {what} ({} entries)",
                    self.n
                );
                assert_eq!(self.globs.is_match(text), hit, "globset is_match: {text}");
                let globbed_ids: Vec<u32> = globbed.iter().map(|&i| i as u32).collect();
                assert_eq!(ids, globbed_ids, "keyhole vs globset on {host}");
                if i % stride == 0 {
                    linear(&self.patterns, host, &mut scanned);
                    assert_eq!(ids, scanned, "keyhole vs linear scan on {host}");
                }
            }
        }
    }
}

/// The reference: every entry tried in turn.
#[inline]
fn linear(patterns: &[HostPattern], host: &Host, out: &mut Vec<u32>) {
    out.clear();
    for (id, pattern) in patterns.iter().enumerate() {
        if pattern.matches(host) {
            out.push(id as u32);
        }
    }
}

// === benchmarks ===

fn lookups(c: &mut Criterion, fixtures: &[Fixture], group_name: &str, hit: bool) {
    let mut group = c.benchmark_group(group_name);
    for f in fixtures {
        let hosts = if hit { &f.hits } else { &f.misses };
        if f.n >= 100_000 {
            // Keeps the linear scan (~0.3 ms a lookup) affordable.
            group.sample_size(20);
        } else {
            group.sample_size(100);
        }

        group.bench_with_input(BenchmarkId::new("keyhole", f.n), &f.set, |b, set| {
            let mut i = 0usize;
            b.iter(|| {
                let host = &hosts.keyhole[i % HOSTS];
                i = i.wrapping_add(1);
                black_box(set.lookup(black_box(host)));
            });
        });

        group.bench_with_input(BenchmarkId::new("globset", f.n), &f.globs, |b, globs| {
            let mut i = 0usize;
            let mut out = Vec::new();
            b.iter(|| {
                let host = &hosts.globset[i % HOSTS];
                i = i.wrapping_add(1);
                globs.matches_into(black_box(host.as_str()), &mut out);
                black_box(&out);
            });
        });

        group.bench_with_input(
            BenchmarkId::new("globset_is_match", f.n),
            &f.globs,
            |b, globs| {
                let mut i = 0usize;
                b.iter(|| {
                    let host = &hosts.globset[i % HOSTS];
                    i = i.wrapping_add(1);
                    black_box(globs.is_match(black_box(host.as_str())));
                });
            },
        );

        group.bench_with_input(
            BenchmarkId::new("linear", f.n),
            &f.patterns,
            |b, patterns| {
                let mut i = 0usize;
                let mut out = Vec::new();
                b.iter(|| {
                    let host = &hosts.keyhole[i % HOSTS];
                    i = i.wrapping_add(1);
                    linear(patterns, black_box(host), &mut out);
                    black_box(&out);
                });
            },
        );
    }
    group.finish();
}

fn compile(c: &mut Criterion, fixtures: &[Fixture]) {
    let mut group = c.benchmark_group("host_match_compile");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for f in fixtures.iter().filter(|f| f.n >= 1_000) {
        group.bench_with_input(
            BenchmarkId::new("keyhole", f.n),
            &f.builder,
            |b, builder| {
                b.iter_with_large_drop(|| builder.build());
            },
        );
    }
    group.finish();
}

fn host_match(c: &mut Criterion) {
    let fixtures: Vec<Fixture> = SIZES.iter().map(|&n| Fixture::new(n)).collect();
    lookups(c, &fixtures, "host_match_hit", true);
    lookups(c, &fixtures, "host_match_miss", false);
    compile(c, &fixtures);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = host_match
}
criterion_main!(benches);
