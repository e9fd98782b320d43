//! keyhole with `--admin`, in front of a TLS upstream for
//! `api.example.test` certified by a test CA.

use std::collections::HashMap;

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;

use super::api::Api;
use crate::support::client;
use crate::support::proxy::Keyhole;
use crate::support::upstream::{tls_upstream, Alpn, TestCa, Upstream};

pub const TOKEN: &str = "admin-token-for-tests-4f9d2c7a";
pub const OLD_SECRET: &str = "sek_before_update_31d4";
pub const HOST: &str = "api.example.test";

/// The file keyhole starts on: one credential for `api.example.test`,
/// without timestamps.
pub fn config() -> String {
    format!(
        r#"{{
  "egress": {{"type": "limited", "allowed_hosts": ["{HOST}", "*.example.test"]}},
  "credentials": [
    {{"id": "vcrd_api", "display_name": "API", "auth": {{"type": "environment_variable", "secret_name": "API_TOKEN",
      "secret_value": "{OLD_SECRET}", "networking": {{"type": "limited", "allowed_hosts": ["{HOST}"]}}}}}}
  ]
}}"#
    )
}

pub struct World {
    pub ca: TestCa,
    pub upstream: Upstream,
    pub keyhole: Keyhole,
    pub api: Api,
    pub args: Vec<String>,
}

impl World {
    pub async fn new() -> World {
        let ca = TestCa::new();
        let upstream = tls_upstream(&ca, &[HOST], Alpn::H1).await;
        let dir = tempfile::tempdir().unwrap();
        let ca_path = dir.path().join("upstream-ca.pem");
        std::fs::write(&ca_path, &ca.cert_pem).unwrap();
        let token_path = dir.path().join("admin.token");
        std::fs::write(&token_path, format!("{TOKEN}\n")).unwrap();
        let args: Vec<String> = vec![
            "--upstream-ca".into(),
            ca_path.display().to_string(),
            "--resolve".into(),
            format!("{HOST}:{}:127.0.0.1", upstream.port()),
            "--admin".into(),
            "127.0.0.1:0".into(),
            "--admin-token-file".into(),
            token_path.display().to_string(),
        ];
        let keyhole = Keyhole::start_in(dir, &config(), &args, &[]);
        let api = Api::new(keyhole.admin.expect("admin address"), TOKEN);
        World {
            ca,
            upstream,
            keyhole,
            api,
            args,
        }
    }

    /// Stops keyhole and starts it again on the same config and state.
    pub fn restart(self) -> World {
        let World {
            ca,
            upstream,
            keyhole,
            api,
            args,
        } = self;
        let keyhole = keyhole.restart(&args, &[]);
        let api = Api::new(keyhole.admin.expect("admin address"), &api.token);
        World {
            ca,
            upstream,
            keyhole,
            api,
            args,
        }
    }

    /// The config file as JSON.
    pub fn file(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.keyhole.config_path()).unwrap();
        serde_json::from_str(&text).unwrap()
    }

    /// `keyhole env --format json` for this config and state: the placeholders.
    pub fn placeholders(&self) -> HashMap<String, String> {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keyhole"))
            .args(["env", "--format", "json", "--config"])
            .arg(self.keyhole.config_path())
            .arg("--state-dir")
            .arg(&self.keyhole.state_dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// GET through the proxy to `api.example.test` with `Authorization:
    /// Bearer <value>`; returns the Authorization header the upstream got.
    pub async fn authorization_upstream_sees(&self, value: &str) -> String {
        let tls = client::open(
            self.keyhole.addr,
            &format!("{HOST}:{}", self.upstream.port()),
            Some(HOST),
            None,
            // keyhole's CA when it intercepts, the upstream's when it tunnels.
            &[self.keyhole.ca_der(), self.ca.cert_der.clone()],
            &[b"http/1.1"],
        )
        .await
        .expect("through keyhole");
        let req = Request::get("/check")
            .header("host", format!("{HOST}:{}", self.upstream.port()))
            .header("authorization", format!("Bearer {value}"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let (res, _) = client::send(tls, req).await.expect("response");
        assert_eq!(res.status(), 200);
        let last = self
            .upstream
            .received()
            .pop()
            .expect("upstream got nothing");
        last.header("authorization").unwrap_or_default()
    }
}
