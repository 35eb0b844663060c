//! One typed configuration, read from flags, then the environment, then `.env`.
//!
//! Every variable keeps the name the Flask service used (`FLASK_PORT`, ...), so existing
//! deployment manifests keep working. Secrets are wrapped in [`SecretString`] so that no
//! `Debug` print can leak them, and the database URL is only ever shown redacted.

use std::{net::IpAddr, time::Duration};

use clap::{ArgAction, Parser, ValueEnum, builder::BoolishValueParser};
use secrecy::{ExposeSecret, SecretString};

mod cidr;
mod command;
mod db_url;

pub use self::{
    cidr::Cidr,
    command::{Command, CreateUserArgs, HealthcheckArgs},
    db_url::{Backend, DbUrl},
};

/// Default `JWT_SECRET` values shipped in examples; production refuses them.
const KNOWN_DEFAULT_SECRETS: &[&str] = &[
    "your-secret-key",
    "your-secret-key-here",
    "change-me",
    "changeme",
    "secret",
    "dev-secret-change-me-dev-secret-change-me",
];

/// The smallest `JWT_SECRET` accepted in production, in bytes.
/// The default in-flight body budget, in bodies of the largest size: room for a few
/// large batches being decoded and stored at once (more rarely help, as they wait on the
/// same database), with memory held by bodies bounded at 64 MiB under the default
/// 16 MiB limit.
const INFLIGHT_BODIES_BY_DEFAULT: usize = 4;

pub const MIN_PRODUCTION_SECRET_BYTES: usize = 32;

/// Secret used in development and testing when `JWT_SECRET` is unset.
const DEVELOPMENT_SECRET: &str = "dev-secret-change-me-dev-secret-change-me";

/// Where the service runs; picks defaults and how strict start-up checks are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Environment {
    Development,
    Testing,
    Production,
}

impl Environment {
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Testing => "testing",
            Environment::Production => "production",
        }
    }
}

/// Log verbosity, as `LOG_LEVEL` spells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum LogLevel {
    Debug,
    Info,
    #[value(alias = "WARN")]
    Warning,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warning => "WARNING",
            LogLevel::Error => "ERROR",
        }
    }

    /// Parses the spellings accepted by `LOG_LEVEL` (case-insensitive).
    pub fn parse(value: &str) -> Option<Self> {
        <Self as ValueEnum>::from_str(value, true).ok()
    }
}

/// The most `DB_POOL_SIZE` (and `DB_MAX_OVERFLOW`) may be: no database serves more.
const MAX_POOL: usize = 10_000;
/// The most runtime worker threads `WORKERS` may ask for.
const MAX_WORKERS: usize = 1_024;

/// Reads the first `.env` found in the working directory or above it into the
/// environment, without overriding what the environment already sets. A line that does
/// not parse stops start-up, naming its number (not its text, which may hold a secret),
/// and nothing of the file is applied: skipping it would drop settings unseen. The file
/// is read and parsed once; call this before any other thread starts (it sets the
/// process's environment).
pub fn load_dotenv() -> Result<(), ConfigError> {
    let Ok(mut dir) = std::env::current_dir() else { return Ok(()) };
    let path = loop {
        let candidate = dir.join(".env");
        if candidate.is_file() {
            break candidate;
        }
        if !dir.pop() {
            return Ok(());
        }
    };
    let shown = path.display();
    let unreadable = |err: &dyn std::fmt::Display| ConfigError::new(".env", format!("{shown}: {err}"));
    let text = std::fs::read_to_string(&path).map_err(|err| unreadable(&err))?;
    let mut settings = Vec::new();
    for item in dotenvy::from_read_iter(text.as_bytes()) {
        match item {
            Ok(setting) => settings.push(setting),
            Err(dotenvy::Error::LineParse(line, _)) => {
                let first = line.lines().next().unwrap_or_default().trim();
                let number = text.lines().position(|l| l.trim() == first).map_or(0, |n| n + 1);
                return Err(ConfigError::new(
                    ".env",
                    format!("{shown}: line {number} is not NAME=value; nothing of the file was applied"),
                ));
            }
            Err(err) => return Err(unreadable(&err)),
        }
    }
    for (name, value) in settings {
        if std::env::var_os(&name).is_none() {
            // SAFETY: `main` calls this first, before the runtime or any other thread
            // exists, so nothing reads the environment concurrently.
            unsafe { std::env::set_var(name, value) };
        }
    }
    Ok(())
}

/// The command line. Each flag also reads its environment variable; flags win.
#[derive(Parser)]
#[command(
    name = "killkrill",
    version,
    about = "KillKrill backend: centralized logs and metrics.",
    allow_negative_numbers = true,
    after_help = "Every option can also be set in the environment or in a .env file in the \
                  working directory; command-line flags win over both."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Deployment environment: picks defaults and start-up checks.
    #[arg(long = "env", env = "FLASK_ENV", value_enum, default_value = "development")]
    pub environment: Environment,

    /// Debug mode: debug-level logs unless -v/-vv/-vvv says otherwise.
    #[arg(long, env = "FLASK_DEBUG", value_parser = BoolishValueParser::new(), action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true")]
    pub debug: bool,

    /// Address the HTTP and gRPC servers bind to [default: 127.0.0.1 in development, where
    /// the well-known default admin exists; 0.0.0.0 otherwise].
    #[arg(long, env = "FLASK_HOST")]
    pub host: Option<IpAddr>,

    /// Port of the HTTP server (0 picks a free one).
    #[arg(long, env = "FLASK_PORT", default_value_t = 5000)]
    pub port: u16,

    /// Runtime worker threads; 0 means one per CPU.
    #[arg(long, env = "WORKERS", default_value_t = 4)]
    pub workers: usize,

    /// Serve HTTP only, without the gRPC server.
    #[arg(long, conflicts_with = "grpc_only")]
    pub no_grpc: bool,

    /// Serve gRPC only, nothing on the HTTP port.
    #[arg(long)]
    pub grpc_only: bool,

    /// Log verbosity: -v warnings, -vv info (default), -vvv debug. Overrides LOG_LEVEL.
    #[arg(short = 'v', action = ArgAction::Count)]
    pub verbose: u8,

    /// Log level when no -v flag is given.
    #[arg(long, env = "LOG_LEVEL", value_enum, ignore_case = true, default_value = "INFO")]
    pub log_level: LogLevel,

    /// Database URL (postgresql://, mysql://, sqlite:///file.db, sqlite:///:memory:).
    /// Unset in development: a SQLite file `killkrill.db` in the working directory.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Pooled database connections kept for steady load.
    #[arg(long, env = "DB_POOL_SIZE", default_value_t = 20)]
    pub db_pool_size: u32,

    /// Extra connections allowed above DB_POOL_SIZE under bursts.
    #[arg(long, env = "DB_MAX_OVERFLOW", default_value_t = 10)]
    pub db_max_overflow: u32,

    /// Seconds each retry of an unreachable database is logged; then once a minute (the
    /// server never gives up; commands such as create-user do, after this long).
    #[arg(long, env = "DB_CONNECT_RETRY_SECONDS", default_value_t = 30)]
    pub db_connect_retry_seconds: u64,

    /// Secret that signs access and refresh tokens (HS256). Required in production, >= 32 bytes.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Previous signing secret, still accepted for verification during a rotation.
    #[arg(long, env = "JWT_SECRET_PREVIOUS", hide_env_values = true)]
    pub jwt_secret_previous: Option<String>,

    /// Lifetime of access tokens, in hours.
    #[arg(long, env = "JWT_EXPIRY_HOURS", default_value_t = 24)]
    pub jwt_expiry_hours: u32,

    /// Salt Flask-Security-Too used for password hashes carried over from it.
    #[arg(long, env = "SECURITY_PASSWORD_SALT", hide_env_values = true)]
    pub security_password_salt: Option<String>,

    /// Longest lifetime of an API key, in days.
    #[arg(long, env = "API_KEY_MAX_DAYS", default_value_t = 365)]
    pub api_key_max_days: u32,

    /// License key (PENG-XXXX-XXXX-XXXX-XXXX-XXXX); unset runs the community tier.
    #[arg(long, env = "LICENSE_KEY", hide_env_values = true)]
    pub license_key: Option<String>,

    /// License server base URL.
    #[arg(long, env = "LICENSE_SERVER_URL", default_value = "https://license.penguintech.io")]
    pub license_server_url: String,

    /// Product name sent to the license server.
    #[arg(long, env = "PRODUCT_NAME", default_value = "killkrill")]
    pub product_name: String,

    /// Record the request-duration histogram (the request counter is always kept).
    #[arg(long, env = "ENABLE_DETAILED_METRICS", value_parser = BoolishValueParser::new(), action = ArgAction::Set, default_value = "true")]
    pub enable_detailed_metrics: bool,

    /// Port of the gRPC server.
    #[arg(long, env = "GRPC_PORT", default_value_t = 50051)]
    pub grpc_port: u16,

    /// Allowed CORS origins: `*`, or a comma-separated list of origins.
    #[arg(long, env = "CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Most bytes of request bodies (and their decompressed copies) held in memory at
    /// once; a body that does not fit is answered 503 with Retry-After. Default: 4 times
    /// MAX_BODY_BYTES. At least MAX_BODY_BYTES.
    #[arg(long, env = "MAX_INFLIGHT_BODY_BYTES")]
    pub max_inflight_body_bytes: Option<usize>,

    /// Longest a whole request may take, in seconds.
    #[arg(long, env = "REQUEST_TIMEOUT_SECONDS", default_value_t = 60)]
    pub request_timeout_seconds: u64,

    /// Longest a PromQL query of the Prometheus query API may run, in seconds (its
    /// `timeout` parameter may only shorten it).
    #[arg(long, env = "PROMQL_QUERY_TIMEOUT_SECONDS", default_value_t = 120)]
    pub promql_query_timeout_seconds: u64,

    /// Most samples one PromQL query may load or hold (Prometheus' `--query.max-samples`).
    #[arg(long, env = "PROMQL_MAX_SAMPLES", default_value_t = 50_000_000)]
    pub promql_max_samples: usize,

    /// How long shutdown waits for in-flight requests, in seconds.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 25)]
    pub shutdown_grace_seconds: u64,

    /// TLS certificate chain (PEM).
    #[arg(long, env = "TLS_CERT_FILE")]
    pub tls_cert_file: Option<String>,

    /// TLS private key (PEM).
    #[arg(long, env = "TLS_KEY_FILE")]
    pub tls_key_file: Option<String>,

    /// CA bundle (PEM) that client certificates must chain to (enables mTLS).
    #[arg(long, env = "TLS_CLIENT_CA_FILE")]
    pub tls_client_ca_file: Option<String>,

    /// Comma-separated CIDRs of proxies whose X-Client-Cert / X-Forwarded-For are believed.
    #[arg(long, env = "TRUSTED_PROXIES", default_value = "")]
    pub trusted_proxies: String,

    /// Days log lines are kept (0 keeps them forever), unless their source says otherwise.
    #[arg(long, env = "LOG_RETENTION_DAYS", default_value_t = 30)]
    pub log_retention_days: u32,

    /// Days metric samples are kept (0 keeps them forever), unless their source says otherwise.
    #[arg(long, env = "METRIC_RETENTION_DAYS", default_value_t = 90)]
    pub metric_retention_days: u32,

    /// Seconds between two retention sweeps (the first runs at start-up).
    #[arg(long, env = "RETENTION_INTERVAL_SECONDS", default_value_t = 300)]
    pub retention_interval_seconds: u64,
}

/// A start-up configuration error: names the variable and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self { variable, problem: problem.into() }
    }
}

/// Which listeners run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    Both,
    HttpOnly,
    GrpcOnly,
}

/// CORS policy parsed from `CORS_ORIGINS`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorsOrigins {
    Any,
    List(Vec<String>),
}

/// The most days `LOG_RETENTION_DAYS`, `METRIC_RETENTION_DAYS` and a source's
/// `retention_days` may say: a century (0 keeps data forever).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// How long data is kept where its source sets nothing: days of log lines and of metric
/// samples, 0 for forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    pub log_days: u32,
    pub metric_days: u32,
}

/// The validated configuration the whole program runs on.
#[derive(Clone, Debug)]
pub struct Config {
    pub environment: Environment,
    pub debug: bool,
    pub host: IpAddr,
    pub port: u16,
    pub workers: usize,
    pub run_mode: RunMode,
    pub log_level: LogLevel,
    pub database_url: DbUrl,
    pub db_pool_size: u32,
    pub db_max_overflow: u32,
    pub db_connect_retry: Duration,
    pub jwt_secret: SecretString,
    pub jwt_secret_previous: Option<SecretString>,
    pub jwt_expiry_hours: u32,
    pub security_password_salt: Option<SecretString>,
    pub api_key_max_days: u32,
    pub license_key: Option<SecretString>,
    pub license_server_url: String,
    pub product_name: String,
    pub enable_detailed_metrics: bool,
    pub grpc_port: u16,
    pub cors_origins: CorsOrigins,
    pub max_body_bytes: usize,
    pub max_inflight_body_bytes: usize,
    pub request_timeout: Duration,
    pub promql_query_timeout: Duration,
    pub promql_max_samples: usize,
    pub shutdown_grace: Duration,
    pub tls_cert_file: Option<String>,
    pub tls_key_file: Option<String>,
    pub tls_client_ca_file: Option<String>,
    pub trusted_proxies: Vec<Cidr>,
    pub retention: Retention,
    /// Time between two retention sweeps, at least a second.
    pub retention_interval: Duration,
}

impl Config {
    /// Validates the parsed command line into a [`Config`].
    pub fn from_cli(cli: Cli) -> Result<Self, ConfigError> {
        let environment = cli.environment;
        let database_url = match cli.database_url.as_deref().map(str::trim) {
            Some(raw) if !raw.is_empty() => DbUrl::parse(raw)?,
            _ => match environment {
                Environment::Development => DbUrl::parse("sqlite:///killkrill.db")?,
                Environment::Testing => DbUrl::parse("sqlite:///:memory:")?,
                Environment::Production => {
                    return Err(ConfigError::new("DATABASE_URL", "must be set in production"));
                }
            },
        };
        let jwt_secret = jwt_secret(environment, cli.jwt_secret)?;
        let log_level = match cli.verbose {
            0 if cli.debug => LogLevel::Debug,
            0 => cli.log_level,
            1 => LogLevel::Warning,
            2 => LogLevel::Info,
            _ => LogLevel::Debug,
        };
        let run_mode = match (cli.no_grpc, cli.grpc_only) {
            (true, _) => RunMode::HttpOnly,
            (_, true) => RunMode::GrpcOnly,
            _ => RunMode::Both,
        };
        if cli.db_pool_size == 0 {
            return Err(ConfigError::new("DB_POOL_SIZE", "must be at least 1"));
        }
        // Upper bounds keep a typo from reserving memory for billions of slots or threads.
        for (variable, value, most) in [
            ("DB_POOL_SIZE", cli.db_pool_size as usize, MAX_POOL),
            ("DB_MAX_OVERFLOW", cli.db_max_overflow as usize, MAX_POOL),
            ("WORKERS", cli.workers, MAX_WORKERS),
        ] {
            if value > most {
                return Err(ConfigError::new(variable, format!("is {value}; at most {most}")));
            }
        }
        if cli.jwt_expiry_hours == 0 {
            return Err(ConfigError::new("JWT_EXPIRY_HOURS", "must be at least 1"));
        }
        // Every body the size limit lets in must fit in the budget when nothing else is held.
        let max_inflight_body_bytes =
            cli.max_inflight_body_bytes.unwrap_or(cli.max_body_bytes.saturating_mul(INFLIGHT_BODIES_BY_DEFAULT));
        if max_inflight_body_bytes < cli.max_body_bytes {
            return Err(ConfigError::new(
                "MAX_INFLIGHT_BODY_BYTES",
                format!("is {max_inflight_body_bytes}; at least MAX_BODY_BYTES ({})", cli.max_body_bytes),
            ));
        }
        if cli.request_timeout_seconds == 0 {
            return Err(ConfigError::new("REQUEST_TIMEOUT_SECONDS", "must be at least 1"));
        }
        if cli.retention_interval_seconds == 0 {
            return Err(ConfigError::new("RETENTION_INTERVAL_SECONDS", "must be at least 1"));
        }
        for (variable, days) in
            [("LOG_RETENTION_DAYS", cli.log_retention_days), ("METRIC_RETENTION_DAYS", cli.metric_retention_days)]
        {
            if days > MAX_RETENTION_DAYS {
                return Err(ConfigError::new(
                    variable,
                    format!("is {days}; at most {MAX_RETENTION_DAYS} (0 keeps data forever)"),
                ));
            }
        }
        if cli.promql_query_timeout_seconds == 0 {
            return Err(ConfigError::new("PROMQL_QUERY_TIMEOUT_SECONDS", "must be at least 1"));
        }
        if cli.promql_max_samples == 0 {
            return Err(ConfigError::new("PROMQL_MAX_SAMPLES", "must be at least 1"));
        }
        let workers =
            if cli.workers == 0 { std::thread::available_parallelism().map_or(1, usize::from) } else { cli.workers };
        Ok(Self {
            environment,
            debug: cli.debug,
            host: cli.host.unwrap_or(match environment {
                Environment::Development => IpAddr::from([127, 0, 0, 1]),
                Environment::Testing | Environment::Production => IpAddr::from([0, 0, 0, 0]),
            }),
            port: cli.port,
            workers,
            run_mode,
            log_level,
            database_url,
            db_pool_size: cli.db_pool_size,
            db_max_overflow: cli.db_max_overflow,
            db_connect_retry: Duration::from_secs(cli.db_connect_retry_seconds),
            jwt_secret,
            jwt_secret_previous: non_empty(cli.jwt_secret_previous).map(SecretString::from),
            jwt_expiry_hours: cli.jwt_expiry_hours,
            security_password_salt: non_empty(cli.security_password_salt).map(SecretString::from),
            api_key_max_days: cli.api_key_max_days,
            license_key: match non_empty(cli.license_key) {
                Some(key) => {
                    check_license_key_format(key.trim())?;
                    Some(SecretString::from(key.trim().to_owned()))
                }
                None => None,
            },
            license_server_url: cli.license_server_url,
            product_name: cli.product_name,
            enable_detailed_metrics: cli.enable_detailed_metrics,
            grpc_port: cli.grpc_port,
            cors_origins: parse_cors_origins(&cli.cors_origins)?,
            max_body_bytes: cli.max_body_bytes,
            max_inflight_body_bytes,
            request_timeout: Duration::from_secs(cli.request_timeout_seconds),
            promql_query_timeout: Duration::from_secs(cli.promql_query_timeout_seconds),
            promql_max_samples: cli.promql_max_samples,
            shutdown_grace: Duration::from_secs(cli.shutdown_grace_seconds),
            tls_cert_file: non_empty(cli.tls_cert_file),
            tls_key_file: non_empty(cli.tls_key_file),
            tls_client_ca_file: non_empty(cli.tls_client_ca_file),
            trusted_proxies: parse_trusted_proxies(&cli.trusted_proxies)?,
            retention: Retention { log_days: cli.log_retention_days, metric_days: cli.metric_retention_days },
            retention_interval: Duration::from_secs(cli.retention_interval_seconds),
        })
    }

    /// A configuration for tests and embedding: the testing defaults (`--env=testing`) on the
    /// given database.
    pub fn for_database(database_url: &str) -> Result<Self, ConfigError> {
        let cli = Cli::try_parse_from(["killkrill", "--env=testing"])
            .map_err(|e| ConfigError::new("FLASK_ENV", e.to_string()))?;
        let mut config = Self::from_cli(cli)?;
        config.database_url = DbUrl::parse(database_url)?;
        Ok(config)
    }

    /// Maximum connections of the pool: `DB_POOL_SIZE + DB_MAX_OVERFLOW`.
    pub fn max_db_connections(&self) -> u32 {
        self.db_pool_size.saturating_add(self.db_max_overflow)
    }
}

/// Prints a command-line error as one line that names the flag and its variable, and
/// returns the exit code (0 for `--help` / `--version`, 2 otherwise).
pub fn report_cli_error(err: clap::Error) -> std::process::ExitCode {
    use clap::{
        CommandFactory,
        error::{ContextKind, ContextValue, ErrorKind},
    };
    if matches!(err.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = err.print();
        return std::process::ExitCode::SUCCESS;
    }
    let arg = match err.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => Some(arg.clone()),
        _ => None,
    };
    let variable = arg.as_deref().and_then(|arg| {
        let long = arg.trim_start_matches('-').split([' ', '=', '<']).next()?.to_owned();
        let command = Cli::command();
        let found = command.get_arguments().find(|a| a.get_long() == Some(long.as_str()))?;
        found.get_env().map(|env| env.to_string_lossy().into_owned())
    });
    let first_line = err.render().to_string();
    let first_line = first_line.lines().next().unwrap_or("invalid command line").trim_start_matches("error: ");
    match variable {
        Some(variable) => {
            eprintln!("killkrill: configuration error: {variable} ({}): {first_line}", arg.unwrap_or_default())
        }
        None => eprintln!("killkrill: configuration error: {first_line} (see --help)"),
    }
    std::process::ExitCode::from(2)
}

fn jwt_secret(environment: Environment, raw: Option<String>) -> Result<SecretString, ConfigError> {
    let raw = non_empty(raw);
    if environment != Environment::Production {
        return Ok(SecretString::from(raw.unwrap_or_else(|| DEVELOPMENT_SECRET.to_owned())));
    }
    let Some(secret) = raw else {
        return Err(ConfigError::new("JWT_SECRET", "must be set in production"));
    };
    let secret = SecretString::from(secret);
    let exposed = secret.expose_secret();
    if KNOWN_DEFAULT_SECRETS.contains(&exposed) {
        return Err(ConfigError::new(
            "JWT_SECRET",
            "is a published default value; generate a random one (e.g. `openssl rand -hex 32`)",
        ));
    }
    if exposed.len() < MIN_PRODUCTION_SECRET_BYTES {
        return Err(ConfigError::new(
            "JWT_SECRET",
            format!("is {} bytes long; production needs at least {MIN_PRODUCTION_SECRET_BYTES}", exposed.len()),
        ));
    }
    Ok(secret)
}

fn parse_cors_origins(raw: &str) -> Result<CorsOrigins, ConfigError> {
    let origins = split_list(raw);
    if origins.is_empty() || origins.iter().any(|o| o == "*") {
        if origins.len() > 1 {
            return Err(ConfigError::new("CORS_ORIGINS", "`*` cannot be combined with a list of origins"));
        }
        return Ok(CorsOrigins::Any);
    }
    for origin in &origins {
        let parsed = url::Url::parse(origin)
            .map_err(|_| ConfigError::new("CORS_ORIGINS", format!("`{origin}` is not an origin URL")))?;
        let is_origin = matches!(parsed.scheme(), "http" | "https")
            && parsed.host_str().is_some()
            && parsed.path() == "/"
            && !origin.ends_with('/');
        if !is_origin {
            return Err(ConfigError::new(
                "CORS_ORIGINS",
                format!("`{origin}` is not an origin like https://app.example.com"),
            ));
        }
    }
    Ok(CorsOrigins::List(origins))
}

/// `TRUSTED_PROXIES`: empty, or a comma-separated list of networks, each written as its
/// network address (a list with an empty entry, or `10.1.2.3/8`, is more likely a typo
/// than what was meant: it is refused, not read as something else).
fn parse_trusted_proxies(raw: &str) -> Result<Vec<Cidr>, ConfigError> {
    let problem = |problem: String| ConfigError::new("TRUSTED_PROXIES", problem);
    if raw.trim().is_empty() {
        return Ok(Vec::new());
    }
    raw.split(',')
        .map(|entry| match entry.trim() {
            "" => Err(problem(format!("`{raw}` has an empty entry; list CIDRs separated by commas"))),
            cidr => Cidr::parse_network(cidr).map_err(problem),
        })
        .collect()
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// Checks that `LICENSE_KEY` looks like `PENG-XXXX-XXXX-XXXX-XXXX-XXXX` (upper-case hex
/// groups), without echoing the key.
pub fn check_license_key_format(key: &str) -> Result<(), ConfigError> {
    let groups: Vec<&str> = key.split('-').collect();
    let valid = groups.len() == 6
        && groups[0] == "PENG"
        && groups[1..]
            .iter()
            .all(|g| g.len() == 4 && g.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
    if valid {
        Ok(())
    } else {
        Err(ConfigError::new("LICENSE_KEY", "must look like PENG-XXXX-XXXX-XXXX-XXXX-XXXX (upper-case hex groups)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        let mut argv = vec!["killkrill"];
        argv.extend_from_slice(args);
        Config::from_cli(Cli::try_parse_from(argv).expect("flags parse"))
    }

    #[test]
    fn production_refuses_missing_short_and_default_secrets() {
        let base = ["--env=production", "--database-url=sqlite:///x.db"];
        let missing = parse(&base).unwrap_err();
        assert_eq!(missing.variable, "JWT_SECRET");
        let short = parse(&[&base[..], &["--jwt-secret=short"]].concat()).unwrap_err();
        assert!(short.problem.contains("at least 32"), "{short}");
        let default = parse(&[&base[..], &["--jwt-secret=your-secret-key-here"]].concat()).unwrap_err();
        assert!(default.problem.contains("default"), "{default}");
        let good = "--jwt-secret=0123456789abcdef0123456789abcdef";
        assert!(parse(&[&base[..], &[good]].concat()).is_ok());
    }

    #[test]
    fn production_requires_a_database_url() {
        let err = parse(&["--env=production", "--jwt-secret=0123456789abcdef0123456789abcdef"]).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
    }

    #[test]
    fn verbosity_flags_override_log_level() {
        assert_eq!(parse(&["--log-level=error"]).unwrap().log_level, LogLevel::Error);
        assert_eq!(parse(&["-v", "--log-level=error"]).unwrap().log_level, LogLevel::Warning);
        assert_eq!(parse(&["-vv"]).unwrap().log_level, LogLevel::Info);
        assert_eq!(parse(&["-vvv"]).unwrap().log_level, LogLevel::Debug);
        assert_eq!(parse(&["--debug"]).unwrap().log_level, LogLevel::Debug);
        assert_eq!(parse(&["--log-level=warn"]).unwrap().log_level, LogLevel::Warning);
    }

    #[test]
    fn cors_origins_accept_wildcard_or_origin_list() {
        assert_eq!(parse_cors_origins("*").unwrap(), CorsOrigins::Any);
        assert_eq!(
            parse_cors_origins("https://a.example, http://b.example:8080").unwrap(),
            CorsOrigins::List(vec!["https://a.example".into(), "http://b.example:8080".into()])
        );
        assert_eq!(parse_cors_origins("*,https://a.example").unwrap_err().variable, "CORS_ORIGINS");
        assert!(parse_cors_origins("https://a.example/path").is_err());
        assert!(parse_cors_origins("not a url").is_err());
    }

    #[test]
    fn trusted_proxies_refuse_empty_entries_and_host_bits() {
        assert!(parse(&["--trusted-proxies="]).unwrap().trusted_proxies.is_empty());
        assert!(parse(&["--trusted-proxies=  "]).unwrap().trusted_proxies.is_empty());
        let two = parse(&["--trusted-proxies=10.0.0.0/8, 192.168.1.7"]).unwrap();
        assert_eq!(two.trusted_proxies.len(), 2);
        for bad in [", ,", "10.0.0.0/8,", ",10.0.0.0/8", "10.0.0.0/8,,192.168.0.0/16", "10.1.2.3/8", "nope"] {
            let err = parse(&[&format!("--trusted-proxies={bad}")]).unwrap_err();
            assert_eq!(err.variable, "TRUSTED_PROXIES", "{bad}");
        }
    }

    #[test]
    fn development_listens_on_loopback_unless_told_otherwise() {
        assert_eq!(parse(&[]).unwrap().host, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(parse(&["--host=0.0.0.0"]).unwrap().host, IpAddr::from([0, 0, 0, 0]));
        assert_eq!(parse(&["--env=testing"]).unwrap().host, IpAddr::from([0, 0, 0, 0]));
        let production =
            ["--env=production", "--database-url=sqlite:///x.db", "--jwt-secret=0123456789abcdef0123456789abcdef"];
        assert_eq!(parse(&production).unwrap().host, IpAddr::from([0, 0, 0, 0]));
    }

    #[test]
    fn run_mode_and_workers() {
        assert_eq!(parse(&["--no-grpc"]).unwrap().run_mode, RunMode::HttpOnly);
        assert_eq!(parse(&["--grpc-only"]).unwrap().run_mode, RunMode::GrpcOnly);
        assert_eq!(parse(&[]).unwrap().run_mode, RunMode::Both);
        assert!(Cli::try_parse_from(["killkrill", "--no-grpc", "--grpc-only"]).is_err());
        assert!(parse(&["--workers=0"]).unwrap().workers >= 1);
        assert_eq!(parse(&["--workers=3"]).unwrap().workers, 3);
    }

    #[test]
    fn retention_defaults_and_bounds() {
        let config = parse(&[]).unwrap();
        assert_eq!(config.retention, Retention { log_days: 30, metric_days: 90 });
        assert_eq!(config.retention_interval, Duration::from_secs(300));
        let set = parse(&["--log-retention-days=0", "--metric-retention-days=7", "--retention-interval-seconds=1"]);
        let set = set.unwrap();
        assert_eq!(set.retention, Retention { log_days: 0, metric_days: 7 });
        assert_eq!(set.retention_interval, Duration::from_secs(1));
        assert_eq!(parse(&["--retention-interval-seconds=0"]).unwrap_err().variable, "RETENTION_INTERVAL_SECONDS");
        assert_eq!(parse(&["--log-retention-days=36501"]).unwrap_err().variable, "LOG_RETENTION_DAYS");
        assert_eq!(parse(&["--metric-retention-days=99999"]).unwrap_err().variable, "METRIC_RETENTION_DAYS");
        assert!(Cli::try_parse_from(["killkrill", "--log-retention-days=-1"]).is_err());
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let config = parse(&[
            "--jwt-secret=super-secret-value-1234567890abcdef",
            "--database-url=postgresql://kk:hunter2@db.example:5432/kk",
        ])
        .unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("super-secret-value"), "{printed}");
        assert!(!printed.contains("hunter2"), "{printed}");
    }
}
