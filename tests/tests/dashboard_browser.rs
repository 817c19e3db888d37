//! The admin dashboard in a real browser, on both gateway shells: headless
//! Chromium (driven through chromedriver) loads the page, sees a request made
//! through the tunnel appear live, opens it, replays it with the page's
//! button and sees the replay appear, and the service gets it twice.

#[macro_use]
mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use support::pairs::{Gw, Rx, Shell};
use support::send;
use tokio::net::TcpListener;

const HOST: &str = "api.agent.com";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page gets to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

/// A service that counts the requests it gets for each path.
async fn counting_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: http::Request<Incoming>| {
                    if req.uri().path() == "/svc/browser-probe" {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                    async move {
                        Ok::<_, Infallible>(
                            http::Response::builder()
                                .header("x-probe", "seen")
                                .body(Full::new(Bytes::from_static(b"probed")))
                                .unwrap(),
                        )
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, hits)
}

/// chromedriver on a free port; killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether the browser is here; outside CI a missing browser skips the test
/// with a line saying so, in CI it fails.
fn browser_present(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists() {
        return true;
    }
    let why = format!(
        "{CHROMIUM} or {CHROMEDRIVER} is missing; install with apt-get install chromium chromium-driver"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why}");
    }
    eprintln!("SKIPPED {test}: the dashboard was not tested in a browser: {why}");
    false
}

async fn start_driver() -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver { child, port };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    driver
}

async fn open_browser(driver: &Driver, profile: &Path) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    ClientBuilder::new(HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a chromedriver session")
}

/// Polls the page until `check` gives a value, or fails after `PATIENCE`.
async fn wait_for<T>(c: &Client, what: &str, check: impl AsyncCheck<T>) -> T {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check.check(c).await {
            return v;
        }
        if tokio::time::Instant::now() >= deadline {
            let source = c.source().await.unwrap_or_default();
            panic!("the page did not show {what} within {PATIENCE:?}; page:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

trait AsyncCheck<T> {
    async fn check(&self, c: &Client) -> Option<T>;
}

/// The rows of the live request table whose text contains `needle`, as
/// (row id, row text).
struct Rows(&'static str);

impl AsyncCheck<Vec<(String, String)>> for Rows {
    async fn check(&self, c: &Client) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        for tr in c.find_all(Locator::Css("#requests tbody tr")).await.ok()? {
            let text = tr.text().await.ok()?;
            if text.contains(self.0) && !text.contains("in flight") {
                out.push((tr.attr("data-id").await.ok()??, text));
            }
        }
        Some(out)
    }
}

/// The text of the element `css` once it contains `needle`.
struct TextOf(&'static str, String);

impl AsyncCheck<String> for TextOf {
    async fn check(&self, c: &Client) -> Option<String> {
        let text = c.find(Locator::Css(self.0)).await.ok()?.text().await.ok()?;
        text.contains(&self.1).then_some(text)
    }
}

struct AtLeast(Rows, usize);

impl AsyncCheck<Vec<(String, String)>> for AtLeast {
    async fn check(&self, c: &Client) -> Option<Vec<(String, String)>> {
        self.0.check(c).await.filter(|rows| rows.len() >= self.1)
    }
}

async fn the_dashboard_shows_opens_and_replays_a_request(shell: Shell) {
    if !browser_present("dashboard_browser") {
        return;
    }
    let (backend, hits) = counting_backend().await;
    let g = Gw::start(shell, |_| {}).await;
    let _r = Rx::start(Shell::Tokio, g.addr(), backend).await;
    let driver = start_driver().await;
    let profile = std::env::temp_dir().join(format!(
        "anpx-chromium-{}-{}",
        std::process::id(),
        driver.port
    ));
    std::fs::create_dir_all(&profile).unwrap();
    let c = open_browser(&driver, &profile).await;

    let result = async {
        c.goto(&format!("http://{}/", g.admin_addr()))
            .await
            .unwrap();
        // The live feed is open before the request is made, so the row
        // arrives by SSE rather than the page's first fetch.
        wait_for(&c, "the live badge", TextOf("#live", "live".into())).await;

        let r = send(g.addr(), "GET", HOST, "/svc/browser-probe?n=1", "").await;
        assert_eq!(r.status, 200);
        let rows = wait_for(
            &c,
            "the request's row",
            AtLeast(Rows("/svc/browser-probe"), 1),
        )
        .await;
        let (id, text) = rows[0].clone();
        assert!(text.contains(HOST) && text.contains("200"), "row: {text}");

        c.find(Locator::Css(&format!("#requests tbody tr[data-id='{id}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let title = wait_for(&c, "the details", TextOf("#detail-id", format!("#{id} "))).await;
        assert!(
            title.contains("/svc/browser-probe"),
            "details title: {title}"
        );
        wait_for(
            &c,
            "the response header",
            TextOf("#detail-response-headers", "x-probe".into()),
        )
        .await;
        wait_for(
            &c,
            "the request headers",
            TextOf("#detail-request-headers", HOST.into()),
        )
        .await;

        c.find(Locator::Id("replay"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        let result = wait_for(
            &c,
            "the replay result",
            TextOf("#replay-result", "replayed as #".into()),
        )
        .await;
        assert!(result.ends_with(": 200"), "replay result: {result}");
        let rows = wait_for(
            &c,
            "the replay's row",
            AtLeast(Rows("/svc/browser-probe"), 2),
        )
        .await;
        assert!(
            rows.iter()
                .any(|(_, t)| t.contains(&format!("replay of {id}"))),
            "rows: {rows:?}"
        );
        assert_eq!(hits.load(Ordering::SeqCst), 2, "the service got it twice");
    };
    // Catch a failure so the browser and its profile go away either way.
    let outcome = futures_util::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(result)).await;
    let _ = c.close().await;
    drop(driver);
    let _ = std::fs::remove_dir_all(&profile);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

for_every_gateway!(the_dashboard_shows_opens_and_replays_a_request);
