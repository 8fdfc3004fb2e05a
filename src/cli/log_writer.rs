//! Where `ringback serve` writes its log: a buffer that a background thread
//! writes to stderr every few milliseconds, instead of one `write(2)` per
//! line on the thread that logged it.
//!
//! Why: the server logs two lines per event at the default level (the
//! event accepted, its run finished). Written straight to stderr, which
//! Rust does not buffer, that was a system call per line on the request
//! and run threads: ≈3% of the server's CPU when ingesting at full load
//! (perf, `cargo bench --bench load -- --case ingest --perf DIR`). Batched,
//! a few hundred lines share one write.
//!
//! What it keeps: lines leave in the order they were logged; at most
//! [`FLUSH_EVERY`] of them wait in memory; everything is written before the
//! process exits on its own (the guard from [`start`]) and before a panic's
//! message; a full buffer ([`WRITE_INLINE_AT`]) is written by the logging
//! thread itself, so a stderr that blocks (a full pipe) slows the server
//! down rather than growing the buffer. What it gives up: the lines of the
//! last few milliseconds before a `kill -9`. The events themselves are on
//! disk before they are answered; the log is not their record.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// How long a line waits in memory at most.
pub const FLUSH_EVERY: Duration = Duration::from_millis(20);
/// A buffer this full is written at once by the thread that filled it.
pub const WRITE_INLINE_AT: usize = 1 << 20;

struct Shared {
    /// Lines logged and not yet written.
    pending: Mutex<Vec<u8>>,
    /// Where batches go (stderr), locked while writing and taken before
    /// `pending` is released: two writers never swap their batches.
    output: Mutex<Box<dyn Write + Send>>,
}

impl Shared {
    /// Write out what is pending.
    fn flush(&self) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if pending.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut *pending);
        let mut output = self.output.lock().unwrap_or_else(|e| e.into_inner());
        drop(pending);
        // Nothing to do about a failed write to stderr but go on.
        let _ = output.write_all(&batch);
        let _ = output.flush();
    }

    fn append(&self, line: &[u8]) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(line);
        if pending.len() >= WRITE_INLINE_AT {
            drop(pending);
            self.flush();
        }
    }
}

/// The one buffer of the process (logging is process-wide, like tracing's
/// subscriber).
static SHARED: OnceLock<Shared> = OnceLock::new();

/// Writes out what is pending when dropped.
pub struct FlushOnDrop(());

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        flush();
    }
}

/// Start the buffer and its writer thread, and make panics write it out
/// before their message. Returns the writer for tracing and a guard that
/// writes out the rest when the process is done.
pub fn start() -> (BufferedStderr, FlushOnDrop) {
    let mut started = false;
    let shared = SHARED.get_or_init(|| {
        started = true;
        Shared {
            pending: Mutex::new(Vec::with_capacity(64 * 1024)),
            output: Mutex::new(Box::new(std::io::stderr())),
        }
    });
    if started {
        let spawned = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(|| loop {
                std::thread::sleep(FLUSH_EVERY);
                flush();
            });
        if let Err(e) = spawned {
            eprintln!(
                "cannot start the log writer thread ({e}); lines are written when the buffer fills"
            );
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            flush();
            previous(info);
        }));
    }
    (BufferedStderr { shared }, FlushOnDrop(()))
}

/// Write out the pending lines now (before printing to stderr directly).
pub fn flush() {
    if let Some(shared) = SHARED.get() {
        shared.flush();
    }
}

/// tracing's [`MakeWriter`](tracing_subscriber::fmt::MakeWriter) for the
/// buffer. tracing formats each event whole and writes it with one
/// `write_all`, so a line is never split between batches.
#[derive(Clone, Copy)]
pub struct BufferedStderr {
    shared: &'static Shared,
}

/// One event's writer.
pub struct LineSink<'a>(&'a Shared);

impl Write for LineSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.append(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BufferedStderr {
    type Writer = LineSink<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineSink(self.shared)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// A writer into a vector the test keeps.
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl Write for Collect {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn shared() -> (Shared, Arc<Mutex<Vec<u8>>>) {
        let out = Arc::new(Mutex::new(Vec::new()));
        let s = Shared {
            pending: Mutex::new(Vec::new()),
            output: Mutex::new(Box::new(Collect(Arc::clone(&out)))),
        };
        (s, out)
    }

    #[test]
    fn lines_wait_in_the_buffer_until_flushed() {
        let (s, out) = shared();
        LineSink(&s).write_all(b"one\n").unwrap();
        LineSink(&s).write_all(b"two\n").unwrap();
        assert!(out.lock().unwrap().is_empty(), "nothing written yet");
        s.flush();
        assert_eq!(&*out.lock().unwrap(), b"one\ntwo\n");
        assert!(s.pending.lock().unwrap().is_empty());
    }

    #[test]
    fn a_full_buffer_is_written_by_the_thread_that_filled_it() {
        let (s, out) = shared();
        let line = vec![b'x'; 1000];
        let mut sink = LineSink(&s);
        let mut written = 0;
        while written < WRITE_INLINE_AT - line.len() {
            sink.write_all(&line).unwrap();
            written += line.len();
        }
        assert!(out.lock().unwrap().is_empty(), "below the limit, kept");
        sink.write_all(&line).unwrap();
        assert_eq!(
            out.lock().unwrap().len(),
            written + line.len(),
            "the line that filled the buffer wrote it out"
        );
        assert!(s.pending.lock().unwrap().is_empty());
    }
}
