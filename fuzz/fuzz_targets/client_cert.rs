//! The `X-Client-Cert` header a TLS-terminating proxy forwards: URL-encoded PEM read into
//! certificates, and the identity read out of each. Inputs starting with 0x30 (a DER
//! SEQUENCE) are also read as one certificate's DER directly.
#![no_main]

use killkrill::tls;
use libfuzzer_sys::fuzz_target;
use rustls::pki_types::CertificateDer;

fuzz_target!(|data: &[u8]| {
    if data.first() == Some(&0x30) {
        let _ = tls::identity_of(&CertificateDer::from(data));
    }
    let header = String::from_utf8_lossy(data);
    if let Ok(chain) = tls::forwarded_chain(&header) {
        for cert in &chain {
            let _ = tls::identity_of(cert);
        }
    }
});
