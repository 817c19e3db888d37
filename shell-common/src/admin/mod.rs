//! The admin plane (`gateway.admin_listen`): `/metrics`, `/stats`,
//! `/health`, and the dashboard with its request inspector, served on an
//! address of its own so that none of it is public.
//!
//! Routes:
//! - `GET /` the dashboard page; `GET /dashboard.js`, `GET /dashboard.css`
//!   its script and style, embedded in the binary;
//! - `GET /api/overview` receivers, routes, cluster peers, inspector bounds;
//! - `GET /api/requests` the captured requests, oldest first;
//! - `GET /api/requests/N` one of them in detail;
//! - `POST /api/requests/N/replay` sends it through the tunnel again
//!   (needs an `x-anpx-admin` header, which a cross-site form cannot set);
//! - `GET /api/events` the live feed (server-sent events).

mod assets;
mod capture;
mod receiver;
mod view;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::task::{Context, Poll};

use anpx_core::RequestBody;
use bytes::Bytes;
use futures_channel::mpsc;
use futures_util::{Stream, StreamExt};
use serde_json::json;

pub use capture::{Arrival, Capture, Entry, Inspector, Metered, BODY_PREFIX, ENTRY_OVERHEAD};
pub use receiver::{ReceiverEnding, ReceiverMonitor, Tracked};
pub use view::{REDACTED, SECRET_HEADERS};

use crate::gateway::{Answer, PublicRequest, Shared};

/// The header a replay must carry: browsers send it only from a script of
/// the same origin (a cross-origin one would need a preflight nobody
/// answers), so another site cannot make an operator's browser replay.
pub const ADMIN_HEADER: &str = "x-anpx-admin";

/// What the admin plane answers with.
pub enum AdminReply {
    /// A complete answer.
    Answer(Answer),
    /// A server-sent event stream (`text/event-stream`), open until the
    /// client goes away or falls too far behind.
    Events(EventStream),
}

/// The live feed as a byte stream; each item is one or more whole SSE
/// events.
pub struct EventStream {
    first: Option<Bytes>,
    feed: mpsc::Receiver<Bytes>,
}

impl Stream for EventStream {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(first));
        }
        self.feed.poll_next_unpin(cx)
    }
}

/// The headers of an [`AdminReply::Events`] response.
pub const EVENT_HEADERS: [(&str, &str); 2] = [
    ("content-type", "text/event-stream"),
    ("cache-control", "no-store"),
];

/// How a banner points at the admin plane bound at `addr`.
pub fn dashboard_hint(addr: Option<std::net::SocketAddr>) -> String {
    match addr {
        Some(a) => format!("dashboard: http://{a}/ (also /stats, /metrics)"),
        None => "admin plane off (gateway.admin_listen)".to_owned(),
    }
}

/// The cluster as the dashboard shows it; the shell that joined one sets it.
pub trait ClusterView: Send + Sync {
    /// This gateway's node name.
    fn node(&self) -> String;
    /// The other gateways heard from.
    fn peers(&self) -> Vec<String>;
}

impl Shared {
    /// Answers a request on the admin listener. `query` is unused by the
    /// current routes; `headers` are the request's.
    pub async fn admin(&self, method: &str, path: &str, headers: &http::HeaderMap) -> AdminReply {
        let reply = |a| AdminReply::Answer(a);
        let get = method == "GET" || method == "HEAD";
        match (get, path) {
            (true, "/health") => reply(self.health()),
            (true, "/stats") => reply(self.stats().await),
            (true, "/metrics") => reply(self.metrics().await),
            (true, "/" | "/index.html") => reply(assets::page()),
            (true, "/dashboard.js") => reply(assets::script()),
            (true, "/dashboard.css") => reply(assets::style()),
            (true, "/api/overview") => reply(self.overview().await),
            (_, p) => {
                if let Some(rest) = p.strip_prefix("/api/requests/") {
                    if let Some(("POST", "replay")) =
                        rest.split_once('/').map(|(_, action)| (method, action))
                    {
                        return reply(self.replay_api(rest, headers).await);
                    }
                }
                match inspector_api(&self.inspector, "gateway", method, path, self.chunk_size) {
                    Some(r) => r,
                    None if get => reply(Answer::text(404, "not found on the admin listener\n")),
                    None => reply(Answer::text(405, "method not allowed\n")),
                }
            }
        }
    }

    async fn replay_api(&self, rest: &str, headers: &http::HeaderMap) -> Answer {
        let number = rest.split_once('/').map_or(rest, |(n, _)| n);
        let entry = match entry_of(&self.inspector, "gateway", number) {
            Ok(e) => e,
            Err(answer) => return answer,
        };
        if !headers.contains_key(ADMIN_HEADER) {
            return Answer::json(
                403,
                &json!({ "error": format!("a replay needs the {ADMIN_HEADER} header") }),
            );
        }
        self.replay(&entry).await
    }

    /// Sends a captured request through the tunnel again, as it came
    /// (credentials included, whatever the display redacts), and answers
    /// with the new entry's number and status once its response ended.
    async fn replay(&self, e: &Entry) -> Answer {
        if let Err(why) = view::replayable(e) {
            return Answer::json(409, &json!({ "error": format!("cannot replay: {why}") }));
        }
        let (Some(peer), Some(local)) = (e.client, e.local) else {
            return Answer::json(
                409,
                &json!({ "error": "cannot replay: the request came over no connection of its own" }),
            );
        };
        let host_header = e
            .request_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("host"))
            .map(|(_, v)| v.as_str());
        let body = if e.request_body.is_empty() {
            RequestBody::Empty
        } else {
            RequestBody::Full(e.request_body.clone())
        };
        let request = PublicRequest {
            method: &e.method,
            path: &e.path,
            query: e.query.as_deref(),
            host_header,
            authority: host_header.is_none().then(|| e.host.clone()),
            version: http::Version::HTTP_11,
            headers: e.request_headers.clone(),
            peer,
            local,
        };
        let (pending, id) = match self.proxy_capturing(request, body, Some(e.id)).await {
            Ok(p) => p,
            Err((answer, id)) => {
                return Answer::json(200, &json!({ "id": id, "status": answer.status }))
            }
        };
        let status = match pending.response().await {
            Ok((head, mut stream)) => {
                while let Some(piece) = stream.next().await {
                    if piece.is_err() {
                        break;
                    }
                }
                head.status
            }
            Err(answer) => answer.status,
        };
        Answer::json(200, &json!({ "id": id, "status": status }))
    }

    async fn overview(&self) -> Answer {
        let stats = match self.driver.stats().await {
            Ok(s) => s,
            Err(e) => return Answer::json(503, &json!({ "error": e.to_string() })),
        };
        let bytes = self.inspector.receiver_bytes();
        let receivers: Vec<_> = stats
            .links
            .iter()
            .map(|l| {
                let label = match &l.identity {
                    anpx_core::Identity::Anonymous => l.id.to_string(),
                    anpx_core::Identity::Did(d) => d.clone(),
                };
                let (up, down) = bytes.get(&label).copied().unwrap_or_default();
                json!({
                    "id": l.id.to_string(),
                    "identity": label,
                    "address": l.address.map(|a| a.to_string()),
                    "routes": l.routes,
                    "features": l.features,
                    "in_flight": l.in_flight,
                    "uptime_secs": l.age.as_secs(),
                    "request_bytes": up,
                    "response_bytes": down,
                })
            })
            .collect();
        let mut routes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for l in &stats.links {
            for r in &l.routes {
                routes.entry(r).or_default().push(l.id.to_string());
            }
        }
        let routes: Vec<_> = routes
            .into_iter()
            .map(|(route, by)| json!({ "route": route, "receivers": by }))
            .collect();
        let cluster = self
            .cluster_view
            .get()
            .map(|c| json!({ "node": c.node(), "peers": c.peers() }));
        Answer::json(
            200,
            &json!({
                "receivers": receivers,
                "routes": routes,
                "cluster": cluster,
                "in_flight": stats.in_flight,
                "totals": stats.totals,
                "inspector": self.inspector.overview(),
            }),
        )
    }
}

/// Entry `number` of `inspector`, or the answer saying why there is none;
/// `section` names the configuration section it is set in.
fn entry_of(inspector: &Inspector, section: &str, number: &str) -> Result<Entry, Answer> {
    let Ok(id) = number.parse::<u64>() else {
        return Err(Answer::json(
            400,
            &json!({ "error": "not a request number" }),
        ));
    };
    inspector.get(id).ok_or_else(|| {
        Answer::json(
            404,
            &json!({ "error": format!("no such request in the inspector (it keeps the last {section}.inspector.requests)") }),
        )
    })
}

/// The inspector's read-only routes, the same on the gateway's and the
/// receiver's admin planes: `GET /api/requests`, `GET /api/requests/N`,
/// `GET /api/events`. `None` when `path` is none of them.
pub fn inspector_api(
    inspector: &Inspector,
    section: &str,
    method: &str,
    path: &str,
    chunk_size: usize,
) -> Option<AdminReply> {
    let get = method == "GET" || method == "HEAD";
    let reply = |a| Some(AdminReply::Answer(a));
    match path {
        "/api/requests" if get => {
            let rows: Vec<_> = inspector.entries().iter().map(view::summary).collect();
            reply(Answer::json(200, &json!({ "requests": rows })))
        }
        "/api/events" if get => Some(AdminReply::Events(EventStream {
            first: Some(Bytes::from_static(
                b": anpx inspector feed\nretry: 1000\n\n",
            )),
            feed: inspector.subscribe(),
        })),
        _ => {
            let rest = path.strip_prefix("/api/requests/")?;
            if !get {
                return reply(Answer::json(405, &json!({ "error": "method not allowed" })));
            }
            if rest.contains('/') {
                return None;
            }
            let entry = match entry_of(inspector, section, rest) {
                Ok(e) => e,
                Err(answer) => return reply(answer),
            };
            let c = inspector.config();
            reply(Answer::json(
                200,
                &view::detail(&entry, c.show_secrets, c.bodies, chunk_size),
            ))
        }
    }
}
