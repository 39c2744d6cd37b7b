//! Azure-style `$import` over HTTP: the kick-off, the status URL (poll,
//! cancel), the error files, a listing of the jobs, and the initial-load
//! lock on REST writes.
//!
//! | Method | Path                                         |                          |
//! |--------|----------------------------------------------|--------------------------|
//! | POST   | `/$import`                                   | kick-off (202)           |
//! | GET    | `/_operations/import`                        | list the import jobs     |
//! | GET    | `/_operations/import/{id}`                   | status                   |
//! | DELETE | `/_operations/import/{id}`                   | cancel                   |
//! | GET    | `/_operations/import/{id}/errors/{file}`     | one error file (NDJSON)  |
//! | GET    | `/OperationDefinition/import`                | what `$import` accepts   |
//!
//! Like the export routes, these sit outside the API's JSON-only
//! negotiation: error files are NDJSON.
//!
//! Layout: `params` parses the kick-off body, `kickoff` checks the sources
//! and registers the job, `status` answers the status URL, the error files
//! and the listing, `lock` keeps REST writes out during an initial load,
//! `definition` publishes the OperationDefinition.

mod definition;
mod kickoff;
pub mod lock;
mod params;
mod status;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::import::ImportConfig;
use crate::import::source::ImportSources;
use crate::jobs::JobStore;
use crate::jobs::engine::Engine;

use super::AppState;
pub use definition::DEFINITION_PATH;
use lock::ImportLock;

/// What the import endpoints share.
#[derive(Clone)]
pub struct Imports {
    pub jobs: Arc<dyn JobStore>,
    pub engine: Engine,
    /// Where inputs may come from: checked at kick-off.
    pub sources: Arc<ImportSources>,
    /// Where error files are (for downloads).
    pub config: Arc<ImportConfig>,
    pub lock: ImportLock,
    /// Held by one kick-off at a time (see `kickoff::enqueue`).
    kickoff: Arc<tokio::sync::Mutex<()>>,
}

impl Imports {
    /// `lock` comes from [`ImportLock::load`] on the same job store.
    pub fn new(
        jobs: Arc<dyn JobStore>,
        engine: Engine,
        sources: Arc<ImportSources>,
        config: Arc<ImportConfig>,
        lock: ImportLock,
    ) -> Self {
        Imports {
            jobs,
            engine,
            sources,
            config,
            lock,
            kickoff: Arc::default(),
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/$import", post(kickoff::kickoff))
        .route(DEFINITION_PATH, get(definition::handle))
        .route("/_operations/import", get(status::list))
        .route(
            "/_operations/import/{id}",
            get(status::poll).delete(status::delete),
        )
        .route(
            "/_operations/import/{id}/errors/{file}",
            get(status::error_file).layer(super::export::download::compression()),
        )
        .method_not_allowed_fallback(super::method_not_allowed)
}

/// `{base}/_operations/import/{id}`: a job's status URL.
fn status_url(base: &str, id: &crate::jobs::JobId) -> String {
    format!("{base}/_operations/import/{id}")
}
