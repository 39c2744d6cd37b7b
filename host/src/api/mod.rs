//! The HTTP edge: the FHIR REST API over a [`Store`].
//!
//! | Method | Path                             | Interaction                       |
//! |--------|----------------------------------|-----------------------------------|
//! | POST   | `/`                              | batch / transaction               |
//! | GET    | `/metadata`                      | capabilities                      |
//! | GET    | `/healthz`                       | health check (not FHIR)           |
//! | GET    | `/_history`                      | history-system                    |
//! | GET    | `/{type}`                        | search-type                       |
//! | POST   | `/{type}/_search`                | search-type (form body)           |
//! | POST   | `/{type}`                        | create                            |
//! | GET    | `/{type}/_history`               | history-type                      |
//! | GET    | `/{type}/{id}`                   | read                              |
//! | PUT    | `/{type}/{id}`                   | update (and create-on-update)     |
//! | DELETE | `/{type}/{id}`                   | delete                            |
//! | GET    | `/{type}/{id}/_history`          | history-instance                  |
//! | GET    | `/{type}/{id}/_history/{vid}`    | vread                             |
//! | GET    | `/_admin/plugins`                | loaded plugins (not FHIR)         |
//! | POST   | `/_admin/plugins/reload`         | reload plugins (not FHIR)         |
//! | GET, POST | `/$export`, `/Patient/$export`, `/Group/{id}/$export` | Bulk Data kick-off |
//! | GET, DELETE | `/_operations/export/{id}`   | export status, cancel / delete    |
//! | GET    | `/_operations/export/{id}/files/{name}` | export file download       |
//! | GET    | `/_operations/export`            | export jobs (not FHIR)            |
//! | POST   | `/$import`                       | Azure-style bulk import kick-off  |
//! | GET, DELETE | `/_operations/import/{id}`   | import status, cancel             |
//! | GET    | `/_operations/import/{id}/errors/{file}` | import error file download |
//! | GET    | `/_operations/import`            | import jobs (not FHIR)            |
//! | GET    | `/OperationDefinition/import`    | the definition of `$import`       |
//!
//! HEAD is answered wherever GET is. Any other path is a 404, any other
//! method on a known path a 405, both as OperationOutcome. While an
//! initial import is queued or running, requests that write resources
//! answer 423 (see `import::lock`).
//!
//! Layout: `params`, `body` and `headers` turn the request into typed
//! values once; `ops` holds the FHIR rules shared by single requests and
//! bundle entries; `crud`, `history`, `bundle`, `metadata`, `health` and
//! `admin` are the handlers; `export` is Bulk Data export and `import`
//! Azure-style import (each its own module tree); `response` and `error`
//! are the only places responses are built;
//! `blocking` runs store calls and plugin loading off the async threads.

mod admin;
mod blocking;
mod body;
mod bundle;
mod crud;
pub mod error;
pub mod export;
mod format;
mod headers;
mod health;
mod history;
pub mod import;
mod jobs;
mod metadata;
mod ops;
mod params;
mod response;
mod search;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, Uri};
use axum::routing::{get, post};

use axum::extract::State;

use crate::config::ConfigSource;
use crate::plugins::{PluginKind, PluginRegistry};
use crate::store::Store;
use error::ApiError;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The server's public base, e.g. `http://127.0.0.1:8080`, no trailing
    /// slash: `Location`, `fullUrl` and paging links are built from it.
    pub base_url: Arc<str>,
    pub limits: ApiLimits,
    /// The plugins new work starts with; a reload swaps them whole.
    pub plugins: Arc<PluginRegistry>,
    /// Where the configuration was read from at start; a reload reads it
    /// again.
    pub config_source: Arc<ConfigSource>,
    /// `$export`: jobs, engine, files, limits.
    pub exports: export::Exports,
    /// `$import`: jobs, engine, sources, error files, the initial-load lock.
    pub imports: import::Imports,
}

#[derive(Clone, Debug)]
pub struct ApiLimits {
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// `_history` page size when the request has no `_count`.
    pub default_page_size: usize,
    /// Larger `_count` values are lowered to this.
    pub max_page_size: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        ApiLimits {
            max_body_bytes: 16 * 1024 * 1024,
            default_page_size: 50,
            max_page_size: 1000,
        }
    }
}

pub fn router(state: AppState) -> Router {
    // Built once per kind of type-filter; a reload may switch between them.
    let with_params = metadata::capability_statement(&state.base_url, metadata::OPERATIONS, true);
    let without = metadata::capability_statement(&state.base_url, metadata::OPERATIONS, false);
    Router::new()
        .route("/", post(bundle::handle))
        .route(
            "/metadata",
            get(move |State(state): State<AppState>| {
                let default_engine = state
                    .plugins
                    .current()
                    .get(PluginKind::TypeFilter)
                    .component()
                    .is_none();
                metadata::handle(if default_engine { with_params } else { without }.clone())
            }),
        )
        .route("/healthz", get(health::handle))
        .route("/_history", get(history::system))
        .route("/{type}", get(search::get).post(crud::create))
        .route("/{type}/_search", post(search::post))
        .route("/{type}/_history", get(history::of_type))
        .route(
            "/{type}/{id}",
            get(crud::read).put(crud::update).delete(crud::delete),
        )
        .route("/{type}/{id}/_history", get(history::of_instance))
        .route("/{type}/{id}/_history/{vid}", get(crud::vread))
        .route("/_admin/plugins", get(admin::list))
        .route("/_admin/plugins/reload", post(admin::reload))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::from_fn(format::negotiate))
        // Merged after the layer, so outside JSON-only negotiation: the
        // export and import routes negotiate for themselves (see `export`,
        // `import`).
        .merge(export::router())
        .merge(import::router())
        // Outermost, over every route and the fallback: what is not
        // exempted is locked (see `import::lock`).
        .layer(axum::middleware::from_fn_with_state(
            state.imports.lock.clone(),
            import::lock::refuse_writes,
        ))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("there is nothing at {}", uri.path()))
}

/// axum keeps its `Allow` header on this response.
async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not supported on {}", uri.path()))
}
