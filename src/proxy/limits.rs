//! Limits and timeouts: every bound keyhole puts on a peer, in one place,
//! with its default and the reason for it.
//!
//! The ones users tune are fields of [`Limits`], each with a `keyhole run`
//! flag of the same name; the rest are constants. Buffers private to one
//! parser (the head guard's read sizes) stay beside that parser.

use std::time::Duration;

// --- client side ---

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
/// Longest wait for the first byte inside a new tunnel (the start of a TLS
/// ClientHello). A client that opens a tunnel and says nothing is closed.
pub const PEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest ClientHello keyhole reads. One with post-quantum key shares is
/// about 1.5-2 KiB; the bound leaves room for large extension sets (many
/// PSK identities, ECH) while keeping a connection that never completes
/// its hello from holding more.
pub const MAX_CLIENT_HELLO: usize = 32 * 1024;
/// Longest wait for the client's side of a TLS handshake with keyhole.
pub const CLIENT_TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the first bytes of a redirected connection
/// (transparent mode). A client that says nothing first (a protocol whose
/// server speaks first) is then treated as neither TLS nor HTTP.
pub const SNIFF_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest wait, after shutdown is asked for, for requests in flight.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a refusal written to a connection that has no HTTP server on it
/// (over the connection limit, non-TLS bytes in a tunnel) may take.
pub const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);
/// Back-off after a failed `accept` (out of file descriptors and the like),
/// so the accept loop waits instead of spinning.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

// --- upstream side ---

/// Longest wait for the system resolver.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for a TCP connection to an upstream (`--connect-timeout`).
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for an upstream TLS handshake (`--tls-timeout`).
pub const UPSTREAM_TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for an upstream's response headers. Generous: a
/// non-streaming model API call sends its headers only when the whole
/// answer is ready, which can take minutes.
pub const RESPONSE_HEADER_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest request body to an MCP server that keyhole keeps, so that it can
/// send the request once more with a refreshed token after an upstream
/// `401`. MCP requests are JSON-RPC messages of a few kilobytes; a larger
/// body, or one of unknown length, streams and its `401` goes to the client.
pub const MAX_REPLAY_BODY: usize = 256 * 1024;
/// Longest wait for such a body to arrive before it is sent.
pub const REPLAY_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest token endpoint answer read (the MCP module's own bound).
pub const MAX_TOKEN_RESPONSE_BYTES: usize = crate::mcp::response::MAX_TOKEN_RESPONSE_BYTES;
/// Longest wait for a token endpoint's answer headers and body, each; the
/// token book bounds the whole refresh too.
pub const TOKEN_ENDPOINT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the upstream's answer to a WebSocket upgrade request.
pub const UPGRADE_RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an idle pooled upstream connection is kept, at most: the
/// pool's sweeper runs every half of it and closes a connection idle for
/// two of its periods, so between 45 and 90 s (upstreams commonly close
/// idle keep-alive connections after 60 s or more).
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Idle pooled connections kept per upstream. A pool smaller than the
/// number of requests a client keeps in flight closes and reopens upstream
/// connections on every burst: with 32, fifty concurrent plain-HTTP
/// clients made keyhole open one upstream connection per eleven requests
/// (benches/proxy). 256 covers what agents and load tests drive; idle
/// sockets still close after [`POOL_IDLE_TIMEOUT`], and an idle TLS
/// connection costs about 30 KiB, so a full pool for one host is ~8 MiB.
pub const POOL_MAX_IDLE_PER_HOST: usize = 256;
/// Origins (scheme, host, port, pinned address) a worker's pool holds
/// connections for at once. Agents talk to a few dozen; the bound keeps a
/// sandbox with unrestricted egress (or transparent mode, one origin per
/// address) from growing the map without end: past it, a connection to a
/// new origin is used once and closed instead of pooled.
pub const POOL_MAX_ORIGINS: usize = 4096;

/// The bounds users tune, as `keyhole run` was given them.
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
    /// See [`RESPONSE_HEADER_TIMEOUT`].
    pub response_header_timeout: Duration,
    /// See [`DIAL_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`UPSTREAM_TLS_TIMEOUT`].
    pub tls_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            max_header_bytes: MAX_HEADER_BYTES,
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: IDLE_TIMEOUT,
            http2_max_streams: HTTP2_MAX_STREAMS,
            response_header_timeout: RESPONSE_HEADER_TIMEOUT,
            connect_timeout: DIAL_TIMEOUT,
            tls_timeout: UPSTREAM_TLS_TIMEOUT,
        }
    }
}

// === impl Limits ===

impl Limits {
    /// How client HTTP/1.1 connections are read.
    pub fn http1(&self) -> super::server::Http1Limits {
        super::server::Http1Limits {
            header_read_timeout: self.header_read_timeout,
            max_header_bytes: self.max_header_bytes,
        }
    }
}
