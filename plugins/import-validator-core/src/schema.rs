//! The R4 structure tables build.rs generates from the vendored JSON schema.

use crate::hash::hash;

/// An R4 primitive type; its format is checked by `formats::check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Primitive {
    Base64Binary,
    Boolean,
    Canonical,
    Code,
    Date,
    DateTime,
    Decimal,
    Id,
    Instant,
    Integer,
    Markdown,
    Oid,
    PositiveInt,
    String,
    Time,
    UnsignedInt,
    Uri,
    Url,
    Uuid,
    Xhtml,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Ty {
    Primitive(Primitive),
    /// Index into `TYPES`.
    Complex(u16),
    /// A code bound to a required value set: index into `CODES`.
    Code(u16),
    /// Any resource (`contained`, `Bundle.entry.resource`...).
    Resource,
}

#[derive(Debug)]
pub(crate) struct ElementDef {
    pub name: &'static str,
    pub ty: Ty,
    pub array: bool,
    /// Whether `_name` (the primitive's id and extensions) may appear.
    pub ext: bool,
    /// The choice (`value[x]`) group within the type, or `NO_CHOICE`.
    pub choice: u8,
}

pub(crate) const NO_CHOICE: u8 = u8::MAX;

const EMPTY: u16 = u16::MAX;

#[derive(Debug)]
pub(crate) struct TypeDef {
    pub name: &'static str,
    /// Sorted by name.
    pub elements: &'static [ElementDef],
    /// Indices into `elements` by name hash (see build.rs), `EMPTY` where
    /// none; a power of two long, never full.
    pub slots: &'static [u16],
    /// Indices into `elements`.
    pub required: &'static [usize],
}

include!(concat!(env!("OUT_DIR"), "/schema.rs"));

impl TypeDef {
    /// The element called `name`, and its index.
    pub(crate) fn element(&self, name: &str) -> Option<(usize, &'static ElementDef)> {
        let mask = self.slots.len() - 1;
        let mut h = hash(name.as_bytes()) as usize & mask;
        loop {
            let i = *self.slots.get(h)?;
            if i == EMPTY {
                return None;
            }
            let i = usize::from(i);
            let el = self.elements.get(i)?;
            if el.name == name {
                return Some((i, el));
            }
            h = (h + 1) & mask;
        }
    }
}

pub(crate) fn complex(i: u16) -> &'static TypeDef {
    &TYPES[usize::from(i)]
}

/// The R4 resource type called `name`.
pub(crate) fn resource(name: &str) -> Option<&'static TypeDef> {
    RESOURCES
        .binary_search_by(|(n, _)| n.cmp(&name))
        .ok()
        .map(|i| complex(RESOURCES[i].1))
}

pub(crate) fn codes(i: u16) -> &'static [&'static str] {
    CODES[usize::from(i)]
}
