//! Streaming substitution over the chunks of a body.
//!
//! [`Patterns`] compiles a pattern list once (per policy): a leftmost-longest
//! Aho-Corasick automaton that finds matches, and a small automaton over the
//! patterns' proper prefixes that tells how much of the end of the data seen
//! could still begin a match. A [`Stream`] rewrites one body chunk by chunk:
//! every match is handed to a [`Decide`], which replaces it or keeps it.
//! [`replace_all`] does the same on a whole buffer and is the reference.
//!
//! Invariants:
//! - Matches are leftmost-longest and non-overlapping over the whole body; a
//!   kept match is emitted unchanged and its bytes are not scanned again.
//!   However the body is split into chunks, the output and the sequence of
//!   `decide` calls are those of [`replace_all`] on the whole body.
//! - A match is committed (decided and emitted) only when no later byte can
//!   change it: no pattern starting at or before it can reach past the data
//!   seen so far.
//! - The bytes held back are exactly the longest end of the data seen (after
//!   the last committed match) that is a proper prefix of some pattern, so
//!   fewer than [`Patterns::max_len`]: memory does not grow with the body,
//!   and a chunk that ends in no such prefix (say, an event stream's `\n\n`)
//!   is passed on whole, without waiting for the next one.
//! - Zero copy: bytes outside matches go out as slices of the chunk they came
//!   in (a chunk without a match and with nothing held before it goes out as
//!   the same [`Bytes`]); replacements go out as the [`Bytes`] `decide`
//!   returned. Only the held bytes and the seam with the next chunk (at most
//!   `2 * (max_len - 1)` bytes) are copied.
//! - Nothing here shows pattern bytes, which may be secrets: errors name a
//!   pattern by its index, `Debug` shows counts.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, Input, Match, MatchKind};
use bytes::{Bytes, BytesMut};

/// Patterns compiled once (per policy), shared by every stream.
pub struct Patterns {
    /// Leftmost-longest, over bytes; pattern ids are indices into the list.
    automaton: AhoCorasick,
    /// The patterns' proper prefixes, to decide what to hold back.
    prefixes: Prefixes,
    /// Length of the longest pattern; 0 when there is none.
    max_len: usize,
}

/// What to do with one match: replace it with these bytes, or keep it as it
/// was.
pub trait Decide {
    /// `pattern` is the index of the matched pattern in the list given to
    /// [`Patterns::new`]. `Some(bytes)` replaces the match with `bytes` (which
    /// may be empty); `None` keeps it unchanged.
    fn decide(&mut self, pattern: usize) -> Option<Bytes>;
}

/// The state of one body being rewritten.
pub struct Stream {
    /// The shared patterns.
    patterns: Arc<Patterns>,
    /// The end of the data seen that could still begin a match: always a
    /// proper prefix of some pattern, so shorter than the longest one.
    tail: BytesMut,
}

/// Why a pattern list could not be compiled. Names a pattern by its index,
/// never by its bytes.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// A pattern is empty; it would match between every two bytes.
    #[error("pattern {index} is empty; every pattern needs at least one byte")]
    EmptyPattern {
        /// Its index in the list given to [`Patterns::new`].
        index: usize,
    },
    /// The automaton could not be built (too many or too long patterns).
    #[error("cannot build the substitution matcher: {0}")]
    Build(#[from] aho_corasick::BuildError),
}

/// The patterns' proper prefixes as an Aho-Corasick goto and failure
/// automaton (a trie of the patterns with failure links). Reading a window
/// from the root ends in the node of the window's longest suffix that is a
/// prefix of some pattern; the failure chain of that node holds all shorter
/// such suffixes, longest first.
struct Prefixes {
    /// Transitions out of the root, by byte; 0 (the root) for none.
    root: Box<[usize; 256]>,
    /// The trie; index 0 is the root.
    nodes: Vec<Node>,
}

/// One node of [`Prefixes`]: one prefix of some pattern.
struct Node {
    /// Children, sorted by byte. A node with children is a proper prefix.
    edges: Vec<(u8, usize)>,
    /// The node of the longest proper suffix of this prefix that is itself a
    /// prefix of some pattern (0, the root, for none).
    fail: usize,
    /// Length of this prefix.
    depth: usize,
}

// === impl Patterns ===

impl Patterns {
    /// Compiles `patterns`: matches are leftmost-longest, and a match's
    /// pattern is its index in `patterns`. An empty list is allowed (every
    /// stream then passes everything through unchanged); an empty pattern is
    /// refused.
    pub fn new<P: AsRef<[u8]>>(patterns: &[P]) -> Result<Patterns, StreamError> {
        if let Some(index) = patterns.iter().position(|p| p.as_ref().is_empty()) {
            return Err(StreamError::EmptyPattern { index });
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(patterns.iter().map(AsRef::as_ref))?;
        let max_len = patterns.iter().map(|p| p.as_ref().len()).max().unwrap_or(0);
        Ok(Patterns {
            automaton,
            prefixes: Prefixes::new(patterns),
            max_len,
        })
    }

    /// How many patterns there are.
    pub fn len(&self) -> usize {
        self.automaton.patterns_len()
    }

    /// The leftmost-longest matches in one complete buffer, as a stream
    /// would find them if the buffer were its whole input.
    pub fn find_iter<'a>(&'a self, haystack: &'a [u8]) -> impl Iterator<Item = Match> + 'a {
        self.automaton.find_iter(haystack)
    }

    /// Whether there is no pattern (streams then change nothing).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Length of the longest pattern (0 when there is none). A stream holds
    /// back fewer bytes than this.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Scans `buf[from..]`, the data seen so far from the last committed
    /// match (or held tail) on, committing the matches no later byte can
    /// change, or all of them at the end of the body. Emits slices of `buf`
    /// and replacements up to the returned position; the caller holds
    /// `buf[returned..]`. Returns (replaced, hold).
    fn scan(
        &self,
        buf: &Bytes,
        from: usize,
        end_of_body: bool,
        decide: &mut impl Decide,
        out: &mut Vec<Bytes>,
    ) -> (usize, usize) {
        let len = buf.len();
        // A match starting before `near` ends within `buf`, and so does every
        // match starting before it: it is final.
        let near = len.saturating_sub(self.max_len.saturating_sub(1));
        let mut cursor = Cursor::new(from);
        // The first position at or after `cursor.scanned` from which `buf` is
        // a proper prefix of a pattern, once computed.
        let mut open: Option<usize> = None;
        for m in self
            .automaton
            .find_iter(Input::new(&buf[..]).span(from..len))
        {
            if !end_of_body && m.start() >= near {
                let first = match open {
                    Some(first) if first >= cursor.scanned => first,
                    _ => self.first_open(buf, cursor.scanned),
                };
                open = Some(first);
                if m.start() >= first {
                    // A pattern starting at or before this match may reach
                    // past `buf`: later bytes decide.
                    break;
                }
            }
            cursor.commit(buf, &m, decide, out);
        }
        let hold = if end_of_body {
            len
        } else {
            match open {
                Some(first) if first >= cursor.scanned => first,
                _ => self.first_open(buf, cursor.scanned),
            }
        };
        cursor.emit(buf, hold, out);
        (cursor.replaced, hold)
    }

    /// Scans the seam `tail + chunk[..max_len - 1]` for the matches that
    /// start in the tail (`seam[..tail]`): the seam holds every byte such a
    /// match, or any match starting before it, can reach, so they are final.
    /// Emits up to the end of the tail or of the last match committed,
    /// whichever is further; returns (replaced, that position).
    fn seam(
        &self,
        seam: &Bytes,
        tail: usize,
        decide: &mut impl Decide,
        out: &mut Vec<Bytes>,
    ) -> (usize, usize) {
        let mut cursor = Cursor::new(0);
        for m in self.automaton.find_iter(&seam[..]) {
            if m.start() >= tail {
                break;
            }
            cursor.commit(seam, &m, decide, out);
        }
        let done = cursor.scanned.max(tail);
        cursor.emit(seam, done, out);
        (cursor.replaced, done)
    }

    /// The first position at or after `from` from which `buf` (the data seen)
    /// is a proper prefix of some pattern, so could still begin a match;
    /// `buf.len()` when there is none.
    fn first_open(&self, buf: &[u8], from: usize) -> usize {
        let len = buf.len();
        // A proper prefix is shorter than the longest pattern.
        let start = from.max(len.saturating_sub(self.max_len.saturating_sub(1)));
        match buf.get(start..) {
            Some(window) if !window.is_empty() => len - self.prefixes.open_len(window),
            _ => len,
        }
    }
}

impl fmt::Debug for Patterns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Patterns")
            .field("len", &self.len())
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

// === impl Decide ===

impl<F: FnMut(usize) -> Option<Bytes>> Decide for F {
    fn decide(&mut self, pattern: usize) -> Option<Bytes> {
        self(pattern)
    }
}

// === impl Stream ===

impl Stream {
    /// A new body, with nothing seen yet.
    pub fn new(patterns: Arc<Patterns>) -> Stream {
        Stream {
            patterns,
            tail: BytesMut::new(),
        }
    }

    /// Feeds one chunk; appends the bytes that are final to `out` (possibly
    /// none, possibly several [`Bytes`]; never an empty one). Returns how many
    /// matches were replaced.
    ///
    /// Holds back the end of the data seen that could still begin a match
    /// (fewer than [`Patterns::max_len`] bytes); [`Stream::finish`] flushes
    /// it.
    pub fn push(&mut self, chunk: Bytes, decide: &mut impl Decide, out: &mut Vec<Bytes>) -> usize {
        if chunk.is_empty() {
            return 0;
        }
        let patterns = &*self.patterns;
        if self.tail.is_empty() {
            let (replaced, hold) = patterns.scan(&chunk, 0, false, decide, out);
            self.tail.extend_from_slice(&chunk[hold..]);
            return replaced;
        }
        // A tail is held, so the longest pattern has at least two bytes.
        let reach = patterns.max_len.saturating_sub(1);
        if chunk.len() < reach {
            // Small chunk: scan it together with the tail (both short).
            self.tail.extend_from_slice(&chunk);
            let buf = self.tail.split().freeze();
            let (replaced, hold) = patterns.scan(&buf, 0, false, decide, out);
            self.tail.extend_from_slice(&buf[hold..]);
            return replaced;
        }
        // Settle the matches that start in the tail on a short copy of the
        // seam, then scan the chunk itself from where they end.
        let tail = self.tail.len();
        self.tail.extend_from_slice(&chunk[..reach]);
        let seam = self.tail.split().freeze();
        let (in_seam, done) = patterns.seam(&seam, tail, decide, out);
        let (in_chunk, hold) = patterns.scan(&chunk, done - tail, false, decide, out);
        self.tail.extend_from_slice(&chunk[hold..]);
        in_seam + in_chunk
    }

    /// End of body: flushes the held tail (with its matches) to `out`.
    /// Returns how many matches were replaced. The stream is then empty.
    pub fn finish(&mut self, decide: &mut impl Decide, out: &mut Vec<Bytes>) -> usize {
        if self.tail.is_empty() {
            return 0;
        }
        let buf = self.tail.split().freeze();
        self.patterns.scan(&buf, 0, true, decide, out).0
    }

    /// Bytes currently held back (always fewer than [`Patterns::max_len`]);
    /// for tests and bounds.
    pub fn held(&self) -> usize {
        self.tail.len()
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream")
            .field("patterns", &self.patterns)
            .field("held", &self.tail.len())
            .finish()
    }
}

/// Replaces, in the whole of `input`, each leftmost-longest match that
/// `decide` replaces, keeping the others; the reference for [`Stream`].
pub fn replace_all(patterns: &Patterns, input: &[u8], decide: &mut impl Decide) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut copied = 0;
    for m in patterns.automaton.find_iter(input) {
        if let Some(replacement) = decide.decide(m.pattern().as_usize()) {
            out.extend_from_slice(&input[copied..m.start()]);
            out.extend_from_slice(&replacement);
            copied = m.end();
        }
    }
    out.extend_from_slice(&input[copied..]);
    out
}

// === impl Cursor ===

/// Progress through one buffer: what has been emitted and scanned.
struct Cursor {
    /// Everything before this has been emitted.
    emitted: usize,
    /// Everything before this has been scanned and committed (the end of the
    /// last committed match, kept or replaced).
    scanned: usize,
    /// Matches replaced.
    replaced: usize,
}

impl Cursor {
    fn new(from: usize) -> Cursor {
        Cursor {
            emitted: from,
            scanned: from,
            replaced: 0,
        }
    }

    /// Commits `m`: asks `decide`, and on a replacement emits the bytes
    /// before it and the replacement. A kept match stays unemitted, to go out
    /// in one slice with the bytes around it.
    fn commit(&mut self, buf: &Bytes, m: &Match, decide: &mut impl Decide, out: &mut Vec<Bytes>) {
        if let Some(replacement) = decide.decide(m.pattern().as_usize()) {
            self.emit(buf, m.start(), out);
            if !replacement.is_empty() {
                out.push(replacement);
            }
            self.emitted = m.end();
            self.replaced += 1;
        }
        self.scanned = m.end();
    }

    /// Emits `buf[emitted..to]`, if not empty, as a slice of `buf`.
    fn emit(&mut self, buf: &Bytes, to: usize, out: &mut Vec<Bytes>) {
        if to > self.emitted {
            out.push(buf.slice(self.emitted..to));
            self.emitted = to;
        }
    }
}

// === impl Prefixes ===

impl Prefixes {
    /// The trie of `patterns` with its failure links (breadth first).
    fn new<P: AsRef<[u8]>>(patterns: &[P]) -> Prefixes {
        let mut nodes = vec![Node {
            edges: Vec::new(),
            fail: 0,
            depth: 0,
        }];
        for pattern in patterns {
            let mut at = 0;
            for &byte in pattern.as_ref() {
                at = match nodes[at].edges.binary_search_by_key(&byte, |&(b, _)| b) {
                    Ok(i) => nodes[at].edges[i].1,
                    Err(i) => {
                        let next = nodes.len();
                        let depth = nodes[at].depth + 1;
                        nodes.push(Node {
                            edges: Vec::new(),
                            fail: 0,
                            depth,
                        });
                        nodes[at].edges.insert(i, (byte, next));
                        next
                    }
                };
            }
        }
        let mut root = Box::new([0; 256]);
        for &(byte, child) in &nodes[0].edges {
            root[usize::from(byte)] = child;
        }
        let mut prefixes = Prefixes { root, nodes };
        // Children of the root fail to the root; deeper nodes to the step
        // from their parent's failure, found once that is known.
        let mut queue: VecDeque<usize> = prefixes.nodes[0].edges.iter().map(|e| e.1).collect();
        while let Some(at) = queue.pop_front() {
            for i in 0..prefixes.nodes[at].edges.len() {
                let (byte, child) = prefixes.nodes[at].edges[i];
                // `at` is not the root, so this step lands on a node
                // shallower than `child`.
                let fail = prefixes.step(prefixes.nodes[at].fail, byte);
                prefixes.nodes[child].fail = fail;
                queue.push_back(child);
            }
        }
        prefixes
    }

    /// The node reached from `at` by `byte`, following failure links.
    fn step(&self, mut at: usize, byte: u8) -> usize {
        loop {
            if at == 0 {
                return self.root[usize::from(byte)];
            }
            let node = &self.nodes[at];
            if let Ok(i) = node.edges.binary_search_by_key(&byte, |&(b, _)| b) {
                return node.edges[i].1;
            }
            at = node.fail;
        }
    }

    /// Length of the longest suffix of `window` that is a proper prefix of
    /// some pattern (0 for none). Linear in `window`.
    fn open_len(&self, window: &[u8]) -> usize {
        let mut at = 0;
        for &byte in window {
            at = self.step(at, byte);
        }
        // A node without children is a whole pattern that nothing extends.
        while at != 0 && self.nodes[at].edges.is_empty() {
            at = self.nodes[at].fail;
        }
        self.nodes[at].depth
    }
}

#[cfg(test)]
mod tests;
