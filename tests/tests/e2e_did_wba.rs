//! DID-WBA end to end: receivers sign their WebSocket handshake with their
//! DID key; the gateway verifies it, asks the registry what the DID may
//! serve, and grants exactly that. Every kind of impostor is refused before
//! the upgrade, with the reason counted in /metrics.
//!
//! Every scenario runs on every (gateway shell, receiver shell) pair, or on
//! both gateways where the test plays the receiver by hand.

#[macro_use]
mod support;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anpx_core::auth::{build_header, generate_did_document, KeyMaterial};
use anpx_core::registry::StaticRegistry;
use shell_common::did_credentials::DidCredentials;
use shell_common::{Credentials, Status};
use support::pairs::{Gw, Rx, Shell};
use support::*;

const DID: &str = "did:wba:didhost.cc:anpproxy1";
const OTHER_DID: &str = "did:wba:didhost.cc:anpproxy2";

fn vectors() -> PathBuf {
    anpx_tests::testdata_dir().join("did-wba-vectors")
}

/// A gateway in DID-WBA mode: documents from the vectors folder, grants from
/// a static registry (anpproxy1 → api.agent.com/one, anpproxy2 → api.agent.com/two).
async fn did_gateway(shell: Shell) -> Gw {
    let registry = StaticRegistry::new([
        (DID.to_owned(), "api.agent.com/one".parse().unwrap()),
        (OTHER_DID.to_owned(), "api.agent.com/two".parse().unwrap()),
    ]);
    Gw::start_did_wba(shell, vectors(), Arc::new(registry)).await
}

fn signed_receiver(
    shell: Shell,
    gateway: std::net::SocketAddr,
    backend: std::net::SocketAddr,
    creds: Arc<dyn Credentials>,
    services: &[&str],
) -> Rx {
    Rx::spawn(shell, gateway, backend, services, Some(creds))
}

/// A header built by `make` for every attempt, so a test can forge them.
struct Forged(Box<dyn Fn(&str) -> String + Send + Sync>);

impl Credentials for Forged {
    fn authorization(&self, service: &str) -> Result<String, String> {
        Ok((self.0)(service))
    }
}

async fn refusals(gw: &Gw, reason: &str) -> u64 {
    counted(gw, "anpx_receiver_auth_refused_total", reason).await
}

/// The value of `series{reason="…"}` on the gateway's `/metrics` (0 when
/// absent).
async fn counted(gw: &Gw, series: &str, reason: &str) -> u64 {
    let m = send(gw.admin_addr(), "GET", "x", "/metrics", "").await;
    let text = String::from_utf8_lossy(&m.body).into_owned();
    let needle = format!("{series}{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&needle))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0)
}

async fn wait_refused(gw: &Gw, reason: &str) {
    for _ in 0..100 {
        if refusals(gw, reason).await > 0 {
            assert_eq!(gw.stats().await.links.len(), 0, "refused yet connected");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no refusal counted for {reason}");
}

fn real_credentials() -> Arc<DidCredentials> {
    let dir = vectors();
    Arc::new(
        DidCredentials::load(
            &dir.join("secp256k1-did.json"),
            &dir.join("secp256k1-key-1_private.pem"),
        )
        .unwrap(),
    )
}

async fn a_signed_receiver_gets_exactly_its_registered_routes(gw_shell: Shell, rx_shell: Shell) {
    let backend = start_backend().await;
    let gw = did_gateway(gw_shell).await;
    let creds = real_credentials();
    assert_eq!(creds.did(), DID);
    let rx = signed_receiver(rx_shell, gw.addr(), backend, creds, &[]);
    let status = tokio::time::timeout(Duration::from_secs(10), rx.wait_ready())
        .await
        .unwrap();
    let Status::Connected { granted, .. } = status else {
        panic!("{status:?}")
    };
    assert_eq!(granted, ["api.agent.com/one"]);
    let stats = gw.stats().await;
    assert_eq!(
        stats.links[0].identity,
        anpx_core::Identity::Did(DID.into())
    );
    assert_eq!(
        send(gw.addr(), "GET", "api.agent.com", "/one/x", "")
            .await
            .status,
        200
    );
    assert_eq!(
        send(gw.addr(), "GET", "api.agent.com", "/two/x", "")
            .await
            .status,
        404
    );
    rx.shutdown().await;
}

async fn declaring_another_dids_service_url_is_refused(gw_shell: Shell, rx_shell: Shell) {
    let backend = start_backend().await;
    let gw = did_gateway(gw_shell).await;
    let rx = signed_receiver(
        rx_shell,
        gw.addr(),
        backend,
        real_credentials(),
        &["api.agent.com/two"],
    );
    // 403: retrying cannot fix it, so the receiver stops at once.
    let status = tokio::time::timeout(Duration::from_secs(2), rx.wait_ready())
        .await
        .expect("the refused receiver stops at once");
    assert!(
        matches!(&status, Status::Stopped(why) if why.contains("refused the connection with 403")),
        "{status:?}"
    );
    assert_eq!(gw.stats().await.links.len(), 0);
    // Counted like every handshake refusal, not only authentication's.
    assert_eq!(
        counted(
            &gw,
            "anpx_receiver_handshakes_refused_total",
            "nothing_granted"
        )
        .await,
        1
    );
    assert_eq!(
        send(gw.addr(), "GET", "api.agent.com", "/two/x", "")
            .await
            .status,
        404
    );
    rx.shutdown().await;
}

async fn no_authorization_header_is_refused(gw_shell: Shell, rx_shell: Shell) {
    let backend = start_backend().await;
    let gw = did_gateway(gw_shell).await;
    let rx = Rx::spawn(rx_shell, gw.addr(), backend, &[], None);
    wait_refused(&gw, "missing_authorization").await;
    rx.shutdown().await;
}

async fn a_key_that_is_not_the_dids_is_refused(gw_shell: Shell, rx_shell: Shell) {
    let backend = start_backend().await;
    let gw = did_gateway(gw_shell).await;
    // An impostor's own document claiming the DID, with its own key.
    let (doc, pem) = generate_did_document(
        "didhost.cc",
        Some("anpproxy1"),
        KeyMaterial::Secp256k1([7; 32]),
    )
    .unwrap();
    let forged = Forged(Box::new(move |service| {
        build_header(
            doc.as_bytes(),
            &pem,
            service,
            SystemTime::now(),
            fastrand::u128(..).to_le_bytes(),
        )
        .unwrap()
    }));
    let rx = signed_receiver(rx_shell, gw.addr(), backend, Arc::new(forged), &[]);
    wait_refused(&gw, "bad_signature").await;
    rx.shutdown().await;
}

async fn an_expired_timestamp_is_refused(gw_shell: Shell, rx_shell: Shell) {
    let backend = start_backend().await;
    let gw = did_gateway(gw_shell).await;
    let dir = vectors();
    let doc = std::fs::read(dir.join("secp256k1-did.json")).unwrap();
    let pem = std::fs::read_to_string(dir.join("secp256k1-key-1_private.pem")).unwrap();
    let forged = Forged(Box::new(move |service| {
        let ten_minutes_ago = SystemTime::now() - Duration::from_secs(600);
        build_header(
            &doc,
            &pem,
            service,
            ten_minutes_ago,
            fastrand::u128(..).to_le_bytes(),
        )
        .unwrap()
    }));
    let rx = signed_receiver(rx_shell, gw.addr(), backend, Arc::new(forged), &[]);
    wait_refused(&gw, "expired").await;
    rx.shutdown().await;
}

async fn a_replayed_header_is_refused(gw_shell: Shell, rx_shell: Shell) {
    use async_tungstenite::tungstenite::client::IntoClientRequest;
    let backend = start_backend().await;
    let gw = did_gateway(gw_shell).await;
    let dir = vectors();
    let doc = std::fs::read(dir.join("secp256k1-did.json")).unwrap();
    let pem = std::fs::read_to_string(dir.join("secp256k1-key-1_private.pem")).unwrap();
    // The genuine receiver's header is captured on its way out...
    let captured: Arc<Mutex<Option<String>>> = Arc::default();
    let tap = captured.clone();
    let creds = Forged(Box::new(move |service| {
        let header = build_header(
            &doc,
            &pem,
            service,
            SystemTime::now(),
            fastrand::u128(..).to_le_bytes(),
        )
        .unwrap();
        *tap.lock().unwrap() = Some(header.clone());
        header
    }));
    let rx = signed_receiver(rx_shell, gw.addr(), backend, Arc::new(creds), &[]);
    assert!(
        matches!(rx.wait_ready().await, Status::Connected { .. }),
        "the first use is genuine"
    );
    // ...and presented again by someone else, within the timestamp window.
    let header = captured.lock().unwrap().clone().unwrap();
    let mut request = format!("ws://{}/ws", gw.addr())
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", header.parse().unwrap());
    let status = match async_tungstenite::tokio::connect_async(request).await {
        Ok(_) => 101,
        Err(async_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    };
    assert_eq!(status, 401, "a replayed header must be refused");
    assert_eq!(refusals(&gw, "replayed_nonce").await, 1);
    assert_eq!(
        gw.stats().await.links.len(),
        1,
        "only the genuine receiver is connected"
    );
    rx.shutdown().await;
}

/// A header signed for a name the gateway does not answer to is refused
/// when `gateway.auth.service_names` is set; the receiver here dials
/// 127.0.0.1 and signs that.
async fn a_header_signed_for_another_service_name_is_refused(gw_shell: Shell, rx_shell: Shell) {
    let backend = start_backend().await;
    let registry = || {
        Arc::new(StaticRegistry::new([(
            DID.to_owned(),
            "api.agent.com/one".parse().unwrap(),
        )]))
    };
    let named = |names: &[&str]| anpx_core::auth::VerifierConfig {
        service_names: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    };
    let gw = Gw::start_did_wba_with(gw_shell, vectors(), registry(), named(&["gw.example"])).await;
    let rx = signed_receiver(rx_shell, gw.addr(), backend, real_credentials(), &[]);
    wait_refused(&gw, "wrong_service").await;
    rx.shutdown().await;

    let gw = Gw::start_did_wba_with(
        gw_shell,
        vectors(),
        registry(),
        named(&["gw.example", "127.0.0.1"]),
    )
    .await;
    let rx = signed_receiver(rx_shell, gw.addr(), backend, real_credentials(), &[]);
    let status = tokio::time::timeout(Duration::from_secs(10), rx.wait_ready())
        .await
        .unwrap();
    assert!(matches!(status, Status::Connected { .. }), "{status:?}");
    rx.shutdown().await;
}

async fn an_unknown_did_is_refused(gw_shell: Shell, rx_shell: Shell) {
    let backend = start_backend().await;
    let gw = did_gateway(gw_shell).await;
    // A DID whose document exists nowhere the gateway looks (the folder has
    // no such id; its https host does not resolve here).
    let (doc, pem) = generate_did_document(
        "unknown.invalid",
        Some("agent"),
        KeyMaterial::Ed25519([3; 32]),
    )
    .unwrap();
    let forged = Forged(Box::new(move |service| {
        build_header(
            doc.as_bytes(),
            &pem,
            service,
            SystemTime::now(),
            fastrand::u128(..).to_le_bytes(),
        )
        .unwrap()
    }));
    let rx = signed_receiver(rx_shell, gw.addr(), backend, Arc::new(forged), &[]);
    wait_refused(&gw, "document_unavailable").await;
    rx.shutdown().await;
}

/// The reference's newer gateway accepts a bare
/// `{"type":"authentication","data":{"did_token":"did:…"}}` message as a
/// login. Here identity comes from the signed handshake only: without one
/// there is no connection to send the message on, and a connection signed
/// as one DID that claims another keeps its own identity and routes.
async fn an_unsigned_authentication_message_gains_nothing_on_a_did_wba_gateway(shell: Shell) {
    use async_tungstenite::tungstenite::client::IntoClientRequest;
    use async_tungstenite::tungstenite::http::HeaderValue;
    use async_tungstenite::tungstenite::{Error as WsError, Message as WsMessage};
    use futures_util::StreamExt;

    let gw = did_gateway(shell).await;
    let addr = gw.addr();
    let connect = |authorization: Option<String>| async move {
        let mut request = format!("ws://{addr}/ws").into_client_request().unwrap();
        if let Some(a) = authorization {
            request
                .headers_mut()
                .insert("authorization", HeaderValue::from_str(&a).unwrap());
        }
        tokio::time::timeout(
            Duration::from_secs(10),
            async_tungstenite::tokio::connect_async(request),
        )
        .await
        .expect("handshake answered in time")
        .map(|(ws, _)| ws)
    };

    // No signature, no connection: nowhere to send the claim.
    match connect(None).await {
        Err(WsError::Http(r)) => assert_eq!(r.status().as_u16(), 401),
        Err(e) => panic!("refused without an HTTP answer: {e}"),
        Ok(_) => panic!("an unsigned receiver was admitted"),
    }

    // Signed as anpproxy1, which may serve api.agent.com/one only.
    let header = real_credentials().authorization("127.0.0.1").unwrap();
    let mut ws = connect(Some(header)).await.expect("the signed handshake");
    gw.wait_for_receivers(1).await;
    let before = gw.stats().await;
    assert_eq!(
        before.links[0].identity,
        anpx_core::Identity::Did(DID.into())
    );

    // It claims anpproxy2, which would grant api.agent.com/two.
    let claim = format!(r#"{{"type":"authentication","data":{{"did_token":"{OTHER_DID}"}}}}"#);
    ws.send(WsMessage::Text(claim.into())).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while gw.stats().await.totals.unsigned_auth_ignored == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the claim was never seen"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let after = gw.stats().await;
    assert_eq!(after.links.len(), 1);
    assert_eq!(after.links[0].id, before.links[0].id);
    assert_eq!(after.links[0].identity, before.links[0].identity);
    assert_eq!(after.links[0].routes, before.links[0].routes);
    assert_eq!(after.routes, before.routes);
    assert!(!format!("{after:?}").contains("anpproxy2"), "{after:?}");
    // Nothing of anpproxy2's is routed to this connection.
    assert_eq!(
        send(addr, "GET", "api.agent.com", "/two/x", "")
            .await
            .status,
        404
    );
    // The connection itself stays up: the message is ignored, not punished.
    ws.send(WsMessage::Text(r#"{"type":"ping","timestamp":1}"#.into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap();
    assert!(matches!(pong, Some(Ok(WsMessage::Text(_)))), "{pong:?}");
}

for_every_pair!(
    a_signed_receiver_gets_exactly_its_registered_routes,
    declaring_another_dids_service_url_is_refused,
    no_authorization_header_is_refused,
    a_key_that_is_not_the_dids_is_refused,
    an_expired_timestamp_is_refused,
    a_replayed_header_is_refused,
    an_unknown_did_is_refused,
    a_header_signed_for_another_service_name_is_refused,
);

for_every_gateway!(an_unsigned_authentication_message_gains_nothing_on_a_did_wba_gateway);
