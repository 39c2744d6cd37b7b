//! A kick-off, parsed and checked once at the HTTP edge into the typed request
//! every later step uses; persisted as the job's request.

use serde::{Deserialize, Serialize};

use crate::fhir::{Instant, ResourceId, ResourceType};

/// Which population an export covers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "level", rename_all = "lowercase")]
pub enum ExportLevel {
    /// `[base]/$export`: every resource of the requested types.
    System,
    /// `[base]/Patient/$export`: the compartments of all patients (or of
    /// `patients` when given).
    Patient,
    /// `[base]/Group/{id}/$export`: the compartments of the Group's members.
    Group { id: ResourceId },
}

/// One `_typeFilter` query: `Observation?code=...`, split at the `?`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeFilter {
    pub rtype: ResourceType,
    /// The query string after `?`, exactly as the client sent it (decoded
    /// once from the kick-off URL), for the type-filter plugin to compile.
    pub query: String,
}

/// What `includeAssociatedData` asked for (the seed docs' custom values).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Associated {
    /// `_history`: every version up to the snapshot, not only the current one.
    pub history: bool,
    /// `_deleted`: deleted resources too, marked with the `deleted-state`
    /// extension so that `$import` can load them back as deleted.
    pub deleted: bool,
}

/// A warning to report in the export's error files (lenient handling).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    /// The kick-off parameter it is about, e.g. `_foo` or `_typeFilter`.
    pub parameter: String,
    pub message: String,
}

/// A checked `$export` kick-off.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRequest {
    pub level: ExportLevel,
    /// The kick-off URL as received (for the manifest's `request`).
    pub request_url: String,
    /// The snapshot instant (`transactionTime`): `Store::now()` at kick-off,
    /// or `_till`/`_until` when given (time travel).
    pub transaction_time: Instant,
    /// `_since`: only resources changed after it (exclusive).
    pub since: Option<Instant>,
    /// Whether `_till`/`_until` set `transaction_time`.
    pub until_given: bool,
    /// `_type`, in request order without duplicates; empty = every type the
    /// level allows.
    pub types: Vec<ResourceType>,
    /// `_typeFilter`s; several for one type are OR-ed.
    pub type_filters: Vec<TypeFilter>,
    /// `_elements`: `(None, name)` for every type, `(Some(t), name)` for one.
    pub elements: Vec<(Option<ResourceType>, String)>,
    /// `patient` (POST, Patient/Group level): narrows to these patients.
    pub patients: Vec<ResourceId>,
    pub associated: Associated,
    /// `_container`: output folder name, checked for traversal.
    pub container: Option<String>,
    /// `Prefer: handling=lenient` was given.
    pub lenient: bool,
    /// Unsupported parameters accepted under lenient handling.
    pub warnings: Vec<Warning>,
}
