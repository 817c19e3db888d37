//! One receiver's WebSocket on the gateway: a reader feeding the gateway
//! task and a writer draining what the gateway task queued for it.

use std::pin::pin;

use anpx_core::features::Features;
use anpx_core::gateway::Identity;
use anpx_core::route::ServiceUrl;
use async_tungstenite::tungstenite::Message;
use async_tungstenite::WebSocketStream;
use futures_channel::mpsc;
use futures_util::future::select;
use futures_util::io::{AsyncRead, AsyncWrite};
use futures_util::{SinkExt, StreamExt};

use crate::driver::{Driver, LinkOut};
use crate::ws::{close, from_wire, to_wire};

/// Serves one receiver connection until either side closes it.
pub async fn serve<S>(
    ws: WebSocketStream<S>,
    driver: Driver,
    identity: Identity,
    grants: Vec<ServiceUrl>,
    features: Features,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (outbox, mut queued) = mpsc::unbounded();
    let who = format!("{identity:?}");
    let Ok(link) = driver.admit(identity, grants, features, outbox).await else {
        return;
    };
    tracing::info!(%link, receiver = %who, features = %features, "receiver connected");
    let (mut sink, mut stream) = ws.split();

    let writer = async {
        let mut next = queued.next().await;
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
                next = queued.next().await;
            }
        }
    };
    let reader = async {
        while let Some(msg) = stream.next().await {
            let msg = match msg {
                Ok(Message::Close(_)) | Err(_) => return,
                Ok(m) => m,
            };
            if let Some(m) = from_wire(msg) {
                if driver.message(link, m).is_err() {
                    return;
                }
            }
        }
    };
    select(pin!(writer), pin!(reader)).await;
    driver.closed(link);
    tracing::info!(%link, "receiver disconnected");
}
