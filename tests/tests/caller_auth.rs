//! DID-WBA authentication of callers at the edge, on both gateways: a
//! route listed in `gateway.caller_auth.services` lets through only
//! callers that sign a `DIDWba` header (made here by the reference SDK) or
//! send the bearer token the gateway returned for one; the agent learns
//! the DID from a header no caller can forge; other routes are unaffected.

#[macro_use]
mod support;

use std::convert::Infallible;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anpx_core::auth::TokenKey;
use anpx_core::config::Config;
use shell_common::did_wba::DocumentIo;
use support::pairs::{Gw, Rx, Shell};
use support::*;

const DID: &str = "did:wba:didhost.cc:anpproxy1";
const HOST: &str = "api.agent.com";
const DID_HEADER: &str = "x-anpx-caller-did";

fn vectors() -> PathBuf {
    anpx_tests::testdata_dir().join("did-wba-vectors")
}

/// The Ed25519 key the tests' gateways sign tokens with.
fn token_key_path() -> PathBuf {
    vectors().join("ed25519-key-1_private.pem")
}

/// An agent that says what reached it: the DID header and the
/// `Authorization` it was sent.
async fn agent(
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Body>, Infallible> {
    let seen = |name: &str| {
        let all: Vec<&str> = req
            .headers()
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect();
        if all.is_empty() {
            "none".to_owned()
        } else {
            all.join(" | ")
        }
    };
    Ok(http::Response::builder()
        .header("x-seen-did", seen(DID_HEADER))
        .header("x-seen-did-underscore", seen("x_anpx_caller_did"))
        .header("x-seen-authorization", seen("authorization"))
        .body(http_body_util::BodyExt::boxed(http_body_util::Full::new(
            bytes::Bytes::from_static(b"agent"),
        )))
        .unwrap())
}

/// A gateway of `shell` protecting `api.agent.com/secure` (configured the
/// way `anpx gateway` is, from the configuration keys), with a receiver
/// serving `/secure` and `/open` from [`agent`].
async fn protected(shell: Shell) -> (Gw, Rx) {
    let mut config = Config::default();
    for (key, value) in [
        ("gateway.caller_auth.services", "api.agent.com/secure"),
        (
            "gateway.caller_auth.token_key",
            token_key_path().to_str().unwrap(),
        ),
        (
            "gateway.auth.did_documents_dir",
            vectors().to_str().unwrap(),
        ),
    ] {
        config.set(key, value).unwrap();
    }
    config.validate().unwrap();
    let io: Arc<dyn DocumentIo> = match shell {
        Shell::Tokio => Arc::new(shell_tokio::fetch::TokioDocuments),
        Shell::Smol => Arc::new(shell_smol::fetch::SmolDocuments),
    };
    let built = anpx_cli::setup::gateway_options(&config, false, io, || {
        unreachable!("no registry in open mode")
    })
    .unwrap();
    assert!(built.caller_auth.is_some());
    let gw = Gw::start(shell, |o| {
        o.caller_auth = built.caller_auth;
        o.caller_did_header = built.caller_did_header;
    })
    .await;
    let backend = serve_on_loopback(agent).await;
    let rx = Rx::spawn(
        shell,
        gw.addr(),
        backend,
        &["api.agent.com/secure", "api.agent.com/open"],
        None,
    );
    tokio::time::timeout(Duration::from_secs(10), rx.wait_ready())
        .await
        .expect("receiver connected");
    (gw, rx)
}

/// `n` fresh `Authorization` headers made by the reference SDK's client
/// (`DIDWbaAuthHeader`) for `url`, with the secp256k1 test identity; `None`
/// (after saying so) when the SDK cannot be set up here.
fn sdk_headers(test: &str, url: &str, n: usize) -> Option<Vec<String>> {
    let reference = reference::reference(test)?;
    let script = "import sys\n\
        from agent_connect.authentication import DIDWbaAuthHeader\n\
        auth = DIDWbaAuthHeader(sys.argv[1], sys.argv[2])\n\
        for _ in range(int(sys.argv[4])):\n    \
            print(auth.get_auth_header(sys.argv[3], force_new=True)['Authorization'])\n";
    let out = Command::new(reference.python())
        .arg("-c")
        .arg(script)
        .arg(vectors().join("secp256k1-did.json"))
        .arg(vectors().join("secp256k1-key-1_private.pem"))
        .arg(url)
        .arg(n.to_string())
        .output()
        .expect("run the reference SDK");
    assert!(
        out.status.success(),
        "the SDK failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let headers: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(headers.len(), n);
    Some(headers)
}

async fn call(gw: &Gw, path: &str, headers: &[(&str, &str)]) -> Reply {
    send_with(gw.addr(), "GET", HOST, path, headers, "").await
}

fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
    r.headers
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("none")
}

async fn metric(gw: &Gw, line_start: &str) -> u64 {
    let m = send(gw.admin_addr(), "GET", "x", "/metrics", "").await;
    String::from_utf8_lossy(&m.body)
        .lines()
        .find_map(|l| l.strip_prefix(line_start))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0)
}

async fn an_sdk_signed_caller_gets_through_and_its_token_works_after(shell: Shell) {
    let (gw, rx) = protected(shell).await;
    let url = format!("http://{HOST}:{}/secure/chat", gw.addr().port());
    let Some(signed) = sdk_headers(
        "an_sdk_signed_caller_gets_through_and_its_token_works_after",
        &url,
        1,
    ) else {
        return;
    };
    // The first call, signed; a forged DID header rides along.
    let first = call(
        &gw,
        "/secure/chat",
        &[
            ("authorization", &signed[0]),
            (DID_HEADER, "did:wba:evil.example:mallory"),
        ],
    )
    .await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(header(&first, "x-seen-did"), DID);
    let token = header(&first, "authorization")
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("no bearer token in {:?}", first.headers))
        .to_owned();
    // Later calls with the token, as the SDK's client sends them once it
    // has one.
    let bearer = format!("Bearer {token}");
    for path in ["/secure/chat", "/secure/other"] {
        let later = call(
            &gw,
            path,
            &[
                ("authorization", &bearer),
                ("x_anpx_caller_did", "did:wba:evil.example:mallory"),
            ],
        )
        .await;
        assert_eq!(later.status, 200, "{path}");
        assert_eq!(header(&later, "x-seen-did"), DID);
        assert_eq!(header(&later, "x-seen-did-underscore"), "none");
        assert_eq!(
            header(&later, "authorization"),
            "none",
            "a token only for a signed call"
        );
    }
    // The signed header again: its nonce is spent.
    let replay = call(&gw, "/secure/chat", &[("authorization", &signed[0])]).await;
    assert_eq!(replay.status, 401);
    assert_eq!(header(&replay, "www-authenticate"), "DIDWba");
    assert!(
        String::from_utf8_lossy(&replay.body).contains("nonce"),
        "{:?}",
        replay.body
    );
    assert_eq!(
        metric(&gw, "anpx_caller_auth_accepted_total{by=\"didwba\"} ").await,
        1
    );
    assert_eq!(
        metric(&gw, "anpx_caller_auth_accepted_total{by=\"bearer\"} ").await,
        2
    );
    assert_eq!(
        metric(
            &gw,
            "anpx_caller_auth_refused_total{reason=\"replayed_nonce\"} "
        )
        .await,
        1
    );
    rx.shutdown().await;
    gw.shutdown().await;
}

/// The reference SDK's own client, end to end: it signs the first call,
/// takes the token from the response (`update_token`), and its next
/// call, which then carries the token, gets through too.
async fn the_sdk_client_signs_once_then_uses_the_token_it_was_given(shell: Shell) {
    let (gw, rx) = protected(shell).await;
    let Some(reference) =
        reference::reference("the_sdk_client_signs_once_then_uses_the_token_it_was_given")
    else {
        return;
    };
    let script = "import sys, httpx\n\
        from agent_connect.authentication import DIDWbaAuthHeader\n\
        auth = DIDWbaAuthHeader(sys.argv[1], sys.argv[2])\n\
        port = sys.argv[3]\n\
        url = f'http://api.agent.com:{port}/secure/chat'\n\
        for _ in range(2):\n    \
            h = auth.get_auth_header(url)\n    \
            scheme = h['Authorization'].split(' ')[0]\n    \
            r = httpx.get(f'http://127.0.0.1:{port}/secure/chat', headers={**h, 'Host': f'api.agent.com:{port}'})\n    \
            print(scheme, r.status_code, r.headers.get('x-seen-did'), auth.update_token(url, r.headers) is not None)\n";
    let port = gw.addr().port().to_string();
    let out = tokio::task::spawn_blocking({
        let python = reference.python();
        move || {
            Command::new(python)
                .arg("-c")
                .arg(script)
                .arg(vectors().join("secp256k1-did.json"))
                .arg(vectors().join("secp256k1-key-1_private.pem"))
                .arg(port)
                .output()
                .expect("run the reference SDK")
        }
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the SDK failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        lines.lines().collect::<Vec<_>>(),
        [
            format!("DIDWba 200 {DID} True"),
            format!("Bearer 200 {DID} False"),
        ],
    );
    rx.shutdown().await;
    gw.shutdown().await;
}

async fn unauthenticated_and_bad_calls_get_401(shell: Shell) {
    let (gw, rx) = protected(shell).await;
    let none = call(&gw, "/secure/chat", &[]).await;
    assert_eq!(none.status, 401);
    assert_eq!(header(&none, "www-authenticate"), "DIDWba");
    let basic = call(&gw, "/secure", &[("authorization", "Basic YTpi")]).await;
    assert_eq!(basic.status, 401);
    // Percent-encoding the path does not get around the route's setting.
    let encoded = call(&gw, "/%73ecure/chat", &[]).await;
    assert_eq!(encoded.status, 401);

    // A token this gateway signed, expired an hour ago.
    let key = TokenKey::from_pem(&std::fs::read_to_string(token_key_path()).unwrap()).unwrap();
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    let expired = key
        .mint(DID, HOST, two_hours_ago, Duration::from_secs(3600))
        .unwrap();
    // A token for the same DID signed by another key.
    let foreign = TokenKey::from_seed([9; 32])
        .mint(DID, HOST, SystemTime::now(), Duration::from_secs(3600))
        .unwrap();
    // A good token, but earned at another host.
    let elsewhere = key
        .mint(
            DID,
            "other.agent.com",
            SystemTime::now(),
            Duration::from_secs(3600),
        )
        .unwrap();
    for (token, reason) in [
        (expired, "token_expired"),
        (foreign, "token_bad_signature"),
        (elsewhere, "token_wrong_service"),
    ] {
        let r = call(
            &gw,
            "/secure/chat",
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
        assert_eq!(r.status, 401, "{reason}");
        let challenge = header(&r, "www-authenticate");
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
        assert!(challenge.contains("DIDWba"), "{challenge}");
        assert_eq!(
            metric(
                &gw,
                &format!("anpx_caller_auth_refused_total{{reason=\"{reason}\"}} ")
            )
            .await,
            1
        );
    }

    // A header the SDK signed long ago (the vectors'): out of the window.
    let vectors: serde_json::Value =
        serde_json::from_slice(&std::fs::read(vectors().join("headers.json")).unwrap()).unwrap();
    let old = vectors["cases"][0]["authorization"].as_str().unwrap();
    let r = call(&gw, "/secure/chat", &[("authorization", old)]).await;
    assert_eq!(r.status, 401);
    assert_eq!(
        metric(&gw, "anpx_caller_auth_refused_total{reason=\"expired\"} ").await,
        1
    );
    assert_eq!(
        metric(
            &gw,
            "anpx_caller_auth_refused_total{reason=\"missing_authorization\"} "
        )
        .await,
        2
    );
    assert_eq!(
        metric(
            &gw,
            "anpx_caller_auth_refused_total{reason=\"unsupported_scheme\"} "
        )
        .await,
        1
    );
    rx.shutdown().await;
    gw.shutdown().await;
}

async fn a_route_without_the_setting_is_unaffected_but_for_the_did_header(shell: Shell) {
    let (gw, rx) = protected(shell).await;
    let r = call(
        &gw,
        "/open/x",
        &[
            ("authorization", "Basic YTpi"),
            (DID_HEADER, "did:wba:evil.example:mallory"),
        ],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "x-seen-authorization"), "Basic YTpi");
    assert_eq!(header(&r, "x-seen-did"), "none");
    assert_eq!(header(&r, "authorization"), "none");
    rx.shutdown().await;
    gw.shutdown().await;
}

/// A gateway with caller authentication off still strips the header, so an
/// agent can trust it whatever the gateway's settings.
async fn the_did_header_is_stripped_with_caller_auth_off(shell: Shell) {
    let gw = Gw::start(shell, |_| {}).await;
    let backend = serve_on_loopback(agent).await;
    let rx = Rx::spawn(shell, gw.addr(), backend, &["api.agent.com/open"], None);
    tokio::time::timeout(Duration::from_secs(10), rx.wait_ready())
        .await
        .expect("receiver connected");
    let r = call(
        &gw,
        "/open/x",
        &[(DID_HEADER, "did:wba:evil.example:mallory")],
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(header(&r, "x-seen-did"), "none");
    rx.shutdown().await;
    gw.shutdown().await;
}

for_every_gateway!(
    an_sdk_signed_caller_gets_through_and_its_token_works_after,
    the_sdk_client_signs_once_then_uses_the_token_it_was_given,
    unauthenticated_and_bad_calls_get_401,
    a_route_without_the_setting_is_unaffected_but_for_the_did_header,
    the_did_header_is_stripped_with_caller_auth_off,
);
