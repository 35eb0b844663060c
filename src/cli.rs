//! Subcommands: `killkrill create-user` creates a user (the first admin of a production
//! install, which never gets a default password).

use std::{io::BufRead, sync::Arc};

use crate::{
    auth::roles,
    config::{Command, Config, CreateUserArgs, HealthcheckArgs},
    error::AppError,
    service::audit::AuditMeta,
    service::identity::Identity,
    service::identity::admin::UserInput,
};

/// Runs a subcommand against the configured database.
pub async fn run(config: Config, command: Command) -> anyhow::Result<()> {
    match command {
        Command::CreateUser(args) => create_user(config, args).await,
        Command::Healthcheck(args) => healthcheck(&config, &args).await,
    }
}

/// An HTTP/1.1 GET on the configured port of this host (the bind address, or loopback
/// when it binds every interface); over TLS when `TLS_CERT_FILE` is set, since the port then
/// speaks nothing else.
async fn healthcheck(config: &Config, args: &HealthcheckArgs) -> anyhow::Result<()> {
    let host = if config.host.is_unspecified() { std::net::IpAddr::from([127, 0, 0, 1]) } else { config.host };
    let address = std::net::SocketAddr::new(host, config.port);
    let request = format!("GET {} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n", args.path);
    let probe = async {
        let stream = tokio::net::TcpStream::connect(address).await?;
        if config.tls_cert_file.is_none() {
            return first_bytes(stream, &request).await;
        }
        crate::install_crypto_provider();
        let tls = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(OwnCertificate(rustls::crypto::ring::default_provider())))
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::IpAddress(host.into());
        let stream = tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, stream).await?;
        first_bytes(stream, &request).await
    };
    let head = tokio::time::timeout(std::time::Duration::from_secs(args.timeout), probe)
        .await
        .map_err(|_| anyhow::anyhow!("healthcheck: {address}{} did not answer in {}s", args.path, args.timeout))?
        .map_err(|err| anyhow::anyhow!("healthcheck: {address}{}: {err}", args.path))?;
    if head.starts_with("HTTP/1.1 200") {
        Ok(())
    } else if !head.starts_with("HTTP/") && config.tls_cert_file.is_none() {
        // A TLS record (an alert) to a plain request: the port speaks TLS.
        Err(anyhow::anyhow!(
            "healthcheck: {address}{} answered with no HTTP; if the port serves TLS, give the probe TLS_CERT_FILE too",
            args.path
        ))
    } else {
        let status = head.lines().next().unwrap_or("nothing");
        let printable: String = status.chars().filter(|c| !c.is_control()).collect();
        Err(anyhow::anyhow!("healthcheck: {address}{} answered {printable}", args.path))
    }
}

/// Sends `request` and returns the start of the answer.
async fn first_bytes(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    request: &str,
) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request.as_bytes()).await?;
    let mut head = vec![0; 64];
    let read = stream.read(&mut head).await?;
    Ok(String::from_utf8_lossy(&head[..read]).into_owned())
}

/// The health probe talks to its own process on this host and sends no credentials, so
/// it accepts whatever certificate the port shows (which may be issued for a public name
/// and chain to a CA this container does not hold); the handshake signature is still checked.
#[derive(Debug)]
struct OwnCertificate(rustls::crypto::CryptoProvider);

impl rustls::client::danger::ServerCertVerifier for OwnCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn create_user(config: Config, args: CreateUserArgs) -> anyhow::Result<()> {
    let roles =
        roles::parse_list("--role", &args.roles).map_err(|err| anyhow::anyhow!("create-user: {}", said(err)))?;
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password)?;
    let input = UserInput {
        username: args.username,
        email: args.email,
        password: password.trim_end_matches(['\r', '\n']).to_owned(),
        first_name: String::new(),
        last_name: String::new(),
        roles: Some(roles),
        active: None,
    };
    let db = crate::storage::migrate::open(&config).await?;
    let identity = Identity::new(db.conn().clone(), &config);
    let meta = AuditMeta { correlation_id: format!("cli-{}", uuid::Uuid::new_v4()), ..AuditMeta::default() };
    let result = identity.create_user(input, &meta).await;
    db.close().await;
    let user = result.map_err(|err| anyhow::anyhow!("create-user: {}", said(err)))?;
    println!("{}", serde_json::to_string(&user)?);
    Ok(())
}

/// A service error as one line for the terminal, naming each invalid field.
fn said(err: AppError) -> String {
    match err {
        AppError::Validation(details) => {
            details.iter().map(|d| format!("{}: {}", d.field, d.message)).collect::<Vec<_>>().join("; ")
        }
        other => other.to_string(),
    }
}
