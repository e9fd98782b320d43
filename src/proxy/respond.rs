//! Responses keyhole makes itself, built in one place from one type.
//!
//! [`ProxyError`] is every refusal and failure keyhole answers itself: it
//! knows its status, its RFC 9209 [`ErrorType`] (counted as such in
//! `/metrics`), an optional `details` parameter and the plain-text message
//! that says what happened and what to change. Every response built here
//! carries a `Proxy-Status` header naming keyhole and the error type.
//! Messages name hosts and reasons, never a header value, a query, a body
//! or a secret.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};

use super::body::ProxyBody;
use super::resolve::ResolveError;
use super::upstream::dialer::certificate_advice;
use super::upstream::DialError;
use crate::host::{Host, HostError};
use crate::mcp::TokenError;
use crate::proxy::destination::Prohibited;
use crate::substitute::SubstituteError;

/// The name keyhole gives itself in `Proxy-Status`.
pub const PROXY_NAME: &str = "keyhole";

/// Declares [`ErrorType`] with its RFC 9209 names and [`ErrorType::ALL`],
/// from one list.
macro_rules! error_types {
    ($($variant:ident => $name:literal,)+) => {
        /// The RFC 9209 error types keyhole answers with. Declared in
        /// alphabetical order, so that [`ErrorType::ALL`] is sorted by
        /// name and indexes by discriminant.
        #[allow(missing_docs)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum ErrorType {
            $($variant,)+
        }

        impl ErrorType {
            /// Every type, in discriminant order.
            pub const ALL: &'static [ErrorType] = &[$(ErrorType::$variant,)+];

            /// The RFC 9209 name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorType::$variant => $name,)+
                }
            }
        }
    };
}

error_types! {
    ConnectionLimitReached => "connection_limit_reached",
    ConnectionRefused => "connection_refused",
    ConnectionTimeout => "connection_timeout",
    DestinationIpProhibited => "destination_ip_prohibited",
    DestinationUnavailable => "destination_unavailable",
    DnsError => "dns_error",
    DnsTimeout => "dns_timeout",
    HttpProtocolError => "http_protocol_error",
    HttpRequestDenied => "http_request_denied",
    HttpRequestError => "http_request_error",
    HttpResponseContentCoding => "http_response_content_coding",
    HttpResponseTimeout => "http_response_timeout",
    HttpUpgradeFailed => "http_upgrade_failed",
    ProxyConfigurationError => "proxy_configuration_error",
    ProxyInternalError => "proxy_internal_error",
    ProxyLoopDetected => "proxy_loop_detected",
    TlsAlertReceived => "tls_alert_received",
    TlsCertificateError => "tls_certificate_error",
    TlsProtocolError => "tls_protocol_error",
}

/// A malformed request head, as the head guard finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Framing {
    /// `Content-Length` is not a decimal number.
    #[error("Content-Length is not a number; send one decimal length")]
    LengthNotANumber,
    /// Two different `Content-Length` values.
    #[error("the request has two different Content-Length values; send one")]
    TwoLengths,
    /// `Transfer-Encoding` in an HTTP/1.0 request.
    #[error("Transfer-Encoding is not allowed in HTTP/1.0; use HTTP/1.1 or Content-Length")]
    TransferEncodingInHttp10,
    /// Both `Content-Length` and `Transfer-Encoding`.
    #[error("the request has both Content-Length and Transfer-Encoding, the shape of request smuggling (RFC 9112 6.3); send one of them")]
    LengthAndTransferEncoding,
    /// `Transfer-Encoding` not ending in `chunked`.
    #[error("Transfer-Encoding must end with chunked (RFC 9112 6.3)")]
    ChunkedNotLast,
}

/// What is wrong with the host a request names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadHost {
    /// More than one `Host` header.
    #[error("the request has more than one Host header")]
    Several,
    /// A `Host` header that is not text.
    #[error("the Host header is not valid")]
    Invalid,
    /// No `Host` header and no authority in the target.
    #[error("the request names no host; send a Host header")]
    Missing,
}

/// Every refusal and failure keyhole answers itself.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    // --- the client's request ---
    /// The request line and headers are too long.
    #[error("the request line and headers exceed {limit} bytes; send fewer or shorter headers")]
    HeadTooLarge {
        /// `--max-header-bytes`.
        limit: usize,
    },
    /// Too many header fields.
    #[error("the request has more than {limit} header fields; send fewer")]
    TooManyHeaders {
        /// The most keyhole (and hyper) reads.
        limit: usize,
    },
    /// A head that does not parse.
    #[error("the request head is malformed ({0}); keyhole accepts only well-formed HTTP/1.1 (no obsolete line folding, no control bytes in header values)")]
    MalformedHead(httparse::Error),
    /// A request target longer than hyper reads.
    #[error("the request target is longer than {limit} bytes")]
    TargetTooLong {
        /// The most hyper reads.
        limit: usize,
    },
    /// A request target that is not a URI.
    #[error("the request target is not a valid URI")]
    InvalidTarget,
    /// Body framing keyhole refuses.
    #[error("{0}")]
    Framing(Framing),
    /// `https://` in absolute form, without CONNECT.
    #[error(
        "https:// URLs must be sent through a CONNECT tunnel; set HTTPS_PROXY, not only HTTP_PROXY"
    )]
    HttpsWithoutConnect,
    /// An origin-form request to the proxy listener.
    #[error("keyhole is a proxy: send absolute-form http:// requests or CONNECT, as clients do with HTTP_PROXY and HTTPS_PROXY")]
    NotAProxyRequest,
    /// A CONNECT without a target.
    #[error("CONNECT needs a host:port target")]
    ConnectWithoutTarget,
    /// A CONNECT target that is not a valid host.
    #[error("the CONNECT target is refused: {0}")]
    ConnectTarget(HostError),
    /// A CONNECT target without a port.
    #[error("the CONNECT target has no port; write host:port")]
    ConnectWithoutPort,
    /// An absolute-form URL without a valid host.
    #[error("the request URL has no valid host")]
    UrlWithoutHost,
    /// The `Host` header is missing, doubled or invalid.
    #[error("{0}")]
    Host(BadHost),
    /// A request inside a tunnel names another host than the tunnel's.
    #[error("this tunnel was opened to {tunnel}:{port} but the request names {named}; keyhole sends a request only to the host its CONNECT named, so open a new tunnel to that host")]
    Misdirected {
        /// The tunnel's host.
        tunnel: Host,
        /// The tunnel's port.
        port: u16,
        /// The normalised host the request named (never the raw header).
        named: String,
    },
    /// A redirected plain HTTP request whose `Host` does not name the
    /// address the client connected to (transparent mode).
    #[error("the request names {named}, which is not {addr}, the address the client connected to; keyhole sends a request only to the address it was sent to, so connect to the address of {named}")]
    NotTheDestination {
        /// The original destination.
        addr: SocketAddr,
        /// The normalised host the request named (never the raw header).
        named: String,
    },
    /// A CONNECT inside an intercepted tunnel.
    #[error("a CONNECT inside an intercepted tunnel is refused")]
    NestedConnect,
    /// An upgrade to anything but WebSocket.
    #[error("only WebSocket upgrades are relayed; h2c and other upgrades are refused")]
    UnsupportedUpgrade,
    /// Non-TLS bytes in a tunnel keyhole intercepts.
    #[error("keyhole intercepts {host} and expects TLS inside the tunnel; it never relays other bytes blindly. Use https://")]
    NotTls {
        /// The tunnel's host.
        host: Host,
    },

    // --- policy ---
    /// Egress does not allow the host.
    #[error("egress does not allow {host}; add it to egress.allowed_hosts in the config if the sandbox should reach it (keyhole explain shows why)")]
    EgressDenied {
        /// The destination.
        host: Host,
    },
    /// The destination address may not be dialled.
    #[error("{authority} is an address keyhole does not dial ({})", why.describe())]
    Prohibited {
        /// host:port, as the client named it.
        authority: String,
        /// Which rule.
        why: Prohibited,
    },

    // --- keyhole itself ---
    /// Over `--max-connections`.
    #[error("keyhole is handling its maximum of {max} connections; retry shortly, or raise --max-connections")]
    OverLimit {
        /// `--max-connections`.
        max: usize,
    },
    /// A secret could not be put in place; nothing was sent.
    #[error("{0}")]
    Substitution(SubstituteError),
    /// No usable token for the MCP credential of this request; nothing
    /// was sent (never a stale token).
    #[error("{0}")]
    McpToken(TokenError),
    /// A request body keyhole had to read whole (to send it again after a
    /// token refresh) did not arrive in time.
    #[error("the request body did not arrive within {}s", after.as_secs())]
    BodyTimeout {
        /// The limit.
        after: Duration,
    },
    /// Such a body could not be read.
    #[error("cannot read the request body: {chain}")]
    BodyRead {
        /// The error and its sources.
        chain: String,
    },

    // --- the upstream ---
    /// Reaching the upstream failed.
    #[error("{0}")]
    Dial(DialError),
    /// No response headers in time.
    #[error("{host} sent no response headers within {}s; raise --response-header-timeout if it is slow on purpose", after.as_secs_f64())]
    ResponseTimeout {
        /// The upstream host.
        host: String,
        /// The limit.
        after: Duration,
    },
    /// No answer to an upgrade in time.
    #[error("{host} did not answer the upgrade within {}s", after.as_secs())]
    UpgradeTimeout {
        /// The upstream host.
        host: Host,
        /// The limit.
        after: Duration,
    },
    /// The HTTP exchange with the upstream failed.
    #[error("the exchange with {host} failed: {chain}")]
    Exchange {
        /// The upstream host.
        host: String,
        /// The error and its sources (kinds and hosts, never values).
        chain: String,
    },
    /// The upgrade exchange with the upstream failed.
    #[error("the upgrade exchange with {host} failed: {chain}")]
    UpgradeFailed {
        /// The upstream host.
        host: Host,
        /// The error and its sources.
        chain: String,
    },
    /// An encoded response to a request that carried a secret.
    #[error("{host} answered with a Content-Encoding although keyhole asked for identity after sending a secret; keyhole cannot scrub an encoded body, so it does not relay it")]
    EncodedResponse {
        /// The upstream host.
        host: Host,
    },
}

// === impl ProxyError ===

impl ProxyError {
    /// The status code and the RFC 9209 error type.
    pub fn kind(&self) -> (StatusCode, ErrorType) {
        use ErrorType as T;
        use ProxyError as E;
        use StatusCode as S;
        match self {
            E::HeadTooLarge { .. } | E::TooManyHeaders { .. } => {
                (S::REQUEST_HEADER_FIELDS_TOO_LARGE, T::HttpRequestError)
            }
            E::TargetTooLong { .. } => (S::URI_TOO_LONG, T::HttpRequestError),
            E::MalformedHead(_)
            | E::InvalidTarget
            | E::Framing(_)
            | E::HttpsWithoutConnect
            | E::NotAProxyRequest
            | E::ConnectWithoutTarget
            | E::ConnectTarget(_)
            | E::ConnectWithoutPort
            | E::UrlWithoutHost
            | E::Host(_) => (S::BAD_REQUEST, T::HttpRequestError),
            E::Misdirected { .. } | E::NotTheDestination { .. } => {
                (S::MISDIRECTED_REQUEST, T::HttpRequestDenied)
            }
            E::NestedConnect => (S::METHOD_NOT_ALLOWED, T::HttpRequestDenied),
            E::UnsupportedUpgrade => (S::BAD_REQUEST, T::HttpRequestDenied),
            E::NotTls { .. } => (S::BAD_REQUEST, T::TlsProtocolError),
            E::EgressDenied { .. } => (S::FORBIDDEN, T::HttpRequestDenied),
            E::Prohibited { why, .. } => prohibited(*why),
            E::OverLimit { .. } => (S::SERVICE_UNAVAILABLE, T::ConnectionLimitReached),
            E::Substitution(_) => (S::INTERNAL_SERVER_ERROR, T::ProxyConfigurationError),
            E::McpToken(_) => (S::BAD_GATEWAY, T::HttpRequestError),
            E::BodyTimeout { .. } => (S::REQUEST_TIMEOUT, T::HttpRequestError),
            E::BodyRead { .. } => (S::BAD_REQUEST, T::HttpRequestError),
            E::Dial(d) => dial_kind(d),
            E::ResponseTimeout { .. } | E::UpgradeTimeout { .. } => {
                (S::GATEWAY_TIMEOUT, T::HttpResponseTimeout)
            }
            E::Exchange { .. } => (S::BAD_GATEWAY, T::HttpProtocolError),
            E::UpgradeFailed { .. } => (S::BAD_GATEWAY, T::HttpUpgradeFailed),
            E::EncodedResponse { .. } => (S::BAD_GATEWAY, T::HttpResponseContentCoding),
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.kind().0
    }

    /// The RFC 9209 error type.
    pub fn error_type(&self) -> ErrorType {
        self.kind().1
    }

    /// The `details` parameter of `Proxy-Status`, if any.
    pub fn details(&self) -> Option<String> {
        match self {
            ProxyError::Misdirected { .. } => {
                Some("request host differs from the CONNECT host".to_owned())
            }
            ProxyError::NotTheDestination { .. } => {
                Some("request host is not the original destination".to_owned())
            }
            ProxyError::EgressDenied { host } => Some(format!("egress denies {host}")),
            ProxyError::Dial(DialError::Certificate { reason, .. }) => Some(format!("{reason:?}")),
            ProxyError::Dial(DialError::Tls { reason, .. }) => Some(reason.clone()),
            _ => None,
        }
    }

    /// The plain-text body: the message, and for some failures what to do.
    pub fn message(&self) -> String {
        match self {
            ProxyError::Dial(d @ DialError::Certificate { reason, .. }) => {
                format!("{d}; {}", certificate_advice(reason))
            }
            ProxyError::Dial(d @ DialError::Resolve(_)) => {
                format!("{d}; check the name, or pin it with --resolve HOST:PORT:ADDR")
            }
            other => other.to_string(),
        }
    }

    /// The `Proxy-Status` header value.
    pub fn proxy_status(&self) -> String {
        let mut v = format!("{PROXY_NAME}; error={}", self.error_type().as_str());
        if let Some(d) = self.details() {
            v.push_str("; details=");
            v.push_str(&sf_string(&d));
        }
        v
    }

    /// The HTTP response.
    pub fn into_response(self) -> Response<ProxyBody> {
        let body = format!("keyhole: {}\n", self.message());
        let len = body.len();
        let mut res = Response::new(
            Full::new(Bytes::from(body))
                .map_err(|never| match never {})
                .boxed(),
        );
        *res.status_mut() = self.status();
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
    /// HTTP server on it (a plaintext client inside a CONNECT tunnel, a
    /// connection over the limit).
    pub fn to_http1_bytes(&self) -> Vec<u8> {
        let body = format!("keyhole: {}\n", self.message());
        let status = self.status();
        format!(
            "HTTP/1.1 {} {}\r\nproxy-status: {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.proxy_status(),
            body.len(),
        )
        .into_bytes()
    }
}

fn prohibited(why: Prohibited) -> (StatusCode, ErrorType) {
    match why {
        Prohibited::Loop => (StatusCode::LOOP_DETECTED, ErrorType::ProxyLoopDetected),
        Prohibited::Metadata | Prohibited::Private => {
            (StatusCode::FORBIDDEN, ErrorType::DestinationIpProhibited)
        }
    }
}

fn dial_kind(e: &DialError) -> (StatusCode, ErrorType) {
    use ErrorType as T;
    use StatusCode as S;
    match e {
        DialError::Resolve(ResolveError::Timeout { .. }) => (S::GATEWAY_TIMEOUT, T::DnsTimeout),
        DialError::Resolve(_) => (S::BAD_GATEWAY, T::DnsError),
        DialError::Refused { .. } => (S::BAD_GATEWAY, T::ConnectionRefused),
        DialError::Timeout { .. } => (S::GATEWAY_TIMEOUT, T::ConnectionTimeout),
        DialError::Io { .. } => (S::BAD_GATEWAY, T::DestinationUnavailable),
        DialError::Certificate { .. } => (S::BAD_GATEWAY, T::TlsCertificateError),
        DialError::Tls { alert: true, .. } => (S::BAD_GATEWAY, T::TlsAlertReceived),
        DialError::Tls { .. } => (S::BAD_GATEWAY, T::TlsProtocolError),
        DialError::BadName(_) => (S::BAD_GATEWAY, T::ProxyInternalError),
        DialError::Prohibited { why, .. } => prohibited(*why),
    }
}

impl From<DialError> for ProxyError {
    fn from(e: DialError) -> Self {
        ProxyError::Dial(e)
    }
}

impl From<SubstituteError> for ProxyError {
    fn from(e: SubstituteError) -> Self {
        ProxyError::Substitution(e)
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
    fn error_types_index_by_discriminant() {
        for (i, t) in ErrorType::ALL.iter().enumerate() {
            assert_eq!(*t as usize, i, "{t:?}");
        }
        let names: Vec<&str> = ErrorType::ALL.iter().map(|t| t.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted, "declared in the order metrics list them");
    }

    #[test]
    fn proxy_status_is_a_valid_structured_field() {
        let e = ProxyError::Dial(DialError::Tls {
            host: "a.com".into(),
            reason: "alert for \"a.com\"\\\n\u{e9}".into(),
            alert: true,
        });
        assert_eq!(
            e.proxy_status(),
            r#"keyhole; error=tls_alert_received; details="alert for \"a.com\"\\""#
        );
        let res = e.into_response();
        assert_eq!(res.status(), 502);
        assert!(res.headers()["proxy-status"]
            .to_str()
            .unwrap()
            .starts_with("keyhole; error="));
    }

    #[test]
    fn raw_bytes_are_a_complete_response() {
        let host = Host::parse("a.test").unwrap();
        let e = ProxyError::NotTls { host };
        let text = String::from_utf8(e.to_http1_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.contains("proxy-status: keyhole; error=tls_protocol_error\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        assert!(text.contains(&format!("content-length: {}\r\n", body.len())));
        assert!(body.starts_with("keyhole: keyhole intercepts a.test"));
    }

    #[test]
    fn statuses_and_types_of_the_policy_refusals() {
        let host = Host::parse("x.test").unwrap();
        let denied = ProxyError::EgressDenied { host };
        assert_eq!(
            denied.kind(),
            (StatusCode::FORBIDDEN, ErrorType::HttpRequestDenied)
        );
        assert_eq!(denied.details().as_deref(), Some("egress denies x.test"));
        let looped = ProxyError::Prohibited {
            authority: "127.0.0.1:8080".into(),
            why: Prohibited::Loop,
        };
        assert_eq!(
            looped.kind(),
            (StatusCode::LOOP_DETECTED, ErrorType::ProxyLoopDetected)
        );
        let metadata = ProxyError::Dial(DialError::Prohibited {
            authority: "169.254.169.254:80".into(),
            why: Prohibited::Metadata,
        });
        assert_eq!(metadata.error_type(), ErrorType::DestinationIpProhibited);
        assert!(metadata.message().contains("cloud metadata"));
    }
}
