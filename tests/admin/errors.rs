//! Errors, authentication, refusals at start, and the secret scan over
//! every kind of credential.

use serde_json::json;

use super::support::admin::assert_error;
use super::world::{self, OLD_SECRET, TOKEN};
use super::{env_auth, support, CREDS};

#[tokio::test(flavor = "multi_thread")]
async fn errors_use_the_api_envelope() {
    let w = world::start().await;
    let api = w.api();
    // Authentication: none, wrong, and both accepted forms.
    let health = api.send("GET", "/healthz", &[], None).await;
    assert_eq!((health.status, health.text.as_str()), (200, "ok\n"));
    assert_error(
        &api.send("GET", CREDS, &[], None).await,
        401,
        "authentication_error",
    );
    assert_error(
        &api.send("GET", "/metrics", &[], None).await,
        401,
        "authentication_error",
    );
    let wrong = [("x-api-key", "admin-token-for-tests-4f9d2c7b")];
    assert_error(
        &api.send("GET", CREDS, &wrong, None).await,
        401,
        "authentication_error",
    );
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(
        api.send("GET", CREDS, &[("authorization", &bearer)], None)
            .await
            .status,
        200
    );
    // 404s, 405, 400s, 413.
    assert_error(
        &api.call("GET", "/v1/nothing", None).await,
        404,
        "not_found_error",
    );
    assert_error(
        &api.call("GET", "/v1/vaults/vlt_nope", None).await,
        404,
        "not_found_error",
    );
    assert_error(
        &api.call("GET", &format!("{CREDS}/vcrd_nope"), None).await,
        404,
        "not_found_error",
    );
    let other_vault = "/v1/vaults/vlt_nope/credentials/vcrd_api";
    assert_error(
        &api.call("GET", other_vault, None).await,
        404,
        "not_found_error",
    );
    assert_error(
        &api.call("PUT", CREDS, None).await,
        405,
        "invalid_request_error",
    );
    assert_error(
        &api.call("GET", &format!("{CREDS}?limit=101"), None).await,
        400,
        "invalid_request_error",
    );
    assert_error(
        &api.call("GET", &format!("{CREDS}?page=xyz"), None).await,
        400,
        "invalid_request_error",
    );
    let key = [("x-api-key", TOKEN)];
    let bad_json = api.send("POST", CREDS, &key, Some("{".into())).await;
    assert_error(&bad_json, 400, "invalid_request_error");
    // A body declared larger than 1 MiB is refused before it is read.
    let head = format!(
        "POST {CREDS} HTTP/1.1\r\nhost: x\r\nx-api-key: {TOKEN}\r\ncontent-length: {}\r\n\r\n",
        2 << 20
    );
    let reply = api.raw(head.as_bytes()).await;
    assert!(reply.starts_with("HTTP/1.1 413 "), "{reply}");
    assert!(reply.contains(r#""type":"request_too_large""#), "{reply}");
    // Every problem, each with its path.
    let body = json!({"metadata": {"k".repeat(65): "v"}, "auth": {"type": "environment_variable",
        "secret_name": "API_TOKEN", "secret_value": "x", "secret_value_file": "/etc/passwd",
        "networking": {"type": "limited", "allowed_hosts": ["https://x.example.test/", "ok.example.test"]}}});
    let r = api.call("POST", CREDS, Some(body)).await;
    assert_error(&r, 400, "invalid_request_error");
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("auth.secret_value_file: "), "{message}");
    let body = json!({"metadata": {"k".repeat(65): "v"}, "auth": {"type": "environment_variable",
        "secret_name": "API_TOKEN", "secret_value": "x",
        "networking": {"type": "limited", "allowed_hosts": ["https://x.example.test/", "elsewhere.test"]}}});
    let r = api.call("POST", CREDS, Some(body)).await;
    let message = r.json["error"]["message"].as_str().unwrap();
    for path in ["metadata.", "auth.networking.allowed_hosts[0]: "] {
        assert!(message.contains(path), "{path} in {message}");
    }
    // The unreachable host and the duplicate secret_name come from the whole-file check.
    let body = json!({"auth": env_auth("API_TOKEN", "x")});
    let r = api
        .call(
            "POST",
            CREDS,
            Some(json!({"auth": {"type": "environment_variable",
        "secret_name": "OTHER", "secret_value": "x",
        "networking": {"type": "limited", "allowed_hosts": ["elsewhere.test"]}}})),
        )
        .await;
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("auth.networking.allowed_hosts[0]: "),
        "{message}"
    );
    assert!(
        message.contains("credential_host_unreachable_error"),
        "{message}"
    );
    let r = api.call("POST", CREDS, Some(body)).await;
    let message = r.json["error"]["message"].as_str().unwrap();
    assert!(message.contains("auth.secret_name: "), "{message}");
    // Nothing was written by the refused calls.
    assert_eq!(world::file(&w)["credentials"].as_array().unwrap().len(), 1);
    assert!(!w.keyhole.log().contains(OLD_SECRET));
}

#[test]
fn admin_without_a_token_is_refused_at_start() {
    let ws = support::Workspace::new();
    let config = ws.file("config.json", &world::config().json());
    let config = config.to_str().unwrap();
    let admin = [
        "run",
        "--config",
        config,
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
    ];
    let run = support::keyhole(&admin);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("--admin needs --admin-token-file"),
        "{}",
        run.stderr
    );
    let empty = ws.file("empty.token", "\n");
    let with_empty_token = [&admin[..], &["--admin-token-file", empty.to_str().unwrap()]];
    let run = support::keyhole(&with_empty_token.concat());
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("is empty"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn no_response_holds_a_secret() {
    let w = world::start().await;
    let api = w.api();
    let secrets = [
        "sek_bearer_1a",
        "sek_access_2b",
        "sek_refresh_3c",
        "sek_client_4d",
        "sek_new_5e",
    ];
    let bearer = api
        .ok(
            "POST",
            CREDS,
            Some(json!({"auth": {"type": "static_bearer",
        "mcp_server_url": "https://mcp.example.test/sse", "token": secrets[0]}})),
        )
        .await;
    let oauth = api.ok("POST", CREDS, Some(json!({"auth": {"type": "mcp_oauth",
        "mcp_server_url": "https://oauth.example.test/mcp", "access_token": secrets[1],
        "expires_at": "2099-01-01T00:00:00Z", "refresh": {"client_id": "c", "refresh_token": secrets[2],
        "token_endpoint": "https://oauth.example.test/token",
        "token_endpoint_auth": {"type": "client_secret_post", "client_secret": secrets[3]}}}}))).await;
    assert_eq!(
        oauth["auth"]["refresh"]["token_endpoint_auth"],
        json!({"type": "client_secret_post"})
    );
    let past = api
        .call(
            "POST",
            CREDS,
            Some(json!({"auth": {"type": "mcp_oauth",
        "mcp_server_url": "https://oauth.example.test/mcp", "access_token": secrets[1],
        "expires_at": "2001-01-01T00:00:00Z"}})),
        )
        .await;
    assert_error(&past, 400, "invalid_request_error");
    for c in [&bearer, &oauth] {
        let path = format!("{CREDS}/{}", c["id"].as_str().unwrap());
        api.ok("GET", &path, None).await;
        let auth = match c["auth"]["type"].as_str().unwrap() {
            "static_bearer" => json!({"type": "static_bearer", "token": secrets[4]}),
            _ => json!({"type": "mcp_oauth", "access_token": secrets[4],
                "refresh": {"refresh_token": secrets[4], "token_endpoint_auth":
                    {"type": "client_secret_basic", "client_secret": secrets[4]}}}),
        };
        api.ok("POST", &path, Some(json!({"auth": auth}))).await;
        api.call("POST", &format!("{path}/mcp_oauth_validate"), None)
            .await;
        api.ok("POST", &format!("{path}/archive"), None).await;
    }
    let validation = api
        .ok(
            "POST",
            &format!(
                "{CREDS}/{}/mcp_oauth_validate",
                oauth["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(validation["status"], "unknown");
    api.ok("GET", &format!("{CREDS}?include_archived=true"), None)
        .await;
    api.ok(
        "DELETE",
        &format!("{CREDS}/{}", bearer["id"].as_str().unwrap()),
        None,
    )
    .await;
    api.assert_no_secret(&secrets);
    api.assert_no_secret(&[OLD_SECRET]);
}
