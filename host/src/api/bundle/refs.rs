//! Inside a transaction, entries refer to each other by `fullUrl`
//! (`urn:uuid:...`, as Synthea writes them). Once every created or updated
//! entry has its server id, those references are rewritten to `Type/id`.

use std::collections::HashMap;

use crate::fhir::ResourceType;
use crate::fhir::resource::for_each_reference_mut;
use crate::store::WriteOp;

use super::entry::{Action, Entry};
use crate::api::error::ApiError;

fn is_local(url: &str) -> bool {
    url.starts_with("urn:uuid:") || url.starts_with("urn:oid:")
}

/// Rewrites every reference to a local `fullUrl` in every written resource.
/// A local reference no entry defines cannot be resolved (400), and a
/// conditional reference (`Patient?identifier=...`) would need search (400).
pub fn resolve(entries: &mut [Entry]) -> Result<(), ApiError> {
    let targets = local_targets(entries)?;
    for (index, entry) in entries.iter_mut().enumerate() {
        let Some(resource) = entry.resource_mut() else {
            continue;
        };
        let mut failure = None;
        for value in resource.body.values_mut() {
            for_each_reference_mut(value, &mut |reference| {
                if failure.is_none() {
                    failure = rewrite(reference, &targets).err();
                }
            });
        }
        if let Some(error) = failure {
            return Err(error.in_entry(index));
        }
    }
    Ok(())
}

/// `fullUrl` → `Type/id` for each created or updated entry with a local fullUrl.
fn local_targets(entries: &[Entry]) -> Result<HashMap<String, String>, ApiError> {
    let mut targets = HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let (Some(url), Action::Write(op @ (WriteOp::Create { .. } | WriteOp::Update { .. }))) =
            (&entry.full_url, &entry.action)
        else {
            continue;
        };
        if !is_local(url) {
            continue;
        }
        let (rtype, id) = op.target();
        if targets
            .insert(url.clone(), format!("{rtype}/{id}"))
            .is_some()
        {
            return Err(
                ApiError::invalid(format!("fullUrl {url} is used by more than one entry"))
                    .in_entry(index),
            );
        }
    }
    Ok(targets)
}

fn rewrite(reference: &mut String, targets: &HashMap<String, String>) -> Result<(), ApiError> {
    if is_local(reference) {
        let target = targets.get(reference.as_str()).ok_or_else(|| {
            ApiError::invalid(format!(
                "reference {reference} does not resolve: no entry has this fullUrl"
            ))
        })?;
        *reference = target.clone();
    } else if let Some((rtype, _)) = reference.split_once('?')
        && ResourceType::parse(rtype).is_some()
    {
        return Err(ApiError::NotSupported(format!(
            "conditional reference {reference} is not supported yet (it needs search)"
        )));
    }
    Ok(())
}
