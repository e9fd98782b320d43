//! The refresh request of RFC 6749 section 6, as the bytes keyhole sends.
//!
//! `POST <token_endpoint>` with a form body:
//! `grant_type=refresh_token`, `refresh_token`, then `scope` when set and
//! not empty, `resource` (RFC 8707) only when configured, and the client's
//! authentication as `token_endpoint_auth` says (RFC 6749 2.3.1):
//! - `none`: `client_id` in the body (a public client identifies itself);
//! - `client_secret_post`: `client_id` and `client_secret` in the body;
//! - `client_secret_basic`: `Authorization: Basic base64(id ":" secret)`,
//!   where id and secret are form-encoded first, and no `client_id` in
//!   the body (sending both ways is "MUST NOT use more than one method").
//!
//! The request is built once per refresh and handed to the proxy's
//! [`TokenEndpoint`](super::TokenEndpoint); it never passes through a log.
//! Its `Debug` shows the method, URI and header names only.

use std::fmt;

use base64::Engine as _;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method};

use super::form;
use crate::model::{McpOauthRefresh, TokenEndpointAuth};
use crate::secret::Secret;

/// The body's media type (RFC 6749 section 6).
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// A refresh request, ready to send.
///
/// Invariant: the body and the `authorization` header hold secrets; only
/// [`RefreshRequest::expose_body`], [`RefreshRequest::headers`] and
/// [`RefreshRequest::into_http`] reach them, and `Debug` shows neither.
pub struct RefreshRequest {
    uri: String,
    headers: HeaderMap,
    body: Bytes,
}

// === impl RefreshRequest ===

impl RefreshRequest {
    /// The request refreshing with `refresh_token` (the one in force, which
    /// may be newer than `refresh.refresh_token` after a rotation).
    pub fn new(refresh: &McpOauthRefresh, refresh_token: &Secret) -> RefreshRequest {
        let mut body = Vec::new();
        form::push_pair(&mut body, "grant_type", "refresh_token");
        form::push_pair(&mut body, "refresh_token", refresh_token.expose());
        if let Some(scope) = refresh.scope.as_deref().filter(|s| !s.is_empty()) {
            form::push_pair(&mut body, "scope", scope);
        }
        if let Some(resource) = refresh.resource.as_deref().filter(|s| !s.is_empty()) {
            form::push_pair(&mut body, "resource", resource);
        }
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(FORM_CONTENT_TYPE));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        match &refresh.token_endpoint_auth {
            TokenEndpointAuth::None => {
                form::push_pair(&mut body, "client_id", &refresh.client_id);
            }
            TokenEndpointAuth::ClientSecretPost(secret) => {
                form::push_pair(&mut body, "client_id", &refresh.client_id);
                form::push_pair(&mut body, "client_secret", secret.expose());
            }
            TokenEndpointAuth::ClientSecretBasic(secret) => {
                // base64 output is ASCII, so this cannot fail; were it to,
                // the endpoint would refuse the unauthenticated request and
                // the refresh would fail as `Rejected`, never panic.
                if let Ok(value) = basic(&refresh.client_id, secret) {
                    headers.insert(AUTHORIZATION, value);
                }
            }
        }
        RefreshRequest {
            uri: refresh.token_endpoint.clone(),
            headers,
            body: Bytes::from(body),
        }
    }

    /// Always `POST`.
    pub fn method(&self) -> &Method {
        &Method::POST
    }

    /// The token endpoint, as configured (an http(s) URL checked at load).
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// `content-type`, `accept` and, for `client_secret_basic`, a sensitive
    /// `authorization`. Never log the values.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The form body. It holds the refresh token (and the client secret
    /// for `client_secret_post`): call this only to send it.
    pub fn expose_body(&self) -> &Bytes {
        &self.body
    }

    /// The request as an [`http::Request`], for the proxy's client. Fails
    /// only when the token endpoint is not a valid URI (refused at load).
    pub fn into_http(self) -> Result<http::Request<Bytes>, http::Error> {
        let mut builder = http::Request::post(self.uri.as_str());
        if let Some(headers) = builder.headers_mut() {
            *headers = self.headers;
        }
        builder.body(self.body)
    }
}

impl fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.keys().map(|k| k.as_str()).collect();
        f.debug_struct("RefreshRequest")
            .field("method", &"POST")
            .field("uri", &self.uri)
            .field("headers", &names)
            .field(
                "body",
                &format_args!("<redacted, {} bytes>", self.body.len()),
            )
            .finish()
    }
}

/// `Basic base64(form(id) ":" form(secret))`, marked sensitive.
fn basic(
    client_id: &str,
    secret: &Secret,
) -> Result<HeaderValue, http::header::InvalidHeaderValue> {
    let mut pair = Vec::new();
    form::encode_into(&mut pair, client_id);
    pair.push(b':');
    form::encode_into(&mut pair, secret.expose());
    let mut value = b"Basic ".to_vec();
    value.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(&pair)
            .as_bytes(),
    );
    let mut value = HeaderValue::from_maybe_shared(Bytes::from(value))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresh(auth: TokenEndpointAuth, client_id: &str) -> McpOauthRefresh {
        McpOauthRefresh {
            client_id: client_id.into(),
            refresh_token: Secret::new("rt_config".into()),
            token_endpoint: "https://auth.example.com/oauth/token".into(),
            token_endpoint_auth: auth,
            scope: None,
            resource: None,
        }
    }

    fn body(r: &RefreshRequest) -> &str {
        std::str::from_utf8(r.expose_body()).unwrap()
    }

    #[test]
    fn public_client_sends_its_id_in_the_body() {
        let mut cfg = refresh(TokenEndpointAuth::None, "my app");
        cfg.scope = Some("mcp:read mcp:write".into());
        cfg.resource = Some("https://mcp.example.com/sse".into());
        let r = RefreshRequest::new(&cfg, &Secret::new("rt/1+2=".into()));
        assert_eq!(
            body(&r),
            "grant_type=refresh_token&refresh_token=rt%2F1%2B2%3D&scope=mcp%3Aread+mcp%3Awrite\
             &resource=https%3A%2F%2Fmcp.example.com%2Fsse&client_id=my+app"
        );
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri(), "https://auth.example.com/oauth/token");
        assert_eq!(r.headers()[CONTENT_TYPE], FORM_CONTENT_TYPE);
        assert_eq!(r.headers()[ACCEPT], "application/json");
        assert!(r.headers().get(AUTHORIZATION).is_none());
    }

    #[test]
    fn client_secret_post_sends_id_and_secret_in_the_body() {
        let cfg = refresh(
            TokenEndpointAuth::ClientSecretPost(Secret::new("s:e c+r%€".into())),
            "id:1",
        );
        let r = RefreshRequest::new(&cfg, &Secret::new("rt".into()));
        assert_eq!(
            body(&r),
            "grant_type=refresh_token&refresh_token=rt&client_id=id%3A1&client_secret=s%3Ae+c%2Br%25%E2%82%AC"
        );
        assert!(r.headers().get(AUTHORIZATION).is_none());
    }

    #[test]
    fn client_secret_basic_encodes_then_base64s() {
        let cases = [
            // (client_id, client_secret, base64 of form(id) ":" form(secret))
            ("client", "secret", "Y2xpZW50OnNlY3JldA=="),
            // "my+client%3A1:s3cr%2Bt+%25%C3%A9"
            (
                "my client:1",
                "s3cr+t %é",
                "bXkrY2xpZW50JTNBMTpzM2NyJTJCdCslMjUlQzMlQTk=",
            ),
            // "c%C3%BC%E2%82%AC:%3A%3A"
            ("cü€", "::", "YyVDMyVCQyVFMiU4MiVBQzolM0ElM0E="),
        ];
        for (id, secret, b64) in cases {
            let cfg = refresh(
                TokenEndpointAuth::ClientSecretBasic(Secret::new(secret.into())),
                id,
            );
            let r = RefreshRequest::new(&cfg, &Secret::new("rt".into()));
            let auth = &r.headers()[AUTHORIZATION];
            assert_eq!(auth.as_bytes(), format!("Basic {b64}").as_bytes(), "{id}");
            assert!(auth.is_sensitive());
            assert_eq!(body(&r), "grant_type=refresh_token&refresh_token=rt");
        }
    }

    #[test]
    fn empty_scope_and_resource_are_left_out() {
        let mut cfg = refresh(TokenEndpointAuth::None, "c");
        cfg.scope = Some(String::new());
        cfg.resource = Some(String::new());
        let r = RefreshRequest::new(&cfg, &Secret::new("rt".into()));
        assert_eq!(
            body(&r),
            "grant_type=refresh_token&refresh_token=rt&client_id=c"
        );
    }

    #[test]
    fn debug_shows_no_secret() {
        let cfg = refresh(
            TokenEndpointAuth::ClientSecretBasic(Secret::new("topsecret".into())),
            "client",
        );
        let r = RefreshRequest::new(&cfg, &Secret::new("rt_live_value".into()));
        let shown = format!("{r:?} {r:#?}");
        for hidden in ["rt_live_value", "topsecret", "Basic", "Y2xpZW50"] {
            assert!(!shown.contains(hidden), "{shown}");
        }
        assert!(shown.contains("authorization") && shown.contains("<redacted, "));
    }

    #[test]
    fn into_http_keeps_everything() {
        let cfg = refresh(
            TokenEndpointAuth::ClientSecretBasic(Secret::new("s".into())),
            "c",
        );
        let r = RefreshRequest::new(&cfg, &Secret::new("rt".into()));
        let req = r.into_http().unwrap();
        assert_eq!(req.method(), Method::POST);
        assert_eq!(req.uri(), "https://auth.example.com/oauth/token");
        assert_eq!(req.headers().len(), 3);
        assert_eq!(
            &req.body()[..],
            b"grant_type=refresh_token&refresh_token=rt"
        );
    }
}
