//! The kick-off's parameters (query string of a GET, `Parameters` body of a
//! POST), checked and parsed once into an [`ExportRequest`]. What needs the
//! store or a plugin (the Group exists, each `_typeFilter` compiles) is
//! checked afterwards by `kickoff`.
//!
//! Every rejection is a 400 whose OperationOutcome names the parameter
//! (`expression`). Under `Prefer: handling=lenient` what is merely
//! unsupported (an unknown parameter, an `includeAssociatedData` value, a type
//! outside the Patient compartment) becomes a [`Warning`] instead, which
//! the export writes to its error file; what is malformed stays a 400.

use std::collections::HashSet;

use serde_json::Value;

use crate::api::error::ApiError;
use crate::api::format::check_format;
use crate::api::params::{body_error, parameters_body, parse_id, parse_type};
use crate::azure::is_container_name;
use crate::destinations::DestinationKind;
use crate::export::{Associated, ExportLevel, ExportRequest, TypeFilter, Warning};
use crate::fhir::compartment::can_be_in_compartment;
use crate::fhir::{Instant, IssueType, ResourceId, ResourceType};

/// Where the parameters came from, and the facts of the kick-off they are
/// checked against.
pub struct Kickoff<'a> {
    pub level: ExportLevel,
    /// `Prefer: handling=lenient`.
    pub lenient: bool,
    /// A POST body (only there is `patient` accepted).
    pub from_body: bool,
    pub base_url: &'a str,
    pub request_url: String,
    /// `Store::now()`: the snapshot when no `_till`/`_until` is given, and
    /// the bound no instant may pass.
    pub now: Instant,
    /// `export.include_referenced`: types outside every compartment that
    /// Patient/Group exports add when exported resources reference them.
    pub referenced: &'a [ResourceType],
    /// The names `_sink` may take (`[plugins.sinks.<name>]`).
    pub sinks: &'a [&'a str],
    /// Where the files go: decides what a `_container` may be.
    pub destination: DestinationKind,
}

const TYPE_FILTER: &str = "_typeFilter";

/// The `(name, value)` pairs of a POST kick-off's `Parameters` body, each
/// value in the form it would have in a query string.
pub fn body_pairs(body: &[u8]) -> Result<Vec<(String, String)>, ApiError> {
    let parameters = parameters_body(body, "a POST kick-off")?;
    parameters
        .iter()
        .enumerate()
        .map(|(i, parameter)| {
            let at = format!("Parameters.parameter[{i}]");
            let name = parameter
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| body_error(&at, "has no name"))?;
            let value = body_value(parameter).ok_or_else(|| {
                body_error(
                    &at,
                    format!("'{name}' needs one value[x] of a simple type or a Reference"),
                )
            })?;
            Ok((name.to_owned(), value))
        })
        .collect()
}

/// The string form of a parameter's `value[x]`: primitives as written, a
/// Reference's `reference`, a Coding's `code` (Bulk Data v4 sends
/// `includeAssociatedData` as a Coding).
fn body_value(parameter: &Value) -> Option<String> {
    let object = parameter.as_object()?;
    let mut values = object.iter().filter(|(k, _)| k.starts_with("value"));
    let (key, value) = values.next()?;
    if values.next().is_some() {
        return None;
    }
    match (key.as_str(), value) {
        (_, Value::String(s)) => Some(s.clone()),
        ("valueBoolean", Value::Bool(b)) => Some(b.to_string()),
        ("valueReference", Value::Object(r)) => r.get("reference")?.as_str().map(str::to_owned),
        ("valueCoding", Value::Object(c)) => c.get("code")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// Checks every parameter and builds the request (without compiling the
/// `_typeFilter`s: see `kickoff`).
pub fn parse(kickoff: Kickoff, pairs: Vec<(String, String)>) -> Result<ExportRequest, ApiError> {
    let mut parser = Parser {
        kickoff,
        seen: HashSet::new(),
        since: None,
        until: None,
        types: Vec::new(),
        filters: Vec::new(),
        elements: Vec::new(),
        patients: Vec::new(),
        associated: Associated::default(),
        container: None,
        sink: None,
        warnings: Vec::new(),
    };
    for (name, value) in pairs {
        parser.parameter(&name, value)?;
    }
    parser.finish()
}

struct Parser<'a> {
    kickoff: Kickoff<'a>,
    /// Single-valued parameters already given.
    seen: HashSet<&'static str>,
    since: Option<Instant>,
    /// `_till` or `_until`, with the name used.
    until: Option<(&'static str, Instant)>,
    types: Vec<ResourceType>,
    filters: Vec<TypeFilter>,
    elements: Vec<(Option<ResourceType>, String)>,
    patients: Vec<ResourceId>,
    associated: Associated,
    container: Option<String>,
    sink: Option<String>,
    warnings: Vec<Warning>,
}

impl Parser<'_> {
    fn parameter(&mut self, name: &str, value: String) -> Result<(), ApiError> {
        // Form decoding turned an unencoded `+` (`application/fhir+ndjson`,
        // a `+02:00` offset, one in a `_typeFilter`) into a space: put back
        // what the client wrote. No value here has a meaningful space.
        let value = value.replace(' ', "+");
        match name {
            "_outputFormat" => {
                self.once("_outputFormat")?;
                check_output_format(&value)
            }
            "_since" => {
                self.once("_since")?;
                self.since = Some(instant("_since", &value)?);
                Ok(())
            }
            "_till" | "_until" => {
                // Two names for one bound (Azure's and HL7's): one of them, once.
                self.once("_till/_until")?;
                let name = if name == "_till" { "_till" } else { "_until" };
                self.until = Some((name, instant(name, &value)?));
                Ok(())
            }
            "_type" => {
                for item in items("_type", &value)? {
                    let rtype = resource_type("_type", item)?;
                    if !self.types.contains(&rtype) {
                        self.types.push(rtype);
                    }
                }
                Ok(())
            }
            TYPE_FILTER => {
                for filter in split_type_filters(&value) {
                    let filter = type_filter(filter)?;
                    if !self.filters.contains(&filter) {
                        self.filters.push(filter);
                    }
                }
                Ok(())
            }
            "_elements" => {
                for item in items("_elements", &value)? {
                    let element = element(item)?;
                    if !self.elements.contains(&element) {
                        self.elements.push(element);
                    }
                }
                Ok(())
            }
            "patient" => self.patient(&value),
            "includeAssociatedData" => {
                for item in items("includeAssociatedData", &value)? {
                    self.associated_data(item)?;
                }
                Ok(())
            }
            "_container" => {
                self.once("_container")?;
                let value = container(&value)?;
                if self.kickoff.destination == DestinationKind::Blob && !is_container_name(&value) {
                    return Err(ApiError::parameter(
                        IssueType::Value,
                        "_container",
                        format!(
                            "'{value}' is not an Azure Blob container name (3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit)"
                        ),
                    ));
                }
                self.container = Some(value);
                Ok(())
            }
            "_sink" => {
                self.once("_sink")?;
                self.sink = Some(self.sink_name(value)?);
                Ok(())
            }
            // Azure's spelling and MS fhir-server's: both are seen in the wild.
            "_isparallel" | "_isParallel" => {
                self.once("_isparallel")?;
                match value.as_str() {
                    "true" | "false" => Ok(()),
                    _ => Err(ApiError::parameter(
                        IssueType::Value,
                        name,
                        format!("'{value}' is not a boolean (true or false)"),
                    )),
                }
            }
            "_format" => check_format(&value),
            _ => self.unsupported(name, unknown_parameter(name)),
        }
    }

    /// `_sink` names one of the configured sinks.
    fn sink_name(&self, value: String) -> Result<String, ApiError> {
        if self.kickoff.sinks.contains(&value.as_str()) {
            return Ok(value);
        }
        let configured = match self.kickoff.sinks {
            [] => "none is configured".to_owned(),
            names => format!("configured: {}", names.join(", ")),
        };
        Err(ApiError::parameter(
            IssueType::Value,
            "_sink",
            format!("'{value}' is not an export sink of this server ({configured})"),
        ))
    }

    /// A single-valued parameter may be given once.
    fn once(&mut self, name: &'static str) -> Result<(), ApiError> {
        if self.seen.insert(name) {
            return Ok(());
        }
        Err(ApiError::parameter(
            IssueType::Invalid,
            name,
            "given more than once; it takes one value",
        ))
    }

    /// Something this server does not support: a 400, or under lenient
    /// handling a warning for the error file.
    fn unsupported(&mut self, name: &str, message: String) -> Result<(), ApiError> {
        if !self.kickoff.lenient {
            return Err(ApiError::parameter(IssueType::NotSupported, name, message));
        }
        self.warnings.push(Warning {
            parameter: name.to_owned(),
            message: format!("{message}; ignored (Prefer: handling=lenient)"),
        });
        Ok(())
    }

    /// `patient` names patients whose compartments to export: `Patient/id`,
    /// or the same rooted at this server's base URL.
    fn patient(&mut self, value: &str) -> Result<(), ApiError> {
        let invalid = |message: String| ApiError::parameter(IssueType::Invalid, "patient", message);
        if !self.kickoff.from_body {
            return Err(invalid(
                "is only accepted in the Parameters body of a POST kick-off".into(),
            ));
        }
        if self.kickoff.level == ExportLevel::System {
            return Err(invalid(
                "narrows a Patient or Group export; use /Patient/$export".into(),
            ));
        }
        let relative = value
            .strip_prefix(self.kickoff.base_url)
            .and_then(|v| v.strip_prefix('/'))
            .unwrap_or(value);
        let id = relative
            .strip_prefix("Patient/")
            .and_then(ResourceId::parse)
            .ok_or_else(|| {
                ApiError::parameter(
                    IssueType::Value,
                    "patient",
                    format!("'{value}' is not a reference like Patient/123"),
                )
            })?;
        if !self.patients.contains(&id) {
            self.patients.push(id);
        }
        Ok(())
    }

    /// The two custom values of Azure's export; anything else is unsupported.
    fn associated_data(&mut self, value: &str) -> Result<(), ApiError> {
        match value {
            "_history" => self.associated.history = true,
            "_deleted" => self.associated.deleted = true,
            other => {
                return self.unsupported(
                    "includeAssociatedData",
                    format!("'{other}' is not supported (supported: _history, _deleted)"),
                );
            }
        }
        Ok(())
    }

    /// The checks that need every parameter.
    fn finish(mut self) -> Result<ExportRequest, ApiError> {
        let now = self.kickoff.now;
        let transaction_time = match self.until {
            Some((name, until)) if until > now => {
                return Err(ApiError::parameter(
                    IssueType::Value,
                    name,
                    format!("{until} is in the future (now is {now})"),
                ));
            }
            Some((_, until)) => until,
            None => now,
        };
        if let Some(since) = self.since {
            if since > now {
                return Err(ApiError::parameter(
                    IssueType::Value,
                    "_since",
                    format!("{since} is in the future (now is {now})"),
                ));
            }
            if let Some((name, until)) = self.until
                && since >= until
            {
                return Err(ApiError::parameter(
                    IssueType::Value,
                    "_since",
                    format!("{since} is not before {name} {until}: nothing could change between"),
                ));
            }
        }
        self.check_compartment_types()?;
        self.check_filter_types()?;
        let referenced = if self.kickoff.level == ExportLevel::System {
            Vec::new()
        } else {
            self.kickoff
                .referenced
                .iter()
                .copied()
                .filter(|t| self.types.is_empty() || self.types.contains(t))
                .collect()
        };
        Ok(ExportRequest {
            level: self.kickoff.level,
            request_url: self.kickoff.request_url,
            transaction_time,
            since: self.since,
            until_given: self.until.is_some(),
            types: self.types,
            type_filters: self.filters,
            elements: self.elements,
            patients: self.patients,
            referenced,
            associated: self.associated,
            container: self.container,
            sink: self.sink,
            lenient: self.kickoff.lenient,
            warnings: self.warnings,
        })
    }

    /// Whether a Patient or Group export can return resources of `rtype`:
    /// a compartment's, or one of `export.include_referenced`.
    fn exportable_below_system(&self, rtype: ResourceType) -> bool {
        can_be_in_compartment(rtype) || self.kickoff.referenced.contains(&rtype)
    }

    /// A Patient or Group export returns compartments (and the configured
    /// referenced types): a `_type` that can never be in one is refused (or
    /// dropped with a warning). Dropping every type would widen the export
    /// to all types, so that stays a 400.
    fn check_compartment_types(&mut self) -> Result<(), ApiError> {
        if self.kickoff.level == ExportLevel::System || self.types.is_empty() {
            return Ok(());
        }
        let (kept, outside): (Vec<ResourceType>, Vec<ResourceType>) = self
            .types
            .iter()
            .copied()
            .partition(|t| self.exportable_below_system(*t));
        if outside.is_empty() {
            return Ok(());
        }
        let names = outside
            .iter()
            .map(|t| t.as_str())
            .collect::<Vec<&str>>()
            .join(", ");
        let message = format!("{names} cannot be in a Patient compartment");
        if kept.is_empty() {
            return Err(ApiError::parameter(IssueType::Value, "_type", message));
        }
        self.unsupported("_type", message)?;
        self.types = kept;
        Ok(())
    }

    /// A filter for a type the export will not return is a mistake: with
    /// `_type` given, the filter's type must be in it; at Patient/Group
    /// level it must be able to be in a compartment (else dropped with a
    /// warning when lenient).
    fn check_filter_types(&mut self) -> Result<(), ApiError> {
        let mut kept = Vec::with_capacity(self.filters.len());
        for filter in std::mem::take(&mut self.filters) {
            if !self.types.is_empty() && !self.types.contains(&filter.rtype) {
                return Err(ApiError::parameter(
                    IssueType::Invalid,
                    TYPE_FILTER,
                    format!(
                        "'{}?{}' filters {}, which _type does not include",
                        filter.rtype, filter.query, filter.rtype
                    ),
                ));
            }
            if self.kickoff.level != ExportLevel::System
                && !self.exportable_below_system(filter.rtype)
            {
                self.unsupported(
                    TYPE_FILTER,
                    format!(
                        "'{}?{}': {} cannot be in a Patient compartment",
                        filter.rtype, filter.query, filter.rtype
                    ),
                )?;
                continue;
            }
            kept.push(filter);
        }
        self.filters = kept;
        Ok(())
    }
}

/// FHIR's three names for NDJSON; Hearth writes nothing else.
fn check_output_format(value: &str) -> Result<(), ApiError> {
    match value {
        "application/fhir+ndjson" | "application/ndjson" | "ndjson" => Ok(()),
        _ => Err(ApiError::parameter(
            IssueType::NotSupported,
            "_outputFormat",
            format!(
                "'{value}' is not supported; use application/fhir+ndjson, application/ndjson or ndjson"
            ),
        )),
    }
}

fn instant(name: &str, value: &str) -> Result<Instant, ApiError> {
    Instant::parse(value).map_err(|e| ApiError::parameter(IssueType::Value, name, e))
}

/// The comma-separated items of one value; an empty item is a mistake.
fn items<'v>(name: &str, value: &'v str) -> Result<Vec<&'v str>, ApiError> {
    let items: Vec<&str> = value.split(',').map(str::trim).collect();
    if items.iter().any(|item| item.is_empty()) {
        return Err(ApiError::parameter(
            IssueType::Invalid,
            name,
            format!("'{value}' has an empty item"),
        ));
    }
    Ok(items)
}

/// A type an export can return (`Parameters` and `OperationOutcome` are never
/// stored).
fn resource_type(name: &str, value: &str) -> Result<ResourceType, ApiError> {
    parse_type(value).map_err(|e| ApiError::parameter(IssueType::Value, name, e))
}

/// Splits one `_typeFilter` value into its filters. FHIR search uses commas
/// for OR *inside* a query (`Observation?code=a,b`), so a comma separates two
/// filters only when what follows it starts a new one: a resource-type-shaped
/// name (a capital letter, then letters) and `?`. Every other comma belongs
/// to the query it is in.
pub fn split_type_filters(value: &str) -> Vec<&str> {
    let mut filters = Vec::new();
    let mut start = 0;
    for (i, _) in value.match_indices(',') {
        if starts_filter(&value[i + 1..]) {
            filters.push(&value[start..i]);
            start = i + 1;
        }
    }
    filters.push(&value[start..]);
    filters
}

fn starts_filter(rest: &str) -> bool {
    let name_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
    name_len > 0
        && rest.as_bytes()[0].is_ascii_uppercase()
        && rest.as_bytes().get(name_len) == Some(&b'?')
}

/// `Type?query`: the query kept as sent, for the type-filter plugin.
fn type_filter(value: &str) -> Result<TypeFilter, ApiError> {
    let invalid = |message: String| ApiError::parameter(IssueType::Invalid, TYPE_FILTER, message);
    let (name, query) = value.split_once('?').ok_or_else(|| {
        invalid(format!(
            "'{value}' is not a query like Observation?code=..."
        ))
    })?;
    let rtype = resource_type(TYPE_FILTER, name)?;
    if query.is_empty() {
        return Err(invalid(format!("'{value}' has no search parameters")));
    }
    Ok(TypeFilter {
        rtype,
        query: query.to_owned(),
    })
}

/// `element` (every type) or `Type.element`.
fn element(value: &str) -> Result<(Option<ResourceType>, String), ApiError> {
    let (rtype, name) = match value.split_once('.') {
        Some((rtype, name)) => (Some(resource_type("_elements", rtype)?), name),
        None => (None, value),
    };
    let valid = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric());
    if !valid {
        return Err(ApiError::parameter(
            IssueType::Value,
            "_elements",
            format!("'{value}' is not an element name like status or Observation.status"),
        ));
    }
    Ok((rtype, name.to_owned()))
}

/// The output folder's name: 1-63 of `A-Z a-z 0-9 . _ -`, not starting with
/// a dot, so it can never leave the export directory (`..`, `/`, `\`) or
/// hide in it. `$import`'s `errorContainerName` follows the same rule.
pub(in crate::api) fn container(value: &str) -> Result<String, ApiError> {
    let valid = (1..=63).contains(&value.len())
        && !value.starts_with('.')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid {
        return Err(ApiError::parameter(
            IssueType::Value,
            "_container",
            format!(
                "'{value}' is not a folder name (1-63 of A-Z a-z 0-9 . _ -, not starting with a dot)"
            ),
        ));
    }
    Ok(value.to_owned())
}

/// Known to the Bulk Data IG but not offered here, or a typo of a supported
/// parameter: the message says which.
fn unknown_parameter(name: &str) -> String {
    const SUPPORTED: [&str; 13] = [
        "_outputFormat",
        "_since",
        "_till",
        "_until",
        "_type",
        TYPE_FILTER,
        "_elements",
        "patient",
        "includeAssociatedData",
        "_container",
        "_sink",
        "_isparallel",
        "_format",
    ];
    match SUPPORTED.iter().find(|s| s.eq_ignore_ascii_case(name)) {
        Some(known) => format!("is not a parameter of $export (did you mean {known}?)"),
        None => "is not a supported parameter of $export".into(),
    }
}

/// The Group of a Group-level export, from its path segment.
pub fn group_id(segment: &str) -> Result<ResourceId, ApiError> {
    parse_id(segment).map_err(|e| ApiError::parameter(IssueType::Value, "Group.id", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2024-05-01T12:00:00Z";

    fn kickoff(level: ExportLevel, lenient: bool, from_body: bool) -> Kickoff<'static> {
        Kickoff {
            level,
            lenient,
            from_body,
            base_url: "http://h",
            request_url: "http://h/$export".into(),
            now: Instant::parse(NOW).unwrap(),
            referenced: &[],
            destination: DestinationKind::Local,
            sinks: &["deid", "gzip"],
        }
    }

    fn pairs(query: &[(&str, &str)]) -> Vec<(String, String)> {
        query
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn system(query: &[(&str, &str)]) -> Result<ExportRequest, ApiError> {
        parse(kickoff(ExportLevel::System, false, false), pairs(query))
    }

    fn patient_level(lenient: bool, query: &[(&str, &str)]) -> Result<ExportRequest, ApiError> {
        parse(kickoff(ExportLevel::Patient, lenient, true), pairs(query))
    }

    /// The parameter a 400 names.
    fn named(result: Result<ExportRequest, ApiError>) -> String {
        match result {
            Err(ApiError::Invalid {
                expression: Some(e),
                ..
            }) => e,
            other => panic!("expected a 400 naming a parameter, got {other:?}"),
        }
    }

    fn rtype(name: &str) -> ResourceType {
        ResourceType::parse(name).unwrap()
    }

    #[test]
    fn no_parameters_is_everything_now() {
        let r = system(&[]).unwrap();
        assert_eq!(r.level, ExportLevel::System);
        assert_eq!(r.transaction_time, Instant::parse(NOW).unwrap());
        assert!(!r.until_given && r.types.is_empty() && r.warnings.is_empty());
    }

    #[test]
    fn every_supported_parameter() {
        let r = system(&[
            ("_outputFormat", "application/fhir ndjson"),
            ("_since", "2024-01-01T00:00:00 02:00"),
            ("_until", "2024-04-01"),
            ("_type", "Patient,Observation"),
            ("_type", "Condition,Patient"),
            ("_typeFilter", "Observation?code=a,b,Patient?gender=female"),
            ("_typeFilter", "Observation?status=final"),
            ("_elements", "id,Observation.status"),
            ("includeAssociatedData", "_history,_deleted"),
            ("_container", "run-1.a_b"),
            ("_isparallel", "true"),
            ("_format", "json"),
        ])
        .unwrap();
        assert_eq!(
            r.since,
            Some(Instant::parse("2023-12-31T22:00:00Z").unwrap())
        );
        assert_eq!(r.transaction_time, Instant::parse("2024-04-01").unwrap());
        assert!(r.until_given);
        assert_eq!(
            r.types,
            [rtype("Patient"), rtype("Observation"), rtype("Condition")]
        );
        let filters: Vec<(&str, &str)> = r
            .type_filters
            .iter()
            .map(|f| (f.rtype.as_str(), f.query.as_str()))
            .collect();
        assert_eq!(
            filters,
            [
                ("Observation", "code=a,b"),
                ("Patient", "gender=female"),
                ("Observation", "status=final")
            ]
        );
        assert_eq!(
            r.elements,
            [
                (None, "id".to_string()),
                (Some(rtype("Observation")), "status".to_string())
            ]
        );
        assert_eq!(
            r.associated,
            Associated {
                history: true,
                deleted: true
            }
        );
        assert_eq!(r.container.as_deref(), Some("run-1.a_b"));
    }

    #[test]
    fn type_filter_split_rule() {
        assert_eq!(
            split_type_filters("Observation?code=a,b,Condition?x=y"),
            ["Observation?code=a,b", "Condition?x=y"]
        );
        // A comma before something that does not start a filter stays put.
        assert_eq!(
            split_type_filters("Observation?code=a,Patient,b?c,lower?x"),
            ["Observation?code=a,Patient,b?c,lower?x"]
        );
        assert_eq!(split_type_filters("A?x,B?y,"), ["A?x", "B?y,"]);
        assert_eq!(split_type_filters(""), [""]);
    }

    #[test]
    fn each_mistake_names_its_parameter() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("_outputFormat", "text/csv")], "_outputFormat"),
            (
                &[("_outputFormat", "ndjson"), ("_outputFormat", "ndjson")],
                "_outputFormat",
            ),
            (&[("_since", "yesterday")], "_since"),
            (&[("_since", "2999-01-01")], "_since"),
            (&[("_till", "2999-01-01")], "_till"),
            (&[("_until", "2024-13-01")], "_until"),
            (
                &[("_till", "2024-01-01"), ("_until", "2024-01-01")],
                "_till/_until",
            ),
            (
                &[("_since", "2024-02-01"), ("_till", "2024-01-01")],
                "_since",
            ),
            (&[("_type", "Pateint")], "_type"),
            (&[("_type", "Patient,,Observation")], "_type"),
            (&[("_type", "OperationOutcome")], "_type"),
            (&[("_typeFilter", "Observation")], "_typeFilter"),
            (&[("_typeFilter", "Observation?")], "_typeFilter"),
            (&[("_typeFilter", "Obs?code=x")], "_typeFilter"),
            (
                &[("_type", "Patient"), ("_typeFilter", "Observation?code=x")],
                "_typeFilter",
            ),
            (&[("_elements", "Observation.")], "_elements"),
            (&[("_elements", "Foo.id")], "_elements"),
            (&[("_elements", "a.b.c")], "_elements"),
            (
                &[("includeAssociatedData", "LatestProvenanceResources")],
                "includeAssociatedData",
            ),
            (&[("_container", "..")], "_container"),
            (&[("_container", "a/b")], "_container"),
            (&[("_container", "a\\b")], "_container"),
            (&[("_container", "/abs")], "_container"),
            (&[("_container", ".hidden")], "_container"),
            (&[("_container", "")], "_container"),
            (&[("_isparallel", "yes")], "_isparallel"),
            (&[("patient", "Patient/1")], "patient"),
            (&[("_foo", "1")], "_foo"),
            (&[("_typefilter", "Patient?x=1")], "_typefilter"),
            (&[("organizeOutputBy", "Patient")], "organizeOutputBy"),
        ];
        for (query, parameter) in cases {
            assert_eq!(&named(system(query)), parameter, "{query:?}");
        }
    }

    #[test]
    fn a_blob_destination_takes_container_names_only() {
        let blob = |value: &str| {
            let kickoff = Kickoff {
                destination: DestinationKind::Blob,
                ..kickoff(ExportLevel::System, false, false)
            };
            parse(kickoff, pairs(&[("_container", value)]))
        };
        assert_eq!(
            blob("research-1").unwrap().container.as_deref(),
            Some("research-1")
        );
        for bad in ["Research", "run-1.a_b", "ab", "a--b", "-ab", ".."] {
            assert_eq!(named(blob(bad)), "_container", "{bad}");
        }
        // The local folder takes what Blob Storage refuses.
        assert!(system(&[("_container", "Run_1.x")]).is_ok());
    }

    #[test]
    fn a_sink_is_one_of_the_configured_names() {
        assert_eq!(
            system(&[("_sink", "deid")]).unwrap().sink.as_deref(),
            Some("deid")
        );
        assert_eq!(system(&[]).unwrap().sink, None);
        let unknown = system(&[("_sink", "nope")]);
        let text = format!("{unknown:?}");
        assert!(
            text.contains("'nope'") && text.contains("deid, gzip"),
            "{text}"
        );
        assert_eq!(named(unknown), "_sink");
        assert_eq!(
            named(system(&[("_sink", "deid"), ("_sink", "gzip")])),
            "_sink"
        );
        // Part of what makes two kick-offs the same export.
        let (a, b) = (system(&[("_sink", "deid")]).unwrap(), system(&[]).unwrap());
        assert!(!a.same_export(&b));
    }

    #[test]
    fn patient_references_only_in_a_body_below_system_level() {
        let r = patient_level(
            false,
            &[
                ("patient", "Patient/p1"),
                ("patient", "http://h/Patient/p2"),
                ("patient", "Patient/p1"),
            ],
        )
        .unwrap();
        assert_eq!(
            r.patients,
            [
                ResourceId::parse("p1").unwrap(),
                ResourceId::parse("p2").unwrap()
            ]
        );
        for bad in [
            "Group/g",
            "Patient/a b",
            "http://elsewhere/Patient/p1",
            "p1",
        ] {
            assert_eq!(named(patient_level(false, &[("patient", bad)])), "patient");
        }
        let from_query = parse(
            kickoff(ExportLevel::Patient, false, false),
            pairs(&[("patient", "Patient/p1")]),
        );
        assert_eq!(named(from_query), "patient");
        let at_system = parse(
            kickoff(ExportLevel::System, false, true),
            pairs(&[("patient", "Patient/p1")]),
        );
        assert_eq!(named(at_system), "patient");
    }

    #[test]
    fn compartment_types_at_patient_level() {
        assert_eq!(
            named(patient_level(false, &[("_type", "Patient,Organization")])),
            "_type"
        );
        let lenient = patient_level(true, &[("_type", "Patient,Organization")]).unwrap();
        assert_eq!(lenient.types, [rtype("Patient")]);
        assert_eq!(lenient.warnings[0].parameter, "_type");
        assert!(lenient.warnings[0].message.contains("Organization"));
        // Dropping every type would export every type: never.
        assert_eq!(
            named(patient_level(true, &[("_type", "Organization")])),
            "_type"
        );
        let filter = [("_typeFilter", "Organization?name=x")];
        assert_eq!(named(patient_level(false, &filter)), "_typeFilter");
        let lenient = patient_level(true, &filter).unwrap();
        assert!(lenient.type_filters.is_empty());
        assert_eq!(lenient.warnings[0].parameter, "_typeFilter");
    }

    #[test]
    fn referenced_types_join_patient_and_group_exports_only() {
        let configured = [rtype("Practitioner"), rtype("Organization")];
        let parse_at = |level: ExportLevel, query: &[(&str, &str)]| {
            let kickoff = Kickoff {
                referenced: &configured,
                ..kickoff(level, false, true)
            };
            parse(kickoff, pairs(query))
        };
        let r = parse_at(ExportLevel::Patient, &[]).unwrap();
        assert_eq!(r.referenced, configured);
        let r = parse_at(
            ExportLevel::Group {
                id: ResourceId::parse("g").unwrap(),
            },
            &[
                ("_type", "Patient,Practitioner"),
                ("_typeFilter", "Practitioner?_id=dr1"),
            ],
        )
        .unwrap();
        assert_eq!(r.referenced, [rtype("Practitioner")]);
        assert_eq!(r.types, [rtype("Patient"), rtype("Practitioner")]);
        assert_eq!(r.type_filters.len(), 1);
        assert!(r.warnings.is_empty());
        // Not configured: still outside what the level can return.
        assert_eq!(
            named(parse_at(
                ExportLevel::Patient,
                &[("_type", "Patient,Location")]
            )),
            "_type"
        );
        assert!(
            parse_at(ExportLevel::System, &[])
                .unwrap()
                .referenced
                .is_empty()
        );
    }

    #[test]
    fn lenient_turns_unsupported_into_warnings_but_not_malformed() {
        let r = patient_level(
            true,
            &[
                ("_foo", "1"),
                (
                    "includeAssociatedData",
                    "_history,LatestProvenanceResources",
                ),
            ],
        )
        .unwrap();
        let named: Vec<&str> = r.warnings.iter().map(|w| w.parameter.as_str()).collect();
        assert_eq!(named, ["_foo", "includeAssociatedData"]);
        assert!(r.associated.history && r.lenient);
        assert!(patient_level(true, &[("_since", "nope")]).is_err());
        assert!(patient_level(true, &[("_type", "Nope")]).is_err());
        assert!(patient_level(true, &[("_outputFormat", "csv")]).is_err());
    }

    #[test]
    fn parameters_bodies() {
        let body = br#"{"resourceType":"Parameters","parameter":[
            {"name":"_type","valueString":"Patient"},
            {"name":"_since","valueInstant":"2024-01-01T00:00:00Z"},
            {"name":"patient","valueReference":{"reference":"Patient/p1"}},
            {"name":"includeAssociatedData","valueCoding":{"code":"_history"}},
            {"name":"_isparallel","valueBoolean":false}]}"#;
        assert_eq!(
            body_pairs(body).unwrap(),
            pairs(&[
                ("_type", "Patient"),
                ("_since", "2024-01-01T00:00:00Z"),
                ("patient", "Patient/p1"),
                ("includeAssociatedData", "_history"),
                ("_isparallel", "false"),
            ])
        );
        assert!(
            body_pairs(br#"{"resourceType":"Parameters"}"#)
                .unwrap()
                .is_empty()
        );
        let at = |body: &[u8]| match body_pairs(body) {
            Err(ApiError::Invalid { expression, .. }) => expression,
            other => panic!("{other:?}"),
        };
        assert_eq!(at(b"{"), None);
        assert_eq!(
            at(br#"{"resourceType":"Patient"}"#).as_deref(),
            Some("resourceType")
        );
        assert_eq!(
            at(br#"{"resourceType":"Parameters","parameter":[{"name":"_type"}]}"#).as_deref(),
            Some("Parameters.parameter[0]")
        );
        assert_eq!(
            at(br#"{"resourceType":"Parameters","parameter":[{"valueString":"x"}]}"#).as_deref(),
            Some("Parameters.parameter[0]")
        );
    }
}
