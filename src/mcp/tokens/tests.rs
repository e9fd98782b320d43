//! Compiled only under #[cfg(test)], from the parent module.
//! The token book against a scripted token endpoint and a recording store.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Mutex, OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::mcp::test_config;
use crate::mcp::BoxFuture;
use crate::model::{rules, Auth};

const EXPIRY: &str = "2030-01-01T00:00:00Z";

fn at(s: &str) -> OffsetDateTime {
    rules::parse_timestamp(s).unwrap()
}

/// Well before expiry.
fn early() -> OffsetDateTime {
    at("2029-12-31T12:00:00Z")
}

/// Inside the refresh skew, not yet expired.
fn late() -> OffsetDateTime {
    at("2029-12-31T23:59:30Z")
}

fn config(credentials: &[String]) -> Config {
    test_config(&format!(
        r#"{{"credentials": [{}]}}"#,
        credentials.join(",")
    ))
}

/// An `mcp_oauth` credential with a refresh (`token_endpoint_auth: none`).
fn oauth(id: &str, access: &str, refresh: &str, expires_at: &str) -> String {
    format!(
        r#"{{"id": "{id}", "auth": {{"type": "mcp_oauth", "mcp_server_url": "https://{id}.example.com/sse",
            "access_token": "{access}", "expires_at": "{expires_at}",
            "refresh": {{"client_id": "app", "refresh_token": "{refresh}",
              "token_endpoint": "https://auth.example.com/token", "token_endpoint_auth": {{"type": "none"}}}}}}}}"#
    )
}

fn oauth_without_refresh(id: &str, access: &str, expires_at: &str) -> String {
    format!(
        r#"{{"id": "{id}", "auth": {{"type": "mcp_oauth", "mcp_server_url": "https://{id}.example.com/",
            "access_token": "{access}", "expires_at": "{expires_at}"}}}}"#
    )
}

fn static_bearer(id: &str, token: &str) -> String {
    format!(
        r#"{{"id": "{id}", "auth": {{"type": "static_bearer", "mcp_server_url": "https://{id}.example.com/", "token": "{token}"}}}}"#
    )
}

/// One scripted answer of the fake endpoint.
enum Answer {
    Reply(u16, &'static str),
    Fail(RefreshError),
    Hang,
}

/// Counts calls; answers from its script, then with `at_N`/`rt_N` tokens
/// valid for an hour.
#[derive(Default)]
struct FakeEndpoint {
    calls: AtomicUsize,
    bodies: Mutex<Vec<String>>,
    script: Mutex<VecDeque<Answer>>,
    delay: Mutex<Duration>,
}

impl FakeEndpoint {
    fn then(&self, answer: Answer) {
        self.script.lock().unwrap().push_back(answer);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn last_body(&self) -> String {
        self.bodies.lock().unwrap().last().cloned().unwrap()
    }
}

impl TokenEndpoint for FakeEndpoint {
    fn post(
        &self,
        request: RefreshRequest,
    ) -> BoxFuture<'_, Result<EndpointResponse, RefreshError>> {
        Box::pin(async move {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let body = String::from_utf8(request.expose_body().to_vec()).unwrap();
            self.bodies.lock().unwrap().push(body);
            let answer = self.script.lock().unwrap().pop_front();
            let delay = *self.delay.lock().unwrap();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let reply = |status: u16, body: String| EndpointResponse {
                status,
                content_type: Some("application/json".into()),
                body: Bytes::from(body),
            };
            match answer {
                None => Ok(reply(
                    200,
                    format!(
                        r#"{{"access_token": "at_{n}", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt_{n}"}}"#
                    ),
                )),
                Some(Answer::Reply(status, body)) => Ok(reply(status, body.to_owned())),
                Some(Answer::Fail(e)) => Err(e),
                Some(Answer::Hang) => std::future::pending().await,
            }
        })
    }
}

/// Records saves and the token in force at the time of each; can fail,
/// report a conflict, or put a config in force first (as the store does).
#[derive(Default)]
struct FakePersist {
    saves: Mutex<Vec<TokenUpdate>>,
    in_force_at_save: Mutex<Vec<String>>,
    fail: AtomicBool,
    superseded: AtomicBool,
    /// Answers the next save (only) with `Superseded`.
    superseded_once: AtomicBool,
    apply_first: Mutex<Option<Config>>,
    book: OnceLock<Weak<TokenBook>>,
}

impl TokenPersist for FakePersist {
    fn save(&self, update: TokenUpdate) -> BoxFuture<'_, Result<(), PersistError>> {
        Box::pin(async move {
            if let Some(book) = self.book.get().and_then(Weak::upgrade) {
                self.in_force_at_save
                    .lock()
                    .unwrap()
                    .push(in_force(&book, &update.id));
                let first = self.apply_first.lock().unwrap().take();
                if let Some(config) = first {
                    book.sync(&config);
                }
            }
            self.saves.lock().unwrap().push(update);
            if self.superseded.load(Ordering::SeqCst)
                || self.superseded_once.swap(false, Ordering::SeqCst)
            {
                Err(PersistError::Superseded)
            } else if self.fail.load(Ordering::SeqCst) {
                Err(PersistError::Failed("disk full".into()))
            } else {
                Ok(())
            }
        })
    }
}

/// The token in force, read from the slot without refreshing.
fn in_force(book: &TokenBook, id: &str) -> String {
    let slot = book.slot(id).unwrap();
    let st = slot.state();
    st.token.as_ref().unwrap().token().expose().to_owned()
}

struct Harness {
    book: Arc<TokenBook>,
    endpoint: Arc<FakeEndpoint>,
    persist: Arc<FakePersist>,
}

fn harness(config: &Config) -> Harness {
    let endpoint = Arc::new(FakeEndpoint::default());
    let persist = Arc::new(FakePersist::default());
    let book = Arc::new(TokenBook::new(endpoint.clone(), persist.clone()));
    let _ = persist.book.set(Arc::downgrade(&book));
    book.sync(config);
    Harness {
        book,
        endpoint,
        persist,
    }
}

fn expose(token: &BearerToken) -> &str {
    token.token().expose()
}

#[tokio::test]
async fn static_bearer_is_served_and_cannot_refresh() {
    let h = harness(&config(&[static_bearer("s", "st_tok")]));
    let t = h.book.bearer("s", late()).await.unwrap();
    assert_eq!(t.header_value().as_bytes(), b"Bearer st_tok");
    let e = h
        .book
        .after_unauthorized("s", &t, late())
        .await
        .unwrap_err();
    assert_eq!(e, TokenError::CannotRefresh { id: "s".into() });
    assert_eq!(h.endpoint.calls(), 0);
    let e = h.book.bearer("nope", late()).await.unwrap_err();
    assert_eq!(e, TokenError::Unknown { id: "nope".into() });
}

#[tokio::test]
async fn a_fresh_token_is_served_without_refreshing() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    let a = h.book.bearer("o", early()).await.unwrap();
    let b = h
        .book
        .bearer("o", at("2029-12-31T23:58:59Z"))
        .await
        .unwrap();
    assert_eq!(expose(&a), "at_0");
    assert_eq!(a.serial(), b.serial());
    assert_eq!(h.endpoint.calls(), 0);
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_and_saved_before_use() {
    let cfg = config(&[oauth("o", "at_0", "rt_0", EXPIRY)]);
    let h = harness(&cfg);
    let t = h.book.bearer("o", late()).await.unwrap();
    assert_eq!(expose(&t), "at_1");
    assert_eq!(h.endpoint.calls(), 1);
    assert_eq!(
        h.endpoint.last_body(),
        "grant_type=refresh_token&refresh_token=rt_0&client_id=app"
    );
    // Saved first: while saving, the old token was still the one in force.
    assert_eq!(*h.persist.in_force_at_save.lock().unwrap(), ["at_0"]);
    {
        let saves = h.persist.saves.lock().unwrap();
        let save = &saves[0];
        assert_eq!(save.id, "o");
        assert_eq!(save.access_token.as_ref().unwrap().expose(), "at_1");
        assert_eq!(save.refresh_token.as_ref().unwrap().expose(), "rt_1");
        assert_eq!(save.expires_at.as_deref(), Some("2030-01-01T00:59:30Z"));
        assert_eq!(
            save.replaces,
            Fingerprint::of(&cfg.credentials[0].auth).unwrap()
        );
    }
    // The new expiry is an hour away: no second refresh.
    let again = h.book.bearer("o", late()).await.unwrap();
    assert_eq!(again.serial(), t.serial());
    assert_eq!(h.endpoint.calls(), 1);
    // The rotated refresh token is the one used next.
    h.book
        .after_unauthorized("o", &again, late())
        .await
        .unwrap();
    assert!(h.endpoint.last_body().contains("refresh_token=rt_1&"));
    assert_eq!(h.book.stats()[0].refreshes_ok, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_callers_cause_one_refresh() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    *h.endpoint.delay.lock().unwrap() = Duration::from_millis(50);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let book = h.book.clone();
            tokio::spawn(async move { book.bearer("o", late()).await })
        })
        .collect();
    let mut serials = Vec::new();
    for task in tasks {
        let token = task.await.unwrap().unwrap();
        assert_eq!(expose(&token), "at_1");
        serials.push(token.serial());
    }
    serials.dedup();
    assert_eq!(serials.len(), 1);
    assert_eq!(h.endpoint.calls(), 1);
    assert_eq!(h.persist.saves.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_401s_cause_one_refresh() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    *h.endpoint.delay.lock().unwrap() = Duration::from_millis(50);
    let used = h.book.bearer("o", early()).await.unwrap();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let book = h.book.clone();
            let used = used.clone();
            tokio::spawn(async move { book.after_unauthorized("o", &used, early()).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(expose(&task.await.unwrap().unwrap()), "at_1");
    }
    assert_eq!(h.endpoint.calls(), 1);
}

#[tokio::test]
async fn a_stale_401_gets_the_new_token_without_a_second_refresh() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    let old = h.book.bearer("o", early()).await.unwrap();
    let new = h.book.after_unauthorized("o", &old, early()).await.unwrap();
    assert_eq!(expose(&new), "at_1");
    let again = h.book.after_unauthorized("o", &old, early()).await.unwrap();
    assert_eq!(again.serial(), new.serial());
    assert_eq!(h.endpoint.calls(), 1);
}

#[tokio::test]
async fn an_answer_without_refresh_token_or_expiry_keeps_the_old_token_and_no_expiry() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    h.endpoint.then(Answer::Reply(
        200,
        r#"{"access_token": "at_x", "token_type": "bearer"}"#,
    ));
    let t = h.book.bearer("o", late()).await.unwrap();
    assert_eq!(expose(&t), "at_x");
    {
        let saves = h.persist.saves.lock().unwrap();
        assert!(saves[0].refresh_token.is_none());
        assert!(saves[0].expires_at.is_none());
    }
    // Expiry unknown: no refresh by the clock, even years later.
    let later = h
        .book
        .bearer("o", at("2031-06-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(later.serial(), t.serial());
    assert_eq!(h.endpoint.calls(), 1);
    // The next refresh (after a 401) still uses the old refresh token.
    h.book.after_unauthorized("o", &t, late()).await.unwrap();
    assert!(h.endpoint.last_body().contains("refresh_token=rt_0&"));
}

#[tokio::test]
async fn the_config_coming_back_from_our_own_save_resets_nothing() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    // The store puts the saved config in force during the save, as it does.
    let saved = config(&[oauth("o", "at_1", "rt_1", "2030-01-01T00:59:30Z")]);
    *h.persist.apply_first.lock().unwrap() = Some(saved.clone());
    let t = h.book.bearer("o", late()).await.unwrap();
    assert_eq!(expose(&t), "at_1");
    h.book.sync(&saved);
    let again = h.book.bearer("o", late()).await.unwrap();
    assert_eq!(again.serial(), t.serial(), "no reset: same token in force");
    assert_eq!(h.endpoint.calls(), 1);
}

#[tokio::test]
async fn a_failed_save_keeps_the_new_tokens_in_memory() {
    let old = config(&[oauth("o", "at_0", "rt_0", EXPIRY)]);
    let h = harness(&old);
    h.persist.fail.store(true, Ordering::SeqCst);
    // As a store rolling back does: the new config in force, then the old.
    *h.persist.apply_first.lock().unwrap() = Some(config(&[oauth(
        "o",
        "at_1",
        "rt_1",
        "2030-01-01T00:59:30Z",
    )]));
    let t = h.book.bearer("o", late()).await.unwrap();
    assert_eq!(expose(&t), "at_1");
    h.book.sync(&old);
    let again = h.book.bearer("o", late()).await.unwrap();
    assert_eq!(again.serial(), t.serial());
    let stats = &h.book.stats()[0];
    assert_eq!((stats.refreshes_ok, stats.persist_failures), (1, 1));
    // The next save still names the file's tokens as the ones replaced.
    h.persist.fail.store(false, Ordering::SeqCst);
    h.book
        .after_unauthorized("o", &again, late())
        .await
        .unwrap();
    let saves = h.persist.saves.lock().unwrap();
    assert_eq!(
        saves[1].replaces,
        Fingerprint::of(&old.credentials[0].auth).unwrap()
    );
}

#[tokio::test]
async fn a_superseded_save_drops_the_refreshed_tokens() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    h.persist.superseded.store(true, Ordering::SeqCst);
    *h.persist.apply_first.lock().unwrap() = Some(config(&[oauth(
        "o",
        "at_admin",
        "rt_admin",
        "2030-06-01T00:00:00Z",
    )]));
    let t = h.book.bearer("o", late()).await.unwrap();
    assert_eq!(expose(&t), "at_admin");
    assert_eq!(h.book.stats()[0].refreshes_ok, 0);
}

#[tokio::test]
async fn a_superseded_refresh_keeps_a_rotation_the_update_did_not_replace() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    // During the save, an admin update replaces the access token alone.
    let admin = config(&[oauth("o", "at_admin", "rt_0", "2030-06-01T00:00:00Z")]);
    *h.persist.apply_first.lock().unwrap() = Some(admin.clone());
    h.persist.superseded_once.store(true, Ordering::SeqCst);
    let t = h.book.bearer("o", late()).await.unwrap();
    assert_eq!(expose(&t), "at_admin");
    {
        let saves = h.persist.saves.lock().unwrap();
        assert_eq!(saves.len(), 2, "{saves:?}");
        assert!(saves[1].access_token.is_none());
        assert_eq!(saves[1].refresh_token.as_ref().unwrap().expose(), "rt_1");
        assert_eq!(
            saves[1].replaces,
            Fingerprint::of(&admin.credentials[0].auth).unwrap()
        );
    }
    // The next refresh presents the refresh token the server rotated to.
    h.book.after_unauthorized("o", &t, late()).await.unwrap();
    assert!(h.endpoint.last_body().contains("refresh_token=rt_1&"));
    // An update that replaced the refresh token too keeps it.
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    *h.persist.apply_first.lock().unwrap() = Some(config(&[oauth(
        "o",
        "at_admin",
        "rt_admin",
        "2030-06-01T00:00:00Z",
    )]));
    h.persist.superseded_once.store(true, Ordering::SeqCst);
    let t = h.book.bearer("o", late()).await.unwrap();
    assert_eq!(h.persist.saves.lock().unwrap().len(), 1);
    h.book.after_unauthorized("o", &t, late()).await.unwrap();
    assert!(h.endpoint.last_body().contains("refresh_token=rt_admin&"));
}

#[tokio::test]
async fn invalid_grant_fails_fast_until_new_tokens_are_configured() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    h.endpoint.then(Answer::Reply(
        400,
        r#"{"error": "invalid_grant", "error_description": "rt_0 revoked"}"#,
    ));
    let e = h.book.bearer("o", late()).await.unwrap_err();
    let want = TokenError::Refresh {
        id: "o".into(),
        reason: RefreshError::InvalidGrant,
    };
    assert_eq!(e, want);
    // Fails fast, even well before expiry, even a day later.
    assert_eq!(h.book.bearer("o", early()).await.unwrap_err(), want);
    assert_eq!(
        h.book
            .bearer("o", at("2030-01-02T00:00:00Z"))
            .await
            .unwrap_err(),
        want
    );
    assert_eq!(h.endpoint.calls(), 1);
    assert_eq!(
        h.book.needs_reauthorisation(),
        [("o".to_owned(), RefreshError::InvalidGrant)]
    );
    assert_eq!(h.book.stats()[0].refreshes_failed, 1);
    // The same tokens again (an unrelated reload) change nothing...
    h.book.sync(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    assert_eq!(h.book.bearer("o", early()).await.unwrap_err(), want);
    // ...an admin update of the tokens clears the state.
    h.book.sync(&config(&[oauth(
        "o",
        "at_new",
        "rt_new",
        "2030-06-01T00:00:00Z",
    )]));
    let t = h.book.bearer("o", late()).await.unwrap();
    assert_eq!(expose(&t), "at_new");
    assert!(h.book.needs_reauthorisation().is_empty());
    assert_eq!(h.endpoint.calls(), 1);
}

#[tokio::test]
async fn transient_failures_back_off_then_retry() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    h.endpoint.then(Answer::Reply(503, "busy"));
    // The refresh ahead of the expiry fails, but the token is still valid
    // by the clock: served, to this request and within the backoff.
    let first = at("2029-12-31T23:59:20Z");
    let t = h.book.bearer("o", first).await.unwrap();
    assert_eq!(expose(&t), "at_0");
    assert_eq!(
        h.book.needs_reauthorisation()[0].1,
        RefreshError::Server { status: 503 }
    );
    let t = h
        .book
        .bearer("o", at("2029-12-31T23:59:40Z"))
        .await
        .unwrap();
    assert_eq!(expose(&t), "at_0");
    assert_eq!(h.endpoint.calls(), 1);
    // Backoff over: a new attempt, which succeeds.
    let t = h
        .book
        .bearer("o", at("2029-12-31T23:59:51Z"))
        .await
        .unwrap();
    assert_eq!(expose(&t), "at_2", "the fake numbers tokens by call");
    assert_eq!(h.endpoint.calls(), 2);
    assert!(h.book.needs_reauthorisation().is_empty());
}

#[tokio::test]
async fn an_expired_token_is_not_served_during_the_backoff() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    h.endpoint.then(Answer::Fail(RefreshError::Transport(
        "connection refused".into(),
    )));
    // Still valid when the early refresh fails: served.
    let t = h
        .book
        .bearer("o", at("2029-12-31T23:59:50Z"))
        .await
        .unwrap();
    assert_eq!(expose(&t), "at_0");
    // Expired, within the backoff: not served.
    let e = h
        .book
        .bearer("o", at("2030-01-01T00:00:05Z"))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        TokenError::Refresh {
            reason: RefreshError::Transport(_),
            ..
        }
    ));
    assert_eq!(h.endpoint.calls(), 1);
    assert_eq!(h.book.needs_reauthorisation().len(), 1);
}

#[tokio::test]
async fn a_token_refused_by_the_server_is_not_served_after_a_failed_refresh() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    h.endpoint.then(Answer::Reply(502, ""));
    let used = h.book.bearer("o", early()).await.unwrap();
    assert!(h
        .book
        .after_unauthorized("o", &used, early())
        .await
        .is_err());
    assert!(
        h.book.bearer("o", early()).await.is_err(),
        "the server refused it"
    );
    assert!(h
        .book
        .after_unauthorized("o", &used, early())
        .await
        .is_err());
    assert_eq!(h.endpoint.calls(), 1, "no new attempt within the backoff");
}

#[tokio::test]
async fn without_refresh_an_expired_token_is_sent_anyway() {
    let h = harness(&config(&[oauth_without_refresh("n", "at_n", EXPIRY)]));
    let t = h
        .book
        .bearer("n", at("2030-02-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(expose(&t), "at_n");
    let e = h
        .book
        .after_unauthorized("n", &t, late())
        .await
        .unwrap_err();
    assert_eq!(e, TokenError::CannotRefresh { id: "n".into() });
}

#[tokio::test(start_paused = true)]
async fn waiting_for_another_refresh_is_bounded() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    let slot = h.book.slot("o").unwrap();
    let _held = slot.refreshing.lock().await;
    let e = h.book.bearer("o", late()).await.unwrap_err();
    assert_eq!(e, TokenError::WaitTimeout { id: "o".into() });
    assert!(e.to_string().contains("30s"), "{e}");
    let v = h.book.validate("o", late()).await.unwrap();
    assert_eq!(v.refresh, RefreshOutcome::Failed(RefreshError::WaitTimeout));
    assert_eq!(h.endpoint.calls(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_silent_token_endpoint_times_out() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    h.endpoint.then(Answer::Hang);
    // Expired: nothing to fall back on.
    let e = h
        .book
        .bearer("o", at("2030-01-01T00:00:01Z"))
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        TokenError::Refresh {
            reason: RefreshError::Timeout,
            ..
        }
    ));
    assert_eq!(h.book.stats()[0].failing, Some(RefreshError::Timeout));
}

#[tokio::test]
async fn validate_refreshes_or_judges_the_expiry() {
    let h = harness(&config(&[
        oauth("o", "at_0", "rt_0", EXPIRY),
        oauth_without_refresh("n", "at_n", EXPIRY),
        static_bearer("s", "st"),
    ]));
    let v = h.book.validate("o", early()).await.unwrap();
    assert_eq!(
        v,
        Validation {
            status: ValidationStatus::Valid,
            has_refresh_token: true,
            refresh: RefreshOutcome::Refreshed,
        }
    );
    assert_eq!(h.endpoint.calls(), 1);
    assert_eq!(expose(&h.book.bearer("o", early()).await.unwrap()), "at_1");

    let v = h.book.validate("n", early()).await.unwrap();
    assert_eq!(
        (v.status, v.has_refresh_token),
        (ValidationStatus::Unknown, false)
    );
    assert_eq!(v.refresh, RefreshOutcome::NotConfigured);
    let v = h
        .book
        .validate("n", at("2030-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(v.status, ValidationStatus::Invalid);
    assert_eq!(ValidationStatus::Invalid.as_str(), "invalid");
    let v = h.book.validate("s", early()).await.unwrap();
    assert_eq!(v.status, ValidationStatus::Unknown);

    h.endpoint
        .then(Answer::Reply(400, r#"{"error": "invalid_grant"}"#));
    let v = h.book.validate("o", early()).await.unwrap();
    assert_eq!(v.status, ValidationStatus::Invalid);
    assert_eq!(
        v.refresh,
        RefreshOutcome::Failed(RefreshError::InvalidGrant)
    );
    // Known dead: reported again without calling the endpoint.
    let v = h.book.validate("o", early()).await.unwrap();
    assert_eq!(v.status, ValidationStatus::Invalid);
    assert_eq!(h.endpoint.calls(), 2);
    assert!(h.book.validate("gone", early()).await.is_err());
}

#[tokio::test]
async fn validate_reports_a_transient_failure_as_unknown() {
    let h = harness(&config(&[oauth("o", "at_0", "rt_0", EXPIRY)]));
    h.endpoint.then(Answer::Reply(500, "oops"));
    let v = h.book.validate("o", early()).await.unwrap();
    assert_eq!(v.status, ValidationStatus::Unknown);
    assert_eq!(
        v.refresh,
        RefreshOutcome::Failed(RefreshError::Server { status: 500 })
    );
    // The backoff does not stop an explicit validation.
    let v = h.book.validate("o", early()).await.unwrap();
    assert_eq!(v.status, ValidationStatus::Valid);
}

#[tokio::test]
async fn sync_drops_removed_credentials_and_takes_new_settings() {
    let h = harness(&config(&[
        oauth("o", "at_0", "rt_0", EXPIRY),
        static_bearer("s", "st"),
    ]));
    let mut changed = config(&[oauth("o", "at_0", "rt_0", EXPIRY)]);
    if let Auth::McpOauth(a) = &mut changed.credentials[0].auth {
        a.refresh.as_mut().unwrap().scope = Some("mcp".into());
    }
    h.book.sync(&changed);
    assert_eq!(
        h.book.bearer("s", early()).await.unwrap_err(),
        TokenError::Unknown { id: "s".into() }
    );
    let t = h.book.bearer("o", late()).await.unwrap();
    assert!(
        h.endpoint.last_body().contains("&scope=mcp&"),
        "{}",
        h.endpoint.last_body()
    );
    // The same tokens with a new expiry (an expiry-only update) are taken.
    let mut later = config(&[oauth("o", "at_1", "rt_1", "2031-01-01T00:00:00Z")]);
    if let Auth::McpOauth(a) = &mut later.credentials[0].auth {
        a.refresh.as_mut().unwrap().scope = Some("mcp".into());
    }
    h.book.sync(&later);
    let same = h
        .book
        .bearer("o", at("2030-06-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!(same.serial(), t.serial());
    assert_eq!(h.endpoint.calls(), 1);
}

#[tokio::test]
async fn errors_and_debug_never_show_tokens() {
    let h = harness(&config(&[oauth("o", "at_SECRET", "rt_SECRET", EXPIRY)]));
    h.endpoint.then(Answer::Reply(
        401,
        r#"{"error": "invalid_client", "error_description": "rt_SECRET"}"#,
    ));
    let e = h.book.bearer("o", late()).await.unwrap_err();
    let t = h.book.slot("o").unwrap().state().token.clone().unwrap();
    let stats = h.book.stats();
    let shown = format!(
        "{e} {e:?} {t:?} {stats:?} {:?}",
        h.persist.saves.lock().unwrap()
    );
    assert!(!shown.contains("SECRET"), "{shown}");
    assert!(
        shown.contains("\"o\"") && shown.contains("invalid_client"),
        "{shown}"
    );
}
