//! The replay state of DID-WBA authentication, kept by the gateway
//! machine: the nonces receiver logins spent and those callers spent,
//! each in its own [`Nonces`] so that callers cannot fill the receivers'.
//! The signature checks are pure ([`crate::auth::Checker`]) and run
//! outside the machine's lock; only the cheap nonce look-ups and spends
//! come here, with the wall-clock `now` the nonce window needs.

use std::fmt::Display;
use std::time::SystemTime;

use crate::auth::{AuthError, Login, Nonces, ParsedHeader, VerifiedDid, VerifierConfig};
use crate::handshake::{Admitted, AuthRefusal};
use crate::route::ServiceUrl;

use super::Gateway;

impl Gateway {
    /// This gateway, remembering receivers' nonces as `config` says
    /// (instead of [`VerifierConfig::default`]). Nothing is spent yet.
    pub fn with_login_nonces(mut self, config: &VerifierConfig) -> Self {
        self.login_nonces = Nonces::new(config);
        self
    }

    /// This gateway, remembering callers' nonces as `config` says, and
    /// counting caller authentication ([`Gateway::with_caller_counts`]).
    pub fn with_caller_auth(mut self, config: &VerifierConfig) -> Self {
        self.caller_nonces = Nonces::new(config);
        self.with_caller_counts()
    }

    /// [`Login::unspent`] on the receivers' nonces.
    pub fn login_unspent(&mut self, now: SystemTime, login: &Login) -> Result<(), AuthRefusal> {
        login.unspent(&mut self.login_nonces, now)
    }

    /// [`Login::finish`] on the receivers' nonces: the login's nonce is
    /// spent if the registry granted something.
    pub fn finish_login<E: Display>(
        &mut self,
        now: SystemTime,
        login: Login,
        verified: VerifiedDid,
        allowed: Result<Vec<ServiceUrl>, E>,
    ) -> Result<Admitted, AuthRefusal> {
        login.finish(&mut self.login_nonces, now, verified, allowed)
    }

    /// A caller's header `parsed` has a nonce not spent yet
    /// ([`Nonces::check`]); records nothing.
    pub fn caller_unspent(
        &mut self,
        now: SystemTime,
        parsed: &ParsedHeader,
    ) -> Result<(), AuthError> {
        self.caller_nonces.check(now, parsed)
    }

    /// Spends the nonce of a caller's header that passed every check
    /// ([`Nonces::spend`]).
    pub fn spend_caller_nonce(
        &mut self,
        now: SystemTime,
        parsed: &ParsedHeader,
    ) -> Result<(), AuthError> {
        self.caller_nonces.spend(now, parsed)
    }

    /// How many nonces are remembered: (receivers', callers').
    pub fn nonces_stored(&self) -> (usize, usize) {
        (self.login_nonces.len(), self.caller_nonces.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{build_header, generate_did_document, Checker, KeyMaterial};
    use crate::GatewayConfig;
    use std::time::{Duration, UNIX_EPOCH};

    const GW: &str = "gateway.example.com";

    fn signed(nonce: u8, now: SystemTime) -> (String, String) {
        let (doc, pem) =
            generate_did_document("didhost.cc", Some("a"), KeyMaterial::Ed25519([3; 32])).unwrap();
        let header = build_header(doc.as_bytes(), &pem, GW, now, [nonce; 16]).unwrap();
        (doc, header)
    }

    #[test]
    fn a_login_nonce_spent_once_is_refused_the_second_time() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let config = VerifierConfig::default();
        let checker = Checker::new(config.clone());
        let mut gw = Gateway::new(GatewayConfig::default(), 1).with_login_nonces(&config);
        let (doc, header) = signed(1, now);
        let grants = || Ok::<_, String>(vec!["api.agent.com".parse().unwrap()]);
        let login = |gw: &mut Gateway| {
            let login = Login::start(&checker, now, Some(header.as_bytes()), GW)?;
            gw.login_unspent(now, &login)?;
            let verified = login.document(&checker, now, doc.as_bytes())?;
            gw.finish_login(now, login, verified, grants())
        };
        assert!(login(&mut gw).is_ok());
        assert_eq!(gw.nonces_stored(), (1, 0));
        assert_eq!(login(&mut gw).unwrap_err().label, "replayed_nonce");
        // Spending it twice past the early check is refused too.
        let again = Login::start(&checker, now, Some(header.as_bytes()), GW).unwrap();
        let verified = again.document(&checker, now, doc.as_bytes()).unwrap();
        let refused = gw.finish_login(now, again, verified, grants()).unwrap_err();
        assert_eq!(refused.label, "replayed_nonce");
    }

    #[test]
    fn callers_spend_their_own_nonces() {
        let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let config = VerifierConfig {
            max_nonces: 1,
            ..VerifierConfig::default()
        };
        let checker = Checker::new(config.clone());
        let mut gw = Gateway::new(GatewayConfig::default(), 1)
            .with_login_nonces(&config)
            .with_caller_auth(&config);
        let (_, header) = signed(2, now);
        let parsed = checker.check_header(now, &header, GW).unwrap();
        gw.caller_unspent(now, &parsed).unwrap();
        gw.spend_caller_nonce(now, &parsed).unwrap();
        assert_eq!(
            gw.spend_caller_nonce(now, &parsed),
            Err(AuthError::ReplayedNonce)
        );
        assert_eq!(
            gw.caller_unspent(now, &parsed),
            Err(AuthError::ReplayedNonce)
        );
        // The callers' full store leaves the receivers' alone.
        assert_eq!(gw.nonces_stored(), (0, 1));
        let login = Login::start(&checker, now, Some(header.as_bytes()), GW).unwrap();
        assert!(gw.login_unspent(now, &login).is_ok());
        // Past the window, a spend is refused whatever the store says.
        let late = now + Duration::from_secs(301);
        let (_, other) = signed(3, now);
        let parsed = checker.check_header(now, &other, GW).unwrap();
        assert!(matches!(
            gw.spend_caller_nonce(late, &parsed),
            Err(AuthError::Expired { .. })
        ));
    }
}
