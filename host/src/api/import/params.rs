//! The kick-off's `Parameters` body, checked and parsed once into an
//! [`ImportRequest`]. What needs the import sources (each URL allowed, the
//! file there, its etag) is checked afterwards by `kickoff`.
//!
//! Parsing is strict: an unknown parameter or part, a value of the wrong
//! type, a parameter given twice are 400s, each naming where it is
//! (`Parameters.parameter[i]`, `.part[j]`) so the client can fix its body.

use serde_json::{Map, Value};

use crate::api::error::ApiError;
use crate::api::export::params::container;
use crate::api::format::media_essence;
use crate::api::params::{body_error, parameters_body};
use crate::fhir::{IssueType, ResourceType};
use crate::import::{ImportInput, ImportMode, ImportRequest, SourceUrl};

/// Inputs one import may name (Azure's limit).
pub const MAX_INPUTS: usize = 10_000;

const NDJSON: &str = "application/fhir+ndjson";

/// A parsed kick-off, with where each input was in the body (for the
/// errors `kickoff` finds when it checks the sources).
#[derive(Debug)]
pub struct Parsed {
    pub request: ImportRequest,
    /// `Parameters.parameter[i]` of `request.inputs[n]`.
    pub input_paths: Vec<String>,
}

/// Parses the body of `POST /$import`.
pub fn parse(body: &[u8], request_url: String) -> Result<Parsed, ApiError> {
    let parameters = parameters_body(body, "an $import kick-off")?;
    let mut parser = Parser::default();
    for (i, parameter) in parameters.iter().enumerate() {
        parser.parameter(&format!("Parameters.parameter[{i}]"), parameter)?;
    }
    parser.finish(request_url)
}

#[derive(Default)]
struct Parser {
    format_given: bool,
    mode: Option<ImportMode>,
    allow_negative_versions: Option<bool>,
    error_location: Option<String>,
    inputs: Vec<ImportInput>,
    input_paths: Vec<String>,
}

impl Parser {
    fn parameter(&mut self, at: &str, parameter: &Value) -> Result<(), ApiError> {
        let (name, fields) = named(at, parameter)?;
        match name {
            "inputFormat" => {
                once(at, name, self.format_given)?;
                let format = string_value(at, name, fields, &["valueString", "valueCode"])?;
                if media_essence(format) != NDJSON {
                    return Err(parameter_error(
                        IssueType::NotSupported,
                        at,
                        name,
                        format!("'{format}' is not supported; the only input format is {NDJSON}"),
                    ));
                }
                self.format_given = true;
            }
            "mode" => {
                once(at, name, self.mode.is_some())?;
                let mode = string_value(at, name, fields, &["valueString", "valueCode"])?;
                self.mode = Some(match mode {
                    "InitialLoad" => ImportMode::InitialLoad,
                    "IncrementalLoad" => ImportMode::IncrementalLoad,
                    other => {
                        return Err(parameter_error(
                            IssueType::Value,
                            at,
                            name,
                            format!("'{other}' is not a mode (InitialLoad or IncrementalLoad)"),
                        ));
                    }
                });
            }
            "allowNegativeVersions" => {
                once(at, name, self.allow_negative_versions.is_some())?;
                let value = only_value(at, name, fields, &["valueBoolean"])?;
                let allow = value.as_bool().ok_or_else(|| not_a(at, name, "boolean"))?;
                if allow {
                    // Refused rather than ignored: the client asked for
                    // versions the store cannot hold, and would otherwise
                    // learn it only from the error file.
                    return Err(parameter_error(
                        IssueType::NotSupported,
                        at,
                        name,
                        "true is not supported: versions below 1 cannot be stored by this server (versions are positive integers throughout its store, history and ETags); a line with meta.lastUpdated and no meta.versionId that fits before version 1 is an error line",
                    ));
                }
                self.allow_negative_versions = Some(allow);
            }
            "errorContainerName" => {
                once(at, name, self.error_location.is_some())?;
                let value = string_value(at, name, fields, &["valueString"])?;
                let container = container(value)
                    .map_err(|_| {
                        parameter_error(
                            IssueType::Value,
                            at,
                            name,
                            format!(
                                "'{value}' is not a container name (1-63 of A-Z a-z 0-9 . _ -, not starting with a dot)"
                            ),
                        )
                    })?;
                self.error_location = Some(container);
            }
            "input" => {
                if self.inputs.len() == MAX_INPUTS {
                    return Err(parameter_error(
                        IssueType::TooCostly,
                        at,
                        name,
                        format!("one import takes at most {MAX_INPUTS} inputs"),
                    ));
                }
                let input = input(at, fields)?;
                if let Some(first) = self.inputs.iter().position(|i| i.url == input.url) {
                    return Err(parameter_error(
                        IssueType::Duplicate,
                        at,
                        name,
                        format!(
                            "the url '{}' is already the input at {}; each file is imported once",
                            input.url.as_str(),
                            self.input_paths[first]
                        ),
                    ));
                }
                self.inputs.push(input);
                self.input_paths.push(at.to_owned());
            }
            other => {
                return Err(parameter_error(
                    IssueType::NotSupported,
                    at,
                    other,
                    unknown(other, &PARAMETERS, "a parameter of $import"),
                ));
            }
        }
        Ok(())
    }

    fn finish(self, request_url: String) -> Result<Parsed, ApiError> {
        if !self.format_given {
            return Err(ApiError::Invalid {
                code: IssueType::Required,
                message: format!("inputFormat: missing; it must be {NDJSON}"),
                expression: Some("Parameters.parameter".into()),
            });
        }
        if self.inputs.is_empty() {
            return Err(ApiError::Invalid {
                code: IssueType::Required,
                message: "input: missing; an import names 1 to 10,000 input files".into(),
                expression: Some("Parameters.parameter".into()),
            });
        }
        let mode = self.mode.unwrap_or_default();
        let allow_negative_versions = self.allow_negative_versions.unwrap_or(false);
        Ok(Parsed {
            request: ImportRequest {
                request_url,
                mode,
                allow_negative_versions,
                inputs: self.inputs,
                error_location: self.error_location,
            },
            input_paths: self.input_paths,
        })
    }
}

const PARAMETERS: [&str; 5] = [
    "inputFormat",
    "mode",
    "allowNegativeVersions",
    "errorContainerName",
    "input",
];

const PARTS: [&str; 3] = ["type", "url", "etag"];

/// One `input`: its parts `type` 0..1, `url` 1..1, `etag` 0..1.
fn input(at: &str, fields: &Map<String, Value>) -> Result<ImportInput, ApiError> {
    let parts = match fields.get("part") {
        Some(Value::Array(parts)) if !fields.keys().any(|k| k.starts_with("value")) => parts,
        _ => {
            return Err(body_error(
                at,
                "'input' takes its type, url and etag as parts (and no value[x])",
            ));
        }
    };
    let (mut rtype, mut url, mut etag) = (None, None, None);
    for (j, part) in parts.iter().enumerate() {
        let at = format!("{at}.part[{j}]");
        let (name, fields) = named(&at, part)?;
        if fields.contains_key("part") {
            return Err(body_error(&at, format!("'{name}' has no parts")));
        }
        match name {
            "type" => {
                once(&at, name, rtype.is_some())?;
                let value = string_value(&at, name, fields, &["valueString", "valueCode"])?;
                rtype = Some(resource_type(&at, value)?);
            }
            "url" => {
                once(&at, name, url.is_some())?;
                let value = string_value(&at, name, fields, &["valueUri", "valueUrl"])?;
                url = Some(source_url(&at, value)?);
            }
            "etag" => {
                once(&at, name, etag.is_some())?;
                // The seed document sends it as a valueUri.
                let value = string_value(&at, name, fields, &["valueString", "valueUri"])?;
                if value.trim().is_empty() {
                    return Err(parameter_error(IssueType::Value, &at, name, "is empty"));
                }
                etag = Some(value.to_owned());
            }
            other => {
                return Err(parameter_error(
                    IssueType::NotSupported,
                    &at,
                    other,
                    unknown(other, &PARTS, "a part of input"),
                ));
            }
        }
    }
    let url = url.ok_or_else(|| ApiError::Invalid {
        code: IssueType::Required,
        message: format!("{at}: input has no url part"),
        expression: Some(at.to_owned()),
    })?;
    Ok(ImportInput {
        resource_type: rtype,
        url,
        etag,
    })
}

/// A type inputs may declare: a storable R4 type other than SearchParameter
/// (loading search parameters in bulk would change how everything already
/// stored is indexed, so, like Azure, import refuses them).
fn resource_type(at: &str, value: &str) -> Result<ResourceType, ApiError> {
    let rtype = ResourceType::parse(value)
        .filter(|t| t.is_storable())
        .ok_or_else(|| {
            parameter_error(
                IssueType::Value,
                at,
                "type",
                format!("'{value}' is not an R4 resource type that can be stored"),
            )
        })?;
    if rtype.as_str() == "SearchParameter" {
        return Err(parameter_error(
            IssueType::NotSupported,
            at,
            "type",
            "SearchParameter resources cannot be processed by import",
        ));
    }
    Ok(rtype)
}

/// An absolute URL with a scheme and no query or fragment (a query would
/// make two spellings of one file look different, and no source uses one).
/// Whether the server may read it is the sources' decision (`kickoff`).
fn source_url(at: &str, value: &str) -> Result<SourceUrl, ApiError> {
    let bad = |why: &str| {
        parameter_error(
            IssueType::Value,
            at,
            "url",
            format!("'{value}' is not usable: {why}"),
        )
    };
    let (scheme, rest) = value
        .split_once("://")
        .ok_or_else(|| bad("it is not an absolute URL like file:///imports/Patient.ndjson"))?;
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok || rest.is_empty() {
        return Err(bad(
            "it is not an absolute URL like file:///imports/Patient.ndjson",
        ));
    }
    if value.contains(['?', '#']) {
        return Err(bad("an input URL has no query or fragment"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains white space or control characters"));
    }
    Ok(SourceUrl(value.to_owned()))
}

/// The `name` of a parameter (or part) and its fields; only `name`,
/// `value[x]`, `part`, `id` and `extension` may be there.
fn named<'a>(
    at: &str,
    parameter: &'a Value,
) -> Result<(&'a str, &'a Map<String, Value>), ApiError> {
    let fields = parameter
        .as_object()
        .ok_or_else(|| body_error(at, "is not an object"))?;
    let name = fields
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| body_error(at, "has no name"))?;
    if let Some(key) = fields.keys().find(|k| {
        !matches!(k.as_str(), "name" | "part" | "id" | "extension") && !k.starts_with("value")
    }) {
        return Err(body_error(
            at,
            format!("'{name}' has '{key}', which an $import parameter cannot have"),
        ));
    }
    Ok((name, fields))
}

/// The one `value[x]` of a parameter, which must be one of `allowed`.
fn only_value<'a>(
    at: &str,
    name: &str,
    fields: &'a Map<String, Value>,
    allowed: &[&str],
) -> Result<&'a Value, ApiError> {
    let mut values = fields.iter().filter(|(k, _)| k.starts_with("value"));
    let expected = allowed.join(" or ");
    match (values.next(), values.next(), fields.contains_key("part")) {
        (Some((key, value)), None, false) if allowed.contains(&key.as_str()) => Ok(value),
        (Some((key, _)), None, false) => Err(parameter_error(
            IssueType::Value,
            at,
            name,
            format!("has a {key}; it takes a {expected}"),
        )),
        _ => Err(parameter_error(
            IssueType::Value,
            at,
            name,
            format!("takes exactly one value, a {expected}"),
        )),
    }
}

fn string_value<'a>(
    at: &str,
    name: &str,
    fields: &'a Map<String, Value>,
    allowed: &[&str],
) -> Result<&'a str, ApiError> {
    only_value(at, name, fields, allowed)?
        .as_str()
        .ok_or_else(|| not_a(at, name, "string"))
}

fn once(at: &str, name: &str, seen: bool) -> Result<(), ApiError> {
    if !seen {
        return Ok(());
    }
    Err(parameter_error(
        IssueType::Invalid,
        at,
        name,
        "given more than once; it takes one value",
    ))
}

fn not_a(at: &str, name: &str, kind: &str) -> ApiError {
    parameter_error(
        IssueType::Value,
        at,
        name,
        format!("its value is not a JSON {kind}"),
    )
}

/// What is wrong with one named parameter: the message starts with where
/// and which, the expression is where.
fn parameter_error(
    code: IssueType,
    at: &str,
    name: &str,
    message: impl std::fmt::Display,
) -> ApiError {
    ApiError::Invalid {
        code,
        message: format!("{at} ({name}): {message}"),
        expression: Some(at.to_owned()),
    }
}

/// Not offered here, or a typo of what is: the message says which.
fn unknown(name: &str, known: &[&str], what: &str) -> String {
    match known.iter().find(|k| k.eq_ignore_ascii_case(name)) {
        Some(known) => format!("is not {what} (did you mean {known}?)"),
        None => format!("is not {what} (supported: {})", known.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const URL: &str = "http://h/$import";

    fn body(parameters: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"resourceType": "Parameters", "parameter": parameters})).unwrap()
    }

    fn format() -> Value {
        json!({"name": "inputFormat", "valueString": NDJSON})
    }

    fn input_of(parts: Value) -> Value {
        json!({"name": "input", "part": parts})
    }

    fn file(name: &str) -> Value {
        input_of(json!([{"name": "url", "valueUri": format!("file:///in/{name}")}]))
    }

    fn ok(parameters: Value) -> Parsed {
        parse(&body(parameters), URL.into()).unwrap()
    }

    /// The expression and message of a 400.
    fn err(parameters: Value) -> (IssueType, String, String) {
        match parse(&body(parameters), URL.into()) {
            Err(ApiError::Invalid {
                code,
                message,
                expression,
            }) => (code, expression.unwrap_or_default(), message),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_full_request() {
        let parsed = ok(json!([
            format(),
            {"name": "mode", "valueCode": "InitialLoad"},
            {"name": "allowNegativeVersions", "valueBoolean": false},
            {"name": "errorContainerName", "valueString": "fhirlogs"},
            input_of(json!([
                {"name": "type", "valueString": "Patient"},
                {"name": "url", "valueUri": "file:///in/Patient.ndjson"},
                {"name": "etag", "valueUri": "\"0x8D92A7342657F4F\""},
            ])),
            file("Observation.ndjson"),
        ]));
        let r = parsed.request;
        assert_eq!(r.request_url, URL);
        assert_eq!(r.mode, ImportMode::InitialLoad);
        assert!(!r.allow_negative_versions);
        assert_eq!(r.error_location.as_deref(), Some("fhirlogs"));
        assert_eq!(
            r.inputs,
            vec![
                ImportInput {
                    resource_type: ResourceType::parse("Patient"),
                    url: SourceUrl("file:///in/Patient.ndjson".into()),
                    etag: Some("\"0x8D92A7342657F4F\"".into()),
                },
                ImportInput {
                    resource_type: None,
                    url: SourceUrl("file:///in/Observation.ndjson".into()),
                    etag: None,
                },
            ]
        );
        assert_eq!(
            parsed.input_paths,
            ["Parameters.parameter[4]", "Parameters.parameter[5]"]
        );
    }

    #[test]
    fn defaults() {
        let r = ok(json!([format(), file("a.ndjson")])).request;
        assert_eq!(r.mode, ImportMode::IncrementalLoad);
        assert!(!r.allow_negative_versions);
        assert_eq!(r.error_location, None);
        let r = ok(json!([
            {"name": "inputFormat", "valueCode": "application/fhir+ndjson; charset=utf-8"},
            {"name": "mode", "valueString": "IncrementalLoad"},
            input_of(json!([
                {"name": "url", "valueUrl": "https://blob.example/c/a.ndjson"},
                {"name": "type", "valueCode": "Observation"},
            ])),
        ]))
        .request;
        assert_eq!(r.mode, ImportMode::IncrementalLoad);
        assert_eq!(
            r.inputs[0].resource_type,
            ResourceType::parse("Observation")
        );
    }

    #[test]
    fn format_is_required_and_only_ndjson() {
        let (code, at, message) = err(json!([file("a.ndjson")]));
        assert_eq!(
            (code, at.as_str()),
            (IssueType::Required, "Parameters.parameter")
        );
        assert!(message.starts_with("inputFormat"), "{message}");
        let (code, at, message) = err(json!([
            file("a.ndjson"),
            {"name": "inputFormat", "valueString": "application/fhir+json"},
        ]));
        assert_eq!(
            (code, at.as_str()),
            (IssueType::NotSupported, "Parameters.parameter[1]")
        );
        assert!(message.contains("application/fhir+json"), "{message}");
        let (_, at, _) = err(json!([format(), format(), file("a.ndjson")]));
        assert_eq!(at, "Parameters.parameter[1]");
    }

    #[test]
    fn bad_values() {
        let cases = [
            (
                json!({"name": "mode", "valueString": "initialload"}),
                "is not a mode",
            ),
            (
                json!({"name": "mode", "valueBoolean": true}),
                "has a valueBoolean",
            ),
            (
                json!({"name": "allowNegativeVersions", "valueString": "true"}),
                "has a valueString",
            ),
            (
                json!({"name": "allowNegativeVersions", "valueBoolean": "yes"}),
                "not a JSON boolean",
            ),
            (
                json!({"name": "allowNegativeVersions", "valueBoolean": true}),
                "versions below 1 cannot be stored",
            ),
            (
                json!({"name": "errorContainerName", "valueString": 3}),
                "not a JSON string",
            ),
            (
                json!({"name": "errorContainerName", "valueString": "../x"}),
                "not a container name",
            ),
            (json!({"name": "mode"}), "takes exactly one value"),
            (
                json!({"name": "mode", "valueString": "InitialLoad", "valueCode": "InitialLoad"}),
                "takes exactly one value",
            ),
            (json!({"name": "mode", "resource": {}}), "has 'resource'"),
            (
                json!({"name": "eventualConsistency", "valueBoolean": true}),
                "supported: inputFormat",
            ),
            (
                json!({"name": "InputFormat", "valueString": NDJSON}),
                "did you mean inputFormat?",
            ),
            (json!({"valueString": "x"}), "has no name"),
            (json!("input"), "is not an object"),
        ];
        for (parameter, expected) in cases {
            let (_, at, message) = err(json!([format(), file("a.ndjson"), parameter.clone()]));
            assert_eq!(at, "Parameters.parameter[2]", "{parameter}");
            assert!(message.contains(expected), "{parameter}: {message}");
        }
    }

    #[test]
    fn bad_inputs() {
        let url = json!({"name": "url", "valueUri": "file:///in/a.ndjson"});
        let cases = [
            (json!([]), "no url part"),
            (
                json!([{"name": "type", "valueString": "Patient"}]),
                "no url part",
            ),
            (json!([url, url]), "more than once"),
            (
                json!([url, {"name": "type", "valueString": "Patients"}]),
                "not an R4 resource type",
            ),
            (
                json!([url, {"name": "type", "valueString": "OperationOutcome"}]),
                "not an R4 resource type",
            ),
            (
                json!([url, {"name": "type", "valueString": "SearchParameter"}]),
                "SearchParameter resources cannot",
            ),
            (
                json!([url, {"name": "etag", "valueString": " "}]),
                "is empty",
            ),
            (
                json!([url, {"name": "etag", "valueBoolean": true}]),
                "has a valueBoolean",
            ),
            (
                json!([url, {"name": "format", "valueString": "x"}]),
                "supported: type, url, etag",
            ),
            (
                json!([{"name": "url", "valueString": "file:///a"}]),
                "has a valueString",
            ),
            (
                json!([{"name": "url", "valueUri": "Patient.ndjson"}]),
                "not an absolute URL",
            ),
            (
                json!([{"name": "url", "valueUri": "file:///a.ndjson?x=1"}]),
                "no query",
            ),
            (
                json!([{"name": "url", "valueUri": "file:///a b.ndjson"}]),
                "white space",
            ),
        ];
        for (parts, expected) in cases {
            let (_, at, message) = err(json!([format(), input_of(parts.clone())]));
            assert!(at.starts_with("Parameters.parameter[1]"), "{parts}: {at}");
            assert!(message.contains(expected), "{parts}: {message}");
        }
        let (code, at, message) = err(json!([
            format(),
            input_of(json!([url, {"name": "type", "valueString": "SearchParameter"}])),
        ]));
        assert_eq!(
            (code, at.as_str()),
            (IssueType::NotSupported, "Parameters.parameter[1].part[1]")
        );
        assert!(message.contains("SearchParameter"), "{message}");
        let (_, at, message) = err(json!([format(), {"name": "input", "valueUri": "file:///a"}]));
        assert_eq!(at, "Parameters.parameter[1]");
        assert!(message.contains("as parts"), "{message}");
    }

    #[test]
    fn inputs_are_counted_and_unique() {
        let (code, at, message) = err(json!([format()]));
        assert_eq!(
            (code, at.as_str()),
            (IssueType::Required, "Parameters.parameter")
        );
        assert!(message.starts_with("input"), "{message}");
        let (code, at, message) = err(json!([format(), file("a"), file("b"), file("a")]));
        assert_eq!(
            (code, at.as_str()),
            (IssueType::Duplicate, "Parameters.parameter[3]")
        );
        assert!(message.contains("Parameters.parameter[1]"), "{message}");
        let many: Vec<Value> = std::iter::once(format())
            .chain((0..MAX_INPUTS).map(|i| file(&format!("{i}.ndjson"))))
            .collect();
        assert_eq!(
            ok(Value::Array(many.clone())).request.inputs.len(),
            MAX_INPUTS
        );
        let mut too_many = many;
        too_many.push(file("one-more.ndjson"));
        let (code, at, _) = err(Value::Array(too_many));
        assert_eq!(
            (code, at.as_str()),
            (IssueType::TooCostly, "Parameters.parameter[10001]")
        );
    }

    #[test]
    fn not_a_parameters_body() {
        for bad in [&b"{"[..], b"[]", br#"{"resourceType":"Patient"}"#] {
            assert!(matches!(
                parse(bad, URL.into()),
                Err(ApiError::Invalid { .. })
            ));
        }
        let (_, at, _) = match parse(
            br#"{"resourceType":"Parameters","parameter":{}}"#,
            URL.into(),
        ) {
            Err(ApiError::Invalid {
                code,
                message,
                expression,
            }) => (code, expression.unwrap_or_default(), message),
            other => panic!("{other:?}"),
        };
        assert_eq!(at, "Parameters.parameter");
    }
}
