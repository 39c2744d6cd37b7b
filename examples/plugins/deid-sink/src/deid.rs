//! Applying the rules to resources: one JSON parse and one serialization per
//! NDJSON line, one walk of the tree in between.
//!
//! For every element, the first rule (in file order) whose path selects it
//! decides what happens to it and to everything inside it; an element no
//! rule selects is kept and its children are looked at.

use std::cell::RefCell;
use std::collections::HashMap;

use hmac::{Hmac, Mac};
use serde_json::{Map, Value};
use sha2::Sha256;

use crate::rules::{Anchor, Method, Rule, Rules, Shape};

type HmacSha256 = Hmac<Sha256>;

/// Hashes remembered per file: the same patient or encounter is referenced
/// thousands of times. Cleared when full, so memory stays bounded.
const HASH_CACHE_ENTRIES: usize = 65_536;

/// Label mixed into the date-shift key, so that the shift of an export and
/// the hash of an id equal to its job id have nothing in common.
const SHIFT_LABEL: &[u8] = b"hearth-deid date shift\0";

pub struct Deidentifier {
    rules: Vec<Rule>,
    /// Indexes of the rules anchored at a shape, in file order.
    shape_rules: Vec<usize>,
    key: HmacSha256,
    shift_days: i64,
    hashes: RefCell<HashMap<String, String>>,
}

/// A rule's path, partly walked: the next segment to match is
/// `segments[pos]`.
#[derive(Clone, Copy)]
struct Cursor {
    rule: usize,
    pos: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum LineError {
    Json { line: usize, message: String },
    NotAResource { line: usize },
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::Json { line, message } => {
                write!(f, "line {line} of the batch is not JSON: {message}")
            }
            LineError::NotAResource { line } => {
                write!(f, "line {line} of the batch is not a JSON object")
            }
        }
    }
}

impl Deidentifier {
    /// `secret` keys both the hashes and (with `job_id`) the date shift:
    /// every file of one export shifts by the same days, another export by
    /// other days.
    pub fn new(rules: Rules, secret: &[u8], job_id: &str) -> Deidentifier {
        let key = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
        let mut shift = key.clone();
        shift.update(SHIFT_LABEL);
        shift.update(job_id.as_bytes());
        let digest = shift.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let shift_days = shift_from(u64::from_be_bytes(first), rules.date_shift_range);
        let shape_rules = rules
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.anchor, Anchor::Shape(_)))
            .map(|(i, _)| i)
            .collect();
        Deidentifier {
            rules: rules.rules,
            shape_rules,
            key,
            shift_days,
            hashes: RefCell::new(HashMap::new()),
        }
    }

    /// Days every full date of this export moves by (never 0).
    pub fn shift_days(&self) -> i64 {
        self.shift_days
    }

    /// De-identifies a batch of NDJSON lines into `out`, one line each.
    pub fn batch(&self, batch: &[u8], out: &mut Vec<u8>) -> Result<(), LineError> {
        for (i, line) in batch.split(|b| *b == b'\n').enumerate() {
            if line.is_empty() {
                continue;
            }
            let mut value: Value = serde_json::from_slice(line).map_err(|e| LineError::Json {
                line: i + 1,
                message: e.to_string(),
            })?;
            let Value::Object(resource) = &mut value else {
                return Err(LineError::NotAResource { line: i + 1 });
            };
            self.resource(resource);
            serde_json::to_writer(&mut *out, &value).map_err(|e| LineError::Json {
                line: i + 1,
                message: e.to_string(),
            })?;
            out.push(b'\n');
        }
        Ok(())
    }

    /// Applies the rules to one resource (and its contained resources).
    pub fn resource(&self, resource: &mut Map<String, Value>) {
        let rtype = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let cursors: Vec<Cursor> = self
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| match &r.anchor {
                Anchor::Resource(None) => true,
                Anchor::Resource(Some(t)) => *t == rtype,
                Anchor::Shape(_) => false,
            })
            .map(|(rule, _)| Cursor { rule, pos: 0 })
            .collect();
        let contained_rule = cursors
            .iter()
            .map(|c| c.rule)
            .find(|&r| matches!(&self.rules[r].segments[..], [s] if s.matches("contained")));
        resource.retain(|key, value| match (key.as_str(), contained_rule) {
            ("resourceType", _) => true,
            ("contained", Some(rule)) => self.apply(self.rules[rule].method, value),
            // Resources of their own: the rules apply to them from the top.
            ("contained", None) => {
                for item in value.as_array_mut().into_iter().flatten() {
                    if let Value::Object(contained) = item {
                        self.resource(contained);
                    }
                }
                true
            }
            _ => self.member(key, value, &cursors),
        });
    }

    /// One member of an object; returns whether it stays.
    fn member(&self, key: &str, value: &mut Value, cursors: &[Cursor]) -> bool {
        let mut selected: Option<usize> = None;
        let mut next = Vec::new();
        for cursor in cursors {
            let rule = &self.rules[cursor.rule];
            if !rule.segments[cursor.pos].matches(key) {
                continue;
            }
            if cursor.pos + 1 == rule.segments.len() {
                selected = Some(selected.map_or(cursor.rule, |s| s.min(cursor.rule)));
            } else {
                next.push(Cursor {
                    rule: cursor.rule,
                    pos: cursor.pos + 1,
                });
            }
        }
        match value {
            // FHIRPath sees each item of a repeating element as the element.
            Value::Array(items) => {
                let was_empty = items.is_empty();
                items.retain_mut(|item| self.node(item, selected, &next));
                was_empty || !items.is_empty()
            }
            _ => self.node(value, selected, &next),
        }
    }

    /// One element, which the rule `selected` selects by path (if any);
    /// returns whether it stays.
    fn node(&self, value: &mut Value, selected: Option<usize>, cursors: &[Cursor]) -> bool {
        let mut decided = selected;
        let mut inner: Vec<Cursor> = Vec::new();
        // Once per element, not once per shape rule.
        let shapes = Shapes::of(value);
        for &i in &self.shape_rules {
            if decided.is_some_and(|d| d < i) {
                break;
            }
            let rule = &self.rules[i];
            let Anchor::Shape(shape) = rule.anchor else {
                continue;
            };
            if !shapes.has(shape) {
                continue;
            }
            if rule.segments.is_empty() {
                decided = Some(decided.map_or(i, |d| d.min(i)));
            } else {
                inner.push(Cursor { rule: i, pos: 0 });
            }
        }
        if let Some(rule) = decided {
            return self.apply(self.rules[rule].method, value);
        }
        if let Value::Object(object) = value {
            if inner.is_empty() {
                object.retain(|key, value| self.member(key, value, cursors));
            } else {
                inner.extend_from_slice(cursors);
                object.retain(|key, value| self.member(key, value, &inner));
            }
        }
        true
    }

    fn apply(&self, method: Method, value: &mut Value) -> bool {
        match method {
            Method::Redact => false,
            Method::Keep => true,
            Method::DateShift => {
                self.each_string(value, &mut |s| shift_date(s, self.shift_days));
                true
            }
            Method::CryptoHash => {
                self.each_string(value, &mut |s| Some(self.hash_reference(s)));
                true
            }
        }
    }

    /// Replaces every string inside `value` for which `f` gives a new one.
    fn each_string(&self, value: &mut Value, f: &mut dyn FnMut(&str) -> Option<String>) {
        match value {
            Value::String(s) => {
                if let Some(new) = f(s) {
                    *s = new;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.each_string(v, f)),
            Value::Object(object) => object.values_mut().for_each(|v| self.each_string(v, f)),
            _ => {}
        }
    }

    /// The keyed hash of a string; of a reference (`Type/id`, a URL ending
    /// so, with or without `/_history/n`, or a local `#id`) only the id
    /// part, so that it equals the hash of the resource's own id.
    pub fn hash_reference(&self, s: &str) -> String {
        match id_span(s) {
            Some((start, end)) => {
                let mut out = String::with_capacity(s.len() + 64);
                out.push_str(&s[..start]);
                out.push_str(&self.hash(&s[start..end]));
                out.push_str(&s[end..]);
                out
            }
            None => self.hash(s),
        }
    }

    /// HMAC-SHA256 of `s` under the secret, as 64 hex digits (a valid FHIR id).
    pub fn hash(&self, s: &str) -> String {
        if let Some(hash) = self.hashes.borrow().get(s) {
            return hash.clone();
        }
        let mut mac = self.key.clone();
        mac.update(s.as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut hex = String::with_capacity(64);
        for b in digest {
            hex.push(char::from(HEX[usize::from(b >> 4)]));
            hex.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        let mut hashes = self.hashes.borrow_mut();
        if hashes.len() >= HASH_CACHE_ENTRIES {
            hashes.clear();
        }
        hashes.insert(s.to_owned(), hex.clone());
        hex
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Maps 64 random bits onto `[-range, -1] ∪ [1, range]`.
fn shift_from(bits: u64, range: u32) -> i64 {
    let range = u64::from(range.max(1));
    let v = bits % (2 * range);
    if v < range {
        -(v as i64) - 1
    } else {
        (v - range) as i64 + 1
    }
}

/// Where the id of a reference string is: after `Type/` (the last two
/// segments, before any `/_history/n`), or after a local `#`.
fn id_span(s: &str) -> Option<(usize, usize)> {
    if let Some(local) = s.strip_prefix('#') {
        return (!local.is_empty()).then_some((1, s.len()));
    }
    if s.contains('?') {
        return None;
    }
    let end = s.find("/_history/").unwrap_or(s.len());
    let base = &s[..end];
    let slash = base.rfind('/')?;
    let rtype = base[..slash].rsplit('/').next()?;
    let is_type = rtype.starts_with(|c: char| c.is_ascii_uppercase())
        && rtype.bytes().all(|b| b.is_ascii_alphanumeric());
    (is_type && slash + 1 < end).then_some((slash + 1, end))
}

/// What the type selectors need to know of one element.
struct Shapes {
    reference: bool,
    date: Option<DateForm>,
}

impl Shapes {
    fn of(value: &Value) -> Shapes {
        match value {
            Value::Object(o) => Shapes {
                reference: o.get("reference").is_some_and(Value::is_string),
                date: None,
            },
            Value::String(s) => Shapes {
                reference: false,
                date: date_form(s),
            },
            _ => Shapes {
                reference: false,
                date: None,
            },
        }
    }

    fn has(&self, shape: Shape) -> bool {
        match shape {
            Shape::Reference => self.reference,
            Shape::Date => self.date == Some(DateForm::Date),
            Shape::DateTime => self.date.is_some(),
            Shape::Instant => self.date == Some(DateForm::Instant),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DateForm {
    /// `YYYY`, `YYYY-MM`, `YYYY-MM-DD`.
    Date,
    /// A date and a time without a zone.
    DateTime,
    /// A date and a time with a zone (`Z` or `±hh:mm`).
    Instant,
}

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

fn date_form(s: &str) -> Option<DateForm> {
    let b = s.as_bytes();
    let date_len = match b.len() {
        4 | 7 | 10 => b.len(),
        n if n > 10 && b[10] == b'T' => 10,
        _ => return None,
    };
    let date = &b[..date_len];
    let well_formed = digits(&date[..4])
        && (date_len < 7 || (date[4] == b'-' && digits(&date[5..7])))
        && (date_len < 10 || (date[7] == b'-' && digits(&date[8..10])));
    if !well_formed {
        return None;
    }
    if date_len == b.len() {
        return Some(DateForm::Date);
    }
    let time = &b[11..];
    if time.len() < 5 || !digits(&time[..2]) || time[2] != b':' || !digits(&time[3..5]) {
        return None;
    }
    let zoned = time.ends_with(b"Z") || {
        let n = time.len();
        n >= 6 && matches!(time[n - 6], b'+' | b'-') && time[n - 3] == b':'
    };
    Some(if zoned {
        DateForm::Instant
    } else {
        DateForm::DateTime
    })
}

/// `s` moved by `days`, when it has day precision; the time of day, zone
/// and fraction stay as written. Year or year-month values cannot move by
/// days and stay as they are.
fn shift_date(s: &str, days: i64) -> Option<String> {
    if date_form(s)? == DateForm::Date && s.len() != 10 {
        return None;
    }
    let number = |r: std::ops::Range<usize>| s[r].parse::<i64>().ok();
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let (y, m, d) = civil_from_days(days_from_civil(year, month, day) + days);
    if !(1..=9999).contains(&y) {
        return None;
    }
    Some(format!("{y:04}-{m:02}-{d:02}{}", &s[10..]))
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::rules::DEFAULT_RULES;

    fn deid(rules: &str, job: &str) -> Deidentifier {
        Deidentifier::new(Rules::parse(rules).unwrap(), b"test secret", job)
    }

    fn run(d: &Deidentifier, resource: Value) -> Value {
        let mut value = resource;
        d.resource(value.as_object_mut().unwrap());
        value
    }

    #[test]
    fn redact_removes_selected_elements_and_empty_arrays() {
        let d = deid(
            r#"{"rules":[{"path":"Patient.name","method":"redact"},
                         {"path":"*.telecom.value","method":"redact"},
                         {"path":"Observation.effective[x]","method":"redact"}]}"#,
            "job",
        );
        let out = run(
            &d,
            json!({"resourceType":"Patient","id":"p","name":[{"family":"Doe"}],
                   "telecom":[{"system":"phone","value":"555"}],"gender":"female"}),
        );
        assert_eq!(
            out,
            json!({"resourceType":"Patient","id":"p","telecom":[{"system":"phone"}],"gender":"female"})
        );
        let obs = run(
            &d,
            json!({"resourceType":"Observation","effectiveDateTime":"2020-01-01","status":"final"}),
        );
        assert_eq!(obs, json!({"resourceType":"Observation","status":"final"}));
        // A rule for another type does not apply.
        let other = run(
            &d,
            json!({"resourceType":"Practitioner","name":[{"family":"X"}]}),
        );
        assert_eq!(other["name"][0]["family"], "X");
    }

    #[test]
    fn date_shift_keeps_precision_and_is_consistent_per_export() {
        let rules = r#"{"dateShiftRange":30,"rules":[{"path":"nodesByType('dateTime')","method":"dateShift"}]}"#;
        let d = deid(rules, "export-1");
        let days = d.shift_days();
        assert!(days != 0 && days.abs() <= 30);
        let out = run(
            &d,
            json!({"resourceType":"Patient","birthDate":"2000-03-01",
                   "meta":{"lastUpdated":"2024-05-01T12:00:00.123Z"},
                   "deceasedDateTime":"2010-12-31T23:59:59+02:00",
                   "x":"1999","y":"1999-05","code":"2000-13-01"}),
        );
        let expect = |date: &str, rest: &str| {
            let (y, m, dd) = (
                date[0..4].parse().unwrap(),
                date[5..7].parse().unwrap(),
                date[8..10].parse().unwrap(),
            );
            let (y, m, dd) = civil_from_days(days_from_civil(y, m, dd) + days);
            format!("{y:04}-{m:02}-{dd:02}{rest}")
        };
        assert_eq!(out["birthDate"], expect("2000-03-01", ""));
        assert_eq!(
            out["meta"]["lastUpdated"],
            expect("2024-05-01", "T12:00:00.123Z")
        );
        assert_eq!(
            out["deceasedDateTime"],
            expect("2010-12-31", "T23:59:59+02:00")
        );
        // Year and year-month precision cannot move by days; not a date stays.
        assert_eq!(
            (out["x"].as_str(), out["y"].as_str()),
            (Some("1999"), Some("1999-05"))
        );
        assert_eq!(out["code"], "2000-13-01");
        // Same export, same shift; most other exports another.
        assert_eq!(deid(rules, "export-1").shift_days(), days);
        let others: Vec<i64> = (0..8)
            .map(|i| deid(rules, &format!("export-{}", i + 2)).shift_days())
            .collect();
        assert!(others.iter().any(|d| *d != days), "{others:?}");
    }

    #[test]
    fn calendar_arithmetic_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(shift_date("2024-02-28", 1).as_deref(), Some("2024-02-29"));
        assert_eq!(shift_date("2023-02-28", 1).as_deref(), Some("2023-03-01"));
        assert_eq!(shift_date("2000-01-01", -1).as_deref(), Some("1999-12-31"));
        assert_eq!(shift_date("2024-02-30", 1), None);
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn crypto_hash_keeps_references_resolving() {
        let rules = r#"{"rules":[{"path":"*.id","method":"cryptoHash"},
            {"path":"nodesByType('Reference').reference","method":"cryptoHash"},
            {"path":"Bundle.entry.request.url","method":"cryptoHash"}]}"#;
        let d = deid(rules, "job");
        let patient = run(&d, json!({"resourceType":"Patient","id":"p1"}));
        let hashed = patient["id"].as_str().unwrap().to_owned();
        assert_eq!(hashed.len(), 64);
        assert_ne!(hashed, "p1");
        let claim = run(
            &d,
            json!({"resourceType":"Claim","id":"c1",
                   "contained":[{"resourceType":"Coverage","id":"coverage"}],
                   "patient":{"reference":"Patient/p1","display":"Jane"},
                   "insurance":[{"coverage":{"reference":"#coverage"}}],
                   "provider":{"reference":"http://h/fhir/Patient/p1/_history/3"},
                   "item":[{"encounter":[{"reference":"Encounter/e1"},{"reference":"Encounter/e2"}]}]}),
        );
        assert_eq!(claim["patient"]["reference"], format!("Patient/{hashed}"));
        assert_eq!(claim["patient"]["display"], "Jane", "not selected: kept");
        assert_eq!(
            claim["provider"]["reference"],
            format!("http://h/fhir/Patient/{hashed}/_history/3")
        );
        let contained = claim["contained"][0]["id"].as_str().unwrap();
        assert_eq!(
            claim["insurance"][0]["coverage"]["reference"],
            format!("#{contained}")
        );
        assert_eq!(
            claim["item"][0]["encounter"][1]["reference"],
            format!("Encounter/{}", d.hash("e2"))
        );
        let bundle = run(
            &d,
            json!({"resourceType":"Bundle","entry":[{"request":{"method":"DELETE","url":"Patient/p1"}}]}),
        );
        assert_eq!(
            bundle["entry"][0]["request"]["url"],
            format!("Patient/{hashed}")
        );
        // Keyed: another secret, other hashes.
        let other = Deidentifier::new(Rules::parse(rules).unwrap(), b"other", "job");
        assert_ne!(other.hash("p1"), hashed);
        // A rule on `contained` itself applies to the whole list.
        let drop = deid(
            r#"{"rules":[{"path":"*.contained","method":"redact"}]}"#,
            "job",
        );
        let claim = run(
            &drop,
            json!({"resourceType":"Claim","contained":[{"resourceType":"Coverage","id":"c"}]}),
        );
        assert_eq!(claim, json!({"resourceType":"Claim"}));
    }

    #[test]
    fn keep_protects_from_later_rules_and_first_rule_wins() {
        let d = deid(
            r#"{"rules":[{"path":"Encounter.period.start","method":"keep"},
                         {"path":"Encounter.period","method":"redact"},
                         {"path":"nodesByType('dateTime')","method":"dateShift"},
                         {"path":"Encounter.period","method":"redact"}]}"#,
            "job",
        );
        let out = run(
            &d,
            json!({"resourceType":"Encounter","period":{"start":"2020-01-01","end":"2020-01-02"}}),
        );
        // The period is selected by the redact rule before `start` is reached.
        assert!(out.get("period").is_none());
        let d = deid(
            r#"{"rules":[{"path":"Observation.issued","method":"keep"},
                         {"path":"nodesByType('instant')","method":"dateShift"}]}"#,
            "job",
        );
        let out = run(
            &d,
            json!({"resourceType":"Observation","issued":"2020-01-01T00:00:00Z",
                   "effectiveDateTime":"2020-01-01T00:00:00Z"}),
        );
        assert_eq!(out["issued"], "2020-01-01T00:00:00Z");
        assert_ne!(out["effectiveDateTime"], "2020-01-01T00:00:00Z");
    }

    #[test]
    fn batches_are_line_for_line_and_bad_lines_are_errors() {
        let d = deid(DEFAULT_RULES, "job");
        let batch = b"{\"resourceType\":\"Patient\",\"id\":\"a\",\"name\":[{\"family\":\"Doe\"}],\"birthDate\":\"1980-01-02\"}\n{\"resourceType\":\"Patient\",\"id\":\"b\"}";
        let mut out = Vec::new();
        d.batch(batch, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2);
        // Members keep their order: `resourceType` stays first.
        assert!(
            text.starts_with("{\"resourceType\":\"Patient\",\"id\":"),
            "{text}"
        );
        assert!(text.ends_with('\n'));
        assert!(
            !text.contains("Doe") && !text.contains("1980-01-02"),
            "{text}"
        );
        let mut out = Vec::new();
        assert_eq!(
            d.batch(b"{\"resourceType\":\"Patient\"}\n[1]\n", &mut out),
            Err(LineError::NotAResource { line: 2 })
        );
        assert!(matches!(
            d.batch(b"{oops\n", &mut Vec::new()),
            Err(LineError::Json { line: 1, .. })
        ));
    }
}
