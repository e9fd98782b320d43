//! Live reload through real sockets: a file change, SIGHUP, an invalid
//! file, a symlink swap, and a long-lived intercepted connection whose
//! requests each follow the policy current when they arrive.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use support::client;
use support::proxy::Keyhole;
use support::upstream::{tls_upstream, Alpn, TestCa, Upstream};

const PLACEHOLDER: &str = "kh_pinned_reload_0123456789";

fn config(secret: &str) -> String {
    format!(
        r#"{{"credentials": [{{"id": "vcrd_api", "auth": {{"type": "environment_variable", "secret_name": "API_TOKEN",
  "secret_value": "{secret}", "placeholder": "{PLACEHOLDER}",
  "networking": {{"type": "limited", "allowed_hosts": ["api.example.test"]}}}}}}]}}
"#
    )
}

struct Setup {
    upstream: Upstream,
    keyhole: Keyhole,
    _ca: TestCa,
}

async fn setup(secret: &str) -> Setup {
    let ca = TestCa::new();
    let upstream = tls_upstream(&ca, &["api.example.test"], Alpn::H1).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("upstream-ca.pem");
    std::fs::write(&ca_path, &ca.cert_pem).unwrap();
    let args = vec![
        "--upstream-ca".to_owned(),
        ca_path.display().to_string(),
        "--resolve".to_owned(),
        format!("api.example.test:{}:127.0.0.1", upstream.port()),
    ];
    let keyhole = Keyhole::start_in(dir, &config(secret), &args, &[]);
    Setup {
        upstream,
        keyhole,
        _ca: ca,
    }
}

impl Setup {
    fn config_path(&self) -> PathBuf {
        self.keyhole.state_dir.parent().unwrap().join("config.json")
    }

    fn authority(&self) -> String {
        format!("api.example.test:{}", self.upstream.port())
    }

    /// One request on a fresh tunnel; the Authorization the upstream saw.
    async fn seen(&self) -> String {
        let tls = client::open(
            self.keyhole.addr,
            &self.authority(),
            Some("api.example.test"),
            None,
            &[self.keyhole.ca_der()],
            &[b"http/1.1"],
        )
        .await
        .unwrap();
        let req = Request::get("/")
            .header("host", self.authority())
            .header("authorization", PLACEHOLDER)
            .body(Empty::<Bytes>::new())
            .unwrap();
        let (res, _) = client::send(tls, req).await.unwrap();
        assert_eq!(res.status(), 200);
        self.upstream
            .received()
            .pop()
            .unwrap()
            .header("authorization")
            .unwrap()
    }

    /// Polls until a fresh request shows `want` upstream (or 10 s pass).
    async fn wait_for(&self, want: &str) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if self.seen().await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never saw {want}; log:\n{}", self.keyhole.log());
    }
}

/// Replaces `path` atomically (temporary file, rename), as editors and
/// config management tools do.
fn replace_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn sighup(k: &Keyhole) {
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &k.pid().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_change_applies_live() {
    let s = setup("sek_one_1111").await;
    assert_eq!(s.seen().await, "sek_one_1111");
    replace_atomically(&s.config_path(), &config("sek_two_2222"));
    s.wait_for("sek_two_2222").await;
    s.keyhole.wait_log("config reloaded");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_change_the_watcher_cannot_see() {
    let s = setup("sek_aaaa_1111").await;
    assert_eq!(s.seen().await, "sek_aaaa_1111");
    // Same length, same inode, same mtime: only SIGHUP can tell.
    let path = s.config_path();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, config("sek_bbbb_2222")).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(s.seen().await, "sek_aaaa_1111", "the watcher saw nothing");
    sighup(&s.keyhole);
    s.wait_for("sek_bbbb_2222").await;
    let log = s.keyhole.wait_log("config reloaded");
    assert!(
        log.contains("cause=\"SIGHUP\"") || log.contains("cause=SIGHUP"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_file_keeps_the_old_policy() {
    let s = setup("sek_keep_1111").await;
    replace_atomically(&s.config_path(), "{\"credentials\": [ oops");
    sighup(&s.keyhole);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.seen().await, "sek_keep_1111");
    s.keyhole.wait_log("config reload refused");
    // A file that parses but breaks a rule is refused the same way.
    replace_atomically(&s.config_path(), &config("sek\\nbad"));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.seen().await, "sek_keep_1111");
    // And a good file after that applies.
    replace_atomically(&s.config_path(), &config("sek_next_2222"));
    s.wait_for("sek_next_2222").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubernetes_style_symlink_swap_applies() {
    let s = setup("sek_sym_1111").await;
    let dir = s.config_path().parent().unwrap().to_owned();
    // Lay out ..data -> ..v1/config.json, config.json -> ..data/config.json.
    for (version, secret) in [("..v1", "sek_sym_1111"), ("..v2", "sek_sym_2222")] {
        std::fs::create_dir(dir.join(version)).unwrap();
        std::fs::write(dir.join(version).join("config.json"), config(secret)).unwrap();
    }
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    let link_tmp = dir.join("config.json.link");
    std::os::unix::fs::symlink("..data/config.json", &link_tmp).unwrap();
    std::fs::rename(&link_tmp, s.config_path()).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(s.seen().await, "sek_sym_1111");
    // The swap: a new ..data link renamed over the old one.
    let data_tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink("..v2", &data_tmp).unwrap();
    std::fs::rename(&data_tmp, dir.join("..data")).unwrap();
    s.wait_for("sek_sym_2222").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_request_on_a_long_lived_connection_follows_the_current_policy() {
    let s = setup("sek_conn_1111").await;
    let tls = client::open(
        s.keyhole.addr,
        &s.authority(),
        Some("api.example.test"),
        None,
        &[s.keyhole.ca_der()],
        &[b"http/1.1"],
    )
    .await
    .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let send = |sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>| {
        let req = Request::get("/")
            .header("host", s.authority())
            .header("authorization", PLACEHOLDER)
            .body(Empty::<Bytes>::new())
            .unwrap();
        sender.send_request(req)
    };
    let first = send(&mut sender).await.unwrap();
    assert_eq!(first.status(), 200);
    http_body_util::BodyExt::collect(first.into_body())
        .await
        .unwrap();
    assert_eq!(
        s.upstream
            .received()
            .pop()
            .unwrap()
            .header("authorization")
            .unwrap(),
        "sek_conn_1111"
    );
    replace_atomically(&s.config_path(), &config("sek_conn_2222"));
    sighup(&s.keyhole);
    // Wait for the reload to be in force (on other connections).
    s.wait_for("sek_conn_2222").await;
    // The old connection is still open, and its next request uses the new secret.
    sender.ready().await.unwrap();
    assert_eq!(send(&mut sender).await.unwrap().status(), 200);
    assert_eq!(
        s.upstream
            .received()
            .pop()
            .unwrap()
            .header("authorization")
            .unwrap(),
        "sek_conn_2222"
    );
}
