//! An example `type-filter-plugin` with other semantics than Hearth's
//! default: `element=word` matches when the top-level `element` contains
//! `word` in its text, ignoring case: a string element's value, or the
//! `text` / `display` of a CodeableConcept or Coding (FHIR's `:text`
//! modifier, roughly). So `Observation?code=glucose` selects the glucose
//! measurements, where the default filter (exact codes) selects none.
//!
//! Config (`[plugins.type_filter.config]`): `case_sensitive = "true"` makes
//! the comparison exact in case.

wit_bindgen::generate!({ path: "../../../wit", world: "type-filter-plugin" });

use exports::hearth::plugin::type_filter::{Filter, Guest, GuestFilter};
use hearth::plugin::host::{self, LogLevel};
use hearth::plugin::types::{ErrorCode, Issue, PluginError, Severity};
use serde_json::Value;

struct Component;

impl Guest for Component {
    type Filter = TextFilter;
}

struct TextFilter {
    resource_type: String,
    case_sensitive: bool,
    /// (element, words): the element must contain one of the words.
    clauses: Vec<(String, Vec<String>)>,
}

impl GuestFilter for TextFilter {
    fn compile(resource_type: String, query: String) -> Result<Filter, Vec<Issue>> {
        let case_sensitive = host::get_config("case_sensitive").as_deref() == Some("true");
        let mut clauses = Vec::new();
        let mut issues = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some((name, words))
                    if !name.is_empty() && !name.starts_with('_') && !name.contains(':') =>
                {
                    let fold = |w: &str| {
                        if case_sensitive {
                            w.to_owned()
                        } else {
                            w.to_lowercase()
                        }
                    };
                    clauses.push((
                        name.to_owned(),
                        words.split(',').map(|w| fold(&decode(w))).collect(),
                    ));
                }
                _ => issues.push(Issue {
                    severity: Severity::Error,
                    code: "not-supported".into(),
                    diagnostics: format!(
                        "unsupported parameter '{pair}': the text filter takes element=word"
                    ),
                    expression: Vec::new(),
                }),
            }
        }
        if !issues.is_empty() {
            return Err(issues);
        }
        host::log(
            LogLevel::Debug,
            "compiled a text filter",
            &[("query".into(), query.clone())],
        );
        Ok(Filter::new(TextFilter {
            resource_type,
            case_sensitive,
            clauses,
        }))
    }

    fn evaluate(&self, ndjson: Vec<u8>) -> Result<Vec<bool>, PluginError> {
        let body = ndjson.strip_suffix(b"\n").unwrap_or(&ndjson);
        if body.is_empty() {
            return Ok(Vec::new());
        }
        body.split(|b| *b == b'\n')
            .map(|line| {
                let resource: Value = serde_json::from_slice(line).map_err(|e| PluginError {
                    code: ErrorCode::InvalidInput,
                    message: e.to_string(),
                })?;
                Ok(resource["resourceType"] == self.resource_type.as_str()
                    && self.clauses.iter().all(|(element, words)| {
                        let mut texts = Vec::new();
                        collect_text(&resource[element.as_str()], &mut texts);
                        texts.iter().any(|t| {
                            let t = if self.case_sensitive {
                                t.to_string()
                            } else {
                                t.to_lowercase()
                            };
                            words.iter().any(|w| t.contains(w.as_str()))
                        })
                    }))
            })
            .collect()
    }
}

/// The searchable text of an element: strings, and the `text` and
/// `display` of coded values, through arrays.
fn collect_text<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(s) => out.push(s),
        Value::Array(items) => items.iter().for_each(|v| collect_text(v, out)),
        Value::Object(map) => {
            for key in ["text", "display"] {
                if let Some(Value::String(s)) = map.get(key) {
                    out.push(s);
                }
            }
            if let Some(coding) = map.get("coding") {
                collect_text(coding, out);
            }
        }
        _ => {}
    }
}

/// Percent-decoding of a query value; invalid escapes are kept as written.
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = (bytes[i] == b'%').then(|| s.get(i + 1..i + 3)).flatten();
        match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
            Some(b) => {
                out.push(b);
                i += 3;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

export!(Component);
