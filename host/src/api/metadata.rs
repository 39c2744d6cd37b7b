//! `GET /metadata`: the CapabilityStatement, built once per router from what
//! the API actually implements.

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use crate::fhir::{Instant, ResourceType};

use super::response::fhir_json;

/// An operation the server implements, as `rest.operation` announces it.
pub struct Operation {
    pub name: &'static str,
    /// Canonical URL of its OperationDefinition; a path (`/...`) names one
    /// this server serves itself, under its base URL.
    pub definition: &'static str,
    /// What clients must know of Hearth's behaviour beyond the definition
    /// (`rest.operation.documentation`, markdown).
    pub documentation: Option<&'static str>,
}

/// The operations implemented. Any at all makes the statement instantiate
/// the Bulk Data CapabilityStatement.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        name: "export",
        definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
        documentation: Some(SINK_DOCUMENTATION),
    },
    Operation {
        name: "patient-export",
        definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
        documentation: Some(SINK_DOCUMENTATION),
    },
    Operation {
        name: "group-export",
        definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
        documentation: Some(GROUP_EXPORT_DOCUMENTATION),
    },
    // No standard defines Azure's `$import`: Hearth publishes its own.
    Operation {
        name: "import",
        definition: super::import::DEFINITION_PATH,
        documentation: None,
    },
];

/// Hearth's own kick-off parameter, at every export level.
const SINK_DOCUMENTATION: &str = "`_sink=<name>` (query, or a `Parameters` valueString): the output files go through the export sink the server configures under that name (for instance a de-identifying or a compressing one) instead of the default; an unknown name is a 400 that lists the configured ones. The manifest's `extension.sink` names it.";

/// The Bulk Data IG asks servers to document what `_since` does for members
/// added to a Group after it, and how Group membership is decided.
const GROUP_EXPORT_DOCUMENTATION: &str = "Members: `Group.member` Patients active at the export's transaction time (`inactive` and out-of-`period` entries excluded), nested Groups followed (each once), and for Groups with the Bulk Cohort `member-filter` modifier extension the Patients matching every filter query, evaluated by the configured `_typeFilter` engine. A `characteristic` or a filter that cannot be evaluated is refused (400); members that do not exist are reported in the error file. `_since`: members added to the Group after `_since` (by comparing the Group resolved as of `_since` with the Group at the transaction time) have their whole compartment exported; other members only resources changed after `_since`. Resources of the types in the server's `export.include_referenced` setting that exported resources reference are added once each.";

const BULK_DATA: &str = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data";

const INSTANCE_INTERACTIONS: [&str; 8] = [
    "read",
    "vread",
    "update",
    "delete",
    "create",
    "history-instance",
    "history-type",
    "search-type",
];

const SYSTEM_INTERACTIONS: [&str; 3] = ["transaction", "batch", "history-system"];

pub async fn handle(statement: Bytes) -> Response {
    fhir_json(StatusCode::OK, statement)
}

/// The statement's JSON. `date` is when it was built (server start).
/// `search_params`: list each type's search parameters, which only the
/// default type-filter plugin's engine is known to evaluate; with another
/// plugin configured the statement says `search-type` and nothing more.
pub fn capability_statement(
    base_url: &str,
    operations: &[Operation],
    search_params: bool,
) -> Bytes {
    let mut statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": Instant::now().to_fhir(),
        "kind": "instance",
        "software": { "name": "Hearth", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Hearth FHIR R4 server", "url": base_url },
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [rest(base_url, operations, search_params)],
    });
    if !operations.is_empty() {
        statement["instantiates"] = json!([BULK_DATA]);
    }
    Bytes::from(serde_json::to_vec(&statement).unwrap_or_default())
}

fn rest(base_url: &str, operations: &[Operation], search_params: bool) -> Value {
    let resources: Vec<Value> = ResourceType::all()
        .filter(|t| t.is_storable())
        .map(|t| resource(t, search_params))
        .collect();
    let mut rest = json!({
        "mode": "server",
        "resource": resources,
        "interaction": codes(&SYSTEM_INTERACTIONS),
    });
    if !operations.is_empty() {
        rest["operation"] = operations
            .iter()
            .map(|op| {
                let definition = if op.definition.starts_with('/') {
                    format!("{base_url}{}", op.definition)
                } else {
                    op.definition.to_owned()
                };
                let mut operation = json!({ "name": op.name, "definition": definition });
                if let Some(documentation) = op.documentation {
                    operation["documentation"] = json!(documentation);
                }
                operation
            })
            .collect();
    }
    rest
}

fn resource(rtype: ResourceType, search_params: bool) -> Value {
    let mut resource = json!({
        "type": rtype.as_str(),
        "interaction": codes(&INSTANCE_INTERACTIONS),
        "versioning": "versioned-update",
        "readHistory": true,
        "updateCreate": true,
        "conditionalCreate": false,
        "conditionalRead": "not-supported",
        "conditionalUpdate": false,
        "conditionalDelete": "not-supported",
    });
    if search_params {
        resource["searchParam"] = fhir_search::parameters(rtype.as_str())
            .into_iter()
            .map(|p| json!({ "name": p.code, "definition": p.definition, "type": p.kind }))
            .collect();
    }
    resource
}

fn codes(codes: &[&str]) -> Value {
    codes.iter().map(|code| json!({ "code": code })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_export_documents_since_and_membership() {
        let cs: Value =
            serde_json::from_slice(&capability_statement("http://h", OPERATIONS, false)).unwrap();
        let ops = cs["rest"][0]["operation"].as_array().unwrap();
        let group = ops.iter().find(|o| o["name"] == "group-export").unwrap();
        let doc = group["documentation"].as_str().unwrap();
        assert!(doc.contains("added to the Group after `_since`") && doc.contains("member-filter"));
    }

    #[test]
    fn operations_make_it_a_bulk_data_server() {
        let ops = [
            Operation {
                name: "export",
                definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
                documentation: None,
            },
            Operation {
                name: "import",
                definition: "/OperationDefinition/import",
                documentation: Some("imports"),
            },
        ];
        let cs: Value =
            serde_json::from_slice(&capability_statement("http://h", &ops, true)).unwrap();
        assert_eq!(cs["instantiates"], json!([BULK_DATA]));
        assert_eq!(
            cs["rest"][0]["operation"],
            json!([
                { "name": "export", "definition": ops[0].definition },
                { "name": "import", "definition": "http://h/OperationDefinition/import",
                  "documentation": "imports" },
            ])
        );
    }
}
