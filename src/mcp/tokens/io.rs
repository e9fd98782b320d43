//! The proxy's side of the [`TokenBook`](super::TokenBook): how a refresh
//! is sent ([`TokenEndpoint`]) and refreshed tokens are saved
//! ([`TokenPersist`]).

use std::fmt;

use bytes::Bytes;

use crate::mcp::bearer::Fingerprint;
use crate::mcp::oauth::RefreshRequest;
use crate::mcp::response::RefreshError;
use crate::mcp::BoxFuture;
use crate::secret::Secret;

/// The token endpoint's answer, as the proxy read it. `Debug` shows the
/// body's length only.
#[derive(Clone)]
pub struct EndpointResponse {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`, when sent.
    pub content_type: Option<String>,
    /// The body: at most [`MAX_TOKEN_RESPONSE_BYTES`](crate::mcp::response::MAX_TOKEN_RESPONSE_BYTES)
    /// plus one bytes read. It may hold tokens: never log it.
    pub body: Bytes,
}

impl fmt::Debug for EndpointResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EndpointResponse")
            .field("status", &self.status)
            .field("content_type", &self.content_type)
            .field("body", &format_args!("<{} bytes>", self.body.len()))
            .finish()
    }
}

/// Sends a refresh request; implemented by the proxy.
pub trait TokenEndpoint: Send + Sync {
    /// POSTs `request` through verified TLS, without following redirects,
    /// reading at most `MAX_TOKEN_RESPONSE_BYTES + 1` bytes of answer.
    /// Failures to connect or read are [`RefreshError::Transport`] (whose
    /// text must hold no token) or [`RefreshError::Timeout`]. The book
    /// also bounds the whole call by [`REFRESH_TIMEOUT`](super::REFRESH_TIMEOUT).
    fn post(
        &self,
        request: RefreshRequest,
    ) -> BoxFuture<'_, Result<EndpointResponse, RefreshError>>;
}

/// Refreshed tokens to save into the config, in one atomic write.
#[derive(Debug)]
pub struct TokenUpdate {
    /// The credential.
    pub id: String,
    /// The new access token; `None` keeps the stored one and its expiry
    /// (only `refresh_token` is saved: a rotation kept after an admin
    /// update superseded the refresh, see [`TokenBook`](super::TokenBook)).
    pub access_token: Option<Secret>,
    /// With an access token: RFC 3339, or `None` when the server gave no
    /// `expires_in`: write the expiry as unknown (remove it).
    pub expires_at: Option<String>,
    /// A rotated refresh token; `None` keeps the stored one.
    pub refresh_token: Option<Secret>,
    /// The fingerprint of the tokens these replace: save only if the
    /// credential in force still has them ([`Fingerprint::of`]), else
    /// answer [`PersistError::Superseded`], so that a refresh racing an
    /// admin update never overwrites it.
    pub replaces: Fingerprint,
}

/// Why refreshed tokens were not saved.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The credential's tokens changed meanwhile (an admin update).
    #[error("the credential's tokens changed while they were being refreshed; the configured ones stay in force")]
    Superseded,
    /// The save failed; the text must hold no token.
    #[error("cannot save the refreshed tokens into the config file: {0}; keyhole keeps using them until it restarts, so fix the file before then")]
    Failed(String),
}

/// Saves refreshed tokens; implemented by the proxy over the config store.
pub trait TokenPersist: Send + Sync {
    /// Writes the update atomically, under the store's lock, and puts the
    /// resulting config in force (which calls [`TokenBook::sync`](super::TokenBook::sync)).
    fn save(&self, update: TokenUpdate) -> BoxFuture<'_, Result<(), PersistError>>;
}
