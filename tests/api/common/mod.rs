//! Shared test support: a fresh database per case on SQLite, PostgreSQL and MariaDB, the
//! real application served on a real socket, the REST helpers several areas use (`rest`),
//! and the harness that runs the cases (`matrix`).
//!
//! PostgreSQL and MariaDB come from `KK_TEST_POSTGRES_URL` / `KK_TEST_MYSQL_URL`
//! (defaults: the local servers of the development machines, see README.md). The harness
//! probes each once at start; the cases of an unreachable one are reported as ignored,
//! unless `KK_REQUIRE_ALL_DATABASES=1` (set by `.ci/run`), which fails the run instead.

#![allow(dead_code, clippy::unwrap_used)]

#[macro_use]
pub mod matrix;
pub mod rest;

use std::{net::SocketAddr, time::Duration};

use killkrill::{App, config::Config, telemetry::LogLevelHandle};
use sea_orm::{ConnectOptions, ConnectionTrait, DatabaseConnection};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};

pub const DEFAULT_POSTGRES_URL: &str = "postgresql://postgres@127.0.0.1:5432/postgres";
/// No database in the path: the tests create their own, and need none to connect.
pub const DEFAULT_MYSQL_URL: &str = "mysql://root@127.0.0.1:3306";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
    MySql,
}

impl Kind {
    /// The backend's name in case names (`sources::x::mariadb`) and in the matrix line.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Sqlite => "sqlite",
            Kind::Postgres => "postgres",
            Kind::MySql => "mariadb",
        }
    }
}

/// A database that exists for one test only and is dropped with it.
pub struct TestDb {
    pub kind: Kind,
    /// The SQLAlchemy-style URL a user would put in `DATABASE_URL`.
    pub url: String,
    name: String,
    admin_url: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

pub fn required() -> bool {
    std::env::var("KK_REQUIRE_ALL_DATABASES").is_ok_and(|v| v == "1")
}

fn admin_url(kind: Kind) -> String {
    match kind {
        Kind::Postgres => std::env::var("KK_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_POSTGRES_URL.into()),
        Kind::MySql => std::env::var("KK_TEST_MYSQL_URL").unwrap_or_else(|_| DEFAULT_MYSQL_URL.into()),
        Kind::Sqlite => unreachable!("SQLite needs no server"),
    }
}

async fn admin_connect(url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let url = url.replacen("postgresql://", "postgres://", 1);
    let mut options = ConnectOptions::new(url);
    options.max_connections(1).connect_timeout(Duration::from_secs(3)).sqlx_logging(false);
    sea_orm::Database::connect(options).await
}

/// `url` with its password, if any, hidden.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Connects once to the server of each of `kinds` (all at once); returns those that did
/// not answer, each with `unreachable at <url>: <error>`.
pub fn probe(kinds: &[Kind]) -> Vec<(Kind, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let answers = futures_util::future::join_all(kinds.iter().map(|&kind| async move {
            let url = admin_url(kind);
            match admin_connect(&url).await {
                Ok(conn) => {
                    let _ = conn.close().await;
                    None
                }
                Err(err) => Some((kind, format!("unreachable at {}: {err}", shown(&url)))),
            }
        }));
        answers.await.into_iter().flatten().collect()
    })
}

/// Replaces the database name (the URL's path) of `url`.
pub fn with_database(url: &str, name: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap();
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

impl TestDb {
    /// A fresh database of `kind`. The harness runs a case only when its server answered
    /// the probe at start, so failing here is a failure of the case.
    pub async fn create(kind: Kind) -> TestDb {
        let name = format!("kk_{}", uuid::Uuid::new_v4().simple());
        if kind == Kind::Sqlite {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("test.db");
            return TestDb {
                kind,
                url: format!("sqlite:///{}", path.display()),
                name,
                admin_url: None,
                _dir: Some(dir),
            };
        }
        let admin = admin_url(kind);
        let conn = admin_connect(&admin)
            .await
            .unwrap_or_else(|err| panic!("{} answered the probe, then not: {} ({err})", kind.name(), shown(&admin)));
        conn.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
        conn.close().await.unwrap();
        TestDb { kind, url: with_database(&admin, &name), name, admin_url: Some(admin), _dir: None }
    }

    /// The testing defaults on this database, with data kept forever: most cases store
    /// lines and samples at fixed times of early 2026 (`rest::T0`), which the default
    /// retention would drop. The `retention` cases set their own.
    pub fn config(&self) -> Config {
        let mut config = Config::for_database(&self.url).unwrap();
        config.retention = killkrill::config::Retention { log_days: 0, metric_days: 0 };
        config
    }

    /// A direct connection, for looking at (or tampering with) what the service stored.
    pub async fn connect(&self) -> DatabaseConnection {
        let url = match self.kind {
            Kind::Sqlite => format!("sqlite://{}?mode=rwc", self.url.trim_start_matches("sqlite:///")),
            _ => self.url.replacen("postgresql://", "postgres://", 1),
        };
        sea_orm::Database::connect(ConnectOptions::new(url).sqlx_logging(false).to_owned()).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(admin) = self.admin_url.take() else {
            return;
        };
        let sql = match self.kind {
            Kind::Postgres => format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        // Drop runs inside the test's runtime: clean up on a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok(conn) = admin_connect(&admin).await {
                    let _ = conn.execute_unprepared(&sql).await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// The application served on 127.0.0.1 on a free port, exactly as `main` serves it.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The gRPC port (served alongside HTTP, as by default in production).
    pub grpc_addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: killkrill::state::AppState,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(config: Config) -> TestServer {
        let app = killkrill::build(config.clone(), LogLevelHandle::detached(config.log_level)).await.unwrap();
        Self::serve(app).await
    }

    pub async fn serve(app: App) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let grpc_addr = grpc_listener.local_addr().unwrap();
        let state = app.state().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = killkrill::Listeners { http: Some(listener), grpc: Some(grpc_listener) };
        let task = tokio::spawn(app.serve_all(listeners, async {
            let _ = stopped.await;
        }));
        TestServer { addr, grpc_addr, client: reqwest::Client::new(), state, stop: Some(stop), task: Some(task) }
    }

    /// A plain (h2c) gRPC channel to the server.
    pub async fn grpc(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.grpc_addr)).unwrap().connect().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// Signals shutdown and waits until the server has drained and closed its pool.
    pub async fn stop(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().unwrap().await.unwrap()
    }
}

/// Polls `check` every 100 ms until it returns true or `within` has passed.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A user created directly through the service (as `killkrill create-user` does).
pub struct TestUser {
    pub id: String,
    pub username: String,
    pub password: String,
}

impl TestServer {
    pub async fn create_user(&self, username: &str, roles: &[killkrill::auth::Role]) -> TestUser {
        let password = format!("{username}-pw-123");
        let input = killkrill::service::identity::admin::UserInput {
            username: username.to_owned(),
            email: format!("{username}@example.test"),
            password: password.clone(),
            first_name: String::new(),
            last_name: String::new(),
            roles: Some(roles.to_vec()),
            active: None,
        };
        let view =
            self.state.identity.create_user(input, &killkrill::service::audit::AuditMeta::default()).await.unwrap();
        TestUser { id: view.id, username: username.to_owned(), password }
    }

    /// Logs in and returns the whole token response.
    pub async fn login_response(&self, username: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap()
    }

    /// Logs in and returns the access token.
    pub async fn token(&self, user: &TestUser) -> String {
        let response = self.login_response(&user.username, &user.password).await;
        assert_eq!(response.status(), 200, "login of {}", user.username);
        let body: serde_json::Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A request with `Authorization: Bearer <token>`.
    pub fn authed(&self, method: reqwest::Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path)).bearer_auth(token)
    }

    /// `GET path` with a bearer token; the body as JSON.
    #[allow(dead_code)]
    pub async fn get_json(&self, path: &str, token: &str) -> serde_json::Value {
        let response = self.authed(reqwest::Method::GET, path, token).send().await.expect("GET");
        response.json().await.expect("a JSON body")
    }

    /// Creates an ingest key of `source_id` over REST; returns (key id, plaintext key).
    #[allow(dead_code)]
    pub async fn create_ingest_key(&self, token: &str, source_id: &str) -> (String, String) {
        let path = format!("/api/v1/sources/{source_id}/keys");
        let response =
            self.authed(reqwest::Method::POST, &path, token).json(&serde_json::json!({ "name": "collector" }));
        let response = response.send().await.unwrap();
        assert_eq!(response.status(), 201);
        let body: serde_json::Value = response.json().await.unwrap();
        (body["id"].as_str().unwrap().to_owned(), body["key"].as_str().unwrap().to_owned())
    }
}
