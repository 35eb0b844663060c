//! Logging: JSON lines on stdout, one object per event, with a level that can be changed
//! while the service runs.

use tracing_subscriber::{EnvFilter, Registry, layer::SubscriberExt, reload, util::SubscriberInitExt};

use crate::config::LogLevel;

/// Changes the log level of the running process.
#[derive(Clone)]
pub struct LogLevelHandle {
    handle: Option<reload::Handle<EnvFilter, Registry>>,
    current: std::sync::Arc<std::sync::Mutex<LogLevel>>,
}

impl std::fmt::Debug for LogLevelHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogLevelHandle").field("current", &self.get()).finish()
    }
}

impl LogLevelHandle {
    /// A handle that only remembers the level, for processes that installed no subscriber
    /// (tests build many apps in one process; only `main` owns the global logger).
    pub fn detached(level: LogLevel) -> Self {
        Self { handle: None, current: std::sync::Arc::new(std::sync::Mutex::new(level)) }
    }

    pub fn get(&self) -> LogLevel {
        self.current.lock().map_or(LogLevel::Info, |level| *level)
    }

    /// Applies `level` at once to every later event.
    pub fn set(&self, level: LogLevel) -> Result<(), String> {
        if let Some(handle) = &self.handle {
            handle.reload(filter_for(level)).map_err(|e| e.to_string())?;
        }
        if let Ok(mut current) = self.current.lock() {
            *current = level;
        }
        Ok(())
    }
}

/// Keeps the log writer thread alive; dropping it flushes what is still queued.
pub type LogGuard = tracing_appender::non_blocking::WorkerGuard;

/// Installs the global JSON logger. Call once, from `main`, and keep the guard until exit.
///
/// Lines are formatted on the request threads and written by one background thread
/// through a 64 KiB buffer, flushed whenever the queue runs empty: a request never waits
/// on a `write(2)` to stdout, and a busy server writes many lines per system call. When
/// the queue (128k lines) is full, logging applies back-pressure rather than drop lines.
pub fn init(level: LogLevel) -> (LogLevelHandle, LogGuard) {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("killkrill-log")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let (filter, handle) = reload::Layer::new(filter_for(level));
    let format = tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .with_writer(writer);
    // Ignore a second init (e.g. from a test harness): the first logger stays.
    let _ = tracing_subscriber::registry().with(filter).with(format).try_init();
    let handle = LogLevelHandle { handle: Some(handle), current: std::sync::Arc::new(std::sync::Mutex::new(level)) };
    (handle, guard)
}

fn filter_for(level: LogLevel) -> EnvFilter {
    let ours = match level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warning => "warn",
        LogLevel::Error => "error",
    };
    // Dependencies stay at warn unless we are debugging: their info chatter is not ours.
    let deps = if level == LogLevel::Debug { "info" } else { "warn" };
    EnvFilter::new(format!("{deps},killkrill={ours}"))
}
