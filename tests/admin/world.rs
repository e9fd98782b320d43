//! The admin tests' world: keyhole with `--admin`, in front of a TLS
//! upstream for `api.example.test` certified by a test CA.

use http::Request;

use crate::support::client::NoBody;
use crate::support::config::{Config, Credential};
use crate::support::upstream::Alpn;
use crate::support::world::World;

/// The admin API's token.
pub const TOKEN: &str = "admin-token-for-tests-4f9d2c7a";
/// The secret `vcrd_api` starts with.
pub const OLD_SECRET: &str = "sek_before_update_31d4";
/// The one upstream host.
pub const HOST: &str = "api.example.test";

/// The file keyhole starts on: one credential for `api.example.test`,
/// without timestamps.
pub fn config() -> Config {
    Config::new().egress(&[HOST, "*.example.test"]).credential(
        Credential::new("vcrd_api")
            .display_name("API")
            .secret("API_TOKEN", OLD_SECRET)
            .allowed_hosts(&[HOST]),
    )
}

/// keyhole on [`config`] with the admin API (token [`TOKEN`]), in front
/// of an HTTP/1.1 upstream for [`HOST`].
pub async fn start() -> World {
    World::builder()
        .config(config())
        .names(&[HOST])
        .alpn(Alpn::H1)
        .admin(TOKEN)
        .start()
        .await
}

/// The config file as JSON.
pub fn file(w: &World) -> serde_json::Value {
    let text = std::fs::read_to_string(w.keyhole.config_path()).expect("read the config");
    serde_json::from_str(&text).expect("the config is JSON")
}

/// GET through the proxy to `api.example.test` with `Authorization:
/// Bearer <value>`; returns the Authorization header the upstream got.
pub async fn authorization_upstream_sees(w: &World, value: &str) -> String {
    let req = Request::get("/check")
        .header("host", w.authority(HOST))
        .header("authorization", format!("Bearer {value}"))
        .empty();
    let (res, _) = w
        .tunnel(HOST)
        // keyhole's CA when it intercepts, the upstream's when it tunnels.
        .trust(&[w.keyhole.ca_der(), w.ca.cert_der.clone()])
        .send(w, req)
        .await
        .expect("through keyhole");
    assert_eq!(res.status(), 200);
    w.last().header("authorization").unwrap_or_default()
}
