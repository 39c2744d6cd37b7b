//! Fixtures shared by the in-process test modules (`api`, `export`,
//! `import`): each builds its own store and handler, but they load the
//! plugins, register jobs and read NDJSON files the same way.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::PluginsConfig;
use crate::fhir::Instant;
use crate::jobs::{JobKind, JobRecord, JobStore, NewJob};
use crate::plugins::{PluginRegistry, Runtime};

/// The worker name the tests claim jobs as.
pub const WORKER: &str = "test/1";

/// The default plugins, loaded once for all the tests that do not reload
/// them: loading compiles every component.
pub fn default_plugins() -> Arc<PluginRegistry> {
    static PLUGINS: OnceLock<Arc<PluginRegistry>> = OnceLock::new();
    PLUGINS
        .get_or_init(|| {
            let runtime = Runtime::new(None).unwrap();
            Arc::new(PluginRegistry::load(runtime, &PluginsConfig::default()).unwrap())
        })
        .clone()
}

/// Registers a `kind` job for `request` (a kick-off with a `request_url`)
/// and claims it as [`WORKER`], as the engine would.
pub fn claim_job(
    store: &dyn JobStore,
    kind: JobKind,
    request: &impl Serialize,
    created: Instant,
) -> JobRecord {
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut request = serde_json::to_value(request).unwrap();
    // Distinct requests: enqueue would hand back a pending twin.
    let url = request["request_url"].as_str().unwrap();
    request["request_url"] = format!("{url}#{}", N.fetch_add(1, Ordering::SeqCst)).into();
    let (job, _) = store
        .enqueue(NewJob {
            kind,
            request,
            owner: None,
            created,
        })
        .unwrap();
    let claimed = store
        .claim(&[kind], WORKER, Instant::now(), Duration::from_secs(600))
        .unwrap()
        .unwrap();
    assert_eq!(claimed.id, job.id);
    claimed
}

/// The lines of the NDJSON file `name`, checked: `count` of them, the last
/// one ended by a newline.
#[track_caller]
pub fn ndjson_lines(text: &str, count: u64, name: &str) -> Vec<Value> {
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len() as u64, count, "{name}");
    assert!(text.ends_with('\n'), "{name}");
    lines
}
