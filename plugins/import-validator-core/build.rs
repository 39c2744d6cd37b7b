//! Turns the vendored R4 JSON schema (3.5 MB) into compact Rust tables the
//! validator walks: for each resource type and each complex datatype or
//! backbone element reachable from one, its elements (primitive kind,
//! complex type, coded value set, or any resource), whether each is an
//! array, whether it may carry a `_name` extension sibling, which choice
//! (`value[x]`) group it belongs to, and which elements are required.
//!
//! The schema is Medplum's copy of the R4 schema (see the assets' LICENSE):
//! only the R4 resource types (the Patient CompartmentDefinition's list plus
//! `Parameters`) and what they reach are kept, and the few elements Medplum
//! added to R4 types are dropped (`NOT_R4`).
//!
//! The primitive formats are hand-written checkers (src/formats.rs) that
//! implement the schema's `pattern`s; `PATTERNS` pins the exact patterns
//! they were written against, so a schema with another pattern fails the
//! build instead of being silently checked by stale code.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

include!("src/hash.rs");

const SCHEMA: &str = "../../host/assets/fhir-r4/fhir.schema.json";
const COMPARTMENT: &str = "../../host/assets/fhir-r4/CompartmentDefinition-patient.json";

/// Elements Medplum's schema adds to R4 types; an R4 resource carrying them
/// is not valid R4.
const NOT_R4: [(&str, &str); 7] = [
    ("Meta", "project"),
    ("Meta", "author"),
    ("Meta", "account"),
    ("Meta", "compartment"),
    ("Reference", "resource"),
    ("OperationOutcome", "status"),
    ("OperationOutcome", "resource"),
];

/// Each R4 primitive type, its `Primitive` variant in src/schema.rs, and the
/// pattern its checker implements (`None`: the schema gives none).
const PRIMITIVES: [(&str, &str, Option<&str>); 20] = [
    (
        "base64Binary",
        "Base64Binary",
        // Given only inline, on `value[x]` elements of that type.
        Some(r"^(\s*([0-9a-zA-Z\+/=]){4}\s*)+$"),
    ),
    ("boolean", "Boolean", Some(r"^true|false$")),
    ("canonical", "Canonical", Some(r"^\S*$")),
    ("code", "Code", Some(r"^[^\s]+(\s[^\s]+)*$")),
    (
        "date",
        "Date",
        Some(
            r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1]))?)?$",
        ),
    ),
    (
        "dateTime",
        "DateTime",
        Some(
            r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)(-(0[1-9]|1[0-2])(-(0[1-9]|[1-2][0-9]|3[0-1])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$",
        ),
    ),
    (
        "decimal",
        "Decimal",
        Some(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"),
    ),
    ("id", "Id", Some(r"^[A-Za-z0-9\-\.]{1,64}$")),
    (
        "instant",
        "Instant",
        Some(
            r"^([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)-(0[1-9]|1[0-2])-(0[1-9]|[1-2][0-9]|3[0-1])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|(\+|-)((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$",
        ),
    ),
    ("integer", "Integer", Some(r"^-?([0]|([1-9][0-9]*))$")),
    ("markdown", "Markdown", Some(r"^[ \r\n\t\S]+$")),
    ("oid", "Oid", Some(r"^urn:oid:[0-2](\.(0|[1-9][0-9]*))+$")),
    ("positiveInt", "PositiveInt", Some(r"^[1-9][0-9]*$")),
    ("string", "String", Some(r"^[ \r\n\t\S]+$")),
    (
        "time",
        "Time",
        Some(r"^([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?$"),
    ),
    ("unsignedInt", "UnsignedInt", Some(r"^[0]|([1-9][0-9]*)$")),
    ("uri", "Uri", Some(r"^\S*$")),
    ("url", "Url", Some(r"^\S*$")),
    (
        "uuid",
        "Uuid",
        Some(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"),
    ),
    ("xhtml", "Xhtml", None),
];

fn main() {
    let crate_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("schema.rs");
    for input in [SCHEMA, COMPARTMENT] {
        println!("cargo:rerun-if-changed={input}");
    }
    let schema = read_json(&crate_dir.join(SCHEMA));
    let compartment = read_json(&crate_dir.join(COMPARTMENT));
    let code = Tables::build(&schema, &compartment).render();
    std::fs::write(&out, code).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

fn read_json(path: &Path) -> Value {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()))
}

enum Ty {
    Primitive(&'static str),
    Complex(usize),
    Code(usize),
    Resource,
}

struct Element {
    name: String,
    ty: Ty,
    array: bool,
    ext: bool,
    choice: Option<usize>,
    description: String,
}

struct TypeDef {
    name: String,
    elements: Vec<Element>,
    required: Vec<usize>,
}

struct Tables {
    types: Vec<TypeDef>,
    resources: Vec<(String, usize)>,
    codes: Vec<Vec<String>>,
}

impl Tables {
    fn build(schema: &Value, compartment: &Value) -> Tables {
        let defs = schema["definitions"]
            .as_object()
            .expect("the schema has definitions");
        check_primitives(defs);

        let mut resources: BTreeSet<String> = compartment["resource"]
            .as_array()
            .expect("the CompartmentDefinition lists resources")
            .iter()
            .map(|r| r["code"].as_str().expect("a resource code").to_owned())
            .collect();
        // Left out of the CompartmentDefinition (never in a patient's
        // compartment), an R4 resource all the same.
        resources.insert("Parameters".to_owned());
        for r in &resources {
            let def = &defs[r.as_str()];
            assert!(
                def["properties"]["resourceType"]["const"] == r.as_str(),
                "{r} is not a resource in the schema"
            );
        }

        // Every complex type reachable from an R4 resource, plus `Element`
        // (the shape of every `_name` sibling).
        let mut reachable: BTreeSet<String> = resources.clone();
        reachable.insert("Element".to_owned());
        let mut queue: VecDeque<String> = reachable.iter().cloned().collect();
        while let Some(name) = queue.pop_front() {
            for (pname, prop) in properties(defs, &name) {
                if let Some(target) = reference(prop)
                    && is_complex(defs, target)
                    && !pname.starts_with('_')
                    && reachable.insert(target.to_owned())
                {
                    queue.push_back(target.to_owned());
                }
            }
        }
        let index: BTreeMap<&str, usize> = reachable
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i))
            .collect();

        let mut codes: Vec<Vec<String>> = Vec::new();
        let mut types = Vec::new();
        for name in &reachable {
            let props = properties(defs, name);
            let mut elements = Vec::new();
            for (pname, prop) in &props {
                if let Some(base) = pname.strip_prefix('_') {
                    assert!(
                        props.iter().any(|(n, _)| n == base),
                        "{name}.{pname} extends no element"
                    );
                    assert!(
                        reference(prop) == Some("Element"),
                        "{name}.{pname} is not an Element"
                    );
                    continue;
                }
                // A resource's own type; `ExampleScenario.instance` has a
                // plain element of that name.
                if prop.get("const").is_some() {
                    assert!(
                        pname == "resourceType" && resources.contains(name),
                        "{name}.{pname} is a constant"
                    );
                    continue;
                }
                let array = prop.get("items").is_some();
                let shape = prop.get("items").unwrap_or(prop);
                let ty =
                    if let Some(target) = shape.get("$ref").and_then(Value::as_str) {
                        let target = target.trim_start_matches("#/definitions/");
                        if target == "ResourceList" {
                            Ty::Resource
                        } else if let Some(&i) = index.get(target) {
                            Ty::Complex(i)
                        } else {
                            Ty::Primitive(primitive_variant(target).unwrap_or_else(|| {
                                panic!("{name}.{pname}: unexpected type {target}")
                            }))
                        }
                    } else if let Some(pattern) = shape.get("pattern").and_then(Value::as_str) {
                        Ty::Primitive(inline_primitive(pname, pattern))
                    } else if let Some(values) = shape.get("enum").and_then(Value::as_array) {
                        let values: Vec<String> = values
                            .iter()
                            .map(|v| v.as_str().expect("enum values are strings").to_owned())
                            .collect();
                        let i = codes.iter().position(|c| *c == values).unwrap_or_else(|| {
                            codes.push(values);
                            codes.len() - 1
                        });
                        Ty::Code(i)
                    } else {
                        panic!("{name}.{pname}: no type in the schema")
                    };
                let primitive = match ty {
                    Ty::Primitive(p) => p != "Xhtml",
                    Ty::Code(_) => true,
                    Ty::Complex(_) | Ty::Resource => false,
                };
                // The schema leaves out some `_name` siblings JSON allows on
                // every primitive (e.g. `Meta._profile` for canonicals); an
                // element's own `id` is an attribute, never extended.
                let ext = props.iter().any(|(n, _)| *n == format!("_{pname}"))
                    || (primitive && pname != "id");
                elements.push(Element {
                    name: pname.clone(),
                    ty,
                    array,
                    ext,
                    choice: None,
                    description: prop["description"].as_str().unwrap_or_default().to_owned(),
                });
            }
            elements.sort_by(|a, b| a.name.cmp(&b.name));
            assign_choices(&reachable, &mut elements);
            let required = defs[name.as_str()]
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|r| r.as_str().expect("required names are strings"))
                .filter(|r| *r != "resourceType")
                .map(|r| {
                    elements
                        .iter()
                        .position(|e| e.name == r)
                        .unwrap_or_else(|| panic!("{name}: required {r} is not an element"))
                })
                .collect();
            types.push(TypeDef {
                name: name.clone(),
                elements,
                required,
            });
        }
        let resources = resources
            .iter()
            .map(|r| (r.clone(), index[r.as_str()]))
            .collect();
        Tables {
            types,
            resources,
            codes,
        }
    }

    fn render(&self) -> String {
        let mut s =
            String::from("// Generated by build.rs from fhir.schema.json: do not edit.\n\n");
        let max_elements = self
            .types
            .iter()
            .map(|t| t.elements.len())
            .max()
            .unwrap_or(0);
        let max_choices = self
            .types
            .iter()
            .map(|t| {
                t.elements
                    .iter()
                    .filter_map(|e| e.choice)
                    .max()
                    .map_or(0, |c| c + 1)
            })
            .max()
            .unwrap_or(0);
        let element = self
            .types
            .iter()
            .position(|t| t.name == "Element")
            .expect("Element is kept");
        writeln!(s, "pub(crate) const MAX_ELEMENTS: usize = {max_elements};").unwrap();
        writeln!(s, "pub(crate) const MAX_CHOICES: usize = {max_choices};").unwrap();
        writeln!(s, "pub(crate) const ELEMENT: u16 = {element};").unwrap();
        writeln!(
            s,
            "pub(crate) static TYPES: [TypeDef; {}] = [",
            self.types.len()
        )
        .unwrap();
        for t in &self.types {
            writeln!(s, "TypeDef {{ name: {:?}, elements: &[", t.name).unwrap();
            for e in &t.elements {
                let ty = match e.ty {
                    Ty::Primitive(p) => format!("Ty::Primitive(Primitive::{p})"),
                    Ty::Complex(i) => format!("Ty::Complex({i})"),
                    Ty::Code(i) => format!("Ty::Code({i})"),
                    Ty::Resource => "Ty::Resource".to_owned(),
                };
                let choice = e.choice.map_or("NO_CHOICE".to_owned(), |c| c.to_string());
                writeln!(
                    s,
                    "ElementDef {{ name: {:?}, ty: {ty}, array: {}, ext: {}, choice: {choice} }},",
                    e.name, e.array, e.ext
                )
                .unwrap();
            }
            writeln!(
                s,
                "], slots: &{:?}, required: &{:?} }},",
                slots(&t.elements),
                t.required
            )
            .unwrap();
        }
        writeln!(s, "];").unwrap();
        writeln!(
            s,
            "pub(crate) static RESOURCES: [(&str, u16); {}] = [",
            self.resources.len()
        )
        .unwrap();
        for (name, i) in &self.resources {
            writeln!(s, "({name:?}, {i}),").unwrap();
        }
        writeln!(s, "];").unwrap();
        writeln!(
            s,
            "pub(crate) fn primitive_name(p: Primitive) -> &'static str {{ match p {{"
        )
        .unwrap();
        for (name, variant, _) in PRIMITIVES {
            writeln!(s, "Primitive::{variant} => {name:?},").unwrap();
        }
        writeln!(s, "}} }}").unwrap();
        writeln!(
            s,
            "pub(crate) static CODES: [&[&str]; {}] = [",
            self.codes.len()
        )
        .unwrap();
        for c in &self.codes {
            writeln!(s, "&{c:?},").unwrap();
        }
        writeln!(s, "];").unwrap();
        assert!(max_elements <= 64 * 8, "element sets are [u64; 8] wide");
        assert!(max_choices < 255, "choice groups are numbered in a u8");
        s
    }
}

/// An open-addressing table of the elements by name hash (linear probing,
/// `u16::MAX` = empty, at most two thirds full): one hash and usually one
/// comparison per key, where a binary search costs several.
fn slots(elements: &[Element]) -> Vec<u16> {
    let size = (elements.len() * 3 / 2 + 1).next_power_of_two();
    let mut slots = vec![u16::MAX; size];
    for (i, e) in elements.iter().enumerate() {
        let mut h = hash(e.name.as_bytes()) as usize & (size - 1);
        while slots[h] != u16::MAX {
            h = (h + 1) & (size - 1);
        }
        slots[h] = u16::try_from(i).expect("fewer than 65535 elements");
    }
    slots
}

/// The properties of a definition as the schema lists them, minus Medplum's.
fn properties<'a>(defs: &'a Map<String, Value>, name: &str) -> Vec<(String, &'a Value)> {
    defs[name]["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(p, _)| {
            let base = p.trim_start_matches('_');
            !NOT_R4.contains(&(name, base))
        })
        .map(|(p, v)| (p.clone(), v))
        .collect()
}

fn reference(prop: &Value) -> Option<&str> {
    prop.get("items")
        .unwrap_or(prop)
        .get("$ref")?
        .as_str()
        .map(|r| r.trim_start_matches("#/definitions/"))
}

fn is_complex(defs: &Map<String, Value>, name: &str) -> bool {
    defs[name].get("properties").is_some()
}

fn primitive_variant(name: &str) -> Option<&'static str> {
    PRIMITIVES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, v, _)| *v)
}

/// The schema's primitives are exactly the ones the checkers implement, with
/// the patterns they were written against.
fn check_primitives(defs: &Map<String, Value>) {
    let in_schema: BTreeSet<&str> = defs
        .iter()
        .filter(|(_, d)| d.get("properties").is_none() && d.get("oneOf").is_none())
        .map(|(n, _)| n.as_str())
        .collect();
    let known: BTreeSet<&str> = PRIMITIVES.iter().map(|(n, _, _)| *n).collect();
    assert_eq!(in_schema, known, "the schema's primitive types changed");
    for (name, _, pattern) in PRIMITIVES {
        let actual = defs[name].get("pattern").and_then(Value::as_str);
        if name != "base64Binary" {
            assert_eq!(actual, pattern, "the schema's pattern for {name} changed");
        }
    }
}

/// A primitive the schema spells out inline (`pattern` + `type` instead of a
/// `$ref`), as it does for the `value[x]` of Extension and the like: the
/// choice suffix names the type (`valueBase64Binary`), and the pattern
/// must be that type's.
fn inline_primitive(pname: &str, pattern: &str) -> &'static str {
    let (name, variant, expected) = PRIMITIVES
        .iter()
        .find(|(n, _, _)| {
            let suffix = upper_first(n);
            pname.len() > suffix.len() && pname.ends_with(&suffix)
        })
        .unwrap_or_else(|| panic!("{pname}: an inline pattern on no known type"));
    assert_eq!(
        Some(pattern),
        *expected,
        "{pname}: the inline pattern of {name} changed"
    );
    variant
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
        .unwrap_or_default()
}

/// Choice elements (`value[x]`) are separate properties in the schema:
/// `valueQuantity`, `valueString`... An element is part of a choice when it
/// is single, its name is a prefix followed by its own type's name, and at
/// least one sibling has the same prefix followed by its type's name and
/// the same description (one element definition). The description tells
/// `PaymentReconciliation.paymentDate` and `.paymentIdentifier` apart, two
/// elements; being single, `CarePlan.instantiatesCanonical` and
/// `.instantiatesUri`.
fn assign_choices(types: &BTreeSet<String>, elements: &mut [Element]) {
    let names: Vec<&String> = types.iter().collect();
    let prefix = |e: &Element| -> Option<(String, String)> {
        if e.array {
            return None;
        }
        let type_name = match e.ty {
            Ty::Primitive(variant) => PRIMITIVES
                .iter()
                .find(|(_, v, _)| *v == variant)
                .map(|(n, _, _)| upper_first(n))?,
            Ty::Complex(i) => names[i].clone(),
            Ty::Code(_) => "Code".to_owned(),
            Ty::Resource => return None,
        };
        (e.name.len() > type_name.len() && e.name.ends_with(&type_name)).then(|| {
            let prefix = e.name[..e.name.len() - type_name.len()].to_owned();
            (prefix, e.description.clone())
        })
    };
    let prefixes: Vec<Option<(String, String)>> = elements.iter().map(prefix).collect();
    let mut groups: Vec<(String, String)> = Vec::new();
    for (i, p) in prefixes.iter().enumerate() {
        let Some(p) = p else { continue };
        if prefixes.iter().filter(|q| q.as_ref() == Some(p)).count() < 2 {
            continue;
        }
        let g = groups.iter().position(|g| g == p).unwrap_or_else(|| {
            groups.push(p.clone());
            groups.len() - 1
        });
        elements[i].choice = Some(g);
    }
}
