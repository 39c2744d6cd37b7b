//! Building successful responses: the FHIR content type, and the headers and
//! body of a resource version.

use axum::body::Body;
use axum::http::header::{CONTENT_LOCATION, CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::fhir::OperationOutcome;
use crate::store::{StoredVersion, WriteKind, WriteResult};

use super::error::ApiError;
use super::headers::{ReturnPref, etag, location};

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// A response whose body is FHIR JSON.
pub fn fhir_json(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [(CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON))],
        body.into(),
    )
        .into_response()
}

/// 200 with a resource built for this answer (not a stored version).
pub fn resource(resource: &serde_json::Value) -> Response {
    // Serialising a JSON value cannot fail.
    fhir_json(
        StatusCode::OK,
        serde_json::to_vec(resource).unwrap_or_default(),
    )
}

/// An OperationOutcome as the whole answer.
pub fn outcome_response(status: StatusCode, outcome: &OperationOutcome) -> Response {
    // Serialising this plain struct cannot fail.
    fhir_json(status, serde_json::to_vec(outcome).unwrap_or_default())
}

/// 202 Accepted for asynchronous work, with an informational
/// OperationOutcome and, for a new or found job, its status URL in
/// `Content-Location`.
pub fn accepted(message: String, status_url: Option<&str>) -> Result<Response, ApiError> {
    let mut response = outcome_response(
        StatusCode::ACCEPTED,
        &OperationOutcome::information(message),
    );
    if let Some(url) = status_url {
        insert(response.headers_mut(), CONTENT_LOCATION, url)?;
    }
    Ok(response)
}

/// 200 with the version's body, `ETag` and `Last-Modified`.
pub fn read(version: StoredVersion) -> Result<Response, ApiError> {
    let mut response = fhir_json(StatusCode::OK, version.body.clone());
    insert(response.headers_mut(), ETAG, &etag(version.meta.version))?;
    insert(
        response.headers_mut(),
        LAST_MODIFIED,
        &version.meta.last_updated.to_http_date(),
    )?;
    Ok(response)
}

/// The answer to a create, update or delete. Creates (201) carry `Location`;
/// creates and updates carry `ETag` and `Last-Modified` and a body chosen by
/// `Prefer`; deletes are a bare 204.
pub fn written(base: &str, result: WriteResult, prefer: ReturnPref) -> Result<Response, ApiError> {
    let status = write_status(result.kind);
    let version = match result.version {
        Some(v) if !v.meta.deleted => v,
        _ => return Ok(status.into_response()),
    };
    let mut response = match prefer {
        ReturnPref::Representation => fhir_json(status, version.body.clone()),
        ReturnPref::Minimal => status.into_response(),
        ReturnPref::OperationOutcome => outcome_response(
            status,
            &OperationOutcome::information(summary(result.kind, &version)),
        ),
    };
    let headers = response.headers_mut();
    if result.kind == WriteKind::Created {
        insert(headers, LOCATION, &location(base, &version))?;
    }
    insert(headers, ETAG, &etag(version.meta.version))?;
    insert(
        headers,
        LAST_MODIFIED,
        &version.meta.last_updated.to_http_date(),
    )?;
    Ok(response)
}

pub fn write_status(kind: WriteKind) -> StatusCode {
    match kind {
        WriteKind::Created => StatusCode::CREATED,
        WriteKind::Updated => StatusCode::OK,
        WriteKind::Deleted | WriteKind::Unchanged => StatusCode::NO_CONTENT,
    }
}

/// The text of a `Prefer: return=OperationOutcome` answer.
pub fn summary(kind: WriteKind, version: &StoredVersion) -> String {
    let verb = match kind {
        WriteKind::Created => "created",
        WriteKind::Updated => "updated",
        WriteKind::Deleted | WriteKind::Unchanged => "deleted",
    };
    format!(
        "{}/{} {verb}: version {}",
        version.rtype, version.id, version.meta.version
    )
}

/// `"201 Created"`, as `Bundle.entry.response.status` spells it.
pub fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// Header values are built from ids, digits and the configured base URL; a
/// base URL that is not a valid header value is a configuration error.
pub fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) -> Result<(), ApiError> {
    let value = HeaderValue::try_from(value)
        .map_err(|e| ApiError::internal(format!("bad {name} header '{value}': {e}")))?;
    headers.insert(name, value);
    Ok(())
}
