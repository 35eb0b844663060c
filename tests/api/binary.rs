//! The `killkrill` binary as an operator runs it: flags, environment, `.env`, start-up
//! errors, JSON logs on stdout, and a clean exit on SIGTERM.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::common::{Kind, TestDb};
use sea_orm::ConnectionTrait;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_killkrill");

/// A command with a clean environment (only what the test sets) in `dir`.
fn killkrill(dir: &Path) -> Command {
    let mut command = Command::new(BIN);
    command.env_clear().current_dir(dir);
    command
}

/// Runs to completion; returns (exit code, stdout, stderr). A run that should stop but
/// serves instead is killed after a minute, and the test fails instead of hanging.
fn run(command: &mut Command) -> (i32, String, String) {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{command:?} was still running after a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A running server whose stdout JSON lines are collected as they come.
struct Running {
    child: Child,
    lines: mpsc::Receiver<Value>,
    seen: Vec<Value>,
    port: u16,
}

impl Running {
    /// Starts on a free port and waits until the service is ready (the database answered).
    fn start(command: &mut Command) -> Running {
        let mut running = Self::listening(command);
        running.wait_for("service_ready", Duration::from_secs(30));
        running
    }

    /// Starts on a free port and waits until it listens, which it does before the database
    /// has answered.
    fn listening(command: &mut Command) -> Running {
        let mut running = Self::spawn(command.arg("--port=0"));
        let started = running.wait_for("server_started", Duration::from_secs(10));
        running.port = started["port"].as_u64().unwrap() as u16;
        running
    }

    /// The `server_started` line.
    fn started(&self) -> &Value {
        self.seen.iter().find(|line| line["event"] == "server_started").expect("server_started was logged")
    }

    /// Starts on a fixed port and waits until it accepts connections (for log levels
    /// that hide the `server_started` line).
    fn start_quietly(command: &mut Command) -> Running {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut running = Self::spawn(command.arg(format!("--port={port}")));
        running.port = port;
        let deadline = Instant::now() + Duration::from_secs(30);
        while reqwest::try_get(&running.url("/readyz")) != Some(200) {
            assert!(Instant::now() < deadline, "server was not ready on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        running
    }

    fn spawn(command: &mut Command) -> Running {
        // Tests listen on loopback unless they say where.
        if !command.get_envs().any(|(key, _)| key == "FLASK_HOST") {
            command.arg("--host=127.0.0.1");
        }
        Self::spawn_as_is(command)
    }

    fn spawn_as_is(command: &mut Command) -> Running {
        // Parallel tests must not all claim 50051.
        if !command.get_envs().any(|(key, _)| key == "GRPC_PORT") {
            command.env("GRPC_PORT", "0");
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("stdout line is not JSON: {line}"));
                if tx.send(value).is_err() {
                    return;
                }
            }
        });
        Running { child, lines, seen: Vec::new(), port: 0 }
    }

    /// Waits for the next log line with `event`, keeping everything seen.
    fn wait_for(&mut self, event: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line["event"] == event {
                        return line;
                    }
                }
                Err(_) => panic!("no `{event}` log line within {within:?}; saw {:#?}", self.seen),
            }
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn signal(&self, signal: i32) {
        // SAFETY: sends a signal to our own child process.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// The exit status, if it has exited.
    fn child_status(&mut self) -> Option<i32> {
        self.child.try_wait().unwrap().map(|status| status.code().unwrap_or(-1))
    }

    fn wait_exit(&mut self, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "did not exit within {within:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn one_line(stderr: &str) -> &str {
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line, got:\n{stderr}");
    lines[0]
}

fn help_documents_every_flag_and_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run(killkrill(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    let documented = [
        "--env",
        "--debug",
        "--host",
        "--port",
        "--workers",
        "--no-grpc",
        "--grpc-only",
        "-v",
        "FLASK_ENV",
        "FLASK_HOST",
        "FLASK_PORT",
        "FLASK_DEBUG",
        "DATABASE_URL",
        "DB_POOL_SIZE",
        "DB_MAX_OVERFLOW",
        "JWT_SECRET",
        "JWT_SECRET_PREVIOUS",
        "JWT_EXPIRY_HOURS",
        "LICENSE_KEY",
        "LICENSE_SERVER_URL",
        "PRODUCT_NAME",
        "LOG_LEVEL",
        "ENABLE_DETAILED_METRICS",
        "GRPC_PORT",
        "CORS_ORIGINS",
        "WORKERS",
        "SECURITY_PASSWORD_SALT",
        "TLS_CERT_FILE",
        "TLS_KEY_FILE",
        "TLS_CLIENT_CA_FILE",
        "TRUSTED_PROXIES",
        "API_KEY_MAX_DAYS",
    ];
    for item in documented {
        assert!(stdout.contains(item), "--help does not mention {item}");
    }
}

fn unknown_flag_exits_nonzero_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(killkrill(dir.path()).arg("--bogus"));
    assert_ne!(code, 0);
    assert!(one_line(&stderr).contains("--bogus"), "{stderr}");
}

fn bad_value_from_the_environment_names_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(killkrill(dir.path()).env("FLASK_PORT", "abc"));
    assert_ne!(code, 0);
    assert!(one_line(&stderr).contains("FLASK_PORT"), "{stderr}");
    let (code, _, stderr) = run(killkrill(dir.path()).env("FLASK_ENV", "staging"));
    assert_ne!(code, 0);
    assert!(one_line(&stderr).contains("FLASK_ENV"), "{stderr}");
    // Sizes that would reserve memory for billions of threads or pool slots, and a
    // negative flag value, are refused by name rather than aborting the process.
    // A TRUSTED_PROXIES with an empty entry or host bits set is a typo, not a list.
    for (variable, value) in [
        ("WORKERS", "99999999999"),
        ("WORKERS", "5000"),
        ("DB_POOL_SIZE", "4294967295"),
        ("TRUSTED_PROXIES", ", ,"),
        ("TRUSTED_PROXIES", "10.1.2.3/8"),
    ] {
        let (code, _, stderr) = run(killkrill(dir.path()).env(variable, value));
        assert_eq!(code, 2, "{variable}={value}: {stderr}");
        assert!(one_line(&stderr).contains(variable), "{stderr}");
    }
    let (code, _, stderr) = run(killkrill(dir.path()).args(["--workers", "-1"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(one_line(&stderr).contains("WORKERS"), "{stderr}");
}

fn unsupported_database_scheme_names_the_variable_and_hides_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(killkrill(dir.path()).env("DATABASE_URL", "oracle://kk:topsecret@db/kk"));
    assert_ne!(code, 0);
    let line = one_line(&stderr);
    assert!(line.contains("DATABASE_URL") && line.contains("oracle"), "{line}");
    assert!(!stderr.contains("topsecret") && !stdout.contains("topsecret"));
}

fn production_refuses_a_short_jwt_secret_without_printing_it() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(killkrill(dir.path())
        .env("FLASK_ENV", "production")
        .env("DATABASE_URL", "sqlite:///prod.db")
        .env("JWT_SECRET", "zq9zq9"));
    assert_ne!(code, 0);
    let line = one_line(&stderr);
    assert!(line.contains("JWT_SECRET") && line.contains("32"), "{line}");
    assert!(!stderr.contains("zq9zq9"));
}

fn a_malformed_database_url_exits_at_once_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for url in ["postgresql://kk:pw9x@127.0.0.1:notaport/kk", "not a url at all", "mysql://"] {
        let started = Instant::now();
        let (code, stdout, stderr) = run(killkrill(dir.path()).env("DATABASE_URL", url));
        assert_eq!(code, 2, "{url}: {stderr}");
        assert!(started.elapsed() < Duration::from_secs(5), "{url}: it waited");
        assert!(one_line(&stderr).contains("DATABASE_URL"), "{url}: {stderr}");
        assert!(!stderr.contains("pw9x") && !stdout.contains("pw9x"));
    }
}

/// SIGHUP (a certificate renewal) while the service waits for its database reloads the
/// TLS files, as it does once ready; its default action would end the process.
fn a_sighup_while_waiting_for_the_database_reloads_tls_and_the_process_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut running = Running::listening(
        killkrill(dir.path())
            .env("TLS_CERT_FILE", "cert.pem")
            .env("TLS_KEY_FILE", "key.pem")
            .env("DATABASE_URL", format!("postgresql://kk@127.0.0.1:{closed}/kk")),
    );
    running.wait_for("database_connect_retry", Duration::from_secs(10));
    running.signal(libc::SIGHUP);
    running.wait_for("tls_reloaded", Duration::from_secs(5));
    assert_eq!(running.child_status(), None, "SIGHUP ended the process");
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait_exit(Duration::from_secs(10)), 0);
}

/// What the ports answer before the database has answered: the probes, a route's 503 with
/// the error body, and gRPC's health NOT_SERVING and calls UNAVAILABLE.
async fn answers_while_starting(running: &Running) {
    killkrill::install_crypto_provider();
    let client = ::reqwest::Client::new();
    let get = |path: &str| client.get(running.url(path)).send();
    assert_eq!(get("/livez").await.unwrap().status(), 200);
    for probe in ["/readyz", "/healthz"] {
        let response = get(probe).await.unwrap();
        assert_eq!(response.status(), 503, "{probe}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["checks"]["database"], "unavailable", "{probe}: {body}");
    }
    let response =
        client.get(running.url("/api/v1/sources")).header("X-Correlation-ID", "corr-start").send().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    assert_eq!(response.headers()["x-correlation-id"], "corr-start");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "Service Unavailable");
    assert_eq!(body["status_code"], 503);
    assert_eq!(body["correlation_id"], "corr-start");
    assert!(body["message"].as_str().unwrap().contains("database"), "{body}");
    let grpc_port =
        running.seen.iter().find(|l| l["event"] == "grpc_server_started").unwrap()["port"].as_u64().unwrap();
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{grpc_port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    for service in ["", "killkrill.v1.LogService"] {
        let answer = health.check(tonic_health::pb::HealthCheckRequest { service: service.into() }).await.unwrap();
        assert_eq!(
            answer.into_inner().status,
            tonic_health::pb::health_check_response::ServingStatus::NotServing as i32
        );
    }
    let mut status = killkrill::grpc::proto::status_service_client::StatusServiceClient::new(channel);
    let refused = status.get_status(killkrill::grpc::proto::GetStatusRequest::default()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
}

/// Once ready: the real routers answer on the same ports, without a restart.
async fn answers_once_ready(running: &Running) {
    killkrill::install_crypto_provider();
    let client = ::reqwest::Client::new();
    for probe in ["/readyz", "/healthz", "/livez"] {
        assert_eq!(client.get(running.url(probe)).send().await.unwrap().status(), 200, "{probe}");
    }
    assert_eq!(client.get(running.url("/api/v1/sources")).send().await.unwrap().status(), 401);
    let grpc_port =
        running.seen.iter().find(|l| l["event"] == "grpc_server_started").unwrap()["port"].as_u64().unwrap();
    assert!(grpc_serving(grpc_port as u16).await);
}

/// Starts `command` in a blocking thread and waits until its HTTP and gRPC ports listen.
async fn listening_on_both_ports(mut command: Command) -> Running {
    tokio::task::spawn_blocking(move || {
        let mut running = Running::listening(&mut command);
        running.wait_for("grpc_server_started", Duration::from_secs(5));
        running
    })
    .await
    .unwrap()
}

/// Waits in a blocking thread for a log line.
async fn wait_for_line(running: Running, event: &'static str, within: Duration) -> (Running, Value) {
    tokio::task::spawn_blocking(move || {
        let mut running = running;
        let line = running.wait_for(event, within);
        (running, line)
    })
    .await
    .unwrap()
}

/// Started while nothing listens on the database's port: the ports answer at once; when a
/// server appears there (a proxy to the real PostgreSQL), the service turns ready.
async fn starts_while_the_database_port_is_closed_and_turns_ready_when_it_opens() {
    let db = TestDb::create(Kind::Postgres).await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut url = url::Url::parse(&db.url).unwrap();
    let upstream: std::net::SocketAddr =
        format!("{}:{}", url.host_str().unwrap(), url.port_or_known_default().unwrap()).parse().unwrap();
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(port)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut command = killkrill(dir.path());
    command.env("DATABASE_URL", url.as_str()).env("DB_CONNECT_RETRY_SECONDS", "5");
    let started = Instant::now();
    let running = listening_on_both_ports(command).await;
    assert!(started.elapsed() < Duration::from_secs(5), "listening took {:?}", started.elapsed());
    answers_while_starting(&running).await;
    let (running, retry) = wait_for_line(running, "database_connect_retry", Duration::from_secs(10)).await;
    assert!(retry["error"].as_str().unwrap().contains("Connection refused"), "{retry}");
    // Past DB_CONNECT_RETRY_SECONDS the attempts go on, logged once a minute.
    let (mut running, _) = wait_for_line(running, "database_unreachable", Duration::from_secs(20)).await;
    assert_eq!(running.child_status(), None, "the service must not exit while the database is down");

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let _proxy = crate::database::Proxy::serve(listener, upstream);
    let opened = Instant::now();
    let (mut running, _) = wait_for_line(running, "service_ready", Duration::from_secs(20)).await;
    // The back-off is capped at 5 s between attempts.
    assert!(opened.elapsed() < Duration::from_secs(10), "ready {:?} after the database", opened.elapsed());
    answers_once_ready(&running).await;
    running.signal(libc::SIGTERM);
    assert_eq!(tokio::task::spawn_blocking(move || running.wait_exit(Duration::from_secs(15))).await.unwrap(), 0);
}

/// Started on a PostgreSQL server that has no such database yet: ready once it is created,
/// migrations run then.
async fn starts_before_its_database_exists_and_migrates_once_it_is_created() {
    let server = TestDb::create(Kind::Postgres).await;
    let name = format!("kk_{}", uuid::Uuid::new_v4().simple());
    let url = crate::common::with_database(&server.url, &name);
    let dir = tempfile::tempdir().unwrap();
    let mut command = killkrill(dir.path());
    command.env("DATABASE_URL", &url);
    let running = listening_on_both_ports(command).await;
    answers_while_starting(&running).await;
    let (running, retry) = wait_for_line(running, "database_connect_retry", Duration::from_secs(10)).await;
    assert!(retry["error"].as_str().unwrap().contains(&name), "{retry}");

    let admin = server.connect().await;
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await.unwrap();
    let (mut running, ready) = wait_for_line(running, "database_ready", Duration::from_secs(20)).await;
    assert!(ready["migrations_applied"].as_u64().unwrap() > 0, "{ready}");
    running.wait_for("service_ready", Duration::from_secs(10));
    answers_once_ready(&running).await;
    running.signal(libc::SIGTERM);
    assert_eq!(tokio::task::spawn_blocking(move || running.wait_exit(Duration::from_secs(15))).await.unwrap(), 0);
    let _ = admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
}

fn a_sqlite_file_in_a_missing_directory_is_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (code, _, stderr) = run(killkrill(dir.path()).env("DATABASE_URL", "sqlite:///no/such/dir/kk.db"));
    assert_ne!(code, 0);
    assert!(started.elapsed() < Duration::from_secs(5), "it waited for the directory to appear");
    let line = one_line(&stderr);
    assert!(line.contains("DATABASE_URL") && line.contains("no/such/dir"), "{stderr}");
}

fn dotenv_is_read_and_flags_override_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "FLASK_ENV=production\nDATABASE_URL=sqlite:///from-dotenv.db\n").unwrap();
    let (code, _, stderr) = run(&mut killkrill(dir.path()));
    assert_ne!(code, 0, "production without JWT_SECRET must refuse to start");
    assert!(one_line(&stderr).contains("JWT_SECRET"), "{stderr}");

    let mut running = Running::start(killkrill(dir.path()).arg("--env=development"));
    assert_eq!(running.started()["environment"], "development");
    assert!(dir.path().join("from-dotenv.db").exists(), "DATABASE_URL from .env was not used");
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait_exit(Duration::from_secs(10)), 0);

    // A line that is not NAME=value stops start-up, naming its number (not its text),
    // instead of silently dropping it and every line after it.
    let dotenv = "FLASK_PORT=0\n# a comment\nJWT_SECRET hunter2-not-a-line\nGRPC_PORT=0\n";
    std::fs::write(dir.path().join(".env"), dotenv).unwrap();
    let (code, stdout, stderr) = run(&mut killkrill(dir.path()));
    assert_eq!(code, 2, "{stderr}");
    assert!(one_line(&stderr).contains(".env") && one_line(&stderr).contains("line 3"), "{stderr}");
    assert!(!stderr.contains("hunter2") && !stdout.contains("hunter2"));
}

fn development_runs_on_a_sqlite_file_with_no_setup() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = Running::start(&mut killkrill(dir.path()));
    assert!(dir.path().join("killkrill.db").exists());
    let response = reqwest::blocking_get(&running.url("/healthz"));
    assert_eq!(response, 200);
    running.signal(libc::SIGINT);
    assert_eq!(running.wait_exit(Duration::from_secs(10)), 0);
    running.wait_for("server_stopped", Duration::from_secs(1));
}

fn verbosity_flag_overrides_log_level() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = Running::start_quietly(killkrill(dir.path()).env("LOG_LEVEL", "DEBUG").arg("-v"));
    assert_eq!(reqwest::blocking_get(&running.url("/healthz")), 200);
    assert_eq!(reqwest::blocking_get(&running.url("/missing")), 404);
    let line = running.wait_for("request_completed", Duration::from_secs(5));
    assert_eq!(line["path"], "/missing", "the 200 must not be logged at warning level");
    assert_eq!(line["level"], "WARN");
    assert!(running.seen.iter().all(|l| l["level"] != "INFO"), "-v must hide info lines: {:?}", running.seen);
}

cases! {
    on_all_databases: serves_logs_each_request_and_stops_cleanly_on_sigterm;
    tokio_multi_thread: run_modes_serve_http_grpc_or_both_and_stop_together;
    tokio_multi_thread[Postgres]:
        starts_while_the_database_port_is_closed_and_turns_ready_when_it_opens,
        starts_before_its_database_exists_and_migrates_once_it_is_created;
    test:
        help_documents_every_flag_and_variable,
        unknown_flag_exits_nonzero_with_one_line,
        bad_value_from_the_environment_names_the_variable,
        unsupported_database_scheme_names_the_variable_and_hides_the_password,
        production_refuses_a_short_jwt_secret_without_printing_it,
        a_malformed_database_url_exits_at_once_naming_the_variable,
        a_sighup_while_waiting_for_the_database_reloads_tls_and_the_process_lives_on,
        a_sqlite_file_in_a_missing_directory_is_named_at_once,
        dotenv_is_read_and_flags_override_it,
        development_runs_on_a_sqlite_file_with_no_setup,
        verbosity_flag_overrides_log_level,
        development_creates_the_default_admin_with_a_warning,
        development_listens_on_loopback_unless_told_and_warns_while_the_default_password_is_exposed,
        production_never_creates_a_default_password_and_create_user_makes_the_first_admin,
        the_image_environment_starts_and_the_healthcheck_command_probes_livez,
        tls_files_that_do_not_work_are_startup_errors_naming_the_variable,
        the_healthcheck_command_speaks_tls_when_the_port_does;
}

async fn serves_logs_each_request_and_stops_cleanly_on_sigterm(db: TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let url = db.url.clone();
    let kind = db.kind;
    tokio::task::spawn_blocking(move || {
        let mut running = Running::start(killkrill(dir.path()).env("DATABASE_URL", &url).env("WORKERS", "3"));
        assert_eq!(
            running.started()["database"],
            match kind {
                Kind::Sqlite => "sqlite",
                Kind::Postgres => "postgresql",
                Kind::MySql => "mysql",
            }
        );
        assert_eq!(running.started()["workers"], 3, "WORKERS sets the runtime's threads");
        let client = reqwest::blocking_client();
        let response = client(&running.url("/healthz"), "corr-7");
        assert_eq!(response, 200);
        let line = running.wait_for("request_completed", Duration::from_secs(5));
        assert_eq!(line["correlation_id"], "corr-7");
        assert_eq!(line["method"], "GET");
        assert_eq!(line["path"], "/healthz");
        assert_eq!(line["status_code"], 200);
        assert_eq!(line["client_ip"], "127.0.0.1");
        assert_eq!(line["level"], "INFO");
        assert!(line["duration_seconds"].as_f64().is_some_and(|d| d >= 0.0));
        assert!(chrono::DateTime::parse_from_rfc3339(line["timestamp"].as_str().unwrap()).is_ok());
        running.signal(libc::SIGTERM);
        assert_eq!(running.wait_exit(Duration::from_secs(15)), 0);
        running.wait_for("server_stopped", Duration::from_secs(1));
    })
    .await
    .unwrap();
}

/// Tiny blocking HTTP helpers (a std TcpStream, so no second runtime is needed).
mod reqwest {
    use std::io::{Read, Write};

    pub fn blocking_get(url: &str) -> u16 {
        request(url, None)
    }

    /// The status, or `None` when nothing answers.
    pub fn try_get(url: &str) -> Option<u16> {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut stream = std::net::TcpStream::connect(host).ok()?;
        write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        response.split_whitespace().nth(1)?.parse().ok()
    }

    pub fn blocking_client() -> impl Fn(&str, &str) -> u16 {
        |url, correlation_id| request(url, Some(correlation_id))
    }

    fn request(url: &str, correlation_id: Option<&str>) -> u16 {
        let rest = url.strip_prefix("http://").unwrap();
        let (host, path) = rest.split_once('/').unwrap();
        let mut stream = std::net::TcpStream::connect(host).unwrap();
        let extra = correlation_id.map(|id| format!("X-Correlation-ID: {id}\r\n")).unwrap_or_default();
        write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// Logs in over a raw socket; returns the status code.
fn login_status(port: u16, username: &str, password: &str) -> u16 {
    use std::io::{Read, Write};
    let body = serde_json::json!({ "username": username, "password": password }).to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        stream,
        "POST /api/v1/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn development_creates_the_default_admin_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = Running::start(&mut killkrill(dir.path()));
    let warning = running
        .seen
        .iter()
        .find(|l| l["event"] == "default_admin_created")
        .cloned()
        .expect("a warning names the default admin");
    assert_eq!(warning["level"], "WARN");
    assert_eq!(login_status(running.port, "admin", "admin123"), 200);
    assert_eq!(login_status(running.port, "admin@localhost.local", "admin123"), 200);
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait_exit(Duration::from_secs(10)), 0);
}

/// Development creates `admin` / `admin123`, so it listens on loopback unless told
/// otherwise; told otherwise, every start warns while that password is in use.
fn development_listens_on_loopback_unless_told_and_warns_while_the_default_password_is_exposed() {
    let dir = tempfile::tempdir().unwrap();
    let mut running = Running::spawn_as_is(killkrill(dir.path()).arg("--port=0"));
    let started = running.wait_for("server_started", Duration::from_secs(10));
    assert!(started["address"].as_str().unwrap().starts_with("127.0.0.1:"), "{started}");
    let grpc = running.wait_for("grpc_server_started", Duration::from_secs(10));
    assert!(grpc["address"].as_str().unwrap().starts_with("127.0.0.1:"), "{grpc}");
    running.wait_for("service_ready", Duration::from_secs(30));
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait_exit(Duration::from_secs(10)), 0);
    running.wait_for("server_stopped", Duration::from_secs(5));
    assert!(running.seen.iter().all(|l| l["event"] != "default_password_exposed"), "{:#?}", running.seen);

    let mut running = Running::spawn(killkrill(dir.path()).env("FLASK_HOST", "0.0.0.0").arg("--port=0"));
    let started = running.wait_for("server_started", Duration::from_secs(10));
    assert!(started["address"].as_str().unwrap().starts_with("0.0.0.0:"), "{started}");
    let warning = running.wait_for("default_password_exposed", Duration::from_secs(30));
    assert_eq!(warning["level"], "WARN");
    assert_eq!(warning["username"], "admin");
    assert!(!warning.to_string().contains("admin123"), "{warning}");
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait_exit(Duration::from_secs(10)), 0);
}

fn production_never_creates_a_default_password_and_create_user_makes_the_first_admin() {
    let dir = tempfile::tempdir().unwrap();
    let prod = |command: &mut Command| {
        command
            .env("FLASK_ENV", "production")
            .env("DATABASE_URL", "sqlite:///prod.db")
            .env("JWT_SECRET", "0123456789abcdef0123456789abcdef-prod");
    };
    let mut server = killkrill(dir.path());
    prod(&mut server);
    let mut running = Running::start(&mut server);
    assert!(running.seen.iter().all(|l| l["event"] != "default_admin_created"));
    assert_eq!(login_status(running.port, "admin", "admin123"), 401);
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait_exit(Duration::from_secs(10)), 0);

    let mut create = killkrill(dir.path());
    prod(&mut create);
    let mut child = create
        .args([
            "create-user",
            "--username",
            "ops",
            "--email",
            "ops@example.test",
            "--role",
            "admin",
            "--password-stdin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let created: Value =
        stdout.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| v["username"] == "ops").unwrap();
    assert_eq!(created["roles"], serde_json::json!(["admin"]));
    assert!(!stdout.contains("correct horse"));

    // The password never goes on the command line, and a weak one is refused.
    let mut weak = killkrill(dir.path());
    prod(&mut weak);
    let mut child = weak
        .args(["create-user", "--username", "ops2", "--email", "o2@example.test", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"short\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("8 characters"));

    let mut server = killkrill(dir.path());
    prod(&mut server);
    let mut running = Running::start(&mut server);
    assert_eq!(login_status(running.port, "ops", "correct horse battery"), 200);
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait_exit(Duration::from_secs(10)), 0);
}

/// The image's start-up (its ENV, the binary as ENTRYPOINT) and its HEALTHCHECK command,
/// run outside Docker.
fn the_image_environment_starts_and_the_healthcheck_command_probes_livez() {
    let dir = tempfile::tempdir().unwrap();
    let image_env = |command: &mut Command| {
        command
            .env("FLASK_ENV", "production")
            .env("FLASK_HOST", "127.0.0.1")
            // The image's 50051, but parallel tests must not fight over it.
            .env("GRPC_PORT", "0")
            .env("LOG_LEVEL", "INFO")
            .env("WORKERS", "0")
            .env("DATABASE_URL", "sqlite:///image.db")
            .env("JWT_SECRET", "0123456789abcdef0123456789abcdef-image");
    };
    let mut server = killkrill(dir.path());
    image_env(&mut server);
    let mut running = Running::start(&mut server);
    let healthcheck = |port: u16| {
        let mut command = killkrill(dir.path());
        image_env(&mut command);
        let output =
            command.env("FLASK_PORT", port.to_string()).args(["healthcheck", "--path", "/livez"]).output().unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    assert_eq!(healthcheck(running.port).0, Some(0));
    running.signal(libc::SIGTERM);
    assert_eq!(running.wait_exit(Duration::from_secs(10)), 0);
    let (code, stderr) = healthcheck(running.port);
    assert_ne!(code, Some(0), "healthcheck passed with no server");
    assert!(stderr.contains("healthcheck"), "{stderr}");
}

/// Asks the gRPC port's health service, over h2c, whether the server is serving.
async fn grpc_serving(port: u16) -> bool {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://127.0.0.1:{port}")).unwrap().connect().await;
    let Ok(channel) = channel else { return false };
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
    let answer = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
    answer
        .is_ok_and(|a| a.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

async fn run_modes_serve_http_grpc_or_both_and_stop_together() {
    for mode in [None, Some("--no-grpc"), Some("--grpc-only")] {
        let dir = tempfile::tempdir().unwrap();
        let http_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut command = killkrill(dir.path());
        command.arg(format!("--port={http_port}"));
        if let Some(flag) = mode {
            command.arg(flag);
        }
        let mut running = tokio::task::spawn_blocking(move || {
            let mut running = Running::spawn(&mut command);
            let event = if mode == Some("--grpc-only") { "grpc_server_started" } else { "server_started" };
            running.wait_for(event, Duration::from_secs(30));
            if mode.is_none() {
                running.wait_for("grpc_server_started", Duration::from_secs(5));
            }
            running.wait_for("service_ready", Duration::from_secs(30));
            running
        })
        .await
        .unwrap();
        let grpc_port = running
            .seen
            .iter()
            .find(|l| l["event"] == "grpc_server_started")
            .map(|l| l["port"].as_u64().unwrap() as u16);
        assert_eq!(grpc_port.is_some(), mode != Some("--no-grpc"), "{mode:?}: {:#?}", running.seen);
        assert_eq!(listening(http_port), mode != Some("--grpc-only"), "{mode:?}: the HTTP port");
        if let Some(port) = grpc_port {
            assert!(grpc_serving(port).await, "{mode:?}: gRPC health on {port}");
        }
        running.signal(libc::SIGTERM);
        let code = tokio::task::spawn_blocking(move || {
            let code = running.wait_exit(Duration::from_secs(15));
            running.wait_for("server_stopped", Duration::from_secs(1));
            code
        })
        .await
        .unwrap();
        assert_eq!(code, 0, "{mode:?}");
    }
}

fn tls_files_that_do_not_work_are_startup_errors_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let server = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert = write("cert.pem", &server.cert.pem());
    let key = write("key.pem", &server.signing_key.serialize_pem());
    let other_key = write("other.pem", &other.signing_key.serialize_pem());
    let garbage = write("garbage.pem", "not a certificate");
    let missing = dir.path().join("missing.pem").display().to_string();
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("TLS_CERT_FILE", &cert)], "TLS_KEY_FILE"),
        (&[("TLS_CERT_FILE", &missing), ("TLS_KEY_FILE", &key)], "TLS_CERT_FILE"),
        (&[("TLS_CERT_FILE", &garbage), ("TLS_KEY_FILE", &key)], "TLS_CERT_FILE"),
        (&[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &other_key)], "TLS_KEY_FILE"),
        (&[("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &key), ("TLS_CLIENT_CA_FILE", &garbage)], "TLS_CLIENT_CA_FILE"),
    ];
    for (vars, variable) in cases {
        let mut command = killkrill(dir.path());
        command.args(["--port=0", "--no-grpc"]).envs(vars.iter().copied());
        let (code, _, stderr) = run(&mut command);
        assert_ne!(code, 0, "{vars:?}");
        let line = one_line(&stderr);
        assert!(line.contains(variable), "{vars:?}: {line}");
        assert!(!line.contains("PRIVATE KEY"), "{line}");
    }
    // An encrypted key (which rustls cannot read) is said to be one.
    let encrypted = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let encrypted = write("encrypted.pem", encrypted);
    let mut command = killkrill(dir.path());
    command.args(["--port=0", "--no-grpc"]).envs([("TLS_CERT_FILE", &cert), ("TLS_KEY_FILE", &encrypted)]);
    let (code, _, stderr) = run(&mut command);
    assert_ne!(code, 0);
    assert!(one_line(&stderr).contains("TLS_KEY_FILE") && one_line(&stderr).contains("key is encrypted"), "{stderr}");
}

fn the_healthcheck_command_speaks_tls_when_the_port_does() {
    let dir = tempfile::tempdir().unwrap();
    // A certificate for a public name, from no CA the container holds: the probe of its
    // own process must still pass.
    let cert = rcgen::generate_simple_self_signed(vec!["logs.example.com".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), cert.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), cert.signing_key.serialize_pem()).unwrap();
    let tls_env = |command: &mut Command| {
        command.env("TLS_CERT_FILE", "cert.pem").env("TLS_KEY_FILE", "key.pem").env("FLASK_HOST", "127.0.0.1");
    };
    let mut server = killkrill(dir.path());
    tls_env(&mut server);
    let running = Running::start(&mut server);
    assert_eq!(running.started()["tls"], true);
    let mut probe = killkrill(dir.path());
    tls_env(&mut probe);
    let output = probe.env("FLASK_PORT", running.port.to_string()).args(["healthcheck"]).output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    // Without the TLS variables the probe speaks plain HTTP to a TLS port, and fails
    // saying what is missing (not with the bytes of a TLS alert), as a failed command.
    let output = killkrill(dir.path()).env("FLASK_PORT", running.port.to_string()).arg("healthcheck").output().unwrap();
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(one_line(&stderr).contains("TLS_CERT_FILE") && !stderr.contains('\u{15}'), "{stderr}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("command_failed"));
}
