//! The status URL `/_operations/import/{id}`: poll (GET) and cancel
//! (DELETE); the error files of a completed import; the listing of every
//! import job.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderValue;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::api::AppState;
use crate::api::blocking;
use crate::api::error::ApiError;
use crate::api::export::download::ndjson_file;
use crate::api::export::status::in_progress;
use crate::api::jobs;
use crate::api::params::segments;
use crate::api::response;
use crate::fhir::Instant;
use crate::import::ImportRequest;
use crate::import::result::ImportResult;
use crate::jobs::{JobId, JobKind, JobRecord, JobState};

use super::{Imports, status_url};

/// `/_operations/import/{id}`: a well-formed job id. Anything else cannot
/// name a job: 404, like an unknown one.
pub struct JobPath(JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let [id] = segments(parts).await?;
        JobId::parse(&id).map(JobPath).ok_or_else(|| not_found(&id))
    }
}

/// `/_operations/import/{id}/errors/{file}`
pub struct ErrorFilePath(JobId, String);

impl<S: Send + Sync> FromRequestParts<S> for ErrorFilePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let [id, file] = segments(parts).await?;
        let id = JobId::parse(&id).ok_or_else(|| not_found(&id))?;
        Ok(ErrorFilePath(id, file))
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("there is no import job {id}"))
}

fn cancelled(id: &JobId) -> ApiError {
    ApiError::NotFound(format!(
        "import {id} was cancelled (what it had imported stays in the store)"
    ))
}

/// The import job `id`, or 404.
async fn find(imports: &Imports, id: JobId) -> Result<JobRecord, ApiError> {
    let (jobs, lookup) = (imports.jobs.clone(), id.clone());
    let job = blocking::run(move || Ok(jobs.get(&lookup)?)).await?;
    job.filter(|job| job.kind == JobKind::Import)
        .ok_or_else(|| not_found(id.as_str()))
}

/// `GET /_operations/import/{id}`: 202 with `X-Progress` and `Retry-After`
/// while queued or running; 200 with the outcome once completed; the
/// stored status and OperationOutcome of a failure; 404 once cancelled
/// (as for `$export`).
pub async fn poll(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    let job = find(&state.imports, id).await?;
    match job.state {
        JobState::Queued | JobState::Running => in_progress("import", &job),
        JobState::Cancelled => Err(cancelled(&job.id)),
        JobState::Failed => Err(match job.error {
            Some(error) => ApiError::JobFailed(error),
            None => {
                ApiError::internal(format!("import {} failed without a recorded error", job.id))
            }
        }),
        JobState::Completed => {
            let body = completed(&state.base_url, &job)?;
            let body = serde_json::to_vec(&body)
                .map_err(|e| ApiError::internal(format!("serialising an import status: {e}")))?;
            Ok((
                StatusCode::OK,
                [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                body,
            )
                .into_response())
        }
    }
}

fn result_of(job: &JobRecord) -> Result<ImportResult, ApiError> {
    serde_json::from_value(job.result.clone())
        .map_err(|e| ApiError::internal(format!("import {} has an unreadable result: {e}", job.id)))
}

/// The seed document's status body: `transactionTime`, `request`, per
/// input the resources imported (`output`) and the error file of those
/// that were not (`error`, absent inputs had none).
fn completed(base: &str, job: &JobRecord) -> Result<Value, ApiError> {
    let result = result_of(job)?;
    let files = format!("{}/errors", status_url(base, &job.id));
    let output: Vec<Value> = result
        .output
        .iter()
        .map(|o| json!({"type": o.resource_type, "count": o.count, "inputUrl": o.input_url}))
        .collect();
    let error: Vec<Value> = result
        .error
        .iter()
        .map(|e| {
            json!({
                "type": "OperationOutcome",
                "count": e.count,
                "inputUrl": e.input_url,
                "url": e.url.clone().unwrap_or_else(|| format!("{files}/{}", e.file)),
            })
        })
        .collect();
    Ok(json!({
        "transactionTime": result.transaction_time.to_fhir(),
        "request": result.request,
        "output": output,
        "error": error,
    }))
}

/// `DELETE /_operations/import/{id}`: 202 when a queued or running import
/// is asked to stop (what it imported stays); 409 once it completed or
/// failed, there is nothing left to cancel; 404 once cancelled.
pub async fn delete(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    let imports = state.imports.clone();
    let job = find(&imports, id).await?;
    if job.state.is_final() {
        return Err(already_ended(&job));
    }
    let jobs = imports.jobs.clone();
    let (cancel_id, now) = (job.id.clone(), Instant::now());
    let current = blocking::run(move || Ok(jobs.request_cancel(&cancel_id, now)?)).await?;
    match current {
        Some(job) if job.state.is_final() && job.state != JobState::Cancelled => {
            Err(already_ended(&job))
        }
        Some(job) => {
            imports.engine.wake();
            tracing::info!(job = %job.id, "import cancel requested");
            response::accepted(
                format!(
                    "import {}: cancel requested; what it imported so far stays",
                    job.id
                ),
                None,
            )
        }
        None => Err(not_found(job.id.as_str())),
    }
}

fn already_ended(job: &JobRecord) -> ApiError {
    match job.state {
        JobState::Cancelled => cancelled(&job.id),
        JobState::Failed => ApiError::Conflict(format!(
            "import {} already failed; there is nothing to cancel",
            job.id
        )),
        _ => ApiError::Conflict(format!(
            "import {} already completed; there is nothing to cancel",
            job.id
        )),
    }
}

/// `GET /_operations/import/{id}/errors/{file}`: one error file of a
/// completed import. Only names the job's result lists are served.
pub async fn error_file(
    State(state): State<AppState>,
    ErrorFilePath(id, file): ErrorFilePath,
    request: Request,
) -> Result<Response, ApiError> {
    let imports = state.imports.clone();
    let job = find(&imports, id).await?;
    let missing = || ApiError::NotFound(format!("import {} has no error file {file}", job.id));
    if job.state != JobState::Completed {
        return Err(missing());
    }
    if !result_of(&job)?
        .error
        .iter()
        .any(|e| e.file == file && e.url.is_none())
    {
        return Err(missing());
    }
    let config = imports.config.clone();
    let (lookup, name) = (job.id.clone(), file.clone());
    let path = blocking::run(move || {
        Ok(crate::import::error_file_path(&config, &lookup, &name).filter(|p| p.is_file()))
    })
    .await?;
    match path {
        Some(path) => ndjson_file(path, request).await,
        None => Err(missing()),
    }
}

/// `GET /_operations/import`: every import job the server knows, oldest
/// first (see [`crate::api::jobs`]), with the mode and input count of each.
pub async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let base = state.base_url.clone();
    jobs::list(
        state.imports.jobs.clone(),
        JobKind::Import,
        "imports",
        |job| status_url(&base, &job.id),
        |job| {
            let request = serde_json::from_value::<ImportRequest>(job.request.clone()).ok();
            [
                ("mode".to_owned(), json!(request.as_ref().map(|r| r.mode))),
                (
                    "inputs".to_owned(),
                    json!(request.as_ref().map(|r| r.inputs.len())),
                ),
            ]
            .into_iter()
            .collect()
        },
    )
    .await
}
