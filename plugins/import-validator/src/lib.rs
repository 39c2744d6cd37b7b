//! The default `import-validator-plugin`: each line must be a JSON object
//! with a known R4 `resourceType` (the file's declared type, when it has one)
//! and, when it has an `id`, a syntactically valid one. It never changes a
//! resource; profile validation is a later plugin's job.

wit_bindgen::generate!({ path: "../../wit", world: "import-validator-plugin" });

use std::collections::BTreeSet;
use std::sync::OnceLock;

use exports::hearth::plugin::import_validator::{Guest, GuestSession, Session, Verdict};
use hearth::plugin::types::{ErrorCode, Issue, PluginError, Severity};
use serde_json::Value;

/// The vendored Patient CompartmentDefinition names every R4 resource type
/// once; it is the host's source for the list too.
const COMPARTMENT_DEFINITION: &str =
    include_str!("../../../host/assets/fhir-r4/CompartmentDefinition-patient.json");

fn known_types() -> &'static BTreeSet<String> {
    static TYPES: OnceLock<BTreeSet<String>> = OnceLock::new();
    TYPES.get_or_init(|| {
        let def: Value = serde_json::from_str(COMPARTMENT_DEFINITION).unwrap_or(Value::Null);
        let mut types: BTreeSet<String> = def["resource"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["code"].as_str().map(str::to_owned))
            .collect();
        // Omitted by the CompartmentDefinition because never stored in a
        // patient compartment, but an R4 resource all the same.
        types.insert("Parameters".to_owned());
        types
    })
}

struct Component;

impl Guest for Component {
    type Session = Validator;
}

struct Validator {
    declared: Option<String>,
}

impl GuestSession for Validator {
    fn begin(resource_type: Option<String>) -> Result<Session, PluginError> {
        if let Some(t) = &resource_type
            && !known_types().contains(t)
        {
            return Err(PluginError {
                code: ErrorCode::InvalidInput,
                message: format!("'{t}' is not an R4 resource type"),
            });
        }
        Ok(Session::new(Validator {
            declared: resource_type,
        }))
    }

    fn validate(&self, ndjson: Vec<u8>) -> Result<Vec<Verdict>, PluginError> {
        let body = ndjson.strip_suffix(b"\n").unwrap_or(&ndjson);
        if body.is_empty() {
            return Ok(Vec::new());
        }
        Ok(body
            .split(|b| *b == b'\n')
            .map(|line| self.check(line))
            .collect())
    }
}

impl Validator {
    fn check(&self, line: &[u8]) -> Verdict {
        let reject = |code: &str, diagnostics: String, expression: &str| {
            Verdict::Reject(vec![Issue {
                severity: Severity::Error,
                code: code.to_owned(),
                diagnostics,
                expression: if expression.is_empty() {
                    Vec::new()
                } else {
                    vec![expression.to_owned()]
                },
            }])
        };
        let resource = match serde_json::from_slice::<Value>(line) {
            Ok(Value::Object(map)) => map,
            Ok(_) => return reject("structure", "the line is not a JSON object".into(), ""),
            Err(e) => return reject("structure", format!("the line is not JSON: {e}"), ""),
        };
        let rtype = match resource.get("resourceType") {
            Some(Value::String(t)) if known_types().contains(t) => t,
            Some(Value::String(t)) => {
                return reject(
                    "value",
                    format!("'{t}' is not an R4 resource type"),
                    "resourceType",
                );
            }
            _ => {
                return reject(
                    "required",
                    "resourceType is missing or not a string".into(),
                    "resourceType",
                );
            }
        };
        if let Some(declared) = &self.declared
            && declared != rtype
        {
            return reject(
                "invalid",
                format!("a {rtype} in a file declared to hold {declared}"),
                "resourceType",
            );
        }
        match resource.get("id") {
            None => Verdict::Accept,
            Some(Value::String(id)) if is_valid_id(id) => Verdict::Accept,
            Some(id) => reject(
                "value",
                format!("{id} is not a valid id ([A-Za-z0-9-.]{{1,64}})"),
                &format!("{rtype}.id"),
            ),
        }
    }
}

fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

export!(Component);
