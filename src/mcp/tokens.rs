//! [`TokenBook`]: the live token of every MCP credential, kept by the proxy
//! across config reloads, with at most one refresh in flight per
//! credential.
//!
//! The book never dials or writes: the refresh goes through the proxy's
//! [`TokenEndpoint`] (its verified-TLS upstream path) and the new tokens
//! through its [`TokenPersist`] (the config store). Times are passed in
//! (`now`), so tests need no sleeping.
//!
//! Rules, in the order a request meets them:
//! - `static_bearer`: its token, always.
//! - `mcp_oauth` whose last refresh failed: permanently (`invalid_grant`,
//!   other refusals) the request fails fast with that error until
//!   [`TokenBook::sync`] sees new tokens; transiently (5xx, timeout,
//!   transport, malformed answer) a new attempt is allowed after
//!   [`TRANSIENT_BACKOFF`]. The trade-off: an endpoint that is down for a
//!   minute costs requests for up to 30 s after it recovers, instead of
//!   every request hammering it. Meanwhile a token the clock says is still
//!   valid, and that no server refused, is served.
//! - `expires_at` known, `now + REFRESH_SKEW >= expires_at` and a refresh
//!   configured: refresh first.
//! - Expired without a refresh configured: the token is sent anyway (the
//!   server decides; logged at debug).
//! - After an upstream 401, [`TokenBook::after_unauthorized`] refreshes
//!   once, unless the token in force is no longer the one used. A 403 is
//!   never a reason to refresh: `insufficient_scope` needs the user to
//!   grant more, and a new token with the same grant would not help.
//!
//! Persistence: the new access token and a rotated refresh token are
//! saved in one [`TokenPersist::save`] call BEFORE the new access token is
//! used. If saving fails, keyhole logs it, counts it and keeps the new
//! tokens in memory so that service continues; the file still holds the
//! old ones, which a rotating server may have revoked, so a restart before
//! the file is fixed may need a re-authorisation.

mod io;
mod slot;

pub use io::{EndpointResponse, PersistError, TokenEndpoint, TokenPersist, TokenUpdate};

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock};

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use self::slot::{refresh_error, superseded, Slot, Step};
use super::bearer::{client_secret, BearerToken, Fingerprint};
use super::oauth::RefreshRequest;
use super::response::{parse_response, RefreshError, TokenResponse};
use crate::model::Config;
use crate::secret::Secret;

/// How long before `expires_at` a token is refreshed, so that it does not
/// expire between the check and the server reading it.
pub const REFRESH_SKEW: time::Duration = time::Duration::seconds(60);
/// How long after a transient refresh failure the next attempt may start.
pub const TRANSIENT_BACKOFF: time::Duration = time::Duration::seconds(30);
/// Longest a token endpoint exchange may take (connect, TLS, request,
/// answer); the proxy's own timeouts should be shorter.
pub const REFRESH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);
/// Longest saving refreshed tokens may take.
pub const PERSIST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Longest a caller waits for another caller's refresh of the same
/// credential: longer than a whole refresh (exchange and save), so it
/// fires only when something is stuck.
pub const WAIT_TIMEOUT: std::time::Duration =
    std::time::Duration::from_secs(REFRESH_TIMEOUT.as_secs() + PERSIST_TIMEOUT.as_secs() + 5);
/// Longest lifetime believed from `expires_in` (a year): a larger value
/// is clamped, so a bogus answer cannot overflow the clock or postpone
/// the next refresh forever.
pub const MAX_EXPIRES_IN_SECS: u64 = 365 * 24 * 60 * 60;

/// Why no token can be given. The proxy answers `502` with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No MCP credential with this id is in the book.
    #[error("no MCP credential {id:?} is in force; it was removed, or the config holding it is not loaded yet")]
    Unknown {
        /// The credential id.
        id: String,
    },
    /// The refresh failed now or earlier; `reason` says what to do.
    #[error("the token of MCP credential {id:?} could not be refreshed: {reason}")]
    Refresh {
        /// The credential id.
        id: String,
        /// What went wrong.
        reason: RefreshError,
    },
    /// The configured token cannot be sent in a header (refused at load,
    /// so only a config built otherwise can get here).
    #[error("the configured token of MCP credential {id:?} cannot be sent in an HTTP header; update it through the admin API or the config file")]
    Unusable {
        /// The credential id.
        id: String,
    },
    /// An upstream 401, and nothing to refresh with.
    #[error("the MCP server refused the token of credential {id:?}, which has no refresh configured; update its token through the admin API or the config file")]
    CannotRefresh {
        /// The credential id.
        id: String,
    },
    /// Another caller's refresh took longer than [`WAIT_TIMEOUT`].
    #[error("waited more than {}s for another refresh of MCP credential {id:?}; try again", WAIT_TIMEOUT.as_secs())]
    WaitTimeout {
        /// The credential id.
        id: String,
    },
}

/// The outcome of `mcp_oauth_validate`. Holds no token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validation {
    /// The verdict.
    pub status: ValidationStatus,
    /// Whether a refresh is configured.
    pub has_refresh_token: bool,
    /// What the refresh did.
    pub refresh: RefreshOutcome,
}

/// `valid`, `invalid` or `unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValidationStatus {
    /// A refresh succeeded just now.
    Valid,
    /// The refresh was refused, or the token expired with no refresh.
    Invalid,
    /// keyhole cannot tell: it does not probe MCP servers, or the token
    /// endpoint failed transiently.
    Unknown,
}

/// What validating did about the refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// No refresh is configured.
    NotConfigured,
    /// The token was refreshed (by this call or one it waited for).
    Refreshed,
    /// The refresh failed (now or, for a permanent failure, earlier).
    Failed(RefreshError),
}

/// Counters and state of one credential, for `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenStats {
    /// The credential id.
    pub id: String,
    /// Refreshes that succeeded.
    pub refreshes_ok: u64,
    /// Refreshes that failed.
    pub refreshes_failed: u64,
    /// Refreshed tokens that could not be saved.
    pub persist_failures: u64,
    /// The failure in force, if the credential needs re-authorisation (or,
    /// when transient, is waiting for the next attempt).
    pub failing: Option<RefreshError>,
}

/// See the module documentation.
pub struct TokenBook {
    slots: RwLock<HashMap<String, Arc<Slot>>>,
    endpoint: Arc<dyn TokenEndpoint>,
    persist: Arc<dyn TokenPersist>,
}

// === impl TokenBook ===

impl TokenBook {
    /// An empty book; [`TokenBook::sync`] fills it.
    pub fn new(endpoint: Arc<dyn TokenEndpoint>, persist: Arc<dyn TokenPersist>) -> TokenBook {
        TokenBook {
            slots: RwLock::new(HashMap::new()),
            endpoint,
            persist,
        }
    }

    /// Adopts a config put in force; call it for every one, in order,
    /// under the config store's lock. A credential whose configured tokens
    /// differ from those last seen (and from keyhole's own refreshed ones)
    /// takes the config's values and loses any failure: an admin update
    /// of access_token/refresh clears the state. Other settings (scope,
    /// endpoint...) are always taken. Every MCP credential is kept,
    /// archived ones too (for `validate` and stats; [`super::McpRoutes`]
    /// decides which are used); credentials gone are dropped.
    pub fn sync(&self, config: &Config) {
        let mut slots = self.slots.write().unwrap_or_else(PoisonError::into_inner);
        let mut next = HashMap::with_capacity(slots.len());
        for credential in &config.credentials {
            let Some(fingerprint) = Fingerprint::of(&credential.auth) else {
                continue;
            };
            let slot = match slots.remove(&credential.id) {
                Some(slot) => {
                    slot.adopt(credential, fingerprint);
                    slot
                }
                None => Arc::new(Slot::new(credential, fingerprint)),
            };
            next.insert(credential.id.clone(), slot);
        }
        *slots = next;
    }

    /// The token for a request to credential `id`'s MCP server at `now`,
    /// refreshing first when it is about to expire. When that early
    /// refresh fails transiently, the still-valid token is served.
    pub async fn bearer(&self, id: &str, now: OffsetDateTime) -> Result<BearerToken, TokenError> {
        let slot = self.slot(id)?;
        let step = slot.state().step(&slot.id, now);
        match step {
            Step::Ready(token) => return Ok(token),
            Step::Fail(e) => return Err(e),
            Step::Refresh => {}
        }
        let _turn = slot.wait_turn().await?;
        // Whoever held the turn may have refreshed (or failed): look again.
        let step = slot.state().step(&slot.id, now);
        match step {
            Step::Ready(token) => Ok(token),
            Step::Fail(e) => Err(e),
            Step::Refresh => match self.refresh(&slot, now, false).await {
                Ok(token) => Ok(token),
                // A refresh made ahead of the expiry failed transiently: a
                // token the clock says is still valid is served (the next
                // attempt comes after the backoff); an expired one or a
                // refused refresh is not.
                Err(e) => match slot.state().step(&slot.id, now) {
                    Step::Ready(token) => Ok(token),
                    _ => Err(e),
                },
            },
        }
    }

    /// The token for the one retry after an upstream `401` to a request
    /// that carried `used`: refreshed, unless the token in force is no
    /// longer `used` (another caller refreshed meanwhile: that one is
    /// returned, and no second refresh made). Not for `403`.
    pub async fn after_unauthorized(
        &self,
        id: &str,
        used: &BearerToken,
        now: OffsetDateTime,
    ) -> Result<BearerToken, TokenError> {
        let slot = self.slot(id)?;
        if slot.state().refresh.is_none() {
            return Err(TokenError::CannotRefresh {
                id: slot.id.clone(),
            });
        }
        let _turn = slot.wait_turn().await?;
        let step = {
            let st = slot.state();
            let replaced = st
                .token
                .as_ref()
                .is_some_and(|t| t.serial() != used.serial());
            match &st.failure {
                _ if replaced => st.step(&slot.id, now),
                Some(f) if f.error.is_permanent() || now < f.at + TRANSIENT_BACKOFF => {
                    Step::Fail(refresh_error(&slot.id, &f.error))
                }
                _ => Step::Refresh,
            }
        };
        match step {
            Step::Ready(token) => Ok(token),
            Step::Fail(e) => Err(e),
            Step::Refresh => self.refresh(&slot, now, true).await,
        }
    }

    /// `mcp_oauth_validate`: refreshes when a refresh is configured
    /// (through the same single flight: a refresh that ends while this
    /// call waits counts as its outcome, and a permanent failure is
    /// reported without calling the endpoint again), else judges
    /// `expires_at`. The transient backoff does not apply: the user asked.
    pub async fn validate(&self, id: &str, now: OffsetDateTime) -> Result<Validation, TokenError> {
        let slot = self.slot(id)?;
        let (has_refresh, expires_at, permanent) = {
            let st = slot.state();
            let permanent = st.failure.as_ref().filter(|f| f.error.is_permanent());
            (
                st.refresh.is_some(),
                st.expires_at,
                permanent.map(|f| f.error.clone()),
            )
        };
        let verdict = |status, refresh| Validation {
            status,
            has_refresh_token: has_refresh,
            refresh,
        };
        if !has_refresh {
            let status = match expires_at {
                Some(at) if at <= now => ValidationStatus::Invalid,
                _ => ValidationStatus::Unknown,
            };
            return Ok(verdict(status, RefreshOutcome::NotConfigured));
        }
        if let Some(e) = permanent {
            return Ok(verdict(
                ValidationStatus::Invalid,
                RefreshOutcome::Failed(e),
            ));
        }
        let before = slot.outcomes();
        let Ok(_turn) = slot.wait_turn().await else {
            let failed = RefreshOutcome::Failed(RefreshError::WaitTimeout);
            return Ok(verdict(ValidationStatus::Unknown, failed));
        };
        let (ok, failed) = slot.outcomes();
        let outcome = if ok > before.0 {
            Ok(())
        } else if failed > before.1 {
            let st = slot.state();
            match &st.failure {
                Some(f) => Err(f.error.clone()),
                None => Ok(()),
            }
        } else {
            match self.refresh(&slot, now, false).await {
                Ok(_) => Ok(()),
                Err(TokenError::Refresh { reason, .. }) => Err(reason),
                Err(other) => return Err(other),
            }
        };
        Ok(match outcome {
            Ok(()) => verdict(ValidationStatus::Valid, RefreshOutcome::Refreshed),
            Err(e) if e.is_permanent() => {
                verdict(ValidationStatus::Invalid, RefreshOutcome::Failed(e))
            }
            Err(e) => verdict(ValidationStatus::Unknown, RefreshOutcome::Failed(e)),
        })
    }

    /// The credentials whose last refresh failed, with the reason, by id.
    pub fn needs_reauthorisation(&self) -> Vec<(String, RefreshError)> {
        self.stats()
            .into_iter()
            .filter_map(|s| s.failing.map(|e| (s.id, e)))
            .collect()
    }

    /// Counters and failure state of every MCP credential, by id.
    pub fn stats(&self) -> Vec<TokenStats> {
        let slots: Vec<Arc<Slot>> = self
            .slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let mut out: Vec<TokenStats> = slots
            .iter()
            .map(|slot| TokenStats {
                id: slot.id.clone(),
                refreshes_ok: slot.refreshes_ok.load(Ordering::Relaxed),
                refreshes_failed: slot.refreshes_failed.load(Ordering::Relaxed),
                persist_failures: slot.persist_failures.load(Ordering::Relaxed),
                failing: slot.state().failure.as_ref().map(|f| f.error.clone()),
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    fn slot(&self, id: &str) -> Result<Arc<Slot>, TokenError> {
        self.slots
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
            .ok_or_else(|| TokenError::Unknown { id: id.to_owned() })
    }

    /// POSTs `request` within [`REFRESH_TIMEOUT`] and parses the answer.
    async fn exchange(
        &self,
        request: RefreshRequest,
    ) -> Result<(TokenResponse, BearerToken), RefreshError> {
        let answer = tokio::time::timeout(REFRESH_TIMEOUT, self.endpoint.post(request))
            .await
            .map_err(|_| RefreshError::Timeout)??;
        let parsed = parse_response(answer.status, answer.content_type.as_deref(), &answer.body)?;
        // `parse_response` checked the token; this cannot fail, but is not
        // assumed to.
        let token = BearerToken::new(parsed.access_token.clone()).ok_or(
            RefreshError::Malformed("access_token cannot be sent in a header"),
        )?;
        Ok((parsed, token))
    }

    /// One refresh, saved before use; the caller holds the slot's turn. `after_401` marks a
    /// failure as one whose token the server already refused.
    async fn refresh(
        &self,
        slot: &Slot,
        now: OffsetDateTime,
        after_401: bool,
    ) -> Result<BearerToken, TokenError> {
        let (request, epoch, replaces, old_refresh, secret) = {
            let st = slot.state();
            let Some(refresh) = &st.refresh else {
                return Err(TokenError::CannotRefresh {
                    id: slot.id.clone(),
                });
            };
            (
                RefreshRequest::new(refresh, &refresh.refresh_token),
                st.epoch,
                st.configured,
                refresh.refresh_token.clone(),
                client_secret(&refresh.token_endpoint_auth).cloned(),
            )
        };
        let (answer, token) = match self.exchange(request).await {
            Ok(ok) => ok,
            Err(error) => return Err(slot.fail(epoch, error, now, after_401)),
        };
        let presented = old_refresh.clone();
        let refresh_in_force = answer.refresh_token.clone().unwrap_or(old_refresh);
        let expires_at = answer
            .expires_in
            .map(|s| now + time::Duration::seconds(s.min(MAX_EXPIRES_IN_SECS) as i64));
        let own = Fingerprint::oauth(
            &answer.access_token,
            Some(&refresh_in_force),
            secret.as_ref(),
        );
        let superseded_by_update = {
            let mut st = slot.state();
            if st.epoch == epoch {
                st.own = Some(own);
            }
            st.epoch != epoch
        };
        if superseded_by_update {
            return self
                .superseded_refresh(slot, &presented, answer.refresh_token, now)
                .await;
        }
        let update = TokenUpdate {
            id: slot.id.clone(),
            access_token: Some(answer.access_token),
            expires_at: expires_at.and_then(|t| t.format(&Rfc3339).ok()),
            refresh_token: answer.refresh_token.clone(),
            replaces,
        };
        let saved = self.save(update).await;
        let superseded_save = {
            let mut st = slot.state();
            match saved {
                Ok(()) => {
                    if st.epoch == epoch {
                        st.configured = own;
                        st.own = None;
                    }
                    false
                }
                Err(PersistError::Superseded) => {
                    if st.epoch == epoch {
                        st.own = None;
                    }
                    true
                }
                Err(e @ PersistError::Failed(_)) => {
                    slot.persist_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(credential = %slot.id, error = %e, "mcp: refreshed tokens not saved; using them from memory");
                    false
                }
            }
        };
        if superseded_save {
            return self
                .superseded_refresh(slot, &presented, answer.refresh_token, now)
                .await;
        }
        let mut st = slot.state();
        if st.epoch != epoch {
            return superseded(slot, &st, now);
        }
        st.token = Some(token.clone());
        st.expires_at = expires_at;
        if let Some(refresh) = st.refresh.as_mut() {
            refresh.refresh_token = refresh_in_force;
        }
        st.failure = None;
        slot.refreshes_ok.fetch_add(1, Ordering::Relaxed);
        tracing::info!(credential = %slot.id, expires_at = ?expires_at, "mcp: access token refreshed");
        Ok(token)
    }

    /// Saves `update` within [`PERSIST_TIMEOUT`].
    async fn save(&self, update: TokenUpdate) -> Result<(), PersistError> {
        tokio::time::timeout(PERSIST_TIMEOUT, self.persist.save(update))
            .await
            .unwrap_or_else(|_| {
                Err(PersistError::Failed(format!(
                    "no answer within {}s",
                    PERSIST_TIMEOUT.as_secs()
                )))
            })
    }

    /// A refresh whose tokens an update of the config replaced meanwhile:
    /// the configured tokens answer. The refreshed access token is
    /// dropped, but a refresh token the server rotated to is kept when the
    /// config still holds the one `presented` (an update of the access
    /// token alone): the server has revoked that one, so dropping the
    /// rotation would need the user to re-authorise at the next refresh.
    async fn superseded_refresh(
        &self,
        slot: &Slot,
        presented: &Secret,
        rotated: Option<Secret>,
        now: OffsetDateTime,
    ) -> Result<BearerToken, TokenError> {
        if let Some(rotated) = rotated {
            self.keep_rotation(slot, presented, rotated).await;
        }
        let st = slot.state();
        superseded(slot, &st, now)
    }

    /// See [`TokenBook::superseded_refresh`]: saves `rotated` in place of
    /// `presented` when the config in force still holds it.
    async fn keep_rotation(&self, slot: &Slot, presented: &Secret, rotated: Secret) {
        let (update, epoch, own) = {
            let mut st = slot.state();
            let (Some(refresh), Some(token)) = (&st.refresh, &st.token) else {
                return;
            };
            if refresh.refresh_token.expose() != presented.expose() || st.own.is_some() {
                return;
            }
            let secret = client_secret(&refresh.token_endpoint_auth);
            let own = Fingerprint::oauth(token.token(), Some(&rotated), secret);
            let update = TokenUpdate {
                id: slot.id.clone(),
                access_token: None,
                expires_at: None,
                refresh_token: Some(rotated.clone()),
                replaces: st.configured,
            };
            st.own = Some(own);
            (update, st.epoch, own)
        };
        let saved = self.save(update).await;
        let mut st = slot.state();
        if st.epoch != epoch {
            return;
        }
        match saved {
            Ok(()) => {
                st.configured = own;
                st.own = None;
            }
            Err(PersistError::Superseded) => {
                st.own = None;
                return;
            }
            Err(e @ PersistError::Failed(_)) => {
                slot.persist_failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(credential = %slot.id, error = %e, "mcp: the rotated refresh token was not saved; using it from memory");
            }
        }
        if let Some(refresh) = st.refresh.as_mut() {
            refresh.refresh_token = rotated;
        }
        tracing::info!(credential = %slot.id, "mcp: tokens changed during a refresh; the refresh token the server rotated to is kept");
    }
}

// === impl ValidationStatus ===

impl ValidationStatus {
    /// `valid`, `invalid` or `unknown`, as the vault API writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationStatus::Valid => "valid",
            ValidationStatus::Invalid => "invalid",
            ValidationStatus::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests;
