//! Reading from the API server: every page of a list (metadata-only where a check needs only
//! metadata), per namespace or cluster-wide, with 403 turned into [`Read::Forbidden`] naming the
//! permission, and a progress line on a terminal.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::IsTerminal as _;

use kube::api::{ListParams, ObjectList};
use kube::{Api, Client, Resource};
use serde::de::DeserializeOwned;

use crate::doctor::snapshot::Read;

/// Above this many namespaces in scope, lists are read cluster-wide and split by namespace
/// instead of one request per namespace.
pub const PER_NAMESPACE_LISTS: usize = 20;

pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => other.to_string(),
    }
}

/// A failed request as a [`Read`]: 403 is `Forbidden(needs)`.
pub fn classify<T>(e: &kube::Error, needs: impl FnOnce() -> String) -> Read<T> {
    match e {
        kube::Error::Api(status) if status.code == 403 => Read::Forbidden(needs()),
        other => Read::Failed(describe(other)),
    }
}

/// `kube::Error` that means the caller is not who the cluster accepts: nothing can be read.
pub fn unauthorized(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 401)
}

/// A progress line on stderr while lists are read, only when stderr is a terminal.
pub struct Progress {
    on: bool,
    counts: BTreeMap<&'static str, usize>,
    shown: bool,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            on: std::io::stderr().is_terminal(),
            counts: BTreeMap::new(),
            shown: false,
        }
    }

    pub fn add(&mut self, what: &'static str, n: usize) {
        *self.counts.entry(what).or_default() += n;
        if self.on {
            let line: Vec<String> = self
                .counts
                .iter()
                .map(|(k, v)| format!("{v} {k}"))
                .collect();
            eprint!("\r\x1b[2Kreading: {}", line.join(", "));
            self.shown = true;
        }
    }

    pub fn clear(&mut self) {
        if self.shown {
            eprint!("\r\x1b[2K");
            self.shown = false;
        }
    }
}

/// What is listed: its name in the progress line and in a permission (`list pods in NS`), and
/// whether the check needs only its metadata (then it is listed metadata-only).
#[derive(Debug, Clone, Copy)]
pub struct What {
    label: &'static str,
    resource: &'static str,
    metadata_only: bool,
}

pub const fn full(label: &'static str, resource: &'static str) -> What {
    What {
        label,
        resource,
        metadata_only: false,
    }
}

pub const fn metadata(label: &'static str, resource: &'static str) -> What {
    What {
        label,
        resource,
        metadata_only: true,
    }
}

/// Every page of a list (`limit`/`continue`); metadata-only lists come back as objects with
/// only their metadata set.
pub async fn list_all<K>(
    api: &Api<K>,
    lp: &ListParams,
    page: u32,
    what: What,
    progress: &mut Progress,
) -> Result<Vec<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug + Default,
{
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = lp.clone().limit(page);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let (items, next) = if what.metadata_only {
            let list = api.list_metadata(&params).await?;
            let items: Vec<K> = list
                .items
                .into_iter()
                .map(|m| {
                    let mut k = K::default();
                    *k.meta_mut() = m.metadata;
                    k
                })
                .collect();
            (items, list.metadata.continue_)
        } else {
            let list: ObjectList<K> = api.list(&params).await?;
            (list.items, list.metadata.continue_)
        };
        progress.add(what.label, items.len());
        // Managed fields are often most of an object's size and no check reads them.
        out.extend(items.into_iter().map(|mut k| {
            k.meta_mut().managed_fields = None;
            k
        }));
        match next {
            Some(t) if !t.is_empty() => token = Some(t),
            _ => return Ok(out),
        }
    }
}

/// A namespaced kind `doctor` lists.
pub trait Namespaced:
    Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Default
{
}

impl<K> Namespaced for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Default
{
}

/// Reads one kind either per namespace in `namespaces` or cluster-wide split by namespace.
pub async fn per_namespace<K>(
    client: &Client,
    namespaces: &[String],
    lp: &ListParams,
    page: u32,
    what: What,
    progress: &mut Progress,
) -> BTreeMap<String, Read<Vec<K>>>
where
    K: Namespaced,
    K::DynamicType: Default,
{
    let mut out = BTreeMap::new();
    if namespaces.len() > PER_NAMESPACE_LISTS {
        let api = Api::<K>::all(client.clone());
        match list_all(&api, lp, page, what, progress).await {
            Ok(items) => {
                let mut by_ns: BTreeMap<String, Vec<K>> =
                    namespaces.iter().map(|n| (n.clone(), Vec::new())).collect();
                for item in items {
                    if let Some(v) = item
                        .meta()
                        .namespace
                        .as_ref()
                        .and_then(|ns| by_ns.get_mut(ns))
                    {
                        v.push(item);
                    }
                }
                return by_ns.into_iter().map(|(k, v)| (k, Read::Ok(v))).collect();
            }
            Err(e) if !matches!(&e, kube::Error::Api(s) if s.code == 403) => {
                for ns in namespaces {
                    out.insert(ns.clone(), classify(&e, String::new));
                }
                return out;
            }
            Err(_) => {} // not allowed cluster-wide: per namespace
        }
    }
    for ns in namespaces {
        let api = Api::<K>::namespaced(client.clone(), ns);
        let read = match list_all(&api, lp, page, what, progress).await {
            Ok(items) => Read::Ok(items),
            Err(e) => classify(&e, || format!("list {} in {ns}", what.resource)),
        };
        out.insert(ns.clone(), read);
    }
    out
}

pub async fn get_opt<K>(api: &Api<K>, name: &str, needs: impl FnOnce() -> String) -> Read<Option<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.get_opt(name).await {
        Ok(v) => Read::Ok(v),
        Err(e) => classify(&e, needs),
    }
}
