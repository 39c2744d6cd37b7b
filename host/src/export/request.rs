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
    /// Patient/Group level: the types outside every compartment whose
    /// resources the exported ones reference are exported too
    /// (`export.include_referenced` at kick-off, narrowed by `_type`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub referenced: Vec<ResourceType>,
    pub associated: Associated,
    /// `_container`: output folder name, checked for traversal.
    pub container: Option<String>,
    /// `_sink`: the named export sink (`[plugins.sinks.<name>]`) the files
    /// go through; `None` = `[plugins.export_sink]`. Kept with the job, so a
    /// resumed attempt writes through the same sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sink: Option<String>,
    /// `Prefer: handling=lenient` was given.
    pub lenient: bool,
    /// Unsupported parameters accepted under lenient handling.
    pub warnings: Vec<Warning>,
}

impl ExportRequest {
    /// Whether `other` asks for the same export: equal in every field but
    /// the transaction time, unless `_till`/`_until` chose it. A kick-off
    /// repeated while an identical one is queued or running gets that job
    /// back instead of a second one (the clock-given time of two kick-offs
    /// always differs).
    pub fn same_export(&self, other: &ExportRequest) -> bool {
        if self.until_given || other.until_given {
            return self == other;
        }
        let aligned = ExportRequest {
            transaction_time: other.transaction_time,
            ..self.clone()
        };
        aligned == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(time: &str, until_given: bool) -> ExportRequest {
        let at = Instant::parse(time).unwrap();
        ExportRequest {
            until_given,
            ..crate::export::tests::request(ExportLevel::System, at)
        }
    }

    #[test]
    fn same_export_ignores_only_the_clock() {
        let (a, b) = (request("2024-01-01", false), request("2024-02-01", false));
        assert!(a.same_export(&b) && b.same_export(&a));
        let typed = ExportRequest {
            types: vec![ResourceType::parse("Patient").unwrap()],
            ..b.clone()
        };
        assert!(!a.same_export(&typed));
        let (c, d) = (request("2024-01-01", true), request("2024-02-01", true));
        assert!(!c.same_export(&d) && c.same_export(&c.clone()));
        assert!(!a.same_export(&request("2024-01-01", true)));
    }
}
