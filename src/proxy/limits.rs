//! Limits and timeouts: every bound keyhole puts on a peer, with its
//! default. Each has a `keyhole run` flag of the same name. The upstream
//! connect and TLS timeouts live with the dialer ([`super::resolve::Resolver`]).

use std::time::Duration;

/// Connections handled at once (client connections, and the tunnels and
/// interceptions they open). Beyond it a new connection gets `503
/// connection_limit_reached` and is closed. The default keeps keyhole under
/// a typical 8,192 file-descriptor limit with an upstream socket for each.
pub const MAX_CONNECTIONS: usize = 4096;
/// Largest request line plus headers, in bytes (hyper's read buffer; at
/// least 8,192). Beyond it: `431`. Real requests stay far below.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Longest wait for a client's request headers, and for the next request
/// on an idle HTTP/1.1 connection (slowloris bound).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a tunnel or an intercepted connection may carry no byte either
/// way before keyhole closes it.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// HTTP/2 streams a client may open at once on one intercepted connection.
pub const HTTP2_MAX_STREAMS: u32 = 100;

/// The bounds in force.
#[derive(Debug, Clone)]
pub struct Limits {
    /// See [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`MAX_HEADER_BYTES`].
    pub max_header_bytes: usize,
    /// See [`HEADER_READ_TIMEOUT`].
    pub header_read_timeout: Duration,
    /// See [`IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`HTTP2_MAX_STREAMS`].
    pub http2_max_streams: u32,
    /// See [`super::relay::RESPONSE_HEADER_TIMEOUT`].
    pub response_header_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            max_header_bytes: MAX_HEADER_BYTES,
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            http2_max_streams: HTTP2_MAX_STREAMS,
            response_header_timeout: super::relay::RESPONSE_HEADER_TIMEOUT,
        }
    }
}
