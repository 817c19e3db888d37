//! Routing: which links serve a request, by host and path prefix.
//!
//! A route is a [`ServiceUrl`] (host, or the wildcard host `*`, plus a path
//! prefix of whole segments). A [`RouteTable`] maps routes to the links
//! registered for them and picks the longest matching prefix, preferring
//! routes of the request's own host over wildcard ones.
//!
//! ```
//! use anpx_core::{RouteTable, ServiceUrl};
//!
//! let mut table = RouteTable::new();
//! table.insert(&"api.agent.com/anpproxy1".parse::<ServiceUrl>().unwrap(), "receiver-1");
//! let hit = table.lookup("api.agent.com", "/anpproxy1/ad.json").unwrap();
//! assert_eq!(hit.links, ["receiver-1"]);
//! ```

mod service_url;
mod table;

pub use service_url::{ServiceUrl, ServiceUrlError, MAX_LEN};
pub use table::{RouteMatch, RouteTable};
