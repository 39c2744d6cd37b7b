//! Start-up and shutdown: load the plugins, open the store, bind, start the
//! job engine (with the export and import handlers) and the export janitor,
//! assemble the HTTP stack around [`crate::api::router`], serve until
//! SIGTERM/Ctrl-C (reloading the plugins on SIGHUP), then drain requests,
//! stop the jobs (they resume at the next start) and flush.

use std::sync::Arc;
use std::time::Duration;

use axum::ServiceExt;
use axum::extract::Request;
use axum::http::Uri;
use axum::http::uri::PathAndQuery;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::api::export::{Exports, run_janitor};
use crate::api::import::Imports;
use crate::api::import::lock::ImportLock;
use crate::api::{self, ApiLimits, AppState};
use crate::azure::{Accounts, AzureError};
use crate::config::{Config, ConfigSource};
use crate::destinations::{BlobDestination, Destination, LocalDestination};
use crate::export::ExportHandler;
use crate::import::ImportHandler;
use crate::import::source::ImportSources;
use crate::jobs::engine::Engine;
use crate::jobs::{JobHandler, JobStore, JobStoreError};
use crate::plugins::{PluginError, PluginRegistry};
use crate::store::Store;
use crate::store::sled::SledStore;

/// How often expired and cancelled exports are looked for.
const JANITOR_PERIOD: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("loading the plugins: {0}")]
    Plugins(#[from] PluginError),
    #[error("listening for SIGHUP: {0}")]
    Signal(std::io::Error),
    #[error("opening the store in {path}: {source}")]
    Store {
        path: String,
        source: crate::store::StoreError,
    },
    #[error("the export destination: {0}")]
    Destination(AzureError),
    #[error("starting the job engine: {0}")]
    Jobs(JobStoreError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
    #[error("flushing the store at shutdown: {0}")]
    Flush(crate::store::StoreError),
    #[error("a blocking task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    #[error("configuring the storage accounts: {0}")]
    Azure(#[from] crate::azure::AzureError),
}

/// Runs the server until a shutdown signal, then flushes the store.
/// `source` is where `config` was read from: a plugin reload (SIGHUP or
/// `POST /_admin/plugins/reload`) reads it again.
pub async fn run(config: Config, source: ConfigSource) -> Result<(), ServerError> {
    // Loaded before anything listens, so that a configuration naming a
    // component that does not load fails the start.
    let plugins = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || PluginRegistry::for_config(&config)).await??
    };
    let plugins = Arc::new(plugins);
    log_unsupported_search_parameters();
    let source = Arc::new(source);
    // Before the ready line: SIGHUP's default action ends the process.
    #[cfg(unix)]
    reload_on_sighup(plugins.clone(), source.clone()).map_err(ServerError::Signal)?;

    let data_dir = config.storage.data_dir.clone();
    let cache_bytes = config.storage.cache_mib << 20;
    let store =
        tokio::task::spawn_blocking(move || SledStore::open_with_cache(&data_dir, cache_bytes))
            .await?
            .map_err(|source| ServerError::Store {
                path: config.storage.data_dir.display().to_string(),
                source,
            })?;
    // One sled database holds the resources and the jobs.
    let store = Arc::new(store);
    let jobs: Arc<dyn JobStore> = store.clone();
    let store: Arc<dyn Store> = store;

    let addr = config.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| ServerError::Bind { addr, source })?;
    let base_url = config.base_url(bound);

    // One set of clients for the export destination and the import sources.
    let accounts = Arc::new(crate::azure::Accounts::new(&config.azure)?);
    let destination: Arc<dyn Destination> = match config.export_blob() {
        None => Arc::new(LocalDestination::new(config.export_dir())),
        Some((account, options)) => {
            let accounts = Accounts::new(&config.azure).map_err(ServerError::Destination)?;
            // The blob calls of export threads run on this runtime.
            let runtime = tokio::runtime::Handle::current();
            Arc::new(
                BlobDestination::new(accounts, &account, options, runtime)
                    .map_err(ServerError::Destination)?,
            )
        }
    };
    let handler = Arc::new(ExportHandler::new(
        store.clone(),
        plugins.clone(),
        destination,
        config.export_config(),
    ));
    let import_config = Arc::new(config.import_config());
    let import_sources = Arc::new(ImportSources::new(&import_config, Some(accounts.clone())));
    let importer = Arc::new(ImportHandler::new(
        store.clone(),
        plugins.clone(),
        import_sources.clone(),
        import_config.clone(),
    ));
    let handlers: Vec<Arc<dyn JobHandler>> = vec![handler.clone(), importer];
    // Resumes the jobs the last run of this node left unfinished.
    let engine =
        Engine::start(jobs.clone(), handlers, config.jobs.engine()).map_err(ServerError::Jobs)?;
    let exports = Exports::new(
        jobs.clone(),
        engine.clone(),
        handler,
        config.jobs.max_concurrent_exports,
        config.export_retention(),
    );
    // Read before serving: an initial import the last run left queued or
    // running keeps REST writes locked.
    let import_lock = ImportLock::load(jobs.clone()).map_err(ServerError::Jobs)?;
    let imports = Imports::new(
        jobs,
        engine.clone(),
        import_sources,
        import_config,
        import_lock,
    );
    let janitor = tokio::spawn(run_janitor(exports.clone(), JANITOR_PERIOD));

    let state = AppState {
        store: store.clone(),
        base_url: base_url.clone().into(),
        limits: ApiLimits {
            max_body_bytes: config.server.max_body_bytes,
            default_page_size: config.api.default_page_size,
            max_page_size: config.api.max_page_size,
        },
        plugins,
        config_source: source,
        exports,
        imports,
    };
    let app = http_stack(api::router(state));

    tracing::info!(%base_url, data_dir = %config.storage.data_dir.display(), "hearth started");
    // The one line on stdout: scripts and tests wait for it to know the port.
    println!("hearth: listening on http://{bound}");

    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let serve = axum::serve(listener, app.into_make_service()).with_graceful_shutdown(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: no new connections, finishing in-flight requests");
        let _ = stopping_tx.send(true);
    });
    let grace = Duration::from_secs(config.server.shutdown_grace_seconds);
    let grace_over = async move {
        let _ = stopping.wait_for(|stopping| *stopping).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        served = serve.into_future() => served.map_err(ServerError::Serve)?,
        () = grace_over => tracing::warn!(?grace, "in-flight requests outlived the grace period"),
    }
    janitor.abort();
    // Running jobs stop at their next check and keep their checkpoints;
    // the next start of this node resumes them.
    if let Err(e) = engine.shutdown(grace).await {
        tracing::warn!(error = %e, "jobs still running at exit resume at the next start");
    }
    // Writes run on blocking threads and are durable when acknowledged; this
    // flush covers anything a cut-short request left behind.
    tokio::task::spawn_blocking(move || store.flush())
        .await?
        .map_err(ServerError::Flush)?;
    tracing::info!("hearth stopped");
    Ok(())
}

/// The layers every request passes, outermost first: `%24` decoding (before
/// routing, so `/%24export` routes like `/$export`), a request id, a tracing
/// span carrying it, the id echoed on the response, and panic containment.
fn http_stack(
    router: axum::Router,
) -> impl tower::Service<
    Request,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
+ Send
+ 'static {
    let layered = router.layer(
        ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!("request", method = %req.method(), uri = %req.uri(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::x_request_id())
            .layer(CatchPanicLayer::custom(|_| api::error::panic_response())),
    );
    tower::ServiceExt::map_request(layered, decode_dollar)
}

/// Rewrites `%24` to `$` in the path (not the query): routing matches the raw
/// path, and clients commonly percent-encode the `$` of operation names.
fn decode_dollar(mut req: Request) -> Request {
    let uri = req.uri();
    let path = uri.path();
    if !path.contains("%24") {
        return req;
    }
    let decoded = path.replace("%24", "$");
    let pq = match uri.query() {
        Some(q) => format!("{decoded}?{q}"),
        None => decoded,
    };
    let mut parts = uri.clone().into_parts();
    if let Ok(pq) = pq.parse::<PathAndQuery>() {
        parts.path_and_query = Some(pq);
        if let Ok(new_uri) = Uri::from_parts(parts) {
            *req.uri_mut() = new_uri;
        }
    }
    req
}

/// Reloads the plugins on every SIGHUP, as `POST /_admin/plugins/reload`
/// does. A failure is logged and leaves the running plugins in place.
#[cfg(unix)]
fn reload_on_sighup(
    plugins: Arc<PluginRegistry>,
    source: Arc<ConfigSource>,
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangups = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let (plugins, source) = (plugins.clone(), source.clone());
            match tokio::task::spawn_blocking(move || plugins.reload_from(&source)).await {
                Ok(Ok(set)) => {
                    tracing::info!(generation = set.generation, "plugins reloaded on SIGHUP")
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, "plugin reload failed; the running plugins stay")
                }
                Err(error) => tracing::error!(%error, "plugin reload task failed"),
            }
        }
    });
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_dollar_in_path_only() {
        let req = Request::builder()
            .uri("/Group/g1/%24export?_type=Patient&x=%24y")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(
            decode_dollar(req).uri(),
            "/Group/g1/$export?_type=Patient&x=%24y"
        );
        let req = Request::builder()
            .uri("/Patient/1")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(decode_dollar(req).uri(), "/Patient/1");
    }
}

/// The R4 search parameters the default engine cannot evaluate: searches and
/// `_typeFilter`s naming them are refused, so operators learn which at start.
fn log_unsupported_search_parameters() {
    let unsupported = fhir_search::unsupported_definitions();
    for u in &unsupported {
        tracing::debug!(base = u.base, code = u.code, reason = %u.reason, "unsupported search parameter");
    }
    tracing::info!(
        count = unsupported.len(),
        "R4 search parameter definitions the default search engine refuses (listed at debug level)"
    );
}
