//! Several gateways acting as one over NATS (`[gateway.cluster]`).
//!
//! Each gateway announces the service URLs its own receivers serve and
//! listens for the others' announcements (the bookkeeping is
//! [`anpx_core::cluster::RouteBook`]); it joins a queue group on the
//! subject of every service URL it serves (`serve`), and hands the
//! gateway machine a [`Remote`](crate::remote::Remote) that carries requests it cannot serve itself
//! to whichever gateway can (`forward`). The protocol is described in
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
use std::time::{Duration, Instant};

use anpx_core::cluster::{Announcement, RouteBook, Subjects};
use anpx_core::config::ClusterSection;
use anpx_core::ServiceUrl;
use futures_util::future::{AbortHandle, Abortable};
use futures_util::{Future, StreamExt};

use crate::driver::Driver;
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
    book: Mutex<RouteBook>,
    driver: Driver,
    /// Spawning and timers (see the [module docs](self) for the tokio
    /// context its tasks need).
    runtime: Arc<dyn Runtime>,
}

impl Inner {
    fn book(&self) -> std::sync::MutexGuard<'_, RouteBook> {
        // A panic while holding the lock leaves the book consistent (every
        // method finishes its change before returning), so poison is moot.
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }

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
    services: Arc<Mutex<HashMap<ServiceUrl, AbortHandle>>>,
}

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
        let inner = Arc::new(Inner {
            book: Mutex::new(RouteBook::new(options.node_name.clone(), options.route_ttl)),
            client,
            options,
            driver: driver.clone(),
            runtime,
        });
        let services = Arc::new(Mutex::new(HashMap::new()));
        let tasks = vec![
            inner.spawn(listen(inner.clone(), routes)),
            inner.spawn(announce(inner.clone(), services.clone())),
        ];
        driver.set_remote(Arc::new(forward::Forwarder(inner.clone())));
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
        self.inner
            .book()
            .nodes()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }

    /// The membership as the admin dashboard shows it.
    pub fn view(&self) -> Arc<dyn crate::admin::ClusterView> {
        Arc::new(View(self.inner.clone()))
    }

    /// Leaves the cluster: stops announcing, tells the others at once (so
    /// they stop forwarding here), and stops taking forwarded requests.
    /// Requests already accepted keep running until the gateway stops.
    /// Needs a tokio context, as [`Cluster::start`] does.
    pub async fn leave(self) {
        for t in &self.tasks {
            t.abort();
        }
        let withdraw = Announcement::new(self.inner.options.node_name.clone(), Vec::new());
        let _ = self
            .inner
            .client
            .publish(
                self.inner.options.subjects.routes(),
                withdraw.to_json().into(),
            )
            .await;
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

/// Takes the other gateways' announcements.
struct View(Arc<Inner>);

impl crate::admin::ClusterView for View {
    fn node(&self) -> String {
        self.0.options.node_name.clone()
    }

    fn peers(&self) -> Vec<String> {
        self.0
            .book()
            .nodes()
            .into_iter()
            .map(str::to_owned)
            .collect()
    }
}

async fn listen(inner: Arc<Inner>, mut routes: async_nats::Subscriber) {
    while let Some(msg) = routes.next().await {
        match Announcement::from_json(&msg.payload) {
            Ok(a) => inner.book().handle_announcement(Instant::now(), a),
            Err(e) => tracing::warn!(error = %e, "ignoring a bad route announcement"),
        }
    }
    tracing::warn!("the route announcement subscription ended");
}

/// Every interval: reads the local routes from the gateway machine, announces
/// them, joins or leaves their service subjects, and forgets silent
/// gateways. The first announcement goes out at once; when one round
/// takes longer than the interval, the next follows without a pause.
async fn announce(inner: Arc<Inner>, services: Arc<Mutex<HashMap<ServiceUrl, AbortHandle>>>) {
    let mut round = Instant::now();
    loop {
        let Ok(stats) = inner.driver.stats().await else {
            return;
        };
        let local: Vec<ServiceUrl> = stats
            .routes
            .iter()
            .filter_map(|(url, _)| url.parse().ok())
            .collect();
        let forgotten = {
            let mut book = inner.book();
            book.set_local(local.clone());
            book.handle_timeout(Instant::now())
        };
        for node in forgotten {
            tracing::warn!(%node, "gateway fell silent; its routes are forgotten");
        }
        sync_services(&inner, &services, &local).await;
        let a = Announcement::new(inner.options.node_name.clone(), local);
        if let Err(e) = inner
            .client
            .publish(inner.options.subjects.routes(), a.to_json().into())
            .await
        {
            tracing::warn!(error = %e, "could not announce routes");
        }
        round += inner.options.announce_interval;
        inner.runtime.sleep_until(round).await;
        round = round.max(Instant::now());
    }
}

/// Joins the queue group of every local service URL not yet joined and
/// leaves those no local receiver serves any more.
async fn sync_services(
    inner: &Arc<Inner>,
    services: &Mutex<HashMap<ServiceUrl, AbortHandle>>,
    local: &[ServiceUrl],
) {
    let (gone, new): (Vec<ServiceUrl>, Vec<ServiceUrl>) = {
        let Ok(mut joined) = services.lock() else {
            return;
        };
        let gone: Vec<ServiceUrl> = joined
            .keys()
            .filter(|u| !local.contains(u))
            .cloned()
            .collect();
        for url in &gone {
            if let Some(h) = joined.remove(url) {
                h.abort();
            }
        }
        let new = local
            .iter()
            .filter(|u| !joined.contains_key(u))
            .cloned()
            .collect();
        (gone, new)
    };
    for url in gone {
        tracing::debug!(%url, "left the service subject");
    }
    for url in new {
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
}
