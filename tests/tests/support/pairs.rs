//! Gateways and receivers of either shell, started in-process on loopback
//! from a tokio test (the smol pieces run on smol's own threads), for
//! scenarios that run over every (gateway shell, receiver shell) pair.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anpx_core::auth::VerifierConfig;
use anpx_core::registry::Registry;
use shell_common::did_wba::{DidWbaAdmission, DocumentIo, DocumentSources};
use shell_common::{Credentials, GatewayOptions, ReceiverOptions, Status};

/// Which shell.
#[derive(Debug, Clone, Copy)]
pub enum Shell {
    Tokio,
    Smol,
}

/// A gateway of either shell.
pub enum Gw {
    Tokio(shell_tokio::gateway::Gateway),
    Smol(shell_smol::gateway::Gateway),
}

impl Gw {
    /// A gateway in open mode on an ephemeral port, configured by `tune`.
    pub async fn start(shell: Shell, tune: impl FnOnce(&mut GatewayOptions)) -> Gw {
        let mut o = GatewayOptions::open("127.0.0.1:0".parse().unwrap());
        tune(&mut o);
        match shell {
            Shell::Tokio => Gw::Tokio(shell_tokio::gateway::Gateway::bind(o).await.unwrap()),
            Shell::Smol => Gw::Smol(shell_smol::gateway::Gateway::bind(o).await.unwrap()),
        }
    }

    /// A gateway on an ephemeral port that admits receivers by DID-WBA:
    /// the shared check, with DID documents from `directory` read through
    /// the shell's own document I/O, and grants from `registry`.
    pub async fn start_did_wba(
        shell: Shell,
        directory: PathBuf,
        registry: Arc<dyn Registry>,
    ) -> Gw {
        Gw::start_did_wba_with(shell, directory, registry, VerifierConfig::default()).await
    }

    /// [`start_did_wba`](Self::start_did_wba) with the verifier's settings.
    pub async fn start_did_wba_with(
        shell: Shell,
        directory: PathBuf,
        registry: Arc<dyn Registry>,
        verifier: VerifierConfig,
    ) -> Gw {
        let io: Arc<dyn DocumentIo> = match shell {
            Shell::Tokio => Arc::new(shell_tokio::fetch::TokioDocuments),
            Shell::Smol => Arc::new(shell_smol::fetch::SmolDocuments),
        };
        let sources = DocumentSources {
            directory: Some(directory),
            tls: shell_common::tls::client_config(None).unwrap(),
        };
        let admission = DidWbaAdmission::new(verifier, sources, io, registry);
        Gw::start(shell, |o| o.admission = Arc::new(admission)).await
    }

    pub fn addr(&self) -> SocketAddr {
        match self {
            Gw::Tokio(g) => g.public_addr(),
            Gw::Smol(g) => g.public_addr(),
        }
    }

    /// The admin plane's address (an ephemeral loopback port in tests).
    pub fn admin_addr(&self) -> SocketAddr {
        match self {
            Gw::Tokio(g) => g.admin_addr(),
            Gw::Smol(g) => g.admin_addr(),
        }
        .expect("an admin listener")
    }

    pub async fn stats(&self) -> anpx_core::GatewayStats {
        match self {
            Gw::Tokio(g) => g.stats().await,
            Gw::Smol(g) => g.stats().await,
        }
        .expect("gateway stats")
    }

    /// The separate receiver address, when configured.
    pub fn ws_addr(&self) -> Option<SocketAddr> {
        match self {
            Gw::Tokio(g) => g.ws_addr(),
            Gw::Smol(g) => g.ws_addr(),
        }
    }

    /// Stops the gateway, draining what is in flight.
    pub async fn shutdown(self) {
        match self {
            Gw::Tokio(g) => g.shutdown().await,
            Gw::Smol(g) => g.shutdown().await,
        }
    }

    /// Waits until `n` requests are in flight across the receivers.
    pub async fn wait_in_flight(&self, n: usize) {
        for _ in 0..400 {
            let stats = self.stats().await;
            if stats.links.iter().map(|l| l.in_flight).sum::<usize>() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("never {n} requests in flight");
    }

    /// Waits until the gateway lists `n` receivers.
    pub async fn wait_for_receivers(&self, n: usize) {
        for _ in 0..200 {
            if self.stats().await.links.len() == n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "gateway never had {n} receivers: {}",
            self.stats().await.links.len()
        );
    }
}

/// A receiver of either shell.
pub enum Rx {
    Tokio(shell_tokio::receiver::Receiver),
    Smol(shell_smol::receiver::Receiver),
}

impl Rx {
    /// A receiver with default settings serving `api.agent.com/svc`.
    pub async fn start(shell: Shell, gateway: SocketAddr, backend: SocketAddr) -> Rx {
        Rx::start_with(shell, gateway, backend, |_| {}).await
    }

    /// Like [`Rx::start`], with the state machine's settings tuned.
    pub async fn start_with(
        shell: Shell,
        gateway: SocketAddr,
        backend: SocketAddr,
        tune: impl FnOnce(&mut anpx_core::ReceiverConfig),
    ) -> Rx {
        let mut core = anpx_core::ReceiverConfig::default();
        tune(&mut core);
        let url = format!("ws://{gateway}/ws");
        let rx = Rx::build(
            shell,
            url,
            None,
            None,
            backend,
            &["api.agent.com/svc"],
            core,
        );
        let status = tokio::time::timeout(Duration::from_secs(10), async {
            match &rx {
                Rx::Tokio(r) => match r.wait_ready().await {
                    shell_tokio::receiver::Status::Connected { features, .. } => Ok(features),
                    other => Err(format!("{other:?}")),
                },
                Rx::Smol(r) => match r.wait_ready().await {
                    Status::Connected { features, .. } => Ok(features),
                    other => Err(format!("{other:?}")),
                },
            }
        })
        .await
        .expect("receiver connects in time");
        let features = status.expect("receiver connected");
        assert_eq!(
            features.to_header_value(),
            "streaming,flow-control,cancel,websocket,lossless-meta,upstream-failure,drain",
            "both shells negotiate the extensions"
        );
        rx
    }
}

/// What [`Rx::spawn`] sets beyond the defaults: the services, the identity
/// proof, and a quick reconnect so that a refused receiver tries again soon.
fn receiver_options<U: ?Sized>(
    o: &mut ReceiverOptions<U>,
    services: &[&str],
    credentials: Option<Arc<dyn Credentials>>,
) {
    o.services = services.iter().map(|s| s.parse().unwrap()).collect();
    o.credentials = credentials;
    o.backoff = anpx_core::backoff::BackoffConfig {
        first_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(400),
        ..Default::default()
    };
}

impl Rx {
    /// A receiver dialing `gateway` for `services` (empty: whatever it is
    /// granted), proving `credentials` if any; not waited for, so that a
    /// test can watch it be refused.
    pub fn spawn(
        shell: Shell,
        gateway: SocketAddr,
        backend: SocketAddr,
        services: &[&str],
        credentials: Option<Arc<dyn Credentials>>,
    ) -> Rx {
        let url = format!("ws://{gateway}/ws");
        Rx::dial(shell, url, None, credentials, backend, services)
    }

    /// A receiver dialing `url`, trusting `tls` (else the system's roots)
    /// for `wss://`, proving `credentials` if any, declaring `services`;
    /// not waited for.
    pub fn dial(
        shell: Shell,
        url: String,
        tls: Option<Arc<rustls::ClientConfig>>,
        credentials: Option<Arc<dyn Credentials>>,
        backend: SocketAddr,
        services: &[&str],
    ) -> Rx {
        let core = anpx_core::ReceiverConfig::default();
        Rx::build(shell, url, tls, credentials, backend, services, core)
    }

    /// A receiver dialing `url` with no services declared and the state
    /// machine's settings tuned by `tune`; not waited for.
    pub fn dial_with(
        shell: Shell,
        url: String,
        backend: SocketAddr,
        tune: impl FnOnce(&mut anpx_core::ReceiverConfig),
    ) -> Rx {
        let mut core = anpx_core::ReceiverConfig::default();
        tune(&mut core);
        Rx::build(shell, url, None, None, backend, &[], core)
    }

    /// [`Rx::dial`] with the state machine's settings given.
    fn build(
        shell: Shell,
        url: String,
        tls: Option<Arc<rustls::ClientConfig>>,
        credentials: Option<Arc<dyn Credentials>>,
        backend: SocketAddr,
        services: &[&str],
        core: anpx_core::ReceiverConfig,
    ) -> Rx {
        let upstream = format!("http://{backend}");
        match shell {
            Shell::Tokio => {
                let mut o = shell_tokio::receiver::ReceiverOptions::new(
                    url,
                    Arc::new(shell_tokio::upstream::HttpUpstream::new(&upstream).unwrap()),
                );
                receiver_options(&mut o, services, credentials);
                o.tls = tls;
                o.core = core;
                Rx::Tokio(shell_tokio::receiver::Receiver::spawn(o))
            }
            Shell::Smol => {
                let mut o = shell_smol::receiver::ReceiverOptions::new(
                    url,
                    Arc::new(shell_smol::upstream::HttpUpstream::new(&upstream).unwrap()),
                );
                receiver_options(&mut o, services, credentials);
                o.tls = tls;
                o.core = core;
                Rx::Smol(shell_smol::receiver::Receiver::spawn(o))
            }
        }
    }

    /// A receiver serving `api.agent.com/svc` from `backend` with its admin
    /// plane on a free loopback port, capturing as `inspector` says;
    /// connected before returning, with the admin plane's address.
    pub async fn start_with_admin(
        shell: Shell,
        gateway: SocketAddr,
        backend: SocketAddr,
        inspector: anpx_core::config::InspectorSection,
    ) -> (Rx, SocketAddr) {
        let url = format!("ws://{gateway}/ws");
        let upstream = format!("http://{backend}");
        let services = ["api.agent.com/svc"];
        let monitor = || {
            let m = shell_common::admin::ReceiverMonitor::new(
                services.iter().map(|s| s.to_string()).collect(),
                inspector.clone(),
                65536,
            );
            m.set_upstream(&upstream);
            Arc::new(m)
        };
        let admin = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        let rx = match shell {
            Shell::Tokio => {
                let mut o = shell_tokio::receiver::ReceiverOptions::new(
                    url,
                    Arc::new(shell_tokio::upstream::HttpUpstream::new(&upstream).unwrap()),
                );
                receiver_options(&mut o, &services, None);
                o.admin_listen = admin;
                o.monitor = monitor();
                Rx::Tokio(shell_tokio::receiver::Receiver::bind(o).await.unwrap())
            }
            Shell::Smol => {
                let mut o = shell_smol::receiver::ReceiverOptions::new(
                    url,
                    Arc::new(shell_smol::upstream::HttpUpstream::new(&upstream).unwrap()),
                );
                receiver_options(&mut o, &services, None);
                o.admin_listen = admin;
                o.monitor = monitor();
                Rx::Smol(shell_smol::receiver::Receiver::bind(o).await.unwrap())
            }
        };
        rx.wait_connected().await;
        let addr = match &rx {
            Rx::Tokio(r) => r.admin_addr(),
            Rx::Smol(r) => r.admin_addr(),
        };
        (rx, addr.expect("the admin plane is bound"))
    }

    /// Waits (ten seconds at most) until connected; fails the test otherwise.
    pub async fn wait_connected(&self) {
        let status = tokio::time::timeout(Duration::from_secs(10), self.wait_ready())
            .await
            .expect("receiver connects in time");
        assert!(
            matches!(status, Status::Connected { .. }),
            "receiver not connected: {status:?}"
        );
    }

    /// Whether the receiver is connected right now.
    pub fn connected(&self) -> bool {
        let status = match self {
            Rx::Tokio(r) => r.status(),
            Rx::Smol(r) => r.status(),
        };
        matches!(status, Status::Connected { .. })
    }

    /// Waits until the receiver is connected (or stopped) and returns that status.
    pub async fn wait_ready(&self) -> Status {
        match self {
            Rx::Tokio(r) => r.wait_ready().await,
            Rx::Smol(r) => r.wait_ready().await,
        }
    }

    /// Stops the receiver and waits for it.
    pub async fn shutdown(self) {
        match self {
            Rx::Tokio(r) => r.shutdown().await,
            Rx::Smol(r) => r.shutdown().await,
        }
    }
}

/// Each scenario, once per (gateway shell, receiver shell) pair: a test
/// module per scenario with one test per pair. The calling file must have
/// `Shell` (this module's or its own) in scope at its root.
#[allow(unused_macros)] // test files that share `support` without pairs
macro_rules! for_every_pair {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::Shell::{Smol, Tokio};

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn tokio_tokio() {
                    super::$scenario(Tokio, Tokio).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn smol_smol() {
                    super::$scenario(Smol, Smol).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn tokio_gateway_smol_receiver() {
                    super::$scenario(Tokio, Smol).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn smol_gateway_tokio_receiver() {
                    super::$scenario(Smol, Tokio).await
                }
            }
        )*
    };
}

/// Each scenario once per gateway shell, for what only the gateway decides
/// (its public edge): a test module per scenario with a test per shell.
/// The calling file must have `Shell` in scope at its root.
#[allow(unused_macros)] // test files that share `support` without it
macro_rules! for_every_gateway {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::Shell::{Smol, Tokio};

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn tokio_gateway() {
                    super::$scenario(Tokio).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn smol_gateway() {
                    super::$scenario(Smol).await
                }
            }
        )*
    };
}

/// Each scenario once per receiver shell, for what only the receiver
/// decides (facing a gateway the test plays by hand): a test module per
/// scenario with a test per shell. The calling file must have `Shell` in
/// scope at its root.
#[allow(unused_macros)] // test files that share `support` without it
macro_rules! for_every_receiver {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::Shell::{Smol, Tokio};

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn tokio_receiver() {
                    super::$scenario(Tokio).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn smol_receiver() {
                    super::$scenario(Smol).await
                }
            }
        )*
    };
}
