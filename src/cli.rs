//! Subcommands: `killkrill create-user` creates a user (the first admin of a production
//! install, which never gets a default password).

use std::{io::BufRead, sync::Arc};

use crate::{
    auth::Role,
    bootstrap::{self, CreateUserError},
    config::Config,
    db::Database,
    identity::Identity,
};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a user; the password is read from standard input (one line).
    CreateUser(CreateUserArgs),
    /// Exit 0 if the server on this machine answers `GET /livez` with 200, else 1.
    /// For container HEALTHCHECKs on images without curl.
    Healthcheck(HealthcheckArgs),
}

#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// Path to probe.
    #[arg(long, default_value = "/livez")]
    pub path: String,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
}

#[derive(Debug, clap::Args)]
pub struct CreateUserArgs {
    #[arg(long)]
    pub username: String,
    #[arg(long)]
    pub email: String,
    /// Role to grant (repeatable): admin, maintainer or viewer.
    #[arg(long = "role", default_value = "viewer")]
    pub roles: Vec<String>,
    /// Read the password from standard input (required: passwords never go on the command line).
    #[arg(long, required = true)]
    pub password_stdin: bool,
}

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
    let roles = args
        .roles
        .iter()
        .map(|name| {
            Role::parse(name)
                .ok_or_else(|| anyhow::anyhow!("--role: unknown role `{name}` (admin, maintainer, viewer)"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    let db = Database::open(&config).await?;
    let identity = Identity::new(db.conn().clone(), &config);
    let result = bootstrap::create_user(&identity, &args.username, &args.email, roles, password).await;
    db.close().await;
    match result {
        Ok(user) => {
            println!("{}", serde_json::to_string(&user)?);
            Ok(())
        }
        Err(CreateUserError::Invalid(message)) => Err(anyhow::anyhow!("create-user: {message}")),
        Err(err) => Err(anyhow::anyhow!("create-user: {err}")),
    }
}
