//! The request inspector's capture buffer: the last N proxied requests,
//! held to a byte bound, and the live feed of their changes.
//!
//! On the hot path a request costs, when capture is on, a copy of its
//! client headers and the head sent to the receiver, and three short locks
//! (start, response head, end); the JSON of the live feed is built only
//! while a dashboard is subscribed. With `gateway.inspector.requests = 0`
//! it costs one branch.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anpx_core::config::InspectorSection;
use anpx_core::{RequestHead, ResponseHead};
use bytes::Bytes;
use futures_channel::mpsc;

/// Bytes of each body kept when `gateway.inspector.bodies` is on.
pub const BODY_PREFIX: usize = 1024;

/// What an entry is counted as beyond its strings and bodies: the struct,
/// its vectors' spare room and the allocator's headers, rounded up.
pub const ENTRY_OVERHEAD: usize = 512;

/// Live-feed messages a slow dashboard may fall behind by before it is
/// dropped (it reconnects and reloads the table).
const FEED_BACKLOG: usize = 256;

/// One captured request.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its number in the inspector, from 1.
    pub id: u64,
    /// The ANPX request id, when the request reached a receiver.
    pub request_id: String,
    /// When it came in.
    pub time: SystemTime,
    started_at: Instant,
    /// The client's address; `None` in a receiver's inspector, whose
    /// requests come over its gateway connection.
    pub client: Option<SocketAddr>,
    /// The address the client connected to, when there was one.
    pub local: Option<SocketAddr>,
    /// Method.
    pub method: String,
    /// The routing host.
    pub host: String,
    /// Path, still percent-encoded.
    pub path: String,
    /// Query, if any.
    pub query: Option<String>,
    /// Headers as the client sent them.
    pub request_headers: Vec<(String, String)>,
    /// The head the receiver was sent, when it got that far.
    pub sent_head: Option<RequestHead>,
    /// The first [`BODY_PREFIX`] bytes of the request body (bodies on).
    pub request_body: Bytes,
    /// Request body bytes seen.
    pub request_bytes: u64,
    /// Whether the whole request body is in `request_body` (so the
    /// request can be replayed).
    pub request_body_whole: bool,
    /// Status answered.
    pub status: Option<u16>,
    /// The head the receiver answered with.
    pub response_head: Option<ResponseHead>,
    /// The first [`BODY_PREFIX`] bytes of the response body (bodies on).
    pub response_body: Vec<u8>,
    /// Response body bytes sent on.
    pub response_bytes: u64,
    /// The receiver that served it.
    pub receiver: String,
    /// How long it took, once ended.
    pub duration: Option<Duration>,
    /// How it ended (the request log line's `outcome`); `None` while in
    /// flight.
    pub ending: Option<String>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// The entry this one replays.
    pub replay_of: Option<u64>,
    /// Headers and bodies were dropped to stay within the byte bound.
    pub trimmed: bool,
}

impl Entry {
    /// The bytes this entry is counted as against
    /// `gateway.inspector.max_bytes`.
    pub fn size(&self) -> usize {
        let pairs =
            |h: &[(String, String)]| h.iter().map(|(n, v)| n.len() + v.len() + 48).sum::<usize>();
        let list = |h: &anpx_core::HeaderList| {
            h.iter().map(|(n, v)| n.len() + v.len() + 48).sum::<usize>()
        };
        let sent: usize = self.sent_head.as_ref().map_or(0, |h| {
            h.method.len() + h.path.len() + h.query.len() + list(&h.headers)
        });
        let response: usize = self
            .response_head
            .as_ref()
            .map_or(0, |h| h.reason.len() + list(&h.headers));
        ENTRY_OVERHEAD
            + self.request_id.len()
            + self.method.len()
            + self.host.len()
            + self.path.len()
            + self.query.as_ref().map_or(0, String::len)
            + pairs(&self.request_headers)
            + sent
            + self.request_body.len()
            + response
            + self.response_body.capacity()
            + self.receiver.len()
            + self.ending.as_ref().map_or(0, String::len)
            + self.error.as_ref().map_or(0, String::len)
    }

    /// Drops what can be dropped (headers, bodies), keeping the summary.
    fn trim(&mut self) {
        self.request_headers = Vec::new();
        self.sent_head = None;
        self.request_body = Bytes::new();
        self.request_body_whole = false;
        self.response_head = None;
        self.response_body = Vec::new();
        self.trimmed = true;
    }
}

/// What a request looked like when it came in.
pub struct Arrival<'a> {
    /// Client address, when the request came over a connection of its own.
    pub client: Option<SocketAddr>,
    /// Address the client connected to, likewise.
    pub local: Option<SocketAddr>,
    /// Method.
    pub method: &'a str,
    /// Routing host.
    pub host: &'a str,
    /// Path.
    pub path: &'a str,
    /// Query.
    pub query: Option<&'a str>,
    /// Client headers.
    pub headers: &'a [(String, String)],
    /// The body, when it was read whole before the request started.
    pub body: Option<&'a Bytes>,
    /// The entry replayed, if this is a replay.
    pub replay_of: Option<u64>,
}

/// Receivers whose byte counts are kept at most; past it the counts
/// start again (anonymous receivers get a new name per connection).
const MAX_RECEIVER_TALLIES: usize = 4096;

struct Buffer {
    next_id: u64,
    entries: VecDeque<Entry>,
    bytes: usize,
    /// Request and response body bytes by receiver.
    tallies: HashMap<String, (u64, u64)>,
}

/// The capture buffer and its live feed.
pub struct Inspector {
    config: InspectorSection,
    buffer: Mutex<Buffer>,
    watchers: AtomicUsize,
    feed: Mutex<Vec<mpsc::Sender<Bytes>>>,
}

impl Inspector {
    /// An inspector keeping what `config` says.
    pub fn new(config: InspectorSection) -> Arc<Inspector> {
        Arc::new(Inspector {
            config,
            buffer: Mutex::new(Buffer {
                next_id: 1,
                entries: VecDeque::new(),
                bytes: 0,
                tallies: HashMap::new(),
            }),
            watchers: AtomicUsize::new(0),
            feed: Mutex::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &InspectorSection {
        &self.config
    }

    /// Whether requests are captured at all.
    pub fn enabled(&self) -> bool {
        self.config.requests > 0
    }

    fn lock(&self) -> MutexGuard<'_, Buffer> {
        // A panic mid-update leaves at worst a stale entry; the buffer is
        // still a valid one.
        self.buffer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a request coming in; `None` when capture is off.
    pub fn arrive(self: &Arc<Self>, a: Arrival<'_>) -> Option<Capture> {
        if !self.enabled() {
            return None;
        }
        let (request_body, whole, bytes) = match a.body {
            Some(b) if self.config.bodies => (
                b.slice(..b.len().min(BODY_PREFIX)),
                b.len() <= BODY_PREFIX,
                b.len() as u64,
            ),
            Some(b) => (Bytes::new(), b.is_empty(), b.len() as u64),
            None => (Bytes::new(), false, 0),
        };
        let mut entry = Entry {
            id: 0,
            request_id: String::new(),
            time: SystemTime::now(),
            started_at: Instant::now(),
            client: a.client,
            local: a.local,
            method: a.method.to_owned(),
            host: a.host.to_owned(),
            path: a.path.to_owned(),
            query: a.query.map(str::to_owned),
            request_headers: a.headers.to_vec(),
            sent_head: None,
            request_body,
            request_bytes: bytes,
            request_body_whole: whole,
            status: None,
            response_head: None,
            response_body: Vec::new(),
            response_bytes: 0,
            receiver: String::new(),
            duration: None,
            ending: None,
            error: None,
            replay_of: a.replay_of,
            trimmed: false,
        };
        let id = {
            let mut b = self.lock();
            entry.id = b.next_id;
            b.next_id += 1;
            let id = entry.id;
            self.insert(&mut b, entry);
            id
        };
        self.announce(id);
        Some(Capture {
            inspector: self.clone(),
            id,
            bodies: self.config.bodies,
            response_body: Vec::new(),
            response_bytes: 0,
            request_body: Vec::new(),
            request_bytes: 0,
            uploaded: Arc::default(),
        })
    }

    fn insert(&self, b: &mut Buffer, mut entry: Entry) {
        if entry.size() > self.config.max_bytes {
            entry.trim();
        }
        b.bytes += entry.size();
        b.entries.push_back(entry);
        self.evict(b);
    }

    /// Drops the oldest entries until both bounds hold.
    fn evict(&self, b: &mut Buffer) {
        while b.entries.len() > self.config.requests
            || (b.bytes > self.config.max_bytes && !b.entries.is_empty())
        {
            if let Some(old) = b.entries.pop_front() {
                b.bytes -= old.size();
            }
        }
    }

    /// Changes entry `id` in place, if it is still kept; the byte count
    /// follows, and older entries go if it grew past the bound.
    fn update(&self, id: u64, change: impl FnOnce(&mut Entry)) {
        {
            let mut b = self.lock();
            self.update_locked(&mut b, id, change);
        }
        self.announce(id);
    }

    fn update_locked(&self, b: &mut Buffer, id: u64, change: impl FnOnce(&mut Entry)) {
        {
            let Some(first) = b.entries.front().map(|e| e.id) else {
                return;
            };
            let Some(index) = id.checked_sub(first).map(|i| i as usize) else {
                return;
            };
            let max = self.config.max_bytes;
            let Some(entry) = b.entries.get_mut(index) else {
                return;
            };
            let before = entry.size();
            change(entry);
            if entry.size() > max {
                entry.trim();
            }
            let after = entry.size();
            b.bytes = b.bytes + after - before;
            self.evict(b);
        }
    }

    /// The entries kept, oldest first.
    pub fn entries(&self) -> Vec<Entry> {
        self.lock().entries.iter().cloned().collect()
    }

    /// Entry `id`, if still kept.
    pub fn get(&self, id: u64) -> Option<Entry> {
        self.lock().entries.iter().find(|e| e.id == id).cloned()
    }

    /// Request and response body bytes of the requests each receiver
    /// served while capture was on, by receiver name.
    pub fn receiver_bytes(&self) -> HashMap<String, (u64, u64)> {
        self.lock().tallies.clone()
    }

    /// Bytes the kept entries are counted as; never above
    /// `gateway.inspector.max_bytes`.
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// The inspector's settings and what it holds, as the gateway's and the
    /// receiver's admin planes both report them.
    pub fn overview(&self) -> serde_json::Value {
        let c = self.config();
        let held = self.lock();
        serde_json::json!({
            "requests": c.requests,
            "max_bytes": c.max_bytes,
            "bodies": c.bodies,
            "show_secrets": c.show_secrets,
            "kept": held.entries.len(),
            "bytes": held.bytes,
        })
    }

    /// A live feed: each change to an entry, as the JSON of its summary
    /// (an SSE `data:` event). Dropped if it falls `FEED_BACKLOG` (256)
    /// messages behind.
    pub fn subscribe(&self) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(FEED_BACKLOG);
        let mut feed = self.feed.lock().unwrap_or_else(|e| e.into_inner());
        feed.push(tx);
        self.watchers.store(feed.len(), Ordering::Relaxed);
        rx
    }

    /// Tells the live feeds, if any, that entry `id` changed.
    fn announce(&self, id: u64) {
        if self.watchers.load(Ordering::Relaxed) == 0 {
            return;
        }
        let Some(entry) = self.get(id) else { return };
        let event = Bytes::from(format!(
            "event: request\ndata: {}\n\n",
            super::view::summary(&entry)
        ));
        let mut feed = self.feed.lock().unwrap_or_else(|e| e.into_inner());
        feed.retain_mut(|tx| tx.try_send(event.clone()).is_ok());
        self.watchers.store(feed.len(), Ordering::Relaxed);
    }
}

/// A request being captured: what the proxying code reports as it goes.
/// Counts bytes locally and writes to the buffer only at the response
/// head and at the end.
pub struct Capture {
    inspector: Arc<Inspector>,
    id: u64,
    bodies: bool,
    response_body: Vec<u8>,
    response_bytes: u64,
    /// The request body's first bytes, when it arrives in pieces
    /// ([`Capture::request_piece`]).
    request_body: Vec<u8>,
    request_bytes: u64,
    uploaded: Arc<AtomicU64>,
}

impl Capture {
    /// The counter of this request's streamed body bytes, for a
    /// [`Metered`] body to add to.
    pub fn uploaded(&self) -> Arc<AtomicU64> {
        self.uploaded.clone()
    }

    /// The entry's number.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The request reached a receiver: its ANPX id, who serves it, and
    /// the head it was sent.
    pub fn started(&self, request_id: &str, receiver: &str, head: RequestHead) {
        self.inspector.update(self.id, |e| {
            e.request_id = request_id.to_owned();
            e.receiver = receiver.to_owned();
            e.sent_head = Some(head);
        });
    }

    /// The receiver's response head, as it came over the link.
    pub fn head(&self, head: &ResponseHead, status: u16) {
        self.inspector.update(self.id, |e| {
            e.status = Some(status);
            e.response_head = Some(head.clone());
        });
    }

    /// A piece of the response body went to the client.
    pub fn response_piece(&mut self, piece: &[u8]) {
        self.response_bytes += piece.len() as u64;
        if self.bodies && self.response_body.len() < BODY_PREFIX {
            let room = BODY_PREFIX - self.response_body.len();
            self.response_body
                .extend_from_slice(&piece[..piece.len().min(room)]);
        }
    }

    /// Streamed request body bytes that went to the receiver.
    pub fn request_bytes(&mut self, n: u64) {
        self.request_bytes += n;
    }

    /// A piece of a request body that arrives in pieces (at a receiver,
    /// from its gateway): counted, and its first [`BODY_PREFIX`] bytes
    /// kept when bodies are captured.
    pub fn request_piece(&mut self, piece: &[u8]) {
        self.request_bytes += piece.len() as u64;
        if self.bodies && self.request_body.len() < BODY_PREFIX {
            let room = BODY_PREFIX - self.request_body.len();
            self.request_body
                .extend_from_slice(&piece[..piece.len().min(room)]);
        }
    }

    /// The request ended: its status, how (the log line's outcome) and
    /// why, when it failed.
    pub fn end(self, status: u16, ending: &str, error: Option<&str>) {
        let Capture {
            inspector,
            id,
            response_body,
            response_bytes,
            request_body,
            request_bytes,
            uploaded,
            ..
        } = self;
        let request_bytes = request_bytes + uploaded.load(Ordering::Relaxed);
        {
            let mut b = inspector.lock();
            let mut served = None;
            inspector.update_locked(&mut b, id, |e| {
                e.status = Some(status);
                e.duration = Some(e.started_at.elapsed());
                e.ending = Some(ending.to_owned());
                e.error = error.map(str::to_owned);
                e.response_bytes = response_bytes;
                e.response_body = response_body;
                e.request_bytes += request_bytes;
                if !request_body.is_empty() {
                    e.request_body_whole = e.request_bytes <= BODY_PREFIX as u64;
                    e.request_body = Bytes::from(request_body);
                }
                served = Some((e.receiver.clone(), e.request_bytes));
            });
            if let Some((receiver, up)) = served.filter(|(r, _)| !r.is_empty()) {
                if b.tallies.len() >= MAX_RECEIVER_TALLIES && !b.tallies.contains_key(&receiver) {
                    b.tallies.clear();
                }
                let t = b.tallies.entry(receiver).or_default();
                t.0 += up;
                t.1 += response_bytes;
            }
        }
        inspector.announce(id);
    }
}

/// A request body stream whose bytes are counted as they are read: for
/// the request's log line and, when it is captured, for the inspector.
pub struct Metered<S> {
    inner: S,
    counters: Vec<Arc<AtomicU64>>,
}

impl<S> Metered<S> {
    /// `body`, each piece's length added to every one of `counters`.
    pub fn new(body: S, counters: Vec<Arc<AtomicU64>>) -> Self {
        Metered {
            inner: body,
            counters,
        }
    }
}

impl<S, E> futures_util::Stream for Metered<S>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
{
    type Item = Result<Bytes, E>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_next(cx);
        if let std::task::Poll::Ready(Some(Ok(b))) = &polled {
            for c in &self.counters {
                c.fetch_add(b.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspector(requests: usize, max_bytes: usize, bodies: bool) -> Arc<Inspector> {
        Inspector::new(InspectorSection {
            requests,
            max_bytes,
            bodies,
            show_secrets: false,
        })
    }

    fn arrive(i: &Arc<Inspector>, headers: &[(String, String)], body: &Bytes) -> Capture {
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        i.arrive(Arrival {
            client: Some(addr),
            local: Some(addr),
            method: "POST",
            host: "h",
            path: "/p",
            query: None,
            headers,
            body: Some(body),
            replay_of: None,
        })
        .unwrap()
    }

    #[test]
    fn keeps_the_last_n() {
        let i = inspector(3, 1 << 20, false);
        for _ in 0..5 {
            arrive(&i, &[], &Bytes::new()).end(200, "done", None);
        }
        let ids: Vec<u64> = i.entries().iter().map(|e| e.id).collect();
        assert_eq!(ids, [3, 4, 5]);
        assert_eq!(
            i.bytes(),
            i.entries().iter().map(Entry::size).sum::<usize>()
        );
    }

    #[test]
    fn holds_to_the_byte_bound() {
        let max = 64 * 1024;
        let i = inspector(1000, max, true);
        let headers = vec![("x-big".to_owned(), "v".repeat(6000))];
        let body = Bytes::from(vec![b'a'; 5000]);
        for _ in 0..100 {
            let mut c = arrive(&i, &headers, &body);
            c.response_piece(&[b'b'; 4000]);
            c.end(200, "done", None);
            assert!(i.bytes() <= max, "{} > {max}", i.bytes());
        }
        let kept = i.entries();
        assert!(kept.len() < 100 && kept.len() >= 5, "{}", kept.len());
        assert_eq!(i.bytes(), kept.iter().map(Entry::size).sum::<usize>());
        // Bodies are cut to the prefix.
        assert_eq!(kept[0].request_body.len(), BODY_PREFIX);
        assert_eq!(kept[0].response_body.len(), BODY_PREFIX);
        assert_eq!(kept[0].response_bytes, 4000);
        assert!(!kept[0].request_body_whole);
    }

    #[test]
    fn an_entry_larger_than_the_bound_is_trimmed_not_kept_whole() {
        let i = inspector(10, 4096, true);
        let headers = vec![("x-huge".to_owned(), "v".repeat(10_000))];
        arrive(&i, &headers, &Bytes::from_static(b"hi")).end(200, "done", None);
        let e = &i.entries()[0];
        assert!(e.trimmed && e.request_headers.is_empty());
        assert!(i.bytes() <= 4096);
    }

    #[test]
    fn off_captures_nothing() {
        let i = inspector(0, 4096, true);
        let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert!(i
            .arrive(Arrival {
                client: Some(addr),
                local: Some(addr),
                method: "GET",
                host: "h",
                path: "/",
                query: None,
                headers: &[],
                body: None,
                replay_of: None,
            })
            .is_none());
        assert!(i.entries().is_empty());
    }

    #[test]
    fn bodies_off_keeps_no_body_and_no_replay_of_one() {
        let i = inspector(10, 1 << 20, false);
        arrive(&i, &[], &Bytes::from_static(b"secret")).end(200, "done", None);
        arrive(&i, &[], &Bytes::new()).end(200, "done", None);
        let e = i.entries();
        assert!(e[0].request_body.is_empty() && !e[0].request_body_whole);
        assert_eq!(e[0].request_bytes, 6);
        assert!(e[1].request_body_whole);
    }

    #[test]
    fn a_body_in_pieces_keeps_its_prefix_and_its_count() {
        let i = inspector(10, 1 << 20, true);
        let mut c = arrive(&i, &[], &Bytes::new());
        c.request_piece(&[b'x'; 700]);
        c.request_piece(&[b'y'; 700]);
        c.end(200, "completed", None);
        let e = &i.entries()[0];
        assert_eq!(e.request_bytes, 1400);
        assert_eq!(e.request_body.len(), BODY_PREFIX);
        assert_eq!(&e.request_body[698..702], b"xxyy");
        assert!(!e.request_body_whole);
    }

    #[test]
    fn the_feed_hears_each_change() {
        let i = inspector(10, 1 << 20, false);
        let mut feed = i.subscribe();
        arrive(&i, &[], &Bytes::new()).end(404, "done", None);
        let first = feed.try_recv().unwrap();
        let last = feed.try_recv().unwrap();
        assert!(std::str::from_utf8(&first)
            .unwrap()
            .starts_with("event: request\ndata: {"));
        assert!(std::str::from_utf8(&last)
            .unwrap()
            .contains("\"status\":404"));
        drop(feed);
        arrive(&i, &[], &Bytes::new());
        assert_eq!(i.watchers.load(Ordering::Relaxed), 0);
    }
}
