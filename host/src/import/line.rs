//! One input line: the host's checks before and after the validator plugin,
//! the store item it becomes, and the error record (one OperationOutcome
//! per line, in the seed document's shape) when it cannot be imported.

use serde_json::{Map, Value, json};

use super::request::ImportMode;
use crate::export::{DELETED_STATE_URL, DELETED_STATE_VALUE};
use crate::fhir::outcome::Issue;
use crate::fhir::resource::{Resource, ResourceError, for_each_reference_mut};
use crate::fhir::{Instant, IssueType, ResourceId, ResourceType};
use crate::store::{ImportConflict, ImportItem, ImportRejection, LineRef};

/// What the lines of one input must be.
#[derive(Clone, Copy, Debug)]
pub struct Rules {
    pub mode: ImportMode,
    /// The input's declared `type`.
    pub declared: Option<ResourceType>,
}

/// Why a line is not imported.
#[derive(Debug)]
pub enum LineError {
    TooLong {
        bytes: u64,
        limit: usize,
    },
    Resource(ResourceError),
    WrongType {
        declared: ResourceType,
        found: ResourceType,
    },
    /// `SearchParameter` (the seed document excludes it) or a type that is
    /// never stored.
    NotImportable(ResourceType),
    MissingId(ResourceType),
    BadMeta {
        element: &'static str,
        value: String,
    },
    /// A conditional reference under `InitialLoad`.
    ConditionalReference(String),
    /// The soft-delete marker under `InitialLoad` (create-only).
    SoftDeleted,
    /// The validator plugin's verdict.
    Rejected(Vec<Issue>),
    /// The store's.
    Conflict {
        rtype: ResourceType,
        id: ResourceId,
        version: Option<u64>,
        conflict: ImportConflict,
    },
}

/// Parses a line (or the validator's replacement of it) and checks what
/// the host requires of any imported resource.
pub fn parse(rules: &Rules, bytes: &[u8]) -> Result<(Resource, ResourceId), LineError> {
    let resource = Resource::from_slice(bytes).map_err(LineError::Resource)?;
    if let Some(declared) = rules.declared
        && declared != resource.rtype
    {
        return Err(LineError::WrongType {
            declared,
            found: resource.rtype,
        });
    }
    if !importable(resource.rtype) {
        return Err(LineError::NotImportable(resource.rtype));
    }
    let id = resource
        .id
        .clone()
        .ok_or(LineError::MissingId(resource.rtype))?;
    Ok((resource, id))
}

/// Whether resources of `rtype` may be imported: stored ones, except
/// `SearchParameter` (they would change how the server searches).
pub fn importable(rtype: ResourceType) -> bool {
    rtype.is_storable() && rtype.as_str() != "SearchParameter"
}

/// The store item for an accepted line: under `InitialLoad` a create
/// ranked by its claim to the id; under `IncrementalLoad` the version and
/// instant its `meta` gives, deleted when it carries the soft-delete marker.
pub fn item(
    rules: &Rules,
    line: LineRef,
    mut resource: Resource,
    id: ResourceId,
) -> Result<ImportItem, LineError> {
    let meta = match resource.body.get("meta") {
        None => None,
        Some(Value::Object(meta)) => Some(meta),
        Some(other) => {
            return Err(LineError::BadMeta {
                element: "meta",
                value: other.to_string(),
            });
        }
    };
    let version_id = meta.and_then(|m| m.get("versionId")).cloned();
    let last_updated = meta.and_then(|m| m.get("lastUpdated")).cloned();
    let deleted = meta.is_some_and(soft_deleted);
    let item = match rules.mode {
        ImportMode::InitialLoad => {
            if deleted {
                return Err(LineError::SoftDeleted);
            }
            if let Some(reference) = conditional_reference(&mut resource) {
                return Err(LineError::ConditionalReference(reference));
            }
            // Only a claim to the id (see `precedence`): an initial load
            // writes version 1 at its own instant.
            let claim = (
                version_id.and_then(|v| parse_version(&v).ok()).unwrap_or(0),
                last_updated
                    .and_then(|t| parse_instant(&t).ok())
                    .unwrap_or(Instant::MIN),
            );
            ImportItem {
                id,
                resource,
                version: None,
                last_updated: None,
                deleted: false,
                line,
                precedence: claim,
            }
        }
        ImportMode::IncrementalLoad => {
            let version = version_id.as_ref().map(parse_version).transpose()?;
            let last_updated = last_updated.as_ref().map(parse_instant).transpose()?;
            ImportItem {
                id,
                resource,
                version,
                last_updated,
                deleted,
                line,
                // Unused: the store settles duplicates of one version by
                // their lastUpdated, then line.
                precedence: (0, Instant::MIN),
            }
        }
    };
    Ok(item)
}

/// `meta.versionId` as a positive integer.
fn parse_version(value: &Value) -> Result<u64, LineError> {
    let bad = || LineError::BadMeta {
        element: "meta.versionId",
        value: value.to_string(),
    };
    let text = value.as_str().ok_or_else(bad)?;
    let all_digits = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u64>() {
        Ok(v) if v >= 1 && all_digits => Ok(v),
        _ => Err(bad()),
    }
}

/// `meta.lastUpdated` as a FHIR instant (date, time and zone).
fn parse_instant(value: &Value) -> Result<Instant, LineError> {
    let bad = || LineError::BadMeta {
        element: "meta.lastUpdated",
        value: value.to_string(),
    };
    let text = value.as_str().filter(|t| t.contains('T')).ok_or_else(bad)?;
    Instant::parse(text).map_err(|_| bad())
}

/// The `deleted-state` = `soft-deleted` extension in `meta.extension`.
fn soft_deleted(meta: &Map<String, Value>) -> bool {
    let Some(Value::Array(extensions)) = meta.get("extension") else {
        return false;
    };
    extensions.iter().any(|e| {
        e.get("url").and_then(Value::as_str) == Some(DELETED_STATE_URL)
            && e.get("valueString").and_then(Value::as_str) == Some(DELETED_STATE_VALUE)
    })
}

/// The first reference with a query (`Patient?identifier=x|y`).
fn conditional_reference(resource: &mut Resource) -> Option<String> {
    // The walk takes a `Value`; the body is moved in and back out, not copied.
    let mut body = Value::Object(std::mem::take(&mut resource.body));
    let mut found = None;
    for_each_reference_mut(&mut body, &mut |reference| {
        if found.is_none() && reference.contains('?') {
            found = Some(reference.clone());
        }
    });
    if let Value::Object(map) = body {
        resource.body = map;
    }
    found
}

/// The error record of a line: an OperationOutcome on one line, its
/// `diagnostics` locating the line as the seed document's do, `details`
/// saying why.
pub fn record(line: LineRef, error: &LineError) -> Vec<u8> {
    let locator = format!(
        "Failed to process resource at line: {} with stream start offset: {}",
        line.line, line.offset
    );
    let issues: Vec<Value> = match error {
        LineError::Rejected(issues) if !issues.is_empty() => issues
            .iter()
            .map(|issue| {
                let text = issue
                    .diagnostics
                    .clone()
                    .unwrap_or_else(|| "rejected by the import validator".to_owned());
                issue_json(
                    serde_json::to_value(issue.severity).unwrap_or(Value::Null),
                    issue.code,
                    &text,
                    &locator,
                    &issue.expression,
                )
            })
            .collect(),
        _ => {
            let (code, expression) = code_of(error);
            vec![issue_json(
                json!("error"),
                code,
                &details(error),
                &locator,
                &expression.into_iter().collect::<Vec<_>>(),
            )]
        }
    };
    let outcome = json!({"resourceType": "OperationOutcome", "issue": issues});
    outcome.to_string().into_bytes()
}

/// The record of a line the store rejected.
pub fn conflict_record(rejection: &ImportRejection<'_>) -> Vec<u8> {
    record(
        rejection.line,
        &LineError::Conflict {
            rtype: rejection.rtype,
            id: rejection.id.clone(),
            version: rejection.version,
            conflict: rejection.conflict.clone(),
        },
    )
}

fn issue_json(
    severity: Value,
    code: IssueType,
    text: &str,
    locator: &str,
    expression: &[String],
) -> Value {
    let mut issue = json!({
        "severity": severity,
        "code": serde_json::to_value(code).unwrap_or(Value::Null),
        "details": {"text": text},
        "diagnostics": locator,
    });
    if !expression.is_empty() {
        issue["expression"] = json!(expression);
    }
    issue
}

fn code_of(error: &LineError) -> (IssueType, Option<String>) {
    match error {
        LineError::TooLong { .. } => (IssueType::TooLong, None),
        LineError::Resource(ResourceError::Json(_) | ResourceError::NotObject) => {
            (IssueType::Structure, None)
        }
        LineError::Resource(ResourceError::MissingType) => {
            (IssueType::Required, Some("resourceType".into()))
        }
        LineError::Resource(ResourceError::UnknownType(_)) => {
            (IssueType::Value, Some("resourceType".into()))
        }
        LineError::Resource(ResourceError::BadId(_)) => (IssueType::Value, Some("id".into())),
        LineError::WrongType { found, .. } => (IssueType::Invalid, Some(found.to_string())),
        LineError::NotImportable(rtype) => (IssueType::NotSupported, Some(rtype.to_string())),
        LineError::MissingId(rtype) => (IssueType::Required, Some(format!("{rtype}.id"))),
        LineError::BadMeta { element, .. } => (IssueType::Value, Some((*element).into())),
        LineError::ConditionalReference(_) => (IssueType::NotSupported, None),
        LineError::SoftDeleted => (IssueType::NotSupported, Some("meta.extension".into())),
        LineError::Rejected(_) => (IssueType::Invalid, None),
        LineError::Conflict {
            rtype, conflict, ..
        } => {
            let code = match conflict {
                ImportConflict::Exists
                | ImportConflict::VersionExists(_)
                | ImportConflict::Duplicate { .. }
                | ImportConflict::LastUpdatedTaken(_) => IssueType::Duplicate,
                ImportConflict::OutOfOrder { .. } | ImportConflict::NoVersionFits { .. } => {
                    IssueType::Conflict
                }
                ImportConflict::Future { .. } => IssueType::Value,
            };
            let expression = match conflict {
                ImportConflict::Exists | ImportConflict::Duplicate { .. } => format!("{rtype}.id"),
                ImportConflict::VersionExists(_) => format!("{rtype}.meta.versionId"),
                _ => format!("{rtype}.meta.lastUpdated"),
            };
            (code, Some(expression))
        }
    }
}

fn details(error: &LineError) -> String {
    match error {
        LineError::TooLong { bytes, limit } => {
            format!("The line is {bytes} bytes long; lines longer than {limit} bytes are not read.")
        }
        LineError::Resource(e) => format!("{e}."),
        LineError::WrongType { declared, found } => {
            format!("The input holds {declared} resources; this line is a {found}.")
        }
        LineError::NotImportable(rtype) => {
            format!("{rtype} resources cannot be processed by import.")
        }
        LineError::MissingId(rtype) => {
            format!("The {rtype} has no id; import keeps ids, so every resource needs one.")
        }
        LineError::BadMeta { element, value } => match *element {
            "meta.versionId" => format!("{element} {value} is not a positive integer."),
            "meta.lastUpdated" => format!("{element} {value} is not a FHIR instant."),
            _ => format!("{element} {value} is not a JSON object."),
        },
        LineError::ConditionalReference(reference) => format!(
            "Given conditional reference '{reference}' doesn't resolve to a resource: an initial load does not resolve conditional references."
        ),
        LineError::SoftDeleted => "Soft-deleted resources are only imported by an IncrementalLoad; an InitialLoad only creates.".into(),
        LineError::Rejected(_) => "Rejected by the import validator.".into(),
        LineError::Conflict {
            rtype,
            id,
            version,
            conflict,
        } => conflict_details(*rtype, id, *version, conflict),
    }
}

/// Duplicates do not name the line that won: a line displaced early may see
/// its winner displaced in turn, and the record must not depend on the order
/// parallel ranges write in.
fn conflict_details(
    rtype: ResourceType,
    id: &ResourceId,
    version: Option<u64>,
    conflict: &ImportConflict,
) -> String {
    match (conflict, version) {
        (ImportConflict::Exists, _) => {
            format!("{rtype}/{id} already exists; an initial load only creates resources.")
        }
        (ImportConflict::VersionExists(v), _) => {
            format!("{rtype}/{id} version {v} already exists.")
        }
        (ImportConflict::Duplicate { .. }, Some(v)) => format!(
            "{rtype}/{id} version {v} is also on another line of this import, which is the one imported (the earliest meta.lastUpdated wins, then the first line)."
        ),
        (ImportConflict::Duplicate { .. }, None) => format!(
            "{rtype}/{id} is also on another line of this import, which is the one imported (the highest meta.versionId wins, then the latest meta.lastUpdated, then the first line)."
        ),
        (ImportConflict::LastUpdatedTaken(v), _) => format!(
            "{rtype}/{id} has no meta.versionId, and version {v} already has its meta.lastUpdated."
        ),
        (
            ImportConflict::OutOfOrder {
                version,
                last_updated,
                neighbour,
                neighbour_last_updated,
            },
            _,
        ) => format!(
            "{rtype}/{id} version {version} at {last_updated} is out of order with version {neighbour} at {neighbour_last_updated}: meta.lastUpdated must increase with meta.versionId."
        ),
        (ImportConflict::Future { last_updated, now }, _) => format!(
            "{rtype}/{id} has meta.lastUpdated {last_updated}, later than the import's instant {now}."
        ),
        (ImportConflict::NoVersionFits { last_updated }, _) => format!(
            "{rtype}/{id} has no meta.versionId, and no free version number lies between the versions around its meta.lastUpdated {last_updated}; versions below 1 (allowNegativeVersions) are not supported by this server."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(mode: ImportMode, declared: Option<&str>) -> Rules {
        Rules {
            mode,
            declared: declared.and_then(ResourceType::parse),
        }
    }

    fn line(n: u64) -> LineRef {
        LineRef {
            input: 0,
            line: n,
            offset: 10 * n,
        }
    }

    fn checked(r: &Rules, text: &str) -> Result<ImportItem, LineError> {
        let (resource, id) = parse(r, text.as_bytes())?;
        item(r, line(1), resource, id)
    }

    fn outcome(error: &LineError) -> Value {
        serde_json::from_slice(&record(line(4), error)).unwrap()
    }

    #[test]
    fn host_checks() {
        let r = rules(ImportMode::IncrementalLoad, Some("Patient"));
        let err = |text: &str| checked(&r, text).unwrap_err();
        assert!(matches!(
            err("{"),
            LineError::Resource(ResourceError::Json(_))
        ));
        assert!(matches!(
            err("[1]"),
            LineError::Resource(ResourceError::NotObject)
        ));
        assert!(matches!(
            err(r#"{"resourceType":"Observation","id":"o"}"#),
            LineError::WrongType { .. }
        ));
        assert!(matches!(
            err(r#"{"resourceType":"Patient"}"#),
            LineError::MissingId(_)
        ));
        assert!(matches!(
            err(r#"{"resourceType":"Patient","id":"a_b"}"#),
            LineError::Resource(ResourceError::BadId(_))
        ));
        let any = rules(ImportMode::IncrementalLoad, None);
        assert!(matches!(
            checked(&any, r#"{"resourceType":"SearchParameter","id":"s"}"#),
            Err(LineError::NotImportable(_))
        ));
        for bad in [r#""0""#, r#""-1""#, r#""1.0""#, "3", r#""+2""#, r#""x""#] {
            let text =
                format!(r#"{{"resourceType":"Patient","id":"a","meta":{{"versionId":{bad}}}}}"#);
            assert!(
                matches!(
                    err(&text),
                    LineError::BadMeta {
                        element: "meta.versionId",
                        ..
                    }
                ),
                "{bad}"
            );
        }
        for bad in [r#""2024-01-01""#, r#""yesterday""#, "5"] {
            let text =
                format!(r#"{{"resourceType":"Patient","id":"a","meta":{{"lastUpdated":{bad}}}}}"#);
            assert!(
                matches!(
                    err(&text),
                    LineError::BadMeta {
                        element: "meta.lastUpdated",
                        ..
                    }
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn incremental_keeps_meta_and_reads_the_soft_delete_marker() {
        let r = rules(ImportMode::IncrementalLoad, None);
        let item = checked(
            &r,
            r#"{"resourceType":"Patient","id":"a","meta":{"versionId":"4","lastUpdated":"2023-10-27T04:00:00.000Z","extension":[{"url":"http://azurehealthcareapis.com/data-extensions/deleted-state","valueString":"soft-deleted"}]},"link":[{"other":{"reference":"Patient?identifier=x|y"}}]}"#,
        )
        .unwrap();
        assert_eq!(item.version, Some(4));
        assert_eq!(
            item.last_updated,
            Some(Instant::parse("2023-10-27T04:00:00Z").unwrap())
        );
        assert!(item.deleted);
        let plain = checked(&r, r#"{"resourceType":"Patient","id":"a"}"#).unwrap();
        assert_eq!(
            (plain.version, plain.last_updated, plain.deleted),
            (None, None, false)
        );
    }

    #[test]
    fn initial_load_refuses_conditional_references_and_soft_deletes() {
        let r = rules(ImportMode::InitialLoad, None);
        let conditional = checked(
            &r,
            r#"{"resourceType":"Observation","id":"o","subject":{"reference":"Patient?identifier=x|y"}}"#,
        );
        assert!(
            matches!(conditional, Err(LineError::ConditionalReference(ref r)) if r == "Patient?identifier=x|y")
        );
        let deleted = checked(
            &r,
            r#"{"resourceType":"Patient","id":"a","meta":{"extension":[{"url":"http://azurehealthcareapis.com/data-extensions/deleted-state","valueString":"soft-deleted"}]}}"#,
        );
        assert!(matches!(deleted, Err(LineError::SoftDeleted)));
        let claimed = checked(
            &r,
            r#"{"resourceType":"Patient","id":"a","meta":{"versionId":"7","lastUpdated":"2020-01-01T00:00:00Z"},"managingOrganization":{"reference":"Organization/1"}}"#,
        )
        .unwrap();
        assert_eq!(
            claimed.precedence,
            (7, Instant::parse("2020-01-01T00:00:00Z").unwrap())
        );
        assert_eq!((claimed.version, claimed.last_updated), (None, None));
        // The walk leaves the body as it was.
        assert_eq!(
            claimed.resource.body["managingOrganization"]["reference"],
            "Organization/1"
        );
        let unclaimed = checked(&r, r#"{"resourceType":"Patient","id":"b"}"#).unwrap();
        assert_eq!(unclaimed.precedence, (0, Instant::MIN));
    }

    #[test]
    fn records_locate_the_line() {
        let json = outcome(&LineError::MissingId(
            ResourceType::parse("Patient").unwrap(),
        ));
        assert_eq!(
            json,
            json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "error",
                "code": "required",
                "details": {"text": "The Patient has no id; import keeps ids, so every resource needs one."},
                "diagnostics": "Failed to process resource at line: 4 with stream start offset: 40",
                "expression": ["Patient.id"]
            }]})
        );
        let rejected = outcome(&LineError::Rejected(vec![
            Issue {
                severity: crate::fhir::IssueSeverity::Error,
                code: IssueType::Value,
                diagnostics: Some("bad date".into()),
                expression: vec!["Patient.birthDate".into()],
            },
            Issue {
                severity: crate::fhir::IssueSeverity::Error,
                code: IssueType::Structure,
                diagnostics: None,
                expression: vec![],
            },
        ]));
        assert_eq!(rejected["issue"].as_array().unwrap().len(), 2);
        assert_eq!(rejected["issue"][0]["details"]["text"], "bad date");
        assert_eq!(rejected["issue"][1]["code"], "structure");
        let record = record(
            line(4),
            &LineError::Conflict {
                rtype: ResourceType::parse("Patient").unwrap(),
                id: ResourceId::parse("a").unwrap(),
                version: Some(2),
                conflict: ImportConflict::Duplicate { winner: line(1) },
            },
        );
        assert!(!record.contains(&b'\n'));
        let json: Value = serde_json::from_slice(&record).unwrap();
        assert_eq!(json["issue"][0]["code"], "duplicate");
        assert_eq!(
            json["issue"][0]["details"]["text"],
            "Patient/a version 2 is also on another line of this import, which is the one imported (the earliest meta.lastUpdated wins, then the first line)."
        );
    }
}
