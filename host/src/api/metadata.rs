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
    /// Canonical URL of its OperationDefinition.
    pub definition: &'static str,
}

/// The operations implemented. Any at all makes the statement instantiate
/// the Bulk Data CapabilityStatement.
pub const OPERATIONS: &[Operation] = &[
    Operation {
        name: "export",
        definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
    },
    Operation {
        name: "patient-export",
        definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export",
    },
    Operation {
        name: "group-export",
        definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export",
    },
];

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
pub fn capability_statement(base_url: &str, operations: &[Operation]) -> Bytes {
    let mut statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": Instant::now().to_fhir(),
        "kind": "instance",
        "software": { "name": "Hearth", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Hearth FHIR R4 server", "url": base_url },
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [rest(operations)],
    });
    if !operations.is_empty() {
        statement["instantiates"] = json!([BULK_DATA]);
    }
    Bytes::from(serde_json::to_vec(&statement).unwrap_or_default())
}

fn rest(operations: &[Operation]) -> Value {
    let resources: Vec<Value> = ResourceType::all()
        .filter(|t| t.is_storable())
        .map(resource)
        .collect();
    let mut rest = json!({
        "mode": "server",
        "resource": resources,
        "interaction": codes(&SYSTEM_INTERACTIONS),
    });
    if !operations.is_empty() {
        rest["operation"] = operations
            .iter()
            .map(|op| json!({ "name": op.name, "definition": op.definition }))
            .collect();
    }
    rest
}

fn resource(rtype: ResourceType) -> Value {
    json!({
        "type": rtype.as_str(),
        "interaction": codes(&INSTANCE_INTERACTIONS),
        "versioning": "versioned-update",
        "readHistory": true,
        "updateCreate": true,
        "conditionalCreate": false,
        "conditionalRead": "not-supported",
        "conditionalUpdate": false,
        "conditionalDelete": "not-supported",
    })
}

fn codes(codes: &[&str]) -> Value {
    codes.iter().map(|code| json!({ "code": code })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_make_it_a_bulk_data_server() {
        let ops = [Operation {
            name: "export",
            definition: "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export",
        }];
        let cs: Value = serde_json::from_slice(&capability_statement("http://h", &ops)).unwrap();
        assert_eq!(cs["instantiates"], json!([BULK_DATA]));
        assert_eq!(
            cs["rest"][0]["operation"],
            json!([{ "name": "export", "definition": ops[0].definition }])
        );
    }
}
