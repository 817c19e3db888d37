//! Several gateways acting as one over NATS (`[gateway.cluster]`).
//!
//! The gateway machine holds the membership
//! ([`anpx_core::cluster::Membership`]): the others' routes, the choice
//! of where a request goes, and the rounds in which it announces its own
//! routes and joins the subjects of the service URLs its receivers serve.
//! What is here is the bus's I/O: the announcements heard go into the
//! machine, what the machine asks of the bus is done (`bus`), the requests
//! on a joined subject are served (`serve`), and the requests the machine
//! sends elsewhere have their messages published and their replies fed
//! back (`forward`). The protocol is described in
//! `docs/PROTOCOL.md`, "Cluster forwarding".
//!
//! The loops here use no runtime's API: the shell passes its [`Runtime`]
//! for spawning and timers. async-nats itself does its I/O on tokio (its
//! connection task is spawned with `tokio::spawn`, and so is the
//! unsubscribe when a subscription is dropped), so [`Cluster::start`],
//! [`Cluster::leave`] and every task spawned through the [`Runtime`] must be
//! polled in a tokio context: the tokio shell runs them as they are, the
//! smol shell wraps each in `async_compat::Compat`. Only with the `cluster`
//! feature.

mod forward;
mod serve;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anpx_core::cluster::{Announcement, ClusterOutput, MembershipConfig, Subjects};
use anpx_core::config::ClusterSection;
use anpx_core::ServiceUrl;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::{Future, StreamExt};

use crate::driver::{BusWork, Driver};
use crate::receiver::Runtime;

/// How to join a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The NATS server, `nats://host:port`.
    pub nats_url: String,
    /// This gateway's name, unique in the cluster.
    pub node_name: String,
    /// The cluster's subjects.
    pub subjects: Subjects,
    /// Time between route announcements.
    pub announce_interval: Duration,
    /// Silence after which a gateway is forgotten.
    pub route_ttl: Duration,
    /// How long a forwarded request may wait for its response, as for a
    /// local one (the serving gateway's own timeout normally answers first).
    pub request_timeout: Duration,
    /// How long a WebSocket carried between gateways may be idle, as a
    /// local one (`gateway.websocket_idle_timeout_secs`).
    pub websocket_idle_timeout: Duration,
}

impl ClusterOptions {
    /// Options from `[gateway.cluster]`; `None` when the cluster is off.
    /// An unset node name becomes `<host name>-<process id>`. The timeouts
    /// are the gateway's own (`request_timeout_secs`,
    /// `websocket_idle_timeout_secs`).
    pub fn from_config(
        section: &ClusterSection,
        request_timeout: Duration,
        websocket_idle_timeout: Duration,
    ) -> Result<Option<ClusterOptions>, ClusterError> {
        let Some(url) = &section.nats_url else {
            return Ok(None);
        };
        let subjects = Subjects::new(&section.subject_prefix)
            .map_err(|e| ClusterError::Config(e.to_string()))?;
        Ok(Some(ClusterOptions {
            nats_url: url.clone(),
            node_name: section.node_name.clone().unwrap_or_else(default_node_name),
            subjects,
            announce_interval: section.announce_interval(),
            route_ttl: section.route_ttl(),
            request_timeout,
            websocket_idle_timeout,
        }))
    }
}

/// The host name and process id: unique enough for gateways that were not
/// given a name.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "gateway".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Why the cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A setting is unusable.
    #[error("cluster configuration: {0}")]
    Config(String),
    /// NATS is not reachable.
    #[error("cannot connect to NATS at {url}: {reason} (is nats-server running? start it with `nats-server -js` or `systemctl start nats-server`)")]
    Connect {
        /// The server.
        url: String,
        /// Why.
        reason: String,
    },
    /// A subscription failed.
    #[error("NATS subscription failed: {0}")]
    Subscribe(String),
}

/// What the cluster's tasks share.
pub(crate) struct Inner {
    client: async_nats::Client,
    options: ClusterOptions,
    driver: Driver,
    /// This gateway's inbox prefix: each forwarded request's reply inbox
    /// is a subject under it.
    reply_prefix: String,
    /// This gateway's serving prefix: each served request's inbox is a
    /// subject under it.
    serve_prefix: String,
    /// Spawning and timers (see the [module docs](self) for the tokio
    /// context its tasks need).
    runtime: Arc<dyn Runtime>,
}

impl Inner {
    /// Runs `task` in the background until it ends or the returned handle
    /// aborts it.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) -> AbortHandle {
        let (handle, registration) = AbortHandle::new_pair();
        self.runtime.spawn(Box::pin(async move {
            let _ = Abortable::new(task, registration).await;
        }));
        handle
    }
}

/// A gateway's membership of a cluster; see the [module docs](self).
pub struct Cluster {
    inner: Arc<Inner>,
    tasks: Vec<AbortHandle>,
    /// The serving task of each service subject joined.
    services: Arc<Mutex<Joined>>,
}

/// The serving task of each service subject joined.
type Joined = HashMap<ServiceUrl, AbortHandle>;

impl Cluster {
    /// Connects to NATS, starts announcing and listening, and lets
    /// `driver` forward requests to the other gateways. The cluster's tasks
    /// run on `runtime`; this future, and those tasks, need a tokio context
    /// (see the [module docs](self)).
    pub async fn start(
        options: ClusterOptions,
        driver: Driver,
        runtime: Arc<dyn Runtime>,
    ) -> Result<Cluster, ClusterError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("anpx gateway {}", options.node_name))
            .connection_timeout(Duration::from_secs(5))
            .connect(&options.nats_url)
            .await
            .map_err(|e| ClusterError::Connect {
                url: options.nats_url.clone(),
                reason: e.to_string(),
            })?;
        let routes = client
            .subscribe(options.subjects.routes())
            .await
            .map_err(|e| ClusterError::Subscribe(e.to_string()))?;
        let membership = MembershipConfig {
            node: options.node_name.clone(),
            announce_interval: options.announce_interval,
            route_ttl: options.route_ttl,
        };
        let reply_prefix = client.new_inbox();
        let replies = client
            .subscribe(forward::replies_subject(&reply_prefix))
            .await
            .map_err(|e| ClusterError::Subscribe(e.to_string()))?;
        let serve_prefix = client.new_inbox();
        let origins = client
            .subscribe(serve::origins_subject(&serve_prefix))
            .await
            .map_err(|e| ClusterError::Subscribe(e.to_string()))?;
        let inner = Arc::new(Inner {
            reply_prefix,
            serve_prefix,
            client,
            options,
            driver: driver.clone(),
            runtime,
        });
        let services = Arc::new(Mutex::new(HashMap::new()));
        driver.join_cluster(membership);
        let takers = [
            inner.spawn(forward::take_replies(inner.clone(), replies)),
            inner.spawn(serve::take_origins(inner.clone(), origins)),
        ];
        // The bus task and the subscriptions outlive `leave`: the requests
        // forwarded either way before it go on until the gateway stops.
        drop(inner.spawn(bus(inner.clone(), services.clone(), takers)));
        let tasks = vec![inner.spawn(listen(inner.clone(), routes))];
        tracing::info!(
            node = %inner.options.node_name,
            nats = %inner.options.nats_url,
            "joined the gateway cluster"
        );
        Ok(Cluster {
            inner,
            tasks,
            services,
        })
    }

    /// This gateway's node name.
    pub fn node_name(&self) -> &str {
        &self.inner.options.node_name
    }

    /// The other gateways currently known.
    pub fn nodes(&self) -> Vec<String> {
        peers(&self.inner.driver)
    }

    /// The membership as the admin dashboard shows it.
    pub fn view(&self) -> Arc<dyn crate::admin::ClusterView> {
        Arc::new(View(self.inner.clone()))
    }

    /// Leaves the cluster: stops announcing, tells the others at once (so
    /// they stop forwarding here), and stops taking forwarded requests.
    /// Requests already accepted, either way, keep running until the
    /// gateway stops.
    /// Needs a tokio context, as [`Cluster::start`] does.
    pub async fn leave(self) {
        for t in &self.tasks {
            t.abort();
        }
        // The withdrawal and the subjects to leave, done here so that they
        // are done when this returns.
        let last = self.inner.driver.leave_cluster();
        tell_bus(&self.inner, &self.services, last).await;
        let handles: Vec<AbortHandle> = self
            .services
            .lock()
            .map(|mut m| m.drain().map(|(_, h)| h).collect())
            .unwrap_or_default();
        for h in handles {
            h.abort();
        }
        let _ = self.inner.client.flush().await;
        tracing::info!(node = %self.inner.options.node_name, "left the gateway cluster");
    }
}

/// The other gateways the machine knows, sorted.
fn peers(driver: &Driver) -> Vec<String> {
    driver
        .route_book(|book| {
            book.map(|b| b.nodes().into_iter().map(str::to_owned).collect())
                .unwrap_or_default()
        })
        .unwrap_or_default()
}

/// Takes the other gateways' announcements.
struct View(Arc<Inner>);

impl crate::admin::ClusterView for View {
    fn node(&self) -> String {
        self.0.options.node_name.clone()
    }

    fn peers(&self) -> Vec<String> {
        peers(&self.0.driver)
    }
}

async fn listen(inner: Arc<Inner>, mut routes: async_nats::Subscriber) {
    while let Some(msg) = routes.next().await {
        match Announcement::from_json(&msg.payload) {
            Ok(a) => inner.driver.announcement(a),
            Err(e) => tracing::warn!(error = %e, "ignoring a bad route announcement"),
        }
    }
    tracing::warn!("the route announcement subscription ended");
}

/// Does what the gateway machine asks of the bus, as it asks it, until the
/// gateway stops; then the forwarded and served requests' messages are no
/// longer taken.
async fn bus(inner: Arc<Inner>, services: Arc<Mutex<Joined>>, takers: [AbortHandle; 2]) {
    while let Ok(work) = inner.driver.cluster_outputs().await {
        tell_bus(&inner, &services, work).await;
    }
    for taker in takers {
        taker.abort();
    }
}

/// Publishes the announcements and the forwarded requests' messages in
/// `work`, and joins or leaves the service subjects it names: joining one
/// starts the task serving it.
async fn tell_bus(inner: &Arc<Inner>, services: &Mutex<Joined>, work: BusWork) {
    for publish in work.publishes {
        forward::publish(inner, publish).await;
    }
    for answer in work.answers {
        serve::answer(inner, answer).await;
    }
    for out in work.membership {
        match out {
            ClusterOutput::Announce(a) => {
                if let Err(e) = inner
                    .client
                    .publish(inner.options.subjects.routes(), a.to_json().into())
                    .await
                {
                    tracing::warn!(error = %e, "could not announce routes");
                }
            }
            ClusterOutput::Join(url) => join(inner, services, url).await,
            ClusterOutput::Leave(url) => {
                let task = services.lock().ok().and_then(|mut m| m.remove(&url));
                if let Some(task) = task {
                    task.abort();
                    tracing::debug!(%url, "left the service subject");
                }
            }
            // Logged by the driver.
            ClusterOutput::Forgotten(_) => {}
        }
    }
}

/// Joins the queue group of `url`'s subject and serves what comes on it.
async fn join(inner: &Arc<Inner>, services: &Mutex<Joined>, url: ServiceUrl) {
    let subject = inner.options.subjects.service(&url);
    match inner
        .client
        .queue_subscribe(subject.clone(), inner.options.subjects.queue_group())
        .await
    {
        Ok(sub) => {
            tracing::debug!(%url, %subject, "joined the service subject");
            let task = inner.spawn(serve::serve(inner.clone(), sub));
            if let Ok(mut joined) = services.lock() {
                if let Some(old) = joined.insert(url, task) {
                    old.abort();
                }
            }
        }
        Err(e) => tracing::warn!(%url, error = %e, "could not join the service subject"),
    }
}
