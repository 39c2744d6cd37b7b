//! Literal references (`Reference.reference`) and reference search values.

use crate::model;

/// What a literal reference points to. Versions (`/_history/n`) are dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target<'a> {
    /// `Type/id`, relative to this server.
    Local {
        ty: &'a str,
        id: &'a str,
    },
    /// An absolute URL or URN; `ty`/`id` when it ends in `Type/id`.
    Absolute {
        url: &'a str,
        ty: Option<&'a str>,
        id: Option<&'a str>,
    },
    /// `#id`: a resource contained in the referring one.
    Contained(&'a str),
    Other,
}

pub(crate) fn parse(text: &str) -> Target<'_> {
    let text = text.find("/_history/").map_or(text, |i| &text[..i]);
    if let Some(id) = text.strip_prefix('#') {
        return if id.is_empty() {
            Target::Other
        } else {
            Target::Contained(id)
        };
    }
    if text.contains("://") || text.starts_with("urn:") {
        let (ty, id) = tail(text).unzip();
        return Target::Absolute { url: text, ty, id };
    }
    match tail(text) {
        Some((ty, id)) if text.len() == ty.len() + 1 + id.len() => Target::Local { ty, id },
        _ => Target::Other,
    }
}

/// `(Type, id)` when `text` ends in `Type/id` with a known resource type.
fn tail(text: &str) -> Option<(&str, &str)> {
    let (rest, id) = text.rsplit_once('/')?;
    let ty = rest.rsplit('/').next()?;
    (model::is_resource(ty) && !id.is_empty()).then_some((ty, id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_literal_references() {
        assert_eq!(
            parse("Patient/1"),
            Target::Local {
                ty: "Patient",
                id: "1"
            }
        );
        assert_eq!(
            parse("Patient/1/_history/3"),
            Target::Local {
                ty: "Patient",
                id: "1"
            }
        );
        assert_eq!(
            parse("http://x.org/fhir/Patient/1/_history/3"),
            Target::Absolute {
                url: "http://x.org/fhir/Patient/1",
                ty: Some("Patient"),
                id: Some("1")
            }
        );
        assert_eq!(
            parse("urn:uuid:abc"),
            Target::Absolute {
                url: "urn:uuid:abc",
                ty: None,
                id: None
            }
        );
        assert_eq!(parse("#c1"), Target::Contained("c1"));
        for other in ["#", "Patient/", "Nope/1", "a/Patient/1", "1", ""] {
            assert_eq!(parse(other), Target::Other, "{other}");
        }
    }
}
