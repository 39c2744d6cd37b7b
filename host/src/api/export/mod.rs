//! Bulk Data `$export` over HTTP: the kick-off, the status URL (poll,
//! cancel, delete), the file downloads and a listing of the jobs.
//!
//! | Method      | Path                                        |                         |
//! |-------------|---------------------------------------------|-------------------------|
//! | GET, POST   | `/$export`, `/Patient/$export`, `/Group/{id}/$export` | kick-off (202)   |
//! | GET         | `/_operations/export`                       | list the export jobs    |
//! | GET         | `/_operations/export/{id}`                  | status / manifest       |
//! | DELETE      | `/_operations/export/{id}`                  | cancel, or delete files |
//! | GET         | `/_operations/export/{id}/files/{name}`     | download one file       |
//!
//! These routes negotiate formats themselves, outside the API's JSON-only
//! negotiation: the kick-off's `Accept` rule is the Bulk Data IG's (400,
//! not 406), and downloads are NDJSON.
//!
//! Layout: `params` parses the kick-off, `kickoff` checks what needs the
//! store and plugins and registers the job, `status` answers the status URL
//! and the listing, `download` serves files, `retention` decides when a
//! finished export expires and removes it (on DELETE and periodically).

pub(super) mod download;
mod kickoff;
pub(super) mod params;
mod retention;
pub(super) mod status;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;

use crate::export::ExportHandler;
use crate::jobs::JobStore;
use crate::jobs::engine::Engine;

use super::AppState;

pub use retention::{RemoveError, run_janitor};

/// What the export endpoints share: the jobs, the engine to wake, the
/// handler that knows where a job's files are, and the limits.
#[derive(Clone)]
pub struct Exports {
    pub jobs: Arc<dyn JobStore>,
    pub engine: Engine,
    /// Finds committed files for download and removes a job's files.
    pub handler: Arc<ExportHandler>,
    /// `jobs.max_concurrent_exports`: queued + running exports allowed.
    pub max_concurrent: usize,
    /// `export.retention_hours`: how long a finished export stays.
    pub retention: Duration,
    /// Held by one kick-off at a time (see `kickoff::enqueue`).
    kickoff: Arc<tokio::sync::Mutex<()>>,
}

impl Exports {
    pub fn new(
        jobs: Arc<dyn JobStore>,
        engine: Engine,
        handler: Arc<ExportHandler>,
        max_concurrent: usize,
        retention: Duration,
    ) -> Self {
        Exports {
            jobs,
            engine,
            handler,
            max_concurrent,
            retention,
            kickoff: Arc::default(),
        }
    }
}

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/$export",
            get(kickoff::system)
                .post(kickoff::system_post)
                .head(kickoff::head),
        )
        .route(
            "/Patient/$export",
            get(kickoff::patient)
                .post(kickoff::patient_post)
                .head(kickoff::head),
        )
        .route(
            "/Group/{id}/$export",
            get(kickoff::group)
                .post(kickoff::group_post)
                .head(kickoff::head),
        )
        .route("/_operations/export", get(status::list))
        .route(
            "/_operations/export/{id}",
            get(status::poll).delete(status::delete),
        )
        .route(
            "/_operations/export/{id}/files/{name}",
            get(download::file).layer(download::compression()),
        )
        .method_not_allowed_fallback(super::method_not_allowed)
}

/// `{base}/_operations/export/{id}`: a job's status URL.
fn status_url(base: &str, id: &crate::jobs::JobId) -> String {
    format!("{base}/_operations/export/{id}")
}
