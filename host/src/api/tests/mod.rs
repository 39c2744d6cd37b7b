//! In-process tests of the whole router over a real [`SledStore`] in a
//! temporary directory: requests go through `oneshot`, no network.

mod bundle;
mod crud;
mod errors;
mod export;
mod history;
mod import;
mod metadata;
mod plugins;
mod search;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tower::ServiceExt;

use super::export::Exports;
use super::import::Imports;
use super::import::lock::ImportLock;
use super::{ApiLimits, AppState, router};
use crate::config::ConfigSource;
use crate::destinations::LocalDestination;
use crate::export::{ExportConfig, ExportHandler};
use crate::import::source::ImportSources;
use crate::import::{ImportConfig, ImportHandler};
use crate::jobs::engine::{Engine, EngineConfig};
use crate::jobs::{JobHandler, JobStore};
use crate::plugins::PluginRegistry;
use crate::store::sled::SledStore;
use crate::store::{Store, StoreStats};
use crate::tests::default_plugins;

pub const BASE: &str = "http://hearth.test";
pub const FHIR_JSON: &str = "application/fhir+json";

pub struct Api {
    router: Router,
    store: Arc<SledStore>,
    exports: Exports,
    dir: TempDir,
}

/// How a test server runs `$export` jobs.
#[derive(Clone, Copy)]
pub struct Jobs {
    /// Whether workers run the jobs; without, they stay queued.
    pub run: bool,
    pub max_concurrent: usize,
    pub retention: Duration,
}

impl Default for Jobs {
    fn default() -> Self {
        Jobs {
            run: true,
            max_concurrent: 4,
            retention: Duration::from_secs(3600),
        }
    }
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Api {
    pub fn new() -> Self {
        Self::with_limits(ApiLimits::default())
    }

    pub fn with_limits(limits: ApiLimits) -> Self {
        Self::build(
            limits,
            default_plugins(),
            ConfigSource::default(),
            Jobs::default(),
        )
    }

    /// A server whose plugins were loaded from the configuration `source`,
    /// which a reload reads again.
    pub fn with_plugins(plugins: Arc<PluginRegistry>, source: ConfigSource) -> Self {
        Self::build(ApiLimits::default(), plugins, source, Jobs::default())
    }

    pub fn with_jobs(jobs: Jobs) -> Self {
        Self::build(
            ApiLimits::default(),
            default_plugins(),
            ConfigSource::default(),
            jobs,
        )
    }

    /// Must run inside a tokio runtime (the job engine starts).
    fn build(
        limits: ApiLimits,
        plugins: Arc<PluginRegistry>,
        source: ConfigSource,
        jobs: Jobs,
    ) -> Self {
        let dir = TempDir::new().unwrap();
        let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        let exports_dir = dir.path().join("exports");
        let handler = Arc::new(ExportHandler::new(
            store.clone(),
            plugins.clone(),
            Arc::new(LocalDestination::new(&exports_dir)),
            ExportConfig {
                output_dir: exports_dir,
                ..ExportConfig::for_data_dir(dir.path())
            },
        ));
        let import_config = Arc::new(ImportConfig::for_data_dir(dir.path()));
        let import_sources = Arc::new(ImportSources::from_config(&import_config));
        let importer = Arc::new(ImportHandler::new(
            store.clone(),
            plugins.clone(),
            import_sources.clone(),
            import_config.clone(),
        ));
        let handlers: Vec<Arc<dyn JobHandler>> = if jobs.run {
            vec![handler.clone(), importer]
        } else {
            Vec::new()
        };
        let job_store: Arc<dyn JobStore> = store.clone();
        let engine_config = EngineConfig {
            poll: Duration::from_millis(50),
            heartbeat: Duration::from_millis(200),
            ..EngineConfig::default()
        };
        let engine = Engine::start(job_store.clone(), handlers, engine_config).unwrap();
        let exports = Exports::new(
            job_store.clone(),
            engine.clone(),
            handler,
            jobs.max_concurrent,
            jobs.retention,
        );
        let lock = ImportLock::load(job_store.clone()).unwrap();
        let imports = Imports::new(job_store, engine, import_sources, import_config, lock);
        let state = AppState {
            store: store.clone(),
            base_url: BASE.into(),
            limits,
            plugins,
            config_source: Arc::new(source),
            exports: exports.clone(),
            imports,
        };
        Api {
            router: router(state),
            store,
            exports,
            dir,
        }
    }

    /// The folder `$import` inputs may be read from.
    pub fn import_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("import")
    }

    /// Where the export files of this server go.
    pub fn exports_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("exports")
    }

    pub fn stats(&self) -> StoreStats {
        self.store.stats().unwrap()
    }

    /// A job as stored.
    pub fn job(&self, id: &str) -> crate::jobs::JobRecord {
        let id = crate::jobs::JobId::parse(id).unwrap();
        JobStore::get(self.store.as_ref(), &id).unwrap().unwrap()
    }

    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(body.map_or_else(Body::empty, Body::from)).unwrap();
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        Resp {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    pub async fn get(&self, uri: &str) -> Resp {
        self.send(Method::GET, uri, &[], None).await
    }

    pub async fn delete(&self, uri: &str) -> Resp {
        self.send(Method::DELETE, uri, &[], None).await
    }

    pub async fn put(&self, uri: &str, body: &Value) -> Resp {
        self.send_json(Method::PUT, uri, &[], body).await
    }

    pub async fn post(&self, uri: &str, body: &Value) -> Resp {
        self.send_json(Method::POST, uri, &[], body).await
    }

    /// Creates `Patient/{id}` with nothing but its id.
    pub async fn create_patient(&self, id: &str) -> Resp {
        let body = serde_json::json!({"resourceType": "Patient", "id": id});
        self.put(&format!("/Patient/{id}"), &body).await.ok(201)
    }

    pub async fn send_json(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Resp {
        let mut all = vec![("content-type", FHIR_JSON)];
        all.extend_from_slice(headers);
        self.send(method, uri, &all, Some(serde_json::to_vec(body).unwrap()))
            .await
    }
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    /// Asserts a success status and returns the response.
    #[track_caller]
    pub fn ok(self, status: u16) -> Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        if !self.body.is_empty() {
            assert!(self.header("content-type").unwrap().starts_with(FHIR_JSON));
        }
        self
    }

    /// Asserts an error status with an OperationOutcome body; returns its
    /// first issue.
    #[track_caller]
    pub fn outcome(&self, status: u16) -> Value {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        assert_eq!(
            self.header("content-type"),
            Some("application/fhir+json; charset=utf-8")
        );
        let outcome = self.json();
        assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
        assert_eq!(outcome["issue"][0]["severity"], "error", "{outcome}");
        outcome["issue"][0].clone()
    }
}

/// The resource without the `meta` the server sets.
pub fn without_meta(resource: &Value) -> Value {
    let mut r = resource.clone();
    r.as_object_mut().unwrap().remove("meta");
    r
}

/// The `next` link of a Bundle page, as a path under [`BASE`].
pub fn next_link(bundle: &Value) -> Option<String> {
    let links = bundle["link"].as_array().unwrap();
    let next = links.iter().find(|l| l["relation"] == "next")?;
    let url = next["url"].as_str().unwrap();
    Some(url.strip_prefix(BASE).unwrap().to_owned())
}
