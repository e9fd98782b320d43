//! Interception: terminate the client's TLS with a leaf certificate for the
//! CONNECT host, then check and relay each request.
//!
//! Fail closed at every step: a tunnel that does not start with a TLS
//! ClientHello within [`PEEK_TIMEOUT`] is refused (never relayed blindly);
//! an SNI naming another host is refused (absent SNI only for IP targets);
//! a request whose `Host`/`:authority` names another host gets `421`. The
//! upstream is always the CONNECT authority.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{HeaderValue, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::LazyConfigAcceptor;

use super::body::{BodyError, ProxyBody};
use super::head_guard::{HeadChecks, HeadGuard};
use super::headers::{strip_hop_by_hop, strip_host};
use super::idle::Idle;
use super::respond::Refusal;
use super::rewind::Rewind;
use super::websocket::{self, upgrade_kind, UpgradeKind};
use super::{relay, serve_gracefully, Counters, Proxy, Snapshot};
use crate::audit::{self, Event, Location, Record};
use crate::host::{Authority, Host};
use crate::substitute::bodies::BodyEvents;

/// Longest wait for the first byte inside a new tunnel.
pub const PEEK_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the client's TLS handshake.
pub const CLIENT_TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// First byte of a TLS handshake record, as every ClientHello starts.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Serves one intercepted tunnel to `target` until the client is done.
pub async fn serve(proxy: Arc<Proxy>, mut io: TokioIo<Upgraded>, target: Authority) {
    let host = target.host.clone();
    let mut first = [0u8; 1];
    match tokio::time::timeout(PEEK_TIMEOUT, io.read(&mut first)).await {
        Ok(Ok(1)) => {}
        Ok(Ok(_)) | Ok(Err(_)) => return,
        Err(_) => {
            tracing::info!(%host, "intercepted tunnel closed: no TLS ClientHello within {}s", PEEK_TIMEOUT.as_secs());
            return;
        }
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        tracing::warn!(%host, "intercepted tunnel refused: the client did not start TLS");
        let refusal = Refusal::new(
            StatusCode::BAD_REQUEST,
            "tls_protocol_error",
            format!("keyhole intercepts {host} and expects TLS inside the tunnel; it never relays other bytes blindly. Use https://"),
        );
        let _ = io.write_all(&refusal.to_http1_bytes()).await;
        let _ = io.shutdown().await;
        return;
    }
    let acceptor = LazyConfigAcceptor::new(
        rustls::server::Acceptor::default(),
        Rewind::new(first.to_vec(), io),
    );
    let start = match tokio::time::timeout(CLIENT_TLS_TIMEOUT, acceptor).await {
        Ok(Ok(start)) => start,
        Ok(Err(e)) => {
            tracing::warn!(%host, error = %e, "intercepted tunnel refused: not a TLS ClientHello");
            return;
        }
        Err(_) => {
            tracing::info!(%host, "intercepted tunnel closed: ClientHello incomplete after {}s", CLIENT_TLS_TIMEOUT.as_secs());
            return;
        }
    };
    let sni = start.client_hello().server_name().map(str::to_owned);
    match sni.as_deref().map(Host::parse) {
        Some(Ok(named)) if named == host => {}
        None if !host.is_name() => {}
        Some(_) => {
            tracing::warn!(%host, sni = sni.as_deref().unwrap_or(""), "TLS refused: the SNI names another host than the CONNECT target");
            return;
        }
        None => {
            tracing::warn!(%host, "TLS refused: no SNI; a client must name the CONNECT host in its SNI");
            return;
        }
    }
    let config = match proxy.leaves.server_config(&host).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(%host, error = %e, "cannot issue a leaf certificate");
            return;
        }
    };
    let tls = match tokio::time::timeout(CLIENT_TLS_TIMEOUT, start.into_stream(config)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!(%host, error = %e, "client TLS handshake failed; does the client trust keyhole's CA?");
            return;
        }
        Err(_) => {
            tracing::info!(%host, "client TLS handshake timed out");
            return;
        }
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let target = Arc::new(target);
    let service_proxy = proxy.clone();
    let service = service_fn(move |req| {
        let proxy = service_proxy.clone();
        let target = target.clone();
        async move { Ok::<_, Infallible>(handle(&proxy, &target, req).await) }
    });
    let limits = &proxy.limits;
    let io = TokioIo::new(Idle::new(tls, limits.idle_timeout));
    let result = if h2 {
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_streams)
            .max_header_list_size(limits.max_header_bytes.min(u32::MAX as usize) as u32)
            .serve_connection(io, service);
        serve_gracefully!(conn, proxy.stop_signal())
    } else {
        let checks = Arc::new(HeadChecks::default());
        let io = TokioIo::new(HeadGuard::new(
            io.into_inner(),
            checks.clone(),
            limits.max_header_bytes,
        ));
        let service = service_fn(move |req| {
            let refused = checks.refusal_for_next_request();
            let service = service.clone();
            async move {
                match refused {
                    Some(r) => Ok::<_, Infallible>(r.into_response()),
                    None => hyper::service::Service::call(&service, req).await,
                }
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .max_buf_size(limits.max_header_bytes.max(8192))
            .serve_connection(io, service)
            .with_upgrades();
        serve_gracefully!(conn, proxy.stop_signal())
    };
    if let Err(e) = result {
        tracing::debug!(%host, error = %e, "intercepted connection ended with an error");
    }
}

/// Checks, substitutes and relays one request of an intercepted tunnel.
async fn handle(
    proxy: &Proxy,
    target: &Authority,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let method = req.method().clone();
    let host = &target.host;
    if let Err(refusal) = check_destination(target, &req) {
        tracing::warn!(%method, %host, status = refusal.status.as_u16(), "request refused: {}", refusal.message);
        return refusal.into_response();
    }
    if method == Method::CONNECT {
        return Refusal::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "http_request_denied",
            "a CONNECT inside an intercepted tunnel is refused",
        )
        .into_response();
    }
    let upgrade = upgrade_kind(&req);
    if upgrade == UpgradeKind::Other {
        return Refusal::new(
            StatusCode::BAD_REQUEST,
            "http_request_denied",
            "only WebSocket upgrades are relayed; h2c and other upgrades are refused",
        )
        .into_response();
    }
    let client_upgrade = match upgrade {
        UpgradeKind::WebSocket(_) => Some(hyper::upgrade::on(&mut req)),
        _ => None,
    };
    let snapshot = proxy.snapshot();
    let policy = &snapshot.policy;
    if !policy.egress_allows(host) {
        Counters::add(&proxy.counters.denied, 1);
        return Refusal::new(
            StatusCode::FORBIDDEN,
            "http_request_denied",
            format!("egress does not allow {host}"),
        )
        .into_response();
    }
    let allowed = policy.credentials_for(host);
    let (mut parts, body) = req.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    strip_host(&mut parts.headers);
    let report = match snapshot.substitutions.headers(&mut parts.headers, allowed) {
        Ok(r) => r,
        Err(e) => {
            return Refusal::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "proxy_configuration_error",
                e.to_string(),
            )
            .into_response()
        }
    };
    let counters = &proxy.counters;
    Counters::add(&counters.requests, 1);
    Counters::add(&counters.substituted, report.substituted.len());
    Counters::add(&counters.passed, report.passed.len());
    let id = |i: &u32| policy.credential(*i).map_or("?", |c| c.id.as_str());
    for i in &report.passed {
        tracing::warn!(credential = id(i), %host, "placeholder passed unsubstituted: its credential does not allow this host or location");
    }
    // The audit path (no query) is made only when there is an audit log.
    let path = match &proxy.audit {
        Some(_) => audit::path_only(parts.uri.path_and_query().map_or("/", |p| p.as_str())),
        None => String::new(),
    };
    if let Some(log) = &proxy.audit {
        for i in &report.substituted {
            log.record(record(
                policy,
                *i,
                host,
                &method,
                &path,
                Location::Header,
                Event::Substituted,
                "allowed",
            ));
        }
        for i in &report.passed {
            let reason = if allowed.contains(i) {
                "location_disabled"
            } else {
                "host_not_allowed"
            };
            log.record(record(
                policy,
                *i,
                host,
                &method,
                &path,
                Location::Header,
                Event::Passed,
                reason,
            ));
        }
    }
    if let (UpgradeKind::WebSocket(protocol), Some(on_upgrade)) = (upgrade, client_upgrade) {
        let res = websocket::relay(proxy, target, protocol, parts, body, on_upgrade).await;
        let substituted: Vec<&str> = report.substituted.iter().map(id).collect();
        tracing::info!(%method, %host, status = res.status().as_u16(), ms = start.elapsed().as_millis() as u64, substituted = %substituted.join(","), upgrade = "websocket", "request");
        return res;
    }
    let pq = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let port = target.port.unwrap_or(443);
    let uri = match Uri::try_from(format!("https://{host}:{port}{pq}")) {
        Ok(u) => u,
        Err(_) => {
            return Refusal::new(
                StatusCode::BAD_REQUEST,
                "http_request_error",
                "the request target is not valid",
            )
            .into_response()
        }
    };
    parts.uri = uri;
    // The upstream leg's version follows the upstream's ALPN, not the client's.
    parts.version = Version::HTTP_11;
    let bodies = snapshot.substitutions.bodies();
    // A body can change only if one exists and a credential allowed here
    // has body injection on.
    let may_change = bodies.may_substitute(allowed) && !hyper::body::Body::is_end_stream(&body);
    let body: ProxyBody = if is_encoded(&parts.headers) {
        if may_change {
            Counters::add(&counters.encoded_bodies, 1);
            tracing::warn!(%host, "request body has a Content-Encoding: keyhole never alters an encoded body, so placeholders in it pass unchanged");
        }
        body.map_err(|e| Box::new(e) as BodyError).boxed()
    } else {
        if may_change {
            // The length may change: HTTP/1.1 re-frames as chunked, HTTP/2
            // carries no length.
            parts.headers.remove(CONTENT_LENGTH);
        }
        // Told of each placeholder in the body: counts substitutions by
        // credential, and writes the audit log when there is one. Built
        // only when it has something to do, so a plain request pays for
        // no closure, clone or lock.
        let wants_events = may_change || proxy.audit.is_some();
        let audit_log = proxy.audit.clone();
        let by_credential = counters.by_credential.clone();
        let snapshot_for_events = snapshot.clone();
        let (event_host, event_method) = (host.clone(), method.clone());
        let allowed_for_events = allowed.to_vec();
        let events: Option<BodyEvents> = wants_events.then(|| -> BodyEvents {
            Arc::new(move |i: u32, substituted: bool| {
                let policy = &snapshot_for_events.policy;
                if substituted {
                    if let Some(c) = policy.credential(i) {
                        super::bump(&by_credential, &c.id, 1);
                    }
                }
                if let Some(log) = &audit_log {
                    let (event, reason) = match (substituted, allowed_for_events.contains(&i)) {
                        (true, _) => (Event::Substituted, "allowed"),
                        (false, true) => (Event::Passed, "location_disabled"),
                        (false, false) => (Event::Passed, "host_not_allowed"),
                    };
                    log.record(record(
                        policy,
                        i,
                        &event_host,
                        &event_method,
                        &path,
                        Location::Body,
                        event,
                        reason,
                    ));
                }
            })
        });
        bodies
            .request(body, allowed, counters.body.clone(), events)
            .map_err(|e| Box::new(e) as BodyError)
            .boxed()
    };
    // After a secret was sent, ask for an uncompressed answer, which keyhole
    // can scrub.
    let secret_sent = !report.substituted.is_empty() || (may_change && !is_encoded(&parts.headers));
    if secret_sent {
        parts
            .headers
            .insert(ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }
    let req = Request::from_parts(parts, body);
    let res = scrub(
        proxy,
        &snapshot,
        host,
        &method,
        secret_sent,
        relay::send(proxy, req).await,
    );
    counters.outcome(&res);
    for i in &report.substituted {
        counters.substituted_for(id(i), 1);
    }
    let substituted: Vec<&str> = report.substituted.iter().map(id).collect();
    tracing::info!(
        %method,
        %host,
        status = res.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        substituted = %substituted.join(","),
        "request"
    );
    res
}

/// An audit record for credential `i`.
#[allow(clippy::too_many_arguments)]
pub(super) fn record(
    policy: &crate::policy::Policy,
    i: u32,
    host: &Host,
    method: &Method,
    path: &str,
    location: Location,
    event: Event,
    reason: &'static str,
) -> Record {
    let credential = policy.credential(i);
    Record {
        time: audit::now(),
        event,
        credential: credential.map_or_else(String::new, |c| c.id.clone()),
        secret_name: credential
            .and_then(|c| c.environment_variable())
            .map_or_else(String::new, |a| a.secret_name.clone()),
        host: host.to_string(),
        method: method.to_string(),
        path: path.to_owned(),
        location,
        reason,
    }
}

/// Whether a body is content-encoded (compressed): such bodies are never
/// altered.
fn is_encoded(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
}

/// Replaces every form of every secret in a response with its placeholder
/// form: header values at once, the body as it streams. An encoded
/// response to a request that carried a secret cannot be scrubbed and is
/// refused (`502`); other encoded responses pass (no secret was sent).
fn scrub(
    proxy: &Proxy,
    snapshot: &Snapshot,
    host: &Host,
    method: &Method,
    secret_sent: bool,
    res: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let bodies = snapshot.substitutions.bodies();
    let (mut parts, body) = res.into_parts();
    let in_headers = bodies.scrub_headers(&mut parts.headers);
    if in_headers > 0 {
        Counters::add(&proxy.counters.scrubbed, in_headers);
        tracing::warn!(%host, "a secret came back in a response header; the client sees its placeholder");
    }
    let encoded = is_encoded(&parts.headers);
    if encoded && secret_sent {
        return Refusal::new(
            StatusCode::BAD_GATEWAY,
            "http_response_content_coding",
            format!("{host} answered with a Content-Encoding although keyhole asked for identity after sending a secret; keyhole cannot scrub an encoded body, so it does not relay it"),
        )
        .into_response();
    }
    let bodiless = *method == Method::HEAD
        || parts.status.is_informational()
        || parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED;
    if bodiless || encoded {
        return Response::from_parts(parts, body);
    }
    parts.headers.remove(CONTENT_LENGTH);
    let body = bodies
        .response(body, proxy.counters.scrubbed.clone())
        .boxed();
    Response::from_parts(parts, body)
}

/// Every host the request names (`:authority` or the absolute URI, and
/// `Host`) must be the CONNECT host, on the CONNECT port.
fn check_destination(target: &Authority, req: &Request<Incoming>) -> Result<(), Refusal> {
    let want_port = target.port.unwrap_or(443);
    let from_uri = req.uri().authority().map(|a| a.as_str());
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let from_header = match (hosts.next(), hosts.next()) {
        (Some(_), Some(_)) => {
            return Err(Refusal::new(
                StatusCode::BAD_REQUEST,
                "http_request_error",
                "the request has more than one Host header",
            ))
        }
        (Some(v), None) => Some(v.to_str().map_err(|_| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "http_request_error",
                "the Host header is not valid",
            )
        })?),
        _ => None,
    };
    if from_uri.is_none() && from_header.is_none() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "http_request_error",
            "the request names no host; send a Host header",
        ));
    }
    for named in [from_uri, from_header].into_iter().flatten() {
        let parsed = Authority::parse(named);
        let same = parsed
            .as_ref()
            .is_ok_and(|a| a.host == target.host && a.port.unwrap_or(443) == want_port);
        if !same {
            // Only a normalised host is repeated, never the raw header.
            let named = parsed.map_or_else(|_| "an invalid host".to_owned(), |a| a.to_string());
            return Err(Refusal::new(
                StatusCode::MISDIRECTED_REQUEST,
                "http_request_denied",
                format!(
                    "this tunnel was opened to {}:{want_port} but the request names {named}; keyhole sends a request only to the host its CONNECT named, so open a new tunnel to that host",
                    target.host
                ),
            )
            .details("request host differs from the CONNECT host"));
        }
    }
    Ok(())
}
