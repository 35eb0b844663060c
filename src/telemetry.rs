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

mod json;
mod sink;

pub use json::{JsonLines, format_event};
pub use sink::{LineSink, SinkGuard};

/// Keeps the log writer thread alive; dropping it writes what is still queued.
pub type LogGuard = Option<SinkGuard>;

/// Installs the global JSON logger. Call once, from `main`, and keep the guard until exit.
///
/// Lines are formatted on the request threads and written by one background thread in
/// large pieces (see [`sink`]): a request never waits on a `write(2)` to stdout, and a busy
/// server writes many lines per system call. When the queue is full, logging applies
/// back-pressure rather than drop lines.
pub fn init(level: LogLevel) -> (LogLevelHandle, LogGuard) {
    let (filter, handle) = reload::Layer::new(filter_for(level));
    let handle = LogLevelHandle { handle: Some(handle), current: std::sync::Arc::new(std::sync::Mutex::new(level)) };
    let (sink, guard) = match LineSink::spawn(std::io::stdout(), "killkrill-log") {
        Ok(started) => started,
        Err(err) => {
            eprintln!("killkrill: cannot start the log writer thread: {err}");
            return (handle, None);
        }
    };
    // Ignore a second init (e.g. from a test harness): the first logger stays.
    let _ = tracing_subscriber::registry().with(filter).with(JsonLines::new(sink)).try_init();
    (handle, Some(guard))
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
