//! Responses keyhole makes itself, built in one place.
//!
//! Every one carries an RFC 9209 `Proxy-Status` header naming keyhole and
//! the error type, and a plain-text body saying what happened and what to
//! change. Bodies name hosts and reasons, never a header value, a query, a
//! body or a secret.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::body::ProxyBody;

/// The name keyhole gives itself in `Proxy-Status`.
pub const PROXY_NAME: &str = "keyhole";

/// A refusal or failure that keyhole answers itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status code.
    pub status: StatusCode,
    /// The RFC 9209 error type, e.g. `http_request_denied`.
    pub error: &'static str,
    /// Optional `details` parameter (short, ASCII; escaped when written).
    pub details: Option<String>,
    /// The body: what happened and what to change.
    pub message: String,
}

// === impl Refusal ===

impl Refusal {
    /// A refusal with no details.
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            status,
            error,
            details: None,
            message: message.into(),
        }
    }

    /// Adds a `details` parameter.
    pub fn details(mut self, details: impl Into<String>) -> Self {
        self.details = Some(details.into());
        self
    }

    /// The `Proxy-Status` header value.
    pub fn proxy_status(&self) -> String {
        let mut v = format!("{PROXY_NAME}; error={}", self.error);
        if let Some(d) = &self.details {
            v.push_str("; details=");
            v.push_str(&sf_string(d));
        }
        v
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<ProxyBody> {
        let body = format!("keyhole: {}\n", self.message);
        let len = body.len();
        let mut res = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        );
        *res.status_mut() = self.status;
        let headers = res.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&self.proxy_status()) {
            headers.insert("proxy-status", v);
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        res
    }

    /// The response as raw HTTP/1.1 bytes, for a connection that has no
    /// HTTP server on it (a plaintext client inside a CONNECT tunnel).
    pub fn to_http1_bytes(&self) -> Vec<u8> {
        let body = format!("keyhole: {}\n", self.message);
        format!(
            "HTTP/1.1 {} {}\r\nproxy-status: {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or(""),
            self.proxy_status(),
            body.len(),
        )
        .into_bytes()
    }
}

/// An RFC 8941 string: printable ASCII, `"` and `\` escaped, the rest dropped.
fn sf_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars().filter(|c| (' '..='~').contains(c)) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_status_is_a_valid_structured_field() {
        let r = Refusal::new(StatusCode::BAD_GATEWAY, "tls_certificate_error", "x")
            .details("UnknownIssuer for \"a.com\"\\\n\u{e9}");
        assert_eq!(
            r.proxy_status(),
            r#"keyhole; error=tls_certificate_error; details="UnknownIssuer for \"a.com\"\\""#
        );
        let res = r.into_response();
        assert_eq!(res.status(), 502);
        assert!(res.headers()["proxy-status"]
            .to_str()
            .unwrap()
            .starts_with("keyhole; error="));
    }

    #[test]
    fn raw_bytes_are_a_complete_response() {
        let r = Refusal::new(StatusCode::BAD_REQUEST, "http_protocol_error", "not TLS");
        let text = String::from_utf8(r.to_http1_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"));
        assert!(text.ends_with("\r\n\r\nkeyhole: not TLS\n"));
        assert!(text.contains("content-length: 17\r\n"));
    }
}
