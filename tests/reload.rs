//! Live reload through real sockets: a file change, SIGHUP, an invalid
//! file, a symlink swap, and a long-lived intercepted connection whose
//! requests each follow the policy current when they arrive.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use support::client::{self, NoBody};
use support::config::{Config, Credential};
use support::proxy::Keyhole;
use support::upstream::Alpn;
use support::world::World;

const PLACEHOLDER: &str = "kh_pinned_reload_0123456789";
const HOST: &str = "api.example.test";

/// One credential for [`HOST`] whose secret is `secret`.
fn config(secret: &str) -> Config {
    Config::new().credential(
        Credential::new("vcrd_api")
            .secret("API_TOKEN", secret)
            .placeholder(PLACEHOLDER)
            .allowed_hosts(&[HOST]),
    )
}

/// keyhole on [`config`]`(secret)` in front of an HTTP/1.1 upstream.
async fn setup(secret: &str) -> World {
    World::builder()
        .config(config(secret))
        .names(&[HOST])
        .alpn(Alpn::H1)
        .start()
        .await
}

/// The request each check sends: the placeholder as the Authorization.
fn request(w: &World) -> Request<Empty<Bytes>> {
    Request::get("/")
        .header("host", w.authority(HOST))
        .header("authorization", PLACEHOLDER)
        .empty()
}

/// One request on a fresh tunnel; the Authorization the upstream saw.
async fn seen(w: &World) -> String {
    let (res, _) = w
        .tunnel(HOST)
        .send(w, request(w))
        .await
        .expect("through keyhole");
    assert_eq!(res.status(), 200);
    authorization(w)
}

/// The Authorization header of the upstream's last request.
fn authorization(w: &World) -> String {
    w.last().header("authorization").expect("an Authorization")
}

/// Polls until a fresh request shows `want` upstream (or 10 s pass).
async fn wait_for(w: &World, want: &str) {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if seen(w).await == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never saw {want}; log:\n{}", w.keyhole.log());
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
    assert_eq!(seen(&s).await, "sek_one_1111");
    replace_atomically(&s.keyhole.config_path(), &config("sek_two_2222").json());
    wait_for(&s, "sek_two_2222").await;
    s.keyhole.wait_log("config reloaded");
}

#[tokio::test(flavor = "multi_thread")]
async fn sighup_applies_a_change_the_watcher_cannot_see() {
    let s = setup("sek_aaaa_1111").await;
    assert_eq!(seen(&s).await, "sek_aaaa_1111");
    // Same length, same inode, same mtime: only SIGHUP can tell.
    let path = s.keyhole.config_path();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    std::fs::write(&path, config("sek_bbbb_2222").json()).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(seen(&s).await, "sek_aaaa_1111", "the watcher saw nothing");
    sighup(&s.keyhole);
    wait_for(&s, "sek_bbbb_2222").await;
    let log = s.keyhole.wait_log("config reloaded");
    assert!(
        log.contains("cause=\"SIGHUP\"") || log.contains("cause=SIGHUP"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_file_keeps_the_old_policy() {
    let s = setup("sek_keep_1111").await;
    // keyhole listens for SIGHUP only a moment after it prints its address
    // (a race on the src side): one request first, as the other tests here
    // make, so that the SIGHUP below reloads rather than kills it.
    assert_eq!(seen(&s).await, "sek_keep_1111");
    replace_atomically(&s.keyhole.config_path(), "{\"credentials\": [ oops");
    sighup(&s.keyhole);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(seen(&s).await, "sek_keep_1111");
    s.keyhole.wait_log("config reload refused");
    // A file that parses but breaks a rule is refused the same way.
    replace_atomically(&s.keyhole.config_path(), &config("sek\nbad").json());
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(seen(&s).await, "sek_keep_1111");
    // And a good file after that applies.
    replace_atomically(&s.keyhole.config_path(), &config("sek_next_2222").json());
    wait_for(&s, "sek_next_2222").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_kubernetes_style_symlink_swap_applies() {
    let s = setup("sek_sym_1111").await;
    let dir = s.keyhole.config_path().parent().unwrap().to_owned();
    // Lay out ..data -> ..v1/config.json, config.json -> ..data/config.json.
    for (version, secret) in [("..v1", "sek_sym_1111"), ("..v2", "sek_sym_2222")] {
        std::fs::create_dir(dir.join(version)).unwrap();
        std::fs::write(dir.join(version).join("config.json"), config(secret).json()).unwrap();
    }
    std::os::unix::fs::symlink("..v1", dir.join("..data")).unwrap();
    let link_tmp = dir.join("config.json.link");
    std::os::unix::fs::symlink("..data/config.json", &link_tmp).unwrap();
    std::fs::rename(&link_tmp, s.keyhole.config_path()).unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(seen(&s).await, "sek_sym_1111");
    // The swap: a new ..data link renamed over the old one.
    let data_tmp = dir.join("..data_tmp");
    std::os::unix::fs::symlink("..v2", &data_tmp).unwrap();
    std::fs::rename(&data_tmp, dir.join("..data")).unwrap();
    wait_for(&s, "sek_sym_2222").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn each_request_on_a_long_lived_connection_follows_the_current_policy() {
    let s = setup("sek_conn_1111").await;
    let tls = s.tunnel(HOST).open(&s).await.expect("through keyhole");
    let (mut sender, _) = client::http1(tls).await.unwrap();
    let first = sender.send_request(request(&s)).await.unwrap();
    assert_eq!(first.status(), 200);
    http_body_util::BodyExt::collect(first.into_body())
        .await
        .unwrap();
    assert_eq!(authorization(&s), "sek_conn_1111");
    replace_atomically(&s.keyhole.config_path(), &config("sek_conn_2222").json());
    sighup(&s.keyhole);
    // Wait for the reload to be in force (on other connections).
    wait_for(&s, "sek_conn_2222").await;
    // The old connection is still open, and its next request uses the new secret.
    sender.ready().await.unwrap();
    let next = sender.send_request(request(&s)).await.unwrap();
    assert_eq!(next.status(), 200);
    assert_eq!(authorization(&s), "sek_conn_2222");
}
