//! One exchange: a request from the sandbox, and the answer it gets back.
//!
//! Every request keyhole relays goes through [`run`], whether it came
//! through an intercepted tunnel or as a plain `http://` request. The
//! stages, in order, each a function below:
//!
//! 1. **check**: the request names the destination it was sent to (inside
//!    a tunnel), is not a nested CONNECT or an upgrade other than
//!    WebSocket, and egress allows the host;
//! 2. **substitute**: in header values, placeholders of the credentials
//!    allowed here become their secrets, and the MCP credential whose
//!    server this is sets `Authorization: Bearer` (over HTTPS only);
//! 3. **audit**: every placeholder found is counted, logged by credential
//!    id (never a value) and recorded in the audit log;
//! 4. **send**: the request goes to the destination, its body substituted
//!    as it streams; a WebSocket upgrade goes on a connection of its own;
//!    an MCP request whose body was kept is sent once more with a
//!    refreshed token after a `401`;
//! 5. **scrub**: secrets in the answer become their placeholders again;
//! 6. **log**: one line per request.
//!
//! A stage that refuses returns a [`ProxyError`]; [`run`] counts it by
//! type and answers it. Trade-off: the stages share one small state
//! struct rather than being separate services, so that the common path
//! (no placeholder anywhere) costs a few branches and no allocation.

use std::borrow::Borrow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, ACCEPT_ENCODING, AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH};
use http::request::Parts;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use time::OffsetDateTime;

use super::body::{BodyError, ProxyBody};
use super::headers::{strip_hop_by_hop, strip_host};
use super::mcp::{self as proxy_mcp, Replay};
use super::respond::{BadHost, ProxyError};
use super::websocket::{self, upgrade_kind, UpgradeKind};
use super::{counters, relay, upstream, Counters, Proxy, Snapshot};
use crate::audit::{self, Location, Reason, Target};
use crate::host::{Authority, Host};
use crate::mcp::{self, BearerToken, McpMatch};
use crate::model::Auth;
use crate::secret::Secret;
use crate::substitute::bodies::{Bodies, BodyEvents};
use crate::substitute::HeaderReport;

/// Where an exchange's requests go, fixed before the request is read.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The host: the CONNECT authority's, or the absolute URI's.
    pub host: Host,
    /// The port.
    pub port: u16,
    /// How keyhole reaches it.
    pub scheme: Scheme,
    /// The one address to dial, when the client chose it (transparent
    /// mode); `None`: resolve the host.
    pub pinned: Option<SocketAddr>,
    /// Where the upstream requests go, built once for every request.
    origin: upstream::Origin,
}

// === impl Destination ===

impl Destination {
    /// A destination; `pinned` as for [`Destination::pinned`].
    pub fn new(host: Host, port: u16, scheme: Scheme, pinned: Option<SocketAddr>) -> Destination {
        let origin = upstream::Origin::new(scheme == Scheme::Https, host.clone(), port, pinned);
        Destination {
            host,
            port,
            scheme,
            pinned,
            origin,
        }
    }
}

/// How the destination is reached, which decides whether secrets may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// TLS verified for the host, from an intercepted tunnel whose requests
    /// must each name the tunnel's host. Secrets may be substituted.
    Https,
    /// Plain `http://`: forwarded, never substituted.
    Http,
}

/// The MCP token a request carries.
struct Bearer {
    /// The credential's index in the config.
    credential: u32,
    token: BearerToken,
    /// Whether a `401` may be answered by one refresh and retry.
    retry: bool,
}

/// The state one exchange's stages share.
struct Exchange<'a> {
    proxy: &'a Proxy,
    dest: &'a Destination,
    snapshot: Arc<Snapshot>,
    method: Method,
    /// Credentials whose placeholder a header carried as a secret.
    substituted: Vec<u32>,
}

/// Runs one exchange to its answer: the upstream's, or keyhole's own.
///
/// The future is boxed once, here: an exchange's state is a few
/// kilobytes, and unboxed it would be copied whole each time it moves
/// (into the connection's dispatcher, or into the task an HTTP/2 stream
/// runs as), which costs more than the one allocation. Returning it by
/// name also makes the compiler prove it `Send` here rather than at each
/// generic caller (rustc's higher-ranked lifetime limits).
pub fn run<D>(
    proxy: Arc<Proxy>,
    dest: D,
    req: Request<Incoming>,
) -> Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send + 'static>>
where
    D: Borrow<Destination> + Send + 'static,
{
    Box::pin(async move {
        let (proxy, dest) = (&*proxy, dest.borrow());
        let start = Instant::now();
        let mut ex = Exchange {
            proxy,
            dest,
            snapshot: proxy.snapshot(),
            method: req.method().clone(),
            substituted: Vec::new(),
        };
        let (res, error) = match ex.relay(req).await {
            Ok(res) => (res, None),
            Err(e) => {
                let error = e.error_type();
                proxy.counters.error(error);
                let status = e.status().as_u16();
                if e.status().is_client_error() {
                    tracing::warn!(method = %ex.method, host = %dest.host, status, "request refused: {}", e.message());
                } else {
                    tracing::warn!(method = %ex.method, host = %dest.host, status, "request failed: {}", e.message());
                }
                (e.into_response(), Some(error.as_str()))
            }
        };
        proxy.counters.status(res.status());
        ex.log(&res, start, error);
        res
    })
}

// === impl Exchange ===

impl Exchange<'_> {
    /// Stages 1 to 5.
    async fn relay(
        &mut self,
        mut req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let upgrade = self.check(&req)?;
        let client_upgrade = match upgrade {
            UpgradeKind::WebSocket(_) => Some(hyper::upgrade::on(&mut req)),
            _ => None,
        };
        let snapshot = self.snapshot.clone();
        let allowed = snapshot.policy.credentials_for(&self.dest.host);
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        strip_host(&mut parts.headers);
        let report = self.substitute(&mut parts.headers, allowed)?;
        let target = self.audit_target(&parts);
        self.audit_headers(&report, allowed, target.as_ref());
        // MCP's stages are boxed: their state would otherwise make every
        // request's future larger, MCP or not.
        let bearer = match snapshot.policy.mcp().is_empty() {
            true => None,
            false => Box::pin(self.inject(&mut parts, target.as_ref())).await?,
        };
        if let (UpgradeKind::WebSocket(protocol), Some(on_upgrade)) = (upgrade, client_upgrade) {
            let authority = Authority {
                host: self.dest.host.clone(),
                port: Some(self.dest.port),
            };
            // Boxed: a rare branch whose state would otherwise make every
            // request's future larger (and every move of it dearer).
            let pinned = self.dest.pinned;
            let relay = websocket::relay(
                self.proxy, &authority, pinned, protocol, parts, body, on_upgrade,
            );
            return Box::pin(relay).await;
        }
        // The upstream URI is the checked destination's, whatever the
        // request named (the client takes only its path and query); the
        // upstream leg's version follows the upstream's ALPN, not the
        // client's.
        parts.version = Version::HTTP_11;
        let declared = content_length(&parts.headers);
        let empty = hyper::body::Body::is_end_stream(&body);
        let (body, body_secret) = self.request_body(&mut parts.headers, body, allowed, target);
        // After a secret was sent, ask for an uncompressed answer, which
        // keyhole can scrub.
        let secret_sent = !report.substituted.is_empty() || body_secret || bearer.is_some();
        if secret_sent {
            parts
                .headers
                .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        }
        let (res, refreshed) = match &bearer {
            Some(b) if b.retry => {
                Box::pin(self.send_retrying(parts, body, declared, empty, b)).await?
            }
            _ => {
                let req = Request::from_parts(parts, body);
                (self.send(req).await?, None)
            }
        };
        let injected: Vec<&BearerToken> = bearer
            .as_ref()
            .map(|b| &b.token)
            .into_iter()
            .chain(&refreshed)
            .collect();
        match self.dest.scheme {
            Scheme::Https => self.scrub(res, secret_sent, &injected),
            Scheme::Http => Ok(res),
        }
    }

    /// Stage 1: the request may go where it asks to.
    fn check(&self, req: &Request<Incoming>) -> Result<UpgradeKind, ProxyError> {
        // Plain http:// requests are forwarded with their upgrade headers
        // stripped as hop-by-hop; upgrades are relayed only inside
        // intercepted tunnels.
        let mut upgrade = UpgradeKind::None;
        if self.dest.scheme == Scheme::Https {
            names_the_destination(self.dest, req)?;
            if req.method() == Method::CONNECT {
                return Err(ProxyError::NestedConnect);
            }
            upgrade = upgrade_kind(req);
            if upgrade == UpgradeKind::Other {
                return Err(ProxyError::UnsupportedUpgrade);
            }
        }
        if !self.snapshot.policy.egress_allows(&self.dest.host) {
            Counters::add(&self.proxy.counters.denied, 1);
            return Err(ProxyError::EgressDenied {
                host: self.dest.host.clone(),
            });
        }
        Ok(upgrade)
    }

    /// Stage 2: header placeholders of allowed credentials become secrets
    /// over HTTPS; over plain HTTP every placeholder passes.
    fn substitute(
        &mut self,
        headers: &mut HeaderMap,
        allowed: &[u32],
    ) -> Result<HeaderReport, ProxyError> {
        let may_substitute = match self.dest.scheme {
            Scheme::Https => allowed,
            Scheme::Http => &[],
        };
        let report = self
            .snapshot
            .substitutions
            .headers(headers, may_substitute)?;
        let counters = &self.proxy.counters;
        Counters::add(&counters.requests, 1);
        Counters::add(&counters.substituted, report.substituted.len());
        Counters::add(&counters.passed, report.passed.len());
        for &i in &report.substituted {
            counters.substituted_for(self.credential_id(i), 1);
        }
        self.substituted.clone_from(&report.substituted);
        Ok(report)
    }

    /// What audit records of this request name, when there is an audit log.
    fn audit_target(&self, parts: &Parts) -> Option<Target> {
        self.proxy.audit.as_ref()?;
        Some(Target {
            host: self.dest.host.clone(),
            method: self.method.clone(),
            path: audit::path_only(parts.uri.path_and_query().map_or("/", |p| p.as_str())),
        })
    }

    /// Stage 3 for headers: logs each passed placeholder with its reason,
    /// and records every placeholder in the audit log.
    fn audit_headers(&self, report: &HeaderReport, allowed: &[u32], target: Option<&Target>) {
        let policy = &self.snapshot.policy;
        let plaintext = self.dest.scheme == Scheme::Http;
        let reason = |i: u32| {
            let header_on = policy
                .credential(i)
                .and_then(|c| c.environment_variable())
                .is_some_and(|a| a.injection_location.header);
            Reason::for_passed(allowed.contains(&i), plaintext, header_on)
        };
        for &i in &report.passed {
            let why = reason(i);
            let kind = (i, why as u8, self.dest.host.as_str());
            if self.proxy.warnings.allow(kind) {
                let credential = self.credential_id(i);
                tracing::warn!(credential, host = %self.dest.host, "{} (logged once a minute per credential, host and reason; the audit log and /metrics count each)", why.warning());
            }
        }
        let (Some(log), Some(target)) = (&self.proxy.audit, target) else {
            return;
        };
        for &i in &report.substituted {
            log.placeholder(policy, target, i, Location::Header, Reason::Allowed);
        }
        for &i in &report.passed {
            log.placeholder(policy, target, i, Location::Header, reason(i));
        }
    }

    /// Stage 2 for MCP servers: the credential whose `mcp_server_url`
    /// covers this request sets `Authorization: Bearer <token>`, replacing
    /// whatever the client sent (a sandbox has no token of its own). Never
    /// over plain HTTP, never on another origin; a request that misses
    /// only by path is logged and audited as such.
    async fn inject(
        &mut self,
        parts: &mut Parts,
        target: Option<&Target>,
    ) -> Result<Option<Bearer>, ProxyError> {
        let snapshot = self.snapshot.clone();
        let routes = snapshot.policy.mcp();
        let scheme = match self.dest.scheme {
            Scheme::Https => mcp::Scheme::Https,
            Scheme::Http => mcp::Scheme::Http,
        };
        let found = routes.lookup(scheme, &self.dest.host, self.dest.port, parts.uri.path());
        let (credential, reason) = match (found, self.dest.scheme) {
            (McpMatch::Hit(i), Scheme::Https) => (i, Reason::Allowed),
            (McpMatch::Hit(i) | McpMatch::OtherScheme { nearest: i }, Scheme::Http) => {
                (i, Reason::Plaintext)
            }
            (McpMatch::SamePathOutside { nearest: i }, _) => (i, Reason::PathOutside),
            _ => return Ok(None),
        };
        let id = self.credential_id(credential);
        if let (Some(log), Some(target)) = (&self.proxy.audit, target) {
            log.placeholder(
                &snapshot.policy,
                target,
                credential,
                Location::Header,
                reason,
            );
        }
        match reason {
            Reason::Allowed => {}
            Reason::Plaintext => {
                tracing::warn!(credential = id, host = %self.dest.host, "MCP credential not injected: plain http:// never carries a token; use https://");
                return Ok(None);
            }
            _ => {
                tracing::info!(credential = id, host = %self.dest.host, "{}", reason.warning());
                return Ok(None);
            }
        }
        let token = self
            .proxy
            .tokens()
            .bearer(id, OffsetDateTime::now_utc())
            .await
            .map_err(ProxyError::McpToken)?;
        parts
            .headers
            .insert(AUTHORIZATION, token.header_value().clone());
        let counters = &self.proxy.counters;
        Counters::add(&counters.substituted, 1);
        counters.substituted_for(id, 1);
        self.substituted.push(credential);
        let retry = snapshot
            .policy
            .credential(credential)
            .is_some_and(|c| matches!(&c.auth, Auth::McpOauth(o) if o.refresh.is_some()));
        Ok(Some(Bearer {
            credential,
            token,
            retry,
        }))
    }

    /// Stage 4 for an MCP request whose token can be refreshed: its body is
    /// kept (when small and of known length), and after an upstream `401`
    /// the request goes once more with a refreshed token. A `403` is never
    /// retried: `insufficient_scope` needs the user, not a refresh. Returns
    /// the answer and the refreshed token, if one was used.
    async fn send_retrying(
        &self,
        mut parts: Parts,
        body: ProxyBody,
        declared: Option<u64>,
        empty: bool,
        bearer: &Bearer,
    ) -> Result<(Response<ProxyBody>, Option<BearerToken>), ProxyError> {
        let kept = match Replay::read(declared, body, empty).await? {
            Replay::Streamed(body) => {
                let res = self.send(Request::from_parts(parts, body)).await?;
                return Ok((res, None));
            }
            Replay::Kept(bytes) => bytes,
        };
        let first =
            Request::from_parts(proxy_mcp::copy_head(&parts), proxy_mcp::full(kept.clone()));
        let res = self.send(first).await?;
        if res.status() != StatusCode::UNAUTHORIZED {
            return Ok((res, None));
        }
        let id = self.credential_id(bearer.credential);
        let fresh = self
            .proxy
            .tokens()
            .after_unauthorized(id, &bearer.token, OffsetDateTime::now_utc())
            .await
            .map_err(ProxyError::McpToken)?;
        tracing::info!(credential = id, host = %self.dest.host, "MCP server answered 401; sending the request once more with a refreshed token");
        parts
            .headers
            .insert(AUTHORIZATION, fresh.header_value().clone());
        let res = self
            .send(Request::from_parts(parts, proxy_mcp::full(kept)))
            .await?;
        Ok((res, Some(fresh)))
    }

    /// Stage 4's body: substituted as it streams where a credential allowed
    /// here has body injection on (never in an encoded body, never over
    /// plain HTTP). Returns the body and whether a secret may go in it.
    fn request_body(
        &self,
        headers: &mut HeaderMap,
        body: Incoming,
        allowed: &[u32],
        target: Option<Target>,
    ) -> (ProxyBody, bool) {
        let bodies = self.snapshot.substitutions.bodies();
        let empty = hyper::body::Body::is_end_stream(&body);
        let may_change =
            self.dest.scheme == Scheme::Https && bodies.may_substitute(allowed) && !empty;
        let counters = &self.proxy.counters;
        // A request without a body (most GETs) has nothing to scan.
        if empty || is_encoded(headers) || self.dest.scheme == Scheme::Http {
            if may_change {
                Counters::add(&counters.encoded_bodies, 1);
                tracing::warn!(host = %self.dest.host, "request body has a Content-Encoding: keyhole never alters an encoded body, so placeholders in it pass unchanged");
            }
            return (body.map_err(|e| Box::new(e) as BodyError).boxed(), false);
        }
        if may_change {
            // The length may change: HTTP/1.1 re-frames as chunked, HTTP/2
            // carries no length.
            headers.remove(CONTENT_LENGTH);
        }
        let events = (may_change || target.is_some()).then(|| self.body_events(allowed, target));
        let body = bodies
            .request(body, allowed, counters.body.clone(), events)
            .map_err(|e| Box::new(e) as BodyError)
            .boxed();
        (body, may_change)
    }

    /// Stage 3 for bodies: told of each placeholder a request body holds,
    /// counts substitutions by credential and writes the audit log. Built
    /// only when it has something to do, so a plain request pays for no
    /// closure, clone or lock.
    fn body_events(&self, allowed: &[u32], target: Option<Target>) -> BodyEvents {
        let audit_log = self.proxy.audit.clone();
        let by_credential = self.proxy.counters.by_credential.clone();
        let snapshot = self.snapshot.clone();
        let allowed = allowed.to_vec();
        Arc::new(move |i: u32, substituted: bool| {
            let policy = &snapshot.policy;
            if substituted {
                if let Some(c) = policy.credential(i) {
                    counters::bump(&by_credential, &c.id, 1);
                }
            }
            if let (Some(log), Some(target)) = (&audit_log, &target) {
                let reason = match (substituted, allowed.contains(&i)) {
                    (true, _) => Reason::Allowed,
                    (false, true) => Reason::LocationDisabled,
                    (false, false) => Reason::HostNotAllowed,
                };
                log.placeholder(policy, target, i, Location::Body, reason);
            }
        })
    }

    /// Stage 5: every form of every secret in the answer becomes its
    /// placeholder form, header values at once, the body as it streams.
    /// An encoded answer to a request that carried a secret cannot be
    /// scrubbed and is refused; other encoded answers pass (no secret was
    /// sent).
    ///
    /// `injected` MCP tokens are scrubbed too: by this request's config
    /// when it knows them, else by the newest config (a token refreshed
    /// meanwhile), else by patterns made for them alone.
    fn scrub(
        &self,
        res: Response<ProxyBody>,
        secret_sent: bool,
        injected: &[&BearerToken],
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let known = |s: &Snapshot| injected.iter().all(|t| s.substitutions.scrubs(t.token()));
        let mut snapshot = self.snapshot.clone();
        let mut extra = None;
        if !known(&snapshot) {
            let newest = self.proxy.snapshot();
            if known(&newest) {
                snapshot = newest;
            } else {
                let tokens: Vec<(u32, &Secret)> = injected.iter().map(|t| (0, t.token())).collect();
                extra = Some(Bodies::scrub_only(&tokens)?);
            }
        }
        let bodies = snapshot.substitutions.bodies();
        let host = &self.dest.host;
        let (mut parts, body) = res.into_parts();
        let mut in_headers = bodies.scrub_headers(&mut parts.headers);
        if let Some(extra) = &extra {
            in_headers += extra.scrub_headers(&mut parts.headers);
        }
        if in_headers > 0 {
            Counters::add(&self.proxy.counters.scrubbed, in_headers);
            tracing::warn!(%host, "a secret came back in a response header; the client sees its placeholder");
        }
        let encoded = is_encoded(&parts.headers);
        if encoded && secret_sent {
            return Err(ProxyError::EncodedResponse { host: host.clone() });
        }
        let bodiless = self.method == Method::HEAD
            || parts.status.is_informational()
            || parts.status == StatusCode::NO_CONTENT
            || parts.status == StatusCode::NOT_MODIFIED;
        if bodiless || encoded {
            return Ok(Response::from_parts(parts, body));
        }
        parts.headers.remove(CONTENT_LENGTH);
        let scrubbed = self.proxy.counters.scrubbed.clone();
        let body = bodies.response(body, scrubbed.clone()).boxed();
        let body = match extra {
            Some(extra) => extra.response(body, scrubbed).boxed(),
            None => body,
        };
        Ok(Response::from_parts(parts, body))
    }

    /// Stage 6: one line per request, with credential ids, never values.
    fn log(&self, res: &Response<ProxyBody>, start: Instant, error: Option<&str>) {
        let ids = Ids(self);
        let scheme = match self.dest.scheme {
            Scheme::Https => "https",
            Scheme::Http => "http",
        };
        tracing::info!(
            method = %self.method,
            host = %self.dest.host,
            scheme,
            status = res.status().as_u16(),
            ms = start.elapsed().as_millis() as u64,
            substituted = %ids,
            error,
            "request"
        );
    }

    /// Sends a prepared request to the destination through the worker's
    /// pool.
    async fn send(&self, req: Request<ProxyBody>) -> Result<Response<ProxyBody>, ProxyError> {
        relay::send(self.proxy, self.proxy.client(), &self.dest.origin, req).await
    }

    fn credential_id(&self, i: u32) -> &str {
        self.snapshot
            .policy
            .credential(i)
            .map_or("?", |c| c.id.as_str())
    }
}

/// The ids of the credentials substituted in a request, comma-separated,
/// written straight into the log line (no string built per request).
struct Ids<'a, 'b>(&'a Exchange<'b>);

impl std::fmt::Display for Ids<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (n, &i) in self.0.substituted.iter().enumerate() {
            if n > 0 {
                f.write_str(",")?;
            }
            f.write_str(self.0.credential_id(i))?;
        }
        Ok(())
    }
}

/// The request's declared body length.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// Whether a body is content-encoded (compressed): such bodies are never
/// altered.
fn is_encoded(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// Whether `named` is the destination's normalised host, spelt exactly,
/// with its port or (for the default port) none: what nearly every client
/// sends, checked without parsing or allocating. Anything else takes the
/// full parse.
fn names_exactly(named: &str, dest: &Destination, default_port: u16) -> bool {
    let Some(rest) = named.strip_prefix(dest.host.as_str()) else {
        return false;
    };
    if rest.is_empty() {
        return dest.port == default_port;
    }
    rest.strip_prefix(':')
        .filter(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|p| p.parse::<u16>().ok())
        == Some(dest.port)
}

/// Every host the request names (`:authority` or the absolute URI, and
/// `Host`) must be the destination host, on the destination port.
fn names_the_destination(dest: &Destination, req: &Request<Incoming>) -> Result<(), ProxyError> {
    let from_uri = req.uri().authority().map(|a| a.as_str());
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let from_header = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => return Err(ProxyError::Host(BadHost::Several)),
        (Some(v), None) => Some(v.to_str().map_err(|_| ProxyError::Host(BadHost::Invalid))?),
        _ => None,
    };
    if from_uri.is_none() && from_header.is_none() {
        return Err(ProxyError::Host(BadHost::Missing));
    }
    let default_port = match dest.scheme {
        Scheme::Https => 443,
        Scheme::Http => 80,
    };
    for named in [from_uri, from_header].into_iter().flatten() {
        if names_exactly(named, dest, default_port) {
            continue;
        }
        let parsed = Authority::parse(named);
        let same = parsed
            .as_ref()
            .is_ok_and(|a| a.host == dest.host && a.port.unwrap_or(default_port) == dest.port);
        if !same {
            // Only a normalised host is repeated, never the raw header.
            let named = parsed.map_or_else(|_| "an invalid host".to_owned(), |a| a.to_string());
            return Err(ProxyError::Misdirected {
                tunnel: dest.host.clone(),
                port: dest.port,
                named,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_spellings_of_the_destination_skip_the_parse_and_nothing_else_does() {
        let host = Host::parse("api.example.com").unwrap();
        let dest = Destination::new(host, 443, Scheme::Https, None);
        for yes in [
            "api.example.com",
            "api.example.com:443",
            "api.example.com:0443",
        ] {
            assert!(names_exactly(yes, &dest, 443), "{yes}");
        }
        // These go to the full parse, which decides (normalising case and
        // a final dot, refusing the rest).
        for no in [
            "API.example.com",
            "api.example.com.",
            "api.example.com:8443",
            "api.example.com:+443",
            "api.example.com:",
            "api.example.com.evil.net",
            "api.example.com@evil.net",
            "api.example.co",
        ] {
            assert!(!names_exactly(no, &dest, 443), "{no}");
        }
        let other_port =
            Destination::new(Host::parse("a.test").unwrap(), 8443, Scheme::Https, None);
        assert!(!names_exactly("a.test", &other_port, 443));
        assert!(names_exactly("a.test:8443", &other_port, 443));
    }
}
