//! The status URL `/_operations/export/{id}`: poll (GET) and cancel or
//! delete (DELETE); and the listing of every export job.

use axum::extract::{FromRequestParts, State};
use axum::http::header::{CONTENT_TYPE, EXPIRES, RETRY_AFTER};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::api::AppState;
use crate::api::blocking;
use crate::api::error::ApiError;
use crate::api::jobs;
use crate::api::params::segments;
use crate::api::response;
use crate::export::ExportRequest;
use crate::fhir::Instant;
use crate::jobs::{JobId, JobKind, JobRecord, JobState};

use super::retention::{self, Expiry};
use super::{Exports, status_url};

/// `/_operations/export/{id}`: a well-formed job id. Anything else cannot
/// name a job: 404, like an unknown one.
pub struct JobPath(pub JobId);

impl<S: Send + Sync> FromRequestParts<S> for JobPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let [id] = segments(parts).await?;
        parse_job_id(&id).map(JobPath)
    }
}

pub fn parse_job_id(id: &str) -> Result<JobId, ApiError> {
    JobId::parse(id).ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("there is no export job {id}"))
}

/// The export job `id`, or 404.
pub async fn find(exports: &Exports, id: JobId) -> Result<JobRecord, ApiError> {
    let (jobs, lookup) = (exports.jobs.clone(), id.clone());
    let job = blocking::run(move || Ok(jobs.get(&lookup)?)).await?;
    job.filter(|job| job.kind == JobKind::Export)
        .ok_or_else(|| not_found(id.as_str()))
}

/// How often a client in a hurry should poll a job under way.
const POLL_SECONDS: u64 = 2;

/// `GET /_operations/export/{id}`: 202 with `X-Progress` while queued or
/// running; 200 with the manifest (and `Expires`) once completed; the
/// stored status and OperationOutcome of a failure; 404 once cancelled,
/// deleted or expired.
pub async fn poll(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    let exports = &state.exports;
    let job = find(exports, id).await?;
    match retention::expiry(&job, exports.retention, Instant::now()) {
        Expiry::Gone(why) => Err(ApiError::NotFound(format!("export {} {why}", job.id))),
        Expiry::Pending => in_progress("export", &job),
        Expiry::At(expires) => match (job.state, job.error.clone()) {
            (JobState::Failed, Some(error)) => Err(ApiError::JobFailed(error)),
            (JobState::Failed, None) => Err(ApiError::internal(format!(
                "export {} failed without a recorded error",
                job.id
            ))),
            _ => {
                let files = format!("{}/files", status_url(&state.base_url, &job.id));
                let handler = exports.handler.clone();
                // Signing blob URLs runs on the destination's blocking API.
                let (manifest, signed_until) =
                    blocking::run(move || Ok(handler.manifest(&job, &files)?)).await?;
                // A client must fetch the files before the first signed URL
                // stops working, and never after the export expires.
                let expires = signed_until.map_or(expires, |s| s.min(expires));
                let body = serde_json::to_vec(&manifest)
                    .map_err(|e| ApiError::internal(format!("serialising a manifest: {e}")))?;
                let mut response = (
                    StatusCode::OK,
                    [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
                    body,
                )
                    .into_response();
                response::insert(response.headers_mut(), EXPIRES, &expires.to_http_date())?;
                Ok(response)
            }
        },
    }
}

/// 202 for a job under way (`what` is `export` or `import`): `X-Progress`
/// and `Retry-After`.
pub(in crate::api) fn in_progress(what: &str, job: &JobRecord) -> Result<Response, ApiError> {
    let progress = progress_text(job);
    let mut response = response::accepted(format!("{what} {}: {progress}", job.id), None)?;
    response::insert(response.headers_mut(), X_PROGRESS, &progress)?;
    response
        .headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from(POLL_SECONDS));
    Ok(response)
}

const X_PROGRESS: axum::http::HeaderName = axum::http::HeaderName::from_static("x-progress");

/// `X-Progress` (under 100 characters, as the IG asks): `queued`,
/// `running` (before the first checkpoint), `42% (12,000 of 28,500
/// resources exported)`, or `12,000 resources exported` when the total is
/// unknown. The unit is the handler's progress message.
fn progress_text(job: &JobRecord) -> String {
    let p = &job.progress;
    let unit = p.message.as_str();
    let text = match (job.state, p.total) {
        (JobState::Queued, _) => "queued".to_owned(),
        _ if unit.is_empty() => "running".to_owned(),
        (_, Some(total)) if total > 0 => format!(
            "{}% ({} of {} {unit})",
            (p.done.min(total) * 100) / total,
            thousands(p.done),
            thousands(total)
        ),
        _ => format!("{} {unit}", thousands(p.done)),
    };
    text.chars().take(99).collect()
}

/// `28500` as `28,500`.
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// `DELETE /_operations/export/{id}`: a queued or running export is
/// cancelled; a finished one's files and record are deleted. 202 either
/// way, and the status URL answers 404 from then on.
pub async fn delete(
    State(state): State<AppState>,
    JobPath(id): JobPath,
) -> Result<Response, ApiError> {
    let exports = state.exports.clone();
    let job = find(&exports, id).await?;
    if let Expiry::Gone(why) = retention::expiry(&job, exports.retention, Instant::now()) {
        return Err(ApiError::NotFound(format!("export {} {why}", job.id)));
    }
    let id = job.id.clone();
    let jobs = exports.jobs.clone();
    let (cancel_id, now) = (id.clone(), Instant::now());
    // Cancelling a job that finished meanwhile changes nothing and returns
    // it final: then its files go, as for any finished job.
    let current = blocking::run(move || Ok(jobs.request_cancel(&cancel_id, now)?)).await?;
    match current {
        Some(job) if !job.state.is_final() => {
            exports.engine.wake();
            tracing::info!(job = %id, "export cancel requested");
            response::accepted(format!("export {id}: cancel requested"), None)
        }
        Some(job) if job.state != JobState::Cancelled => {
            let exports = exports.clone();
            blocking::run(move || Ok(retention::remove(&exports, &job)?)).await?;
            tracing::info!(job = %id, "export deleted");
            response::accepted(format!("export {id}: files and status deleted"), None)
        }
        // Cancelled while queued: nothing was written.
        Some(_) => response::accepted(format!("export {id}: cancelled"), None),
        None => Err(not_found(id.as_str())),
    }
}

/// `GET /_operations/export`: every export job the server knows, oldest
/// first (see [`crate::api::jobs`]), with the request URL of each.
pub async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let base = state.base_url.clone();
    jobs::list(
        state.exports.jobs.clone(),
        JobKind::Export,
        "exports",
        |job| status_url(&base, &job.id),
        |job| {
            let request = serde_json::from_value::<ExportRequest>(job.request.clone()).ok();
            [("request".to_owned(), json!(request.map(|r| r.request_url)))]
                .into_iter()
                .collect()
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_texts() {
        let job = |state, done, total, message: &str| {
            let mut job: JobRecord = serde_json::from_value(json!({
                "id": "j", "kind": "export", "state": state, "request": null,
                "request_hash": "", "owner": null, "created": "2024-01-01T00:00:00Z",
                "started": null, "finished": null, "lease": null, "attempts": 1,
                "cancel_requested": false, "progress": {"done": 0, "total": null, "message": ""},
                "checkpoint": null, "result": null, "error": null
            }))
            .unwrap();
            job.progress.done = done;
            job.progress.total = total;
            job.progress.message = message.into();
            progress_text(&job)
        };
        assert_eq!(job("queued", 0, None, ""), "queued");
        assert_eq!(job("running", 0, None, ""), "running");
        assert_eq!(
            job("running", 12_000, None, "resources exported"),
            "12,000 resources exported"
        );
        assert_eq!(
            job("running", 12_000, Some(28_500), "resources exported"),
            "42% (12,000 of 28,500 resources exported)"
        );
        assert_eq!(
            job("running", 1, None, &"x".repeat(200)).chars().count(),
            99
        );
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(28_500), "28,500");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
