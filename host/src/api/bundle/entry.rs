//! One batch/transaction entry, checked and turned into a typed
//! interaction: `request.method` and `request.url` name it, `resource` and
//! `request.ifMatch` complete it.

use serde::Deserialize;
use serde_json::Value;

use crate::fhir::resource::Resource;
use crate::fhir::{ResourceId, ResourceType};
use crate::store::{Precondition, Store, WriteOp};

use super::Outcome;
use crate::api::error::ApiError;
use crate::api::headers::parse_etag;
use crate::api::ops;
use crate::api::params::{parse_id, parse_type, parse_version};

pub struct Entry {
    pub full_url: Option<String>,
    pub action: Action,
}

pub enum Action {
    Write(WriteOp),
    Read(Read),
}

/// A `GET Type/id` or `GET Type/id/_history/vid` entry.
pub struct Read {
    rtype: ResourceType,
    id: ResourceId,
    version: Option<u64>,
}

impl Read {
    /// A missing or deleted resource is that entry's failure, not the bundle's.
    pub fn run(&self, store: &dyn Store) -> Outcome {
        match ops::read(store, self.rtype, &self.id, self.version) {
            Ok(version) => Outcome::Read(version),
            Err(e) => Outcome::Failed(e),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Request {
    method: String,
    url: String,
    if_match: Option<String>,
    if_none_exist: Option<String>,
}

impl Entry {
    /// `base` is stripped from absolute request URLs that start with it.
    pub fn parse(value: Value, base: &str) -> Result<Entry, ApiError> {
        let Value::Object(mut entry) = value else {
            return Err(ApiError::invalid("the entry is not a JSON object"));
        };
        let full_url = match entry.remove("fullUrl") {
            None => None,
            Some(Value::String(url)) => Some(url),
            Some(_) => return Err(ApiError::invalid("fullUrl is not a string")),
        };
        let request: Request = match entry.remove("request") {
            Some(request) => serde_json::from_value(request)
                .map_err(|e| ApiError::invalid(format!("request: {e}")))?,
            None => return Err(ApiError::invalid("the entry has no request")),
        };
        let resource = entry
            .remove("resource")
            .map(Resource::from_value)
            .transpose()?;
        Ok(Entry {
            full_url,
            action: action(request, resource, base)?,
        })
    }

    /// The resource a create or update entry writes.
    pub fn resource_mut(&mut self) -> Option<&mut Resource> {
        match &mut self.action {
            Action::Write(WriteOp::Create { resource, .. } | WriteOp::Update { resource, .. }) => {
                Some(resource)
            }
            _ => None,
        }
    }
}

fn action(request: Request, resource: Option<Resource>, base: &str) -> Result<Action, ApiError> {
    let method = request.method.as_str();
    if request.if_none_exist.is_some() {
        return Err(ApiError::NotSupported(
            "conditional create (ifNoneExist) is not supported yet (it needs search)".into(),
        ));
    }
    let url = request
        .url
        .strip_prefix(base)
        .filter(|rest| rest.starts_with('/'))
        .unwrap_or(&request.url)
        .trim_start_matches('/');
    if url.contains('?') {
        return Err(ApiError::NotSupported(match method {
            "PUT" => "conditional update is not supported yet (it needs search)".into(),
            "DELETE" => "conditional delete is not supported yet (it needs search)".into(),
            "GET" => "search is not supported yet".into(),
            _ => format!("{method} {url}: a query is not supported here"),
        }));
    }
    let precondition = || match &request.if_match {
        Some(etag) => parse_etag(etag).map(Precondition::IfMatch),
        None => Ok(Precondition::None),
    };
    let resource =
        || resource.ok_or_else(|| ApiError::invalid(format!("a {method} entry needs a resource")));
    let segments: Vec<&str> = url.split('/').collect();
    Ok(match (method, segments.as_slice()) {
        ("GET", [rtype, id]) => Action::Read(Read {
            rtype: parse_type(rtype)?,
            id: parse_id(id)?,
            version: None,
        }),
        ("GET", [rtype, id, "_history", vid]) => Action::Read(Read {
            rtype: parse_type(rtype)?,
            id: parse_id(id)?,
            version: Some(parse_version(vid)?),
        }),
        ("POST", [rtype]) => Action::Write(ops::create(parse_type(rtype)?, resource()?)?),
        ("PUT", [rtype, id]) => Action::Write(ops::update(
            parse_type(rtype)?,
            parse_id(id)?,
            resource()?,
            precondition()?,
        )?),
        ("DELETE", [rtype, id]) => Action::Write(WriteOp::Delete {
            rtype: parse_type(rtype)?,
            id: parse_id(id)?,
            precondition: precondition()?,
        }),
        _ => {
            return Err(ApiError::NotSupported(format!(
                "{method} {url} is not supported in a bundle: use GET, POST, PUT or DELETE on \
                 Type, Type/id or Type/id/_history/vid"
            )));
        }
    })
}
