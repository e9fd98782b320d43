//! One credential of the [`TokenBook`](super::TokenBook): the token in
//! force, the failure state, the single-flight turn, and the rules a
//! request meets ([`State::step`], as the parent module documents them).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use time::OffsetDateTime;

use super::{TokenError, REFRESH_SKEW, TRANSIENT_BACKOFF, WAIT_TIMEOUT};
use crate::mcp::bearer::{BearerToken, Fingerprint};
use crate::mcp::response::RefreshError;
use crate::model::{rules, Auth, Credential, McpOauthRefresh};
use crate::secret::Secret;

/// One credential. The `state` lock is held only for short, synchronous
/// sections; `refreshing` is held across a whole refresh (single flight).
pub(super) struct Slot {
    pub(super) id: String,
    pub(super) state: Mutex<State>,
    pub(super) refreshing: tokio::sync::Mutex<()>,
    pub(super) refreshes_ok: AtomicU64,
    pub(super) refreshes_failed: AtomicU64,
    pub(super) persist_failures: AtomicU64,
}

/// Invariants: `refresh` is `None` for `static_bearer`; `failure` is set
/// only by a refresh started in the same `epoch`; `own` is set from just
/// before a save until it succeeds (or for good, if it failed), and names
/// tokens the config file may not hold yet.
pub(super) struct State {
    /// Fingerprint of the config's tokens last adopted or confirmed.
    pub(super) configured: Fingerprint,
    /// Fingerprint of tokens keyhole refreshed itself, recorded before
    /// saving them, so that the config coming back resets nothing.
    pub(super) own: Option<Fingerprint>,
    /// The token in force; `None` if the configured one is unusable.
    pub(super) token: Option<BearerToken>,
    pub(super) expires_at: Option<OffsetDateTime>,
    /// The refresh settings, with the refresh token in force.
    pub(super) refresh: Option<McpOauthRefresh>,
    pub(super) failure: Option<Failure>,
    /// Bumped whenever the config's tokens are adopted: a refresh started
    /// in an older epoch is dropped.
    pub(super) epoch: u64,
}

#[derive(Clone)]
pub(super) struct Failure {
    pub(super) error: RefreshError,
    pub(super) at: OffsetDateTime,
    /// The server refused the token in force (the refresh followed a 401),
    /// so it is not served even while the clock says it is valid.
    pub(super) token_rejected: bool,
}

/// What a caller does next.
pub(super) enum Step {
    Ready(BearerToken),
    Fail(TokenError),
    Refresh,
}

/// The config's tokens replaced the ones being refreshed: the refreshed
/// ones are dropped and the configured ones answer.
pub(super) fn superseded(
    slot: &Slot,
    st: &State,
    now: OffsetDateTime,
) -> Result<BearerToken, TokenError> {
    tracing::info!(credential = %slot.id, "mcp: tokens changed during a refresh; the refreshed ones are dropped");
    match st.step(&slot.id, now) {
        Step::Ready(token) => Ok(token),
        Step::Fail(e) => Err(e),
        Step::Refresh => st.token.clone().ok_or_else(|| TokenError::Unusable {
            id: slot.id.clone(),
        }),
    }
}

pub(super) fn refresh_error(id: &str, error: &RefreshError) -> TokenError {
    TokenError::Refresh {
        id: id.to_owned(),
        reason: error.clone(),
    }
}

// === impl Slot ===

impl Slot {
    pub(super) fn new(credential: &Credential, fingerprint: Fingerprint) -> Slot {
        Slot {
            id: credential.id.clone(),
            state: Mutex::new(State::from_config(credential, fingerprint, 0)),
            refreshing: tokio::sync::Mutex::new(()),
            refreshes_ok: AtomicU64::new(0),
            refreshes_failed: AtomicU64::new(0),
            persist_failures: AtomicU64::new(0),
        }
    }

    /// Refreshes that succeeded and failed so far.
    pub(super) fn outcomes(&self) -> (u64, u64) {
        (
            self.refreshes_ok.load(Ordering::Relaxed),
            self.refreshes_failed.load(Ordering::Relaxed),
        )
    }

    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the single-flight turn, at most [`WAIT_TIMEOUT`].
    pub(super) async fn wait_turn(&self) -> Result<tokio::sync::MutexGuard<'_, ()>, TokenError> {
        tokio::time::timeout(WAIT_TIMEOUT, self.refreshing.lock())
            .await
            .map_err(|_| TokenError::WaitTimeout {
                id: self.id.clone(),
            })
    }

    /// See [`TokenBook::sync`]. Tokens are kept when the config holds the
    /// ones adopted last (`configured`) or the ones keyhole is saving
    /// (`own`); `configured` moves to `own` only once saving succeeded, so
    /// a store that rolls back to the old file resets nothing either.
    pub(super) fn adopt(&self, credential: &Credential, fingerprint: Fingerprint) {
        let mut st = self.state();
        if fingerprint != st.configured && st.own != Some(fingerprint) {
            if st.failure.is_some() {
                tracing::info!(credential = %self.id, "mcp: new tokens configured; the refresh failure is cleared");
            }
            let epoch = st.epoch + 1;
            *st = State::from_config(credential, fingerprint, epoch);
            return;
        }
        let Auth::McpOauth(a) = &credential.auth else {
            return;
        };
        if fingerprint == st.configured && st.own.is_none() {
            // Memory holds the configured tokens: the config's expiry is
            // the truth (the vault API lets an update change it alone).
            st.expires_at = a.expires_at.as_deref().and_then(rules::parse_timestamp);
        }
        let in_force = st.refresh.as_ref().map(|r| r.refresh_token.clone());
        st.refresh = a.refresh.clone().map(|mut r| {
            if let Some(token) = in_force {
                r.refresh_token = token;
            }
            r
        });
    }

    /// Records a failed refresh (unless the config replaced the tokens
    /// meanwhile) and returns the caller's error.
    pub(super) fn fail(
        &self,
        epoch: u64,
        error: RefreshError,
        now: OffsetDateTime,
        after_401: bool,
    ) -> TokenError {
        self.refreshes_failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(credential = %self.id, kind = error.kind(), error = %error, "mcp: token refresh failed");
        let mut st = self.state();
        if st.epoch == epoch {
            st.failure = Some(Failure {
                error: error.clone(),
                at: now,
                token_rejected: after_401,
            });
        }
        TokenError::Refresh {
            id: self.id.clone(),
            reason: error,
        }
    }
}

// === impl State ===

impl State {
    pub(super) fn from_config(
        credential: &Credential,
        fingerprint: Fingerprint,
        epoch: u64,
    ) -> State {
        let (token, expires_at, refresh) = match &credential.auth {
            Auth::StaticBearer(a) => (a.token.clone(), None, None),
            Auth::McpOauth(a) => (
                a.access_token.clone(),
                a.expires_at.as_deref().and_then(rules::parse_timestamp),
                a.refresh.clone(),
            ),
            Auth::EnvironmentVariable(_) => (Secret::new(String::new()), None, None),
        };
        State {
            configured: fingerprint,
            own: None,
            token: BearerToken::new(token),
            expires_at,
            refresh,
            failure: None,
            epoch,
        }
    }

    /// The rules of the module documentation, for a request at `now`.
    pub(super) fn step(&self, id: &str, now: OffsetDateTime) -> Step {
        let Some(token) = &self.token else {
            return Step::Fail(TokenError::Unusable { id: id.to_owned() });
        };
        if self.refresh.is_none() {
            if self.expires_at.is_some_and(|at| at <= now) {
                tracing::debug!(credential = %id, "mcp: the access token has expired and no refresh is configured; sending it anyway");
            }
            return Step::Ready(token.clone());
        }
        if let Some(f) = &self.failure {
            if f.error.is_permanent() {
                return Step::Fail(refresh_error(id, &f.error));
            }
            if now < f.at + TRANSIENT_BACKOFF {
                let valid = !f.token_rejected && self.expires_at.is_some_and(|at| now < at);
                return if valid {
                    Step::Ready(token.clone())
                } else {
                    Step::Fail(refresh_error(id, &f.error))
                };
            }
            return Step::Refresh;
        }
        match self.expires_at {
            Some(at) if now + REFRESH_SKEW >= at => Step::Refresh,
            _ => Step::Ready(token.clone()),
        }
    }
}
