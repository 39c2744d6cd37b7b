//! One pass over a line with serde_json's deserializer, steered by the
//! schema tables: each JSON value is checked as it is read and then
//! dropped, nothing is built. Keys and strings without escapes are borrowed
//! from the line.

use std::borrow::Cow;
use std::fmt::{self, Write as _};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::formats;
use crate::schema::{self, ElementDef, NO_CHOICE, Primitive, Ty, TypeDef};
use crate::{Config, Issue, MAX_DEPTH, MAX_RESOURCE_DEPTH, Severity, UnknownElements};

const STRUCTURE: &str = "structure";
const VALUE: &str = "value";
const REQUIRED: &str = "required";
const INVALID: &str = "invalid";

/// Longest value quoted in a diagnostic, in bytes.
const QUOTE_MAX: usize = 80;
/// Codes listed when a value is not one of them.
const CODES_LISTED: usize = 10;

pub(crate) fn check_line(
    line: &[u8],
    declared: Option<&'static TypeDef>,
    config: &Config,
) -> Vec<Issue> {
    let mut ctx = Ctx {
        path: Vec::new(),
        issues: Vec::new(),
        omitted: 0,
        max_issues: config.max_issues,
        unknown_elements: config.unknown_elements,
        depth: 0,
        resources: 0,
        in_contained: false,
    };
    let parsed = match std::str::from_utf8(line) {
        Err(e) => Err(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
        Ok(text) => {
            let mut de = serde_json::Deserializer::from_str(text);
            Seed(Top {
                ctx: &mut ctx,
                declared,
            })
            .deserialize(&mut de)
            .and_then(|()| de.end())
            .map_err(|e| e.to_string())
        }
    };
    // Whatever was found before the JSON broke off is noise next to that.
    if let Err(e) = parsed {
        return vec![Issue {
            severity: Severity::Error,
            code: STRUCTURE,
            diagnostics: format!("the line is not JSON: {e}"),
            expression: None,
        }];
    }
    if ctx.omitted > 0 {
        ctx.issues.push(Issue {
            severity: Severity::Information,
            code: "informational",
            diagnostics: format!("{} more issues in this line not listed", ctx.omitted),
            expression: None,
        });
    }
    ctx.issues
}

#[derive(Clone, Copy)]
enum Seg {
    Name(&'static str),
    Index(usize),
}

struct Ctx {
    /// Where the walk is, for issue locations: built into a string only
    /// when an issue is reported.
    path: Vec<Seg>,
    issues: Vec<Issue>,
    omitted: usize,
    max_issues: usize,
    unknown_elements: UnknownElements,
    /// Objects and arrays enclosing the current value. serde_json has its
    /// own limit, but members read again after a late `resourceType` start
    /// its count afresh: this one bounds the walk's recursion.
    depth: usize,
    /// Resources enclosing the current value.
    resources: usize,
    /// Whether the innermost resource is a contained one.
    in_contained: bool,
}

impl Ctx {
    /// Enters an object or array, unless that is one level too deep.
    fn descend(&mut self) -> bool {
        if self.depth >= MAX_DEPTH {
            self.report(STRUCTURE, None, || {
                format!("objects and arrays nested more than {MAX_DEPTH} deep")
            });
            return false;
        }
        self.depth += 1;
        true
    }

    /// An error at the current location, or at its child `tail`.
    fn report(
        &mut self,
        code: &'static str,
        tail: Option<&str>,
        diagnostics: impl FnOnce() -> String,
    ) {
        if self.issues.len() >= self.max_issues {
            self.omitted += 1;
            return;
        }
        let mut expression = String::new();
        for seg in &self.path {
            match seg {
                Seg::Name(name) => {
                    if !expression.is_empty() {
                        expression.push('.');
                    }
                    expression.push_str(name);
                }
                Seg::Index(i) => {
                    let _ = write!(expression, "[{i}]");
                }
            }
        }
        if let Some(tail) = tail {
            if !expression.is_empty() {
                expression.push('.');
            }
            expression.push_str(tail);
        }
        self.issues.push(Issue {
            severity: Severity::Error,
            code,
            diagnostics: diagnostics(),
            expression: (!expression.is_empty()).then_some(expression),
        });
    }
}

/// A JSON number as serde_json reads it.
#[derive(Clone, Copy)]
enum Number {
    Int(i64),
    UInt(u64),
    Float(f64),
}

impl fmt::Display for Number {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Number::Int(n) => write!(f, "{n}"),
            Number::UInt(n) => write!(f, "{n}"),
            Number::Float(n) => write!(f, "{n:?}"),
        }
    }
}

/// What one JSON value must be. Each method handles one JSON kind; the
/// defaults report a kind mismatch (and read past the value).
trait Expect<'de>: Sized {
    fn ctx(&mut self) -> &mut Ctx;
    /// The expected kind, for mismatch diagnostics.
    fn expected(&self) -> String;

    fn mismatch(&mut self, found: &str) {
        let expected = self.expected();
        self.ctx().report(STRUCTURE, None, || {
            format!("expected {expected}, found {found}")
        });
    }
    fn string(mut self, _: &str) {
        self.mismatch("a string");
    }
    fn number(mut self, _: Number) {
        self.mismatch("a number");
    }
    fn boolean(mut self, _: bool) {
        self.mismatch("a boolean");
    }
    fn null(mut self) {
        self.mismatch("null");
    }
    fn object<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        self.mismatch("an object");
        drain_map(map)
    }
    fn array<A: SeqAccess<'de>>(mut self, seq: A) -> Result<(), A::Error> {
        self.mismatch("an array");
        drain_seq(seq)
    }
}

/// Deserializes one value into an `Expect`.
struct Seed<E>(E);

impl<'de, E: Expect<'de>> DeserializeSeed<'de> for Seed<E> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, E: Expect<'de>> Visitor<'de> for Seed<E> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<Er: de::Error>(self, v: bool) -> Result<(), Er> {
        self.0.boolean(v);
        Ok(())
    }
    fn visit_i64<Er: de::Error>(self, v: i64) -> Result<(), Er> {
        self.0.number(Number::Int(v));
        Ok(())
    }
    fn visit_u64<Er: de::Error>(self, v: u64) -> Result<(), Er> {
        self.0.number(Number::UInt(v));
        Ok(())
    }
    fn visit_f64<Er: de::Error>(self, v: f64) -> Result<(), Er> {
        self.0.number(Number::Float(v));
        Ok(())
    }
    fn visit_str<Er: de::Error>(self, v: &str) -> Result<(), Er> {
        self.0.string(v);
        Ok(())
    }
    fn visit_unit<Er: de::Error>(self) -> Result<(), Er> {
        self.0.null();
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.object(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.0.array(seq)
    }
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// The line: one resource.
struct Top<'c> {
    ctx: &'c mut Ctx,
    declared: Option<&'static TypeDef>,
}

impl<'de> Expect<'de> for Top<'_> {
    fn ctx(&mut self) -> &mut Ctx {
        self.ctx
    }
    fn expected(&self) -> String {
        "a JSON object".to_owned()
    }
    fn mismatch(&mut self, _: &str) {
        self.ctx.report(STRUCTURE, None, || {
            "the line is not a JSON object".to_owned()
        });
    }
    fn object<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        walk_resource(self.ctx, map, self.declared, true)
    }
}

/// The value of one member: an array of items when the element repeats,
/// else one item.
struct Member<'c> {
    ctx: &'c mut Ctx,
    el: &'static ElementDef,
    /// The `_name` sibling rather than the value.
    ext: bool,
}

impl Member<'_> {
    fn item(&mut self, in_array: bool) -> Item<'_> {
        Item {
            ctx: self.ctx,
            el: self.el,
            ext: self.ext,
            in_array,
        }
    }
}

impl<'de> Expect<'de> for Member<'_> {
    fn ctx(&mut self) -> &mut Ctx {
        self.ctx
    }
    fn expected(&self) -> String {
        if self.el.array {
            "an array".to_owned()
        } else {
            describe(self.el, self.ext)
        }
    }
    fn string(mut self, s: &str) {
        if self.el.array {
            self.mismatch("a string");
        } else {
            Expect::string(self.item(false), s);
        }
    }
    fn number(mut self, n: Number) {
        if self.el.array {
            self.mismatch("a number");
        } else {
            self.item(false).number(n);
        }
    }
    fn boolean(mut self, b: bool) {
        if self.el.array {
            self.mismatch("a boolean");
        } else {
            self.item(false).boolean(b);
        }
    }
    fn null(mut self) {
        if self.el.array {
            self.mismatch("null");
        } else {
            self.item(false).null();
        }
    }
    fn object<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        if self.el.array {
            self.mismatch("an object");
            drain_map(map)
        } else {
            self.item(false).object(map)
        }
    }
    fn array<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        if !self.el.array {
            return self.item(false).array(seq);
        }
        if !self.ctx.descend() {
            return drain_seq(seq);
        }
        let mut i = 0;
        loop {
            self.ctx.path.push(Seg::Index(i));
            let next = seq.next_element_seed(Seed(self.item(true)));
            self.ctx.path.pop();
            if next?.is_none() {
                break;
            }
            i += 1;
        }
        if i == 0 {
            self.ctx.report(STRUCTURE, None, || {
                "an empty array (R4 JSON has no empty arrays)".to_owned()
            });
        }
        self.ctx.depth -= 1;
        Ok(())
    }
}

fn describe(el: &ElementDef, ext: bool) -> String {
    if ext {
        return "an object (a primitive's id and extensions)".to_owned();
    }
    match el.ty {
        Ty::Primitive(Primitive::Boolean) => "a boolean".to_owned(),
        Ty::Primitive(
            p @ (Primitive::Decimal
            | Primitive::Integer
            | Primitive::PositiveInt
            | Primitive::UnsignedInt),
        ) => format!("a number ({})", schema::primitive_name(p)),
        Ty::Primitive(p) => format!("a string ({})", schema::primitive_name(p)),
        Ty::Code(_) => "a string (code)".to_owned(),
        Ty::Complex(_) => "an object".to_owned(),
        Ty::Resource => "a resource (an object)".to_owned(),
    }
}

/// One value of an element (the value itself, or one array item).
struct Item<'c> {
    ctx: &'c mut Ctx,
    el: &'static ElementDef,
    ext: bool,
    /// Primitive arrays may hold `null` where only the `_name` sibling has
    /// something at that index.
    in_array: bool,
}

impl<'de> Expect<'de> for Item<'_> {
    fn ctx(&mut self) -> &mut Ctx {
        self.ctx
    }
    fn expected(&self) -> String {
        describe(self.el, self.ext)
    }
    fn string(mut self, s: &str) {
        match self.el.ty {
            _ if self.ext => self.mismatch("a string"),
            Ty::Primitive(
                Primitive::Boolean
                | Primitive::Decimal
                | Primitive::Integer
                | Primitive::PositiveInt
                | Primitive::UnsignedInt,
            )
            | Ty::Complex(_)
            | Ty::Resource => self.mismatch("a string"),
            Ty::Primitive(p) => {
                if !formats::check_string(p, s) {
                    self.ctx.report(VALUE, None, || {
                        format!(
                            "{} is not a valid {} ({})",
                            quote(s),
                            schema::primitive_name(p),
                            formats::string_rule(p)
                        )
                    });
                }
            }
            Ty::Code(i) => {
                let codes = schema::codes(i);
                if !codes.contains(&s) {
                    self.ctx.report(VALUE, None, || {
                        let mut listed = codes[..codes.len().min(CODES_LISTED)].join(", ");
                        if codes.len() > CODES_LISTED {
                            listed.push_str(", ...");
                        }
                        format!(
                            "{} is not a code of the required value set ({listed})",
                            quote(s)
                        )
                    });
                }
            }
        }
    }
    fn number(mut self, n: Number) {
        match self.el.ty {
            _ if self.ext => self.mismatch("a number"),
            Ty::Primitive(Primitive::Decimal) => {}
            Ty::Primitive(
                p @ (Primitive::Integer | Primitive::PositiveInt | Primitive::UnsignedInt),
            ) => {
                let (low, high) = formats::integer_range(p);
                let whole = match n {
                    Number::Int(i) => Some(i),
                    Number::UInt(u) => i64::try_from(u).ok(),
                    Number::Float(_) => None,
                };
                if !whole.is_some_and(|i| (low..=high).contains(&i)) {
                    self.ctx.report(VALUE, None, || {
                        format!(
                            "{n} is not a valid {} (a whole number from {low} to {high})",
                            schema::primitive_name(p)
                        )
                    });
                }
            }
            _ => self.mismatch("a number"),
        }
    }
    fn boolean(mut self, _: bool) {
        if self.ext || !matches!(self.el.ty, Ty::Primitive(Primitive::Boolean)) {
            self.mismatch("a boolean");
        }
    }
    fn null(mut self) {
        let primitive = self.ext || matches!(self.el.ty, Ty::Primitive(_) | Ty::Code(_));
        if !(self.in_array && primitive) {
            self.mismatch("null");
        }
    }
    fn object<A: MapAccess<'de>>(mut self, map: A) -> Result<(), A::Error> {
        match self.el.ty {
            _ if self.ext => walk_object(self.ctx, schema::complex(schema::ELEMENT), map),
            Ty::Complex(t) => walk_object(self.ctx, schema::complex(t), map),
            Ty::Resource => {
                if self.ctx.resources >= MAX_RESOURCE_DEPTH {
                    self.ctx.report(STRUCTURE, None, || {
                        format!("resources nested more than {MAX_RESOURCE_DEPTH} deep")
                    });
                    return drain_map(map);
                }
                let outer = self.ctx.in_contained;
                self.ctx.resources += 1;
                self.ctx.in_contained = self.el.name == "contained";
                let walked = walk_resource(self.ctx, map, None, false);
                self.ctx.resources -= 1;
                self.ctx.in_contained = outer;
                walked
            }
            Ty::Primitive(_) | Ty::Code(_) => {
                self.mismatch("an object");
                drain_map(map)
            }
        }
    }
}

/// `s` as a JSON string, shortened if long.
fn quote(s: &str) -> String {
    if s.len() <= QUOTE_MAX {
        return serde_json::to_string(s).unwrap_or_default();
    }
    let mut end = QUOTE_MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let quoted = serde_json::to_string(&s[..end]).unwrap_or_default();
    format!("{}...\" ({} bytes)", &quoted[..quoted.len() - 1], s.len())
}

/// The members of one object as they are read: which elements it has, for
/// duplicates, choices and required elements.
struct Members {
    ty: &'static TypeDef,
    count: usize,
    values: [u64; WORDS],
    extensions: [u64; WORDS],
    /// Per choice group: 1 + the index of the element given, or 0.
    choices: [u16; schema::MAX_CHOICES],
}

const WORDS: usize = schema::MAX_ELEMENTS.div_ceil(64);

fn has(set: &[u64; WORDS], i: usize) -> bool {
    set[i / 64] & (1 << (i % 64)) != 0
}

impl Members {
    fn new(ty: &'static TypeDef) -> Members {
        Members {
            ty,
            count: 0,
            values: [0; WORDS],
            extensions: [0; WORDS],
            choices: [0; schema::MAX_CHOICES],
        }
    }

    /// The element `key` stands for, if its value is to be checked.
    fn admit(&mut self, ctx: &mut Ctx, key: &str) -> Option<(&'static ElementDef, bool)> {
        self.count += 1;
        let (name, ext) = match key.strip_prefix('_') {
            Some(name) => (name, true),
            None => (key, false),
        };
        let Some((i, el)) = self.ty.element(name).filter(|(_, el)| !ext || el.ext) else {
            if ctx.unknown_elements == UnknownElements::Error {
                ctx.report(STRUCTURE, Some(key), || format!("unknown element '{key}'"));
            }
            return None;
        };
        let set = if ext {
            &mut self.extensions
        } else {
            &mut self.values
        };
        if has(set, i) {
            ctx.report(STRUCTURE, Some(key), || format!("duplicate key '{key}'"));
            return None;
        }
        set[i / 64] |= 1 << (i % 64);
        if el.choice != NO_CHOICE {
            let given = &mut self.choices[usize::from(el.choice)];
            let this = u16::try_from(i + 1).unwrap_or(u16::MAX);
            if *given == 0 {
                *given = this;
            } else if *given != this {
                let other = self.ty.elements[usize::from(*given) - 1].name;
                ctx.report(INVALID, Some(el.name), || {
                    format!(
                        "'{other}' and '{}' are both given: a choice element has one type",
                        el.name
                    )
                });
            }
        }
        if ctx.in_contained && el.name == "contained" && matches!(el.ty, Ty::Resource) {
            ctx.report(INVALID, Some(key), || {
                "a contained resource holds contained resources (R4 invariant dom-2)".to_owned()
            });
            return None;
        }
        Some((el, ext))
    }

    /// Checks the value of `key` read from `map`.
    fn member<'de, A: MapAccess<'de>>(
        &mut self,
        ctx: &mut Ctx,
        key: &str,
        map: &mut A,
    ) -> Result<(), A::Error> {
        match self.admit(ctx, key) {
            Some((el, ext)) => {
                ctx.path.push(Seg::Name(el.name));
                let checked = map.next_value_seed(Seed(Member { ctx, el, ext }));
                ctx.path.pop();
                checked
            }
            None => map.next_value::<IgnoredAny>().map(drop),
        }
    }

    fn finish(self, ctx: &mut Ctx) {
        if self.count == 0 {
            ctx.report(STRUCTURE, None, || {
                "an empty object (R4 JSON has no empty objects)".to_owned()
            });
        }
        for &r in self.ty.required {
            if !has(&self.values, r) && !has(&self.extensions, r) {
                let name = self.ty.elements[r].name;
                ctx.report(REQUIRED, Some(name), || {
                    format!("missing required element '{name}'")
                });
            }
        }
    }
}

fn walk_object<'de, A: MapAccess<'de>>(
    ctx: &mut Ctx,
    ty: &'static TypeDef,
    mut map: A,
) -> Result<(), A::Error> {
    if !ctx.descend() {
        return drain_map(map);
    }
    let mut members = Members::new(ty);
    while let Some(Key(key)) = map.next_key()? {
        members.member(ctx, &key, &mut map)?;
    }
    members.finish(ctx);
    ctx.depth -= 1;
    Ok(())
}

/// A resource: the line's (`top`), or one nested in it.
fn walk_resource<'de, A: MapAccess<'de>>(
    ctx: &mut Ctx,
    mut map: A,
    declared: Option<&'static TypeDef>,
    top: bool,
) -> Result<(), A::Error> {
    if !ctx.descend() {
        return drain_map(map);
    }
    // R4 JSON writes resourceType first, but objects are unordered: members
    // before it wait, unchecked and unparsed, until the type is known.
    let mut before: Vec<(Cow<'de, str>, &'de RawValue)> = Vec::new();
    let name = loop {
        let Some(Key(key)) = map.next_key()? else {
            break None;
        };
        if key == "resourceType" {
            break map.next_value::<TypeName>()?.0;
        }
        before.push((key, map.next_value()?));
    };
    let Some(name) = name else {
        ctx.report(REQUIRED, Some("resourceType"), || {
            "resourceType is missing or not a string".to_owned()
        });
        return drain_map(map);
    };
    let Some(ty) = schema::resource(&name) else {
        ctx.report(VALUE, Some("resourceType"), || {
            format!("'{name}' is not an R4 resource type")
        });
        return drain_map(map);
    };
    if let Some(declared) = declared
        && !std::ptr::eq(declared, ty)
    {
        ctx.report(INVALID, Some("resourceType"), || {
            format!("a {} in a file declared to hold {}", ty.name, declared.name)
        });
    }
    if top {
        ctx.path.push(Seg::Name(ty.name));
    }
    let mut members = Members::new(ty);
    members.count = 1;
    for (key, value) in &before {
        if let Some((el, ext)) = members.admit(ctx, key) {
            ctx.path.push(Seg::Name(el.name));
            let mut value = serde_json::Deserializer::from_str(value.get());
            let checked = Seed(Member { ctx, el, ext }).deserialize(&mut value);
            ctx.path.pop();
            checked.map_err(de::Error::custom)?;
        }
    }
    while let Some(Key(key)) = map.next_key()? {
        if key == "resourceType" {
            ctx.report(STRUCTURE, Some("resourceType"), || {
                "duplicate key 'resourceType'".to_owned()
            });
            map.next_value::<IgnoredAny>()?;
        } else {
            members.member(ctx, &key, &mut map)?;
        }
    }
    members.finish(ctx);
    if top {
        ctx.path.pop();
    }
    ctx.depth -= 1;
    Ok(())
}

/// An object key, borrowed from the line unless it has escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// The value of `resourceType`: the name if it is a string.
struct TypeName<'de>(Option<Cow<'de, str>>);

impl<'de> de::Deserialize<'de> for TypeName<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NameVisitor;
        impl<'de> Visitor<'de> for NameVisitor {
            type Value = TypeName<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<TypeName<'de>, E> {
                Ok(TypeName(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TypeName<'de>, E> {
                Ok(TypeName(Some(Cow::Owned(v.to_owned()))))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<TypeName<'de>, E> {
                Ok(TypeName(None))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<TypeName<'de>, E> {
                Ok(TypeName(None))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<TypeName<'de>, E> {
                Ok(TypeName(None))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<TypeName<'de>, E> {
                Ok(TypeName(None))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TypeName<'de>, E> {
                Ok(TypeName(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TypeName<'de>, A::Error> {
                drain_map(map).map(|()| TypeName(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TypeName<'de>, A::Error> {
                drain_seq(seq).map(|()| TypeName(None))
            }
        }
        deserializer.deserialize_any(NameVisitor)
    }
}
