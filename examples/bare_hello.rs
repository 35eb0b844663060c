//! A bare axum "hello" server, the baseline of the load benchmark (`benches/http/run.sh`).
//!
//! `GET /healthz` answers a static `{"status":"healthy"}`; no middleware, no logging.
//! Port: first argument, else `PORT`, else 3000. Worker threads: `WORKERS` (default 4).

use axum::{Router, http::header, routing::get};

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("PORT").ok())
        .map_or(Ok(3000), |p| p.parse())
        .map_err(|e| std::io::Error::other(format!("port: {e}")))?;
    let workers = std::env::var("WORKERS").ok().and_then(|w| w.parse().ok()).unwrap_or(4);
    tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()?.block_on(async move {
        let app = Router::new().route(
            "/healthz",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], r#"{"status":"healthy"}"#) }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        axum::serve(listener, app).await
    })
}
