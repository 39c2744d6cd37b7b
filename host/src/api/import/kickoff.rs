//! The kick-off `POST /$import`: checks the headers and the `Parameters`
//! body, that every input is a file the import sources allow (and still has
//! the etag the client gave), then registers the job, or finds the one
//! this same registration already made, and answers 202 with its status
//! URL.

use std::collections::BTreeSet;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, Uri};
use axum::response::Response;

use crate::api::AppState;
use crate::api::blocking;
use crate::api::body::JsonBody;
use crate::api::error::ApiError;
use crate::api::format::media_essence;
use crate::api::headers::AsyncPref;
use crate::api::jobs;
use crate::fhir::{Instant, IssueType};
use crate::import::source::ImportSources;
use crate::import::{ImportMode, ImportRequest};
use crate::jobs::{JobKind, JobRecord, JobState, NewJob};

use super::lock::is_initial_load;
use super::params::{self, Parsed};
use super::{Imports, status_url};

/// `POST /$import`
pub async fn kickoff(
    State(state): State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    check_headers(&headers)?;
    if uri.query().is_some_and(|q| !q.is_empty()) {
        return Err(ApiError::invalid(
            "an $import kick-off takes its parameters in the Parameters body, not the URL",
        ));
    }
    // `request` of the status answer: the kick-off URL, which a POST
    // carries no parameters in.
    let request_url = format!("{}{}", state.base_url, uri.path());
    let parsed = params::parse(&body, request_url)?;
    let sources = state.imports.sources.clone();
    let request = blocking::run(move || check_sources(&sources, parsed)).await?;
    enqueue(&state.imports, &state.base_url, request).await
}

/// `Prefer: respond-async` (400 otherwise, as for `$export`) and a body
/// declared `application/fhir+json` (415 otherwise: the other JSON
/// spellings the REST API tolerates are not what Azure's `$import` takes).
fn check_headers(headers: &HeaderMap) -> Result<(), ApiError> {
    if !AsyncPref::from_headers(headers).respond_async {
        return Err(ApiError::Invalid {
            code: IssueType::Required,
            message: "an $import kick-off needs Prefer: respond-async (it runs asynchronously)"
                .into(),
            expression: Some("Prefer".into()),
        });
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if media_essence(content_type) != "application/fhir+json" {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type '{content_type}' is not accepted; an $import kick-off is application/fhir+json"
        )));
    }
    Ok(())
}

/// Every input must be readable by the server now, from an allowed source,
/// with the etag given (if any): a registration that cannot work is the
/// client's 400 (or 412) at once, not a failed job later.
fn check_sources(sources: &ImportSources, parsed: Parsed) -> Result<ImportRequest, ApiError> {
    for (input, at) in parsed.request.inputs.iter().zip(&parsed.input_paths) {
        sources
            .check(&input.url, input.etag.as_deref())
            .map_err(|error| ApiError::source(at, error))?;
    }
    // Error files going to a blob container need an Azure container name.
    sources
        .error_target(&parsed.request)
        .map_err(|error| ApiError::Invalid {
            code: IssueType::Value,
            message: error.to_string(),
            expression: Some("errorContainerName".into()),
        })?;
    Ok(parsed.request)
}

/// Registers the import unless this registration was made before (then
/// that job is the answer), or it would run next to an initial load (409).
/// One kick-off at a time runs this, so the checks and the registration
/// cannot interleave with another kick-off's.
async fn enqueue(
    imports: &Imports,
    base: &str,
    request: ImportRequest,
) -> Result<Response, ApiError> {
    let serialised = serde_json::to_value(&request)
        .map_err(|e| ApiError::internal(format!("serialising an import request: {e}")))?;
    let (jobs, lock) = (imports.jobs.clone(), imports.lock.clone());
    let (job, new) = {
        let _one_at_a_time = imports.kickoff.lock().await;
        blocking::run(move || {
            let all = jobs.list(Some(JobKind::Import))?;
            if let Some(job) = same_registration(&all, &request) {
                if job.cancel_requested && !job.state.is_final() {
                    return Err(ApiError::Conflict(format!(
                        "the same registration (import {}) is being cancelled; register it again once it has stopped",
                        job.id
                    )));
                }
                return Ok((job.clone(), false));
            }
            check_exclusive(&all, request.mode)?;
            let new = NewJob {
                kind: JobKind::Import,
                request: serialised,
                owner: None,
                created: Instant::now(),
            };
            let registered = if request.mode == ImportMode::InitialLoad {
                lock.hold_while(|| jobs.enqueue(new))?
            } else {
                jobs.enqueue(new)?
            };
            Ok(registered)
        })
        .await?
    };
    let url = status_url(base, &job.id);
    jobs::accepted("import", &job, new, &url, &imports.engine)
}

/// The job an identical registration made, if it is queued, running or
/// completed (the seed document's idempotency: re-importing files under the
/// same names takes a new name or an etag). A failed or cancelled job does
/// not count: registering again is how a client retries it.
///
/// Identical means the same mode, `allowNegativeVersions`, error container
/// and the same inputs (type, url, etag) in any order. The kick-off URL is
/// not part of it: it names the host and port the request came through.
fn same_registration<'a>(jobs: &'a [JobRecord], request: &ImportRequest) -> Option<&'a JobRecord> {
    let key = registration(request);
    jobs.iter()
        .filter(|job| {
            matches!(
                job.state,
                JobState::Queued | JobState::Running | JobState::Completed
            )
        })
        .find(|job| {
            serde_json::from_value::<ImportRequest>(job.request.clone())
                .is_ok_and(|existing| registration(&existing) == key)
        })
}

type Registration<'a> = (
    ImportMode,
    bool,
    Option<&'a str>,
    BTreeSet<(Option<&'static str>, &'a str, Option<&'a str>)>,
);

fn registration(request: &ImportRequest) -> Registration<'_> {
    let inputs = request
        .inputs
        .iter()
        .map(|i| {
            (
                i.resource_type.map(|t| t.as_str()),
                i.url.as_str(),
                i.etag.as_deref(),
            )
        })
        .collect();
    (
        request.mode,
        request.allow_negative_versions,
        request.error_location.as_deref(),
        inputs,
    )
}

/// An initial load runs alone: it is registered only when no other import
/// is queued or running, and while it is, no other import is registered.
fn check_exclusive(jobs: &[JobRecord], mode: ImportMode) -> Result<(), ApiError> {
    let active = jobs.iter().filter(|job| !job.state.is_final());
    let blocking = match mode {
        ImportMode::InitialLoad => active.clone().next(),
        ImportMode::IncrementalLoad => active.clone().find(|job| is_initial_load(job)),
    };
    let Some(other) = blocking else {
        return Ok(());
    };
    let what = if is_initial_load(other) {
        "the initial import"
    } else {
        "the import"
    };
    Err(ApiError::Conflict(format!(
        "{what} {} is {}; an initial import runs alone, so this one cannot be registered until it ends",
        other.id,
        other.state.as_str()
    )))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use serde_json::json;

    use super::*;
    use crate::import::{ImportInput, SourceUrl};

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn required_headers() {
        let fhir = ("content-type", "application/fhir+json");
        let async_ = ("prefer", "respond-async");
        assert!(check_headers(&headers(&[fhir, async_])).is_ok());
        let charset = ("content-type", "application/fhir+json; charset=utf-8");
        assert!(check_headers(&headers(&[charset, async_])).is_ok());
        assert!(matches!(
            check_headers(&headers(&[fhir])),
            Err(ApiError::Invalid { expression: Some(e), .. }) if e == "Prefer"
        ));
        for other in ["application/json", "application/json+fhir", "text/plain"] {
            assert!(matches!(
                check_headers(&headers(&[("content-type", other), async_])),
                Err(ApiError::UnsupportedMediaType(_))
            ));
        }
    }

    fn request(mode: ImportMode, urls: &[&str]) -> ImportRequest {
        ImportRequest {
            request_url: "http://a/$import".into(),
            mode,
            allow_negative_versions: false,
            inputs: urls
                .iter()
                .map(|u| ImportInput {
                    resource_type: None,
                    url: SourceUrl((*u).into()),
                    etag: None,
                })
                .collect(),
            error_location: None,
        }
    }

    fn job(state: &str, request: &ImportRequest) -> JobRecord {
        serde_json::from_value(json!({
            "id": uuid::Uuid::new_v4().to_string(), "kind": "import", "state": state,
            "request": request, "request_hash": "", "owner": null,
            "created": "2024-01-01T00:00:00Z", "started": null, "finished": null,
            "lease": null, "attempts": 0, "cancel_requested": false,
            "progress": {"done": 0, "total": null, "message": ""},
            "checkpoint": null, "result": null, "error": null
        }))
        .unwrap()
    }

    #[test]
    fn registrations_are_idempotent() {
        let a = request(ImportMode::IncrementalLoad, &["file:///a", "file:///b"]);
        let reordered = ImportRequest {
            request_url: "http://other-port/$import".into(),
            ..request(ImportMode::IncrementalLoad, &["file:///b", "file:///a"])
        };
        for state in ["queued", "running", "completed"] {
            let jobs = [job(state, &a)];
            assert_eq!(
                same_registration(&jobs, &reordered).map(|j| &j.id),
                Some(&jobs[0].id)
            );
        }
        for state in ["failed", "cancelled"] {
            assert!(same_registration(&[job(state, &a)], &a).is_none());
        }
        let jobs = [job("running", &a)];
        let initial = request(ImportMode::InitialLoad, &["file:///a", "file:///b"]);
        let fewer = request(ImportMode::IncrementalLoad, &["file:///a"]);
        let mut tagged = a.clone();
        tagged.inputs[0].etag = Some("\"1\"".into());
        let mut negative = a.clone();
        negative.allow_negative_versions = true;
        for other in [initial, fewer, tagged, negative] {
            assert!(same_registration(&jobs, &other).is_none(), "{other:?}");
        }
    }

    #[test]
    fn initial_loads_run_alone() {
        let initial = request(ImportMode::InitialLoad, &["file:///a"]);
        let incremental = request(ImportMode::IncrementalLoad, &["file:///b"]);
        let conflict = |jobs: &[JobRecord], mode| {
            matches!(check_exclusive(jobs, mode), Err(ApiError::Conflict(_)))
        };
        for state in ["queued", "running"] {
            let jobs = [job(state, &initial)];
            assert!(conflict(&jobs, ImportMode::InitialLoad));
            assert!(conflict(&jobs, ImportMode::IncrementalLoad));
            let jobs = [job(state, &incremental)];
            assert!(conflict(&jobs, ImportMode::InitialLoad));
            assert!(!conflict(&jobs, ImportMode::IncrementalLoad));
        }
        for state in ["completed", "failed", "cancelled"] {
            let jobs = [job(state, &initial), job(state, &incremental)];
            assert!(!conflict(&jobs, ImportMode::InitialLoad));
            assert!(!conflict(&jobs, ImportMode::IncrementalLoad));
        }
    }
}
