//! [`Secret`]: a credential value that cannot be printed, logged or
//! serialised by accident.
//!
//! The type has a redacting `Debug`, no `Display` and no `Serialize`, so a
//! `{:?}` in a log line or an error shows `Secret(<redacted>)` and anything
//! else fails to compile. The only way to the bytes is
//! [`Secret::expose`], whose name makes every use easy to find in review.
//! The value is wiped from memory when dropped.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};
use zeroize::Zeroizing;

/// A secret value: an API key, a token, a client secret.
///
/// Invariant: the value is never part of any `Debug` output, error message
/// or serialised form produced by keyhole.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

// === impl Secret ===

impl Secret {
    /// Wraps a value. The caller gives up its copy.
    pub fn new(value: String) -> Self {
        Self(Zeroizing::new(value))
    }

    /// The secret's text. Call this only where the value must leave keyhole
    /// (into an upstream request) or be compared; never to log or report.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes; safe to report.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;

        impl Visitor<'_> for SecretVisitor {
            type Value = Secret;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret::new(v.to_owned()))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Secret, E> {
                Ok(Secret::new(v))
            }

            // serde's default messages echo a wrong-typed value ("invalid
            // type: integer `123`"): a secret written as a number must not
            // reach an error message, so these name the type only.
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Secret, E> {
                Err(E::custom(
                    "a secret must be a JSON string; a number was given (not shown)",
                ))
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Secret, E> {
                Err(E::custom(
                    "a secret must be a JSON string; a number was given (not shown)",
                ))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom(
                    "a secret must be a JSON string; a number was given (not shown)",
                ))
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom(
                    "a secret must be a JSON string; a boolean was given",
                ))
            }
        }

        // `deserialize_any`, so that a wrong type reaches the visitor (whose
        // messages hide it) even through serde's buffering of tagged enums.
        deserializer.deserialize_any(SecretVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts() {
        let s = Secret::new("ghp_realsecret".into());
        let shown = format!("{s:?} {:#?}", Some(&s));
        assert!(!shown.contains("ghp_realsecret"), "{shown}");
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn deserializes_from_json_string() {
        let s: Secret = serde_json::from_str(r#""abc""#).unwrap();
        assert_eq!(s.expose(), "abc");
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn type_errors_do_not_echo_input() {
        // A wrong type names the type only; strings are always accepted.
        let err = serde_json::from_str::<Secret>("true")
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be a JSON string"), "{err}");
        for number in ["987654321", "-987654321", "9876.54321"] {
            let err = serde_json::from_str::<Secret>(number)
                .unwrap_err()
                .to_string();
            assert!(!err.contains("987654"), "{err}");
        }
    }
}
