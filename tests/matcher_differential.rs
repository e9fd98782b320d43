//! Differential test of the compiled host matcher.
//!
//! [`HostSet::lookup`] must give the same ids as two independent oracles on
//! every host: a naive scan with [`HostPattern::matches`] (the reference
//! semantics) and a [`globset::GlobSet`] holding the same entries as globs,
//! asked about the normalised host text. The hosts are generated around the
//! wildcard and IPv4 edge cases of threat cases 4 and 5 in LESSONS.md, from
//! a small alphabet of labels shared with the patterns, so that exact hits,
//! subdomain hits at several depths and near misses are all frequent.
//!
//! Each generated host also carries what its normalisation must be (a
//! lower-case name, an IPv4 address, an IPv6 address, or a refusal), so
//! [`Host::parse`] is checked against the generator too: `%2e` tricks and
//! other malformed hosts must be refused rather than matched.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use keyhole::host::{Host, HostKind, HostPattern, HostSet, HostSetBuilder};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};

/// Labels patterns are built from (valid LDH labels, none numeric).
const PATTERN_LABELS: &[&str] = &[
    "example",
    "com",
    "evil",
    "net",
    "api",
    "a",
    "b",
    "www",
    "evilexample",
    "xn--exmple-cua",
    "co",
    "uk",
    "io",
    "x-y",
];

/// Labels only hosts use: valid in a request host, never in an entry.
const HOST_ONLY_LABELS: &[&str] = &["_acme", "-x", "x-", "exa_mple"];

/// IPv4 addresses that entries and hosts draw from.
const V4_POOL: &[[u8; 4]] = &[
    [127, 0, 0, 1],
    [127, 0, 0, 2],
    [8, 0, 0, 1],
    [10, 0, 0, 1],
    [192, 0, 2, 1],
    [0, 0, 0, 0],
    [255, 255, 255, 255],
    [1, 2, 3, 4],
];

/// Hosts from LESSONS.md and around it, with what they must normalise to.
const EDGE_HOSTS: &[(&str, Expect<'static>)] = &[
    ("example.com", Expect::Name("example.com")),
    ("evilexample.com", Expect::Name("evilexample.com")),
    ("example.com.evil.net", Expect::Name("example.com.evil.net")),
    ("a.b.example.com", Expect::Name("a.b.example.com")),
    ("API.EXAMPLE.COM", Expect::Name("api.example.com")),
    ("api.example.com.", Expect::Name("api.example.com")),
    ("Api.Example.Com.", Expect::Name("api.example.com")),
    ("xn--exmple-cua.com", Expect::Name("xn--exmple-cua.com")),
    (
        "api.xn--exmple-cua.com",
        Expect::Name("api.xn--exmple-cua.com"),
    ),
    ("exаmple.com", Expect::Refused), // Cyrillic 'а'
    ("api.exämple.com", Expect::Refused),
    ("api%2eexample.com", Expect::Refused),
    ("api%2Eexample.com", Expect::Refused),
    ("%2e.example.com", Expect::Refused),
    ("api.example.com%2e", Expect::Refused),
    ("api%252eexample.com", Expect::Refused),
    ("evil.com%2f.example.com", Expect::Refused),
    ("evil.com/.example.com", Expect::Refused),
    ("evil.com@api.example.com", Expect::Refused),
    ("api.example.com:443", Expect::Refused),
    ("api.example.com..", Expect::Refused),
    (".example.com", Expect::Refused),
    ("*.example.com", Expect::Refused),
    ("api .example.com", Expect::Refused),
    ("2130706433", Expect::V4([127, 0, 0, 1])),
    ("0x7f.1", Expect::V4([127, 0, 0, 1])),
    ("0X7F.1", Expect::V4([127, 0, 0, 1])),
    ("127.1", Expect::V4([127, 0, 0, 1])),
    ("0177.0.0.1", Expect::V4([127, 0, 0, 1])),
    ("127.0.0.1.", Expect::V4([127, 0, 0, 1])),
    ("010.0.0.1", Expect::V4([8, 0, 0, 1])),
    ("10.0.0.1", Expect::V4([10, 0, 0, 1])),
    ("[::ffff:127.0.0.1]", Expect::V6),
    ("[::FFFF:7f00:1]", Expect::V6),
    ("::ffff:127.0.0.1", Expect::Refused),
    ("127.0.0.1.evil.net", Expect::Name("127.0.0.1.evil.net")),
    ("evil.127.0.0.1", Expect::Refused),
    ("127.0.0.256", Expect::Refused),
    ("08.0.0.1", Expect::Refused),
];

/// What a host string must normalise to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect<'a> {
    Name(&'a str),
    V4([u8; 4]),
    V6,
    Refused,
}

/// An owned [`Expect`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Name(String),
    V4(Ipv4Addr),
    V6,
    Refused,
}

impl From<&Expect<'_>> for Expected {
    fn from(e: &Expect<'_>) -> Expected {
        match e {
            Expect::Name(n) => Expected::Name((*n).to_owned()),
            Expect::V4(a) => Expected::V4(Ipv4Addr::from(*a)),
            Expect::V6 => Expected::V6,
            Expect::Refused => Expected::Refused,
        }
    }
}

// === the three matchers ===

/// The same entries, compiled three ways.
struct Matchers {
    patterns: Vec<HostPattern>,
    ids: Vec<u32>,
    always: Vec<u32>,
    set: HostSet,
    globs: GlobSet,
}

impl Matchers {
    fn new(entries: &[(HostPattern, u32)], always: &[u32]) -> Matchers {
        let mut builder = HostSetBuilder::new();
        let mut globs = GlobSetBuilder::new();
        for (pattern, id) in entries {
            builder.insert(pattern, *id);
            globs.add(glob(pattern));
        }
        for &id in always {
            builder.always(id);
        }
        let mut always = always.to_vec();
        always.sort_unstable();
        always.dedup();
        Matchers {
            patterns: entries.iter().map(|(p, _)| p.clone()).collect(),
            ids: entries.iter().map(|(_, id)| *id).collect(),
            always,
            set: builder.build(),
            globs: globs.build().expect("globset builds"),
        }
    }

    fn keyhole(&self, host: &Host) -> Vec<u32> {
        self.set.lookup(host).to_vec()
    }

    fn naive(&self, host: &Host) -> Vec<u32> {
        let mut out: Vec<u32> = self
            .patterns
            .iter()
            .zip(&self.ids)
            .filter(|(p, _)| p.matches(host))
            .map(|(_, id)| *id)
            .chain(self.always.iter().copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Glob indices mapped to ids. IPv4 hosts compare as dotted quads (their
    /// normalised text); IPv6 hosts never match an entry, and the glob of an
    /// entry cannot match `[...]` text either.
    fn globset(&self, host: &Host, scratch: &mut Vec<usize>) -> Vec<u32> {
        self.globs.matches_into(host.as_str(), scratch);
        let mut out: Vec<u32> = scratch
            .iter()
            .map(|&i| self.ids[i])
            .chain(self.always.iter().copied())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// globset in its best configuration for this question: entries are already
/// lower case, globs case-sensitive, `*` crosses dots.
fn glob(pattern: &HostPattern) -> globset::Glob {
    GlobBuilder::new(&pattern.to_string())
        .literal_separator(false)
        .build()
        .expect("every entry is a valid glob")
}

/// Checks one host string. `None`: refused, as expected; otherwise
/// normalised as expected, compared three ways, and whether some entry
/// matched.
fn check(
    m: &Matchers,
    input: &str,
    expected: &Expected,
    scratch: &mut Vec<usize>,
) -> Result<Option<bool>, TestCaseError> {
    let parsed = Host::parse(input);
    let host = match (parsed, expected) {
        (Err(_), Expected::Refused) => return Ok(None),
        (Ok(h), Expected::Refused) => {
            return Err(TestCaseError::fail(format!(
                "{input:?} must be refused, was normalised to {:?}",
                h.as_str()
            )))
        }
        (Err(e), _) => {
            return Err(TestCaseError::fail(format!(
                "{input:?} was refused ({e}), expected {expected:?}"
            )))
        }
        (Ok(h), _) => h,
    };
    match expected {
        Expected::Name(n) => {
            prop_assert_eq!(host.kind(), HostKind::Name, "{:?}", input);
            prop_assert_eq!(host.as_str(), n.as_str(), "{:?}", input);
        }
        Expected::V4(a) => {
            prop_assert_eq!(host.kind(), HostKind::Ipv4(*a), "{:?}", input);
            prop_assert_eq!(host.as_str(), a.to_string(), "{:?}", input);
        }
        Expected::V6 => {
            prop_assert!(matches!(host.kind(), HostKind::Ipv6(_)), "{:?}", input);
        }
        Expected::Refused => unreachable!(),
    }
    let keyhole = m.keyhole(&host);
    let naive = m.naive(&host);
    let globset = m.globset(&host, scratch);
    prop_assert_eq!(&keyhole, &naive, "keyhole vs naive scan on {:?}", input);
    prop_assert_eq!(&keyhole, &globset, "keyhole vs globset on {:?}", input);
    if matches!(expected, Expected::V6) {
        prop_assert_eq!(&keyhole, &m.always, "IPv6 matches no entry: {:?}", input);
    }
    Ok(Some(m.patterns.iter().any(|p| p.matches(&host))))
}

// === generation ===

/// An entry, by label indices.
#[derive(Debug, Clone)]
enum PatSpec {
    Exact(Vec<usize>),
    Wildcard(Vec<usize>),
    V4(usize),
}

impl PatSpec {
    fn pattern(&self) -> HostPattern {
        let text = match self {
            PatSpec::Exact(labels) => join(labels, PATTERN_LABELS),
            PatSpec::Wildcard(labels) => format!("*.{}", join(labels, PATTERN_LABELS)),
            PatSpec::V4(i) => Ipv4Addr::from(V4_POOL[*i]).to_string(),
        };
        HostPattern::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
    }
}

fn join(labels: &[usize], alphabet: &[&str]) -> String {
    labels
        .iter()
        .map(|&i| alphabet[i % alphabet.len()])
        .collect::<Vec<_>>()
        .join(".")
}

fn pat_spec() -> impl Strategy<Value = PatSpec> {
    let label = 0..PATTERN_LABELS.len();
    prop_oneof![
        5 => vec(label.clone(), 1..=4).prop_map(PatSpec::Exact),
        4 => vec(label, 1..=3).prop_map(PatSpec::Wildcard),
        1 => (0..V4_POOL.len()).prop_map(PatSpec::V4),
    ]
}

/// How one host is made. `Index`es pick an entry of the case's set; label
/// indices pick from the pattern labels followed by the host-only labels.
#[derive(Debug, Clone)]
enum Form {
    /// One of [`EDGE_HOSTS`], verbatim.
    Edge(usize),
    /// The entry's name, wildcard domain or address.
    Key(Index),
    /// 1-3 labels in front of the entry's key: subdomains at several depths.
    Sub(Index, Vec<usize>),
    /// A near miss: the key with one label glued on, swapped or dropped.
    Sibling(Index, u8, usize),
    /// The key followed by more labels (`example.com.evil.net`).
    Appended(Index, Vec<usize>),
    /// 1-5 labels from the alphabet.
    Random(Vec<usize>),
    /// A pool address in a WHATWG spelling: parts (1-4), radix choices.
    Ipv4(usize, usize, u8),
    /// A pool address as IPv4-mapped IPv6 (`[::ffff:127.0.0.1]`).
    Ipv6Mapped(usize, bool),
    /// The key with one dot replaced by an encoding of it.
    Percent(Index, u8, u8),
}

#[derive(Debug, Clone)]
struct HostSpec {
    form: Form,
    /// Bit `i` upper-cases byte `i` (when `i < 64`).
    case_mask: u64,
    trailing_dot: bool,
}

fn any_label() -> impl Strategy<Value = usize> {
    prop_oneof![
        9 => 0..PATTERN_LABELS.len(),
        1 => PATTERN_LABELS.len()..PATTERN_LABELS.len() + HOST_ONLY_LABELS.len(),
    ]
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        2 => (0..EDGE_HOSTS.len()).prop_map(Form::Edge),
        3 => any::<Index>().prop_map(Form::Key),
        5 => (any::<Index>(), vec(any_label(), 1..=3)).prop_map(|(i, l)| Form::Sub(i, l)),
        4 => (any::<Index>(), 0u8..5, any_label()).prop_map(|(i, k, l)| Form::Sibling(i, k, l)),
        2 => (any::<Index>(), vec(any_label(), 1..=2)).prop_map(|(i, l)| Form::Appended(i, l)),
        4 => vec(any_label(), 1..=5).prop_map(Form::Random),
        3 => (0..V4_POOL.len(), 1usize..=4, any::<u8>()).prop_map(|(a, p, r)| Form::Ipv4(a, p, r)),
        1 => (0..V4_POOL.len(), any::<bool>()).prop_map(|(a, u)| Form::Ipv6Mapped(a, u)),
        1 => (any::<Index>(), any::<u8>(), any::<u8>()).prop_map(|(i, d, e)| Form::Percent(i, d, e)),
    ]
}

fn host_spec() -> impl Strategy<Value = HostSpec> {
    (
        form(),
        prop_oneof![3 => Just(0u64), 1 => any::<u64>()],
        prop::bool::weighted(0.15),
    )
        .prop_map(|(form, case_mask, trailing_dot)| HostSpec {
            form,
            case_mask,
            trailing_dot,
        })
}

fn label(i: usize) -> &'static str {
    let n = PATTERN_LABELS.len();
    if i < n {
        PATTERN_LABELS[i]
    } else {
        HOST_ONLY_LABELS[(i - n) % HOST_ONLY_LABELS.len()]
    }
}

fn labels(list: &[usize]) -> String {
    list.iter().map(|&i| label(i)).collect::<Vec<_>>().join(".")
}

/// A spelling of `addr` in `parts` parts (the last holding the remaining
/// bytes), each part decimal, hexadecimal or octal as `radix` bits say.
fn spell_ipv4(addr: [u8; 4], parts: usize, radix: u8) -> String {
    let value = u32::from_be_bytes(addr) as u64;
    let mut nums: Vec<u64> = addr[..parts - 1].iter().map(|&b| b as u64).collect();
    let last_bytes = 5 - parts;
    nums.push(value & ((1u64 << (8 * last_bytes)) - 1));
    nums.iter()
        .enumerate()
        .map(|(i, &v)| match (radix >> (2 * i)) & 3 {
            1 => format!("0x{v:x}"),
            2 => format!("0{v:o}"),
            _ => v.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Renders `spec` against the case's entries: the host text and what it must
/// normalise to.
fn render(spec: &HostSpec, patterns: &[HostPattern]) -> (String, Expected) {
    let pick = |i: &Index| {
        if patterns.is_empty() {
            HostPattern::parse("example.com").expect("valid")
        } else {
            i.get(patterns).clone()
        }
    };
    let (text, expected) = match &spec.form {
        Form::Edge(i) => {
            // Verbatim: edge hosts carry their own expectation.
            let (text, expect) = &EDGE_HOSTS[*i];
            return ((*text).to_owned(), expect.into());
        }
        Form::Key(i) => match pick(i) {
            HostPattern::Ipv4(a) => (a.to_string(), Expected::V4(a)),
            p => {
                let k = p.key();
                (k.clone(), Expected::Name(k))
            }
        },
        Form::Sub(i, extra) => {
            let p = pick(i);
            let text = format!("{}.{}", labels(extra), p.key());
            match p {
                // `a.127.0.0.1` ends in a number but is no address.
                HostPattern::Ipv4(_) => (text, Expected::Refused),
                _ => (text.clone(), Expected::Name(text.to_ascii_lowercase())),
            }
        }
        Form::Sibling(i, kind, l) => match pick(i) {
            HostPattern::Ipv4(a) => {
                let near = Ipv4Addr::from(u32::from(a) ^ (1 << (*kind as u32 % 4 * 8)));
                (near.to_string(), Expected::V4(near))
            }
            p => {
                let key = p.key();
                let mut parts: Vec<String> = key.split('.').map(str::to_owned).collect();
                let other = label(*l);
                match kind {
                    // `evil` + `example.com` = `evilexample.com`.
                    0 => parts[0] = format!("{other}{}", parts[0]),
                    // Another top-level label.
                    1 => *parts.last_mut().expect("non-empty") = other.to_owned(),
                    // The parent (or the label alone).
                    2 if parts.len() > 1 => {
                        parts.remove(0);
                    }
                    2 => parts[0] = other.to_owned(),
                    // `example.comevil`.
                    3 => parts.last_mut().expect("non-empty").push_str(other),
                    // The first label swapped.
                    _ => parts[0] = other.to_owned(),
                }
                let text = parts.join(".");
                (text.clone(), Expected::Name(text.to_ascii_lowercase()))
            }
        },
        Form::Appended(i, extra) => {
            let text = format!("{}.{}", pick(i).key(), labels(extra));
            (text.clone(), Expected::Name(text.to_ascii_lowercase()))
        }
        Form::Random(list) => {
            let text = labels(list);
            (text.clone(), Expected::Name(text.to_ascii_lowercase()))
        }
        Form::Ipv4(a, parts, radix) => (
            spell_ipv4(V4_POOL[*a], *parts, *radix),
            Expected::V4(Ipv4Addr::from(V4_POOL[*a])),
        ),
        Form::Ipv6Mapped(a, hex) => {
            let [b0, b1, b2, b3] = V4_POOL[*a];
            let text = if *hex {
                format!(
                    "[::ffff:{:x}:{:x}]",
                    u16::from_be_bytes([b0, b1]),
                    u16::from_be_bytes([b2, b3])
                )
            } else {
                format!("[::ffff:{b0}.{b1}.{b2}.{b3}]")
            };
            (text, Expected::V6)
        }
        Form::Percent(i, dot, enc) => {
            let key = pick(i).key();
            let encoded = ["%2e", "%2E", "%252e", "%2f", "%00"][*enc as usize % 5];
            let dots: Vec<usize> = key.match_indices('.').map(|(j, _)| j).collect();
            let text = if dots.is_empty() {
                format!("{encoded}.{key}")
            } else {
                let j = dots[*dot as usize % dots.len()];
                format!("{}{encoded}{}", &key[..j], &key[j + 1..])
            };
            (text, Expected::Refused)
        }
    };
    let mut bytes = text.into_bytes();
    for (i, b) in bytes.iter_mut().enumerate().take(64) {
        if spec.case_mask & (1 << i) != 0 {
            b.make_ascii_uppercase();
        }
    }
    let mut text = String::from_utf8(bytes).expect("ASCII");
    let expected = if spec.trailing_dot {
        text.push('.');
        match expected {
            // `[...]`. is no IPv6 literal.
            Expected::V6 => Expected::Refused,
            e => e,
        }
    } else {
        expected
    };
    (text, expected)
}

/// One case: the entries (a few fixed ones, optionally), their ids, ids
/// that match every host, and the hosts.
#[derive(Debug, Clone)]
struct Case {
    fixed: bool,
    entries: Vec<(PatSpec, u32)>,
    always: Vec<u32>,
    hosts: Vec<HostSpec>,
}

const HOSTS_PER_CASE: usize = 256;
const CASES: u32 = 480;

fn case() -> impl Strategy<Value = Case> {
    (
        prop::bool::weighted(0.7),
        vec((pat_spec(), 0u32..16), 0..24),
        prop_oneof![4 => Just(Vec::new()), 1 => vec(0u32..20, 1..3)],
        vec(host_spec(), HOSTS_PER_CASE),
    )
        .prop_map(|(fixed, entries, always, hosts)| Case {
            fixed,
            entries,
            always,
            hosts,
        })
}

/// The entries LESSONS.md is about, prepended when `Case::fixed`.
fn fixed_entries() -> Vec<(HostPattern, u32)> {
    [
        ("*.example.com", 1),
        ("127.0.0.1", 2),
        ("api.example.com", 3),
        ("8.0.0.1", 4),
    ]
    .iter()
    .map(|&(p, id)| (HostPattern::parse(p).expect("valid"), id))
    .collect()
}

#[test]
fn host_set_agrees_with_globset_and_naive_scan() {
    let total = AtomicUsize::new(0);
    let compared = AtomicUsize::new(0);
    let refused = AtomicUsize::new(0);
    let hits = AtomicUsize::new(0);
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&case(), |case| {
        let mut entries = if case.fixed {
            fixed_entries()
        } else {
            Vec::new()
        };
        entries.extend(case.entries.iter().map(|(s, id)| (s.pattern(), *id)));
        let m = Matchers::new(&entries, &case.always);
        let mut scratch = Vec::new();
        for spec in &case.hosts {
            let (text, expected) = render(spec, &m.patterns);
            total.fetch_add(1, Ordering::Relaxed);
            match check(&m, &text, &expected, &mut scratch)? {
                Some(hit) => {
                    compared.fetch_add(1, Ordering::Relaxed);
                    hits.fetch_add(usize::from(hit), Ordering::Relaxed);
                }
                None => {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let (total, compared) = (total.into_inner(), compared.into_inner());
    let (refused, hits) = (refused.into_inner(), hits.into_inner());
    eprintln!("hosts: {total} checked, {compared} compared three ways ({hits} matching an entry), {refused} refused as expected");
    assert!(total >= 100_000, "only {total} hosts checked");
    assert!(compared >= 100_000, "only {compared} hosts compared");
    // The generator must keep both answers frequent.
    assert!(hits >= compared / 5, "too few hits: {hits} of {compared}");
    assert!(compared - hits >= compared / 5, "too few misses");
}

// === the named edge cases, answers spelled out ===

/// `*.example.com` → 1, `127.0.0.1` → 2, `8.0.0.1` → 3.
fn lessons() -> Matchers {
    let entries: Vec<(HostPattern, u32)> = [("*.example.com", 1), ("127.0.0.1", 2), ("8.0.0.1", 3)]
        .iter()
        .map(|&(p, id)| (HostPattern::parse(p).expect("valid"), id))
        .collect();
    Matchers::new(&entries, &[])
}

/// The ids `host` gets, after checking the three matchers agree.
fn ids(host: &str) -> Vec<u32> {
    let m = lessons();
    let h = Host::parse(host).unwrap_or_else(|e| panic!("{host:?} refused: {e}"));
    let keyhole = m.keyhole(&h);
    assert_eq!(keyhole, m.naive(&h), "naive scan on {host:?}");
    assert_eq!(
        keyhole,
        m.globset(&h, &mut Vec::new()),
        "globset on {host:?}"
    );
    keyhole
}

fn refused(host: &str) {
    assert!(Host::parse(host).is_err(), "{host:?} must be refused");
}

#[test]
fn wildcard_never_matches_its_own_domain() {
    assert_eq!(ids("example.com"), [] as [u32; 0]);
    assert_eq!(ids("EXAMPLE.COM."), [] as [u32; 0]);
}

#[test]
fn wildcard_needs_a_label_boundary() {
    assert_eq!(ids("evilexample.com"), [] as [u32; 0]);
    assert_eq!(ids("a.evilexample.com"), [] as [u32; 0]);
}

#[test]
fn wildcard_domain_as_a_prefix_does_not_match() {
    assert_eq!(ids("example.com.evil.net"), [] as [u32; 0]);
    assert_eq!(ids("api.example.com.evil.net"), [] as [u32; 0]);
}

#[test]
fn wildcard_matches_at_any_depth() {
    assert_eq!(ids("a.example.com"), [1]);
    assert_eq!(ids("a.b.example.com"), [1]);
    assert_eq!(ids("x.y.z.a.b.example.com"), [1]);
}

#[test]
fn case_is_folded() {
    assert_eq!(ids("API.EXAMPLE.COM"), [1]);
    assert_eq!(ids("Api.Example.Com"), [1]);
}

#[test]
fn one_trailing_dot_is_dropped_two_are_refused() {
    assert_eq!(ids("api.example.com."), [1]);
    refused("api.example.com..");
}

#[test]
fn punycode_look_alikes_are_other_names() {
    assert_eq!(ids("xn--exmple-cua.com"), [] as [u32; 0]);
    assert_eq!(ids("api.xn--exmple-cua.com"), [] as [u32; 0]);
    assert_eq!(ids("api.example.xn--com-zza"), [] as [u32; 0]);
    // Unicode look-alikes never reach the matcher.
    refused("api.exаmple.com"); // Cyrillic 'а'
    refused("api.exämple.com");
}

#[test]
fn percent_encoded_dots_are_refused_not_matched() {
    for host in [
        "api%2eexample.com",
        "api%2Eexample.com",
        "%2e.example.com",
        "api.example.com%2e",
        "api%252eexample.com",
        "evil.com%2f.example.com",
        "evil.com%00.example.com",
    ] {
        refused(host);
    }
}

#[test]
fn other_tricks_are_refused() {
    for host in [
        "evil.com/.example.com",
        "evil.com@api.example.com",
        "api.example.com:443",
        ".example.com",
        "*.example.com",
        "api .example.com",
        "",
    ] {
        refused(host);
    }
}

#[test]
fn ipv4_decimal_number() {
    assert_eq!(ids("2130706433"), [2]);
}

#[test]
fn ipv4_hex_short_form() {
    assert_eq!(ids("0x7f.1"), [2]);
    assert_eq!(ids("0X7F.0X1"), [2]);
}

#[test]
fn ipv4_short_form() {
    assert_eq!(ids("127.1"), [2]);
    assert_eq!(ids("127.0.1"), [2]);
}

#[test]
fn ipv4_leading_zero_is_octal() {
    // 010 is 8: `010.0.0.1` is 8.0.0.1, not 10.0.0.1.
    assert_eq!(ids("010.0.0.1"), [3]);
    assert_eq!(ids("0177.0.0.1"), [2]);
    refused("08.0.0.1");
}

#[test]
fn ipv4_mapped_ipv6_matches_no_ipv4_entry() {
    assert_eq!(ids("[::ffff:127.0.0.1]"), [] as [u32; 0]);
    assert_eq!(ids("[::ffff:7f00:1]"), [] as [u32; 0]);
    refused("::ffff:127.0.0.1");
}

#[test]
fn ipv4_near_misses() {
    assert_eq!(ids("127.0.0.2"), [] as [u32; 0]);
    assert_eq!(ids("127.0.0.1."), [2]);
    assert_eq!(ids("127.0.0.1.evil.net"), [] as [u32; 0]);
    refused("evil.127.0.0.1");
    refused("127.0.0.256");
}

#[test]
fn ipv4_spelling_generator_is_sound() {
    let addr = [127, 0, 0, 1];
    for parts in 1..=4 {
        for radix in 0..=u8::MAX {
            let text = spell_ipv4(addr, parts, radix);
            let h = Host::parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(h.kind(), HostKind::Ipv4(Ipv4Addr::LOCALHOST), "{text:?}");
        }
    }
}
