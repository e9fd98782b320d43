//! The token endpoint's answer (RFC 6749 sections 5.1 and 5.2), parsed
//! within a bound, and [`RefreshError`]: every way a refresh can fail.
//!
//! Nothing the endpoint sends is ever repeated in an error: not the body,
//! not `error_description` (servers have been seen to echo the refresh
//! token there), only the status and an OAuth error code that is a short
//! token of `[A-Za-z0-9_.-]`.
//!
//! Decisions this parser makes:
//! - `token_type` absent is tolerated (some servers omit it although RFC
//!   6749 requires it): the credential is a bearer credential and MCP
//!   mandates Bearer. Present, it must be `Bearer` in any case.
//! - `expires_in` may be a JSON integer or a string of digits (some
//!   servers send `"3600"`); it must be positive. Absent: expiry unknown.
//! - A 2xx answer with an `error` and no `access_token` (some servers
//!   answer errors with 200) is treated as the error it names.
//! - A 4xx is a refusal whatever its body: without an OAuth `error` it is
//!   `Rejected` with no code (a wrong token endpoint answering 404 needs
//!   the user as much as `invalid_client` does). 408 and 429 are transient
//!   and reported as [`RefreshError::Server`].
//! - An empty `refresh_token` counts as absent (the old one is kept).

use serde::Deserialize;
use serde_json::Value;

use super::bearer::is_header_safe;
use super::tokens::{REFRESH_TIMEOUT, TRANSIENT_BACKOFF, WAIT_TIMEOUT};
use crate::secret::Secret;

/// Largest token endpoint answer keyhole reads. Real ones are a few
/// hundred bytes to a few KiB (a JWT access token, perhaps an id_token);
/// 64 KiB leaves room for the largest while bounding what a misbehaving
/// endpoint makes keyhole hold per refresh. The proxy reads at most this
/// many bytes plus one, so that a larger answer is seen as larger.
pub const MAX_TOKEN_RESPONSE_BYTES: usize = 64 * 1024;

/// Longest OAuth error code kept from an answer.
pub const MAX_ERROR_CODE_LEN: usize = 64;

/// A successful refresh. Secrets stay [`Secret`]s.
#[derive(Debug)]
pub struct TokenResponse {
    /// The new access token: not empty, valid in a header value.
    pub access_token: Secret,
    /// Seconds until the access token expires; `None` when not given.
    pub expires_in: Option<u64>,
    /// A rotated refresh token; `None` keeps the one in force.
    pub refresh_token: Option<Secret>,
    /// The granted scope, when the server says.
    pub scope: Option<String>,
}

/// Why a refresh failed. Messages say what happened and what to do, and
/// never hold a token, a secret or anything of the endpoint's body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefreshError {
    /// `invalid_grant`: the refresh token is expired or revoked.
    #[error("the token endpoint refused the refresh token (invalid_grant): it has expired or been revoked; re-authorise the credential: update its access_token/refresh through the admin API or the config file")]
    InvalidGrant,
    /// Another refusal (`invalid_client`, `unauthorized_client`, a 404...).
    #[error("the token endpoint refused the refresh with HTTP {status} ({}); check the refresh's client_id, client secret, token_endpoint, token_endpoint_auth and scope, then re-authorise the credential: update its access_token/refresh through the admin API or the config file", .code.as_deref().unwrap_or("no OAuth error code"))]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The OAuth `error` code, when it is a short plain token.
        code: Option<String>,
    },
    /// 5xx, 408 or 429: the endpoint could not serve the refresh now.
    #[error("the token endpoint answered HTTP {status}; keyhole tries again after {}s; if this lasts, check the token endpoint's service, or re-authorise the credential: update its access_token/refresh through the admin API or the config file", TRANSIENT_BACKOFF.whole_seconds())]
    Server {
        /// The HTTP status.
        status: u16,
    },
    /// No answer within [`REFRESH_TIMEOUT`].
    #[error("the token endpoint did not answer within {}s; keyhole tries again after {}s; check that the token endpoint is reachable from keyhole", REFRESH_TIMEOUT.as_secs(), TRANSIENT_BACKOFF.whole_seconds())]
    Timeout,
    /// Connecting or talking to the endpoint failed. The text is the
    /// proxy's; it must never hold a token, a header value or a body.
    #[error("cannot reach the token endpoint: {0}; keyhole tries again after {backoff}s; check the token_endpoint URL and that keyhole can reach it", backoff = TRANSIENT_BACKOFF.whole_seconds())]
    Transport(String),
    /// The answer is not a usable token response; the text says which
    /// part (never its content).
    #[error("the token endpoint's answer is not a usable token response ({0}); check that token_endpoint is the OAuth token endpoint; keyhole tries again after {backoff}s", backoff = TRANSIENT_BACKOFF.whole_seconds())]
    Malformed(&'static str),
    /// Waiting for another refresh of the same credential took longer than
    /// [`WAIT_TIMEOUT`].
    #[error("another refresh of this credential did not finish within {}s; try again", WAIT_TIMEOUT.as_secs())]
    WaitTimeout,
}

// === impl RefreshError ===

impl RefreshError {
    /// Whether only new tokens from the user can fix it (`invalid_grant`
    /// and other refusals); the others are retried after a backoff.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            RefreshError::InvalidGrant | RefreshError::Rejected { .. }
        )
    }

    /// A short name for metrics labels and log fields.
    pub fn kind(&self) -> &'static str {
        match self {
            RefreshError::InvalidGrant => "invalid_grant",
            RefreshError::Rejected { .. } => "rejected",
            RefreshError::Server { .. } => "server",
            RefreshError::Timeout => "timeout",
            RefreshError::Transport(_) => "transport",
            RefreshError::Malformed(_) => "malformed",
            RefreshError::WaitTimeout => "wait_timeout",
        }
    }
}

/// The fields keyhole reads; others are ignored. Secrets deserialise
/// straight into [`Secret`]; the rest stay loose [`Value`]s so that a
/// wrong type is judged here, never by a serde message that could echo it.
#[derive(Deserialize)]
struct RawAnswer {
    access_token: Option<Secret>,
    token_type: Option<Value>,
    expires_in: Option<Value>,
    refresh_token: Option<Secret>,
    scope: Option<Value>,
    error: Option<Value>,
}

/// Parses the token endpoint's answer. `content_type` only sharpens the
/// error for a body that is not JSON. See the module documentation.
pub fn parse_response(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<TokenResponse, RefreshError> {
    if body.len() > MAX_TOKEN_RESPONSE_BYTES {
        return Err(RefreshError::Malformed("the answer is larger than 64 KiB"));
    }
    match status {
        200..=299 => success(status, content_type, body),
        408 | 429 | 500..=599 => Err(RefreshError::Server { status }),
        400..=499 => Err(refusal(status, json_object(content_type, body).ok())),
        _ => Err(RefreshError::Malformed(
            "an unexpected status (1xx or a redirect, which keyhole does not follow)",
        )),
    }
}

fn success(
    status: u16,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<TokenResponse, RefreshError> {
    let raw = json_object(content_type, body)?;
    let Some(access_token) = raw.access_token else {
        if raw.error.is_some() {
            return Err(refusal(status, Some(raw)));
        }
        return Err(RefreshError::Malformed("no access_token"));
    };
    if access_token.is_empty() {
        return Err(RefreshError::Malformed("access_token is empty"));
    }
    if !is_header_safe(access_token.expose()) {
        return Err(RefreshError::Malformed(
            "access_token holds characters an HTTP header cannot carry",
        ));
    }
    match &raw.token_type {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        Some(_) => return Err(RefreshError::Malformed("token_type is not Bearer")),
    }
    let expires_in = match raw.expires_in {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(n.as_u64().filter(|s| *s > 0).ok_or(
            RefreshError::Malformed("expires_in is not a positive whole number of seconds"),
        )?),
        Some(Value::String(s)) => Some(
            s.parse::<u64>()
                .ok()
                .filter(|n| *n > 0 && s.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(RefreshError::Malformed(
                    "expires_in is not a positive whole number of seconds",
                ))?,
        ),
        Some(_) => {
            return Err(RefreshError::Malformed(
                "expires_in is not a positive whole number of seconds",
            ))
        }
    };
    let refresh_token = raw.refresh_token.filter(|t| !t.is_empty());
    if refresh_token
        .as_ref()
        .is_some_and(|t| t.expose().bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)))
    {
        return Err(RefreshError::Malformed(
            "refresh_token holds a CR, LF or NUL character",
        ));
    }
    let scope = match raw.scope {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    Ok(TokenResponse {
        access_token,
        expires_in,
        refresh_token,
        scope,
    })
}

/// A JSON object's fields, or why the body is not one.
fn json_object(content_type: Option<&str>, body: &[u8]) -> Result<RawAnswer, RefreshError> {
    // A struct also deserialises from a JSON array: insist on an object.
    let starts_as_object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    if starts_as_object {
        if let Ok(raw) = serde_json::from_slice::<RawAnswer>(body) {
            return Ok(raw);
        }
    }
    let declared_json = content_type.is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    });
    Err(RefreshError::Malformed(if declared_json {
        "not a JSON object with the token fields"
    } else {
        "not JSON; keyhole asks for application/json"
    }))
}

/// The error of a refusal: `invalid_grant`, or `Rejected` with the code
/// when it is a plain short token.
fn refusal(status: u16, raw: Option<RawAnswer>) -> RefreshError {
    let code = raw.and_then(|r| match r.error {
        Some(Value::String(code)) => Some(code),
        _ => None,
    });
    match code {
        Some(code) if code == "invalid_grant" => RefreshError::InvalidGrant,
        code => RefreshError::Rejected {
            status,
            code: code.filter(|c| is_plain_code(c)),
        },
    }
}

fn is_plain_code(code: &str) -> bool {
    (1..=MAX_ERROR_CODE_LEN).contains(&code.len())
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: Option<&str> = Some("application/json; charset=utf-8");

    fn ok(body: &str) -> TokenResponse {
        parse_response(200, JSON, body.as_bytes()).unwrap()
    }

    fn err(status: u16, body: &str) -> RefreshError {
        parse_response(status, JSON, body.as_bytes()).unwrap_err()
    }

    #[test]
    fn a_full_answer() {
        let r = ok(
            r#"{"access_token": "at_new", "token_type": "bearer", "expires_in": 3600,
                "refresh_token": "rt_new", "scope": "read", "id_token": "x"}"#,
        );
        assert_eq!(r.access_token.expose(), "at_new");
        assert_eq!(r.expires_in, Some(3600));
        assert_eq!(r.refresh_token.unwrap().expose(), "rt_new");
        assert_eq!(r.scope.as_deref(), Some("read"));
    }

    #[test]
    fn optional_fields() {
        let r = ok(r#"{"access_token": "at"}"#);
        assert!(r.expires_in.is_none() && r.refresh_token.is_none() && r.scope.is_none());
        let r = ok(
            r#"{"access_token": "at", "token_type": "Bearer", "expires_in": "120", "refresh_token": ""}"#,
        );
        assert_eq!(r.expires_in, Some(120));
        assert!(r.refresh_token.is_none(), "empty keeps the old one");
        let r = ok(r#"{"access_token": "at", "expires_in": null, "token_type": null}"#);
        assert!(r.expires_in.is_none());
        assert!(parse_response(201, None, br#"{"access_token": "at"}"#).is_ok());
    }

    #[test]
    fn unusable_successes_are_malformed() {
        for body in [
            r#"{"token_type": "Bearer"}"#,
            r#"{"access_token": ""}"#,
            r#"{"access_token": "a\r\nX-Evil: 1"}"#,
            r#"{"access_token": "a\u0000b"}"#,
            r#"{"access_token": "a\u007fb"}"#,
            r#"{"access_token": "at", "token_type": "DPoP"}"#,
            r#"{"access_token": "at", "token_type": 1}"#,
            r#"{"access_token": "at", "expires_in": 0}"#,
            r#"{"access_token": "at", "expires_in": -5}"#,
            r#"{"access_token": "at", "expires_in": 1.5}"#,
            r#"{"access_token": "at", "expires_in": "+60"}"#,
            r#"{"access_token": "at", "expires_in": "soon"}"#,
            r#"{"access_token": "at", "expires_in": true}"#,
            r#"{"access_token": "at", "refresh_token": "r\nx"}"#,
            r#"{"access_token": 12345}"#,
            r#"["at", "Bearer", 3600]"#,
            r#"{"access_token": "at", "access_token": "other"}"#,
            "access_token=at&token_type=bearer",
            "",
        ] {
            assert!(
                matches!(err(200, body), RefreshError::Malformed(_)),
                "{body}"
            );
        }
        let e = parse_response(200, Some("text/html"), b"<html>").unwrap_err();
        assert_eq!(
            e,
            RefreshError::Malformed("not JSON; keyhole asks for application/json")
        );
    }

    #[test]
    fn errors_by_status_and_code() {
        assert_eq!(
            err(
                400,
                r#"{"error": "invalid_grant", "error_description": "rt_secret"}"#
            ),
            RefreshError::InvalidGrant
        );
        assert_eq!(
            err(401, r#"{"error": "invalid_client"}"#),
            RefreshError::Rejected {
                status: 401,
                code: Some("invalid_client".into())
            }
        );
        assert_eq!(
            err(404, "<html>not found</html>"),
            RefreshError::Rejected {
                status: 404,
                code: None
            }
        );
        assert_eq!(
            err(200, r#"{"error": "bad_refresh_token"}"#),
            RefreshError::Rejected {
                status: 200,
                code: Some("bad_refresh_token".into())
            }
        );
        assert_eq!(
            err(200, r#"{"error": "invalid_grant"}"#),
            RefreshError::InvalidGrant
        );
        for status in [500, 502, 503, 429, 408] {
            assert_eq!(err(status, "{}"), RefreshError::Server { status });
        }
        for status in [100, 302, 304] {
            assert!(
                matches!(err(status, ""), RefreshError::Malformed(_)),
                "{status}"
            );
        }
    }

    #[test]
    fn codes_are_kept_only_when_plain_and_short() {
        for code in ["rt_abc def", "x\"y", "", "é", &"a".repeat(65)] {
            let body = serde_json::json!({ "error": code }).to_string();
            assert_eq!(
                err(400, &body),
                RefreshError::Rejected {
                    status: 400,
                    code: None
                },
                "{code}"
            );
        }
        let body = serde_json::json!({ "error": "a.b-c_D9" }).to_string();
        assert_eq!(
            err(400, &body),
            RefreshError::Rejected {
                status: 400,
                code: Some("a.b-c_D9".into())
            }
        );
        assert_eq!(
            err(400, r#"{"error": 7}"#),
            RefreshError::Rejected {
                status: 400,
                code: None
            }
        );
    }

    #[test]
    fn the_body_is_bounded() {
        let big = format!(
            r#"{{"access_token": "at", "pad": "{}"}}"#,
            "x".repeat(MAX_TOKEN_RESPONSE_BYTES)
        );
        assert!(matches!(err(200, &big), RefreshError::Malformed(_)));
        let fits = format!(
            r#"{{"access_token": "at", "p": "{}"}}"#,
            "x".repeat(MAX_TOKEN_RESPONSE_BYTES - 40)
        );
        assert!(parse_response(200, JSON, fits.as_bytes()).is_ok());
    }

    #[test]
    fn messages_never_echo_the_answer() {
        let cases = [
            err(
                400,
                r#"{"error": "invalid_grant rt_SECRET", "error_description": "rt_SECRET"}"#,
            ),
            err(401, r#"{"error": "rt_SECRET rt_SECRET"}"#),
            err(200, r#"{"access_token": "rt_SECRET\n"}"#),
            err(
                200,
                r#"{"access_token": "rt_SECRET", "token_type": "rt_SECRET"}"#,
            ),
            err(500, r#"{"error": "rt_SECRET"}"#),
        ];
        for e in cases {
            let shown = format!("{e} {e:?}");
            assert!(!shown.contains("rt_SECRET"), "{shown}");
            assert!(shown.contains("token endpoint"), "{shown}");
        }
        assert!(RefreshError::InvalidGrant
            .to_string()
            .contains("re-authorise the credential"));
        assert!(RefreshError::InvalidGrant.is_permanent());
        assert!(!RefreshError::Server { status: 503 }.is_permanent());
        assert_eq!(RefreshError::Timeout.kind(), "timeout");
    }
}
