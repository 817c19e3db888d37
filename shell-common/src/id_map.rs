//! Maps keyed by request and link ids, on every request's path: hashed
//! with foldhash, as the core's are (`anpx-core/src/id_map.rs` says why);
//! the ids come from the gateway machine, never from the public.

/// A map keyed by a request or link id.
pub(crate) type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
