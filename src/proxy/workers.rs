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
use std::thread::JoinHandle;

use tokio::runtime::Handle;
use tokio::sync::watch;

thread_local! {
    /// Which worker this thread is (0 on every thread that is not one).
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The worker threads, each running a current-thread runtime until
/// [`Workers::stop`].
///
/// Invariant: `handles.len() == threads.len() >= 1`, and the runtime of
/// `handles[i]` runs on the thread whose [`Workers::index`] is `i`.
pub struct Workers {
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<()>>,
    /// Round-robin position of the next connection.
    next: AtomicUsize,
    /// Set once to end every worker's runtime.
    stop: watch::Sender<bool>,
}

// === impl Workers ===

impl Workers {
    /// Starts `count` worker threads named `keyhole-worker-N`.
    pub fn start(count: NonZeroUsize) -> io::Result<Workers> {
        let (stop, _) = watch::channel(false);
        let mut workers = Workers {
            handles: Vec::with_capacity(count.get()),
            threads: Vec::with_capacity(count.get()),
            next: AtomicUsize::new(0),
            stop,
        };
        for index in 0..count.get() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            workers.handles.push(runtime.handle().clone());
            let mut stopped = workers.stop.subscribe();
            let thread = std::thread::Builder::new()
                .name(format!("keyhole-worker-{index}"))
                .spawn(move || {
                    INDEX.with(|i| i.set(index));
                    runtime.block_on(async move {
                        let _ = stopped.wait_for(|stop| *stop).await;
                    });
                    // Dropping the runtime cancels what is left on it
                    // (after `Proxy::serve`'s grace period, nothing is).
                    drop(runtime);
                });
            match thread {
                Ok(t) => workers.threads.push(t),
                Err(e) => {
                    workers.handles.pop();
                    workers.stop();
                    return Err(e);
                }
            }
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

    /// Tells every worker's runtime to end. Tasks still on them are
    /// dropped: call this after draining.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

impl Drop for Workers {
    /// Stops the workers and waits for their threads.
    fn drop(&mut self) {
        self.stop();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
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
        drop(workers);
        assert_eq!(Workers::index(), 0);
    }

    #[test]
    fn stop_ends_every_thread_even_with_tasks_pending() {
        let workers = Workers::start(NonZeroUsize::new(2).unwrap()).unwrap();
        workers.next().spawn(std::future::pending::<()>());
        drop(workers); // joins both threads: would hang if one kept running
    }
}
