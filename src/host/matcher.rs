//! [`HostSet`]: the compiled host matcher.
//!
//! Maps a request host to the sorted ids of every pattern that matches it,
//! in time proportional to the host's length and independent of the
//! number of patterns, with no allocation per lookup.
//!
//! How: every pattern is keyed on a domain (`api.x.com` for both
//! `api.x.com` and `*.api.x.com`). Each key is a slot in an open-addressing
//! table whose node holds two precomputed answers: `exact` (the host *is*
//! the key) and `sub` (the host is a strict subdomain of the key), each
//! already merged with the wildcards of every shorter suffix and the ids
//! that match every host. A lookup finds the host's dots in one word-wide
//! pass, then probes its suffixes from the longest down, skipping label
//! counts no key has, and answers from the first suffix found.
//!
//! Each suffix is hashed on its own from a few overlapping 8-byte loads
//! (no per-byte loop), and a slot stores the key's length and first and
//! last eight bytes, so a key of up to 16 bytes is verified with two
//! integer compares; longer keys are compared in full.
//!
//! Trade-off: compilation does the work (closures over suffixes, duplicated
//! id lists) so that lookups, which run per request, do a handful of
//! probes and one slice borrow. Memory is a few dozen bytes per pattern.

use std::fmt::Write as _;

use super::name::{Host, HostKind};
use super::pattern::HostPattern;

/// Marks an empty table slot.
const EMPTY: u32 = u32::MAX;

/// A range of `HostSet::ids`; a single id is held inline in `start`
/// (`len == 1`), so the most common answer costs no read of the arena.
#[derive(Debug, Clone, Copy, Default)]
struct IdRange {
    start: u32,
    len: u32,
}

/// The two answers of one key, and where its bytes are.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    key_start: u32,
    /// Ids matching a host equal to the key.
    exact: IdRange,
    /// Ids matching a strict subdomain of the key.
    sub: IdRange,
}

/// A table slot: the key's fingerprint (exact for keys of up to 16 bytes)
/// and its node.
#[derive(Debug, Clone, Copy)]
struct Slot {
    first: u64,
    last: u64,
    len: u32,
    node: u32,
}

/// The fingerprint and hash of one suffix.
#[derive(Debug, Clone, Copy)]
struct Probe {
    first: u64,
    last: u64,
    len: u32,
    hash: u64,
}

/// Collects patterns and the ids they stand for, then compiles a [`HostSet`].
#[derive(Debug, Default, Clone)]
pub struct HostSetBuilder {
    entries: Vec<(HostPattern, u32)>,
    always: Vec<u32>,
}

/// A compiled set of host patterns. See the module documentation.
///
/// Invariant: every id list is sorted and free of duplicates.
#[derive(Debug, Clone)]
pub struct HostSet {
    slots: Box<[Slot]>,
    mask: usize,
    /// One bit per 8 table slots' worth of keys, set for every key's hash:
    /// a suffix whose bit is clear is absent without touching the (much
    /// larger) table, which keeps misses in cache at 100,000 keys.
    filter: Box<[u64]>,
    filter_mask: usize,
    nodes: Box<[Node]>,
    keys: Box<[u8]>,
    ids: Box<[u32]>,
    always: IdRange,
    /// Whether some key has a single label (`localhost`, `*.com`).
    single_label: bool,
    patterns: usize,
}

// === impl HostSetBuilder ===

impl HostSetBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `pattern`, answering `id` for every host it matches.
    pub fn insert(&mut self, pattern: &HostPattern, id: u32) -> &mut Self {
        self.entries.push((pattern.clone(), id));
        self
    }

    /// Answers `id` for every host, matched by a pattern or not.
    pub fn always(&mut self, id: u32) -> &mut Self {
        self.always.push(id);
        self
    }

    /// Compiles the set.
    pub fn build(&self) -> HostSet {
        let capacity = (self.entries.len() * 2).next_power_of_two().max(16);
        let mut set = HostSet {
            slots: vec![
                Slot {
                    first: 0,
                    last: 0,
                    len: 0,
                    node: EMPTY,
                };
                capacity
            ]
            .into_boxed_slice(),
            mask: capacity - 1,
            filter: vec![0u64; (capacity * 4).div_ceil(64)].into_boxed_slice(),
            filter_mask: capacity * 4 - 1,
            nodes: Box::default(),
            keys: Box::default(),
            ids: Box::default(),
            always: IdRange::default(),
            single_label: false,
            patterns: self.entries.len(),
        };

        // 1. One node per distinct key; raw (node, is_wildcard, id) triples.
        let mut keys: Vec<u8> = Vec::new();
        let mut answers: Vec<Node> = Vec::with_capacity(self.entries.len());
        let mut raw: Vec<(u32, bool, u32)> = Vec::with_capacity(self.entries.len());
        let mut ip = String::new();
        // Inserting in slot order turns random writes into a forward sweep
        // of the table: compilation is bound by memory, not by hashing.
        let mut order: Vec<(usize, u32)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (pattern, _))| {
                let hash = match pattern {
                    HostPattern::Exact(name) | HostPattern::Wildcard(name) => {
                        let key = name.as_bytes();
                        table_hash(&fingerprint(key, 0), key, 0)
                    }
                    HostPattern::Ipv4(_) => 0,
                };
                (hash as usize & set.mask, i as u32)
            })
            .collect();
        order.sort_unstable();
        for &(_, i) in &order {
            let Some((pattern, id)) = self.entries.get(i as usize) else {
                continue;
            };
            let key: &[u8] = match pattern {
                HostPattern::Exact(name) | HostPattern::Wildcard(name) => name.as_bytes(),
                HostPattern::Ipv4(addr) => {
                    ip.clear();
                    let _ = write!(ip, "{addr}");
                    ip.as_bytes()
                }
            };
            set.single_label |= !key.contains(&b'.');
            let probe = fingerprint(key, 0);
            let node = match set.find_in(&answers, &keys, key, 0, &probe) {
                Some(node) => node,
                None => {
                    let node = answers.len() as u32;
                    set.occupy(&probe, key, node);
                    answers.push(Node {
                        key_start: keys.len() as u32,
                        ..Node::default()
                    });
                    keys.extend_from_slice(key);
                    node
                }
            };
            raw.push((node, matches!(pattern, HostPattern::Wildcard(_)), *id));
        }
        raw.sort_unstable();

        // Where each node's raw triples start in `raw`.
        let nodes = answers.len();
        let mut first = vec![raw.len(); nodes + 1];
        for (i, &(node, _, _)) in raw.iter().enumerate().rev() {
            first[node as usize] = i;
        }
        for n in (0..nodes).rev() {
            first[n] = first[n].min(first[n + 1]);
        }
        let own = |node: usize, wildcard: bool| {
            raw[first[node]..first[node + 1]]
                .iter()
                .filter(move |t| t.1 == wildcard)
                .map(|t| t.2)
        };

        // 2. Precompute each node's answers, visiting keys through their slots.
        let mut ids: Vec<u32> = Vec::with_capacity(4 * nodes + self.always.len());
        let mut always = self.always.clone();
        always.sort_unstable();
        always.dedup();
        set.always = push_set(&mut ids, &mut always.clone());
        let mut closure: Vec<u32> = Vec::new();
        let mut scratch: Vec<u32> = Vec::new();
        for slot in set.slots.iter().filter(|s| s.node != EMPTY) {
            let key = &keys[answers[slot.node as usize].key_start as usize..][..slot.len as usize];
            closure.clear();
            closure.extend_from_slice(&always);
            // Wildcards on strict suffixes of a name key apply to both
            // answers. IPv4 keys have none; a name may end in a digit too
            // (`db.node1`), so the key itself is parsed to tell.
            if !is_ipv4_key(key) {
                for (start, &b) in key.iter().enumerate() {
                    if b == b'.' {
                        let probe = fingerprint(key, start + 1);
                        if let Some(s) = set.find_in(&answers, &keys, key, start + 1, &probe) {
                            closure.extend(own(s as usize, true));
                        }
                    }
                }
            }
            let n = slot.node as usize;
            scratch.clear();
            scratch.extend_from_slice(&closure);
            scratch.extend(own(n, false));
            answers[n].exact = push_set(&mut ids, &mut scratch);
            scratch.clear();
            scratch.extend_from_slice(&closure);
            scratch.extend(own(n, true));
            answers[n].sub = push_set(&mut ids, &mut scratch);
        }

        set.nodes = answers.into_boxed_slice();
        set.keys = keys.into_boxed_slice();
        set.ids = ids.into_boxed_slice();
        set
    }
}

/// Sorts and dedups `set`; holds one id inline, appends more to the arena.
fn push_set(ids: &mut Vec<u32>, set: &mut Vec<u32>) -> IdRange {
    set.sort_unstable();
    set.dedup();
    if let [id] = set[..] {
        return IdRange { start: id, len: 1 };
    }
    let range = IdRange {
        start: ids.len() as u32,
        len: set.len() as u32,
    };
    ids.extend_from_slice(set);
    range
}

// === impl HostSet ===

impl HostSet {
    /// The sorted ids of every pattern matching `host`, plus the ids added
    /// with [`HostSetBuilder::always`]. IPv6 hosts match no pattern.
    #[inline]
    pub fn lookup(&self, host: &Host) -> &[u32] {
        let name = host.as_str().as_bytes();
        let range = match host.kind() {
            HostKind::Ipv6(_) => &self.always,
            HostKind::Ipv4(_) => match self.find(name, 0) {
                Some(n) => &self.nodes[n as usize].exact,
                None => &self.always,
            },
            HostKind::Name => self.lookup_name(name),
        };
        self.slice(range)
    }

    /// Whether `host` matches any pattern or an `always` id exists.
    #[inline]
    pub fn matches(&self, host: &Host) -> bool {
        !self.lookup(host).is_empty()
    }

    /// How many patterns were compiled.
    pub fn len(&self) -> usize {
        self.patterns
    }

    /// Whether no pattern was compiled.
    pub fn is_empty(&self) -> bool {
        self.patterns == 0
    }

    /// Probes the suffixes of `name` from the longest (the whole name) down
    /// and answers from the first one that is a key.
    #[inline]
    fn lookup_name(&self, name: &[u8]) -> &IdRange {
        if let Some(n) = self.find(name, 0) {
            return &self.nodes[n as usize].exact;
        }
        if name.len() <= 64 {
            let mut dots = dot_mask(name);
            // The last suffix (one label) is skipped when no key has one label.
            while dots != 0 && (self.single_label || dots & (dots - 1) != 0) {
                let start = dots.trailing_zeros() as usize + 1;
                dots &= dots - 1;
                if let Some(n) = self.find(name, start) {
                    return &self.nodes[n as usize].sub;
                }
            }
            return &self.always;
        }
        // Names over 64 bytes are rare: walk them byte by byte.
        for (i, &b) in name.iter().enumerate() {
            if b == b'.' {
                if let Some(n) = self.find(name, i + 1) {
                    return &self.nodes[n as usize].sub;
                }
            }
        }
        &self.always
    }

    #[inline(always)]
    fn slice<'a>(&'a self, r: &'a IdRange) -> &'a [u32] {
        if r.len == 1 {
            return std::slice::from_ref(&r.start);
        }
        let start = r.start as usize;
        self.ids.get(start..start + r.len as usize).unwrap_or(&[])
    }

    /// The node of the key equal to `name[start..]`.
    #[inline(always)]
    fn find(&self, name: &[u8], start: usize) -> Option<u32> {
        self.find_in(
            &self.nodes,
            &self.keys,
            name,
            start,
            &fingerprint(name, start),
        )
    }

    #[inline(always)]
    fn find_in(
        &self,
        nodes: &[Node],
        keys: &[u8],
        name: &[u8],
        start: usize,
        p: &Probe,
    ) -> Option<u32> {
        let bit = (p.hash >> 40) as usize & self.filter_mask;
        if self
            .filter
            .get(bit / 64)
            .is_none_or(|w| w & (1 << (bit % 64)) == 0)
        {
            return None;
        }
        let mut i = table_hash(p, name, start) as usize & self.mask;
        loop {
            let slot = &self.slots[i];
            if slot.node == EMPTY {
                return None;
            }
            if slot.len == p.len && slot.first == p.first && slot.last == p.last {
                // Up to 16 bytes the fingerprint is the key; beyond, compare.
                if p.len <= 16 {
                    return Some(slot.node);
                }
                let k = nodes
                    .get(slot.node as usize)
                    .map_or(0, |n| n.key_start as usize);
                if keys.get(k..k + p.len as usize) == name.get(start..) {
                    return Some(slot.node);
                }
            }
            i = (i + 1) & self.mask;
        }
    }

    /// Puts a key into the first free slot for its hash. The table is at
    /// most half full, so a free slot exists.
    fn occupy(&mut self, p: &Probe, key: &[u8], node: u32) {
        let bit = (p.hash >> 40) as usize & self.filter_mask;
        if let Some(w) = self.filter.get_mut(bit / 64) {
            *w |= 1 << (bit % 64);
        }
        let mut i = table_hash(p, key, 0) as usize & self.mask;
        while self.slots[i].node != EMPTY {
            i = (i + 1) & self.mask;
        }
        self.slots[i] = Slot {
            first: p.first,
            last: p.last,
            len: p.len,
            node,
        };
    }
}

// === hashing ===

const SEED: u64 = 0x243f_6a88_85a3_08d3;
const K1: u64 = 0x9e37_79b9_7f4a_7c15;
const K2: u64 = 0xbf58_476d_1ce4_e5b9;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;
const DOTS: u64 = 0x2e2e_2e2e_2e2e_2e2e;

#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = (a as u128) * (b as u128);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline(always)]
fn load8(b: &[u8], i: usize) -> u64 {
    b.get(i..i + 8)
        .and_then(|s| <[u8; 8]>::try_from(s).ok())
        .map_or(0, u64::from_le_bytes)
}

#[inline(always)]
fn load4(b: &[u8], i: usize) -> u64 {
    b.get(i..i + 4)
        .and_then(|s| <[u8; 4]>::try_from(s).ok())
        .map_or(0, |w| u32::from_le_bytes(w) as u64)
}

#[inline(always)]
fn byte(b: &[u8], i: usize) -> u64 {
    b.get(i).copied().unwrap_or(0) as u64
}

/// The fingerprint of `name[start..]`: its length, its first and last eight
/// bytes (overlapping loads; together with the length they determine a
/// string of up to 16 bytes exactly), and a hash of those, which picks the
/// filter bit.
#[inline(always)]
fn fingerprint(name: &[u8], start: usize) -> Probe {
    let end = name.len();
    let len = end.saturating_sub(start);
    let (first, last) = if len >= 8 {
        (load8(name, start), load8(name, end - 8))
    } else if len >= 4 {
        (load4(name, start) | load4(name, end - 4) << 32, 0)
    } else if len > 0 {
        (
            byte(name, start) | byte(name, start + len / 2) << 8 | byte(name, end - 1) << 16,
            0,
        )
    } else {
        (0, 0)
    };
    Probe {
        first,
        last,
        len: len as u32,
        hash: fold_mul(first ^ SEED ^ len as u64, last ^ K1),
    }
}

/// The table hash of `name[start..]`: the fingerprint's hash with the
/// middle of strings over 16 bytes folded in. Computed only after the
/// filter let the suffix through.
#[inline(always)]
fn table_hash(p: &Probe, name: &[u8], start: usize) -> u64 {
    let mut hash = p.hash;
    let mut i = start + 8;
    while i + 8 < name.len() {
        hash = fold_mul(hash ^ load8(name, i), K2);
        i += 8;
    }
    hash
}

/// Bit `i` is set when `name[i]` is a dot; `name` has at most 64 bytes.
/// Eight bytes at a time, without a per-byte loop.
#[inline(always)]
fn dot_mask(name: &[u8]) -> u64 {
    let n = name.len();
    let mut mask = 0u64;
    let mut i = 0;
    while i < n {
        let word = if i + 8 <= n {
            load8(name, i)
        } else if n >= 8 {
            // The tail: the last eight bytes, shifted so byte `i` is first.
            load8(name, n - 8) >> (8 * (i + 8 - n))
        } else {
            name.iter().rev().fold(0u64, |acc, &b| acc << 8 | b as u64)
        };
        let x = word ^ DOTS;
        // High bit of each byte set where the byte equals '.', exactly;
        // bytes shifted in as zero are not dots.
        let zero = !(((x & LOW7) + LOW7) | x) & HIGH;
        // Gather the eight high bits into one byte (byte k -> bit k).
        let bits = zero.wrapping_mul(0x0002_0408_1020_4081) >> 56;
        mask |= bits << i;
        i += 8;
    }
    // Bits past the end (from zero padding) cannot be set.
    mask
}

/// Whether a key is a dotted-quad IPv4 address (the only form IPv4 keys
/// take after normalisation).
fn is_ipv4_key(key: &[u8]) -> bool {
    std::str::from_utf8(key)
        .ok()
        .is_some_and(|k| k.parse::<std::net::Ipv4Addr>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[(&str, u32)], always: &[u32]) -> HostSet {
        let mut b = HostSetBuilder::new();
        for &(p, id) in patterns {
            b.insert(&HostPattern::parse(p).unwrap(), id);
        }
        for &id in always {
            b.always(id);
        }
        b.build()
    }

    fn look(s: &HostSet, host: &str) -> Vec<u32> {
        s.lookup(&Host::parse(host).unwrap()).to_vec()
    }

    #[test]
    fn exact_wildcard_and_depth() {
        let s = set(
            &[
                ("api.example.com", 0),
                ("*.example.com", 1),
                ("*.b.example.com", 2),
                ("example.com", 3),
            ],
            &[],
        );
        assert_eq!(look(&s, "api.example.com"), [0, 1]);
        assert_eq!(look(&s, "API.EXAMPLE.COM."), [0, 1]);
        assert_eq!(look(&s, "x.example.com"), [1]);
        assert_eq!(look(&s, "b.example.com"), [1]);
        assert_eq!(look(&s, "a.b.example.com"), [1, 2]);
        assert_eq!(look(&s, "z.y.a.b.example.com"), [1, 2]);
        assert_eq!(look(&s, "example.com"), [3]);
        assert!(look(&s, "evilexample.com").is_empty());
        assert!(look(&s, "example.com.evil.net").is_empty());
        assert!(look(&s, "com").is_empty());
        assert!(look(&s, "x.api.example.com") == [1]);
    }

    #[test]
    fn names_ending_in_a_digit_keep_their_parents_wildcards() {
        // Found by fuzzing (fuzz/corpus/host/regression-*): a key ending in
        // a digit was taken for an IPv4 address and lost `*.b1`.
        let s = set(
            &[("*.b1", 0), ("a.b1", 1), ("*.node1", 2), ("db.node1", 3)],
            &[],
        );
        assert_eq!(look(&s, "a.b1"), [0, 1]);
        assert_eq!(look(&s, "x.a.b1"), [0]);
        assert_eq!(look(&s, "db.node1"), [2, 3]);
        assert_eq!(look(&s, "x.db.node1"), [2]);
        // IPv4 keys still take no wildcard.
        let s = set(&[("*.b1", 0), ("10.0.0.1", 1)], &[]);
        assert_eq!(look(&s, "10.0.0.1"), [1]);
    }

    #[test]
    fn always_ids_join_every_answer_in_order() {
        let s = set(&[("*.example.com", 5), ("a.example.com", 1)], &[3, 0, 3]);
        assert_eq!(look(&s, "a.example.com"), [0, 1, 3, 5]);
        assert_eq!(look(&s, "b.example.com"), [0, 3, 5]);
        assert_eq!(look(&s, "other.org"), [0, 3]);
        assert_eq!(look(&s, "[::1]"), [0, 3]);
        assert_eq!(look(&s, "10.0.0.1"), [0, 3]);
    }

    #[test]
    fn ipv4_matches_only_its_address_in_any_spelling() {
        let s = set(&[("127.0.0.1", 7), ("*.example.com", 1)], &[]);
        for h in ["127.0.0.1", "2130706433", "0x7f.1", "127.1", "0177.0.0.1"] {
            assert_eq!(look(&s, h), [7], "{h}");
        }
        assert!(look(&s, "127.0.0.2").is_empty());
        assert!(look(&s, "[::ffff:127.0.0.1]").is_empty());
    }

    #[test]
    fn long_labels_and_shared_prefixes() {
        let s = set(
            &[
                ("abcdefghij", 0),
                ("*.abcdefgh", 1),
                ("*.abcdefghijklmnopq.io", 2),
            ],
            &[],
        );
        assert_eq!(look(&s, "abcdefghij"), [0]);
        assert_eq!(look(&s, "ij.abcdefgh"), [1]);
        assert_eq!(look(&s, "x.abcdefghijklmnopq.io"), [2]);
        assert!(look(&s, "abcdefghijklmnopq.io").is_empty());
    }

    #[test]
    fn duplicates_and_empty_sets() {
        let s = set(&[("a.com", 1), ("a.com", 1), ("*.a.com", 1)], &[]);
        assert_eq!(look(&s, "a.com"), [1]);
        assert_eq!(look(&s, "b.a.com"), [1]);
        assert_eq!(s.len(), 3);
        let empty = set(&[], &[]);
        assert!(empty.is_empty());
        assert!(look(&empty, "a.com").is_empty());
    }
}
