//! `_elements`: which top-level elements each exported type keeps, and the
//! `SUBSETTED` tag that says a resource was cut.

use std::collections::{BTreeSet, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::fhir::ResourceType;

const SUBSETTED_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";
const SUBSETTED_CODE: &str = "SUBSETTED";

/// Kept whatever `_elements` says: without them a line is not a resource.
const ALWAYS: [&str; 3] = ["resourceType", "id", "meta"];

const SCHEMA: &str = include_str!("../../assets/fhir-r4/fhir.schema.json");

/// The elements each type keeps, for the types `_elements` applies to.
#[derive(Debug, Default)]
pub struct Elements {
    by_type: HashMap<ResourceType, BTreeSet<String>>,
}

impl Elements {
    /// `requested` as parsed at the edge: `(None, name)` for every type,
    /// `(Some(t), name)` for `t` only. A type no entry applies to is
    /// exported whole.
    pub fn new(
        requested: &[(Option<ResourceType>, String)],
        types: impl IntoIterator<Item = ResourceType>,
    ) -> Elements {
        let mut by_type = HashMap::new();
        for rtype in types {
            let mut keep: BTreeSet<String> = requested
                .iter()
                .filter(|(scope, _)| scope.is_none_or(|t| t == rtype))
                .map(|(_, name)| name.clone())
                .collect();
            if keep.is_empty() {
                continue;
            }
            keep.extend(ALWAYS.iter().map(|s| (*s).to_owned()));
            keep.extend(mandatory(rtype).iter().cloned());
            by_type.insert(rtype, keep);
        }
        Elements { by_type }
    }

    pub fn for_type(&self, rtype: ResourceType) -> Option<&BTreeSet<String>> {
        self.by_type.get(&rtype)
    }
}

/// Drops every top-level element not in `keep` and tags the resource
/// `SUBSETTED` (once).
pub fn subset(resource: &mut Map<String, Value>, keep: &BTreeSet<String>) {
    resource.retain(|name, _| keep.contains(name));
    let meta = resource
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    let Value::Object(meta) = meta else {
        return;
    };
    let tags = meta.entry("tag").or_insert_with(|| json!([]));
    if let Value::Array(tags) = tags {
        let tagged = tags
            .iter()
            .any(|t| t["system"] == SUBSETTED_SYSTEM && t["code"] == SUBSETTED_CODE);
        if !tagged {
            tags.push(json!({"system": SUBSETTED_SYSTEM, "code": SUBSETTED_CODE}));
        }
    }
}

/// The type's mandatory top-level elements as the vendored R4 JSON schema
/// lists them (`required`). The schema marks only complex ones
/// (`Observation.code`, `Encounter.class`...): a mandatory primitive such as
/// `Observation.status` is kept only when asked for.
fn mandatory(rtype: ResourceType) -> &'static [String] {
    #[derive(Deserialize)]
    struct Schema {
        definitions: HashMap<String, Definition>,
    }
    #[derive(Deserialize)]
    struct Definition {
        #[serde(default)]
        required: Vec<String>,
    }
    static REQUIRED: OnceLock<HashMap<String, Vec<String>>> = OnceLock::new();
    let required = REQUIRED.get_or_init(|| {
        // Read once, on the first `_elements` export. A schema that does
        // not parse (checked by the tests) only costs the extra elements.
        serde_json::from_str::<Schema>(SCHEMA)
            .map(|schema| {
                schema
                    .definitions
                    .into_iter()
                    .map(|(name, d)| (name, d.required))
                    .collect()
            })
            .unwrap_or_default()
    });
    required.get(rtype.as_str()).map_or(&[], Vec::as_slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(name: &str) -> ResourceType {
        ResourceType::parse(name).unwrap()
    }

    #[test]
    fn keeps_listed_always_and_mandatory_elements() {
        let requested = vec![
            (None, "status".to_owned()),
            (Some(rt("Patient")), "gender".to_owned()),
        ];
        let e = Elements::new(
            &requested,
            [rt("Observation"), rt("Patient"), rt("Condition")],
        );
        let obs: Vec<&str> = e
            .for_type(rt("Observation"))
            .unwrap()
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(obs, ["code", "id", "meta", "resourceType", "status"]);
        let patient = e.for_type(rt("Patient")).unwrap();
        assert!(patient.contains("gender") && patient.contains("status"));
        assert!(e.for_type(rt("Condition")).unwrap().contains("subject"));

        let only_patient = Elements::new(&requested[1..], [rt("Observation"), rt("Patient")]);
        assert!(only_patient.for_type(rt("Observation")).is_none());
    }

    #[test]
    fn subset_tags_once() {
        let keep: BTreeSet<String> = ["resourceType", "id", "meta", "status"]
            .map(String::from)
            .into();
        let mut r: Map<String, Value> = serde_json::from_str(
            r#"{"resourceType":"Observation","id":"o","meta":{"versionId":"1","tag":[{"code":"x"}]},"status":"final","valueQuantity":{"value":1.50}}"#,
        )
        .unwrap();
        subset(&mut r, &keep);
        subset(&mut r, &keep);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"resourceType":"Observation","id":"o","meta":{"versionId":"1","tag":[{"code":"x"},{"system":"http://terminology.hl7.org/CodeSystem/v3-ObservationValue","code":"SUBSETTED"}]},"status":"final"}"#
        );
    }
}
