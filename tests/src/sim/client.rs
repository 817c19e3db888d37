//! Public clients: what each request asks for and how much of its body has
//! been handed to the gateway so far.

use anpx_core::RequestBody;
use anpx_core::RequestHead;
use bytes::Bytes;

use super::body;
use super::routes::Grant;
use super::scenario::{pick, HOSTS, PATHS};

/// How the request body reaches the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Empty,
    Full,
    Streaming,
}

/// One public request, as its client knows it.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    pub serial: u64,
    pub host: String,
    pub method: &'static str,
    /// The path as the client sends it.
    pub path: String,
    /// The path the gateway must route and forward; `None` when it must
    /// refuse it with 400.
    pub normalized: Option<String>,
    pub query: &'static str,
    pub kind: BodyKind,
    /// The whole body the client means to send.
    pub body: Bytes,
    /// How much of it the gateway has been given.
    pub pushed: usize,
    /// The gateway has been told the body is complete.
    pub finished: bool,
}

impl ClientRequest {
    /// A request to a random host and path, or, often, to one of `grants`
    /// (so that most requests have somewhere to go).
    pub fn random(rng: &mut fastrand::Rng, serial: u64, grants: &[Grant]) -> ClientRequest {
        let (host, path, normalized) = match grants.len() {
            n if n > 0 && rng.u32(..100) < 60 => {
                let grant = &grants[rng.usize(..n)];
                let (host, path) = aim_at(rng, grant);
                let normalized = Some(path.clone());
                (host, path, normalized)
            }
            _ => {
                let (path, normalized) = pick(rng, PATHS);
                (
                    pick(rng, HOSTS).to_owned(),
                    path.to_owned(),
                    normalized.map(str::to_owned),
                )
            }
        };
        let kind = match rng.u32(..100) {
            0..=39 => BodyKind::Empty,
            40..=74 => BodyKind::Full,
            _ => BodyKind::Streaming,
        };
        let len = if kind == BodyKind::Empty {
            0
        } else {
            body::random_len(rng)
        };
        let whole = kind != BodyKind::Streaming;
        ClientRequest {
            serial,
            host,
            method: if kind == BodyKind::Empty {
                "GET"
            } else {
                "POST"
            },
            path,
            normalized,
            query: pick(rng, &["", "", "a=1&a=2", "stream=1"]),
            kind,
            body: body::request_body(serial, len),
            pushed: if whole { len } else { 0 },
            finished: whole,
        }
    }

    pub fn head(&self) -> RequestHead {
        RequestHead::new(self.method, self.path.as_str())
            .with_query(self.query)
            .with_header("host", self.host.as_str())
            .with_header("x-sim-serial", self.serial.to_string())
    }

    pub fn initial_body(&self) -> RequestBody {
        match self.kind {
            BodyKind::Empty => RequestBody::Empty,
            BodyKind::Full => RequestBody::Full(self.body.clone()),
            BodyKind::Streaming => RequestBody::Streaming,
        }
    }

    /// The next piece of a streaming body and whether it is the last; all
    /// that is left when `finish`.
    pub fn next_piece(&mut self, rng: &mut fastrand::Rng, finish: bool) -> (Bytes, bool) {
        let left = self.body.len() - self.pushed;
        let take = if finish || rng.u32(..4) == 0 {
            left
        } else {
            rng.usize(..=left)
        };
        // An all-sent body sometimes ends with a separate empty piece, as a
        // chunked upload's terminator does.
        let last = finish || (take == left && rng.u32(..10) < 7);
        let piece = self.body.slice(self.pushed..self.pushed + take);
        self.pushed += take;
        self.finished = last;
        (piece, last)
    }
}

/// A host and path under `grant`, spelled the ways clients spell them (the
/// path already in its normal form).
fn aim_at(rng: &mut fastrand::Rng, grant: &Grant) -> (String, String) {
    let host = match &grant.host {
        None => pick(rng, HOSTS).to_owned(),
        Some(h) => match rng.u32(..6) {
            0 => h.to_ascii_uppercase(),
            1 => format!("{h}:8080"),
            2 => format!("{h}."),
            _ => h.clone(),
        },
    };
    let mut path = String::new();
    for seg in &grant.segments {
        path.push('/');
        path.push_str(seg);
    }
    match rng.u32(..4) {
        0 => path.push_str("/deeper/x"),
        1 => path.push('/'),
        _ => {}
    }
    if path.is_empty() {
        path.push('/');
    }
    (host, path)
}
