//! Destination safety: metadata endpoints, proxy loops and --deny-private,
//! all refused before any connection is attempted.

mod support;

use support::client;
use support::proxy::Keyhole;
use support::world::World;

const OPEN: &str = r#"{"credentials": []}"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_metadata_endpoint_is_refused_by_default() {
    let keyhole = Keyhole::start(OPEN, &[], &[]);
    for target in ["169.254.169.254:80", "2852039166:80", "[fd00:ec2::254]:80"] {
        let res = client::connect(keyhole.addr, target).await.unwrap_err();
        assert!(res.starts_with("HTTP/1.1 403"), "{target}: {res}");
        assert!(res.contains("error=destination_ip_prohibited"), "{res}");
        assert!(res.contains("cloud metadata"), "{res}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connect_to_keyhole_itself_is_a_loop() {
    let keyhole = Keyhole::start(OPEN, &[], &[]);
    let res = client::connect(keyhole.addr, &keyhole.addr.to_string())
        .await
        .unwrap_err();
    assert!(res.starts_with("HTTP/1.1 508"), "{res}");
    assert!(res.contains("error=proxy_loop_detected"), "{res}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deny_private_refuses_loopback_after_resolution() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let args = vec![
        "--deny-private".to_owned(),
        "--resolve".to_owned(),
        format!("looks-public.test:{port}:127.0.0.1"),
    ];
    let keyhole = Keyhole::start(OPEN, &args, &[]);
    for target in [
        format!("looks-public.test:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let res = client::connect(keyhole.addr, &target).await.unwrap_err();
        assert!(res.starts_with("HTTP/1.1 403"), "{target}: {res}");
        assert!(res.contains("--deny-private"), "{res}");
    }
    // Nothing reached the listener.
    let accepted =
        tokio::time::timeout(std::time::Duration::from_millis(200), listener.accept()).await;
    assert!(
        accepted.is_err(),
        "a connection reached the private address"
    );
    // Without the flag the same target is tunnelled.
    let open = Keyhole::start(OPEN, &args[1..], &[]);
    assert!(
        client::connect(open.addr, &format!("looks-public.test:{port}"))
            .await
            .is_ok()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_cannot_be_reached_through_the_proxy() {
    let w = World::builder()
        .admin("an-admin-token-of-some-length")
        .start()
        .await;
    let (keyhole, admin) = (&w.keyhole, w.api().addr);
    let res = client::connect(keyhole.addr, &admin.to_string())
        .await
        .unwrap_err();
    assert!(res.starts_with("HTTP/1.1 508"), "{res}");
    let res = client::connect(keyhole.addr, &format!("localhost:{}", admin.port()))
        .await
        .unwrap_err();
    assert!(res.starts_with("HTTP/1.1 508"), "{res}");
}

/// A credential whose networking is unrestricted: keyhole intercepts every
/// host, so a refusal that waited for the first request would come after
/// a `200`, inside TLS.
const INTERCEPT_ALL: &str = r#"{"credentials": [{"id": "vcrd_all", "auth": {"type": "environment_variable",
  "secret_name": "ALL_TOKEN", "secret_value": "sek_door_0a1b2c", "networking": {"type": "unrestricted"}}}]}"#;

#[tokio::test(flavor = "multi_thread")]
async fn literal_addresses_are_refused_at_the_door_even_where_keyhole_would_intercept() {
    let keyhole = Keyhole::start(INTERCEPT_ALL, &["--deny-private".to_owned()], &[]);
    let own = keyhole.addr.to_string();
    for (target, status, error) in [
        ("169.254.169.254:443", "403", "destination_ip_prohibited"),
        ("[fd00:ec2::254]:443", "403", "destination_ip_prohibited"),
        ("10.1.2.3:443", "403", "destination_ip_prohibited"),
        (own.as_str(), "508", "proxy_loop_detected"),
    ] {
        // The CONNECT itself is answered: no 200, no TLS, nothing dialled.
        let res = client::connect(keyhole.addr, target).await.unwrap_err();
        assert!(
            res.starts_with(&format!("HTTP/1.1 {status}")),
            "{target}: {res}"
        );
        assert!(res.contains(&format!("error={error}")), "{target}: {res}");
    }
    let log = keyhole.wait_log("CONNECT refused");
    assert!(!log.contains("action=\"intercept\""), "{log}");
}
