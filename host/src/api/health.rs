//! `GET /healthz`: for load balancers and orchestrators, not a FHIR
//! interaction, so its success body is plain JSON.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::blocking::with_store;
use super::error::ApiError;

/// 200 once the store answers a cheap query, 503 when it does not.
pub async fn handle(State(state): State<AppState>) -> Response {
    let check = with_store(&state, |store| {
        store.last_commit().map_err(|e| {
            tracing::error!(error = %e, "health check: store failed");
            ApiError::Unavailable("the store is not answering".into())
        })
    })
    .await;
    match check {
        Ok(_) => Json(json!({ "status": "ok" })).into_response(),
        Err(e) => e.into_response(),
    }
}
