//! Re-reading files when their contents change: the TLS pair and the `--namespaces` file.
//!
//! Kubernetes Secret and ConfigMap volumes (and cert-manager) replace files by swapping a
//! symlink, which inotify on the file path does not see; polling the contents does. A changed
//! set of files that does not load is retried on the next poll and reported (error log and
//! `reload_failures_total`) once it has stayed the same for a whole poll, so that a writer that
//! replaces the certificate and the key one after the other is not reported as a failure. The
//! previous contents stay in use until a changed set loads.
//!
//! `apply` is told whether the contents it gets were already seen on the previous poll
//! (`stable`), so that it can hold back a change that only a complete, settled file should make
//! (a namespaces file that drops namespaces may be half-written): it answers
//! [`Refusal::Defer`], which is counted in `reload_deferrals_total`, and is asked again with
//! `stable` on the next poll if the contents have not changed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::namespaces::file::{FileNamespaces, NotTaken, RELOAD_SOURCE};
use crate::server::metrics::Metrics;

/// The contents of every watched file, or why one could not be read.
type Snapshot = Result<Vec<Vec<u8>>, String>;

/// Reads every file; the error names the file.
pub async fn read_all(paths: &[PathBuf]) -> Snapshot {
    let mut contents = Vec::with_capacity(paths.len());
    for path in paths {
        match tokio::fs::read(path).await {
            Ok(bytes) => contents.push(bytes),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        }
    }
    Ok(contents)
}

/// Why `apply` did not take a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The contents do not load.
    Invalid(String),
    /// The contents load but are only taken once unchanged for a poll.
    Defer(String),
}

impl From<String> for Refusal {
    fn from(error: String) -> Self {
        Refusal::Invalid(error)
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
pub async fn until_stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stopped| *stopped).await;
}

/// Polls `paths` every `interval` until `stop` turns true, calling `apply` with the new
/// contents whenever they differ from `current` (the contents in use), and whether the same
/// contents were already read on the previous poll.
pub async fn poll<F>(
    source: &'static str,
    paths: Vec<PathBuf>,
    mut current: Vec<Vec<u8>>,
    interval: Duration,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
    mut apply: F,
) where
    F: FnMut(&[Vec<u8>], bool) -> Result<(), Refusal> + Send,
{
    let mut suspect: Option<Snapshot> = None;
    let mut reported: Option<Snapshot> = None;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = until_stopped(&mut stop) => return,
        }
        let snapshot = read_all(&paths).await;
        if snapshot.as_ref().is_ok_and(|c| *c == current) {
            suspect = None;
            reported = None;
            continue;
        }
        if reported.as_ref() == Some(&snapshot) {
            continue;
        }
        let stable = suspect.as_ref() == Some(&snapshot);
        let result = match &snapshot {
            Ok(contents) => apply(contents, stable),
            Err(error) => Err(Refusal::Invalid(error.clone())),
        };
        match result {
            Ok(()) => {
                tracing::info!(source, "reloaded changed files");
                if let Ok(contents) = snapshot {
                    current = contents;
                }
                suspect = None;
                reported = None;
            }
            Err(Refusal::Invalid(error)) if stable => {
                tracing::error!(source, %error, "refused changed files; the previous ones stay in use");
                metrics.reload_failed(source);
                reported = Some(snapshot);
                suspect = None;
            }
            Err(Refusal::Invalid(error)) => {
                tracing::debug!(source, %error, "changed files do not load yet; retrying on the next poll");
                suspect = Some(snapshot);
            }
            Err(Refusal::Defer(reason)) => {
                tracing::warn!(source, %reason, "changed files held back until unchanged for a poll");
                metrics.reload_deferred(source);
                suspect = Some(snapshot);
            }
        }
    }
}

/// Re-reads the `--namespaces` file every `interval` until `stop`; a bad new file keeps the old
/// namespaces, and one that drops namespaces is taken only once it has settled
/// ([`FileNamespaces::replace`]).
pub fn spawn_namespaces_file(
    source: &Arc<FileNamespaces>,
    initial: Vec<u8>,
    interval: Duration,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) {
    let this = source.clone();
    let paths = vec![source.path().to_path_buf()];
    tokio::spawn(poll(
        RELOAD_SOURCE,
        paths,
        vec![initial],
        interval,
        metrics,
        stop,
        move |c, stable| {
            this.replace(&c[0], stable).map_err(|e| match e {
                NotTaken::Invalid(error) => Refusal::Invalid(error),
                NotTaken::Unsettled(why) => Refusal::Defer(why),
            })
        },
    ));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::namespaces::NamespaceSource as _;
    use std::sync::Mutex;

    #[tokio::test]
    async fn good_changes_apply_and_bad_ones_are_reported_once_when_stable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "good-1").unwrap();
        let metrics = Arc::new(Metrics::new());
        let applied = Arc::new(Mutex::new(Vec::<String>::new()));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(poll(
            "namespaces",
            vec![path.clone()],
            vec![b"good-1".to_vec()],
            Duration::from_millis(20),
            metrics.clone(),
            stop_rx,
            {
                let applied = applied.clone();
                move |c: &[Vec<u8>], stable: bool| {
                    let s = String::from_utf8_lossy(&c[0]).into_owned();
                    if s.starts_with("bad") {
                        return Err(Refusal::Invalid("bad".into()));
                    }
                    if s.starts_with("shrink") && !stable {
                        return Err(Refusal::Defer("smaller".into()));
                    }
                    applied.lock().unwrap().push(s);
                    Ok(())
                }
            },
        ));
        async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "timed out waiting for {what}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let failures = || metrics.reload_failures("namespaces");
        let applied_now = || applied.lock().unwrap().clone();

        std::fs::write(&path, "good-2").unwrap();
        eventually("good-2", || applied_now() == ["good-2"]).await;
        std::fs::write(&path, "bad-1").unwrap();
        eventually("a reported failure", || failures() == 1).await;
        tokio::time::sleep(Duration::from_millis(200)).await; // ten more polls
        assert_eq!(failures(), 1, "reported once, however many polls");
        std::fs::remove_file(&path).unwrap();
        eventually("a missing file reported", || failures() == 2).await;
        std::fs::write(&path, "good-3").unwrap();
        eventually("good-3", || applied_now() == ["good-2", "good-3"]).await;
        assert_eq!(failures(), 2);
        // A deferred change is taken once it has not changed for a poll, and counted once.
        std::fs::write(&path, "shrink-1").unwrap();
        eventually("shrink-1 after a poll", || applied_now().len() == 3).await;
        assert_eq!(applied_now()[2], "shrink-1");
        assert_eq!(metrics.reload_deferrals("namespaces"), 1);
        assert_eq!(failures(), 2, "a deferral is not a failure");
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(*applied.lock().unwrap(), ["good-2", "good-3", "shrink-1"]);
    }

    #[tokio::test]
    async fn a_file_that_drops_namespaces_is_taken_only_once_it_has_settled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ns.yaml");
        let both =
            "kind: Namespace\nmetadata: {name: a}\n---\nkind: Namespace\nmetadata: {name: b}\n";
        std::fs::write(&path, both).unwrap();
        let (source, contents) = FileNamespaces::load(&path).unwrap();
        let metrics = Arc::new(Metrics::new());
        let (stop_tx, stop_rx) = watch::channel(false);
        spawn_namespaces_file(
            &source,
            contents,
            Duration::from_millis(200),
            metrics.clone(),
            stop_rx,
        );
        let wait = |what: &'static str, done: &dyn Fn() -> bool| {
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while !done() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "timed out waiting for {what}"
                );
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        // Valid YAML with no namespaces at all, as a truncating writer leaves it.
        std::fs::write(&path, "").unwrap();
        tokio::task::spawn_blocking({
            let (source, metrics) = (source.clone(), metrics.clone());
            move || {
                wait("a deferral", &|| {
                    metrics.reload_deferrals(RELOAD_SOURCE) == 1
                });
                assert_eq!(source.len(), 2, "held back on the first poll");
                // The writer finishes within the poll: the shrunk contents are never used.
                std::fs::write(&path, both).unwrap();
                std::thread::sleep(Duration::from_millis(500));
                assert_eq!(source.len(), 2);
                assert!(source.cached("a").is_some() && source.cached("b").is_some());
                // A file that stays smaller is taken after one more poll.
                std::fs::write(&path, "kind: Namespace\nmetadata: {name: a}\n").unwrap();
                wait("the smaller file", &|| source.len() == 1);
                assert!(source.cached("b").is_none());
            }
        })
        .await
        .unwrap();
        assert_eq!(metrics.reload_deferrals(RELOAD_SOURCE), 2);
        assert_eq!(metrics.reload_failures(RELOAD_SOURCE), 0);
        stop_tx.send(true).unwrap();
    }
}
