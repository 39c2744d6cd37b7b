//! A resource as it crosses into Hearth: checked once (JSON object, known
//! `resourceType`, valid `id`), then normalised for storage.

use serde_json::{Map, Value};

use super::{Instant, ResourceId, ResourceType};

/// Why bytes are not an acceptable resource. Mapped to 400 at the HTTP edge.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResourceError {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error("the body is not a JSON object")]
    NotObject,
    #[error("the resource has no resourceType")]
    MissingType,
    #[error("'{0}' is not an R4 resource type")]
    UnknownType(String),
    #[error("'{0}' is not a valid resource id (1-64 of A-Z a-z 0-9 - .)")]
    BadId(String),
}

/// A parsed resource whose type is known and whose `id`, when present, is valid.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub rtype: ResourceType,
    pub id: Option<ResourceId>,
    pub body: Map<String, Value>,
}

impl Resource {
    pub fn from_slice(bytes: &[u8]) -> Result<Self, ResourceError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| ResourceError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    pub fn from_value(value: Value) -> Result<Self, ResourceError> {
        let Value::Object(body) = value else {
            return Err(ResourceError::NotObject);
        };
        let rtype = match body.get("resourceType") {
            Some(Value::String(t)) => {
                ResourceType::parse(t).ok_or_else(|| ResourceError::UnknownType(t.clone()))?
            }
            Some(other) => return Err(ResourceError::UnknownType(other.to_string())),
            None => return Err(ResourceError::MissingType),
        };
        let id = match body.get("id") {
            None => None,
            Some(Value::String(s)) => {
                Some(ResourceId::parse(s).ok_or_else(|| ResourceError::BadId(s.clone()))?)
            }
            Some(other) => return Err(ResourceError::BadId(other.to_string())),
        };
        Ok(Resource { rtype, id, body })
    }

    /// Serialises the resource for storage: compact JSON, `resourceType`, `id`
    /// and `meta` first, `meta.versionId` / `meta.lastUpdated` set by the
    /// server (first in `meta`); every other member keeps its order and its
    /// exact text (numbers keep their precision: serde_json runs with
    /// `arbitrary_precision`). Writes straight from the parsed tree: this is
    /// on the bulk write path, so nothing is cloned.
    pub fn to_stored_bytes(&self, id: &ResourceId, version: u64, last_updated: Instant) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        out.extend_from_slice(b"{\"resourceType\":\"");
        out.extend_from_slice(self.rtype.as_str().as_bytes());
        // Ids and instants are plain ASCII without quotes or escapes (their
        // syntax is checked), so they need no JSON escaping.
        out.extend_from_slice(b"\",\"id\":\"");
        out.extend_from_slice(id.as_str().as_bytes());
        out.extend_from_slice(b"\",\"meta\":{\"versionId\":\"");
        out.extend_from_slice(version.to_string().as_bytes());
        out.extend_from_slice(b"\",\"lastUpdated\":\"");
        out.extend_from_slice(last_updated.to_fhir().as_bytes());
        out.push(b'"');
        if let Some(Value::Object(meta)) = self.body.get("meta") {
            let rest = meta
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "versionId" | "lastUpdated"));
            write_members(&mut out, rest);
        }
        out.push(b'}');
        let rest = self
            .body
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "resourceType" | "id" | "meta"));
        write_members(&mut out, rest);
        out.push(b'}');
        out
    }
}

/// Appends `,"key":value` for each member.
fn write_members<'a>(out: &mut Vec<u8>, members: impl Iterator<Item = (&'a String, &'a Value)>) {
    for (k, v) in members {
        out.push(b',');
        // Writing JSON values into a Vec cannot fail: string keys, no I/O.
        let _ = serde_json::to_writer(&mut *out, k);
        out.push(b':');
        let _ = serde_json::to_writer(&mut *out, v);
    }
}

/// Calls `f` on every `reference` string of every Reference in `value`, at any depth.
pub fn for_each_reference_mut(value: &mut Value, f: &mut impl FnMut(&mut String)) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                match v {
                    Value::String(s) if k == "reference" => f(s),
                    _ => for_each_reference_mut(v, f),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| for_each_reference_mut(v, f)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(
            Resource::from_slice(b"{"),
            Err(ResourceError::Json(_))
        ));
        assert_eq!(Resource::from_slice(b"[]"), Err(ResourceError::NotObject));
        assert_eq!(Resource::from_slice(b"{}"), Err(ResourceError::MissingType));
        assert_eq!(
            Resource::from_slice(br#"{"resourceType":"Pateint"}"#),
            Err(ResourceError::UnknownType("Pateint".into()))
        );
        assert_eq!(
            Resource::from_slice(br#"{"resourceType":"Patient","id":"a b"}"#),
            Err(ResourceError::BadId("a b".into()))
        );
    }

    #[test]
    fn normalises_meta_and_keeps_the_rest_exact() {
        let r = Resource::from_slice(
            br#"{ "valueDecimal": 1.50, "resourceType": "Observation",
                  "meta": {"versionId": "9", "tag": [{"code": "x"}]}, "status": "final" }"#,
        )
        .unwrap();
        let id = ResourceId::parse("o1").unwrap();
        let bytes = r.to_stored_bytes(&id, 3, Instant::from_millis(1_700_000_000_123));
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"resourceType":"Observation","id":"o1","meta":{"versionId":"3","lastUpdated":"2023-11-14T22:13:20.123Z","tag":[{"code":"x"}]},"valueDecimal":1.50,"status":"final"}"#
        );
    }

    #[test]
    fn visits_nested_references() {
        let mut v: Value = serde_json::from_str(
            r#"{"subject":{"reference":"urn:uuid:1"},"x":[{"y":{"reference":"Patient/2"}}]}"#,
        )
        .unwrap();
        let mut seen = vec![];
        for_each_reference_mut(&mut v, &mut |s| {
            seen.push(s.clone());
            s.push('!');
        });
        assert_eq!(seen, ["urn:uuid:1", "Patient/2"]);
        assert_eq!(v["x"][0]["y"]["reference"], "Patient/2!");
    }
}
