//! The operator's list of jobs of one kind (`GET /_operations/export`,
//! `GET /_operations/import`): plain JSON, oldest first, not a FHIR
//! resource. Each kind adds what its request says to the common fields.

use std::sync::Arc;

use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::api::error::ApiError;
use crate::api::{blocking, response};
use crate::jobs::engine::Engine;
use crate::jobs::{JobKind, JobRecord, JobStore};

/// The 202 of a kick-off. `new` says whether `job` was just queued (the
/// engine is woken so that an idle worker claims it at once) or is the job
/// an identical earlier request made (`what` names the operation).
pub fn accepted(
    what: &str,
    job: &JobRecord,
    new: bool,
    status_url: &str,
    engine: &Engine,
) -> Result<Response, ApiError> {
    let message = if new {
        engine.wake();
        tracing::info!(job = %job.id, "{what} queued");
        format!("{what} {} queued; poll {status_url} for its status", job.id)
    } else {
        format!(
            "an identical {what} request was made before: {what} {} is {}; poll {status_url} for its status",
            job.id,
            job.state.as_str()
        )
    };
    response::accepted(message, Some(status_url))
}

/// `{ "<key>": [...] }` with one summary per job of `kind`: the common
/// fields, `status` (the job's status URL, from `status_url`) and what
/// `details` adds.
pub async fn list(
    jobs: Arc<dyn JobStore>,
    kind: JobKind,
    key: &'static str,
    status_url: impl Fn(&JobRecord) -> String,
    details: impl Fn(&JobRecord) -> Map<String, Value>,
) -> Result<Response, ApiError> {
    let all = blocking::run(move || Ok(jobs.list(Some(kind))?)).await?;
    let summaries: Vec<Value> = all
        .iter()
        .map(|job| {
            let mut summary = common(job, status_url(job));
            summary.extend(details(job));
            Value::Object(summary)
        })
        .collect();
    let body = serde_json::to_vec(&json!({ key: summaries }))
        .map_err(|e| ApiError::internal(format!("serialising the {key} list: {e}")))?;
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
        .into_response())
}

fn common(job: &JobRecord, status: String) -> Map<String, Value> {
    [
        ("id", json!(job.id)),
        ("status", json!(status)),
        ("state", json!(job.state)),
        ("cancelRequested", json!(job.cancel_requested)),
        ("created", json!(job.created)),
        ("started", json!(job.started)),
        ("finished", json!(job.finished)),
        (
            "progress",
            json!({
                "done": job.progress.done,
                "total": job.progress.total,
                "message": job.progress.message,
            }),
        ),
        ("owner", json!(job.owner)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}
