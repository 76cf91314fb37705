//! TLS: the client trusts Tessera's certificate through a CA file, as
//! `TESSERA_CA` names it.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use tessera_client::{Client, Error, Mint, Validate};

use crate::support::Server;

/// A CA's PEM, and a certificate for 127.0.0.1 and localhost it signed
/// (PEM certificate and key).
fn certificates() -> (String, String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "tessera-client test CA");
    let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (issuer.pem(), cert.pem(), key.serialize_pem())
}

#[tokio::test]
async fn calls_over_tls_trusting_a_ca_file() {
    let (ca, cert, key) = certificates();
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (ca_file, cert_file, key_file) = (
        write("ca.crt", &ca),
        write("tls.crt", &cert),
        write("tls.key", &key),
    );
    let server = Server::start_with(None, &["--tls-cert", &cert_file, "--tls-key", &key_file]);
    assert!(server.url.starts_with("https://"), "{}", server.url);

    let tessera = Client::builder(server.url.clone())
        .ca_file(&ca_file)
        .connect()
        .await
        .unwrap();
    let minted = tessera.mint(Mint::new("u")).await.unwrap();
    let check = tessera
        .validate(Validate::new(&minted.token))
        .await
        .unwrap();
    assert!(check.is_valid());

    // Without the CA, the certificate is not trusted.
    let untrusted = Client::builder(server.url.clone()).connect().await;
    assert!(matches!(untrusted, Err(Error::Connect(_))), "{untrusted:?}");
    // A CA file that is not there is a configuration error.
    let missing = Client::builder(server.url.clone())
        .ca_file(dir.path().join("nope.crt"))
        .connect()
        .await;
    assert!(matches!(missing, Err(Error::Config(_))), "{missing:?}");
}
