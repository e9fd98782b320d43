//! Log lines gathered per thread and written to standard error when the
//! thread goes idle.
//!
//! The trade-off: a background writer thread (what keyhole used before)
//! keeps write(2) off the request path, but every line then crosses
//! threads, and at low load every request wakes the writer (a futex call,
//! a context switch, a write): measured, that cost more than formatting
//! the line. Here a runtime thread (a worker, or the main thread) appends
//! each line to a buffer of its own and writes the buffer in one call when
//! its runtime is about to park ([`flush_this_thread`], installed with
//! tokio's `on_thread_park`), when the buffer reaches [`BATCH_BYTES`], or
//! when its oldest line is [`BATCH_AGE`] old. A burst of requests on one
//! worker costs one write; a lone request costs one write, on its own
//! thread. What is given up: lines of different threads reach the output
//! in the order their batches are written, not strictly by time (each
//! line carries its own time), and a write to a full pipe blocks the
//! thread that writes, as the writer thread's full queue blocked before.
//!
//! Threads that never opted in ([`batch_this_thread`]) write each line at
//! once. Every write holds the standard error lock, so lines of different
//! threads never interleave.

use std::cell::RefCell;
use std::io::{self, Write};
use std::time::{Duration, Instant};

use tracing_subscriber::fmt::MakeWriter;

/// Bytes a thread gathers before it writes them without waiting to go
/// idle: about 400 access-log lines, so a busy worker writes a few times
/// per thousand requests, and the memory stays small per thread.
pub const BATCH_BYTES: usize = 64 * 1024;

/// Longest a line waits for its thread to go idle, checked when the
/// thread logs again; long enough to gather a busy worker's lines, short
/// enough that a tail of the log looks live.
pub const BATCH_AGE: Duration = Duration::from_millis(100);

/// One thread's lines not yet written.
struct Batch {
    /// Whether this thread batches (see [`batch_this_thread`]).
    on: bool,
    bytes: Vec<u8>,
    /// When the oldest line in `bytes` was added.
    since: Option<Instant>,
    /// Where lines go: [`write_out`], but in tests.
    out: fn(&[u8]),
}

thread_local! {
    static BATCH: RefCell<Batch> = const {
        RefCell::new(Batch { on: false, bytes: Vec::new(), since: None, out: write_out })
    };
}

/// Writes `bytes` to standard error under its lock, so that no other
/// thread's line lands inside them. Errors are dropped: there is nowhere
/// left to report them.
fn write_out(bytes: &[u8]) {
    if !bytes.is_empty() {
        let _ = io::stderr().lock().write_all(bytes);
    }
}

/// Makes the calling thread gather its lines until [`flush_this_thread`];
/// call it only on a thread that calls that when idle and before it ends.
pub fn batch_this_thread() {
    BATCH.with(|b| b.borrow_mut().on = true);
}

/// Writes the calling thread's gathered lines, if any.
pub fn flush_this_thread() {
    let _ = BATCH.try_with(|b| {
        if let Ok(mut b) = b.try_borrow_mut() {
            b.flush();
        }
    });
}

// === impl Batch ===

impl Batch {
    fn flush(&mut self) {
        (self.out)(&self.bytes);
        self.bytes.clear();
        self.since = None;
    }
}

impl Drop for Batch {
    /// A thread that ends writes what it gathered.
    fn drop(&mut self) {
        self.flush();
    }
}

/// The [`MakeWriter`] of keyhole's subscriber: standard error, batched on
/// the threads that asked for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stderr;

/// One event's writer (see [`Stderr`]).
#[derive(Debug)]
pub struct Line;

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line
    }
}

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = BATCH
            .try_with(|b| {
                let Ok(mut b) = b.try_borrow_mut() else {
                    return false;
                };
                if !b.on {
                    (b.out)(buf);
                    return true;
                }
                let now = Instant::now();
                b.bytes.extend_from_slice(buf);
                let since = *b.since.get_or_insert(now);
                if b.bytes.len() >= BATCH_BYTES || now.duration_since(since) >= BATCH_AGE {
                    b.flush();
                }
                true
            })
            .unwrap_or(false);
        if !written {
            write_out(buf);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::cell::Cell;

    thread_local! {
        static WRITTEN: Cell<usize> = const { Cell::new(0) };
    }

    /// Counts instead of writing to standard error.
    fn count_output() {
        BATCH.with(|b| b.borrow_mut().out = |bytes| WRITTEN.set(WRITTEN.get() + bytes.len()));
    }

    fn gathered() -> usize {
        BATCH.with(|b| b.borrow().bytes.len())
    }

    #[test]
    fn a_batching_thread_gathers_lines_until_flushed() {
        std::thread::spawn(|| {
            count_output();
            batch_this_thread();
            Line.write_all(b"one\n").unwrap();
            Line.write_all(b"two\n").unwrap();
            assert_eq!((gathered(), WRITTEN.get()), (8, 0));
            flush_this_thread();
            assert_eq!((gathered(), WRITTEN.get()), (0, 8));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_full_batch_is_written_without_waiting_for_idle() {
        std::thread::spawn(|| {
            count_output();
            batch_this_thread();
            let line = [b'x'; 1000];
            let lines = BATCH_BYTES / line.len() + 1;
            for _ in 0..lines {
                Line.write_all(&line).unwrap();
                assert!(gathered() < BATCH_BYTES);
            }
            assert_eq!(WRITTEN.get(), lines * line.len());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn other_threads_write_at_once() {
        std::thread::spawn(|| {
            count_output();
            Line.write_all(b"at once\n").unwrap();
            assert_eq!((gathered(), WRITTEN.get()), (0, 8));
        })
        .join()
        .unwrap();
    }
}
