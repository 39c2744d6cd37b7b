//! The kick-off: `GET` or `POST` on `/$export`, `/Patient/$export` and
//! `/Group/{id}/$export`. Checks the headers and parameters, that the Group
//! exists at the snapshot and the group resolver accepts it, and that every
//! `_typeFilter` compiles, then registers the job
//! (or finds the identical one already under way) and answers 202 with its
//! status URL.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::header::{ACCEPT, ALLOW};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};

use crate::api::AppState;
use crate::api::blocking::{self, with_store};
use crate::api::body::JsonBody;
use crate::api::error::ApiError;
use crate::api::format::media_essence;
use crate::api::headers::AsyncPref;
use crate::api::jobs;
use crate::api::params::{query_pairs, segments};
use crate::export::{ExportLevel, ExportRequest, Warning, check_group};
use crate::fhir::{Instant, IssueType};
use crate::jobs::{JobKind, JobRecord, JobStore, NewJob};
use crate::plugins::{PluginSet, TypeFilter};

use super::params::{self, Kickoff};
use super::{Exports, status_url};

/// `GET /$export`
pub async fn system(
    state: State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    kickoff(state, ExportLevel::System, uri, headers, None).await
}

/// `POST /$export`
pub async fn system_post(
    state: State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    kickoff(state, ExportLevel::System, uri, headers, Some(body)).await
}

/// `GET /Patient/$export`
pub async fn patient(
    state: State<AppState>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    kickoff(state, ExportLevel::Patient, uri, headers, None).await
}

/// `POST /Patient/$export`
pub async fn patient_post(
    state: State<AppState>,
    uri: Uri,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    kickoff(state, ExportLevel::Patient, uri, headers, Some(body)).await
}

/// `GET /Group/{id}/$export`
pub async fn group(
    state: State<AppState>,
    GroupPath(level): GroupPath,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    kickoff(state, level, uri, headers, None).await
}

/// `POST /Group/{id}/$export`
pub async fn group_post(
    state: State<AppState>,
    GroupPath(level): GroupPath,
    uri: Uri,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    kickoff(state, level, uri, headers, Some(body)).await
}

/// `HEAD` on a kick-off path. axum answers HEAD with the GET handler, which
/// would register an export: a HEAD must change nothing, so it is refused.
pub async fn head(uri: Uri) -> Response {
    let mut response = ApiError::MethodNotAllowed(format!(
        "HEAD does not start an export at {}; use GET or POST",
        uri.path()
    ))
    .into_response();
    response
        .headers_mut()
        .insert(ALLOW, HeaderValue::from_static("GET,POST"));
    response
}

/// `/Group/{id}/$export`, as the level it asks for.
pub struct GroupPath(ExportLevel);

impl<S: Send + Sync> FromRequestParts<S> for GroupPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let [id] = segments(parts).await?;
        Ok(GroupPath(ExportLevel::Group {
            id: params::group_id(&id)?,
        }))
    }
}

async fn kickoff(
    State(state): State<AppState>,
    level: ExportLevel,
    uri: Uri,
    headers: HeaderMap,
    body: Option<Bytes>,
) -> Result<Response, ApiError> {
    let lenient = check_headers(&headers)?;
    let base = &state.base_url;
    // The manifest's `request`: the kick-off URL as sent; for a POST, as
    // the IG says, without the parameters (they are in the body).
    let (pairs, request_url) = match &body {
        None => {
            let target = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
            (query_pairs(&uri)?, format!("{base}{target}"))
        }
        Some(body) => {
            if uri.query().is_some_and(|q| !q.is_empty()) {
                return Err(ApiError::invalid(
                    "a POST kick-off takes its parameters in the Parameters body, not the URL",
                ));
            }
            (params::body_pairs(body)?, format!("{base}{}", uri.path()))
        }
    };
    let now = with_store(&state, |store| Ok(store.now()?)).await?;
    let plugins = state.plugins.current();
    let sinks: Vec<&str> = plugins.sinks.keys().map(String::as_str).collect();
    let kickoff = Kickoff {
        level,
        lenient,
        from_body: body.is_some(),
        base_url: base,
        request_url,
        now,
        referenced: state.exports.handler.include_referenced(),
        destination: state.exports.handler.destination_kind(),
        sinks: &sinks,
    };
    let mut request = params::parse(kickoff, pairs)?;
    if let ExportLevel::Group { id } = &request.level {
        // At the export's snapshot: a Group that did not exist then, or
        // was deleted, is 404; one the group resolver refuses is 400.
        let (id, at, store) = (id.clone(), request.transaction_time, state.store.clone());
        let plugins = plugins.clone();
        blocking::run(move || Ok(check_group(&id, &plugins, store, at)?)).await?;
    }
    request = blocking::run(move || compile_filters(&plugins, request)).await?;
    enqueue(&state.exports, &state.base_url, request).await
}

/// `Accept: application/fhir+json` and `Prefer: respond-async` are required
/// (400 otherwise, as the Bulk Data IG allows and Azure does). Returns
/// whether handling is lenient.
fn check_headers(headers: &HeaderMap) -> Result<bool, ApiError> {
    let accepts_fhir = headers
        .get_all(ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|range| media_essence(range) == "application/fhir+json");
    if !accepts_fhir {
        return Err(header_error(
            "Accept",
            "an $export kick-off needs Accept: application/fhir+json",
        ));
    }
    let prefer = AsyncPref::from_headers(headers);
    if !prefer.respond_async {
        return Err(header_error(
            "Prefer",
            "an $export kick-off needs Prefer: respond-async (it runs asynchronously)",
        ));
    }
    Ok(prefer.lenient)
}

fn header_error(header: &str, message: &str) -> ApiError {
    ApiError::Invalid {
        code: IssueType::Required,
        message: message.to_owned(),
        expression: Some(header.to_owned()),
    }
}

/// Compiles every `_typeFilter` with the current type-filter plugin, so that
/// one it refuses (an unsupported search parameter, say) is the client's 400
/// now, not a failed job later. Under lenient handling a refused filter is
/// dropped with a warning instead; never silently.
fn compile_filters(
    plugins: &PluginSet,
    mut request: ExportRequest,
) -> Result<ExportRequest, ApiError> {
    let mut kept = Vec::with_capacity(request.type_filters.len());
    for filter in std::mem::take(&mut request.type_filters) {
        let compiled =
            TypeFilter::compile(&plugins.type_filter, filter.rtype.as_str(), &filter.query)?;
        let Err(issues) = compiled else {
            kept.push(filter);
            continue;
        };
        let message = format!(
            "'{}?{}' is refused by the type-filter plugin {}",
            filter.rtype,
            filter.query,
            plugins.type_filter.name()
        );
        if !request.lenient {
            return Err(ApiError::Refused {
                parameter: "_typeFilter".into(),
                message: format!("_typeFilter: {message}"),
                issues,
            });
        }
        let reasons: Vec<String> = issues.into_iter().filter_map(|i| i.diagnostics).collect();
        request.warnings.push(Warning {
            parameter: "_typeFilter".into(),
            message: format!(
                "{message} ({}); the filter is dropped (Prefer: handling=lenient)",
                reasons.join("; ")
            ),
        });
    }
    request.type_filters = kept;
    Ok(request)
}

/// Registers the export, unless an identical one is queued or running (then
/// that job is the answer: a retried kick-off must not start a second
/// export), or `jobs.max_concurrent_exports` are (429). One kick-off at a
/// time runs this, so the check and the registration cannot interleave.
async fn enqueue(
    exports: &Exports,
    base: &str,
    request: ExportRequest,
) -> Result<Response, ApiError> {
    let serialised = serde_json::to_value(&request)
        .map_err(|e| ApiError::internal(format!("serialising an export request: {e}")))?;
    let (jobs, max) = (exports.jobs.clone(), exports.max_concurrent);
    let (job, new) = {
        let _one_at_a_time = exports.kickoff.lock().await;
        blocking::run(move || {
            if let Some(job) = identical(jobs.as_ref(), &request)? {
                return Ok((job, false));
            }
            if jobs.active(JobKind::Export)? >= max {
                return Err(ApiError::Throttled {
                    message: format!(
                        "{max} exports are already queued or running; try again later"
                    ),
                    retry_after: THROTTLED_RETRY_SECONDS,
                });
            }
            let new = NewJob {
                kind: JobKind::Export,
                request: serialised,
                owner: None,
                created: Instant::now(),
            };
            Ok(jobs.enqueue(new)?)
        })
        .await?
    };
    let url = status_url(base, &job.id);
    jobs::accepted("export", &job, new, &url, &exports.engine)
}

/// How long a throttled client is asked to wait: about the time a small
/// export takes.
const THROTTLED_RETRY_SECONDS: u64 = 30;

/// The queued or running export of the same request, if any (a job with a
/// cancel requested is on its way out and does not count).
fn identical(jobs: &dyn JobStore, request: &ExportRequest) -> Result<Option<JobRecord>, ApiError> {
    for job in jobs.list(Some(JobKind::Export))? {
        if job.state.is_final() || job.cancel_requested {
            continue;
        }
        let Ok(existing) = serde_json::from_value::<ExportRequest>(job.request.clone()) else {
            continue;
        };
        if existing.same_export(request) {
            return Ok(Some(job));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    fn named(result: Result<bool, ApiError>) -> Option<String> {
        match result {
            Err(ApiError::Invalid { expression, .. }) => expression,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn required_headers() {
        let fhir = ("accept", "application/fhir+json");
        let async_ = ("prefer", "respond-async");
        assert!(!check_headers(&headers(&[fhir, async_])).unwrap());
        let lenient = ("prefer", "respond-async, handling=lenient");
        assert!(check_headers(&headers(&[fhir, lenient])).unwrap());
        let listed = ("accept", "application/json, application/fhir+json;q=0.9");
        assert!(check_headers(&headers(&[listed, async_])).is_ok());
        assert_eq!(
            named(check_headers(&headers(&[async_]))).as_deref(),
            Some("Accept")
        );
        let json = ("accept", "application/json");
        assert_eq!(
            named(check_headers(&headers(&[json, async_]))).as_deref(),
            Some("Accept")
        );
        assert_eq!(
            named(check_headers(&headers(&[fhir]))).as_deref(),
            Some("Prefer")
        );
    }
}
