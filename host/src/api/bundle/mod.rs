//! `POST /`: batch and transaction Bundles. Entries are parsed into the same
//! typed interactions as single requests ([`entry`]) and answered with a
//! `batch-response` or `transaction-response` in the original entry order.

mod batch;
mod entry;
mod refs;
mod transaction;
pub mod wire;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::Value;

use crate::fhir::OperationOutcome;
use crate::fhir::resource::Resource;
use crate::store::{Store, StoredVersion, WriteKind, WriteResult};

use super::AppState;
use super::blocking::with_store;
use super::body::JsonBody;
use super::error::ApiError;
use super::headers::{ReturnPref, location};
use super::response::{fhir_json, status_line, summary, write_status};

/// `POST /`. `Prefer: return=...` applies to every write entry.
pub async fn handle(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let prefer = ReturnPref::from_headers(&headers);
    let base = state.base_url.clone();
    // Parsing a Bundle of many megabytes is CPU work: off the async threads.
    let answer = with_store(&state, move |store| process(store, &base, prefer, &body)).await?;
    Ok(fhir_json(StatusCode::OK, answer))
}

fn process(
    store: &dyn Store,
    base: &str,
    prefer: ReturnPref,
    body: &[u8],
) -> Result<Vec<u8>, ApiError> {
    let mut bundle = Resource::from_slice(body)?;
    if bundle.rtype.as_str() != "Bundle" {
        return Err(ApiError::invalid(format!(
            "POST / takes a batch or transaction Bundle, not a {}",
            bundle.rtype
        )));
    }
    let entries = match bundle.body.remove("entry") {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(ApiError::invalid("Bundle.entry must be an array")),
    };
    match bundle.body.get("type").and_then(Value::as_str) {
        Some("transaction") => transaction::run(store, base, prefer, entries),
        Some("batch") => batch::run(store, base, prefer, entries),
        other => Err(ApiError::invalid(format!(
            "Bundle.type must be batch or transaction, not {}",
            other.unwrap_or("missing")
        ))),
    }
}

/// What became of one entry, kept until the response Bundle is written.
enum Outcome {
    Written(WriteResult),
    Read(StoredVersion),
    Failed(ApiError),
}

fn respond(
    kind: &'static str,
    base: &str,
    prefer: ReturnPref,
    outcomes: &[Outcome],
) -> Result<Vec<u8>, ApiError> {
    let entries = outcomes
        .iter()
        .map(|outcome| match outcome {
            Outcome::Written(result) => written_entry(base, prefer, result),
            Outcome::Read(version) => read_entry(base, version),
            Outcome::Failed(error) => Ok(wire::Entry {
                response: Some(wire::Response::of_error(error)),
                ..wire::Entry::default()
            }),
        })
        .collect::<Result<_, _>>()?;
    wire::Bundle::new(kind, Vec::new(), entries).to_vec()
}

/// Reads always carry the resource, whatever `Prefer` says.
fn read_entry<'a>(base: &str, version: &'a StoredVersion) -> Result<wire::Entry<'a>, ApiError> {
    Ok(wire::Entry {
        full_url: Some(wire::full_url(base, version)),
        resource: Some(wire::raw(version)?),
        response: Some(wire::Response::of_version(StatusCode::OK, version)),
        ..wire::Entry::default()
    })
}

/// The same facts a single create/update/delete puts in its headers:
/// `location` for creates, `etag` and `lastModified`, and the resource or an
/// OperationOutcome as `Prefer` asks.
fn written_entry<'a>(
    base: &str,
    prefer: ReturnPref,
    result: &'a WriteResult,
) -> Result<wire::Entry<'a>, ApiError> {
    let status = write_status(result.kind);
    let Some(version) = result.version.as_ref().filter(|v| !v.meta.deleted) else {
        let response = wire::Response {
            status: status_line(status),
            ..wire::Response::default()
        };
        return Ok(wire::Entry {
            response: Some(response),
            ..wire::Entry::default()
        });
    };
    let mut response = wire::Response::of_version(status, version);
    if result.kind == WriteKind::Created {
        response.location = Some(location(base, version));
    }
    let resource = match prefer {
        ReturnPref::Representation => Some(wire::raw(version)?),
        ReturnPref::Minimal => None,
        ReturnPref::OperationOutcome => {
            response.outcome = Some(OperationOutcome::information(summary(result.kind, version)));
            None
        }
    };
    Ok(wire::Entry {
        full_url: Some(wire::full_url(base, version)),
        resource,
        response: Some(response),
        ..wire::Entry::default()
    })
}
