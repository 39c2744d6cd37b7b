//! The rules file: which elements are removed, date-shifted, hashed or kept,
//! named by FHIRPath-like paths. Parsed once per output file.

use std::fmt;

use serde::Deserialize;

/// How far dates may move, in days either way, when the file does not say.
const DEFAULT_SHIFT_RANGE: u32 = 365;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RulesFile {
    #[serde(default = "default_range")]
    date_shift_range: u32,
    rules: Vec<RuleSpec>,
}

fn default_range() -> u32 {
    DEFAULT_SHIFT_RANGE
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    path: String,
    method: Method,
}

/// What a rule does to the elements it selects (and everything inside them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Method {
    /// Removed.
    Redact,
    /// Every full date inside moves by the export's shift, precision kept.
    DateShift,
    /// Every string inside replaced by a keyed hash; in references
    /// (`Type/id`) only the id part, so they still resolve.
    CryptoHash,
    /// Left as is, and no later rule looks inside.
    Keep,
}

/// Element shapes a `nodesByType('...')` selector recognises. The sink sees
/// JSON without the FHIR type model, so types are recognised by their value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A string `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    Date,
    /// A date, or a date with a time (`YYYY-MM-DDThh:mm...`).
    DateTime,
    /// A date with a time and a zone.
    Instant,
    /// An object with a string `reference`.
    Reference,
}

/// Where a rule's path starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// At a resource of this type; `None` for `*` / `Resource`.
    Resource(Option<String>),
    /// At any element of this shape, however deep.
    Shape(Shape),
}

/// One step of a path: an element name, or `name[x]` for a choice element
/// (`effective[x]` matches `effectiveDateTime`, `effectivePeriod`, ...).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Name(String),
    Choice(String),
}

impl Segment {
    pub fn matches(&self, key: &str) -> bool {
        match self {
            Segment::Name(name) => key == name,
            Segment::Choice(prefix) => key
                .strip_prefix(prefix.as_str())
                .and_then(|rest| rest.bytes().next())
                .is_some_and(|b| b.is_ascii_uppercase()),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub anchor: Anchor,
    pub segments: Vec<Segment>,
    pub method: Method,
}

#[derive(Clone, Debug)]
pub struct Rules {
    pub rules: Vec<Rule>,
    /// Dates move by 1 to this many days, earlier or later.
    pub date_shift_range: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RulesError {
    Json(String),
    Path { path: String, reason: &'static str },
    Range,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RulesError::Json(e) => write!(f, "the rules file is not valid: {e}"),
            RulesError::Path { path, reason } => write!(f, "rule path '{path}': {reason}"),
            RulesError::Range => f.write_str("dateShiftRange must be between 1 and 36500"),
        }
    }
}

impl std::error::Error for RulesError {}

/// The rules shipped with the plugin, used when the config names no file.
pub const DEFAULT_RULES: &str = include_str!("../default-rules.json");

impl Rules {
    pub fn parse(json: &str) -> Result<Rules, RulesError> {
        let file: RulesFile =
            serde_json::from_str(json).map_err(|e| RulesError::Json(e.to_string()))?;
        if !(1..=36_500).contains(&file.date_shift_range) {
            return Err(RulesError::Range);
        }
        let rules = file
            .rules
            .into_iter()
            .map(|spec| parse_rule(&spec.path, spec.method))
            .collect::<Result<_, _>>()?;
        Ok(Rules {
            rules,
            date_shift_range: file.date_shift_range,
        })
    }
}

fn parse_rule(path: &str, method: Method) -> Result<Rule, RulesError> {
    let error = |reason| RulesError::Path {
        path: path.to_owned(),
        reason,
    };
    let (anchor, rest) = if let Some(selector) = path.strip_prefix("nodesByType('") {
        let (name, rest) = selector
            .split_once("')")
            .ok_or_else(|| error("nodesByType('...') is not closed"))?;
        let shape = match name {
            "date" => Shape::Date,
            "dateTime" => Shape::DateTime,
            "instant" => Shape::Instant,
            "Reference" => Shape::Reference,
            _ => {
                return Err(error(
                    "nodesByType knows date, dateTime, instant and Reference",
                ));
            }
        };
        let rest = match rest {
            "" => None,
            _ => Some(
                rest.strip_prefix('.')
                    .ok_or_else(|| error("expected '.' after nodesByType(...)"))?,
            ),
        };
        (Anchor::Shape(shape), rest)
    } else {
        let (head, rest) = path
            .split_once('.')
            .ok_or_else(|| error("a resource path needs at least one element: Type.element"))?;
        let rtype = match head {
            "*" | "Resource" | "DomainResource" => None,
            _ if is_name(head) && head.starts_with(|c: char| c.is_ascii_uppercase()) => {
                Some(head.to_owned())
            }
            _ => {
                return Err(error(
                    "starts with a resource type, '*' or nodesByType('...')",
                ));
            }
        };
        (Anchor::Resource(rtype), Some(rest))
    };
    let segments = match rest {
        None => Vec::new(),
        Some(rest) => rest
            .split('.')
            .map(|segment| match segment.strip_suffix("[x]") {
                Some(prefix) if is_name(prefix) => Ok(Segment::Choice(prefix.to_owned())),
                None if is_name(segment) => Ok(Segment::Name(segment.to_owned())),
                _ => Err(error(
                    "element names are letters, digits and '_' (choice: name[x])",
                )),
            })
            .collect::<Result<_, _>>()?,
    };
    Ok(Rule {
        anchor,
        segments,
        method,
    })
}

fn is_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(path: &str) -> Result<Rule, RulesError> {
        let json = format!(r#"{{"rules":[{{"path":"{path}","method":"redact"}}]}}"#);
        Rules::parse(&json).map(|mut r| r.rules.remove(0))
    }

    #[test]
    fn paths_parse_into_anchors_and_segments() {
        let rule = one("Patient.name.given").unwrap();
        assert_eq!(rule.anchor, Anchor::Resource(Some("Patient".into())));
        assert_eq!(
            rule.segments,
            [Segment::Name("name".into()), Segment::Name("given".into())]
        );
        assert_eq!(one("*.id").unwrap().anchor, Anchor::Resource(None));
        let choice = one("Observation.effective[x]").unwrap();
        assert!(choice.segments[0].matches("effectiveDateTime"));
        assert!(!choice.segments[0].matches("effective"));
        assert!(!choice.segments[0].matches("effectiveness"));
        let shape = one("nodesByType('Reference').display").unwrap();
        assert_eq!(shape.anchor, Anchor::Shape(Shape::Reference));
        assert_eq!(shape.segments, [Segment::Name("display".into())]);
        assert!(one("nodesByType('date')").unwrap().segments.is_empty());
    }

    #[test]
    fn bad_rules_are_refused_with_a_reason() {
        for path in [
            "Patient",
            "patient.name",
            "Patient.na-me",
            "nodesByType('Foo')",
            "nodesByType('date'",
        ] {
            assert!(matches!(one(path), Err(RulesError::Path { .. })), "{path}");
        }
        assert!(matches!(
            Rules::parse(r#"{"rules":[{"path":"*.id","method":"scramble"}]}"#),
            Err(RulesError::Json(_))
        ));
        assert_eq!(
            Rules::parse(r#"{"dateShiftRange":0,"rules":[]}"#).unwrap_err(),
            RulesError::Range
        );
    }

    #[test]
    fn the_shipped_rules_parse() {
        let rules = Rules::parse(DEFAULT_RULES).unwrap();
        assert!(rules.rules.len() > 10);
    }
}
