//! Worker threads: one single-threaded tokio runtime per core, each
//! serving whole connections.
//!
//! The trade-off: tokio's multi-thread runtime balances load by stealing
//! tasks between threads, and a proxy pays for it on every request: the
//! client connection's task, the upstream connection's task and the body
//! hand-offs between them wake one another across threads, and an idle
//! worker is woken (a futex call) whenever work is queued. Profiled, those
//! hand-offs were the largest single cost of an intercepted request
//! (`docs/PERFORMANCE.md`). Here a connection is given to one worker when
//! it is accepted and every task it spawns (its upstream connections, its
//! tunnels, its HTTP/2 streams) stays on that worker's thread, as nginx
//! and HAProxy keep a connection on one event loop; each worker has its
//! own pool of upstream connections ([`Workers::index`] picks it), so a
//! request never waits on another thread. What is given up is stealing: a
//! worker with more busy connections than the others does not hand them
//! over. Connections are dealt round-robin, which keeps that imbalance
//! small for the many short-lived, similar connections a sandbox makes.
//!
//! Connections are dealt by one accept loop rather than by one
//! `SO_REUSEPORT` listener per worker: a second socket bound to the port
//! with `SO_REUSEPORT` could be bound by another process of the same user
//! and take a share of the sandbox's connections, and the kernel's hashing
//! puts few connections on workers unevenly.

use std::cell::Cell;
use std::io;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{mpsc, watch};

use crate::logging;

/// How long a worker's runtime waits, once stopped, for tasks on its
/// blocking pool (a name lookup) before the thread ends without them.
pub const WORKER_SHUTDOWN: Duration = Duration::from_millis(200);

thread_local! {
    /// Which worker this thread is (0 on every thread that is not one).
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The worker threads, each running a current-thread runtime until
/// [`Workers::stop`].
///
/// Invariant: `handles` is not empty, and the runtime of `handles[i]` runs
/// on the thread whose [`Workers::index`] is `i`, which holds a clone of
/// the sender whose receiver is `ended` until it has written its last log
/// line.
pub struct Workers {
    handles: Vec<Handle>,
    /// Round-robin position of the next connection.
    next: AtomicUsize,
    /// Set once to end every worker's runtime.
    stop: watch::Sender<bool>,
    /// Closed once every worker thread is done.
    ended: Mutex<Option<mpsc::Receiver<()>>>,
}

// === impl Workers ===

impl Workers {
    /// Starts `count` worker threads named `keyhole-worker-N`.
    pub fn start(count: NonZeroUsize) -> io::Result<Workers> {
        let (stop, _) = watch::channel(false);
        let (running, ended) = mpsc::channel(1);
        let mut workers = Workers {
            handles: Vec::with_capacity(count.get()),
            next: AtomicUsize::new(0),
            stop,
            ended: Mutex::new(Some(ended)),
        };
        for index in 0..count.get() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_park(logging::batch::flush_this_thread)
                .build()?;
            let handle = runtime.handle().clone();
            let mut stopped = workers.stop.subscribe();
            let running = running.clone();
            std::thread::Builder::new()
                .name(format!("keyhole-worker-{index}"))
                .spawn(move || {
                    INDEX.with(|i| i.set(index));
                    logging::batch::batch_this_thread();
                    runtime.block_on(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    });
                    // What is left (after `Proxy::serve`'s grace period,
                    // pooled upstream connections) is dropped; a lookup on
                    // the blocking pool is not waited for.
                    runtime.shutdown_timeout(WORKER_SHUTDOWN);
                    logging::batch::flush_this_thread();
                    drop(running);
                })?; // on failure, dropping `workers` stops those started
            workers.handles.push(handle);
        }
        Ok(workers)
    }

    /// How many worker threads there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Always false: there is at least one worker.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The runtime the next connection goes to.
    pub fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }

    /// The index of the worker running the calling thread, 0 on a thread
    /// that is not a worker's.
    pub fn index() -> usize {
        INDEX.with(Cell::get)
    }

    /// Ends every worker's runtime and waits until each thread has ended
    /// (its last log lines written), for at most twice [`WORKER_SHUTDOWN`].
    /// Tasks still on them are dropped: call this after draining.
    /// Returns whether every thread ended in time (false on a second call).
    pub async fn stop(&self) -> bool {
        self.stop.send_replace(true);
        let ended = self.ended.lock().ok().and_then(|mut e| e.take());
        match ended {
            // `recv` completes with `None` once every sender is dropped.
            Some(mut ended) => tokio::time::timeout(WORKER_SHUTDOWN * 2, ended.recv())
                .await
                .is_ok(),
            None => false,
        }
    }
}

impl Drop for Workers {
    /// Tells the workers to end, without waiting for them: the last owner
    /// may be a task on one of them.
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_dealt_round_robin_and_tasks_stay_on_their_worker() {
        let workers = Workers::start(NonZeroUsize::new(3).unwrap()).unwrap();
        assert_eq!(workers.len(), 3);
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..6 {
            let tx = tx.clone();
            workers.next().spawn(async move {
                let outer = Workers::index();
                // A task spawned from a worker's task runs on that worker.
                let inner = tokio::spawn(async { Workers::index() }).await.unwrap();
                tx.send((outer, inner)).unwrap();
            });
        }
        drop(tx);
        let mut seen: Vec<(usize, usize)> = rx.iter().collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![(0, 0), (0, 0), (1, 1), (1, 1), (2, 2), (2, 2)]);
        assert_eq!(Workers::index(), 0);
    }

    #[tokio::test]
    async fn stop_ends_every_thread_even_with_tasks_pending() {
        let workers = Workers::start(NonZeroUsize::new(2).unwrap()).unwrap();
        workers.next().spawn(std::future::pending::<()>());
        workers.next().spawn(std::future::pending::<()>());
        assert!(workers.stop().await, "every worker thread ended");
        assert!(
            !workers.stop().await,
            "a second stop has nothing to wait for"
        );
    }
}
