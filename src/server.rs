//! The HTTP accept loop. Owning it (instead of `axum::serve`) gives us header-read
//! timeouts, HTTP/1.1 and h2c on one port, the peer address for every request, and a
//! bounded graceful drain.

use std::{
    future::Future,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderMap, HeaderName, Request},
};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{
        conn::auto::Builder,
        graceful::{GracefulShutdown, Watcher},
    },
    service::TowerToHyperService,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    net::{TcpListener, TcpStream},
};
use tower::ServiceExt;

use crate::{
    config::Cidr,
    tls::{self, ClientCa, ClientCert, Tls},
};

mod guard;

/// How long a client may take to send its request headers (an idle keep-alive connection
/// as long to begin the next request). A head begun and not finished by then is answered
/// 408; a connection that sent nothing is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How much later hyper's own header-read limit strikes, a backstop behind the one `guard`
/// enforces with an answer (where hyper would close without one).
const HYPER_HEADER_READ_MARGIN: Duration = Duration::from_secs(5);
/// How long a client may take to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub const X_CLIENT_CERT: HeaderName = HeaderName::from_static("x-client-cert");

/// What a listener needs besides its router: TLS (if configured) and the proxies whose
/// `X-Forwarded-For` and `X-Client-Cert` are believed.
#[derive(Clone, Debug)]
pub struct Transport {
    pub port: tls::Port,
    pub tls: Option<Arc<Tls>>,
    pub trusted_proxies: Arc<[Cidr]>,
    /// [`HEADER_READ_TIMEOUT`], unless a test wants it shorter.
    pub header_read_timeout: Duration,
}

impl Transport {
    pub fn plain(port: tls::Port) -> Self {
        Self { port, tls: None, trusted_proxies: Arc::from([]), header_read_timeout: HEADER_READ_TIMEOUT }
    }
}

/// The address the connection came from, whatever `X-Forwarded-For` says; handlers see
/// the client's address in `ConnectInfo`.
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

/// What is known about a connection once it is set up.
#[derive(Clone, Debug)]
struct Peer {
    addr: SocketAddr,
    trusted_proxy: bool,
    cert: Option<Arc<ClientCert>>,
    client_ca: Option<Arc<ClientCa>>,
    trusted_proxies: Arc<[Cidr]>,
}

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// lets in-flight requests finish for at most `grace`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    transport: Transport,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> std::io::Result<()> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(transport.header_read_timeout + HYPER_HEADER_READ_MARGIN)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Typically EMFILE: back off instead of spinning.
                    tracing::warn!(event = "accept_failed", error = %err);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            addr,
            trusted_proxy: transport.trusted_proxies.iter().any(|cidr| cidr.contains(addr.ip())),
            cert: None,
            client_ca: None,
            trusted_proxies: transport.trusted_proxies.clone(),
        };
        let watcher = graceful.watcher();
        let loaded = transport.tls.as_ref().map(|tls| tls.current());
        let server_config = loaded.as_ref().and_then(|loaded| loaded.server_config(transport.port));
        let peer = Peer { client_ca: loaded.and_then(|loaded| loaded.client_ca.clone()), ..peer };
        match server_config {
            None => serve_connection(&builder, watcher, stream, router.clone(), peer, transport.header_read_timeout),
            Some(server_config) => {
                let (builder, router, timeout) = (builder.clone(), router.clone(), transport.header_read_timeout);
                tokio::spawn(async move {
                    if let Some((stream, peer)) = handshake(stream, peer, server_config).await {
                        serve_connection(&builder, watcher, stream, router, peer, timeout);
                    }
                });
            }
        }
    }

    drop(listener);
    let open = graceful.count();
    tracing::info!(event = "draining", open_connections = open, grace_seconds = grace.as_secs());
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(event = "drain_timeout", grace_seconds = grace.as_secs());
    }
    Ok(())
}

/// The TLS handshake, bounded in time; then the client certificate, if any, is checked
/// against the client CA. `None` when the handshake fails (logged at debug: scanners and
/// plain-HTTP clients on a TLS port are common).
async fn handshake(
    stream: TcpStream,
    mut peer: Peer,
    server_config: Arc<rustls::ServerConfig>,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Peer)> {
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config);
    let stream = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(err)) => {
            tracing::debug!(event = "tls_handshake_failed", peer = %peer.addr, error = %err);
            return None;
        }
        Err(_) => {
            tracing::debug!(event = "tls_handshake_timeout", peer = %peer.addr);
            return None;
        }
    };
    if let (Some(ca), Some(chain)) = (&peer.client_ca, stream.get_ref().1.peer_certificates()) {
        match ca.verify(chain) {
            Ok(cert) => peer.cert = Some(Arc::new(cert)),
            Err(err) => tracing::warn!(event = "client_cert_rejected", peer = %peer.addr, reason = %err),
        }
    }
    Some((stream, peer))
}

fn serve_connection<I>(
    builder: &Builder<TokioExecutor>,
    watcher: Watcher,
    io: I,
    router: Router,
    peer: Peer,
    header_read_timeout: Duration,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let requests = Arc::new(guard::Requests::default());
    let io = TokioIo::new(guard::Guarded::new(io, requests.clone(), peer.addr, header_read_timeout));
    let service = TowerToHyperService::new(with_peer(router, peer, requests));
    let connection = watcher.watch(builder.serve_connection(io, service).into_owned());
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!(event = "connection_error", error = %err);
        }
    });
}

/// The router, given what is known of the connection, and counting the requests it
/// answers for `guard`.
fn with_peer(
    router: Router,
    peer: Peer,
    requests: Arc<guard::Requests>,
) -> impl tower::Service<
    Request<Incoming>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let finished = requests.clone();
    ServiceExt::<Request<Body>>::map_response(router, move |response: axum::response::Response| {
        let finished = guard::Finished(finished.clone());
        response.map(|body| Body::new(guard::TrackedBody { body, _finished: finished }))
    })
    .map_request(move |request: Request<Incoming>| {
        requests.start();
        let mut request = request.map(Body::new);
        let (client, cert) = believe(request.headers_mut(), &peer);
        let extensions = request.extensions_mut();
        extensions.insert(ConnectInfo(client));
        extensions.insert(PeerAddr(peer.addr));
        if let Some(cert) = cert {
            extensions.insert(cert);
        }
        request
    })
}

/// The client's address and certificate as far as they can be believed: from a trusted
/// proxy, its `X-Forwarded-For` and `X-Client-Cert` (which must still chain to the client
/// CA); from anyone else, the connection's own, with those headers dropped and logged.
fn believe(headers: &mut HeaderMap, peer: &Peer) -> (SocketAddr, Option<Arc<ClientCert>>) {
    if !headers.contains_key(&X_FORWARDED_FOR) && !headers.contains_key(&X_CLIENT_CERT) {
        return (peer.addr, peer.cert.clone());
    }
    if !peer.trusted_proxy {
        for name in [&X_FORWARDED_FOR, &X_CLIENT_CERT] {
            if headers.remove(name).is_some() {
                tracing::warn!(event = "untrusted_forwarding_header", header = name.as_str(), peer = %peer.addr);
            }
        }
        return (peer.addr, peer.cert.clone());
    }
    let client = forwarded_client(headers, &peer.trusted_proxies).map_or(peer.addr, |ip| SocketAddr::new(ip, 0));
    let mut cert = peer.cert.clone();
    if let Some(value) = headers.remove(&X_CLIENT_CERT) {
        let verified = match (&peer.client_ca, value.to_str()) {
            (Some(ca), Ok(text)) => ca.verify_forwarded(text).map_err(|err| err.to_string()),
            (Some(_), Err(_)) => Err("X-Client-Cert is not text".to_owned()),
            (None, _) => Err("there is no TLS_CLIENT_CA_FILE to verify X-Client-Cert with".to_owned()),
        };
        cert = match verified {
            Ok(verified) => Some(Arc::new(verified)),
            Err(reason) => {
                tracing::warn!(event = "client_cert_rejected", peer = %peer.addr, header = "x-client-cert", reason);
                None
            }
        };
    }
    (client, cert)
}

/// The right-most `X-Forwarded-For` address that is not itself a trusted proxy (the
/// left-most when all are); `None` when the header does not parse.
fn forwarded_client(headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in headers.get_all(&X_FORWARDED_FOR) {
        for hop in value.to_str().ok()?.split(',') {
            hops.push(hop.trim().parse().ok()?);
        }
    }
    hops.iter().rev().find(|ip| !trusted.iter().any(|cidr| cidr.contains(**ip))).or(hops.first()).copied()
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is
/// called, not when the future is first polled: a signal that arrives right after
/// start-up must not kill the process with the default action.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let terminate = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        let (mut terminate, mut interrupt) = match (terminate, interrupt) {
            (Ok(terminate), Ok(interrupt)) => (terminate, interrupt),
            (Err(err), _) | (_, Err(err)) => {
                tracing::error!(event = "signal_handler_failed", error = %err);
                return std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!(event = "shutdown_requested");
    }
}
