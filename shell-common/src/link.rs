//! One receiver's WebSocket on the gateway: a reader feeding the gateway
//! machine on this connection's task, and a writer draining the
//! connection's [`Outbox`], which whoever fed the machine filled.

use std::future::poll_fn;
use std::net::IpAddr;
use std::pin::pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use anpx_core::handshake;
use anpx_core::ServiceUrl;
use anpx_core::{Feature, Features, INITIAL_WINDOW};
use anpx_core::{Identity, LinkFault, LinkId};
use futures_util::future::{select, Either};
use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::FutureExt;

use crate::admission::Admission;
use crate::driver::{Driver, DriverGone, LinkOut, Outbox, ReceiverSlot, Taken};
use crate::receiver::Runtime;
use crate::ws::{Arriving, FrameError, Incoming, WsError, WsSocket};

/// How long a connection the gateway closed may take to answer the close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A receiver connection admitted to the gateway machine, whose WebSocket is
/// not up yet: what is sent to it waits in its queue.
pub struct AdmittedLink {
    /// The connection, for [`Driver::closed`] if the upgrade fails.
    pub link: LinkId,
    /// The receiver's address, in every line logged about the connection.
    pub peer: IpAddr,
    outbox: Arc<Outbox>,
    who: String,
    features: Features,
    follow: FollowGrants,
}

/// How a connected receiver's grants follow the registry: every `every`,
/// what `identity` may serve is read again and `declared` granted against
/// it, so a service URL removed from the registry stops routing to a
/// receiver that is still connected, and one added starts.
pub struct FollowGrants {
    /// Where grants come from; with nothing to follow (open mode) the
    /// connection keeps what it was granted.
    pub admission: Arc<dyn Admission>,
    /// Who the receiver proved to be.
    pub identity: Identity,
    /// What it asked to serve at its handshake.
    pub declared: Vec<ServiceUrl>,
    /// What it was granted at its handshake.
    pub granted: Vec<ServiceUrl>,
    /// How often to read the registry again, as SIGHUP may change it.
    pub live: Arc<crate::live::GatewayLive>,
}

impl FollowGrants {
    /// Runs for as long as the connection is served; never returns.
    async fn run(mut self, driver: &Driver, link: LinkId, runtime: &dyn Runtime) {
        loop {
            runtime
                .sleep_until(Instant::now() + self.live.grants_refresh())
                .await;
            let Some(read) = self.admission.current_grants(&self.identity) else {
                return std::future::pending().await;
            };
            match read.await {
                Ok(allowed) => {
                    let grants = handshake::grant(&self.declared, Some(&allowed));
                    if grants != self.granted {
                        driver.regrant(link, grants.clone());
                        self.granted = grants;
                    }
                }
                Err(e) => {
                    tracing::warn!(%link, error = %e, "registry unreadable; the receiver keeps its grants");
                }
            }
        }
    }
}

/// Room above a credit window for what else one frame carries (its header
/// and a response head, itself capped at 64 KiB of headers).
const FRAME_OVERHEAD: usize = 128 * 1024;

impl AdmittedLink {
    /// The largest WebSocket message (and frame) to accept from this
    /// receiver, given the gateway's `max_message_len`. A flow-controlled
    /// receiver never sends more than its 1 MiB window of body in a frame
    /// (more closes it anyway), so its limit is the window and a head:
    /// what one of its connections can hold in a message still arriving
    /// is ~1 MiB rather than the whole budget.
    pub fn message_limit(&self, max_message_len: usize) -> usize {
        if self.features.contains(Feature::FlowControl) {
            let window = usize::try_from(INITIAL_WINDOW).unwrap_or(usize::MAX);
            max_message_len.min(window + FRAME_OVERHEAD)
        } else {
            max_message_len
        }
    }
}

/// Admits the receiver accepted on `slot` from `peer` before its
/// handshake is answered, so that its routes are live by the time it
/// reads the 101 (a receiver that is told it is connected may be sent
/// requests at once).
pub fn admit(
    slot: &mut ReceiverSlot,
    peer: IpAddr,
    identity: Identity,
    grants: Vec<ServiceUrl>,
    features: Features,
    follow: FollowGrants,
) -> Result<AdmittedLink, DriverGone> {
    let outbox = Arc::new(Outbox::default());
    let who = identity.to_string();
    let link = slot.admit(peer, identity, grants, features, outbox.clone())?;
    Ok(AdmittedLink {
        link,
        peer,
        outbox,
        who,
        features,
        follow,
    })
}

/// Serves one admitted receiver connection until either side closes it.
/// `runtime` times the wait for the peer's answer to a close.
pub async fn serve<S>(
    ws: WsSocket<S>,
    driver: Driver,
    admitted: AdmittedLink,
    runtime: &dyn Runtime,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let AdmittedLink {
        link,
        peer,
        outbox,
        who,
        features,
        follow,
    } = admitted;
    tracing::info!(%link, %peer, receiver = %who, features = %features, "receiver connected");
    // The reader and the writer are two futures of this one task, so the
    // lock is never contended; it makes the pair `Send`.
    let ws = Mutex::new(ws);
    let socket = || ws.lock().unwrap_or_else(PoisonError::into_inner);
    let mut arriving = Arriving::new();

    // True when the gateway closed the connection and sent the close frame.
    let writer = async {
        let mut batch = std::collections::VecDeque::new();
        loop {
            match poll_fn(|cx| outbox.poll_take(cx, &mut batch)).await {
                Taken::Ended => return false,
                Taken::Some { was_full } => {
                    if was_full {
                        // Uploads held back for room may go on.
                        driver.writable(link);
                    }
                }
            }
            // Queue everything taken and flush once: one write for many
            // frames under load (a write every `WRITE_BATCH` bytes for
            // large bodies).
            let mut closing = false;
            while let Some(out) = batch.pop_front() {
                let due = {
                    let mut ws = socket();
                    match out {
                        LinkOut::Send(m) => ws.feed(m),
                        LinkOut::Close { code, reason } => {
                            ws.feed_close(code, &reason);
                            closing = true;
                        }
                    }
                    ws.write_due()
                };
                if closing {
                    break;
                }
                if due && poll_fn(|cx| socket().poll_flush(cx)).await.is_err() {
                    return false;
                }
            }
            let flushed = poll_fn(|cx| socket().poll_flush(cx)).await.is_ok();
            if closing || !flushed {
                return closing && flushed;
            }
        }
    };
    let reader = async {
        loop {
            // What is held of a message still arriving is reported as it
            // grows, so the budgets see it before the message is whole.
            let next = poll_fn(|cx| {
                let mut ws = socket();
                let polled = ws.poll_next(cx);
                if let Some(bytes) = arriving.update(ws.arriving()) {
                    driver.arriving(link, bytes);
                }
                polled
            });
            let message = match next.await {
                None | Some(Ok(Incoming::Close(_))) => return,
                Some(Err(e)) => {
                    if let Some(fault) = fault_of(&e) {
                        tracing::warn!(%link, %peer, fault = fault.label(), error = %e, "receiver broke the WebSocket protocol");
                        driver.fault(link, fault, e.to_string());
                    }
                    return;
                }
                Some(Ok(Incoming::Message(m))) => m,
            };
            if driver.message(link, message).is_err() {
                return;
            }
        }
    };
    // The follower never ends; the connection ends when either side does.
    let following = follow.run(&driver, link, runtime);
    let closed_by_us = match select(select(pin!(writer), pin!(reader)), pin!(following)).await {
        Either::Left((Either::Left((sent, _)), _)) => sent,
        Either::Left((Either::Right(((), _)), _)) | Either::Right(((), _)) => false,
    };
    driver.closed(link);
    let mut ws = ws.into_inner().unwrap_or_else(PoisonError::into_inner);
    // Wait (briefly) for the peer's close reply, reading what it still
    // sends, or for our reply to its close to go out: dropping a socket
    // with unread data resets it, and the reset can destroy the close
    // frame, and its reason, before the peer reads it.
    let mut grace = runtime.sleep_until(Instant::now() + CLOSE_GRACE);
    poll_fn(|cx| {
        if grace.poll_unpin(cx).is_ready() {
            return Poll::Ready(());
        }
        if !closed_by_us {
            return ws.poll_flush(cx).map(|_| ());
        }
        loop {
            match ws.poll_next(cx) {
                Poll::Ready(Some(Ok(Incoming::Close(_))) | Some(Err(_)) | None) => {
                    return Poll::Ready(())
                }
                Poll::Ready(Some(Ok(_))) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    })
    .await;
    tracing::info!(%link, %peer, "receiver disconnected");
}

/// The fault behind a WebSocket read error; `None` for an ordinary
/// disconnect.
fn fault_of(e: &WsError) -> Option<LinkFault> {
    match e {
        WsError::Frame(FrameError::TooBig { .. }) => Some(LinkFault::TooBig),
        WsError::Frame(FrameError::Protocol(_)) => Some(LinkFault::BadFrame),
        WsError::Io(_) => None,
    }
}
