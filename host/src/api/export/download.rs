//! `GET /_operations/export/{id}/files/{name}`: one file of a completed
//! export, as `application/fhir+ndjson`, with `Range` and conditional
//! requests (`tower_http`'s `ServeFile`) and gzip for clients that accept it.
//!
//! Only names the job's result lists are served: `name` is looked up there,
//! never joined to a path. A file is served until its export expires.

use std::path::PathBuf;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::header::{CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use tower::ServiceExt;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{And, DefaultPredicate, Predicate};
use tower_http::services::ServeFile;

use crate::api::AppState;
use crate::api::blocking;
use crate::api::error::ApiError;
use crate::api::params::segments;
use crate::api::response;
use crate::destinations::Download;
use crate::fhir::Instant;
use crate::jobs::{JobId, JobState};

use super::retention::{self, Expiry};
use super::status::{find, parse_job_id};

const FHIR_NDJSON: HeaderValue = HeaderValue::from_static("application/fhir+ndjson");
const GZIP: HeaderValue = HeaderValue::from_static("application/gzip");

/// `/_operations/export/{id}/files/{name}`
pub struct FilePath(JobId, String);

impl<S: Send + Sync> FromRequestParts<S> for FilePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let [id, name] = segments(parts).await?;
        Ok(FilePath(parse_job_id(&id)?, name))
    }
}

pub async fn file(
    State(state): State<AppState>,
    FilePath(id, name): FilePath,
    request: Request,
) -> Result<Response, ApiError> {
    let exports = state.exports.clone();
    let job = find(&exports, id).await?;
    let missing = || ApiError::NotFound(format!("export {} has no file {name}", job.id));
    match retention::expiry(&job, exports.retention, Instant::now()) {
        Expiry::At(_) if job.state == JobState::Completed => {}
        Expiry::Gone(why) => return Err(ApiError::NotFound(format!("export {} {why}", job.id))),
        _ => return Err(missing()),
    }
    let (handler, lookup, wanted) = (exports.handler.clone(), job.clone(), name.clone());
    let download = blocking::run(move || Ok(handler.download(&lookup, &wanted)?)).await?;
    match download.ok_or_else(missing)? {
        Download::File(path) => ndjson_file(path, request).await,
        // A destination that serves its files itself (a signed Blob URL).
        Download::Url(url) => {
            let mut response = StatusCode::TEMPORARY_REDIRECT.into_response();
            response::insert(response.headers_mut(), LOCATION, &url)?;
            Ok(response)
        }
    }
}

/// A local NDJSON file (an export's output, an import's error file).
pub(in crate::api) async fn ndjson_file(
    path: PathBuf,
    request: Request,
) -> Result<Response, ApiError> {
    // An export sink configured with `extension = "ndjson.gz"` compresses.
    let content_type = if path.extension().is_some_and(|e| e == "gz") {
        GZIP
    } else {
        FHIR_NDJSON
    };
    let served = ServeFile::new(path)
        .oneshot(request)
        .await
        .map_err(|e| ApiError::internal(format!("serving a file: {e}")))?;
    let mut response = served.map(Body::new).into_response();
    // `ServeFile` guesses from the extension; these are FHIR NDJSON.
    if response.status().is_success() {
        response.headers_mut().insert(CONTENT_TYPE, content_type);
    }
    Ok(response)
}

type Compressible = And<
    DefaultPredicate,
    for<'a, 'b> fn(StatusCode, Version, &'a HeaderMap, &'b Extensions) -> bool,
>;

/// gzip for clients that send `Accept-Encoding: gzip`, except partial
/// answers: a `Range` is a range of the file's bytes as stored, so a 206
/// (or 416) is always sent as is.
pub fn compression() -> CompressionLayer<Compressible> {
    let whole: for<'a, 'b> fn(StatusCode, Version, &'a HeaderMap, &'b Extensions) -> bool =
        whole_file;
    CompressionLayer::new()
        .gzip(true)
        .compress_when(DefaultPredicate::new().and(whole))
}

fn whole_file(status: StatusCode, _: Version, _: &HeaderMap, _: &Extensions) -> bool {
    status == StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_files_are_compressed() {
        let ok = |status| {
            whole_file(
                status,
                Version::HTTP_11,
                &HeaderMap::new(),
                &Extensions::new(),
            )
        };
        assert!(ok(StatusCode::OK));
        assert!(!ok(StatusCode::PARTIAL_CONTENT));
        assert!(!ok(StatusCode::RANGE_NOT_SATISFIABLE));
        assert!(!ok(StatusCode::NOT_MODIFIED));
    }
}
