//! Patient compartment membership, derived from the official R4
//! CompartmentDefinition: for each resource type, the search parameters that
//! link it to a patient; for each parameter, the element paths its FHIRPath
//! expression names. Membership is "a Reference at one of those paths points
//! at `Patient/{id}`".

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::types::compartment_definition;
use super::{ResourceId, ResourceType};

const SEARCH_PARAMETERS: &str = include_str!("../../assets/fhir-r4/search-parameters.json");

#[derive(Deserialize)]
struct Bundle {
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    resource: SearchParameter,
}

#[derive(Deserialize)]
struct SearchParameter {
    code: String,
    #[serde(default)]
    base: Vec<String>,
    #[serde(default)]
    expression: Option<String>,
}

/// Element paths (below the resource root) whose References decide membership.
type Paths = Vec<Vec<String>>;

fn paths_by_type() -> &'static HashMap<&'static str, Paths> {
    static PATHS: OnceLock<HashMap<&'static str, Paths>> = OnceLock::new();
    PATHS.get_or_init(|| {
        let bundle: Bundle = serde_json::from_str(SEARCH_PARAMETERS)
            .expect("vendored search-parameters.json is valid (checked by tests)");
        let mut expressions: HashMap<(&str, &str), &str> = HashMap::new();
        for e in &bundle.entry {
            if let Some(expr) = &e.resource.expression {
                for base in &e.resource.base {
                    expressions.insert((base.as_str(), e.resource.code.as_str()), expr.as_str());
                }
            }
        }
        let mut out = HashMap::new();
        for res in &compartment_definition().resource {
            let Some(rtype) = ResourceType::parse(&res.code) else {
                continue;
            };
            let mut paths: Paths = Vec::new();
            for param in &res.param {
                if let Some(expr) = expressions.get(&(res.code.as_str(), param.as_str())) {
                    for p in paths_in_expression(rtype.as_str(), expr) {
                        if !paths.contains(&p) {
                            paths.push(p);
                        }
                    }
                }
            }
            if !paths.is_empty() {
                out.insert(rtype.as_str(), paths);
            }
        }
        out
    })
}

/// The element paths a search-parameter expression names for `rtype`:
/// `Observation.subject.where(resolve() is Patient) | Group.member.entity`
/// gives `[["subject"]]` for Observation. Filters such as `where(...)` only
/// narrow the target type, which the `Patient/` prefix check does anyway.
fn paths_in_expression(rtype: &str, expr: &str) -> Vec<Vec<String>> {
    let prefix = format!("{rtype}.");
    expr.split('|')
        .map(str::trim)
        .filter_map(|part| part.strip_prefix(&prefix))
        .map(|rest| {
            let rest = rest.split(".where(").next().unwrap_or(rest);
            rest.split('.').map(str::to_owned).collect()
        })
        .collect()
}

/// Whether a resource of `rtype` can be in a patient's compartment at all:
/// the CompartmentDefinition links the type to a patient (Patient itself
/// included). Patient- and Group-level exports return only these types.
pub fn can_be_in_compartment(rtype: ResourceType) -> bool {
    rtype.as_str() == "Patient" || paths_by_type().contains_key(rtype.as_str())
}

/// The ids of the patients whose compartment holds this resource, sorted and
/// without duplicates. A Patient is in its own compartment.
pub fn patients_of(rtype: ResourceType, id: &ResourceId, body: &Map<String, Value>) -> Vec<String> {
    let mut out = Vec::new();
    if rtype.as_str() == "Patient" {
        out.push(id.as_str().to_owned());
    }
    if let Some(paths) = paths_by_type().get(rtype.as_str()) {
        for path in paths {
            collect(body, path, &mut out);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn collect(obj: &Map<String, Value>, path: &[String], out: &mut Vec<String>) {
    let Some((head, rest)) = path.split_first() else {
        if let Some(Value::String(r)) = obj.get("reference") {
            if let Some(pid) = patient_id(r) {
                out.push(pid.to_owned());
            }
        }
        return;
    };
    match obj.get(head.as_str()) {
        Some(Value::Object(o)) => collect(o, rest, out),
        Some(Value::Array(items)) => {
            for item in items {
                if let Value::Object(o) = item {
                    collect(o, rest, out);
                }
            }
        }
        _ => {}
    }
}

/// `Patient/123`, `Patient/123/_history/2` and absolute `.../Patient/123` all name patient 123.
fn patient_id(reference: &str) -> Option<&str> {
    let at = if reference.starts_with("Patient/") {
        0
    } else {
        reference.rfind("/Patient/").map(|i| i + 1)?
    };
    let id = reference[at + "Patient/".len()..].split('/').next()?;
    super::id::is_valid(id).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(json: &str) -> Vec<String> {
        let r = crate::fhir::resource::Resource::from_slice(json.as_bytes()).unwrap();
        let id =
            r.id.clone()
                .unwrap_or_else(|| ResourceId::parse("x").unwrap());
        patients_of(r.rtype, &id, &r.body)
    }

    #[test]
    fn derives_paths_from_the_definitions() {
        let p = paths_by_type();
        assert_eq!(
            p["Observation"],
            vec![vec!["subject".to_string()], vec!["performer".to_string()]]
        );
        assert_eq!(
            p["Procedure"],
            vec![
                vec!["subject".to_string()],
                vec!["performer".into(), "actor".into()]
            ]
        );
        assert_eq!(p["Patient"], vec![vec!["link".to_string(), "other".into()]]);
        assert!(!p.contains_key("Organization"));
        let can = |name| can_be_in_compartment(ResourceType::parse(name).unwrap());
        assert!(can("Patient") && can("Observation") && can("Encounter"));
        assert!(!can("Organization") && !can("Medication") && !can("Practitioner"));
    }

    #[test]
    fn membership() {
        assert_eq!(
            of(
                r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"},"performer":[{"reference":"Practitioner/d"},{"reference":"http://x/fhir/Patient/p2/_history/3"}]}"#
            ),
            ["p1", "p2"]
        );
        assert_eq!(
            of(
                r#"{"resourceType":"Patient","id":"me","link":[{"other":{"reference":"Patient/twin"}}]}"#
            ),
            ["me", "twin"]
        );
        assert_eq!(
            of(
                r#"{"resourceType":"Group","member":[{"entity":{"reference":"Patient/a"}},{"entity":{"reference":"Patient/a"}}]}"#
            ),
            ["a"]
        );
        assert!(
            of(r#"{"resourceType":"Organization","partOf":{"reference":"Patient/a"}}"#).is_empty()
        );
        assert!(
            of(r#"{"resourceType":"Observation","subject":{"reference":"Group/g"}}"#).is_empty()
        );
    }
}
