//! The FHIR rules of single-resource interactions, shared by the REST
//! handlers and by batch/transaction entries: what a body must be for a
//! create or an update, what reading a tombstone means, and how commits
//! report a rejected write.

use crate::fhir::resource::Resource;
use crate::fhir::{IssueType, ResourceId, ResourceType};
use crate::store::{
    CommitMode, Precondition, Store, StoreError, StoredVersion, WriteOp, WriteResult,
};

use super::error::ApiError;

/// A create of `resource` at `url_type` under a fresh server-assigned id;
/// any `id` in the body is ignored, as FHIR says.
pub fn create(url_type: ResourceType, resource: Resource) -> Result<WriteOp, ApiError> {
    check_type(url_type, &resource)?;
    Ok(WriteOp::Create {
        id: ResourceId::generate(),
        resource,
    })
}

/// An update of `url_type/id`; the body must carry that same id.
pub fn update(
    url_type: ResourceType,
    id: ResourceId,
    resource: Resource,
    precondition: Precondition,
) -> Result<WriteOp, ApiError> {
    check_type(url_type, &resource)?;
    match &resource.id {
        Some(body_id) if *body_id == id => Ok(WriteOp::Update {
            id,
            resource,
            precondition,
        }),
        Some(body_id) => Err(invalid_id(
            format!("the body's id '{body_id}' differs from the URL's '{id}'"),
            url_type,
        )),
        None => Err(invalid_id(
            format!("the body has no id; an update must carry the URL's id '{id}'"),
            url_type,
        )),
    }
}

fn check_type(url_type: ResourceType, resource: &Resource) -> Result<(), ApiError> {
    if resource.rtype == url_type {
        return Ok(());
    }
    Err(ApiError::Invalid {
        code: IssueType::Invalid,
        message: format!(
            "the body is a {} but the URL is for {url_type}",
            resource.rtype
        ),
        expression: Some("resourceType".into()),
    })
}

fn invalid_id(message: String, rtype: ResourceType) -> ApiError {
    ApiError::Invalid {
        code: IssueType::Invalid,
        message,
        expression: Some(format!("{rtype}.id")),
    }
}

/// The current version (`version: None`) or one version of a resource.
/// Never written or no such version: 404. A tombstone: 410.
pub fn read(
    store: &dyn Store,
    rtype: ResourceType,
    id: &ResourceId,
    version: Option<u64>,
) -> Result<StoredVersion, ApiError> {
    let found = match version {
        None => store.read(rtype, id)?,
        Some(v) => store.vread(rtype, id, v)?,
    };
    let name = match version {
        None => format!("{rtype}/{id}"),
        Some(v) => format!("{rtype}/{id}/_history/{v}"),
    };
    match found {
        None => Err(ApiError::NotFound(format!("{name} is not known"))),
        Some(v) if v.meta.deleted => Err(ApiError::Gone(format!("{name} is deleted"))),
        Some(v) => Ok(v),
    }
}

/// Commits `ops` all-or-nothing. The error of a rejected op is
/// [`ApiError::InEntry`] with the op's index.
pub fn commit(store: &dyn Store, ops: Vec<WriteOp>) -> Result<Vec<WriteResult>, ApiError> {
    let results = store
        .commit(ops, CommitMode::AllOrNothing)
        .map_err(|e| match e {
            StoreError::Rejected { index, error } => ApiError::from(error).in_entry(index),
            other => other.into(),
        })?;
    results
        .into_iter()
        .enumerate()
        .map(|(index, result)| result.map_err(|e| ApiError::from(e).in_entry(index)))
        .collect()
}

/// Commits one write on its own.
pub fn commit_one(store: &dyn Store, op: WriteOp) -> Result<WriteResult, ApiError> {
    match commit(store, vec![op]) {
        Ok(mut results) => results.pop().ok_or_else(|| {
            ApiError::internal("the store answered a commit of one op with no result")
        }),
        Err(ApiError::InEntry { source, .. }) => Err(*source),
        Err(e) => Err(e),
    }
}
