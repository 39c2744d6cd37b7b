//! From a request to work: the types, the patients (resolving the Group
//! through its plugin), the compiled `_typeFilter`s, `_elements`, the units
//! to run, and the warnings for the error file.
//!
//! Planning is repeated by every attempt (a resumed one too) and is
//! deterministic for a given snapshot and plugin set, so nothing of it is
//! checkpointed but the number of patient partitions.

use std::collections::BTreeSet;
use std::sync::Arc;

use crate::fhir::compartment::can_be_in_compartment;
use crate::fhir::outcome::IssueSeverity;
use crate::fhir::{IssueType, OperationOutcome, ResourceId, ResourceType};
use crate::plugins::{GroupMembers, PluginSet};

use super::elements::Elements;
use super::error::ExportError;
use super::filter::Filters;
use super::patients::Patients;
use super::request::{ExportLevel, ExportRequest};
use super::select::Window;
use super::snapshot::Snapshot;

/// Patient ids asked of the group resolver per call.
const MEMBERS_PAGE: u32 = 1000;

/// What one unit scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// System level: every resource of one type.
    Type(ResourceType),
    /// Patient/Group level: the compartments of one partition of the patients.
    Patients,
}

#[derive(Clone, Debug)]
pub struct Unit {
    /// Its key in the checkpoint.
    pub name: String,
    /// `n` in its file names (1-based), of `parts` units writing a type.
    pub part: u32,
    pub parts: u32,
    pub work: Work,
}

pub struct Plan {
    pub types: BTreeSet<ResourceType>,
    /// `Some` at Patient/Group level.
    pub patients: Option<Patients>,
    pub filters: Filters,
    pub elements: Elements,
    pub window: Window,
    /// For the error file, in this order.
    pub warnings: Vec<OperationOutcome>,
    pub units: Vec<Unit>,
}

impl Plan {
    /// `partitions`: the patient partition count of an earlier attempt.
    pub fn build(
        request: &ExportRequest,
        plugins: &PluginSet,
        snapshot: &Arc<Snapshot>,
        parallelism: usize,
        partitions: Option<u32>,
    ) -> Result<Plan, ExportError> {
        let mut warnings: Vec<OperationOutcome> = request
            .warnings
            .iter()
            .map(|w| {
                warning(
                    IssueType::NotSupported,
                    format!("{} was ignored: {}", w.parameter, w.message),
                )
            })
            .collect();
        let compartment = request.level != ExportLevel::System;
        let types = types(request, compartment, &mut warnings);
        let patients = match &request.level {
            ExportLevel::System => None,
            ExportLevel::Patient => Some(listed(request, snapshot, &mut warnings)?),
            ExportLevel::Group { id } => {
                Some(group(id, request, plugins, snapshot, &mut warnings)?)
            }
        };
        let (filters, dropped) = Filters::compile(
            &plugins.type_filter,
            &request.type_filters,
            &types,
            request.lenient,
        )?;
        warnings.extend(dropped);
        let units = match &patients {
            None => types
                .iter()
                .map(|t| Unit {
                    name: t.as_str().to_owned(),
                    part: 1,
                    parts: 1,
                    work: Work::Type(*t),
                })
                .collect(),
            Some(patients) => {
                let parts = partitions.unwrap_or_else(|| patients.partitions(parallelism));
                (1..=parts)
                    .map(|part| Unit {
                        name: format!("part-{part}"),
                        part,
                        parts,
                        work: Work::Patients,
                    })
                    .collect()
            }
        };
        Ok(Plan {
            elements: Elements::new(&request.elements, types.iter().copied()),
            window: Window::of(request),
            types,
            patients,
            filters,
            warnings,
            units,
        })
    }
}

fn warning(code: IssueType, diagnostics: String) -> OperationOutcome {
    OperationOutcome::single(IssueSeverity::Warning, code, diagnostics)
}

/// `_type`, or every type the level allows. The edge refuses types a level
/// cannot export unless lenient; any left are dropped with a warning.
fn types(
    request: &ExportRequest,
    compartment: bool,
    warnings: &mut Vec<OperationOutcome>,
) -> BTreeSet<ResourceType> {
    let allowed = |t: ResourceType| t.is_storable() && (!compartment || can_be_in_compartment(t));
    if request.types.is_empty() {
        return ResourceType::all().filter(|t| allowed(*t)).collect();
    }
    let mut types = BTreeSet::new();
    for t in &request.types {
        if allowed(*t) {
            types.insert(*t);
        } else {
            warnings.push(warning(
                IssueType::NotSupported,
                format!("_type {t} was ignored: this export level cannot contain {t} resources"),
            ));
        }
    }
    types
}

/// Patient level: every patient, or the `patient` parameter's that exist
/// at the snapshot.
fn listed(
    request: &ExportRequest,
    snapshot: &Snapshot,
    warnings: &mut Vec<OperationOutcome>,
) -> Result<Patients, ExportError> {
    let Some(patient) = ResourceType::parse("Patient") else {
        return Err(ExportError::Corrupt {
            what: "resource type list",
            message: "it has no Patient".into(),
        });
    };
    if request.patients.is_empty() {
        return Ok(Patients::All(patient));
    }
    let mut ids = Vec::new();
    let mut outside = Vec::new();
    for id in sorted(request.patients.iter().cloned()) {
        if snapshot.live(patient, &id)?.is_some() {
            ids.push(id);
        } else {
            outside.push(format!(
                "Patient/{id} does not exist at the export's transaction time"
            ));
        }
    }
    refuse_or_warn(request, outside, warnings)?;
    Ok(Patients::Listed(ids))
}

/// Group level: the members the group-resolver plugin hands out, narrowed
/// to the `patient` parameter's when given.
fn group(
    id: &ResourceId,
    request: &ExportRequest,
    plugins: &PluginSet,
    snapshot: &Arc<Snapshot>,
    warnings: &mut Vec<OperationOutcome>,
) -> Result<Patients, ExportError> {
    let group_type = ResourceType::parse("Group").ok_or_else(|| ExportError::Corrupt {
        what: "resource type list",
        message: "it has no Group".into(),
    })?;
    let Some(group) = snapshot.live(group_type, id)? else {
        return Err(ExportError::GroupNotFound(id.clone()));
    };
    let reader = snapshot.clone();
    let mut members =
        match GroupMembers::resolve(&plugins.group_resolver, &group.body, snapshot.at(), reader)? {
            Ok(members) => members,
            Err(issues) => {
                return Err(ExportError::GroupRefused {
                    id: id.clone(),
                    issues,
                });
            }
        };
    let mut ids = Vec::new();
    loop {
        let page = members.next_page(MEMBERS_PAGE)?;
        if page.is_empty() {
            break;
        }
        // The plugin checks every id's syntax.
        ids.extend(page.iter().filter_map(|m| ResourceId::parse(m)));
    }
    let members = sorted(ids);
    if request.patients.is_empty() {
        return Ok(Patients::Listed(members));
    }
    let mut ids = Vec::new();
    let mut outside = Vec::new();
    for patient in sorted(request.patients.iter().cloned()) {
        if members.binary_search(&patient).is_ok() {
            ids.push(patient);
        } else {
            outside.push(format!(
                "Patient/{patient} is not a member of Group/{id} at the export's transaction time"
            ));
        }
    }
    refuse_or_warn(request, outside, warnings)?;
    Ok(Patients::Listed(ids))
}

/// A `patient` outside the population is an error (the IG's SHOULD), or
/// under lenient handling a warning, the patient left out.
fn refuse_or_warn(
    request: &ExportRequest,
    outside: Vec<String>,
    warnings: &mut Vec<OperationOutcome>,
) -> Result<(), ExportError> {
    if outside.is_empty() {
        return Ok(());
    }
    if !request.lenient {
        return Err(ExportError::PatientsOutOfScope(outside));
    }
    for reason in outside {
        warnings.push(warning(
            IssueType::NotFound,
            format!("patient {reason}: ignored"),
        ));
    }
    Ok(())
}

fn sorted(ids: impl IntoIterator<Item = ResourceId>) -> Vec<ResourceId> {
    let mut ids: Vec<ResourceId> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
