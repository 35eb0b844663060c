//! TLS for both ports and client certificates (mTLS).
//!
//! `TLS_CERT_FILE` + `TLS_KEY_FILE` make the HTTP and gRPC ports serve TLS; with
//! `TLS_CLIENT_CA_FILE` the server asks for a client certificate. The handshake accepts
//! any certificate whose key the client proves it holds; whether it chains to the CA (and
//! is within its validity) is checked right after, by [`ClientCa::verify`], so that an
//! unknown, expired or other-CA certificate gives a connection with no identity (and a
//! protected route answers 401) instead of a handshake failure the client cannot read.
//! The same check verifies the `X-Client-Cert` header a trusted proxy forwards.
//!
//! The files are read again on SIGHUP ([`Tls::reload`]); new connections use them, open
//! ones keep theirs.

use std::{
    fmt,
    sync::{Arc, RwLock},
};

use rustls::{
    DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme,
    client::danger::HandshakeSignatureValid,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject},
    server::{
        WebPkiClientVerifier,
        danger::{ClientCertVerified, ClientCertVerifier},
    },
};
use sha2::{Digest, Sha256};

use crate::config::Config;

/// Which listener a TLS configuration is for; they differ only in ALPN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Port {
    /// HTTP/1.1 and HTTP/2.
    Http,
    /// HTTP/2 only.
    Grpc,
}

/// A start-up (or reload) problem, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct TlsError {
    pub variable: &'static str,
    pub problem: String,
}

fn error(variable: &'static str, problem: impl fmt::Display) -> TlsError {
    TlsError { variable, problem: problem.to_string() }
}

/// The identity a verified client certificate carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub common_name: Option<String>,
    pub emails: Vec<String>,
    /// SHA-256 of the leaf certificate (DER), as hex; what logs may show.
    pub fingerprint: String,
}

impl ClientCert {
    /// The names a user may be looked up by: the CN, then each SAN email.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.common_name.iter().chain(self.emails.iter()).map(String::as_str)
    }
}

/// Why a presented certificate gives no identity.
#[derive(Debug, thiserror::Error)]
pub enum CertRejected {
    #[error("not a certificate: {0}")]
    Malformed(String),
    #[error("not accepted: {0}")]
    Invalid(rustls::Error),
}

/// The client CA: verifies chains and reads the identity out of the leaf.
pub struct ClientCa {
    verifier: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for ClientCa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientCa")
    }
}

impl ClientCa {
    fn load(path: &str, provider: &Arc<CryptoProvider>) -> Result<Self, TlsError> {
        const VAR: &str = "TLS_CLIENT_CA_FILE";
        let mut roots = RootCertStore::empty();
        for cert in read_certs(VAR, path)? {
            roots.add(cert).map_err(|e| error(VAR, format!("{path}: {e}")))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| error(VAR, format!("{path}: {e}")))?;
        Ok(Self { verifier })
    }

    /// Checks `chain` (leaf first) against the CA at the current time.
    pub fn verify(&self, chain: &[CertificateDer<'_>]) -> Result<ClientCert, CertRejected> {
        let (leaf, intermediates) = chain.split_first().ok_or(CertRejected::Malformed("empty chain".into()))?;
        self.verifier.verify_client_cert(leaf, intermediates, UnixTime::now()).map_err(CertRejected::Invalid)?;
        identity_of(leaf)
    }

    /// Verifies a PEM chain as a TLS-terminating proxy forwards it in `X-Client-Cert`
    /// (URL-encoded; a raw PEM is accepted too).
    pub fn verify_forwarded(&self, header: &str) -> Result<ClientCert, CertRejected> {
        self.verify(&forwarded_chain(header)?)
    }
}

/// The certificates (DER) of an `X-Client-Cert` header: URL-encoded PEM, or raw PEM.
pub fn forwarded_chain(header: &str) -> Result<Vec<CertificateDer<'static>>, CertRejected> {
    let pem = percent_encoding::percent_decode_str(header).decode_utf8_lossy();
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertRejected::Malformed(e.to_string()))
}

/// The identity (CN, SAN emails, fingerprint) a leaf certificate names; no verification.
pub fn identity_of(leaf: &CertificateDer<'_>) -> Result<ClientCert, CertRejected> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(leaf).map_err(|e| CertRejected::Malformed(e.to_string()))?;
    let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_owned);
    let emails = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::RFC822Name(email) => Some((*email).to_owned()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    Ok(ClientCert { common_name, emails, fingerprint: hex::encode(Sha256::digest(leaf.as_ref())) })
}

/// Lets the handshake finish with any client certificate whose key the client proves it
/// holds; [`ClientCa::verify`] decides afterwards whether it identifies anyone.
#[derive(Debug)]
struct DeferredVerifier {
    inner: Arc<dyn ClientCertVerifier>,
}

impl ClientCertVerifier for DeferredVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn read_certs(variable: &'static str, path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(variable, format!("cannot read {path}: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(variable, format!("{path}: {e}")))?;
    if certs.is_empty() {
        return Err(error(variable, format!("{path} holds no PEM certificate")));
    }
    Ok(certs)
}

/// One loaded set of files: a server configuration per port (when the ports serve TLS),
/// and the client CA (which also verifies `X-Client-Cert` behind a TLS-terminating proxy,
/// where the ports themselves are plain).
#[derive(Debug)]
pub struct Loaded {
    servers: Option<(Arc<ServerConfig>, Arc<ServerConfig>)>,
    pub client_ca: Option<Arc<ClientCa>>,
}

impl Loaded {
    fn load(paths: &Paths) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client_ca = paths.client_ca.as_deref().map(|p| ClientCa::load(p, &provider)).transpose()?;
        let servers = match &paths.pair {
            Some((cert, key)) => Some(server_configs(cert, key, &provider, client_ca.as_ref())?),
            None => None,
        };
        Ok(Self { servers, client_ca: client_ca.map(Arc::new) })
    }

    /// The server configuration of `port`, or `None` when the ports are plain.
    pub fn server_config(&self, port: Port) -> Option<Arc<ServerConfig>> {
        self.servers.as_ref().map(|(http, grpc)| match port {
            Port::Http => http.clone(),
            Port::Grpc => grpc.clone(),
        })
    }
}

fn server_configs(
    cert_path: &str,
    key_path: &str,
    provider: &Arc<CryptoProvider>,
    client_ca: Option<&ClientCa>,
) -> Result<(Arc<ServerConfig>, Arc<ServerConfig>), TlsError> {
    let certs = read_certs("TLS_CERT_FILE", cert_path)?;
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| {
        // rustls reads no encrypted key, and says only that it found none (PKCS#8) or
        // that the base64 is bad (the `Proc-Type: 4,ENCRYPTED` header of PKCS#1).
        let encrypted = std::fs::read(key_path).is_ok_and(|pem| memchr::memmem::find(&pem, b"ENCRYPTED").is_some());
        let problem = if encrypted { "the key is encrypted; give it unencrypted".to_owned() } else { e.to_string() };
        error("TLS_KEY_FILE", format!("cannot read a PEM private key from {key_path}: {problem}"))
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(rustls::DEFAULT_VERSIONS)
        .map_err(|e| error("TLS_CERT_FILE", e))?;
    let builder = match client_ca {
        Some(ca) => builder.with_client_cert_verifier(Arc::new(DeferredVerifier { inner: ca.verifier.clone() })),
        None => builder.with_no_client_auth(),
    };
    let base = builder
        .with_single_cert(certs, key)
        .map_err(|e| error("TLS_KEY_FILE", format!("{key_path} does not fit the certificate in {cert_path}: {e}")))?;
    let with_alpn = |protocols: &[&[u8]]| {
        let mut config = base.clone();
        config.alpn_protocols = protocols.iter().map(|p| p.to_vec()).collect();
        Arc::new(config)
    };
    Ok((with_alpn(&[b"h2", b"http/1.1"]), with_alpn(&[b"h2"])))
}

#[derive(Clone, Debug)]
struct Paths {
    /// `TLS_CERT_FILE`, `TLS_KEY_FILE`.
    pair: Option<(String, String)>,
    client_ca: Option<String>,
}

/// The TLS files in use; cheap to read on every accepted connection.
#[derive(Debug)]
pub struct Tls {
    paths: Paths,
    current: RwLock<Arc<Loaded>>,
}

impl Tls {
    /// `None` when no TLS variable is set; an error naming the variable when one is set
    /// wrongly (one of the pair missing, unreadable files, a key that does not fit the
    /// certificate). `TLS_CLIENT_CA_FILE` alone is fine: behind a TLS-terminating proxy
    /// it verifies the `X-Client-Cert` the proxy forwards.
    pub fn from_config(config: &Config) -> Result<Option<Arc<Tls>>, TlsError> {
        let pair = match (&config.tls_cert_file, &config.tls_key_file) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (Some(_), None) => return Err(error("TLS_KEY_FILE", "is required when TLS_CERT_FILE is set")),
            (None, Some(_)) => return Err(error("TLS_CERT_FILE", "is required when TLS_KEY_FILE is set")),
            (None, None) => None,
        };
        if pair.is_none() && config.tls_client_ca_file.is_none() {
            return Ok(None);
        }
        let paths = Paths { pair, client_ca: config.tls_client_ca_file.clone() };
        let loaded = Loaded::load(&paths)?;
        Ok(Some(Arc::new(Tls { paths, current: RwLock::new(Arc::new(loaded)) })))
    }

    /// Whether the ports serve TLS (not only verify forwarded client certificates).
    pub fn serves_tls(&self) -> bool {
        self.paths.pair.is_some()
    }

    pub fn current(&self) -> Arc<Loaded> {
        match self.current.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the files again; on failure the previous ones stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let loaded = Arc::new(Loaded::load(&self.paths)?);
        match self.current.write() {
            Ok(mut guard) => *guard = loaded,
            Err(poisoned) => *poisoned.into_inner() = loaded,
        }
        Ok(())
    }

    /// Reloads on every SIGHUP, logging the outcome.
    pub fn spawn_reload_on_sighup(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hangups = match signal(SignalKind::hangup()) {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::warn!(event = "signal_handler_failed", signal = "SIGHUP", error = %err);
                    return;
                }
            };
            while hangups.recv().await.is_some() {
                match tls.reload() {
                    Ok(()) => tracing::info!(event = "tls_reloaded"),
                    Err(err) => tracing::error!(event = "tls_reload_failed", error = %err),
                }
            }
        })
    }
}
