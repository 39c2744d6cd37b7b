//! create, read, vread, update, delete of single resources.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use crate::fhir::resource::Resource;
use crate::store::WriteOp;

use super::AppState;
use super::blocking::with_store;
use super::body::JsonBody;
use super::error::ApiError;
use super::headers::{ReturnPref, if_match};
use super::ops;
use super::params::{InstancePath, TypePath, VersionPath};
use super::response;

/// `POST /{type}`
pub async fn create(
    State(state): State<AppState>,
    TypePath(rtype): TypePath,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let prefer = ReturnPref::from_headers(&headers);
    // Parsing a large body is CPU work: it runs off the async threads too.
    let result = with_store(&state, move |store| {
        let op = ops::create(rtype, Resource::from_slice(&body)?)?;
        ops::commit_one(store, op)
    })
    .await?;
    response::written(&state.base_url, result, prefer)
}

/// `PUT /{type}/{id}`: update, or create when the id is new or deleted
/// (201 then). `If-Match` on a resource that does not exist or is deleted
/// is a 409: there is no current version it could match.
pub async fn update(
    State(state): State<AppState>,
    InstancePath(rtype, id): InstancePath,
    headers: HeaderMap,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let prefer = ReturnPref::from_headers(&headers);
    let precondition = if_match(&headers)?;
    let result = with_store(&state, move |store| {
        let op = ops::update(rtype, id, Resource::from_slice(&body)?, precondition)?;
        ops::commit_one(store, op)
    })
    .await?;
    response::written(&state.base_url, result, prefer)
}

/// `DELETE /{type}/{id}`: 204, also when there was nothing to delete (no new
/// version is written then). `If-Match` works as for updates (412/409).
pub async fn delete(
    State(state): State<AppState>,
    InstancePath(rtype, id): InstancePath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let precondition = if_match(&headers)?;
    let op = WriteOp::Delete {
        rtype,
        id,
        precondition,
    };
    let result = with_store(&state, move |store| ops::commit_one(store, op)).await?;
    response::written(&state.base_url, result, ReturnPref::Minimal)
}

/// `GET /{type}/{id}`
pub async fn read(
    State(state): State<AppState>,
    InstancePath(rtype, id): InstancePath,
) -> Result<Response, ApiError> {
    let version = with_store(&state, move |store| ops::read(store, rtype, &id, None)).await?;
    response::read(version)
}

/// `GET /{type}/{id}/_history/{vid}`
pub async fn vread(
    State(state): State<AppState>,
    VersionPath(rtype, id, vid): VersionPath,
) -> Result<Response, ApiError> {
    let version = with_store(&state, move |store| ops::read(store, rtype, &id, Some(vid))).await?;
    response::read(version)
}
