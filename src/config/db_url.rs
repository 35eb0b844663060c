//! `DATABASE_URL` as users already write it for SQLAlchemy, translated for sqlx.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

use super::ConfigError;

/// The database engines the service runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    MySql,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgresql",
            Backend::MySql => "mysql",
        }
    }
}

/// A parsed database URL. `Debug` and `Display` show it with the password redacted.
#[derive(Clone)]
pub struct DbUrl {
    backend: Backend,
    /// The URL in the form sqlx understands; may carry a password.
    connect: SecretString,
    redacted: String,
    /// Host and port of a network database (the port defaulted by the backend).
    address: Option<(String, u16)>,
    /// The SQLite file's path, as given (relative to the working directory unless it
    /// starts with `/`).
    sqlite_file: Option<String>,
}

impl DbUrl {
    /// Parses every spelling docs/API.md promises: `postgresql://`, `postgres://`,
    /// `postgresql+<driver>://`, `mysql://`, `mysql+<driver>://`, `mariadb://`,
    /// `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite:///:memory:`.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let err = |problem: &str| ConfigError::new("DATABASE_URL", problem.to_owned());
        let (scheme, rest) =
            raw.split_once("://").ok_or_else(|| err("is not a URL (expected e.g. postgresql://user:pass@host/db)"))?;
        let engine = scheme.split('+').next().unwrap_or_default().to_ascii_lowercase();
        match engine.as_str() {
            "postgresql" | "postgres" => Self::network(Backend::Postgres, "postgres", rest),
            "mysql" | "mariadb" => Self::network(Backend::MySql, "mysql", rest),
            "sqlite" => Ok(Self::sqlite(rest)),
            other => Err(ConfigError::new(
                "DATABASE_URL",
                format!("unsupported scheme `{other}`: use postgresql://, mysql:// or sqlite:///"),
            )),
        }
    }

    fn network(backend: Backend, scheme: &str, rest: &str) -> Result<Self, ConfigError> {
        let connect = format!("{scheme}://{rest}");
        let parsed = url::Url::parse(&connect)
            .map_err(|e| ConfigError::new("DATABASE_URL", format!("is not a valid URL: {e}")))?;
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::new("DATABASE_URL", "has no host"));
        }
        let mut shown = parsed.clone();
        if shown.password().is_some() {
            // Only fails for URLs that cannot carry a password, which these can.
            let _ = shown.set_password(Some("***"));
        }
        // A password may also be a query parameter (`?password=`, `sslpassword=`, ...).
        if shown.query_pairs().any(|(name, _)| name.to_ascii_lowercase().contains("pass")) {
            let pairs: Vec<(String, String)> = shown
                .query_pairs()
                .map(|(name, value)| {
                    let secret = name.to_ascii_lowercase().contains("pass");
                    (name.into_owned(), if secret { "***".to_owned() } else { value.into_owned() })
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
        }
        Ok(Self {
            backend,
            connect: SecretString::from(connect),
            redacted: shown.to_string(),
            address: parsed.host_str().map(|host| {
                let default = if backend == Backend::Postgres { 5432 } else { 3306 };
                (host.trim_start_matches('[').trim_end_matches(']').to_owned(), parsed.port().unwrap_or(default))
            }),
            sqlite_file: None,
        })
    }

    /// SQLAlchemy puts the path after a third slash: `sqlite:///rel.db` is relative,
    /// `sqlite:////abs.db` absolute, and `sqlite://` or `sqlite:///:memory:` in memory.
    fn sqlite(rest: &str) -> Self {
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let path = path.strip_prefix('/').unwrap_or(path);
        let in_memory = path.is_empty() || path == ":memory:";
        let connect = if in_memory {
            "sqlite::memory:".to_owned()
        } else {
            let query = if query.is_empty() { "mode=rwc".to_owned() } else { query.to_owned() };
            format!("sqlite://{path}?{query}")
        };
        let redacted = if in_memory { "sqlite:///:memory:".to_owned() } else { format!("sqlite:///{path}") };
        let sqlite_file = (!in_memory).then(|| path.to_owned());
        Self { backend: Backend::Sqlite, connect: SecretString::from(connect), redacted, address: None, sqlite_file }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Host and port of a PostgreSQL or MySQL server.
    pub fn address(&self) -> Option<(&str, u16)> {
        self.address.as_ref().map(|(host, port)| (host.as_str(), *port))
    }

    /// The SQLite file's path, for a SQLite URL that is not in memory.
    pub fn sqlite_file(&self) -> Option<&str> {
        self.sqlite_file.as_deref()
    }

    /// An in-memory SQLite database lives only as long as its one connection.
    pub fn is_in_memory(&self) -> bool {
        self.backend == Backend::Sqlite && self.sqlite_file.is_none()
    }

    /// The URL handed to the driver. Never log this.
    pub(crate) fn connect_url(&self) -> &str {
        self.connect.expose_secret()
    }
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlalchemy_spellings_are_accepted() {
        let cases = [
            ("postgresql://u:p@h:5432/db", Backend::Postgres, "postgres://u:p@h:5432/db"),
            ("postgres://u@h/db", Backend::Postgres, "postgres://u@h/db"),
            ("postgresql+psycopg2://u:p@h/db", Backend::Postgres, "postgres://u:p@h/db"),
            ("mysql://root@127.0.0.1:3306/test", Backend::MySql, "mysql://root@127.0.0.1:3306/test"),
            ("mysql+pymysql://u:p@h/db", Backend::MySql, "mysql://u:p@h/db"),
            ("sqlite:///relative.db", Backend::Sqlite, "sqlite://relative.db?mode=rwc"),
            ("sqlite:////absolute/k.db", Backend::Sqlite, "sqlite:///absolute/k.db?mode=rwc"),
            ("sqlite:///:memory:", Backend::Sqlite, "sqlite::memory:"),
        ];
        for (raw, backend, connect) in cases {
            let url = DbUrl::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(url.backend(), backend, "{raw}");
            assert_eq!(url.connect_url(), connect, "{raw}");
        }
        assert!(DbUrl::parse("sqlite:///:memory:").unwrap().is_in_memory());
    }

    #[test]
    fn unsupported_or_malformed_urls_name_the_variable() {
        for raw in ["oracle://h/db", "nonsense", "postgresql:///db-without-host"] {
            let err = DbUrl::parse(raw).unwrap_err();
            assert_eq!(err.variable, "DATABASE_URL", "{raw}");
        }
        assert!(DbUrl::parse("oracle://h/db").unwrap_err().problem.contains("oracle"));
    }

    #[test]
    fn password_is_redacted_when_shown() {
        let url = DbUrl::parse("postgresql://kk:hunter2@db:5432/kk").unwrap();
        assert_eq!(format!("{url}"), "postgres://kk:***@db:5432/kk");
        assert!(!format!("{url:?}").contains("hunter2"));
        let url = DbUrl::parse("postgresql://kk@db/kk?sslmode=disable&password=hunter2&sslpassword=x%26y").unwrap();
        assert_eq!(format!("{url}"), "postgres://kk@db/kk?sslmode=disable&password=***&sslpassword=***");
        assert_eq!(url.address(), Some(("db", 5432)));
        assert_eq!(DbUrl::parse("mysql://[::1]:3307/kk").unwrap().address(), Some(("::1", 3307)));
    }
}
