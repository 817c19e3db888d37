//! TLS end to end: a gateway with a certificate from a private test CA,
//! a receiver dialing `wss://` that trusts that CA, and a public client over
//! `https://`.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use shell_tokio::receiver::{Receiver, Status};
use support::*;

struct TestPki {
    dir: PathBuf,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a server certificate for `localhost` / 127.0.0.1, as PEM files.
fn make_pki(name: &str) -> TestPki {
    let dir = std::env::temp_dir().join(format!("anpx-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let pki = TestPki {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
        dir,
    };
    std::fs::write(&pki.ca, ca.pem()).unwrap();
    std::fs::write(&pki.cert, server.pem()).unwrap();
    std::fs::write(&pki.key, server_key.serialize_pem()).unwrap();
    pki
}

async fn https_get(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    path: &str,
) -> (u16, bytes::Bytes) {
    let config = shell_tokio::tls::client_config(Some(ca)).unwrap();
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri(path)
        .header("host", "api.agent.com")
        .body(Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_and_https_with_a_private_ca() {
    let pki = make_pki("ok");
    let backend = start_backend().await;
    let tls = shell_tokio::tls::server_config(&pki.cert, &pki.key).unwrap();
    let gw = start_gateway(|o| o.tls = Some(tls)).await;
    let port = gw.public_addr().port();

    let mut options = receiver_options(gw.public_addr(), backend, &["api.agent.com/svc"]);
    options.gateway = format!("wss://localhost:{port}/ws");
    options.tls = Some(shell_tokio::tls::client_config(Some(&pki.ca)).unwrap());
    let rx = Receiver::spawn(options);
    let status = tokio::time::timeout(Duration::from_secs(10), rx.wait_ready())
        .await
        .unwrap();
    assert!(matches!(status, Status::Connected { .. }), "{status:?}");

    let (status, body) = https_get(gw.public_addr(), &pki.ca, "/svc/hello").await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), 0);
    rx.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_does_not_trust_the_gateway_does_not_connect() {
    let pki = make_pki("untrusted");
    let backend = start_backend().await;
    let tls = shell_tokio::tls::server_config(&pki.cert, &pki.key).unwrap();
    let gw = start_gateway(|o| o.tls = Some(tls)).await;
    let mut options = receiver_options(gw.public_addr(), backend, &["api.agent.com/svc"]);
    options.gateway = format!("wss://localhost:{}/ws", gw.public_addr().port());
    // System roots only: the private CA is unknown.
    options.tls = Some(shell_tokio::tls::client_config(None).unwrap());
    let rx = Receiver::spawn(options);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), rx.wait_ready())
            .await
            .is_err(),
        "connected without trusting the CA"
    );
    assert_eq!(gw.stats().await.unwrap().links.len(), 0);
    rx.shutdown().await;
}

#[test]
fn unreadable_tls_files_are_reported_with_their_path() {
    let err = shell_tokio::tls::server_config(
        "/nonexistent/cert.pem".as_ref(),
        "/nonexistent/key.pem".as_ref(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
}
