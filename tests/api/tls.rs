//! TLS on both ports, client certificates (mTLS), and the `X-Client-Cert` /
//! `X-Forwarded-For` headers of trusted proxies, over real sockets with certificates made
//! by rcgen in each test.

#![allow(clippy::unwrap_used)]

use std::{path::PathBuf, sync::Arc};

use crate::common::{Kind, TestDb, TestServer};
use killkrill::{auth::Role, config::Config};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use reqwest::{StatusCode, Version};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use serde_json::{Value, json};

/// A certificate authority of the test.
struct Ca(CertifiedIssuer<'static, KeyPair>);

/// A certificate and its key, as PEM.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Ca(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    fn server(&self) -> Leaf {
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        self.sign(params)
    }

    /// A client certificate with subject `cn`, optionally a SAN email, optionally expired.
    fn client(&self, cn: &str, email: Option<&str>, expired: bool) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        if let Some(email) = email {
            params.subject_alt_names.push(SanType::Rfc822Name(email.try_into().unwrap()));
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        Leaf { cert: cert.pem(), key: key.serialize_pem() }
    }
}

/// The server's files: its certificate and key, and the client CA.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        Files { dir: tempfile::tempdir().unwrap() }
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path: PathBuf = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    /// `config` serving TLS with `server`, and asking for client certificates of `client_ca`.
    fn tls(&self, mut config: Config, server: &Leaf, client_ca: Option<&Ca>) -> Config {
        config.tls_cert_file = Some(self.write("server.pem", &server.cert));
        config.tls_key_file = Some(self.write("server-key.pem", &server.key));
        config.tls_client_ca_file = client_ca.map(|ca| self.write("client-ca.pem", &ca.pem()));
        config
    }
}

/// A reqwest client trusting `server_ca`, offering `alpn`, presenting `identity`.
fn https_client(server_ca: &Ca, alpn: &[&[u8]], identity: Option<&Leaf>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(server_ca.pem().as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => {
            let chain = vec![CertificateDer::from_pem_slice(leaf.cert.as_bytes()).unwrap()];
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(leaf.key.as_bytes()).unwrap()).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    reqwest::Client::builder().tls_backend_preconfigured(config).build().unwrap()
}

const BOTH: &[&[u8]] = &[b"h2", b"http/1.1"];

fn https(server: &TestServer, path: &str) -> String {
    format!("https://localhost:{}{path}", server.addr.port())
}

/// Logs in over https; the access token.
async fn https_token(client: &reqwest::Client, server: &TestServer, user: &crate::common::TestUser) -> String {
    let response = client
        .post(https(server, "/api/v1/auth/login"))
        .json(&json!({"username": user.username, "password": user.password}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

/// `/api/v1/status` with `client`: the status code and the identity, if any.
async fn status_identity(client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    (status, body["identity"].clone())
}

async fn https_negotiates_http1_or_http2_and_plain_ports_speak_h2c() {
    let db = TestDb::create(Kind::Sqlite).await;
    let (ca, files) = (Ca::new("server ca"), Files::new());
    let server = TestServer::start(files.tls(db.config(), &ca.server(), None)).await;
    for (alpn, version) in [(&[b"http/1.1" as &[u8]][..], Version::HTTP_11), (&[b"h2" as &[u8]][..], Version::HTTP_2)] {
        let response = https_client(&ca, alpn, None).get(https(&server, "/healthz")).send().await.unwrap();
        assert_eq!((response.status(), response.version()), (StatusCode::OK, version));
    }
    // Plain HTTP to the TLS port gets no answer; the server carries on.
    assert!(reqwest::Client::new().get(server.url("/healthz")).send().await.is_err());
    let again = https_client(&ca, BOTH, None).get(https(&server, "/livez")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    server.stop().await.unwrap();

    let plain = TestServer::start(db.config()).await;
    let h2c = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let response = h2c.get(plain.url("/healthz")).send().await.unwrap();
    assert_eq!((response.status(), response.version()), (StatusCode::OK, Version::HTTP_2));
    plain.stop().await.unwrap();
}

async fn client_certificates_authenticate_known_users_only(db: TestDb) {
    let (server_ca, client_ca, stranger_ca, files) =
        (Ca::new("server"), Ca::new("clients"), Ca::new("stranger"), Files::new());
    let server = TestServer::start(files.tls(db.config(), &server_ca.server(), Some(&client_ca))).await;
    let carol = server.create_user("carol", &[Role::Maintainer]).await;
    let dave = server.create_user("dave", &[Role::Viewer]).await;
    let status = https(&server, "/api/v1/status");

    // By subject CN (= username), and by SAN email (= the user's email).
    let by_cn = https_client(&server_ca, BOTH, Some(&client_ca.client("carol", None, false)));
    let (code, identity) = status_identity(&by_cn, &status).await;
    assert_eq!(code, 200);
    assert_eq!(identity["username"], "carol");
    assert_eq!(identity["auth_method"], "mtls");
    assert_eq!(identity["roles"], json!(["maintainer"]));
    let by_email =
        https_client(&server_ca, BOTH, Some(&client_ca.client("Dave's laptop", Some("dave@example.test"), false)));
    let (code, identity) = status_identity(&by_email, &status).await;
    assert_eq!((code.as_u16(), identity["username"].as_str()), (200, Some("dave")));

    // Credentials in headers still come first: carol's cert with dave's token is dave.
    let token = https_token(&by_cn, &server, &dave).await;
    let response = by_cn.get(&status).bearer_auth(&token).send().await.unwrap();
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["identity"]["username"].as_str(), body["identity"]["auth_method"].as_str()),
        (Some("dave"), Some("jwt"))
    );

    // Unknown CN, another CA, expired, no certificate: a connection, but no identity.
    for (what, client) in [
        ("unknown CN", https_client(&server_ca, BOTH, Some(&client_ca.client("mallory", None, false)))),
        ("other CA", https_client(&server_ca, BOTH, Some(&stranger_ca.client("carol", None, false)))),
        ("expired", https_client(&server_ca, BOTH, Some(&client_ca.client("carol", None, true)))),
        ("no certificate", https_client(&server_ca, BOTH, None)),
    ] {
        let health = client.get(https(&server, "/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200, "{what}: public routes still answer");
        let response = client.get(&status).send().await.unwrap();
        assert_eq!(response.status(), 401, "{what}");
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
    }

    // A deactivated user's certificate stops working (after the short identity cache).
    let admin = server.create_user("root", &[Role::Admin]).await;
    let admin_token = https_token(&by_cn, &server, &admin).await;
    let response = https_client(&server_ca, BOTH, None)
        .put(https(&server, &format!("/api/v1/users/{}", carol.id)))
        .bearer_auth(&admin_token)
        .json(&json!({"active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        crate::common::eventually(std::time::Duration::from_secs(5), || async {
            by_cn.get(&status).send().await.unwrap().status() == 401
        })
        .await
    );
    server.stop().await.unwrap();
}

cases! {
    on_all_databases: client_certificates_authenticate_known_users_only;
    tokio_multi_thread:
        https_negotiates_http1_or_http2_and_plain_ports_speak_h2c,
        grpc_serves_tls_and_client_certificates,
        forwarded_headers_are_believed_from_trusted_proxies_only,
        certificates_reload_without_a_restart;
}

async fn grpc_serves_tls_and_client_certificates() {
    use killkrill::grpc::proto::{WhoAmIRequest, auth_service_client::AuthServiceClient};
    use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

    let db = TestDb::create(Kind::Sqlite).await;
    let (server_ca, client_ca, files) = (Ca::new("server"), Ca::new("clients"), Files::new());
    let server = TestServer::start(files.tls(db.config(), &server_ca.server(), Some(&client_ca))).await;
    server.create_user("carol", &[Role::Viewer]).await;
    let channel = |identity: Option<Leaf>| {
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(server_ca.pem())).domain_name("localhost");
        if let Some(leaf) = identity {
            tls = tls.identity(Identity::from_pem(leaf.cert, leaf.key));
        }
        let endpoint = Endpoint::from_shared(format!("https://127.0.0.1:{}", server.grpc_addr.port())).unwrap();
        endpoint.tls_config(tls).unwrap()
    };
    let with_cert = channel(Some(client_ca.client("carol", None, false))).connect().await.unwrap();
    let me = AuthServiceClient::new(with_cert).who_am_i(WhoAmIRequest {}).await.unwrap().into_inner();
    assert_eq!((me.username.as_str(), me.auth_method.as_str()), ("carol", "mtls"));
    let without = channel(None).connect().await.unwrap();
    let refused = AuthServiceClient::new(without).who_am_i(WhoAmIRequest {}).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    // Plain h2c to the TLS gRPC port does not work.
    let plain = Endpoint::from_shared(format!("http://127.0.0.1:{}", server.grpc_addr.port())).unwrap().connect().await;
    match plain {
        Err(_) => {}
        Ok(channel) => assert!(AuthServiceClient::new(channel).who_am_i(WhoAmIRequest {}).await.is_err()),
    }
    server.stop().await.unwrap();
}

async fn forwarded_headers_are_believed_from_trusted_proxies_only() {
    let (client_ca, stranger_ca, files) = (Ca::new("clients"), Ca::new("stranger"), Files::new());
    let ca_file = files.write("client-ca.pem", &client_ca.pem());
    let encode =
        |leaf: &Leaf| percent_encoding::utf8_percent_encode(&leaf.cert, percent_encoding::NON_ALPHANUMERIC).to_string();
    let carol_cert = encode(&client_ca.client("carol", None, false));
    let stranger_cert = encode(&stranger_ca.client("carol", None, false));

    for trusted in [true, false] {
        // Behind a TLS-terminating proxy: plain ports, the client CA to check X-Client-Cert.
        let db = TestDb::create(Kind::Sqlite).await;
        let mut config = db.config();
        config.tls_client_ca_file = Some(ca_file.clone());
        if trusted {
            config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        }
        let server = TestServer::start(config).await;
        server.create_user("carol", &[Role::Maintainer]).await;
        let admin = server.create_user("root", &[Role::Admin]).await;
        let token = server.token(&admin).await;
        let status = |cert: &str| server.client.get(server.url("/api/v1/status")).header("x-client-cert", cert).send();
        let response = status(&carol_cert).await.unwrap();
        if trusted {
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            assert_eq!(
                (body["identity"]["username"].as_str(), body["identity"]["auth_method"].as_str()),
                (Some("carol"), Some("mtls"))
            );
        } else {
            assert_eq!(response.status(), 401, "an untrusted peer's X-Client-Cert is ignored");
        }
        assert_eq!(status(&stranger_cert).await.unwrap().status(), 401, "it must still chain to the client CA");
        assert_eq!(status("garbage").await.unwrap().status(), 401);

        // X-Forwarded-For decides the client address, e.g. for a source's allowed CIDRs.
        let source: Value = server
            .authed(reqwest::Method::POST, "/api/v1/sources", &token)
            .json(&json!({"name": "edge", "type": "http", "allowed_cidrs": ["203.0.113.0/24"]}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = source["id"].as_str().unwrap();
        let (_, key) = server.create_ingest_key(&token, id).await;
        let ingest = |forwarded: Option<&str>| {
            let mut request = server
                .client
                .post(server.url("/api/v1/logs"))
                .header("x-api-key", &key)
                .json(&json!({"source_id": id, "logs": [{"message": "hi"}]}));
            if let Some(forwarded) = forwarded {
                request = request.header("x-forwarded-for", forwarded);
            }
            request.send()
        };
        let forwarded = ingest(Some("198.51.100.1, 203.0.113.9")).await.unwrap().status();
        assert_eq!(forwarded, if trusted { 202 } else { 403 }, "trusted: {trusted}");
        assert_eq!(ingest(None).await.unwrap().status(), 403, "127.0.0.1 is not in the allowed CIDRs");
        assert_eq!(ingest(Some("not an address")).await.unwrap().status(), 403);
        server.stop().await.unwrap();
    }
}

async fn certificates_reload_without_a_restart() {
    let db = TestDb::create(Kind::Sqlite).await;
    let (old_ca, new_ca, files) = (Ca::new("old"), Ca::new("new"), Files::new());
    let config = files.tls(db.config(), &old_ca.server(), None);
    let app = killkrill::build(config.clone(), killkrill::telemetry::LogLevelHandle::detached(config.log_level))
        .await
        .unwrap();
    let tls = app.tls().unwrap().clone();
    let server = TestServer::serve(app).await;
    let old_client = https_client(&old_ca, BOTH, None);
    let new_client = https_client(&new_ca, BOTH, None);
    assert_eq!(old_client.get(https(&server, "/livez")).send().await.unwrap().status(), 200);
    assert!(new_client.get(https(&server, "/livez")).send().await.is_err());

    let replacement = new_ca.server();
    files.write("server.pem", &replacement.cert);
    files.write("server-key.pem", &replacement.key);
    tls.reload().unwrap();
    assert_eq!(new_client.get(https(&server, "/livez")).send().await.unwrap().status(), 200);
    // A broken file keeps the working certificate in use.
    files.write("server-key.pem", "broken");
    assert!(tls.reload().unwrap_err().to_string().starts_with("TLS_KEY_FILE"));
    let fresh = https_client(&new_ca, BOTH, None);
    assert_eq!(fresh.get(https(&server, "/livez")).send().await.unwrap().status(), 200);
    server.stop().await.unwrap();
}
