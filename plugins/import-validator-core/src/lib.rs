//! Hearth's default import validator: a structural R4 check of each NDJSON
//! line, driven by tables build.rs generates from the vendored R4 JSON
//! schema (`host/assets/fhir-r4/fhir.schema.json`).
//!
//! A line is accepted when it is a JSON object that is a valid R4 resource
//! in structure:
//!
//! - valid UTF-8 and JSON, an object, with a known R4 `resourceType`
//!   (equal to the file's declared type, when it has one);
//! - every element, at any depth, is one the schema defines for its type
//!   (or, for a primitive, its `_name` sibling holding id and extensions).
//!   The vendored schema is Medplum's copy: its own resource types and what
//!   it adds to R4 types (`Meta.project`, `Reference.resource`...) are not
//!   R4 and count as unknown (see build.rs);
//! - each has the right JSON kind: an array where the element repeats and
//!   a single value where it does not, an object for complex types, a
//!   string, number or boolean for primitives as R4 JSON spells them; no
//!   `null` outside primitive arrays, no empty object or array, no
//!   duplicate key;
//! - primitive values match their type's format (the schema's patterns,
//!   see `formats`): `id` (so `Resource.id` and `meta.versionId`),
//!   `instant` (`meta.lastUpdated`), date, dateTime, time, decimal,
//!   integer, positiveInt, unsignedInt, boolean, uri, url, canonical, code,
//!   oid, uuid, base64Binary, string, markdown; codes bound to a required
//!   value set in the schema (`enum`) are one of its codes;
//! - at most one type of each choice element (`value[x]`);
//! - the elements the schema marks required are present;
//! - contained resources, `Bundle.entry.resource` and
//!   `Parameters.parameter.resource` are checked the same way, recursively,
//!   up to `MAX_RESOURCE_DEPTH` nested resources; a contained resource
//!   holds no contained resources itself (R4 invariant dom-2);
//! - objects and arrays nest at most `MAX_DEPTH` deep.
//!
//! Every failure is one issue (severity error) whose code is `structure`
//! for JSON, kind and unknown-element errors (as the HL7 validator reports
//! unknown elements), `value` for formats and codes, `required` for a
//! missing element and `invalid` otherwise, with a FHIRPath-like location
//! (`Patient.name[0].fmaily`). All issues of a line are reported, up to
//! `max_issues`, then one `informational` issue counts the rest. A line that
//! is not JSON gets a single issue. The validator never changes a resource.
//!
//! Not checked: the invariants beyond dom-2, references (conditional ones
//! are the host's business), terminology beyond the schema's required
//! `enum`s, profiles, the XHTML inside `Narrative.div`, that a primitive
//! array and its `_name` sibling have the same length, and that a required
//! primitive is present (the schema marks only complex elements required).
//!
//! Configuration (`[plugins.import_validator.config]`):
//! - `unknown_elements`: `"error"` (default) or `"ignore"` (elements the
//!   schema does not define are passed over, the rest is still checked);
//! - `max_issues`: issues reported per line, 1 to 1000 (default 20).
//!
//! Plain Rust with no WebAssembly: `plugins/import-validator` wraps it as a
//! component, and the tests run it natively.

mod formats;
mod hash;
mod schema;
mod walk;

/// Most resources nested in one another (Bundle in Bundle, contained...).
pub const MAX_RESOURCE_DEPTH: usize = 8;

/// Most objects and arrays nested in one another, the line's resource
/// included; what lies deeper is one issue, not walked.
pub const MAX_DEPTH: usize = 100;

/// What to do with elements the schema does not define.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownElements {
    Error,
    Ignore,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub unknown_elements: UnknownElements,
    /// Issues reported per line before the rest are only counted.
    pub max_issues: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            unknown_elements: UnknownElements::Error,
            max_issues: 20,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("unknown_elements must be \"error\" or \"ignore\", not {0:?}")]
    UnknownElements(String),
    #[error("max_issues must be a whole number from 1 to 1000, not {0:?}")]
    MaxIssues(String),
}

impl Config {
    /// Reads the plugin's config table through `get` (one value per key).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut config = Config::default();
        if let Some(v) = get("unknown_elements") {
            config.unknown_elements = match v.as_str() {
                "error" => UnknownElements::Error,
                "ignore" => UnknownElements::Ignore,
                _ => return Err(ConfigError::UnknownElements(v)),
            };
        }
        if let Some(v) = get("max_issues") {
            config.max_issues = v
                .parse()
                .ok()
                .filter(|n| (1..=1000).contains(n))
                .ok_or(ConfigError::MaxIssues(v))?;
        }
        Ok(config)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Information,
}

/// One problem of a line; maps 1:1 to an OperationOutcome issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    /// An R4 `issue-type` code.
    pub code: &'static str,
    pub diagnostics: String,
    /// Where in the resource, FHIRPath-like; `None` for the line as a whole.
    pub expression: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("'{0}' is not an R4 resource type")]
pub struct UnknownType(pub String);

/// Whether `name` is an R4 resource type.
pub fn is_resource_type(name: &str) -> bool {
    schema::resource(name).is_some()
}

/// Validates the lines of one input file.
#[derive(Debug)]
pub struct Validator {
    declared: Option<&'static schema::TypeDef>,
    config: Config,
}

impl Validator {
    /// `declared`: the type the import declares for the file, if any.
    pub fn new(declared: Option<&str>, config: Config) -> Result<Validator, UnknownType> {
        let declared = declared
            .map(|t| schema::resource(t).ok_or_else(|| UnknownType(t.to_owned())))
            .transpose()?;
        Ok(Validator { declared, config })
    }

    /// The issues of one line (no newline); none means the line is valid.
    pub fn check(&self, line: &[u8]) -> Vec<Issue> {
        walk::check_line(line, self.declared, &self.config)
    }

    /// One result per line of `ndjson`, framed as the host frames batches:
    /// lines end with `\n`, the last one optionally.
    pub fn validate(&self, ndjson: &[u8]) -> Vec<Vec<Issue>> {
        lines(ndjson).map(|line| self.check(line)).collect()
    }
}

/// The lines of a batch: split at `\n`, a final `\n` ends the last line.
pub fn lines(ndjson: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = ndjson.strip_suffix(b"\n").unwrap_or(ndjson);
    (!body.is_empty())
        .then(|| body.split(|b| *b == b'\n'))
        .into_iter()
        .flatten()
}
