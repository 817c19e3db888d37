//! One receiver's WebSocket: a reader feeding the gateway task and a writer
//! draining what the gateway task queued for it.

use anpx_core::features::Features;
use anpx_core::gateway::Identity;
use anpx_core::gateway::LinkFault;
use anpx_core::route::ServiceUrl;
use async_tungstenite::tungstenite::{Error as WsError, Message};
use async_tungstenite::WebSocketStream;
use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::driver::{Driver, LinkOut};
use crate::ws::{close, from_wire, to_wire};

/// Serves one receiver connection until either side closes it.
pub(crate) async fn serve<S>(
    ws: WebSocketStream<S>,
    driver: Driver,
    identity: Identity,
    grants: Vec<ServiceUrl>,
    features: Features,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (outbox, mut queued) = mpsc::unbounded_channel();
    let who = format!("{identity:?}");
    let Ok(link) = driver.admit(identity, grants, features, outbox).await else {
        return;
    };
    tracing::info!(%link, receiver = %who, features = %features, "receiver connected");
    let (mut sink, mut stream) = ws.split();

    let writer = async {
        let mut next = queued.recv().await;
        while let Some(out) = next.take() {
            match out {
                LinkOut::Send(m) => {
                    // Feed whatever else is queued and flush once: one write
                    // for many frames under load.
                    if sink.feed(to_wire(m)).await.is_err() {
                        return;
                    }
                    while let Ok(more) = queued.try_recv() {
                        match more {
                            LinkOut::Send(m) => {
                                if sink.feed(to_wire(m)).await.is_err() {
                                    return;
                                }
                            }
                            close_order => {
                                next = Some(close_order);
                                break;
                            }
                        }
                    }
                    if sink.flush().await.is_err() {
                        return;
                    }
                }
                LinkOut::Close { code, reason } => {
                    tracing::warn!(%link, code, %reason, "closing receiver connection");
                    let _ = sink.send(close(code, &reason)).await;
                    return;
                }
            }
            if next.is_none() {
                next = queued.recv().await;
            }
        }
    };
    let reader = async {
        while let Some(msg) = stream.next().await {
            let msg = match msg {
                Ok(Message::Close(_)) => return,
                Err(e) => {
                    if let Some(fault) = fault_of(&e) {
                        tracing::warn!(%link, fault = fault.label(), error = %e, "receiver broke the WebSocket protocol");
                        driver.fault(link, fault, e.to_string());
                    }
                    return;
                }
                Ok(m) => m,
            };
            if let Some(m) = from_wire(msg) {
                if driver.message(link, m).is_err() {
                    return;
                }
            }
        }
    };
    tokio::select! {
        () = writer => {}
        () = reader => {}
    }
    driver.closed(link);
    tracing::info!(%link, "receiver disconnected");
}

/// The fault behind a WebSocket read error; `None` for an ordinary
/// disconnect.
fn fault_of(e: &WsError) -> Option<LinkFault> {
    match e {
        WsError::Capacity(_) => Some(LinkFault::TooBig),
        WsError::Protocol(_) | WsError::Utf8(_) => Some(LinkFault::BadFrame),
        _ => None,
    }
}
