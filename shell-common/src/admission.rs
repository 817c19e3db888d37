//! Who may connect as a receiver, and what they may serve: the
//! authentication I/O of the receiver handshake. What its outcome means
//! (accept or refuse, with which status, granting what) is decided in
//! `anpx_core::handshake`.

use std::future::Future;
use std::pin::Pin;

use anpx_core::registry::RegistryFuture;
use anpx_core::Identity;
use anpx_core::ServiceUrl;

use crate::driver::Driver;

/// What authentication said about a receiver it let in, and why it
/// refused one: the core's types, whose outcome
/// [`anpx_core::handshake::Admissions::decide`] turns into an acceptance or
/// a refusal with its status.
pub use anpx_core::handshake::{Admitted, AuthRefusal as Refusal};

/// Decides, from the WebSocket handshake request, whether a receiver may
/// connect. `service` is the gateway's host name as the receiver addressed it.
///
/// What a check remembers (spent nonces, fetches in flight) is the gateway
/// machine's, reached through `gateway`; the check itself keeps none.
pub trait Admission: Send + Sync + 'static {
    /// Checks one handshake.
    fn check<'a>(
        &'a self,
        headers: &'a http::HeaderMap,
        service: &'a str,
        gateway: &'a Driver,
    ) -> Pin<Box<dyn Future<Output = Result<Admitted, Refusal>> + Send + 'a>>;

    /// The gateway machine `machine`, set up to keep this check's state
    /// (its limits on nonces and document fetches); as it is by default.
    fn prepare(&self, machine: anpx_core::Gateway) -> anpx_core::Gateway {
        machine
    }

    /// What `identity` may serve now, read afresh from the registry, for a
    /// receiver that stays connected; `None` when grants do not come from
    /// a registry (open mode), so there is nothing to follow.
    fn current_grants<'a>(
        &'a self,
        identity: &'a Identity,
    ) -> Option<RegistryFuture<'a, Vec<ServiceUrl>>> {
        let _ = identity;
        None
    }
}

/// Open mode: everyone is admitted anonymously and serves what it declares.
/// For loopback demos and private networks only.
#[derive(Debug, Clone, Copy, Default)]
pub struct OpenAdmission;

impl Admission for OpenAdmission {
    fn check<'a>(
        &'a self,
        _headers: &'a http::HeaderMap,
        _service: &'a str,
        _gateway: &'a Driver,
    ) -> Pin<Box<dyn Future<Output = Result<Admitted, Refusal>> + Send + 'a>> {
        Box::pin(async {
            Ok(Admitted {
                identity: Identity::Anonymous,
                allowed: None,
            })
        })
    }
}
