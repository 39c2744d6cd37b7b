//! The FHIRPath subset the R4 search expressions use, parsed once and
//! compiled against the type model into typed paths over raw JSON.
//!
//! Supported: member paths, `|`, choice elements with `as T`, `.as(T)` and
//! `.ofType(T)`, `where(...)` with `resolve() is T`, `=`/`!=` against a
//! string or boolean literal, `exists()`, `empty()`, `and`, `or`, and
//! `extension('url')`. Anything else (indexers, `first()`, `%resource`,
//! arithmetic...) fails to compile with the reason, and the search
//! parameter using it is reported unsupported.

use crate::json::{self, Scan};
use crate::model;
use crate::reference::{self, Target};

/// Nesting beyond which the parser gives up (the R4 expressions nest 3).
const MAX_NESTING: usize = 32;

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Expr {
    /// The focus: the resource at the root, the item inside `where(...)`.
    This,
    Member(Box<Expr>, String),
    Call(Box<Expr>, String, Vec<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Literal(Literal),
    /// An environment variable such as `%resource`.
    Variable(String),
    Binary(Op, Box<Expr>, Box<Expr>),
    Is(Box<Expr>, String),
    As(Box<Expr>, String),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    String(String),
    Boolean(bool),
    Number(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Op {
    Union,
    Equal,
    NotEqual,
    And,
    Or,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Identifier(String),
    String(String),
    Number(String),
    Variable(String),
    Symbol(&'static str),
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '\'' | '`' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some((_, '\\')) => match chars.next() {
                            Some((_, e @ ('\'' | '`' | '\\' | '/' | '"'))) => value.push(e),
                            Some((_, 'n')) => value.push('\n'),
                            Some((_, 't')) => value.push('\t'),
                            Some((_, 'r')) => value.push('\r'),
                            _ => return Err(format!("invalid escape in {text:?}")),
                        },
                        Some((_, q)) if q == c => break,
                        Some((_, other)) => value.push(other),
                        None => return Err(format!("unterminated literal in {text:?}")),
                    }
                }
                tokens.push(if c == '\'' {
                    Token::String(value)
                } else {
                    Token::Identifier(value)
                });
            }
            '0'..='9' => {
                let mut end = start;
                while let Some(&(i, d)) = chars.peek() {
                    if !(d.is_ascii_digit() || d == '.') {
                        break;
                    }
                    end = i + 1;
                    chars.next();
                }
                tokens.push(Token::Number(text[start..end].to_owned()));
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == '$' || c == '%' => {
                chars.next();
                let mut end = start + 1;
                while let Some(&(i, d)) = chars.peek() {
                    if !(d.is_ascii_alphanumeric() || d == '_') {
                        break;
                    }
                    end = i + 1;
                    chars.next();
                }
                let word = &text[start..end];
                tokens.push(match word.strip_prefix('%') {
                    Some(name) => Token::Variable(name.to_owned()),
                    None => Token::Identifier(word.to_owned()),
                });
            }
            _ => {
                chars.next();
                let symbol = match c {
                    '(' => "(",
                    ')' => ")",
                    '[' => "[",
                    ']' => "]",
                    '.' => ".",
                    ',' => ",",
                    '|' => "|",
                    '=' => "=",
                    '!' if chars.next_if(|&(_, n)| n == '=').is_some() => "!=",
                    other => return Err(format!("operator '{other}' is not supported")),
                };
                tokens.push(Token::Symbol(symbol));
            }
        }
    }
    Ok(tokens)
}

pub(crate) fn parse(text: &str) -> Result<Expr, String> {
    let mut parser = Parser {
        tokens: tokenize(text)?,
        at: 0,
        nesting: 0,
    };
    let expr = parser.or()?;
    match parser.tokens.get(parser.at) {
        None => Ok(expr),
        Some(t) => Err(format!("unexpected {t:?} in {text:?}")),
    }
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
    nesting: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Symbol(s)) if *s == symbol);
        self.at += usize::from(found);
        found
    }

    fn eat_word(&mut self, word: &str) -> bool {
        let found = matches!(self.peek(), Some(Token::Identifier(w)) if w == word);
        self.at += usize::from(found);
        found
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), String> {
        if self.eat_symbol(symbol) {
            Ok(())
        } else {
            Err(format!("expected '{symbol}', found {:?}", self.peek()))
        }
    }

    fn identifier(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Token::Identifier(name)) => {
                let name = name.clone();
                self.at += 1;
                Ok(name)
            }
            other => Err(format!("expected a name, found {other:?}")),
        }
    }

    fn binary(
        &mut self,
        operators: &[(&str, Op)],
        next: fn(&mut Self) -> Result<Expr, String>,
    ) -> Result<Expr, String> {
        let mut left = next(self)?;
        'outer: loop {
            for (text, op) in operators {
                let found = if text.chars().all(char::is_alphabetic) {
                    self.eat_word(text)
                } else {
                    self.eat_symbol(text)
                };
                if found {
                    left = Expr::Binary(*op, Box::new(left), Box::new(next(self)?));
                    continue 'outer;
                }
            }
            return Ok(left);
        }
    }

    fn or(&mut self) -> Result<Expr, String> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err("expression nested too deeply".into());
        }
        let expr = self.binary(&[("or", Op::Or)], Self::and);
        self.nesting -= 1;
        expr
    }

    fn and(&mut self) -> Result<Expr, String> {
        self.binary(&[("and", Op::And)], Self::equality)
    }

    fn equality(&mut self) -> Result<Expr, String> {
        self.binary(&[("=", Op::Equal), ("!=", Op::NotEqual)], Self::union)
    }

    fn union(&mut self) -> Result<Expr, String> {
        self.binary(&[("|", Op::Union)], Self::typed)
    }

    fn typed(&mut self) -> Result<Expr, String> {
        let mut expr = self.postfix()?;
        loop {
            if self.eat_word("is") {
                expr = Expr::Is(Box::new(expr), self.type_name()?);
            } else if self.eat_word("as") {
                expr = Expr::As(Box::new(expr), self.type_name()?);
            } else {
                return Ok(expr);
            }
        }
    }

    /// `T` or `FHIR.T`.
    fn type_name(&mut self) -> Result<String, String> {
        let name = self.identifier()?;
        if name == "FHIR" && self.eat_symbol(".") {
            return self.identifier();
        }
        Ok(name)
    }

    fn postfix(&mut self) -> Result<Expr, String> {
        let mut expr = self.term()?;
        loop {
            if self.eat_symbol(".") {
                expr = self.invocation(expr)?;
            } else if self.eat_symbol("[") {
                let index = self.or()?;
                self.expect_symbol("]")?;
                expr = Expr::Index(Box::new(expr), Box::new(index));
            } else {
                return Ok(expr);
            }
        }
    }

    /// `name` or `name(args)` applied to `focus`.
    fn invocation(&mut self, focus: Expr) -> Result<Expr, String> {
        let name = self.identifier()?;
        if !self.eat_symbol("(") {
            return Ok(Expr::Member(Box::new(focus), name));
        }
        let mut args = Vec::new();
        if !self.eat_symbol(")") {
            loop {
                args.push(self.or()?);
                if self.eat_symbol(")") {
                    break;
                }
                self.expect_symbol(",")?;
            }
        }
        Ok(Expr::Call(Box::new(focus), name, args))
    }

    fn term(&mut self) -> Result<Expr, String> {
        let token = self
            .peek()
            .cloned()
            .ok_or_else(|| "unexpected end of expression".to_owned())?;
        match token {
            Token::Symbol("(") => {
                self.at += 1;
                let expr = self.or()?;
                self.expect_symbol(")")?;
                Ok(expr)
            }
            Token::String(s) => {
                self.at += 1;
                Ok(Expr::Literal(Literal::String(s)))
            }
            Token::Number(n) => {
                self.at += 1;
                Ok(Expr::Literal(Literal::Number(n)))
            }
            Token::Variable(v) => {
                self.at += 1;
                Ok(Expr::Variable(v))
            }
            Token::Identifier(word) if word == "true" || word == "false" => {
                self.at += 1;
                Ok(Expr::Literal(Literal::Boolean(word == "true")))
            }
            Token::Identifier(word) if word == "$this" => {
                self.at += 1;
                Ok(Expr::This)
            }
            Token::Identifier(_) => self.invocation(Expr::This),
            Token::Symbol(s) => Err(format!("unexpected '{s}'")),
        }
    }
}

/// A typed path from a starting node to the nodes an expression selects.
#[derive(Clone, Debug)]
pub(crate) struct Chain {
    pub steps: Vec<Step>,
    /// The FHIR type of the nodes reached.
    pub ty: &'static str,
    /// Whether the nodes are one type of a choice element the expression
    /// did not narrow with a cast (`Observation.value`, not `... as T`).
    pub variant: bool,
    /// For a chain from the resource root starting with a member: where the
    /// filter keeps that top-level member once it has scanned the resource.
    pub slot: Option<usize>,
}

#[derive(Clone, Debug)]
pub(crate) enum Step {
    /// The member with this JSON key, each item when it is an array.
    Member(&'static str),
    /// Keeps the node when the criteria are true.
    Where(Pred),
}

/// A boolean expression, evaluated with FHIRPath's three-valued logic
/// (`None` = empty).
#[derive(Clone, Debug)]
pub(crate) enum Pred {
    /// `resolve() is T` on a Reference.
    ResolvesTo(&'static str),
    /// `path = literal` (`equal`) or `path != literal`.
    Compare {
        chains: Vec<Chain>,
        value: Literal,
        equal: bool,
    },
    Exists(Vec<Chain>),
    Empty(Vec<Chain>),
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
}

/// A compiled search expression: the nodes to match, or a boolean.
#[derive(Clone, Debug)]
pub(crate) enum Program {
    Nodes(Vec<Chain>),
    Boolean(Pred),
}

impl Program {
    pub(crate) fn chains_mut(&mut self) -> Vec<&mut Chain> {
        match self {
            Program::Nodes(chains) => chains.iter_mut().collect(),
            Program::Boolean(pred) => pred.chains_mut(),
        }
    }
}

impl Program {
    /// Whether evaluating it may resolve a reference (`resolve() is T`).
    pub(crate) fn resolves(&self) -> bool {
        match self {
            Program::Nodes(chains) => chains.iter().any(Chain::resolves),
            Program::Boolean(pred) => pred.resolves(),
        }
    }
}

impl Pred {
    fn resolves(&self) -> bool {
        match self {
            Pred::ResolvesTo(_) => true,
            Pred::Compare { chains, .. } | Pred::Exists(chains) | Pred::Empty(chains) => {
                chains.iter().any(Chain::resolves)
            }
            Pred::And(a, b) | Pred::Or(a, b) => a.resolves() || b.resolves(),
        }
    }

    fn chains_mut(&mut self) -> Vec<&mut Chain> {
        match self {
            Pred::ResolvesTo(_) => Vec::new(),
            Pred::Compare { chains, .. } | Pred::Exists(chains) | Pred::Empty(chains) => {
                chains.iter_mut().collect()
            }
            Pred::And(a, b) | Pred::Or(a, b) => {
                let mut all = a.chains_mut();
                all.extend(b.chains_mut());
                all
            }
        }
    }
}

/// Compiles `text` for a focus of type `context` (a resource type, or a
/// data type for the parts of a composite).
pub(crate) fn compile(text: &str, context: &'static str) -> Result<Program, String> {
    let expr = parse(text)?;
    let focus = [Chain {
        steps: Vec::new(),
        ty: context,
        variant: false,
        slot: None,
    }];
    if is_boolean(&expr) {
        Ok(Program::Boolean(pred(&expr, &focus)?))
    } else {
        Ok(Program::Nodes(nodes(&expr, &focus)?))
    }
}

fn is_boolean(expr: &Expr) -> bool {
    match expr {
        Expr::Binary(op, _, _) => *op != Op::Union,
        Expr::Call(_, name, _) => name == "exists" || name == "empty",
        Expr::Is(..) | Expr::Literal(Literal::Boolean(_)) => true,
        _ => false,
    }
}

/// Whether `name`, at the start of a path, names the focus itself
/// (`Observation.code` on an Observation, `Resource.id` on any resource).
fn names_focus(name: &str, ty: &str) -> bool {
    name == ty
        || (matches!(name, "Resource" | "DomainResource")
            && (model::is_resource(ty) || matches!(ty, "Resource" | "DomainResource")))
}

fn nodes(expr: &Expr, focus: &[Chain]) -> Result<Vec<Chain>, String> {
    match expr {
        Expr::This => Ok(focus.to_vec()),
        Expr::Member(inner, name) => {
            if **inner == Expr::This && focus.iter().all(|c| names_focus(name, c.ty)) {
                return Ok(focus.to_vec());
            }
            let base = nodes(inner, focus)?;
            let out: Vec<Chain> = base
                .iter()
                .flat_map(|chain| {
                    model::elements(chain.ty, name).iter().map(move |e| {
                        let mut next = chain.then(Step::Member(e.key), e.ty);
                        next.variant = e.name == name && e.key != name;
                        next
                    })
                })
                .collect();
            if out.is_empty() {
                return Err(format!("{} has no element '{name}'", type_names(&base)));
            }
            Ok(out)
        }
        Expr::As(inner, ty) => cast(nodes(inner, focus)?, ty),
        Expr::Call(inner, name, args) => match (name.as_str(), args.as_slice()) {
            ("as" | "ofType", [Expr::Member(this, ty)]) if **this == Expr::This => {
                cast(nodes(inner, focus)?, ty)
            }
            ("where", [criteria]) => nodes(inner, focus)?
                .into_iter()
                .map(|chain| {
                    let item = [Chain {
                        steps: Vec::new(),
                        ty: chain.ty,
                        variant: false,
                        slot: None,
                    }];
                    let (ty, variant) = (chain.ty, chain.variant);
                    let mut next = chain.then(Step::Where(pred(criteria, &item)?), ty);
                    next.variant = variant;
                    Ok(next)
                })
                .collect(),
            ("extension", [Expr::Literal(Literal::String(url))]) => {
                let extension = Expr::Member(inner.clone(), "extension".into());
                let url_is = Expr::Binary(
                    Op::Equal,
                    Box::new(Expr::Member(Box::new(Expr::This), "url".into())),
                    Box::new(Expr::Literal(Literal::String(url.clone()))),
                );
                nodes(
                    &Expr::Call(Box::new(extension), "where".into(), vec![url_is]),
                    focus,
                )
            }
            ("resolve", []) => {
                Err("resolve() is supported only as where(resolve() is Type)".into())
            }
            ("first", []) => Err("first() is not supported".into()),
            _ => Err(format!("function {name}() is not supported here")),
        },
        Expr::Binary(Op::Union, a, b) => {
            let mut all = nodes(a, focus)?;
            all.extend(nodes(b, focus)?);
            Ok(all)
        }
        Expr::Index(..) => Err("indexers ([n]) are not supported".into()),
        Expr::Variable(v) => Err(format!("%{v} is not supported")),
        other => Err(format!(
            "a boolean or a literal where elements are expected: {other:?}"
        )),
    }
}

/// The chains whose type is `ty`; FHIRPath's System type names
/// (`DateTime`) stand for the FHIR primitives (`dateTime`).
fn cast(chains: Vec<Chain>, ty: &str) -> Result<Vec<Chain>, String> {
    let types = type_names(&chains);
    let kept: Vec<Chain> = chains
        .into_iter()
        .filter(|c| c.ty.eq_ignore_ascii_case(ty))
        .map(|c| Chain {
            variant: false,
            ..c
        })
        .collect();
    if kept.is_empty() {
        return Err(format!("'as {ty}' keeps none of {types}"));
    }
    Ok(kept)
}

fn pred(expr: &Expr, focus: &[Chain]) -> Result<Pred, String> {
    match expr {
        Expr::Is(inner, ty) => match inner.as_ref() {
            Expr::Call(this, name, args)
                if **this == Expr::This && name == "resolve" && args.is_empty() =>
            {
                if focus.iter().any(|c| c.ty != "Reference") {
                    return Err(format!("resolve() on {}", type_names(focus)));
                }
                let resource = model::RESOURCES
                    .iter()
                    .find(|(r, _)| r == ty)
                    .ok_or_else(|| format!("'{ty}' is not a resource type"))?;
                Ok(Pred::ResolvesTo(resource.0))
            }
            _ => Err("'is' is supported only as resolve() is Type".into()),
        },
        Expr::Binary(op @ (Op::Equal | Op::NotEqual), left, right) => {
            let Expr::Literal(value) = right.as_ref() else {
                return Err("comparisons are supported only against a literal".into());
            };
            if let Literal::Number(n) = value {
                return Err(format!("comparison with the number {n} is not supported"));
            }
            Ok(Pred::Compare {
                chains: nodes(left, focus)?,
                value: value.clone(),
                equal: *op == Op::Equal,
            })
        }
        Expr::Binary(Op::And, a, b) => Ok(Pred::And(
            Box::new(pred(a, focus)?),
            Box::new(pred(b, focus)?),
        )),
        Expr::Binary(Op::Or, a, b) => Ok(Pred::Or(
            Box::new(pred(a, focus)?),
            Box::new(pred(b, focus)?),
        )),
        Expr::Call(inner, name, args) if args.is_empty() && name == "exists" => {
            Ok(Pred::Exists(nodes(inner, focus)?))
        }
        Expr::Call(inner, name, args) if args.is_empty() && name == "empty" => {
            Ok(Pred::Empty(nodes(inner, focus)?))
        }
        other => Err(format!("unsupported criteria {other:?}")),
    }
}

fn type_names(chains: &[Chain]) -> String {
    let mut names: Vec<&str> = chains.iter().map(|c| c.ty).collect();
    names.dedup();
    names.join("/")
}

impl Chain {
    fn resolves(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Where(p) if p.resolves()))
    }

    fn then(&self, step: Step, ty: &'static str) -> Chain {
        let mut steps = self.steps.clone();
        steps.push(step);
        Chain {
            steps,
            ty,
            variant: false,
            slot: None,
        }
    }

    /// The JSON key of the first step when it reads a top-level member.
    pub(crate) fn root_key(&self) -> Option<&'static str> {
        match self.steps.first() {
            Some(Step::Member(key)) => Some(key),
            _ => None,
        }
    }

    /// Whether `found` holds for one of the nodes this chain reaches from
    /// `start` (a chain with a slot starts from the resource instead).
    pub(crate) fn any<'a>(
        &self,
        start: &'a [u8],
        ctx: &Ctx<'a>,
        found: &mut dyn FnMut(&'a [u8]) -> Scan<bool>,
    ) -> Scan<bool> {
        match self.slot {
            Some(slot) => match ctx.slots.get(slot).copied().flatten() {
                Some(value) => json::any(value, |item| walk(item, &self.steps[1..], ctx, found)),
                None => Ok(false),
            },
            None => walk(start, &self.steps, ctx, found),
        }
    }
}

/// What evaluation needs besides the node at hand.
pub(crate) struct Ctx<'a> {
    /// The resource being evaluated.
    pub root: &'a [u8],
    /// Its top-level members the filter collected, by slot.
    pub slots: &'a [Option<&'a [u8]>],
    /// Its `contained` array, when the filter needs it.
    pub contained: Option<&'a [u8]>,
}

fn walk<'a>(
    node: &'a [u8],
    steps: &[Step],
    ctx: &Ctx<'a>,
    found: &mut dyn FnMut(&'a [u8]) -> Scan<bool>,
) -> Scan<bool> {
    match steps.split_first() {
        None => found(node),
        Some((Step::Member(key), rest)) => match json::member(node, key)? {
            Some(value) => json::any(value, |item| walk(item, rest, ctx, found)),
            None => Ok(false),
        },
        Some((Step::Where(pred), rest)) => {
            if pred.eval(node, ctx)? == Some(true) {
                walk(node, rest, ctx, found)
            } else {
                Ok(false)
            }
        }
    }
}

fn any_node<'a>(chains: &[Chain], start: &'a [u8], ctx: &Ctx<'a>) -> Scan<bool> {
    for chain in chains {
        if chain.any(start, ctx, &mut |_| Ok(true))? {
            return Ok(true);
        }
    }
    Ok(false)
}

impl Pred {
    pub(crate) fn eval<'a>(&self, node: &'a [u8], ctx: &Ctx<'a>) -> Scan<Option<bool>> {
        Ok(match self {
            Pred::ResolvesTo(ty) => Some(reference_is(node, ty, ctx)?),
            Pred::Compare {
                chains,
                value,
                equal,
            } => {
                let (mut count, mut first_equal) = (0, false);
                for chain in chains {
                    chain.any(node, ctx, &mut |n| {
                        if count == 0 {
                            first_equal = literal_eq(n, value);
                        }
                        count += 1;
                        Ok(count > 1)
                    })?;
                }
                // A collection of several items never equals one literal.
                (count > 0).then_some((count == 1 && first_equal) == *equal)
            }
            Pred::Exists(chains) => Some(any_node(chains, node, ctx)?),
            Pred::Empty(chains) => Some(!any_node(chains, node, ctx)?),
            Pred::And(a, b) => match (a.eval(node, ctx)?, b.eval(node, ctx)?) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Pred::Or(a, b) => match (a.eval(node, ctx)?, b.eval(node, ctx)?) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            },
        })
    }
}

fn literal_eq(node: &[u8], value: &Literal) -> bool {
    match value {
        Literal::String(s) => json::string_content(node).is_some_and(|raw| json::raw_eq(raw, s)),
        Literal::Boolean(b) => node == if *b { &b"true"[..] } else { b"false" },
        Literal::Number(_) => false,
    }
}

/// Whether the resource a Reference points to is a `ty`, as far as the
/// resource itself tells: the type in its literal reference (`Patient/1`,
/// an absolute `.../Patient/1`, or the `resourceType` of the contained
/// resource `#x`), else its `type` element.
pub(crate) fn reference_is<'a>(node: &'a [u8], ty: &str, ctx: &Ctx<'a>) -> Scan<bool> {
    let Some(literal) = json::member(node, "reference")?.and_then(json::string_content) else {
        return Ok(json::member(node, "type")?
            .and_then(json::string_content)
            .is_some_and(|t| json::raw_eq(t, ty)));
    };
    let Some(text) = json::decode(literal) else {
        return Ok(false);
    };
    Ok(match reference::parse(&text) {
        Target::Local { ty: t, .. } | Target::Absolute { ty: Some(t), .. } => t == ty,
        Target::Contained(id) => match contained(ctx, id)? {
            Some(resource) => json::member(resource, "resourceType")?
                .and_then(json::string_content)
                .is_some_and(|t| json::raw_eq(t, ty)),
            None => false,
        },
        Target::Absolute { ty: None, .. } | Target::Other => false,
    })
}

/// The contained resource with this `id`.
pub(crate) fn contained<'a>(ctx: &Ctx<'a>, id: &str) -> Scan<Option<&'a [u8]>> {
    let Some(list) = ctx.contained else {
        return Ok(None);
    };
    let mut found = None;
    json::any(list, |resource| {
        if json::member(resource, "id")?
            .and_then(json::string_content)
            .is_some_and(|raw| json::raw_eq(raw, id))
        {
            found = Some(resource);
        }
        Ok(found.is_some())
    })?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(inner: Expr, name: &str) -> Expr {
        Expr::Member(Box::new(inner), name.into())
    }

    #[test]
    fn parses_the_r4_forms() {
        let root = member(Expr::This, "Observation");
        assert_eq!(
            parse("Observation.code").unwrap(),
            member(root.clone(), "code")
        );
        assert_eq!(
            parse("(Observation.value as Quantity)").unwrap(),
            Expr::As(Box::new(member(root.clone(), "value")), "Quantity".into())
        );
        assert_eq!(
            parse("Condition.onset.as(Age)").unwrap(),
            Expr::Call(
                Box::new(member(member(Expr::This, "Condition"), "onset")),
                "as".into(),
                vec![member(Expr::This, "Age")]
            )
        );
        let deceased = parse("Patient.deceased.exists() and Patient.deceased != false").unwrap();
        assert!(
            matches!(deceased, Expr::Binary(Op::And, _, _)),
            "{deceased:?}"
        );
        let union = parse("A.b | A.c.where(system='email') | A.d").unwrap();
        assert!(matches!(union, Expr::Binary(Op::Union, _, _)));
        assert!(matches!(
            parse("Bundle.entry[0].resource").unwrap(),
            Expr::Member(_, _)
        ));
        assert!(matches!(
            parse("x.where(resolve() is FHIR.Patient)").unwrap(),
            Expr::Call(..)
        ));
        for bad in [
            "", "a.", "a +b", "(a", "a)", "a.where(", "'x", "a[1", "a <= b",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse(&format!("{}a{}", "(".repeat(40), ")".repeat(40))).is_err());
    }

    fn keys(program: &Program) -> Vec<(Vec<&'static str>, &'static str)> {
        let Program::Nodes(chains) = program else {
            panic!("not nodes: {program:?}")
        };
        chains
            .iter()
            .map(|c| {
                let keys = c
                    .steps
                    .iter()
                    .map(|s| match s {
                        Step::Member(k) => *k,
                        Step::Where(_) => "?",
                    })
                    .collect();
                (keys, c.ty)
            })
            .collect()
    }

    #[test]
    fn compiles_typed_paths() {
        let code = compile("Observation.code", "Observation").unwrap();
        assert_eq!(keys(&code), [(vec!["code"], "CodeableConcept")]);
        let value = compile("(Observation.value as Quantity)", "Observation").unwrap();
        assert_eq!(keys(&value), [(vec!["valueQuantity"], "Quantity")]);
        let date = compile(
            "Condition.onset.as(dateTime) | Condition.onset.as(Period)",
            "Condition",
        )
        .unwrap();
        assert_eq!(
            keys(&date),
            [
                (vec!["onsetDateTime"], "dateTime"),
                (vec!["onsetPeriod"], "Period")
            ]
        );
        let effective = compile("Observation.effective", "Observation").unwrap();
        assert_eq!(keys(&effective).len(), 4, "{effective:?}");
        let patient = compile(
            "Observation.subject.where(resolve() is Patient)",
            "Observation",
        )
        .unwrap();
        assert_eq!(keys(&patient), [(vec!["subject", "?"], "Reference")]);
        let meta = compile("Resource.meta.lastUpdated", "Patient").unwrap();
        assert_eq!(keys(&meta), [(vec!["meta", "lastUpdated"], "instant")]);
        let relative = compile("value.as(DateTime)", "Observation").unwrap();
        assert_eq!(keys(&relative), [(vec!["valueDateTime"], "dateTime")]);
        let whole = compile("Observation", "Observation").unwrap();
        assert_eq!(keys(&whole), [(vec![], "Observation")]);
        let text = compile("(Observation.value as CodeableConcept).text", "Observation").unwrap();
        assert_eq!(
            keys(&text),
            [(vec!["valueCodeableConcept", "text"], "string")]
        );
        assert!(matches!(
            compile(
                "Patient.deceased.exists() and Patient.deceased != false",
                "Patient"
            )
            .unwrap(),
            Program::Boolean(Pred::And(..))
        ));
        for (bad, why) in [
            ("Bundle.entry[0].resource", "indexers"),
            ("Observation.nothing", "no element 'nothing'"),
            ("Observation.value as Money", "keeps none"),
            (
                "Observation.code.where(resolve() is Patient)",
                "resolve() on CodeableConcept",
            ),
            (
                "Observation.subject.where(resolve() is Quantity)",
                "not a resource type",
            ),
            ("%resource.code", "%resource"),
            ("Observation.code.first()", "first()"),
            ("Observation.subject.resolve()", "resolve()"),
        ] {
            let err = compile(bad, "Observation").unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    fn eval_pred(
        expr: &str,
        ty: &'static str,
        json: &str,
        contained: Option<&str>,
    ) -> Option<bool> {
        let Program::Boolean(pred) = compile(expr, ty).unwrap() else {
            panic!("{expr} is not boolean")
        };
        let ctx = Ctx {
            root: json.as_bytes(),
            slots: &[],
            contained: contained.map(str::as_bytes),
        };
        pred.eval(json.as_bytes(), &ctx).unwrap()
    }

    #[test]
    fn evaluates_criteria_with_three_valued_logic() {
        let deceased = "Patient.deceased.exists() and Patient.deceased != false";
        for (json, want) in [
            (r#"{"deceasedBoolean":true}"#, Some(true)),
            (r#"{"deceasedBoolean":false}"#, Some(false)),
            (r#"{"deceasedDateTime":"2020-01-01"}"#, Some(true)),
            (r#"{}"#, Some(false)),
        ] {
            assert_eq!(eval_pred(deceased, "Patient", json, None), want, "{json}");
        }
        assert_eq!(
            eval_pred("Patient.gender = 'male'", "Patient", "{}", None),
            None
        );
        assert_eq!(
            eval_pred(
                "Patient.gender = 'male' or Patient.active.exists()",
                "Patient",
                "{}",
                None
            ),
            None,
            "empty or false is empty"
        );
        assert_eq!(
            eval_pred(
                "Patient.gender = 'male' and Patient.active.exists()",
                "Patient",
                "{}",
                None
            ),
            Some(false),
            "empty and false is false"
        );
        assert_eq!(
            eval_pred(
                "Patient.gender = 'male' or Patient.active.exists()",
                "Patient",
                r#"{"active":true}"#,
                None
            ),
            Some(true)
        );
        assert_eq!(
            eval_pred(
                "Patient.gender.empty()",
                "Patient",
                r#"{"gender":"x"}"#,
                None
            ),
            Some(false)
        );
        assert_eq!(
            eval_pred(
                "Patient.name.given = 'a'",
                "Patient",
                r#"{"name":[{"given":["a","b"]}]}"#,
                None
            ),
            Some(false)
        );
        assert_eq!(
            eval_pred(
                "Patient.name.given != 'a'",
                "Patient",
                r#"{"name":[{"given":["a"]}]}"#,
                None
            ),
            Some(false)
        );
    }

    #[test]
    fn resolves_reference_types() {
        let contained =
            r#"[{"resourceType":"Practitioner","id":"p1"},{"resourceType":"Patient","id":"p2"}]"#;
        let ctx = Ctx {
            root: b"{}",
            slots: &[],
            contained: Some(contained.as_bytes()),
        };
        for (reference, ty, want) in [
            (r#"{"reference":"Patient/1"}"#, "Patient", true),
            (r#"{"reference":"Patient/1"}"#, "Group", false),
            (r#"{"reference":"Patient/1/_history/2"}"#, "Patient", true),
            (
                r#"{"reference":"http://x.org/fhir/Group/1"}"#,
                "Group",
                true,
            ),
            (r#"{"reference":"urn:uuid:1234"}"#, "Patient", false),
            (r##"{"reference":"#p2"}"##, "Patient", true),
            (r##"{"reference":"#p1"}"##, "Patient", false),
            (r##"{"reference":"#p3"}"##, "Patient", false),
            (
                r#"{"type":"Device","identifier":{"value":"1"}}"#,
                "Device",
                true,
            ),
            (r#"{"display":"x"}"#, "Patient", false),
        ] {
            assert_eq!(
                reference_is(reference.as_bytes(), ty, &ctx).unwrap(),
                want,
                "{reference} {ty}"
            );
        }
    }

    #[test]
    fn extension_by_url() {
        let program = compile("Patient.extension('http://x/e').value", "Patient").unwrap();
        let Program::Nodes(chains) = program else {
            panic!()
        };
        let json = br#"{"extension":[{"url":"http://x/a","valueString":"no"},{"url":"http://x/e","valueString":"yes"}]}"#;
        let ctx = Ctx {
            root: json,
            slots: &[],
            contained: None,
        };
        let mut seen = Vec::new();
        for chain in chains.iter().filter(|c| c.ty == "string") {
            chain
                .any(json, &ctx, &mut |n| {
                    seen.push(n.to_vec());
                    Ok(false)
                })
                .unwrap();
        }
        assert_eq!(seen, [b"\"yes\"".to_vec()]);
    }
}
