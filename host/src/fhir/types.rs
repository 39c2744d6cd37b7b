//! The R4 resource types, read once from the vendored Patient
//! CompartmentDefinition (it names every R4 resource type exactly once), so the
//! list is not maintained by hand.

use std::fmt;
use std::sync::OnceLock;

use serde::Deserialize;

pub(crate) const COMPARTMENT_DEFINITION: &str =
    include_str!("../../assets/fhir-r4/CompartmentDefinition-patient.json");

#[derive(Deserialize)]
pub(crate) struct CompartmentDefinition {
    pub resource: Vec<CompartmentResource>,
}

#[derive(Deserialize)]
pub(crate) struct CompartmentResource {
    pub code: String,
    #[serde(default)]
    pub param: Vec<String>,
}

pub(crate) fn compartment_definition() -> &'static CompartmentDefinition {
    static DEF: OnceLock<CompartmentDefinition> = OnceLock::new();
    DEF.get_or_init(|| {
        serde_json::from_str(COMPARTMENT_DEFINITION)
            .expect("vendored CompartmentDefinition is valid JSON (checked by tests)")
    })
}

fn names() -> &'static [&'static str] {
    static NAMES: OnceLock<Vec<&'static str>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<&'static str> = compartment_definition()
            .resource
            .iter()
            .map(|r| &*Box::leak(r.code.clone().into_boxed_str()))
            .collect();
        // `Parameters` is an R4 resource that CompartmentDefinition omits
        // because it is never stored; it still has to parse (request bodies).
        names.push("Parameters");
        names.sort_unstable();
        names
    })
}

/// A known R4 resource type. Copy, compares by name.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(&'static str);

impl ResourceType {
    pub fn parse(name: &str) -> Option<Self> {
        let names = names();
        names
            .binary_search(&name)
            .ok()
            .map(|i| ResourceType(names[i]))
    }

    pub fn as_str(self) -> &'static str {
        self.0
    }

    /// Every R4 resource type, sorted by name.
    pub fn all() -> impl Iterator<Item = ResourceType> {
        names().iter().map(|n| ResourceType(n))
    }

    /// Whether resources of this type can be stored and served by the REST API.
    /// `Parameters` and `OperationOutcome` only ever travel in messages.
    pub fn is_storable(self) -> bool {
        !matches!(self.0, "Parameters" | "OperationOutcome")
    }
}

impl serde::Serialize for ResourceType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> serde::Deserialize<'de> for ResourceType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ResourceType::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("'{s}' is not an R4 resource type")))
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knows_the_r4_types() {
        assert_eq!(ResourceType::all().count(), 146);
        for t in [
            "Patient",
            "Observation",
            "Bundle",
            "Binary",
            "Parameters",
            "Group",
        ] {
            assert_eq!(ResourceType::parse(t).map(|t| t.as_str()), Some(t));
        }
        for t in ["patient", "Patients", "", "Project", "BulkDataExport"] {
            assert!(ResourceType::parse(t).is_none(), "{t}");
        }
    }
}
