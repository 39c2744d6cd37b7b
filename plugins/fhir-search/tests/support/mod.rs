//! What the oracle stands on: the synthea data as the store would hand it to
//! a type filter, and plain readings of FHIR values (paths, codes, names,
//! references, dates, numbers) written for the tests, never borrowed from
//! the engine under test.

pub mod date;
pub mod number;

use std::io::Read;
use std::path::Path;

use serde_json::Value;

/// One synthea resource type: the NDJSON batch given to the engine and the
/// same lines parsed for the oracle, in order.
pub struct Dataset {
    pub ndjson: Vec<u8>,
    pub resources: Vec<Value>,
}

impl Dataset {
    pub fn id(&self, index: usize) -> &str {
        self.resources[index]["id"]
            .as_str()
            .expect("synthea resources have ids")
    }
}

/// The first `meta.lastUpdated` the loader gives out, and the step between
/// two lines: the store stamps every resource, synthea does not.
pub const FIRST_UPDATE: &str = "2024-01-01T00:00:00.000Z";
pub const UPDATE_STEP_MILLIS: i64 = 997_003;

/// The vendored synthea-100 `resource_type`, each line given a `meta` with
/// `versionId` and a distinct `lastUpdated` (line `i` at
/// `FIRST_UPDATE + i × UPDATE_STEP_MILLIS`), spliced in front so the rest of
/// the bytes stay as vendored.
pub fn synthea(resource_type: &str) -> Dataset {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/synthea-100")
        .join(format!("{resource_type}.ndjson.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = String::new();
    flate2::read::GzDecoder::new(file)
        .read_to_string(&mut text)
        .expect("readable gzip");
    let first = date::parse(FIRST_UPDATE).expect("a valid instant").lo;
    let mut ndjson = Vec::with_capacity(text.len() * 11 / 10);
    let mut resources = Vec::new();
    for (i, line) in text.lines().filter(|l| !l.is_empty()).enumerate() {
        let rest = line.strip_prefix('{').expect("a JSON object per line");
        let updated = date::format_instant(first + i as i64 * UPDATE_STEP_MILLIS * 1000);
        let stamped = format!(r#"{{"meta":{{"versionId":"1","lastUpdated":"{updated}"}},{rest}"#);
        resources.push(serde_json::from_str(&stamped).expect("valid JSON"));
        ndjson.extend_from_slice(stamped.as_bytes());
        ndjson.push(b'\n');
    }
    assert!(!resources.is_empty(), "{resource_type} has data");
    Dataset { ndjson, resources }
}

/// Every value at a dotted path, arrays flattened at each step
/// (`name.given` over every name and every given).
pub fn at<'a>(value: &'a Value, path: &str) -> Vec<&'a Value> {
    let mut current = vec![value];
    for step in path.split('.') {
        let mut next = Vec::new();
        for v in current {
            match v.get(step) {
                Some(Value::Array(items)) => next.extend(items),
                Some(found) => next.push(found),
                None => {}
            }
        }
        current = next;
    }
    current
}

pub fn strings<'a>(value: &'a Value, path: &str) -> Vec<&'a str> {
    at(value, path)
        .into_iter()
        .filter_map(Value::as_str)
        .collect()
}

/// A token as the search value states it: `code`, `system|code`, `|code`
/// (no system) or `system|` (any code).
pub enum Token<'a> {
    Code(&'a str),
    SystemCode(&'a str, &'a str),
    NoSystem(&'a str),
    System(&'a str),
}

impl<'a> Token<'a> {
    pub fn parse(text: &'a str) -> Token<'a> {
        match text.split_once('|') {
            None => Token::Code(text),
            Some(("", code)) => Token::NoSystem(code),
            Some((system, "")) => Token::System(system),
            Some((system, code)) => Token::SystemCode(system, code),
        }
    }

    /// Against one (system, code) pair: a Coding's, or an Identifier's
    /// (system, value).
    pub fn accepts(&self, system: Option<&str>, code: Option<&str>) -> bool {
        match *self {
            Token::Code(c) => code == Some(c),
            Token::SystemCode(s, c) => system == Some(s) && code == Some(c),
            Token::NoSystem(c) => system.is_none() && code == Some(c),
            Token::System(s) => system == Some(s),
        }
    }
}

/// Whether any Coding among the CodeableConcepts or Codings at `path`
/// matches one of the comma-separated `values`.
pub fn coded(resource: &Value, path: &str, values: &str) -> bool {
    let codings: Vec<&Value> = at(resource, path)
        .into_iter()
        .flat_map(|c| match c.get("coding") {
            Some(Value::Array(codings)) => codings.iter().collect(),
            _ => vec![c],
        })
        .collect();
    values.split(',').any(|value| {
        let token = Token::parse(value);
        codings
            .iter()
            .any(|c| token.accepts(c["system"].as_str(), c["code"].as_str()))
    })
}

/// Whether any Identifier at `path` matches one of the `values`.
pub fn identified(resource: &Value, path: &str, values: &str) -> bool {
    values.split(',').any(|value| {
        let token = Token::parse(value);
        at(resource, path)
            .iter()
            .any(|i| token.accepts(i["system"].as_str(), i["value"].as_str()))
    })
}

/// Lower case without diacritics, for the Latin letters the data and the
/// fixtures use: the oracle's own reading of "case and accent
/// insensitive".
pub fn fold(text: &str) -> String {
    text.chars()
        .flat_map(char::to_lowercase)
        .map(|c| match c {
            'à'..='å' | 'ā' | 'ă' | 'ą' => 'a',
            'ç' | 'ć' | 'č' => 'c',
            'è'..='ë' | 'ē' | 'ė' | 'ę' | 'ě' => 'e',
            'ì'..='ï' | 'ī' | 'į' => 'i',
            'ñ' | 'ń' | 'ň' => 'n',
            'ò'..='ö' | 'ø' | 'ō' | 'ő' => 'o',
            'ù'..='ü' | 'ū' | 'ů' | 'ű' => 'u',
            'ý' | 'ÿ' => 'y',
            'š' | 'ś' => 's',
            'ž' | 'ź' | 'ż' => 'z',
            other => other,
        })
        .collect()
}

/// String search's default: some part starts with the value, ignoring case
/// and accents.
pub fn starts(parts: &[&str], value: &str) -> bool {
    let value = fold(value);
    parts.iter().any(|p| fold(p).starts_with(&value))
}

pub fn contains(parts: &[&str], value: &str) -> bool {
    let value = fold(value);
    parts.iter().any(|p| fold(p).contains(&value))
}

/// Every string part of the HumanNames at `path`.
pub fn name_parts<'a>(resource: &'a Value, path: &str) -> Vec<&'a str> {
    let mut parts = Vec::new();
    for name in at(resource, path) {
        for field in ["family", "given", "text", "prefix", "suffix"] {
            parts.extend(strings(name, field));
        }
    }
    parts
}

/// `Type/id` of a relative literal reference.
pub fn reference_target(reference: &Value) -> Option<(&str, &str)> {
    reference["reference"].as_str()?.split_once('/')
}

/// Whether a Reference at `path` points at `resource_type`/`id`.
pub fn refers(resource: &Value, path: &str, resource_type: &str, id: &str) -> bool {
    at(resource, path)
        .into_iter()
        .any(|r| reference_target(r) == Some((resource_type, id)))
}

/// The dates at `path` (date, dateTime or instant strings) as ranges.
pub fn dates(resource: &Value, path: &str) -> Vec<date::Range> {
    strings(resource, path)
        .into_iter()
        .map(|d| date::parse(d).unwrap_or_else(|| panic!("oracle: bad date in data {d}")))
        .collect()
}

/// The Periods at `path` as ranges.
pub fn periods(resource: &Value, path: &str) -> Vec<date::Range> {
    at(resource, path)
        .into_iter()
        .map(|p| {
            date::period(p["start"].as_str(), p["end"].as_str())
                .unwrap_or_else(|| panic!("oracle: bad period in data {p}"))
        })
        .collect()
}

/// Whether every `[prefix]date` in `values` (the repetitions of one
/// parameter: AND) holds for some range in `targets`.
pub fn dated(targets: &[date::Range], values: &[&str]) -> bool {
    values
        .iter()
        .all(|v| targets.iter().any(|t| date::matches(v, *t)))
}

/// Whether a Quantity at `path` has a value that `search` (`[prefix]number`)
/// accepts, and a unit that `unit` accepts when given: `(Some(system), code)`
/// must match system and code, `(None, code)` code or unit.
pub fn quantity(
    resource: &Value,
    path: &str,
    search: &str,
    unit: Option<(Option<&str>, &str)>,
) -> bool {
    at(resource, path).into_iter().any(|q| {
        let unit_ok = match unit {
            None => true,
            Some((Some(system), code)) => {
                q["system"].as_str() == Some(system) && q["code"].as_str() == Some(code)
            }
            Some((None, code)) => {
                q["code"].as_str() == Some(code) || q["unit"].as_str() == Some(code)
            }
        };
        unit_ok && number::Decimal::of(&q["value"]).is_some_and(|v| number::matches(search, v))
    })
}
