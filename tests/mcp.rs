//! MCP server credentials (`static_bearer`, `mcp_oauth`) through real
//! sockets: the real keyhole binary in front of a local TLS MCP server
//! and local TLS OAuth token endpoints (tests/support/mcp), with curl,
//! Python `httpx` and a Rust client in the sandbox's place, none of them
//! holding a token.

mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use bytes::Bytes;
use serde_json::{json, Value};
use support::config::Config;
use support::mcp::oauth::{form_encode, Answer};
use support::mcp::{
    assert_none_in, credential_path, eventually, mcp_oauth, metric, seconds_until, static_bearer,
    Client, ClientAuth, McpWorld, Reply, Servers, MCP_HOST, OTHER_HOSTS,
};
use support::upstream::Chunks;
use support::world::WorldBuilder;
use support::{keyhole, Workspace};

const ADMIN: &str = "admin-token-for-mcp-tests";
const SB_TOKEN: &str = "sbtok_static_5e1f0a";
const AT_OLD: &str = "at_old_7c4d2b";
const AT_NEW: &str = "at_new_91e3aa";
const AT_NEWER: &str = "at_newer_3b6f10";
const RT_OLD: &str = "rt_old_d2a8c4";
const RT_NEW: &str = "rt_new_6f0b9e";
/// Characters that form encoding must escape, in the id and the secret.
const CLIENT_ID: &str = "mcp client:1";
const CLIENT_SECRET: &str = "cs+secret/é%41=&";
/// Every secret the tests configure or a token endpoint issues.
const SECRETS: [&str; 7] = [
    SB_TOKEN,
    AT_OLD,
    AT_NEW,
    AT_NEWER,
    RT_OLD,
    RT_NEW,
    CLIENT_SECRET,
];
/// What keyhole shows in place of an MCP token an upstream sent back.
const REDACTED: &str = "keyhole-redacted";
/// A JSON-RPC request, as an MCP client sends it.
const RPC: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{}}"#;

/// One `mcp_oauth` credential `vcrd_o` for `/mcp` holding [`AT_OLD`]
/// (expiring in `expires_in` seconds) and [`RT_OLD`] with `auth`, and
/// keyhole in front of it (`more`: admin API, audit log...).
async fn oauth_world(
    auth: ClientAuth,
    expires_in: i64,
    more: impl FnOnce(WorldBuilder) -> WorldBuilder,
) -> McpWorld {
    let s = Servers::start(vec![Client::new(CLIENT_ID, auth, RT_OLD)]).await;
    let cred = mcp_oauth("vcrd_o", &s.mcp.url(MCP_HOST, "/mcp"), AT_OLD)
        .expires_in(expires_in)
        .refresh(&s.auth[0]);
    s.world(Config::new().raw_credential(cred.json()), more)
        .await
}

/// A 200 that holds no secret and shows the token the MCP server
/// reflected as [`REDACTED`].
fn assert_redacted_200(reply: &Reply) {
    assert_eq!(reply.status, 200, "{}", reply.all_text());
    assert_none_in("a response", &[&reply.all_text()], &SECRETS);
    let reflected = reply.headers["x-seen-authorization"].to_str().unwrap();
    assert_eq!(reflected, format!("Bearer {REDACTED}"));
    assert!(reply.body.contains(REDACTED), "{}", reply.body);
}

/// keyhole's `502` for a refresh of `vcrd_o` that failed: the RFC 9209
/// error type, a message naming the credential and `why`, no secret.
fn assert_refresh_failed(reply: &Reply, why: &str) {
    assert_eq!(reply.status, 502, "{}", reply.all_text());
    let proxy_status = reply.headers["proxy-status"].to_str().unwrap();
    assert!(
        proxy_status.contains("error=http_request_error"),
        "{proxy_status}"
    );
    let body = &reply.body;
    assert!(body.contains("vcrd_o") && body.contains(why), "{body}");
    assert_none_in("a 502", &[&reply.all_text()], &SECRETS);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_bearer_goes_to_the_server_url_and_below_only() {
    let s = Servers::start(vec![]).await;
    let config = Config::new()
        .raw_credential(static_bearer(
            "vcrd_sb",
            &s.mcp.url(MCP_HOST, "/sse"),
            SB_TOKEN,
        ))
        .raw_credential(
            mcp_oauth("vcrd_oauth", &s.mcp.url(MCP_HOST, "/oauth"), AT_OLD)
                .expires_in(3600)
                .json(),
        );
    let w = s.world(config, |b| b.audit_log()).await;
    let (other, plain) = (w.mcp.other_port(), w.mcp.plain_port());
    let mut cases = vec![
        (w.url("/sse"), Some(SB_TOKEN)),
        (w.url("/sse/x?session=1"), Some(SB_TOKEN)),
        (w.url("/oauth"), Some(AT_OLD)),
        (w.url("/oauth/tools/call"), Some(AT_OLD)),
        (w.url("/sse2"), None),
        (w.url("/messages"), None),
        (w.url("/oauth2"), None),
        (format!("https://{MCP_HOST}:{other}/sse"), None),
        (format!("http://{MCP_HOST}:{plain}/sse"), None),
    ];
    cases.extend(OTHER_HOSTS.map(|host| (w.mcp.url(host, "/sse"), None)));
    let own = "Authorization: Bearer the-clients-own";
    for (url, want) in cases {
        let data = [
            "-H",
            own,
            "-H",
            "content-type: application/json",
            "--data",
            RPC,
        ];
        let body = w
            .world
            .curl_ok(&[&data[..], &[url.as_str()]].concat())
            .await;
        let seen = w.mcp.seen().pop().expect("a request");
        let authority = url.split('/').nth(2).unwrap();
        assert_eq!(seen.authority, authority, "{url}");
        assert_eq!(seen.body, RPC.as_bytes(), "{url}");
        assert_none_in(&url, &[&body], &SECRETS);
        match want {
            Some(token) => {
                assert_eq!(seen.bearer(), Some(token), "{url}: replaced and injected");
                assert!(body.contains(REDACTED), "{url}: {body}");
            }
            None => {
                assert_eq!(
                    seen.bearer(),
                    Some("the-clients-own"),
                    "{url}: not injected"
                );
                assert!(body.contains("the-clients-own"), "{url}: {body}");
            }
        }
    }
    w.world
        .keyhole
        .wait_log("plain http:// never carries a token");
    let audit = w.world.audit_log().to_owned();
    let read = || std::fs::read_to_string(&audit).unwrap_or_default();
    let passed = |credential: &str, reason: &str, path: &str| {
        format!(
            r#""event":"passed","credential":"{credential}","secret_name":"","host":"{MCP_HOST}","method":"POST","path":"{path}","location":"header","reason":"{reason}""#
        )
    };
    // A path outside every credential's names the nearest one; plain
    // http:// names the credential whose path it is.
    let wanted = [
        passed("vcrd_sb", "plaintext", "/sse"),
        passed("vcrd_oauth", "path_outside", "/oauth2"),
        r#""event":"substituted","credential":"vcrd_oauth""#.to_owned(),
        r#""path":"/sse2","location":"header","reason":"path_outside""#.to_owned(),
        r#""path":"/messages","location":"header","reason":"path_outside""#.to_owned(),
    ];
    // Four injected, three outside the paths, one plaintext.
    eventually("eight audit records", || async {
        read().lines().count() >= 8
    })
    .await;
    let records = read();
    for w in wanted {
        assert!(records.contains(&w), "no {w} in\n{records}");
    }
    assert_none_in("the audit log", &[&read()], &SECRETS);
}

/// A config file in `ws` with `vcrd_sb`, a `static_bearer` credential for
/// `https://mcp.test:8443/sse`, and the `mcp_oauth` credential `id` for
/// `url`.
fn sse_and(ws: &Workspace, id: &str, url: &str) -> PathBuf {
    let config = Config::new()
        .raw_credential(static_bearer(
            "vcrd_sb",
            "https://mcp.test:8443/sse",
            SB_TOKEN,
        ))
        .raw_credential(mcp_oauth(id, url, AT_OLD).json());
    ws.file("config.json", &config.json())
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_names_the_mcp_credential_of_a_url() {
    let ws = Workspace::new();
    let path = sse_and(&ws, "vcrd_other", "https://mcp.test:8443/admin");
    let explain = |url: &str| keyhole(&["explain", "--config", path.to_str().unwrap(), url]);
    let run = explain("https://mcp.test:8443/sse/tools");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let line = |id: &str| {
        let found = run.stdout.lines().find(|l| l.trim_start().starts_with(id));
        found
            .unwrap_or_else(|| panic!("no {id}: {}", run.stdout))
            .to_owned()
    };
    assert!(line("vcrd_sb").contains("token injected"), "{}", run.stdout);
    assert!(
        line("vcrd_sb").contains("https://mcp.test:8443/sse"),
        "{}",
        run.stdout
    );
    assert!(
        line("vcrd_other").contains("not injected"),
        "{}",
        run.stdout
    );
    let run = explain("https://mcp.test:8443/messages");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let sb = run.stdout.lines().find(|l| l.contains("vcrd_sb")).unwrap();
    assert!(sb.contains("not injected"), "{}", run.stdout);
    assert!(
        sb.contains("same origin, path outside the credential's"),
        "{}",
        run.stdout
    );
    assert_none_in("keyhole explain", &[&run.stdout, &run.stderr], &SECRETS);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expiring_token_is_refreshed_before_the_request() {
    // Each client authentication style, byte for byte; expired an hour
    // ago, expiring within the 60 s skew, expired a minute ago.
    let clients = vec![
        Client::new(
            CLIENT_ID,
            ClientAuth::Basic(CLIENT_SECRET.into()),
            "rt_basic",
        )
        .scope("mcp:read mcp:write")
        .resource("https://mcp.test/basic"),
        Client::new(CLIENT_ID, ClientAuth::Post(CLIENT_SECRET.into()), "rt_post"),
        Client::new("public-client", ClientAuth::None, "rt_none").scope("mcp"),
    ];
    let s = Servers::start(clients).await;
    let cases = [("basic", -3600), ("post", 30), ("none", -60)];
    let mut config = Config::new();
    for ((name, expires_in), auth) in cases.iter().zip(&s.auth) {
        let url = s.mcp.url(MCP_HOST, &format!("/{name}"));
        let cred = mcp_oauth(&format!("vcrd_{name}"), &url, &format!("at_{name}_old"));
        config = config.raw_credential(cred.expires_in(*expires_in).refresh(auth).json());
        auth.script(Answer::token(&format!("at_{name}_new")));
    }
    let w = s.world(config, |b| b).await;
    for ((name, _), auth) in cases.iter().zip(&w.auth) {
        let path = format!("/{name}");
        let reply = w.post(&path, RPC).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.all_text());
        let want = format!("at_{name}_new");
        assert_eq!(w.mcp.one_at(&path).bearer(), Some(want.as_str()), "{name}");
        assert!(
            !reply.all_text().contains(&want),
            "{name}: {}",
            reply.all_text()
        );
        assert_eq!(auth.calls(), 1, "{name}");
        // The new token is good for an hour: no second refresh.
        assert_eq!(w.post(&path, RPC).await.status, 200);
        assert_eq!(auth.calls(), 1, "{name}");
        assert_eq!(auth.presented(), [format!("rt_{name}")]);
        auth.assert_no_problem();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_refreshes_once_and_retries_with_the_same_body() {
    let w = oauth_world(ClientAuth::Post(CLIENT_SECRET.into()), 3600, |b| b).await;
    let auth = &w.auth[0];
    w.mcp.refuse(AT_OLD, 401);
    auth.script(Answer::token(AT_NEW));
    assert_redacted_200(&w.post("/mcp", RPC).await);
    let seen = w.mcp.seen_at("/mcp");
    let tokens: Vec<_> = seen.iter().map(|s| s.bearer()).collect();
    assert_eq!(tokens, [Some(AT_OLD), Some(AT_NEW)]);
    assert!(seen.iter().all(|s| s.body == RPC.as_bytes()), "{seen:#?}");
    assert_eq!(auth.calls(), 1);

    // A 403 (insufficient_scope) is the client's, never retried.
    w.mcp.refuse(AT_NEW, 403);
    let reply = w.post("/mcp/scoped", RPC).await;
    assert_eq!(reply.status, 403, "{}", reply.all_text());
    assert_none_in("a 403", &[&reply.all_text()], &SECRETS);
    assert_eq!(w.mcp.seen_at("/mcp/scoped").len(), 1);
    assert_eq!(auth.calls(), 1);

    // One retry only: a 401 to the refreshed token is the client's.
    w.mcp.refuse(AT_NEW, 401);
    w.mcp.refuse(AT_NEWER, 401);
    auth.script(Answer::token(AT_NEWER));
    let reply = w.post("/mcp/twice", RPC).await;
    assert_eq!(reply.status, 401, "{}", reply.all_text());
    assert_none_in("a 401", &[&reply.all_text()], &SECRETS);
    let seen = w.mcp.seen_at("/mcp/twice");
    let tokens: Vec<_> = seen.iter().map(|s| s.bearer()).collect();
    assert_eq!(tokens, [Some(AT_NEW), Some(AT_NEWER)]);
    assert_eq!(auth.calls(), 2);

    // A 401 to a body keyhole could not keep (chunked, no length) is the
    // client's too: no refresh, no retry.
    let chunks = [&RPC[..20], &RPC[20..]].map(|c| Bytes::from(c.to_owned()));
    let req = w.request("POST", "/mcp/upload").body(Chunks(chunks.into()));
    let reply = w.send(req.unwrap()).await;
    assert_eq!(reply.status, 401, "{}", reply.all_text());
    let upload = w.mcp.one_at("/mcp/upload");
    assert_eq!(upload.bearer(), Some(AT_NEWER));
    assert_eq!(upload.body, RPC.as_bytes());
    assert_eq!(auth.calls(), 2);
    auth.assert_no_problem();
}

/// `n` JSON-RPC POSTs at once, each on a connection of its own, to
/// `{prefix}0`, `{prefix}1`...
fn posts(w: &Arc<McpWorld>, n: usize, prefix: &str) -> JoinSet<Reply> {
    let mut requests = JoinSet::new();
    for i in 0..n {
        let (w, path) = (w.clone(), format!("{prefix}{i}"));
        requests.spawn(async move { w.post(&path, RPC).await });
    }
    requests
}

/// The replies to [`posts`] (bounded: 30 s).
async fn replies(requests: JoinSet<Reply>) -> Vec<Reply> {
    tokio::time::timeout(Duration::from_secs(30), requests.join_all())
        .await
        .expect("the requests end")
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_requests_during_expiry_make_one_refresh() {
    let w = Arc::new(
        oauth_world(ClientAuth::Basic(CLIENT_SECRET.into()), -5, |b| {
            b.admin(ADMIN)
        })
        .await,
    );
    w.auth[0].script(Answer::Held(Box::new(Answer::token(AT_NEW))));
    let requests = posts(&w, 50, "/mcp/");
    // Every request has reached keyhole while the one refresh is held at
    // the token endpoint.
    eventually("50 requests waiting in keyhole, one refresh", || async {
        let waiting = metric(&w.metrics().await, "keyhole_requests_total") == Some(50);
        waiting && w.auth[0].calls() == 1
    })
    .await;
    w.auth[0].release();
    replies(requests).await.iter().for_each(assert_redacted_200);
    assert_eq!(w.auth[0].calls(), 1, "exactly one token endpoint call");
    let seen = w.mcp.seen();
    assert_eq!(seen.len(), 50);
    assert!(seen.iter().all(|s| s.bearer() == Some(AT_NEW)), "{seen:#?}");

    // Twenty requests refused with 401 at once: one refresh too.
    w.mcp.refuse(AT_NEW, 401);
    w.auth[0].script(Answer::token(AT_NEWER));
    let requests = posts(&w, 20, "/mcp/again/");
    replies(requests).await.iter().for_each(assert_redacted_200);
    assert_eq!(w.auth[0].calls(), 2, "one more token endpoint call");
    w.auth[0].assert_no_problem();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_update_during_a_refresh_wins_and_keeps_the_rotation() {
    const AT_ADMIN: &str = "at_from_the_admin_api_5d5d";
    let w = oauth_world(ClientAuth::None, -5, |b| b.admin(ADMIN)).await;
    let auth = &w.auth[0];
    auth.script(Answer::Held(Box::new(Answer::rotating(AT_NEW, RT_NEW))));
    let update = async {
        eventually("the refresh has started", || async { auth.calls() == 1 }).await;
        let body = json!({"auth": {"type": "mcp_oauth", "access_token": AT_ADMIN,
            "expires_at": support::mcp::rfc3339_in(3600)}});
        let path = credential_path("vcrd_o", "");
        w.world.api().ok("POST", &path, Some(body)).await;
        auth.release();
    };
    let (reply, ()) = tokio::join!(w.post("/mcp", RPC), update);
    assert_redacted_200(&reply);
    assert_none_in("a response", &[&reply.all_text()], &[AT_ADMIN]);
    assert_eq!(w.mcp.one_at("/mcp").bearer(), Some(AT_ADMIN));
    // The admin's access token stays; the refresh token the server
    // rotated to is kept, since the old one is revoked now.
    saved_tokens(&w, AT_ADMIN, RT_NEW).await;
    w.mcp.refuse(AT_ADMIN, 401);
    auth.script(Answer::token(AT_NEWER));
    assert_redacted_200(&w.post("/mcp/later", RPC).await);
    assert_eq!(auth.presented(), [RT_OLD, RT_NEW]);
    auth.assert_no_problem();
}

/// Asserts the config file holds `access` and `refresh` for `vcrd_o`;
/// returns its `expires_at` there and as the admin API shows it (`null`
/// when there is none).
async fn saved_tokens(w: &McpWorld, access: &str, refresh: &str) -> (Value, Value) {
    let saved = w.config_file()["credentials"][0]["auth"].clone();
    assert_eq!(saved["access_token"], access, "{saved}");
    assert_eq!(saved["refresh"]["refresh_token"], refresh, "{saved}");
    let path = credential_path("vcrd_o", "");
    let shown = w.world.api().ok("GET", &path, None).await;
    let in_file = saved.get("expires_at").cloned().unwrap_or(Value::Null);
    (in_file, shown["auth"]["expires_at"].clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_refresh_token_survives_a_restart() {
    let w = oauth_world(ClientAuth::None, -5, |b| b.admin(ADMIN)).await;
    w.auth[0].script(Answer::rotating(AT_NEW, RT_NEW));
    assert_redacted_200(&w.post("/mcp", RPC).await);
    assert_eq!(w.mcp.one_at("/mcp").bearer(), Some(AT_NEW));
    let (in_file, shown) = saved_tokens(&w, AT_NEW, RT_NEW).await;
    let expires_at = in_file.as_str().expect("an expiry");
    assert!(
        (3500..=3600).contains(&seconds_until(expires_at)),
        "{expires_at}"
    );
    assert_eq!(shown, in_file);

    let w = w.restart();
    // keyhole holds the saved tokens: after a 401 to the new access
    // token it refreshes with the rotated refresh token.
    w.mcp.refuse(AT_NEW, 401);
    w.auth[0].script(Answer::no_expiry(AT_NEWER));
    assert_redacted_200(&w.post("/mcp/again", RPC).await);
    let seen: Vec<_> = w.mcp.seen_at("/mcp/again");
    let tokens: Vec<_> = seen.iter().map(|s| s.bearer()).collect();
    assert_eq!(tokens, [Some(AT_NEW), Some(AT_NEWER)]);
    assert_eq!(w.auth[0].presented(), [RT_OLD, RT_NEW]);
    // No refresh_token in the answer keeps the rotated one; no
    // expires_in leaves the expiry unknown.
    let (in_file, shown) = saved_tokens(&w, AT_NEWER, RT_NEW).await;
    assert_eq!((in_file, shown), (Value::Null, Value::Null));
    w.world.api().assert_no_secret(&SECRETS);
    w.auth[0].assert_no_problem();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_grant_needs_reauthorisation_until_the_tokens_are_updated() {
    let s = Servers::start(vec![Client::new(
        CLIENT_ID,
        ClientAuth::Basic(CLIENT_SECRET.into()),
        RT_OLD,
    )])
    .await;
    let config = Config::new()
        .raw_credential(
            mcp_oauth("vcrd_o", &s.mcp.url(MCP_HOST, "/mcp"), AT_OLD)
                .expires_in(-5)
                .refresh(&s.auth[0])
                .json(),
        )
        .raw_credential(
            mcp_oauth("vcrd_bare", &s.mcp.url(MCP_HOST, "/bare"), "at_bare_0a9b8c")
                .expires_in(3600)
                .json(),
        );
    let w = s.world(config, |b| b.admin(ADMIN)).await;
    let (api, auth) = (w.world.api(), &w.auth[0]);
    let validate = |id: &'static str| async move {
        let path = credential_path(id, "/mcp_oauth_validate");
        api.ok("POST", &path, None).await
    };
    auth.script(Answer::InvalidGrant);
    assert_refresh_failed(&w.post("/mcp", RPC).await, "invalid_grant");
    assert!(w.mcp.seen_at("/mcp").is_empty());
    let needs = |reason: &str| {
        format!(r#"keyhole_mcp_needs_reauthorisation{{credential_id="vcrd_o",reason="{reason}"}}"#)
    };
    assert_eq!(metric(&w.metrics().await, &needs("invalid_grant")), Some(1));
    // Until new tokens come, requests fail fast.
    assert_eq!(w.post("/mcp", RPC).await.status, 502);
    let v = validate("vcrd_o").await;
    assert_eq!(
        (v["status"].as_str(), v["refresh"]["status"].as_str()),
        (Some("invalid"), Some("failed")),
        "{v}"
    );
    assert_eq!(v["has_refresh_token"], true);
    assert_eq!(auth.calls(), 1);

    let update = json!({"auth": {"type": "mcp_oauth", "access_token": AT_NEW,
        "expires_at": support::mcp::rfc3339_in(3600)}});
    api.ok("POST", &credential_path("vcrd_o", ""), Some(update))
        .await;
    assert_eq!(metric(&w.metrics().await, &needs("none")), Some(0));
    assert_redacted_200(&w.post("/mcp/after", RPC).await);
    assert_eq!(w.mcp.one_at("/mcp/after").bearer(), Some(AT_NEW));
    assert_eq!(auth.calls(), 1);

    auth.script(Answer::token(AT_NEWER));
    let v = validate("vcrd_o").await;
    assert_eq!(
        (v["status"].as_str(), v["refresh"]["status"].as_str()),
        (Some("valid"), Some("succeeded")),
        "{v}"
    );
    assert_eq!(auth.calls(), 2);
    let v = validate("vcrd_bare").await;
    assert_eq!(v["refresh"]["status"], "no_refresh_token", "{v}");
    assert_eq!(v["has_refresh_token"], false, "{v}");
    api.assert_no_secret(&[&SECRETS[..], &["at_bare_0a9b8c"]].concat());
    auth.assert_no_problem();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_5xx_from_the_token_endpoint_backs_off_then_recovers() {
    let w = oauth_world(ClientAuth::None, -5, |b| b.admin(ADMIN)).await;
    let auth = &w.auth[0];
    auth.script(Answer::Status(503));
    assert_refresh_failed(&w.post("/mcp", RPC).await, "HTTP 503");
    let series = r#"keyhole_mcp_needs_reauthorisation{credential_id="vcrd_o",reason="server"}"#;
    assert_eq!(metric(&w.metrics().await, series), Some(1));
    // Within the backoff the expired token is not sent, nor the endpoint
    // called again.
    assert_eq!(w.post("/mcp", RPC).await.status, 502);
    assert_eq!(auth.calls(), 1);
    assert!(w.mcp.seen().is_empty());
    // Validating does not wait for the backoff.
    auth.script(Answer::token(AT_NEW));
    let path = credential_path("vcrd_o", "/mcp_oauth_validate");
    let v = w.world.api().ok("POST", &path, None).await;
    assert_eq!(v["status"], "valid", "{v}");
    assert_eq!(auth.calls(), 2);
    assert_redacted_200(&w.post("/mcp/after", RPC).await);
    assert_eq!(w.mcp.one_at("/mcp/after").bearer(), Some(AT_NEW));
    auth.assert_no_problem();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_sse_stream_stays_open_across_a_refresh() {
    let w = oauth_world(ClientAuth::None, 3600, |b| b).await;
    let mut stream = w.open_sse("/mcp/sse").await;
    assert_eq!(stream.head.status, 200);
    assert_eq!(stream.head.headers["content-type"], "text/event-stream");
    assert_eq!(
        stream.head.headers["x-seen-authorization"],
        format!("Bearer {REDACTED}").as_str()
    );
    stream.read_until("data: open\n\n").await;
    // Another request's 401 refreshes the token.
    w.mcp.refuse(AT_OLD, 401);
    w.auth[0].script(Answer::rotating(AT_NEW, RT_NEW));
    assert_redacted_200(&w.post("/mcp/messages", RPC).await);
    assert_eq!(w.auth[0].calls(), 1);
    assert_eq!(
        w.mcp.send_event("after the refresh"),
        1,
        "the stream is open upstream"
    );
    let all = stream.read_until("data: after the refresh\n\n").await;
    assert_none_in("the stream", &[&all], &SECRETS);
    assert_eq!(w.mcp.seen_at("/mcp/sse")[0].bearer(), Some(AT_OLD));
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_reaches_a_log_the_audit_log_or_the_client() {
    let w = oauth_world(ClientAuth::Post(CLIENT_SECRET.into()), -5, |b| {
        b.audit_log().var("RUST_LOG", "trace")
    })
    .await;
    let auth = &w.auth[0];
    // A refresh before the request (rotating), then one after a 401.
    auth.script(Answer::rotating(AT_NEW, RT_NEW));
    let first = w.post("/mcp", RPC).await;
    w.mcp.refuse(AT_NEW, 401);
    auth.script(Answer::token(AT_NEWER));
    let second = w.post("/mcp", RPC).await;
    let seen = w.mcp.seen();
    let tokens: Vec<_> = seen.iter().map(|s| s.bearer()).collect();
    assert_eq!(tokens, [Some(AT_NEW), Some(AT_NEW), Some(AT_NEWER)]);
    for reply in [&first, &second] {
        assert_redacted_200(reply);
        // The token endpoint's answer never reaches the client.
        for field in ["token_type", "refresh_token", "expires_in", "access_token"] {
            assert!(!reply.all_text().contains(field), "{}", reply.all_text());
        }
    }
    let keyhole = &w.world.keyhole;
    keyhole.wait_log("mcp: access token refreshed");
    let audit = w.world.audit_log().to_owned();
    let read = || std::fs::read_to_string(&audit).unwrap_or_default();
    eventually("two audit records", || async {
        read().lines().count() >= 2
    })
    .await;
    let stdout = std::fs::read_to_string(&keyhole.stdout_path).unwrap_or_default();
    let log = keyhole.log();
    assert!(log.contains("TRACE"), "the log is at trace level");
    // The secrets, and the forms the refresh request carried them in.
    let mut secrets: Vec<String> = SECRETS.iter().map(|s| s.to_string()).collect();
    secrets.extend(SECRETS.map(form_encode));
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_none_in("keyhole's log", &[&log, &stdout], &secrets);
    assert_none_in("the audit log", &[&read()], &secrets);
    auth.assert_no_problem();
}

/// `$KEYHOLE_TEST_PYTHON`, else the repository's `.venv/bin/python`.
fn python() -> PathBuf {
    std::env::var_os("KEYHOLE_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// One JSON-RPC POST with httpx, configured by the environment alone.
const HTTPX_POST: &str = r#"
import json, sys, httpx
url, body = sys.argv[1:]
res = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=20)
print(json.dumps({"status": res.status_code, "body": res.json()}))
"#;

#[tokio::test(flavor = "multi_thread")]
async fn curl_and_httpx_post_json_rpc_holding_no_token() {
    let w = oauth_world(ClientAuth::None, 3600, |b| b).await;
    let env = w.world.env();
    assert_none_in("keyhole env", &[&format!("{env:?}")], &SECRETS);
    let sandbox = |program: &str| {
        let mut cmd = tokio::process::Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(env)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    };
    let curl_url = w.url("/mcp/curl");
    let mut curl = sandbox("curl");
    curl.args([
        "-sS",
        "--fail",
        "--max-time",
        "20",
        "-H",
        "content-type: application/json",
    ])
    .args(["--data", RPC, &curl_url]);
    let mut clients = vec![("curl", curl, "/mcp/curl")];
    let py = python();
    let has_httpx = std::process::Command::new(&py)
        .args(["-c", "import httpx"])
        .status()
        .is_ok_and(|s| s.success());
    if has_httpx {
        let mut httpx = sandbox(py.to_str().unwrap());
        httpx.args(["-c", HTTPX_POST, &w.url("/mcp/httpx"), RPC]);
        clients.push(("httpx", httpx, "/mcp/httpx"));
    } else {
        let note = format!("httpx: no Python with httpx at {}", py.display());
        assert!(std::env::var_os("CI").is_none(), "{note}");
        eprintln!("SKIPPED {note}");
    }
    for (name, mut cmd, path) in clients {
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .unwrap_or_else(|_| panic!("{name} did not finish"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "{name}: {stdout}\n{stderr}\n{}",
            w.world.keyhole.log()
        );
        assert_none_in(name, &[&stdout, &stderr], &SECRETS);
        let printed: Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{name}: {e}: {stdout}"));
        let rpc = if name == "curl" {
            &printed
        } else {
            &printed["body"]
        };
        assert_eq!(rpc["id"], 7, "{name}: {stdout}");
        assert_eq!(rpc["result"]["path"], path, "{name}: {stdout}");
        assert_eq!(
            rpc["result"]["authorization"],
            format!("Bearer {REDACTED}"),
            "{name}"
        );
        assert_eq!(w.mcp.one_at(path).bearer(), Some(AT_OLD), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_vault_cannot_hold_two_credentials_for_one_mcp_server() {
    let ws = Workspace::new();
    let path = sse_and(&ws, "vcrd_b", "https://MCP.test:8443/sse/");
    let run = keyhole(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr
            .contains("already has a credential for this MCP server"),
        "{}",
        run.stderr
    );
    assert_none_in("keyhole check", &[&run.stdout, &run.stderr], &SECRETS);

    let s = Servers::start(vec![]).await;
    let url = s.mcp.url(MCP_HOST, "/sse");
    let config = Config::new().raw_credential(static_bearer("vcrd_sb", &url, SB_TOKEN));
    let w = s.world(config, |b| b.admin(ADMIN)).await;
    let same = format!("https://MCP.test:{}/sse/", w.mcp.port());
    let create =
        json!({"auth": {"type": "mcp_oauth", "mcp_server_url": same, "access_token": AT_OLD}});
    let api = w.world.api();
    let r = api
        .call("POST", "/v1/vaults/vlt_local/credentials", Some(create))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("vcrd_sb"), "{}", r.text);
    api.assert_no_secret(&SECRETS);
    // Nothing changed: the one credential still serves.
    let reply = w.post("/sse", RPC).await;
    assert_redacted_200(&reply);
    assert_eq!(w.mcp.one_at("/sse").bearer(), Some(SB_TOKEN));
}
