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
use crate::plugins::PluginSet;

use super::elements::Elements;
use super::error::ExportError;
use super::filter::Filters;
use super::groups;
use super::patients::Patients;
use super::request::{ExportLevel, ExportRequest};
use super::select::Window;
use super::snapshot::Snapshot;

/// What one unit scans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// System level: every resource of one type.
    Type(ResourceType),
    /// Patient/Group level: the compartments of one partition of the patients.
    Patients,
    /// Patient/Group level, after every `Patients` unit: the resources of
    /// the `referenced` types that exported resources reference.
    Referenced,
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

/// The name of the unit of referenced resources in the checkpoint.
pub const REFERENCED_UNIT: &str = "referenced";

pub struct Plan {
    /// What the scans export: every type at system level, compartment
    /// types at Patient/Group level.
    pub types: BTreeSet<ResourceType>,
    /// Types outside the compartments added for being referenced (empty at
    /// system level).
    pub referenced: BTreeSet<ResourceType>,
    /// `Some` at Patient/Group level.
    pub patients: Option<Patients>,
    /// With `_since` at Group level: the members added to the Group since,
    /// sorted. Their compartments are exported whole.
    pub added: Vec<ResourceId>,
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
        let (patients, added) = match &request.level {
            ExportLevel::System => (None, Vec::new()),
            ExportLevel::Patient => (Some(listed(request, snapshot, &mut warnings)?), Vec::new()),
            ExportLevel::Group { id } => {
                let (patients, added) = group(id, request, plugins, snapshot, &mut warnings)?;
                (Some(patients), added)
            }
        };
        let referenced: BTreeSet<ResourceType> = match patients {
            Some(_) => request.referenced.iter().copied().collect(),
            None => BTreeSet::new(),
        };
        let written: BTreeSet<ResourceType> = types.union(&referenced).copied().collect();
        let (filters, dropped) = Filters::compile(
            &plugins.type_filter,
            &request.type_filters,
            &written,
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
                let mut units: Vec<Unit> = (1..=parts)
                    .map(|part| Unit {
                        name: format!("part-{part}"),
                        part,
                        parts,
                        work: Work::Patients,
                    })
                    .collect();
                // Its types are written by no other unit: part 1 of 1.
                if !referenced.is_empty() {
                    units.push(Unit {
                        name: REFERENCED_UNIT.into(),
                        part: 1,
                        parts: 1,
                        work: Work::Referenced,
                    });
                }
                units
            }
        };
        Ok(Plan {
            elements: Elements::new(&request.elements, written.iter().copied()),
            window: Window::of(request),
            types,
            referenced,
            patients,
            added,
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
/// cannot export unless lenient; any left are dropped with a warning (but
/// the referenced types, which the `Referenced` unit writes).
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
        } else if !request.referenced.contains(t) {
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

/// Group level: the members the group-resolver plugin hands out (what it
/// reported about members it left out goes to the error file), narrowed to
/// the `patient` parameter's when given; and with `_since`, those of them
/// added to the Group since then.
fn group(
    id: &ResourceId,
    request: &ExportRequest,
    plugins: &PluginSet,
    snapshot: &Arc<Snapshot>,
    warnings: &mut Vec<OperationOutcome>,
) -> Result<(Patients, Vec<ResourceId>), ExportError> {
    let resolved = groups::resolve(id, plugins, snapshot)?;
    warnings.extend(groups::report_lines(id, resolved.reported));
    let members = resolved.members;
    let members = if request.patients.is_empty() {
        members
    } else {
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
        ids
    };
    let added = match request.since {
        Some(since) => groups::added_since(id, &members, since, plugins, snapshot, warnings)?,
        None => Vec::new(),
    };
    Ok((Patients::Listed(members), added))
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
