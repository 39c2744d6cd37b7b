//! Search parameters compiled into clauses, and the matching rules of each
//! parameter type against each FHIR data type.

use std::borrow::Cow;

use crate::date::{self, Date, Span};
use crate::fhirpath::{self, Chain, Ctx, Program};
use crate::json::{self, Scan};
use crate::model::{self, Definition};
use crate::number::{self, Decimal};
use crate::query::{self, Prefix};
use crate::reference::{self, Target};
use crate::text::normalize;
use crate::{Filter, Rejection, invalid, not_supported};

/// One parameter of a query; a resource matches a query when it matches
/// every clause.
#[derive(Clone, Debug)]
pub(crate) enum Clause {
    /// One node of `program` passes `test`; with `negate` (`:not`), none does.
    Test {
        program: Program,
        test: Test,
        negate: bool,
    },
    /// `:missing`: whether the expression selects nothing.
    Missing { program: Program, missing: bool },
    /// A chained parameter: one reference of `program` points to a contained
    /// resource one of `targets` matches.
    Chain {
        program: Program,
        targets: Vec<Filter>,
    },
}

/// The values of one parameter, any of which may match (comma = or).
#[derive(Clone, Debug)]
pub(crate) enum Test {
    Token(Vec<Token>),
    /// `:text`: normalized prefixes of a code's text or display.
    Text(Vec<String>),
    OfType(Vec<OfType>),
    String(StringMode, Vec<String>),
    Reference(Vec<RefValue>),
    /// Reference `:identifier`.
    Identifier(Vec<Token>),
    Uri(UriMode, Vec<String>),
    Date(Vec<(Prefix, Date)>),
    Number(Vec<number::Search>),
    Quantity(Vec<QuantitySearch>),
    /// Each alternative: every component matches the same node.
    Composite(Vec<Vec<Part>>),
}

/// `code`, `system|code`, `|code` or `system|`.
#[derive(Clone, Debug)]
pub(crate) struct Token {
    /// `None`: any system; `Some("")`: no system.
    system: Option<String>,
    /// `None`: any code.
    code: Option<String>,
}

/// `:of-type` on an Identifier: `type-system|type-code|value`.
#[derive(Clone, Debug)]
pub(crate) struct OfType {
    system: String,
    code: String,
    value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StringMode {
    /// Case- and accent-insensitive starts-with (no modifier).
    StartsWith,
    /// Case- and accent-insensitive substring.
    Contains,
    /// Character for character.
    Exact,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UriMode {
    Exact,
    /// The resource's uri is a prefix of the value.
    Above,
    /// The value is a prefix of the resource's uri.
    Below,
}

#[derive(Clone, Debug)]
pub(crate) enum RefValue {
    /// `Type/id`, or a bare `id` (`types` then lists the types it may
    /// have; empty = any).
    Local {
        types: Vec<&'static str>,
        id: String,
    },
    /// An absolute URL, compared whole.
    Url(String),
}

#[derive(Clone, Debug)]
pub(crate) struct QuantitySearch {
    number: number::Search,
    /// With a `system`, the Quantity's system and code must be these;
    /// without, `code` matches its code or its unit; no `code`: any unit.
    system: Option<String>,
    code: Option<String>,
}

/// One component of a composite value, evaluated from the composite's node.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    chains: Vec<Chain>,
    test: Test,
}

/// How far a parameter type can match values of a FHIR type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fit {
    Yes,
    /// The type can hold no value of this kind (an Age for a date): such
    /// values never match, but do count as present for `:missing`.
    Never,
    No,
}

const STRINGS: &[&str] = &[
    "string",
    "markdown",
    "code",
    "id",
    "uri",
    "url",
    "canonical",
    "oid",
    "uuid",
];
const URIS: &[&str] = &["uri", "url", "canonical", "oid", "uuid"];
const QUANTITIES: &[&str] = &[
    "Quantity",
    "Age",
    "Duration",
    "Distance",
    "Count",
    "SimpleQuantity",
    "MoneyQuantity",
];
const NUMBERS: &[&str] = &["integer", "decimal", "positiveInt", "unsignedInt"];
const DATES: &[&str] = &["date", "dateTime", "instant"];
const MONEY_SYSTEM: &str = "urn:iso:std:iso:4217";

fn fit(kind: &str, ty: &str) -> Fit {
    let yes = match kind {
        "token" => {
            STRINGS.contains(&ty)
                || matches!(
                    ty,
                    "boolean" | "Coding" | "CodeableConcept" | "Identifier" | "ContactPoint"
                )
        }
        "string" => STRINGS.contains(&ty) || matches!(ty, "HumanName" | "Address"),
        "reference" => ty == "Reference" || URIS.contains(&ty),
        "uri" => URIS.contains(&ty),
        "date" => DATES.contains(&ty) || matches!(ty, "Period" | "Timing"),
        "number" => NUMBERS.contains(&ty) || ty == "Range",
        "quantity" => QUANTITIES.contains(&ty) || matches!(ty, "Money" | "Range"),
        "composite" => true,
        _ => false,
    };
    let never = match kind {
        "date" => matches!(ty, "Age" | "Range" | "Duration" | "string"),
        "quantity" => ty == "SampledData",
        _ => false,
    };
    match (yes, never) {
        (true, _) => Fit::Yes,
        (false, true) => Fit::Never,
        (false, false) => Fit::No,
    }
}

/// The static name of a resource type or of the abstract bases.
pub(crate) fn context(name: &str) -> Option<&'static str> {
    match name {
        "Resource" => Some("Resource"),
        "DomainResource" => Some("DomainResource"),
        _ => model::RESOURCES
            .binary_search_by(|(r, _)| (*r).cmp(name))
            .ok()
            .map(|i| model::RESOURCES[i].0),
    }
}

/// Compiles a definition's expression for `context`, or says why this
/// engine cannot evaluate it.
pub(crate) fn compile_definition(
    def: &Definition,
    context: &'static str,
) -> Result<Program, String> {
    if def.kind == "special" {
        return Err(format!(
            "'{}' is a special parameter with its own search logic",
            def.code
        ));
    }
    let expression = def
        .expression
        .ok_or_else(|| "R4 gives it no FHIRPath expression".to_owned())?;
    let program = fhirpath::compile(expression, context)?;
    let chains = match &program {
        Program::Boolean(_) if def.kind == "token" => return Ok(program),
        Program::Boolean(_) => {
            return Err(format!("a boolean expression for a {} parameter", def.kind));
        }
        Program::Nodes(chains) => chains,
    };
    let mut any_yes = false;
    for chain in chains {
        match fit(def.kind, chain.ty) {
            Fit::Yes => any_yes = true,
            Fit::Never => {}
            // Another type of a choice element (Consent.source as an
            // Attachment, for a reference): it holds no such value.
            Fit::No if chain.variant => {}
            Fit::No => return Err(format!("{} search on {} values", def.kind, chain.ty)),
        }
        if def.kind == "composite" {
            for component in def.components {
                compile_component(component, chain.ty)?;
            }
        }
    }
    if !any_yes {
        return Err(format!("{} search on none of its values' types", def.kind));
    }
    if def.kind == "composite" && def.components.is_empty() {
        return Err("a composite without components".into());
    }
    Ok(program)
}

fn compile_component(component: &model::Component, ty: &'static str) -> Result<Vec<Chain>, String> {
    if component.kind.is_empty() || component.kind == "composite" {
        return Err(format!(
            "component '{}' has no usable definition",
            component.expression
        ));
    }
    let def = Definition {
        base: ty,
        code: "",
        kind: component.kind,
        url: "",
        expression: Some(component.expression),
        targets: &[],
        components: &[],
    };
    match compile_definition(&def, ty) {
        Ok(Program::Nodes(chains)) => Ok(chains),
        Ok(Program::Boolean(_)) => {
            Err(format!("component '{}' is a boolean", component.expression))
        }
        Err(e) => Err(format!("component '{}': {e}", component.expression)),
    }
}

/// Compiles one `name=value` (both percent-decoded) for `resource_type`.
pub(crate) fn compile_pair(
    resource_type: &'static str,
    name: &str,
    value: &str,
) -> Result<Clause, Rejection> {
    let parsed = query::name(name);
    if query::RESULT_PARAMETERS.contains(&parsed.code) {
        return Err(invalid(format!(
            "result parameter {} is not allowed in a filter",
            parsed.code
        )));
    }
    if parsed.code == "_has" {
        return Err(not_supported(format!(
            "'{name}': reverse chaining (_has) is not supported"
        )));
    }
    let def = model::definition(resource_type, parsed.code).ok_or_else(|| {
        not_supported(format!(
            "unsupported parameter '{}' for {resource_type}: R4 defines no such search parameter",
            parsed.code
        ))
    })?;
    let program = compile_definition(def, resource_type).map_err(|why| {
        not_supported(format!(
            "unsupported parameter '{}' for {resource_type}: {why}",
            def.code
        ))
    })?;
    if value.is_empty() {
        return Err(invalid(format!("'{name}' has an empty value")));
    }
    if let Some(chained) = parsed.chain {
        return chain(def, program, parsed.modifier, chained, value);
    }
    let chains = match &program {
        Program::Nodes(chains) => chains.as_slice(),
        Program::Boolean(_) => &[],
    };
    let modifier = parsed.modifier;
    if modifier == Some("missing") {
        let missing = match value {
            "true" => true,
            "false" => false,
            _ => {
                return Err(bad_value(format!(
                    "'{name}' takes true or false, not '{value}'"
                )));
            }
        };
        return Ok(Clause::Missing { program, missing });
    }
    let unsupported_modifier = |m: &str| {
        not_supported(format!(
            "unsupported modifier '{}:{m}': not applicable to {} parameters or not implemented",
            def.code, def.kind
        ))
    };
    let alternatives = query::split_unescaped(value, ',');
    // An empty alternative would match everything (every text starts with
    // ""): refuse it rather than widen the filter.
    if alternatives.iter().any(|v| v.is_empty()) {
        return Err(invalid(format!(
            "'{name}={value}' has an empty value between commas"
        )));
    }
    let mut negate = false;
    let test = match (def.kind, modifier) {
        ("token", None | Some("not")) => {
            negate = modifier.is_some();
            let tokens = alternatives
                .iter()
                .map(|v| token(def.code, v))
                .collect::<Result<Vec<_>, _>>()?;
            if matches!(program, Program::Boolean(_)) {
                for t in &tokens {
                    if t.system.is_some() || !matches!(t.code.as_deref(), Some("true" | "false")) {
                        return Err(bad_value(format!("'{}' takes true or false", def.code)));
                    }
                }
            } else if tokens.iter().any(|t| t.system.is_some())
                && chains.iter().all(|c| !has_system(c.ty))
            {
                return Err(not_supported(format!(
                    "'{}' is matched on {} values, which have no system: give the code alone",
                    def.code,
                    chains.first().map_or("", |c| c.ty)
                )));
            }
            Test::Token(tokens)
        }
        ("token", Some("text")) => {
            if chains
                .iter()
                .all(|c| !matches!(c.ty, "CodeableConcept" | "Coding" | "Identifier"))
            {
                return Err(unsupported_modifier("text"));
            }
            Test::Text(
                alternatives
                    .iter()
                    .map(|v| normalized(def.code, v))
                    .collect::<Result<_, _>>()?,
            )
        }
        ("token", Some("of-type")) => {
            if chains.iter().all(|c| c.ty != "Identifier") {
                return Err(unsupported_modifier("of-type"));
            }
            Test::OfType(
                alternatives
                    .iter()
                    .map(|v| of_type(def.code, v))
                    .collect::<Result<_, _>>()?,
            )
        }
        ("token", Some(m @ ("in" | "not-in" | "above" | "below"))) => {
            return Err(not_supported(format!(
                "unsupported modifier '{}:{m}': it needs a terminology server",
                def.code
            )));
        }
        ("string", None | Some("contains") | Some("exact")) => {
            let mode = match modifier {
                None => StringMode::StartsWith,
                Some("contains") => StringMode::Contains,
                _ => StringMode::Exact,
            };
            let values = alternatives
                .iter()
                .map(|v| match mode {
                    StringMode::Exact => Ok(query::unescape(v)),
                    _ => normalized(def.code, v),
                })
                .collect::<Result<_, _>>()?;
            Test::String(mode, values)
        }
        ("uri", None | Some("above") | Some("below")) => {
            let mode = match modifier {
                None => UriMode::Exact,
                Some("above") => UriMode::Above,
                _ => UriMode::Below,
            };
            Test::Uri(
                mode,
                alternatives.iter().map(|v| query::unescape(v)).collect(),
            )
        }
        ("reference", Some("identifier")) => {
            if chains.iter().all(|c| c.ty != "Reference") {
                return Err(unsupported_modifier("identifier"));
            }
            Test::Identifier(
                alternatives
                    .iter()
                    .map(|v| token(def.code, v))
                    .collect::<Result<_, _>>()?,
            )
        }
        ("reference", typed) => {
            let ty = match typed {
                None => None,
                Some(t) => Some(target_type(def, t).ok_or_else(|| unsupported_modifier(t))?),
            };
            Test::Reference(
                alternatives
                    .iter()
                    .map(|v| reference_value(def, ty, &query::unescape(v)))
                    .collect::<Result<_, _>>()?,
            )
        }
        ("date", None) => Test::Date(
            alternatives
                .iter()
                .map(|v| date_value(def.code, v))
                .collect::<Result<_, _>>()?,
        ),
        ("number", None) => Test::Number(
            alternatives
                .iter()
                .map(|v| number_value(def.code, v))
                .collect::<Result<_, _>>()?,
        ),
        ("quantity", None) => Test::Quantity(
            alternatives
                .iter()
                .map(|v| quantity_value(def.code, v))
                .collect::<Result<_, _>>()?,
        ),
        ("composite", None) => {
            let types: Vec<&'static str> = chains.iter().map(|c| c.ty).collect();
            Test::Composite(
                alternatives
                    .iter()
                    .map(|v| composite_value(def, &types, v))
                    .collect::<Result<_, _>>()?,
            )
        }
        (_, Some(m)) => return Err(unsupported_modifier(m)),
        (kind, None) => {
            return Err(not_supported(format!("unsupported parameter type {kind}")));
        }
    };
    Ok(Clause::Test {
        program,
        test,
        negate,
    })
}

/// A value for case- and accent-insensitive matching; one that normalizes
/// to nothing (only combining marks) would match every text.
fn normalized(code: &str, value: &str) -> Result<String, Rejection> {
    let text = normalize(&query::unescape(value));
    if text.is_empty() {
        return Err(invalid(format!(
            "'{value}' is no text to search '{code}' for"
        )));
    }
    Ok(text)
}

fn bad_value(diagnostics: String) -> Rejection {
    Rejection {
        code: "value",
        diagnostics,
    }
}

/// Whether token values of this type carry a system.
fn has_system(ty: &str) -> bool {
    matches!(ty, "Coding" | "CodeableConcept" | "Identifier")
}

fn token(code: &str, text: &str) -> Result<Token, Rejection> {
    let empty = || invalid(format!("empty value for '{code}'"));
    match query::split_unescaped(text, '|').as_slice() {
        [code_only] => {
            let code_only = query::unescape(code_only);
            if code_only.is_empty() {
                return Err(empty());
            }
            Ok(Token {
                system: None,
                code: Some(code_only),
            })
        }
        [system, value] => {
            let (system, value) = (query::unescape(system), query::unescape(value));
            if system.is_empty() && value.is_empty() {
                return Err(empty());
            }
            Ok(Token {
                system: Some(system),
                code: Some(value).filter(|c| !c.is_empty()),
            })
        }
        _ => Err(invalid(format!(
            "'{text}' has more than one unescaped '|' for '{code}'"
        ))),
    }
}

fn of_type(code: &str, text: &str) -> Result<OfType, Rejection> {
    match query::split_unescaped(text, '|').as_slice() {
        [system, ty, value] if !ty.is_empty() && !value.is_empty() && !system.is_empty() => {
            Ok(OfType {
                system: query::unescape(system),
                code: query::unescape(ty),
                value: query::unescape(value),
            })
        }
        _ => Err(invalid(format!(
            "'{code}:of-type' takes type-system|type-code|value, not '{text}'"
        ))),
    }
}

/// The resource type a `:Type` modifier names, when the parameter may point
/// to it.
fn target_type(def: &Definition, name: &str) -> Option<&'static str> {
    let ty = context(name).filter(|t| model::is_resource(t))?;
    (def.targets.is_empty() || def.targets.contains(&ty)).then_some(ty)
}

fn reference_value(
    def: &Definition,
    ty: Option<&'static str>,
    text: &str,
) -> Result<RefValue, Rejection> {
    let not_a_target = |t: &str| {
        invalid(format!(
            "'{}' cannot refer to a {t} (its targets: {})",
            def.code,
            def.targets.join(", ")
        ))
    };
    match (reference::parse(text), ty) {
        (Target::Local { ty: t, id }, None) => {
            let t = target_type(def, t).ok_or_else(|| not_a_target(t))?;
            Ok(RefValue::Local {
                types: vec![t],
                id: id.to_owned(),
            })
        }
        (Target::Local { ty: t, id }, Some(wanted)) if t == wanted => Ok(RefValue::Local {
            types: vec![wanted],
            id: id.to_owned(),
        }),
        (Target::Absolute { url, .. }, None) => Ok(RefValue::Url(url.to_owned())),
        (Target::Other, _) if !text.contains('/') && !text.starts_with('#') => {
            Ok(RefValue::Local {
                types: match ty {
                    Some(t) => vec![t],
                    None => def.targets.to_vec(),
                },
                id: text.to_owned(),
            })
        }
        _ => Err(invalid(format!(
            "'{text}' is not a reference value for '{}' (Type/id, id or an absolute URL)",
            def.code
        ))),
    }
}

fn date_value(code: &str, text: &str) -> Result<(Prefix, Date), Rejection> {
    let (prefix, rest) = query::prefix(text);
    let date = date::parse(rest).ok_or_else(|| {
        bad_value(format!(
            "'{text}' is not a date for '{code}' (YYYY, YYYY-MM, YYYY-MM-DD or a dateTime, with an optional prefix)"
        ))
    })?;
    Ok((prefix, date))
}

fn number_value(code: &str, text: &str) -> Result<number::Search, Rejection> {
    let (prefix, rest) = query::prefix(text);
    let value = Decimal::parse(rest)
        .ok_or_else(|| bad_value(format!("'{text}' is not a number for '{code}'")))?;
    Ok(number::Search::new(prefix, value))
}

fn quantity_value(code: &str, text: &str) -> Result<QuantitySearch, Rejection> {
    let parts = query::split_unescaped(text, '|');
    let (number, system, unit) = match parts.as_slice() {
        [number] => (number, None, None),
        [number, system, unit] if !unit.is_empty() => (
            number,
            Some(query::unescape(system)).filter(|s| !s.is_empty()),
            Some(query::unescape(unit)),
        ),
        _ => {
            return Err(bad_value(format!(
                "'{text}' is not a quantity for '{code}' ([prefix]number, number|system|code or number||unit)"
            )));
        }
    };
    Ok(QuantitySearch {
        number: number_value(code, number)?,
        system,
        code: unit,
    })
}

fn composite_value(
    def: &Definition,
    types: &[&'static str],
    text: &str,
) -> Result<Vec<Part>, Rejection> {
    let values = query::split_unescaped(text, '$');
    if values.len() != def.components.len() {
        return Err(invalid(format!(
            "'{text}' has {} parts; '{}' takes {} separated by '$'",
            values.len(),
            def.code,
            def.components.len()
        )));
    }
    let mut parts = Vec::new();
    for (component, value) in def.components.iter().zip(values) {
        let mut chains = Vec::new();
        for ty in types {
            chains.extend(compile_component(component, ty).map_err(not_supported)?);
        }
        if value.is_empty() {
            return Err(invalid(format!(
                "'{text}' has an empty part for '{}'",
                def.code
            )));
        }
        let test = match component.kind {
            "token" => Test::Token(vec![token(def.code, value)?]),
            "string" => Test::String(StringMode::StartsWith, vec![normalized(def.code, value)?]),
            "uri" => Test::Uri(UriMode::Exact, vec![query::unescape(value)]),
            "date" => Test::Date(vec![date_value(def.code, value)?]),
            "number" => Test::Number(vec![number_value(def.code, value)?]),
            "quantity" => Test::Quantity(vec![quantity_value(def.code, value)?]),
            "reference" => {
                let target = Definition {
                    base: "",
                    code: def.code,
                    kind: "reference",
                    url: "",
                    expression: None,
                    targets: &[],
                    components: &[],
                };
                Test::Reference(vec![reference_value(
                    &target,
                    None,
                    &query::unescape(value),
                )?])
            }
            other => return Err(not_supported(format!("composite part of type {other}"))),
        };
        parts.push(Part { chains, test });
    }
    Ok(parts)
}

/// `subject.name=x`, `subject:Patient.name=x`: compiled against each
/// possible target type that has the chained parameter.
fn chain(
    def: &Definition,
    program: Program,
    modifier: Option<&str>,
    chained: &str,
    value: &str,
) -> Result<Clause, Rejection> {
    if def.kind != "reference" {
        return Err(invalid(format!(
            "'{}' is a {} parameter: only reference parameters can be chained",
            def.code, def.kind
        )));
    }
    if chained.contains('.') {
        return Err(not_supported(format!(
            "'{}.{chained}': chains of more than one level are not supported",
            def.code
        )));
    }
    let types: Vec<&'static str> = match modifier {
        Some(m) => vec![
            target_type(def, m)
                .ok_or_else(|| invalid(format!("'{}' cannot refer to a {m}", def.code)))?,
        ],
        None => def.targets.iter().filter_map(|t| context(t)).collect(),
    };
    let code = query::name(chained).code;
    let mut targets = Vec::new();
    for ty in types {
        if model::definition(ty, code).is_none() {
            continue;
        }
        let clause = compile_pair(ty, chained, value)?;
        targets.push(Filter::from_clauses(ty, vec![clause]));
    }
    if targets.is_empty() {
        return Err(not_supported(format!(
            "unsupported parameter '{}.{chained}': no type '{}' refers to has a parameter '{code}'",
            def.code, def.code
        )));
    }
    Ok(Clause::Chain { program, targets })
}

impl Clause {
    pub(crate) fn program_mut(&mut self) -> &mut Program {
        match self {
            Clause::Test { program, .. }
            | Clause::Missing { program, .. }
            | Clause::Chain { program, .. } => program,
        }
    }

    /// Whether evaluating the clause reads the resource's `contained`.
    pub(crate) fn reads_contained(&self) -> bool {
        match self {
            Clause::Chain { .. } => true,
            Clause::Test { program, .. } | Clause::Missing { program, .. } => program.resolves(),
        }
    }

    pub(crate) fn matches<'a>(&self, ctx: &Ctx<'a>) -> Scan<bool> {
        match self {
            Clause::Test {
                program: Program::Boolean(pred),
                test: Test::Token(tokens),
                negate,
            } => {
                let value = pred.eval(ctx.root, ctx)?;
                let found = value.is_some_and(|v| {
                    tokens
                        .iter()
                        .any(|t| t.code.as_deref() == Some(if v { "true" } else { "false" }))
                });
                Ok(found != *negate)
            }
            Clause::Test {
                program: Program::Boolean(_),
                ..
            } => Ok(false),
            Clause::Test {
                program: Program::Nodes(chains),
                test,
                negate,
            } => {
                let found = any_chain(chains, ctx, |node, ty| test.matches(node, ty, ctx))?;
                Ok(found != *negate)
            }
            Clause::Missing {
                program: Program::Nodes(chains),
                missing,
            } => Ok(any_chain(chains, ctx, |_, _| Ok(true))? != *missing),
            Clause::Missing {
                program: Program::Boolean(pred),
                missing,
            } => Ok(pred.eval(ctx.root, ctx)?.is_none() == *missing),
            Clause::Chain {
                program: Program::Nodes(chains),
                targets,
            } => any_chain(chains, ctx, |node, _| {
                let Some(literal) = json::member(node, "reference")?.and_then(json::string_content)
                else {
                    return Ok(false);
                };
                let Some(text) = json::decode(literal) else {
                    return Ok(false);
                };
                let Target::Contained(id) = reference::parse(&text) else {
                    return Ok(false);
                };
                let Some(resource) = fhirpath::contained(ctx, id)? else {
                    return Ok(false);
                };
                for target in targets {
                    if target.matches(resource)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }),
            Clause::Chain { .. } => Ok(false),
        }
    }
}

/// Whether `test(node, type)` holds for a node of one of `chains`, from the
/// resource's root.
fn any_chain<'a>(
    chains: &[Chain],
    ctx: &Ctx<'a>,
    mut test: impl FnMut(&'a [u8], &'static str) -> Scan<bool>,
) -> Scan<bool> {
    for chain in chains {
        if chain.any(ctx.root, ctx, &mut |node| test(node, chain.ty))? {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Test {
    /// Whether a node of FHIR type `ty` matches one of the values.
    fn matches<'a>(&self, node: &'a [u8], ty: &str, ctx: &Ctx<'a>) -> Scan<bool> {
        match self {
            Test::Token(tokens) => any(tokens, |t| t.matches(node, ty)),
            Test::Text(texts) => text_matches(texts, node, ty),
            Test::OfType(values) => {
                if ty != "Identifier" {
                    return Ok(false);
                }
                any(values, |v| v.matches(node))
            }
            Test::String(mode, values) => string_matches(*mode, values, node, ty),
            Test::Reference(values) => reference_matches(values, node, ty),
            Test::Identifier(tokens) => {
                if ty != "Reference" {
                    return Ok(false);
                }
                match json::member(node, "identifier")? {
                    Some(identifier) => any(tokens, |t| t.matches(identifier, "Identifier")),
                    None => Ok(false),
                }
            }
            Test::Uri(mode, values) => {
                let Some(uri) = string_value(node) else {
                    return Ok(false);
                };
                Ok(values.iter().any(|v| match mode {
                    UriMode::Exact => uri == v.as_str(),
                    UriMode::Above => !uri.is_empty() && v.starts_with(uri.as_ref()),
                    UriMode::Below => uri.starts_with(v.as_str()),
                }))
            }
            Test::Date(values) => {
                let Some(span) = date_span(node, ty)? else {
                    return Ok(false);
                };
                Ok(values
                    .iter()
                    .any(|(prefix, date)| date::matches(*prefix, date, span)))
            }
            Test::Number(values) => {
                let Some((low, high)) = number_interval(node, ty)? else {
                    return Ok(false);
                };
                Ok(values.iter().any(|s| s.matches(low, high)))
            }
            Test::Quantity(values) => quantity_matches(values, node, ty),
            Test::Composite(alternatives) => any(alternatives, |parts| {
                for part in parts {
                    let mut found = false;
                    for chain in &part.chains {
                        if chain.any(node, ctx, &mut |n| part.test.matches(n, chain.ty, ctx))? {
                            found = true;
                            break;
                        }
                    }
                    if !found {
                        return Ok(false);
                    }
                }
                Ok(true)
            }),
        }
    }
}

/// Whether `test` holds for one of `items`, stopping at the first.
fn any<T>(items: &[T], mut test: impl FnMut(&T) -> Scan<bool>) -> Scan<bool> {
    for item in items {
        if test(item)? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The text of a JSON string node; `None` for other values and for strings
/// that are not valid UTF-8.
fn string_value(node: &[u8]) -> Option<Cow<'_, str>> {
    json::decode(json::string_content(node)?)
}

/// The raw content of a string member, when present.
type Raw<'a> = Option<&'a [u8]>;

/// The first `system` and `key` members of an object.
fn system_and<'a>(node: &'a [u8], key: &str) -> Scan<(Raw<'a>, Raw<'a>)> {
    let (mut system, mut value) = (None, None);
    if node.first() == Some(&b'{') {
        json::members(node, |k, v| {
            if system.is_none() && json::raw_eq(k, "system") {
                system = json::string_content(v);
            } else if value.is_none() && json::raw_eq(k, key) {
                value = json::string_content(v);
            }
            Ok(system.is_none() || value.is_none())
        })?;
    }
    Ok((system, value))
}

impl Token {
    fn matches(&self, node: &[u8], ty: &str) -> Scan<bool> {
        match ty {
            "Coding" => self.matches_pair(node, "code"),
            "Identifier" => self.matches_pair(node, "value"),
            "CodeableConcept" => match json::member(node, "coding")? {
                Some(codings) => json::any(codings, |c| self.matches_pair(c, "code")),
                None => Ok(false),
            },
            _ if self.system.is_some() => Ok(false),
            "ContactPoint" => Ok(json::member(node, "value")?
                .and_then(json::string_content)
                .is_some_and(|v| self.code_is(v))),
            "boolean" => Ok(self.code.as_deref().is_some_and(|c| node == c.as_bytes())),
            _ => Ok(json::string_content(node).is_some_and(|v| self.code_is(v))),
        }
    }

    fn code_is(&self, raw: &[u8]) -> bool {
        self.code.as_deref().is_none_or(|c| json::raw_eq(raw, c))
    }

    fn matches_pair(&self, node: &[u8], key: &str) -> Scan<bool> {
        let (system, value) = system_and(node, key)?;
        let system_ok = match self.system.as_deref() {
            None => true,
            Some("") => system.is_none(),
            Some(s) => system.is_some_and(|raw| json::raw_eq(raw, s)),
        };
        Ok(system_ok && value.is_some_and(|v| self.code_is(v)))
    }
}

impl OfType {
    fn matches(&self, identifier: &[u8]) -> Scan<bool> {
        let value_ok = json::member(identifier, "value")?
            .and_then(json::string_content)
            .is_some_and(|v| json::raw_eq(v, &self.value));
        if !value_ok {
            return Ok(false);
        }
        let Some(codings) = json::member(identifier, "type")?
            .map(|ty| json::member(ty, "coding"))
            .transpose()?
            .flatten()
        else {
            return Ok(false);
        };
        json::any(codings, |coding| {
            let (system, code) = system_and(coding, "code")?;
            Ok(system.is_some_and(|s| json::raw_eq(s, &self.system))
                && code.is_some_and(|c| json::raw_eq(c, &self.code)))
        })
    }
}

/// Whether the normalized text `value` starts with one of `prefixes`.
fn starts_with_any(prefixes: &[String], value: Option<&[u8]>) -> bool {
    let Some(text) = value.and_then(json::decode) else {
        return false;
    };
    let text = normalize(&text);
    prefixes.iter().any(|p| text.starts_with(p.as_str()))
}

fn text_matches(prefixes: &[String], node: &[u8], ty: &str) -> Scan<bool> {
    let display = |coding: &[u8]| -> Scan<bool> {
        Ok(starts_with_any(
            prefixes,
            json::member(coding, "display")?.and_then(json::string_content),
        ))
    };
    match ty {
        "Coding" => display(node),
        "CodeableConcept" => {
            if starts_with_any(
                prefixes,
                json::member(node, "text")?.and_then(json::string_content),
            ) {
                return Ok(true);
            }
            match json::member(node, "coding")? {
                Some(codings) => json::any(codings, display),
                None => Ok(false),
            }
        }
        "Identifier" => match json::member(node, "type")? {
            Some(ty) => Ok(starts_with_any(
                prefixes,
                json::member(ty, "text")?.and_then(json::string_content),
            )),
            None => Ok(false),
        },
        _ => Ok(false),
    }
}

/// The string parts a string search looks at in a HumanName or Address.
fn string_parts(ty: &str) -> &'static [&'static str] {
    match ty {
        "HumanName" => &["text", "family", "given", "prefix", "suffix"],
        "Address" => &[
            "text",
            "line",
            "city",
            "district",
            "state",
            "postalCode",
            "country",
        ],
        _ => &[],
    }
}

fn string_matches(mode: StringMode, values: &[String], node: &[u8], ty: &str) -> Scan<bool> {
    let test = |raw: &[u8]| -> bool {
        let Some(text) = string_value(raw) else {
            return false;
        };
        match mode {
            StringMode::Exact => values.iter().any(|v| *v == text),
            StringMode::StartsWith => {
                let text = normalize(&text);
                values.iter().any(|v| text.starts_with(v.as_str()))
            }
            StringMode::Contains => {
                let text = normalize(&text);
                values.iter().any(|v| text.contains(v.as_str()))
            }
        }
    };
    let parts = string_parts(ty);
    if parts.is_empty() {
        return Ok(test(node));
    }
    let mut found = false;
    json::members(node, |key, value| {
        if parts.iter().any(|p| json::raw_eq(key, p)) {
            found = json::any(value, |v| Ok(test(v)))?;
        }
        Ok(!found)
    })?;
    Ok(found)
}

fn reference_matches(values: &[RefValue], node: &[u8], ty: &str) -> Scan<bool> {
    if ty != "Reference" {
        // canonical/uri: the whole string, with or without its `|version`.
        let Some(uri) = string_value(node) else {
            return Ok(false);
        };
        let unversioned = uri.split('|').next().unwrap_or_default();
        return Ok(values.iter().any(|v| match v {
            RefValue::Url(url) => uri == url.as_str() || unversioned == url,
            RefValue::Local { types, id } => {
                !types.is_empty()
                    && types.iter().any(|t| {
                        unversioned.len() == t.len() + 1 + id.len()
                            && unversioned.starts_with(t)
                            && unversioned.ends_with(id.as_str())
                            && unversioned.as_bytes()[t.len()] == b'/'
                    })
            }
        }));
    }
    let Some(text) = json::member(node, "reference")?.and_then(string_value) else {
        return Ok(false);
    };
    let target = reference::parse(&text);
    Ok(values.iter().any(|v| match (v, target) {
        (RefValue::Local { types, id }, Target::Local { ty, id: actual }) => {
            actual == id && (types.is_empty() || types.contains(&ty))
        }
        (RefValue::Url(url), Target::Absolute { url: actual, .. }) => actual == url,
        _ => false,
    }))
}

/// The range a date-like node covers; `None` when it holds no date.
fn date_span(node: &[u8], ty: &str) -> Scan<Option<Span>> {
    let parse = |raw: Option<&[u8]>| -> Option<Date> { date::parse(&json::decode(raw?)?) };
    Ok(match ty {
        "date" | "dateTime" | "instant" => parse(json::string_content(node)).map(|d| d.span),
        "Period" => period(node)?,
        "Timing" => {
            let mut hull: Option<Span> = None;
            let mut add = |span: Span| hull = Some(hull.map_or(span, |h| h.hull(span)));
            if let Some(events) = json::member(node, "event")? {
                json::any(events, |e| {
                    if let Some(d) = parse(json::string_content(e)) {
                        add(d.span);
                    }
                    Ok(false)
                })?;
            }
            if let Some(bounds) = json::member(node, "repeat")?
                .map(|r| json::member(r, "boundsPeriod"))
                .transpose()?
                .flatten()
                && let Some(span) = period(bounds)?
            {
                add(span);
            }
            hull
        }
        _ => None,
    })
}

/// A Period's range: open where an end is missing, `None` when both are
/// (or when a given end is not a date).
fn period(node: &[u8]) -> Scan<Option<Span>> {
    let mut span = Span::ALL;
    let mut any_end = false;
    for (key, low) in [("start", true), ("end", false)] {
        let Some(raw) = json::member(node, key)? else {
            continue;
        };
        let Some(date) = json::string_content(raw)
            .and_then(json::decode)
            .and_then(|t| date::parse(&t))
        else {
            return Ok(None);
        };
        any_end = true;
        if low {
            span.lo = date.span.lo;
        } else {
            span.hi = date.span.hi;
        }
    }
    Ok(any_end.then_some(span))
}

fn number_of(raw: &[u8]) -> Option<Decimal> {
    Decimal::parse(std::str::from_utf8(raw).ok()?)
}

/// A number node as a closed interval: `[v, v]`, or a Range's
/// `[low.value, high.value]` with `None` for a missing bound.
fn number_interval(node: &[u8], ty: &str) -> Scan<Option<(Option<Decimal>, Option<Decimal>)>> {
    if ty != "Range" {
        return Ok(number_of(node).map(|v| (Some(v), Some(v))));
    }
    let bound = |key: &str| -> Scan<Option<Decimal>> {
        Ok(json::member(node, key)?
            .map(|q| json::member(q, "value"))
            .transpose()?
            .flatten()
            .and_then(number_of))
    };
    let (low, high) = (bound("low")?, bound("high")?);
    Ok((low.is_some() || high.is_some()).then_some((low, high)))
}

/// The parts of a Quantity a search looks at.
#[derive(Default)]
struct Quantity<'a> {
    value: Option<Decimal>,
    system: Option<&'a [u8]>,
    code: Option<&'a [u8]>,
    unit: Option<&'a [u8]>,
}

fn quantity(node: &[u8]) -> Scan<Quantity<'_>> {
    let mut q = Quantity::default();
    json::members(node, |key, value| {
        match key {
            b"value" => q.value = number_of(value),
            b"system" => q.system = json::string_content(value),
            b"code" => q.code = json::string_content(value),
            b"unit" => q.unit = json::string_content(value),
            _ => {}
        }
        Ok(true)
    })?;
    Ok(q)
}

impl QuantitySearch {
    fn unit_matches(&self, q: &Quantity<'_>) -> bool {
        let is = |raw: Option<&[u8]>, want: &str| raw.is_some_and(|r| json::raw_eq(r, want));
        match (&self.system, &self.code) {
            (_, None) => true,
            (Some(system), Some(code)) => is(q.system, system) && is(q.code, code),
            (None, Some(code)) => is(q.code, code) || is(q.unit, code),
        }
    }
}

fn quantity_matches(values: &[QuantitySearch], node: &[u8], ty: &str) -> Scan<bool> {
    if node.first() != Some(&b'{') {
        return Ok(false);
    }
    match ty {
        "Range" => {
            let bound = |key: &str| -> Scan<Option<Quantity<'_>>> {
                json::member(node, key)?.map(quantity).transpose()
            };
            let (low, high) = (bound("low")?, bound("high")?);
            let (lo, hi) = (
                low.as_ref().and_then(|q| q.value),
                high.as_ref().and_then(|q| q.value),
            );
            if lo.is_none() && hi.is_none() {
                return Ok(false);
            }
            Ok(values.iter().any(|s| {
                let unit_ok = [&low, &high]
                    .into_iter()
                    .flatten()
                    .filter(|q| q.value.is_some())
                    .all(|q| s.unit_matches(q));
                unit_ok && s.number.matches(lo, hi)
            }))
        }
        "Money" => {
            let (mut value, mut currency) = (None, None);
            json::members(node, |key, v| {
                match key {
                    b"value" => value = number_of(v),
                    b"currency" => currency = json::string_content(v),
                    _ => {}
                }
                Ok(true)
            })?;
            let q = Quantity {
                value,
                system: currency.map(|_| MONEY_SYSTEM.as_bytes()),
                code: currency,
                unit: None,
            };
            Ok(q.value.is_some_and(|v| {
                values
                    .iter()
                    .any(|s| s.unit_matches(&q) && s.number.matches(Some(v), Some(v)))
            }))
        }
        _ => {
            let q = quantity(node)?;
            Ok(q.value.is_some_and(|v| {
                values
                    .iter()
                    .any(|s| s.unit_matches(&q) && s.number.matches(Some(v), Some(v)))
            }))
        }
    }
}
