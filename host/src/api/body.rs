//! Reading request bodies: declared as JSON (415 otherwise) and within
//! `limits.max_body_bytes` (413 otherwise), checked before anything parses.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_LENGTH, CONTENT_TYPE};

use super::AppState;
use super::error::ApiError;
use super::format::{is_json, media_essence};

/// The raw bytes of a non-empty JSON request body.
pub struct JsonBody(pub Bytes);

impl FromRequest<AppState> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let limit = state.limits.max_body_bytes;
        check_declared_length(req.headers(), limit)?;
        let typed = check_content_type(req.headers())?;
        // The limit is enforced here, whatever axum's default body limit is.
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| read_error(e, limit))?;
        if bytes.is_empty() {
            return Err(ApiError::invalid(
                "the request has no body; a FHIR resource is expected",
            ));
        }
        if !typed {
            return Err(ApiError::UnsupportedMediaType(
                "the request body has no Content-Type; send application/fhir+json".into(),
            ));
        }
        Ok(JsonBody(bytes))
    }
}

/// Refuses a body announced too large before reading any of it.
fn check_declared_length(headers: &HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(ApiError::TooLarge(limit)),
        _ => Ok(()),
    }
}

/// Whether a Content-Type was given; an unacceptable one is an error at once.
fn check_content_type(headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(false);
    };
    let value = value.to_str().unwrap_or_default();
    if !is_json(&media_essence(value)) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type '{value}' is not supported; send application/fhir+json"
        )));
    }
    Ok(true)
}

/// A body that grows past the limit while streaming is a 413; any other
/// failure means the client's stream broke.
fn read_error(e: axum::Error, limit: usize) -> ApiError {
    let e = e.into_inner();
    if e.is::<http_body_util::LengthLimitError>() {
        ApiError::TooLarge(limit)
    } else {
        ApiError::invalid(format!("the request body could not be read: {e}"))
    }
}
