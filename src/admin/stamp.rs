//! New ids and timestamps for objects made through the admin API.

use ring::rand::{SecureRandom, SystemRandom};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::error::ApiError;

/// Random characters after the prefix of a new id (base62: about 143 bits).
pub const ID_RANDOM_CHARS: usize = 24;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `prefix` and [`ID_RANDOM_CHARS`] base62 characters from the system's
/// secure random source, e.g. `vcrd_011CZkZEMt8gZan2iYOQfSkw`.
pub fn new_id(prefix: &str) -> Result<String, ApiError> {
    let rng = SystemRandom::new();
    let mut id = String::with_capacity(prefix.len() + ID_RANDOM_CHARS);
    id.push_str(prefix);
    let mut buf = [0u8; 64];
    while id.len() < prefix.len() + ID_RANDOM_CHARS {
        rng.fill(&mut buf).map_err(|_| {
            ApiError::Internal("the system's random source failed; try again".into())
        })?;
        // Rejection sampling: 248 = 4 * 62, so `b % 62` stays uniform.
        for b in buf.iter().filter(|b| **b < 248) {
            if id.len() == prefix.len() + ID_RANDOM_CHARS {
                break;
            }
            id.push(char::from(BASE62[usize::from(*b % 62)]));
        }
    }
    Ok(id)
}

/// The current time, to the millisecond (as clients parse it everywhere).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_millisecond(now.millisecond()).unwrap_or(now)
}

/// `t` in RFC 3339 UTC.
pub fn format(t: OffsetDateTime) -> Result<String, ApiError> {
    t.format(&Rfc3339).map_err(|e| {
        ApiError::Internal(format!(
            "the current time cannot be written as RFC 3339 ({e}); check the system clock"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_base62_and_distinct() {
        let a = new_id("vcrd_").unwrap();
        let b = new_id("vcrd_").unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 5 + ID_RANDOM_CHARS);
        assert!(a[5..].bytes().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn timestamps_are_rfc3339_millis() {
        let s = format(now()).unwrap();
        assert!(s.ends_with('Z'), "{s}");
        assert!(crate::model::rules::parse_timestamp(&s).is_some());
        assert!(s.len() <= "2026-03-15T10:00:00.123Z".len(), "{s}");
    }
}
