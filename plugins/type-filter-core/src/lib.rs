//! Hearth's default `_typeFilter` evaluator, deliberately small and exact.
//!
//! Supported: `_id`, and every R4 token search parameter whose expression is
//! one top-level element of type code/string/id/uri, boolean,
//! CodeableConcept, Coding or Identifier (`status=final`, `active=true`,
//! `code=http://loinc.org|8867-4`, `identifier=|123`, `category=vital-signs`),
//! plus string parameters on top-level string elements with `:exact`.
//! Comma-separated values are alternatives; repeated parameters must all
//! match. Anything else (other parameters, modifiers, prefixes, chains,
//! result parameters) is rejected when the query is compiled: this evaluator
//! never approximates. The full FHIR search engine replaces it later.
//!
//! Plain Rust with no WebAssembly in sight: `plugins/type-filter` wraps it as
//! a component and the host benchmark calls it natively, so the two are
//! compared on the same code.

mod params;
mod scan;

use std::fmt;

use scan::Scan;

/// Most distinct top-level elements one query may test.
const MAX_ELEMENTS: usize = 16;

/// The FHIR type family of a searchable top-level element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A primitive matched as a token: code, string, id, uri.
    Code,
    Boolean,
    CodeableConcept,
    Coding,
    Identifier,
    /// A string matched by a string search parameter (`:exact` only).
    String,
}

/// Why a query was rejected; maps to one OperationOutcome issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// An R4 `issue-type` code: `not-supported`, `invalid` or `value`.
    pub code: &'static str,
    pub diagnostics: String,
}

/// A line that could not be evaluated (not a JSON object).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError {
    /// 1-based line number in the batch.
    pub line: usize,
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// A compiled query: every clause must match.
#[derive(Clone, Debug)]
pub struct Filter {
    resource_type: String,
    /// Distinct top-level elements the clauses read, in first-use order.
    elements: Vec<&'static str>,
    clauses: Vec<Clause>,
}

#[derive(Clone, Debug)]
struct Clause {
    /// Index into `Filter::elements`.
    element: usize,
    kind: Kind,
    /// Any one of these matches the clause.
    alternatives: Vec<Token>,
}

/// `code`, `|code`, `system|code` or `system|`.
#[derive(Clone, Debug)]
struct Token {
    /// `None`: any system; `Some("")`: no system.
    system: Option<String>,
    /// `None`: any code in `system`.
    code: Option<String>,
}

/// Compiles the query part of `resource_type?query`, still percent-encoded.
pub fn compile(resource_type: &str, query: &str) -> Result<Filter, Vec<Rejection>> {
    let mut filter = Filter {
        resource_type: resource_type.to_owned(),
        elements: Vec::new(),
        clauses: Vec::new(),
    };
    let mut rejections = Vec::new();
    if query.is_empty() {
        rejections.push(invalid(format!("the query for {resource_type} is empty")));
    }
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match compile_clause(resource_type, pair, &mut filter.elements) {
            Ok(clause) => filter.clauses.push(clause),
            Err(r) => rejections.push(r),
        }
    }
    if rejections.is_empty() {
        Ok(filter)
    } else {
        Err(rejections)
    }
}

fn compile_clause(
    rtype: &str,
    pair: &str,
    elements: &mut Vec<&'static str>,
) -> Result<Clause, Rejection> {
    let (name, raw_value) = pair
        .split_once('=')
        .ok_or_else(|| invalid(format!("'{pair}' is not of the form name=value")))?;
    let name = percent_decode(name)?;
    let value = percent_decode(raw_value)?;
    let (param, modifier) = match name.split_once(':') {
        Some((p, m)) => (p, Some(m)),
        None => (name.as_str(), None),
    };
    let (element, kind) = if param == "_id" {
        ("id", Kind::Code)
    } else {
        lookup(rtype, param)
            .ok_or_else(|| unsupported(format!("unsupported parameter '{param}' for {rtype}")))?
    };
    match (kind, modifier) {
        (Kind::String, Some("exact")) => {}
        (Kind::String, None) => {
            return Err(unsupported(format!(
                "unsupported parameter '{param}' without a modifier: string search (starts-with, \
                 case- and accent-insensitive) is not implemented; '{param}:exact' is"
            )));
        }
        (_, None) => {}
        (_, Some(m)) => return Err(unsupported(format!("unsupported modifier '{param}:{m}'"))),
    }
    let mut alternatives = Vec::new();
    for part in split_unescaped(&value, ',') {
        alternatives.push(token(param, kind, &part)?);
    }
    let element = match elements.iter().position(|e| *e == element) {
        Some(i) => i,
        None if elements.len() == MAX_ELEMENTS => {
            return Err(unsupported(format!(
                "more than {MAX_ELEMENTS} distinct parameters in one query"
            )));
        }
        None => {
            elements.push(element);
            elements.len() - 1
        }
    };
    Ok(Clause {
        element,
        kind,
        alternatives,
    })
}

fn token(param: &str, kind: Kind, part: &str) -> Result<Token, Rejection> {
    let empty = || invalid(format!("empty value for '{param}'"));
    if kind == Kind::String {
        return match unescape(part) {
            s if s.is_empty() => Err(empty()),
            s => Ok(Token {
                system: None,
                code: Some(s),
            }),
        };
    }
    let (system, code) = match split_unescaped(part, '|').as_slice() {
        [code] => (None, Some(unescape(code))),
        [system, code] => (
            Some(unescape(system)),
            Some(unescape(code)).filter(|c| !c.is_empty()),
        ),
        _ => return Err(invalid(format!("'{part}' has more than one '|'"))),
    };
    let coded = matches!(
        kind,
        Kind::CodeableConcept | Kind::Coding | Kind::Identifier
    );
    match (&system, &code) {
        (_, Some(c)) if c.is_empty() => Err(empty()),
        (Some(s), None) if s.is_empty() => Err(empty()),
        (Some(_), _) if !coded => Err(unsupported(format!(
            "'{param}' is not a coded element: system|code is not supported, give the code alone"
        ))),
        (_, Some(c)) if kind == Kind::Boolean && c != "true" && c != "false" => Err(Rejection {
            code: "value",
            diagnostics: format!("'{param}' takes true or false, not '{c}'"),
        }),
        _ => Ok(Token { system, code }),
    }
}

fn lookup(rtype: &str, param: &str) -> Option<(&'static str, Kind)> {
    params::PARAMS
        .binary_search_by(|(t, p, _, _)| (*t, *p).cmp(&(rtype, param)))
        .ok()
        .map(|i| (params::PARAMS[i].2, params::PARAMS[i].3))
}

fn invalid(diagnostics: String) -> Rejection {
    Rejection {
        code: "invalid",
        diagnostics,
    }
}

fn unsupported(diagnostics: String) -> Rejection {
    Rejection {
        code: "not-supported",
        diagnostics,
    }
}

fn percent_decode(s: &str) -> Result<String, Rejection> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(
                byte.ok_or_else(|| invalid(format!("'{s}' has an invalid percent-encoding")))?,
            );
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("'{s}' is not UTF-8 once percent-decoded")))
}

/// Splits on `sep` except where escaped with `\` (FHIR search escaping).
fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let last = parts.last_mut().expect("parts is never empty");
                last.push('\\');
                last.extend(chars.next());
            }
            c if c == sep => parts.push(String::new()),
            c => parts.last_mut().expect("parts is never empty").push(c),
        }
    }
    parts
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            out.extend(chars.next());
        } else {
            out.push(c);
        }
    }
    out
}

/// The lines of an NDJSON batch: split on `\n`, a final `\n` optional, a
/// trailing `\r` dropped.
pub fn lines(ndjson: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= ndjson.len() {
            return None;
        }
        let end = scan::newline(ndjson, start).unwrap_or(ndjson.len());
        let line = &ndjson[start..end];
        start = end + 1;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

impl Filter {
    /// One verdict per line of `ndjson`.
    pub fn evaluate(&self, ndjson: &[u8]) -> Result<Vec<bool>, EvalError> {
        lines(ndjson)
            .enumerate()
            .map(|(i, line)| {
                self.matches(line).map_err(|message| EvalError {
                    line: i + 1,
                    message,
                })
            })
            .collect()
    }

    /// Whether one resource (one JSON object) matches. Reads the top-level
    /// members up to the last one it needs; builds nothing.
    pub fn matches(&self, json: &[u8]) -> Result<bool, String> {
        let mut values: [Option<&[u8]>; MAX_ELEMENTS] = [None; MAX_ELEMENTS];
        let mut type_matches = None;
        let mut missing = self.elements.len() + 1;
        scan::members(json, |key, value| {
            if type_matches.is_none() && scan::raw_eq(key, "resourceType") {
                type_matches = Some(
                    scan::string_content(value)
                        .is_some_and(|t| scan::raw_eq(t, &self.resource_type)),
                );
                missing -= 1;
            } else if let Some(i) = self.elements.iter().position(|e| scan::raw_eq(key, e))
                && values[i].is_none()
            {
                values[i] = Some(value);
                missing -= 1;
            }
            Ok(missing > 0)
        })?;
        if type_matches != Some(true) {
            return Ok(false);
        }
        for clause in &self.clauses {
            let Some(value) = values[clause.element] else {
                return Ok(false);
            };
            if !any_of(&clause.alternatives, |t| t.matches(clause.kind, value))? {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Whether `test` holds for one of `items`, stopping at the first.
fn any_of<T>(items: &[T], mut test: impl FnMut(&T) -> Scan<bool>) -> Scan<bool> {
    for item in items {
        if test(item)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Whether `test` holds for `value`, or for one item when it is an array.
fn value_or_items(value: &[u8], mut test: impl FnMut(&[u8]) -> Scan<bool>) -> Scan<bool> {
    if value.first() != Some(&b'[') {
        return test(value);
    }
    let mut found = false;
    scan::items(value, |item| {
        found = test(item)?;
        Ok(!found)
    })?;
    Ok(found)
}

impl Token {
    fn matches(&self, kind: Kind, value: &[u8]) -> Scan<bool> {
        value_or_items(value, |value| match kind {
            Kind::Code | Kind::String => Ok(self.code_matches(scan::string_content(value))),
            Kind::Boolean => Ok(self.code.as_deref().is_some_and(|c| value == c.as_bytes())),
            Kind::Coding => self.matches_pair(value, "code"),
            Kind::Identifier => self.matches_pair(value, "value"),
            Kind::CodeableConcept => {
                let mut found = false;
                if value.first() == Some(&b'{') {
                    scan::members(value, |key, codings| {
                        if scan::raw_eq(key, "coding") {
                            found = value_or_items(codings, |c| self.matches_pair(c, "code"))?;
                        }
                        Ok(!found)
                    })?;
                }
                Ok(found)
            }
        })
    }

    fn code_matches(&self, raw: Option<&[u8]>) -> bool {
        match (&self.code, raw) {
            (None, _) => true,
            (Some(code), Some(raw)) => scan::raw_eq(raw, code),
            (Some(_), None) => false,
        }
    }

    /// A Coding (`system`, `code`) or Identifier (`system`, `value`).
    fn matches_pair(&self, value: &[u8], code_key: &str) -> Scan<bool> {
        if value.first() != Some(&b'{') {
            return Ok(false);
        }
        let (mut system, mut code) = (None, None);
        scan::members(value, |key, v| {
            if scan::raw_eq(key, "system") {
                system = scan::string_content(v);
            } else if scan::raw_eq(key, code_key) {
                code = scan::string_content(v);
            }
            Ok(system.is_none() || code.is_none())
        })?;
        let system_ok = match self.system.as_deref() {
            None => true,
            Some("") => system.is_none(),
            Some(s) => system.is_some_and(|raw| scan::raw_eq(raw, s)),
        };
        Ok(system_ok && self.code_matches(code))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OBS: &str = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"identifier":[{"value":"123"}],"valueQuantity":{"value":72.5}}"#;

    fn eval(rtype: &str, query: &str, json: &str) -> bool {
        compile(rtype, query)
            .unwrap()
            .matches(json.as_bytes())
            .unwrap()
    }

    #[test]
    fn tokens() {
        assert!(eval("Observation", "code=http://loinc.org|8867-4", OBS));
        assert!(eval(
            "Observation",
            "code=http%3A%2F%2Floinc.org%7C8867-4",
            OBS
        ));
        assert!(eval("Observation", "code=8867-4", OBS));
        assert!(eval("Observation", "code=http://loinc.org|", OBS));
        assert!(!eval("Observation", "code=|8867-4", OBS));
        assert!(!eval(
            "Observation",
            "code=http://snomed.info/sct|8867-4",
            OBS
        ));
        assert!(eval("Observation", "code=x,8867-4", OBS));
        assert!(eval("Observation", "identifier=|123", OBS));
        assert!(eval("Observation", "status=final&_id=o1", OBS));
        assert!(!eval("Observation", "status=final&_id=o2", OBS));
        assert!(!eval("Observation", "category=vital-signs", OBS));
        assert!(
            !eval("Patient", "_id=o1", OBS),
            "another type never matches"
        );
        assert!(eval(
            "Patient",
            "active=true",
            r#"{"resourceType":"Patient","active":true}"#
        ));
        assert!(!eval(
            "Patient",
            "active=false",
            r#"{"resourceType":"Patient","active":true}"#
        ));
    }

    #[test]
    fn rejects_what_it_cannot_evaluate_exactly() {
        for (rtype, q) in [
            ("Observation", "date=ge2020"),
            ("Observation", "subject=Patient/1"),
            ("Observation", "code:text=glucose"),
            ("Observation", "status=http://x|final"),
            ("Observation", "_count=10"),
            ("Patient", "active=yes"),
            ("Observation", "code"),
            ("Observation", ""),
            ("Observation", "code=%zz"),
        ] {
            let r = compile(rtype, q).unwrap_err();
            assert!(!r.is_empty(), "{q}");
        }
        let r = compile("Observation", "date=ge2020&foo=1").unwrap_err();
        assert_eq!(r.len(), 2);
        assert!(
            r[0].diagnostics.contains("unsupported parameter 'date'"),
            "{r:?}"
        );
        assert_eq!(r[0].code, "not-supported");
    }

    #[test]
    fn batches() {
        let f = compile("Observation", "status=final").unwrap();
        let batch = format!("{OBS}\n{}\n", OBS.replace("final", "amended"));
        assert_eq!(f.evaluate(batch.as_bytes()).unwrap(), vec![true, false]);
        assert_eq!(f.evaluate(OBS.as_bytes()).unwrap(), vec![true]);
        assert_eq!(f.evaluate(b"").unwrap(), Vec::<bool>::new());
        assert_eq!(f.evaluate(b"{}\nnot json\n").unwrap_err().line, 2);
    }
}
