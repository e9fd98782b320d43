//! Reloads: on SIGHUP, and when the config file changes on disk.
//!
//! The file is watched by polling its metadata through the path (which
//! follows symbolic links) every [`POLL_INTERVAL`]: an edit in place
//! changes its length or mtime, an atomic rename and a Kubernetes-style
//! `..data` symlink swap change the inode behind the path. Polling one
//! `stat` a second half is simpler and sturdier than inotify across those
//! cases, at the price of up to half a second of delay. A reload that finds
//! the file invalid is refused with an error log; the policy in force stays.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::Signal;

use crate::proxy::{Counters, Proxy};
use crate::store::{Reloaded, Store};

/// How often the config file's metadata is checked.
pub const POLL_INTERVAL: Duration = Duration::from_millis(500);

/// What identifies one version of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
    device: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: m.len(),
        modified: m.modified().ok(),
        inode: m.ino(),
        device: m.dev(),
    })
}

/// Starts listening for SIGHUP (inside the runtime). Call it before the
/// proxy announces its address: until then a SIGHUP would end the process.
pub fn listen_for_hangup() -> Option<Signal> {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; reloads follow file changes only");
            None
        }
    }
}

/// Watches for SIGHUP (on `hup`, from [`listen_for_hangup`]) and file
/// changes until the process ends.
pub async fn watch(store: Arc<Store>, proxy: Arc<Proxy>, mut hup: Option<Signal>) {
    let mut last = stamp(store.path());
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let cause = tokio::select! {
            _ = tick.tick() => {
                let now = stamp(store.path());
                if now == last {
                    continue;
                }
                last = now;
                "file change"
            }
            Some(()) = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => "SIGHUP",
        };
        reload(&store, &proxy, cause).await;
    }
}

/// Rereads the file once, logging and counting the outcome.
pub async fn reload(store: &Store, proxy: &Proxy, cause: &str) {
    match store.reload().await {
        Ok(Reloaded::Applied) => {
            Counters::add(&proxy.counters.reloads_ok, 1);
            tracing::info!(cause, path = %store.path().display(), "config reloaded");
        }
        Ok(Reloaded::Unchanged) => {
            tracing::debug!(cause, "config unchanged");
        }
        Err(e) => {
            Counters::add(&proxy.counters.reloads_failed, 1);
            tracing::error!(cause, path = %store.path().display(), "config reload refused; the previous config stays in force:\n{e}");
        }
    }
}
