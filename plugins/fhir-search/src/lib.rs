//! Hearth's FHIR R4 search engine: `_typeFilter` and REST search queries
//! compiled once into filters, then evaluated over raw NDJSON without
//! building the resources.
//!
//! **Driven by the official definitions.** build.rs turns the vendored R4
//! SearchParameter bundle (and the R4 JSON schema, for element types) into
//! tables; each parameter's FHIRPath expression is compiled against those
//! types by a FHIRPath subset (paths, `|`, `as`/`ofType`/`.as()` on choice
//! elements, `where(resolve() is T)`, `where(x = 'literal')`, `exists()`,
//! `empty()`, `and`, `or`, `extension('url')`). A definition it cannot
//! evaluate is listed by [`unsupported_definitions`] and rejected by
//! [`compile`] as "unsupported parameter" (`not-supported`): never
//! approximated, never ignored. These are `_text`, `_content` and `_query`
//! (R4 gives them no expression), `near` (special), Bundle's
//! `composition`/`message` (indexers), the MolecularSequence coordinates
//! (`%resource`) and DocumentReference `relationship` (its R4 components
//! are crossed). So are unknown parameters, modifiers that do not apply or
//! need terminology (`:in`, `:not-in`, token `:above`/`:below`), `_has`,
//! chains of more than one level, empty values, and result parameters
//! (`_count`, `_sort`...: `invalid`).
//!
//! **Semantics.** Comma = or within a parameter, repeated parameter = and;
//! `\,` `\|` `\$` `\\` escape. An empty query matches every resource of the
//! type. `+` in a query is a plus sign (not a space).
//! - token: `code`, `system|code`, `|code` (no system), `system|` on Coding,
//!   CodeableConcept, Identifier (system|value), ContactPoint (value),
//!   boolean and code-like primitives; exact, case-sensitive. Values without
//!   a system (code, ContactPoint...) match only a plain `code`; a `|` value
//!   on a parameter with only such values is rejected. `:not` = no value
//!   matches any alternative (absent counts); `:text` = starts-with on
//!   CodeableConcept.text, Coding.display, Identifier.type.text; `:of-type`.
//! - string: case- and accent-insensitive starts-with (`:contains`,
//!   `:exact`) on strings and on every part of HumanName and Address;
//!   accents are folded for Latin-1/Latin Extended-A and combining marks.
//! - reference: `Type/id`, `id` (any of the parameter's target types),
//!   absolute URLs compared whole (the engine does not know the server's
//!   base URL: a relative reference never equals an absolute value);
//!   versions are ignored on both sides; `:Type`, `:identifier`.
//!   `where(resolve() is T)` uses the type in the literal reference, the
//!   contained resource's type for `#id`, else `Reference.type`.
//! - date: every value is a range at its precision, in UTC when it has no
//!   time zone (dates without a time are UTC days); Period ends open when
//!   missing; Timing covers the hull of its events and bounds period.
//!   Prefixes follow R4 ranges; **`ap`** = overlaps the search range widened
//!   by one unit of its precision on each side (`ap2019-03` = Feb–Apr 2019).
//! - number, quantity: exact decimals. `eq`/`ne` use the significant-figure
//!   range (`100` = [99.5, 100.5), `1e2` = [50, 150)); `gt lt ge le`
//!   compare exactly, `sa` = `gt`, `eb` = `lt`; **`ap`** = within ±10% of the
//!   value. Quantities: `n|system|code` matches Quantity.system and code,
//!   `n||unit` the code or unit; no unit conversion. Money uses the ISO 4217
//!   system. Range values are intervals.
//! - composite: `a$b`, every part matching the same node.
//! - `:missing=true|false` on every type: whether the expression selects
//!   any element.
//!
//! **A filter includes only what it proves.** Values a parameter type cannot
//! compare (a date parameter reaching an Age, a quantity reaching
//! SampledData, a reference parameter reaching the Attachment of an
//! uncast choice) never match; they still count as present for `:missing`. Chained parameters (`subject:Patient.name=x`,
//! `subject.gender=male`, one level) are evaluated on resources `contained`
//! in the resource (`#id` references); a chain through any other reference
//! cannot be proven without reading the store, so it does not match.
//!
//! **Robustness.** Any bytes in, no panic: a line that is not a JSON object,
//! or whose structure breaks where the evaluation walks, nesting deeper than
//! 128 levels, is an error naming the line; string values that are not
//! valid UTF-8 and unparseable dates or numbers simply do not match.

mod date;
mod fhirpath;
mod json;
mod model;
mod number;
mod query;
mod reference;
mod search;
#[cfg(test)]
mod tests;
mod text;

use std::fmt;

use fhirpath::Ctx;
use search::Clause;

/// Why a query was rejected; maps to one OperationOutcome issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// An R4 `issue-type` code: `not-supported`, `invalid` or `value`.
    pub code: &'static str,
    pub diagnostics: String,
}

/// A line that could not be evaluated.
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

impl std::error::Error for EvalError {}

/// An R4 definition this engine cannot evaluate, and why.
#[derive(Clone, Debug)]
pub struct Unsupported {
    /// The base type as R4 lists it (`Resource` for `_id` and the like).
    pub base: &'static str,
    pub code: &'static str,
    pub reason: String,
}

/// A parameter [`compile`] accepts for a type.
#[derive(Clone, Debug)]
pub struct ParamInfo {
    pub code: &'static str,
    /// The R4 search parameter type: `token`, `date`, `reference`...
    pub kind: &'static str,
    /// The definition's canonical URL.
    pub definition: &'static str,
}

pub(crate) fn invalid(diagnostics: String) -> Rejection {
    Rejection {
        code: "invalid",
        diagnostics,
    }
}

pub(crate) fn not_supported(diagnostics: String) -> Rejection {
    Rejection {
        code: "not-supported",
        diagnostics,
    }
}

/// A compiled query: a resource matches when it is of the type and matches
/// every clause.
#[derive(Clone, Debug)]
pub struct Filter {
    resource_type: &'static str,
    /// The top-level members the clauses read, by slot.
    keys: Vec<&'static str>,
    /// The slot of `contained`, when a clause reads it.
    contained: Option<usize>,
    clauses: Vec<Clause>,
}

/// Top-level members kept on the stack while matching; more spill to the
/// heap.
const INLINE_SLOTS: usize = 32;

/// Compiles the query part of `ResourceType?query` (still percent-encoded,
/// `a=b&c=d`). Every rejected parameter is reported, not just the first.
pub fn compile(resource_type: &str, query: &str) -> Result<Filter, Vec<Rejection>> {
    let Some(ty) = search::context(resource_type).filter(|t| model::is_resource(t)) else {
        return Err(vec![not_supported(format!(
            "unknown resource type '{resource_type}'"
        ))]);
    };
    let mut clauses = Vec::new();
    let mut rejections = Vec::new();
    for pair in query::pairs(query) {
        match pair.and_then(|p| search::compile_pair(ty, &p.name, &p.value)) {
            Ok(clause) => clauses.push(clause),
            Err(r) => rejections.push(r),
        }
    }
    if rejections.is_empty() {
        Ok(Filter::from_clauses(ty, clauses))
    } else {
        Err(rejections)
    }
}

/// The lines of an NDJSON batch: split on `\n`, a final `\n` optional, a
/// trailing `\r` dropped.
fn lines(ndjson: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= ndjson.len() {
            return None;
        }
        let end = json::newline(ndjson, start).unwrap_or(ndjson.len());
        let line = &ndjson[start..end];
        start = end + 1;
        Some(line.strip_suffix(b"\r").unwrap_or(line))
    })
}

impl Filter {
    pub(crate) fn from_clauses(resource_type: &'static str, mut clauses: Vec<Clause>) -> Filter {
        let mut keys: Vec<&'static str> = Vec::new();
        let mut slot = |key: &'static str| match keys.iter().position(|k| *k == key) {
            Some(i) => i,
            None => {
                keys.push(key);
                keys.len() - 1
            }
        };
        for clause in &mut clauses {
            for chain in clause.program_mut().chains_mut() {
                if let Some(key) = chain.root_key() {
                    chain.slot = Some(slot(key));
                }
            }
        }
        let contained = clauses
            .iter()
            .any(Clause::reads_contained)
            .then(|| slot("contained"));
        Filter {
            resource_type,
            keys,
            contained,
            clauses,
        }
    }

    pub fn resource_type(&self) -> &str {
        self.resource_type
    }

    /// One verdict per line of `ndjson` (each line ended by `\n`, the last
    /// one may lack it).
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
    /// members up to the last one it needs, then only what the clauses
    /// walk; builds nothing.
    pub fn matches(&self, resource: &[u8]) -> Result<bool, String> {
        let count = self.keys.len();
        let mut inline = [None; INLINE_SLOTS];
        let mut spilled;
        let slots: &mut [Option<&[u8]>] = if count <= INLINE_SLOTS {
            &mut inline[..count]
        } else {
            spilled = vec![None; count];
            &mut spilled
        };
        let mut type_matches = None;
        let mut wanted = count + 1;
        json::members(resource, |key, value| {
            if type_matches.is_none() && key == b"resourceType" {
                let same = json::string_content(value)
                    .is_some_and(|t| json::raw_eq(t, self.resource_type));
                type_matches = Some(same);
                wanted -= 1;
                return Ok(same && wanted > 0);
            }
            if let Some(i) = self.slot_of(key)
                && slots[i].is_none()
            {
                slots[i] = Some(value);
                wanted -= 1;
            }
            Ok(wanted > 0)
        })?;
        if type_matches != Some(true) {
            return Ok(false);
        }
        let ctx = Ctx {
            root: resource,
            slots,
            contained: self.contained.and_then(|i| slots[i]),
        };
        for clause in &self.clauses {
            if !clause.matches(&ctx)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The keys are element names, which have no `\\`: a raw key equal to
    /// one is that key, and only a raw key with escapes needs decoding.
    fn slot_of(&self, key: &[u8]) -> Option<usize> {
        if let Some(i) = self.keys.iter().position(|k| k.as_bytes() == key) {
            return Some(i);
        }
        if !json::has_escape(key) {
            return None;
        }
        let key = json::decode(key)?;
        self.keys.iter().position(|k| *k == key)
    }
}

/// Every R4 definition (per base type) whose expression this engine cannot
/// evaluate, with why.
pub fn unsupported_definitions() -> Vec<Unsupported> {
    model::all_definitions()
        .iter()
        .filter_map(|def| {
            let reason = match search::context(def.base) {
                Some(context) => search::compile_definition(def, context).err()?,
                None => format!("unknown base type {}", def.base),
            };
            Some(Unsupported {
                base: def.base,
                code: def.code,
                reason,
            })
        })
        .collect()
}

/// The parameters [`compile`] accepts for a type (for the
/// CapabilityStatement), sorted by code.
pub fn parameters(resource_type: &str) -> Vec<ParamInfo> {
    let Some(ty) = search::context(resource_type).filter(|t| model::is_resource(t)) else {
        return Vec::new();
    };
    let mut params: Vec<ParamInfo> = model::definitions_for(ty)
        .filter(|def| {
            // An inherited definition a type overrides is not the one used.
            model::definition(ty, def.code).is_some_and(|d| std::ptr::eq(d, *def))
                && search::compile_definition(def, ty).is_ok()
        })
        .map(|def| ParamInfo {
            code: def.code,
            kind: def.kind,
            definition: def.url,
        })
        .collect();
    params.sort_by_key(|p| p.code);
    params
}
