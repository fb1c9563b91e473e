//! Where namespace labels come from (SPEC §6): a metadata-only watch of Namespaces in a cluster
//! ([`cluster`]), or `--namespaces FILE` outside one ([`file`](mod@file)). Both answer from
//! memory; only a namespace the watch cache does not have yet costs one GET.

use std::sync::Arc;

use futures::future::BoxFuture;

use crate::engine::policy::Labels;

pub mod cluster;
pub mod file;

pub use file::{FileNamespaces, NamespacesFileError, RELOAD_SOURCE, parse_namespaces};

/// The answer of a fallback lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    Found(Arc<Labels>),
    /// Not found, or the lookup failed; the reason goes into the Pod's admission warning.
    Unknown(String),
}

/// A source of namespace labels.
pub trait NamespaceSource: Send + Sync + std::fmt::Debug {
    /// Labels from memory, without I/O; `None` for a namespace not (yet) known.
    fn cached(&self, namespace: &str) -> Option<Arc<Labels>>;
    /// One lookup for a namespace `cached` did not know.
    fn fetch<'a>(&'a self, namespace: &'a str) -> BoxFuture<'a, Fetched>;
    /// Whether the cache holds a complete list (readiness).
    fn synced(&self) -> bool;
    /// Namespaces in memory.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How one lookup was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Cached(Arc<Labels>),
    Fetched(Arc<Labels>),
    Unknown(String),
}

impl Lookup {
    /// `cache`, `get` or `unknown`, for `namespace_lookups_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Lookup::Cached(_) => "cache",
            Lookup::Fetched(_) => "get",
            Lookup::Unknown(_) => "unknown",
        }
    }
}

/// The labels of `namespace`: from memory, else one fallback lookup.
pub async fn lookup(source: &dyn NamespaceSource, namespace: &str) -> Lookup {
    if let Some(labels) = source.cached(namespace) {
        return Lookup::Cached(labels);
    }
    match source.fetch(namespace).await {
        Fetched::Found(labels) => Lookup::Fetched(labels),
        Fetched::Unknown(reason) => Lookup::Unknown(reason),
    }
}
