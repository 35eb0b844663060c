//! Where log lines go: a shared buffer that a background thread writes out in large
//! pieces.
//!
//! A request thread appends its line under a short lock and goes on; it wakes the writer
//! only when the buffer went from empty to not (the writer was idle) or passed
//! [`FLUSH_BYTES`]. The writer then collects lines for at most [`MAX_DELAY`] before one
//! `write(2)`. A busy server thus writes ~130 lines per system call and wakes the writer a
//! few hundred times a second instead of once per line, and a quiet one still shows each
//! line within a few milliseconds. Nothing is dropped: past [`MAX_BYTES`] queued, writers
//! of lines wait for the buffer to drain.

use std::{
    io::Write,
    sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError},
    thread::JoinHandle,
    time::Duration,
};

/// Queued bytes that make the writer write at once.
const FLUSH_BYTES: usize = 32 * 1024;
/// Queued bytes past which a line waits for the writer (back-pressure, not loss).
const MAX_BYTES: usize = 8 * 1024 * 1024;
/// The longest a line waits in the buffer while the writer collects more.
const MAX_DELAY: Duration = Duration::from_millis(5);

#[derive(Debug, Default, PartialEq)]
enum Writer {
    /// Writing, or about to look at the buffer: no need to wake it.
    #[default]
    Busy,
    /// Waiting for a first line.
    Idle,
    /// Has lines, waiting up to `MAX_DELAY` for more.
    Collecting,
}

#[derive(Debug, Default)]
struct State {
    queued: Vec<u8>,
    writer: Writer,
    waiting_producers: usize,
    closed: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer.
    work: Condvar,
    /// Wakes lines waiting for room.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding this lock leaves only bytes behind: keep logging.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The producing side: cheap to clone, one per logging layer.
#[derive(Clone, Debug)]
pub struct LineSink {
    shared: Arc<Shared>,
}

impl LineSink {
    /// Starts the writer thread, writing to `out`. Dropping the guard writes what is still
    /// queued and stops the thread.
    pub fn spawn<W: Write + Send + 'static>(out: W, thread_name: &str) -> std::io::Result<(LineSink, SinkGuard)> {
        let shared = Arc::new(Shared::default());
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new().name(thread_name.to_owned()).spawn(move || write_out(&shared, out))?
        };
        Ok((LineSink { shared: shared.clone() }, SinkGuard { shared, writer: Some(writer) }))
    }

    /// Queues one whole line (the caller ends it with `\n`).
    pub fn push(&self, line: &[u8]) {
        let mut state = self.shared.lock();
        while state.queued.len() >= MAX_BYTES && !state.closed {
            state.waiting_producers += 1;
            self.wake_writer(&mut state);
            state = self.shared.room.wait(state).unwrap_or_else(PoisonError::into_inner);
            state.waiting_producers -= 1;
        }
        if state.closed {
            drop(state);
            // Late lines (after the guard is gone) are written directly.
            let _ = std::io::stdout().lock().write_all(line);
            return;
        }
        state.queued.extend_from_slice(line);
        let wake = match state.writer {
            Writer::Idle => true,
            Writer::Collecting => state.queued.len() >= FLUSH_BYTES,
            Writer::Busy => false,
        };
        if wake {
            self.wake_writer(&mut state);
        }
    }

    fn wake_writer(&self, state: &mut State) {
        if state.writer != Writer::Busy {
            state.writer = Writer::Busy;
            self.shared.work.notify_one();
        }
    }
}

/// Keeps the writer thread; dropping it writes every queued line and joins the thread.
#[derive(Debug)]
pub struct SinkGuard {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for SinkGuard {
    fn drop(&mut self) {
        {
            let mut state = self.shared.lock();
            state.closed = true;
            state.writer = Writer::Busy;
        }
        self.shared.work.notify_one();
        self.shared.room.notify_all();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn write_out<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::with_capacity(2 * FLUSH_BYTES);
    loop {
        let closed;
        {
            let mut state = shared.lock();
            loop {
                if state.closed || state.queued.len() >= FLUSH_BYTES {
                    break;
                }
                if state.queued.is_empty() {
                    state.writer = Writer::Idle;
                    state = shared.work.wait(state).unwrap_or_else(PoisonError::into_inner);
                    continue;
                }
                state.writer = Writer::Collecting;
                let (next, waited) = shared.work.wait_timeout(state, MAX_DELAY).unwrap_or_else(PoisonError::into_inner);
                state = next;
                if waited.timed_out() {
                    break;
                }
            }
            state.writer = Writer::Busy;
            std::mem::swap(&mut state.queued, &mut batch);
            closed = state.closed;
            if state.waiting_producers > 0 {
                shared.room.notify_all();
            }
        }
        // A failing stdout (closed pipe) must not stop the service or block its threads:
        // the lines are dropped, the writer keeps draining.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if closed && shared.lock().queued.is_empty() {
            return;
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A `Write` that keeps what it is given and counts the calls.
    #[derive(Clone, Default)]
    pub(in crate::telemetry) struct Memory(pub(in crate::telemetry) Arc<Mutex<(Vec<u8>, usize)>>);

    impl Write for Memory {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let mut inner = self.0.lock().unwrap();
            inner.0.extend_from_slice(buf);
            inner.1 += 1;
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_whole_and_in_each_threads_order() {
        let memory = Memory::default();
        let (sink, guard) = LineSink::spawn(memory.clone(), "test-log").unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..5_000 {
                        sink.push(format!("{t} {i}\n").as_bytes());
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        drop(guard);
        let (bytes, writes) = memory.0.lock().unwrap().clone();
        let text = String::from_utf8(bytes).unwrap();
        let mut next = [0; 4];
        for line in text.lines() {
            let (t, i) = line.split_once(' ').unwrap();
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "thread {t}'s lines out of order");
            next[t] += 1;
        }
        assert_eq!(next, [5_000; 4], "every line arrives");
        assert!(writes < 20_000 / 10, "lines are written in batches ({writes} writes for 20,000 lines)");
    }

    #[test]
    fn a_lone_line_is_written_without_waiting_for_more() {
        let memory = Memory::default();
        let (sink, _guard) = LineSink::spawn(memory.clone(), "test-log").unwrap();
        sink.push(b"one\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while memory.0.lock().unwrap().0.is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line never reached the writer");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(memory.0.lock().unwrap().0, b"one\n");
    }
}
