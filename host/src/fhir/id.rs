//! Logical ids: `[A-Za-z0-9\-\.]{1,64}` (FHIR R4 `id` datatype).

use std::fmt;

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceId(String);

impl ResourceId {
    pub fn parse(s: &str) -> Option<Self> {
        is_valid(s).then(|| ResourceId(s.to_owned()))
    }

    /// A fresh server-assigned id.
    pub fn generate() -> Self {
        ResourceId(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

pub fn is_valid(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

impl serde::Serialize for ResourceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// Checked like any id from outside: persisted records are input too.
impl<'de> serde::Deserialize<'de> for ResourceId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ResourceId::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("'{s}' is not a valid id")))
    }
}

impl fmt::Display for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ResourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_syntax() {
        for ok in ["a", "A-1.b", &"x".repeat(64), "123"] {
            assert!(ResourceId::parse(ok).is_some(), "{ok}");
        }
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65), "a_b"] {
            assert!(ResourceId::parse(bad).is_none(), "{bad}");
        }
        assert!(is_valid(ResourceId::generate().as_str()));
    }
}
