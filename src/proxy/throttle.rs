//! [`Throttle`]: a warning that repeats for every request (a placeholder
//! sent where its credential does not apply, on every call of an agent's
//! loop) is logged at most once per [`WARNING_INTERVAL`] per kind.
//!
//! The audit log and `/metrics` still count every event; the log says
//! what is wrong without drowning the lines around it, and keyhole does
//! not spend a formatted line per request on it. Kinds are hashed into a
//! fixed table of atomics: no lock, no allocation, bounded memory. The
//! trade-off: two kinds that share a slot throttle each other (one of
//! them may wait up to a minute for its next line).

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shortest time between two lines of one kind of warning.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// Slots of the table: kinds of warning told apart. A sandbox's repeated
/// mistakes are a handful of (credential, host, reason) kinds.
const SLOTS: usize = 256;

/// See the module documentation.
pub struct Throttle {
    start: Instant,
    /// Per slot: seconds since `start` of the last line, plus one (0: never).
    last: [AtomicU64; SLOTS],
}

// === impl Throttle ===

impl Throttle {
    /// A table where every kind may log at once.
    pub fn new() -> Throttle {
        Throttle {
            start: Instant::now(),
            last: [const { AtomicU64::new(0) }; SLOTS],
        }
    }

    /// Whether a warning of this kind may be logged now; if so, the next
    /// one may only after [`WARNING_INTERVAL`].
    pub fn allow(&self, kind: impl Hash) -> bool {
        let mut hasher = Fnv(0xcbf2_9ce4_8422_2325);
        kind.hash(&mut hasher);
        let slot = &self.last[(hasher.finish() as usize) % SLOTS];
        let now = self.start.elapsed().as_secs() + 1;
        let last = slot.load(Ordering::Relaxed);
        if last != 0 && now < last + WARNING_INTERVAL.as_secs() {
            return false;
        }
        // One of several threads racing here wins; the others stay quiet.
        slot.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new()
    }
}

/// FNV-1a: a few instructions per byte for short keys (a credential index
/// and a host name), where SipHash's set-up dominates.
struct Fnv(u64);

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_per_interval_per_kind() {
        let t = Throttle::new();
        assert!(t.allow((1u32, "api.example.com")));
        assert!(!t.allow((1u32, "api.example.com")));
        assert!(t.allow((2u32, "api.example.com")));
        assert!(t.allow((1u32, "other.example.com")));
        // Logged at the start, two intervals ago: allowed again, once.
        let old = Throttle {
            start: Instant::now() - 2 * WARNING_INTERVAL,
            last: [const { AtomicU64::new(1) }; SLOTS],
        };
        assert!(old.allow((1u32, "api.example.com")));
        assert!(!old.allow((1u32, "api.example.com")));
    }
}
