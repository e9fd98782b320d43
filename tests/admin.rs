//! The admin API through real sockets: keyhole's binary with `--admin`,
//! driven by the official `anthropic` Python SDK (tests/admin_sdk.py) and
//! by raw HTTP, with a TLS upstream behind the proxy.

mod support;

#[path = "admin/errors.rs"]
mod errors;
#[path = "admin/world.rs"]
mod world;

use std::path::PathBuf;

use serde_json::{json, Value};

use support::admin::Api;
use world::{authorization_upstream_sees, HOST, OLD_SECRET, TOKEN};

const NEW_SECRET: &str = "sek_after_update_77b1";

/// An `environment_variable` auth for `api.example.test`.
pub fn env_auth(name: &str, secret: &str) -> Value {
    json!({"type": "environment_variable", "secret_name": name, "secret_value": secret,
        "networking": {"type": "limited", "allowed_hosts": [HOST]}})
}

/// The default vault's credentials.
pub const CREDS: &str = "/v1/vaults/vlt_local/credentials";

/// The Python of a virtualenv with the `anthropic` SDK: `$KEYHOLE_TEST_PYTHON`
/// (set by `.ci/run`, so CI fails if it is missing), else `.venv/bin/python`.
fn sdk_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("KEYHOLE_TEST_PYTHON") {
        let p = PathBuf::from(p);
        assert!(
            p.exists(),
            "KEYHOLE_TEST_PYTHON={} does not exist",
            p.display()
        );
        return Some(p);
    }
    let local = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    local.exists().then_some(local)
}

#[tokio::test(flavor = "multi_thread")]
async fn sdk_drives_the_admin_api() {
    let Some(python) = sdk_python() else {
        eprintln!(
            "SKIPPED sdk_drives_the_admin_api: no virtualenv with the anthropic SDK. Run \
             `python3 -m venv .venv && .venv/bin/pip install anthropic==2.14.0`, or set \
             KEYHOLE_TEST_PYTHON (bash .ci/run does both)."
        );
        return;
    };
    let w = world::start().await;
    let out = tokio::process::Command::new(&python)
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/admin_sdk.py"))
        .env("KEYHOLE_ADMIN_URL", format!("http://{}", w.api().addr))
        .env("KEYHOLE_ADMIN_TOKEN", TOKEN)
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("ANTHROPIC_AUTH_TOKEN")
        .env_remove("ANTHROPIC_BASE_URL")
        .env(
            "ANTHROPIC_CONFIG_DIR",
            w.keyhole.state_dir.join("no-anthropic-config"),
        )
        .output()
        .await
        .expect("run python");
    let support::Run {
        code,
        stdout,
        stderr,
    } = out.into();
    assert_eq!(code, 0, "SDK script failed:\n{stdout}\n{stderr}");
    let result: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no RESULT line:\n{stdout}"));
    // The file holds what the SDK did.
    let file = world::file(&w);
    let creds = file["credentials"].as_array().unwrap();
    let by_id = |id: &Value| creds.iter().find(|c| c["id"] == *id).cloned();
    let rotated = by_id(&result["rotated"]).expect("rotated credential in the file");
    assert_eq!(rotated["auth"]["secret_value"], result["new_secret"]);
    assert_eq!(rotated["metadata"], json!({"k": "v"}));
    assert!(by_id(&result["archived"]).unwrap()["archived_at"].is_string());
    assert!(by_id(&result["deleted"]).is_none());
    for id in result["kept"].as_array().unwrap() {
        assert!(by_id(id).is_some(), "{id} kept");
    }
    assert!(file["vaults"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["id"] == result["vault"]));
    assert!(
        !w.keyhole.log().contains("sdk-secret-"),
        "a secret in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_right_after_an_update_uses_the_new_secret() {
    let w = world::start().await;
    let ph = w.placeholder("API_TOKEN").to_owned();
    let seen = authorization_upstream_sees(&w, &ph).await;
    assert_eq!(seen, format!("Bearer {OLD_SECRET}"));
    let auth = json!({"type": "environment_variable", "secret_value": NEW_SECRET});
    w.api()
        .ok(
            "POST",
            &format!("{CREDS}/vcrd_api"),
            Some(json!({"auth": auth})),
        )
        .await;
    // No wait: the change is in force for the very next request.
    let seen = authorization_upstream_sees(&w, &ph).await;
    assert_eq!(seen, format!("Bearer {NEW_SECRET}"));
    // Archived: never substituted (and no longer intercepted: tunnelled).
    w.api()
        .ok("POST", &format!("{CREDS}/vcrd_api/archive"), None)
        .await;
    assert_eq!(
        authorization_upstream_sees(&w, &ph).await,
        format!("Bearer {ph}")
    );
    // /metrics counts what happened.
    let m = w
        .api()
        .send(
            "GET",
            "/metrics",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            None,
        )
        .await;
    assert_eq!(m.status, 200);
    assert!(
        m.content_type.starts_with("text/plain; version=0.0.4"),
        "{}",
        m.content_type
    );
    for line in [
        "keyhole_requests_total 2",
        "keyhole_intercepts_total 2",
        "keyhole_tunnels_total 1",
        "keyhole_substitutions_by_credential_total{credential_id=\"vcrd_api\"} 2",
        "keyhole_responses_total{class=\"2xx\"} 2",
        "keyhole_leaf_cache_misses_total 1",
        "keyhole_leaf_cache_hits_total 1",
        "keyhole_reloads_total{outcome=\"failed\"} 0",
        "# TYPE keyhole_tunnels_total counter",
    ] {
        assert!(
            m.text.lines().any(|l| l == line),
            "{line:?} not in\n{}",
            m.text
        );
    }
    w.api().assert_no_secret(&[OLD_SECRET, NEW_SECRET]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restart_keeps_every_change() {
    let w = world::start().await;
    let api = w.api();
    let vault = api
        .ok("POST", "/v1/vaults", Some(json!({"display_name": "kept"})))
        .await;
    let vid = vault["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/vaults/{vid}/credentials");
    let mut ids = Vec::new();
    for (name, secret) in [
        ("A_TOKEN", "sek_a_1"),
        ("B_TOKEN", "sek_b_2"),
        ("C_TOKEN", "sek_c_3"),
    ] {
        let body = json!({"auth": env_auth(name, secret)});
        let created = api.ok("POST", &path, Some(body)).await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    let metadata = json!({"metadata": {"x": "1"}});
    api.ok("POST", &format!("{path}/{a}"), Some(metadata)).await;
    api.ok("POST", &format!("{path}/{b}/archive"), None).await;
    api.ok("DELETE", &format!("{path}/{c}"), None).await;
    let auth = json!({"type": "environment_variable", "secret_value": NEW_SECRET});
    let update = json!({"auth": auth});
    api.ok("POST", &format!("{CREDS}/vcrd_api"), Some(update))
        .await;
    let metadata = json!({"metadata": {"m": "n"}});
    api.ok("POST", "/v1/vaults/vlt_local", Some(metadata)).await;

    let snapshot = |api: Api| async move {
        let list = format!(
            "/v1/vaults/{}/credentials?include_archived=true",
            vid_of(&api).await
        );
        (
            api.ok("GET", "/v1/vaults?include_archived=true", None)
                .await,
            api.ok("GET", &list, None).await,
            api.ok("GET", &format!("{CREDS}?include_archived=true"), None)
                .await,
        )
    };
    let before = snapshot(api.clone()).await;
    let ph = w.placeholder("API_TOKEN").to_owned();
    let w = w.restart();
    let after = snapshot(w.api().clone()).await;
    assert_eq!(
        before, after,
        "the API shows the same after a restart, timestamps included"
    );
    let creds = after.1["data"].as_array().unwrap();
    assert_eq!(creds.len(), 2);
    assert_eq!(creds[0]["metadata"], json!({"x": "1"}));
    assert!(creds[1]["archived_at"].is_string());
    assert_eq!(w.placeholder("API_TOKEN"), ph);
    assert_eq!(
        authorization_upstream_sees(&w, &ph).await,
        format!("Bearer {NEW_SECRET}")
    );
    w.api()
        .assert_no_secret(&["sek_a_1", "sek_b_2", "sek_c_3", NEW_SECRET, OLD_SECRET]);
}

/// The id of the first vault that is not `vlt_local`.
async fn vid_of(api: &Api) -> String {
    let vaults = api
        .ok("GET", "/v1/vaults?include_archived=true", None)
        .await;
    let data = vaults["data"].as_array().unwrap();
    let v = data
        .iter()
        .find(|v| v["id"] != "vlt_local")
        .expect("a created vault");
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn fifty_concurrent_updates_all_persist() {
    let w = world::start().await;
    // Four credentials: 50 distinct keys stay under 16 metadata pairs each.
    let mut ids = vec!["vcrd_api".to_owned()];
    for n in 1..4 {
        let body = json!({"auth": env_auth(&format!("T{n}"), &format!("sek_t_{n}"))});
        let c = w.api().ok("POST", CREDS, Some(body)).await;
        ids.push(c["id"].as_str().unwrap().to_owned());
    }
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let api = w.api().clone();
            let path = format!("{CREDS}/{}", ids[i % 4]);
            tokio::spawn(async move {
                let body = json!({"metadata": {format!("k{i}"): format!("v{i}")}});
                api.call("POST", &path, Some(body)).await.status
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let file = world::file(&w);
    let creds = file["credentials"].as_array().unwrap();
    for i in 0..50 {
        let c = creds.iter().find(|c| c["id"] == ids[i % 4]).unwrap();
        assert_eq!(
            c["metadata"][format!("k{i}")],
            format!("v{i}"),
            "update {i} lost"
        );
        let shown = w
            .api()
            .ok("GET", &format!("{CREDS}/{}", ids[i % 4]), None)
            .await;
        assert_eq!(shown["metadata"][format!("k{i}")], format!("v{i}"));
    }
}
