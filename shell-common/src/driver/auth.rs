//! DID-WBA's state, reached through the machine that owns it: the nonces
//! receivers and callers spent, the DID document fetches in flight and
//! cached, the callers' verdicts. Each call is a short critical section
//! (a hash look-up, a counter); the signature checks and the fetches run
//! outside the lock, in `did_wba` and `caller_auth`.

use std::time::SystemTime;

use anpx_core::auth::{AuthError, Login, ParsedHeader, VerifiedDid};
use anpx_core::handshake::{Admitted, AuthRefusal, DocumentStep, FetchTicket};
use anpx_core::{CallerProof, ServiceUrl};
use bytes::Bytes;

use super::reports::Report;
use super::{Driver, DriverGone};

impl Driver {
    /// The login's nonce is not spent yet ([`anpx_core::Gateway::login_unspent`]).
    pub fn login_unspent(
        &self,
        now: SystemTime,
        login: &Login,
    ) -> Result<Result<(), AuthRefusal>, DriverGone> {
        self.with(|st, _| st.core.login_unspent(now, login))
    }

    /// Ends a login whose signature verified, with the registry's answer
    /// ([`anpx_core::Gateway::finish_login`]).
    pub fn finish_login<E: std::fmt::Display>(
        &self,
        now: SystemTime,
        login: Login,
        verified: VerifiedDid,
        allowed: Result<Vec<ServiceUrl>, E>,
    ) -> Result<Result<Admitted, AuthRefusal>, DriverGone> {
        self.with(|st, _| st.core.finish_login(now, login, verified, allowed))
    }

    /// A caller's nonce is not spent yet
    /// ([`anpx_core::Gateway::caller_unspent`]).
    pub fn caller_unspent(
        &self,
        now: SystemTime,
        parsed: &ParsedHeader,
    ) -> Result<Result<(), AuthError>, DriverGone> {
        self.with(|st, _| st.core.caller_unspent(now, parsed))
    }

    /// Spends a verified caller's nonce
    /// ([`anpx_core::Gateway::spend_caller_nonce`]).
    pub fn spend_caller_nonce(
        &self,
        now: SystemTime,
        parsed: &ParsedHeader,
    ) -> Result<Result<(), AuthError>, DriverGone> {
        self.with(|st, _| st.core.spend_caller_nonce(now, parsed))
    }

    /// The cached document at `url`, or a place to fetch it
    /// ([`anpx_core::Gateway::document_lookup`]).
    pub fn document_lookup(
        &self,
        url: &str,
        host: &str,
    ) -> Result<Result<DocumentStep, AuthRefusal>, DriverGone> {
        self.with(|st, now| st.core.document_lookup(now, url, host))
    }

    /// A document fetch ended with `result`
    /// ([`anpx_core::Gateway::document_fetched`]).
    pub fn document_fetched<E: std::fmt::Display>(
        &self,
        ticket: FetchTicket,
        result: Result<Bytes, E>,
    ) -> Result<Result<Bytes, AuthRefusal>, DriverGone> {
        self.with(|st, now| st.core.document_fetched(now, ticket, result))
    }

    /// A document fetch was dropped before it ended
    /// ([`anpx_core::Gateway::document_abandoned`]). A gateway that shut
    /// down has no pool left to give the place back to.
    pub fn document_abandoned(&self, ticket: FetchTicket) {
        let _ = self.with(|st, now| st.core.document_abandoned(now, ticket));
    }

    /// Document fetches in flight now.
    pub fn document_fetches_in_flight(&self) -> Result<usize, DriverGone> {
        self.with(|st, _| st.core.document_fetches_in_flight())
    }

    /// A call to a protected route was let through on `proof`: counted by
    /// the machine at its next lock, like [`request_ended`](Self::request_ended).
    pub fn caller_accepted(&self, proof: CallerProof) {
        self.report(Report::CallerAccepted(proof));
    }

    /// A call to a protected route was refused with 401 for `reason`;
    /// counted like [`caller_accepted`](Self::caller_accepted).
    pub fn caller_refused(&self, reason: &'static str) {
        self.report(Report::CallerRefused(reason));
    }
}
