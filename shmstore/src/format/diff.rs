//! Layout diffs: what changed, field by field, between the layout an entry was stored with and the
//! layout of the type it is opened with.
//!
//! [`diff`] compares two [`Schema`] trees (the stored one, "was", and the expected one, "now") and
//! lists every difference as a [`Change`]: fields added, removed, renamed, retyped, resized or moved,
//! nested structs and array elements recursed into with their full paths (`inner.limits.max`,
//! `rows[].score`), enum variants added, removed, renamed or renumbered, and the version. Its
//! [`Display`](fmt::Display) is one line per change, meant to be shown under a layout mismatch error:
//!
//! ```
//! use shmstore::format::diff::diff;
//! use shmstore::format::schema::Schema;
//! use shmstore::SharedLayout;
//!
//! mod v1 {
//!     #[derive(shmstore::SharedLayout)]
//!     #[repr(C)]
//!     pub struct Config { pub port: u16, pub _pad: [u8; 2], pub max_conn: u32 }
//! }
//! mod v2 {
//!     #[derive(shmstore::SharedLayout)]
//!     #[repr(C)]
//!     #[shared(version = 2)]
//!     pub struct Config { pub listen_port: u16, pub _pad: [u8; 6], pub max_conn: u64 }
//! }
//!
//! let d = diff(&Schema::from(&v1::Config::LAYOUT), &Schema::from(&v2::Config::LAYOUT));
//! let lines: Vec<String> = d.changes.iter().map(|c| c.to_string()).collect();
//! assert_eq!(
//!     lines,
//!     [
//!         "version 1 -> 2",
//!         "field `port` renamed to `listen_port` (offset 0, u16)",
//!         "field `_pad` resized: [u8; 2] (2 bytes) -> [u8; 6] (6 bytes)",
//!         "field `max_conn` moved: offset 4 -> 8",
//!         "field `max_conn` resized: u32 (4 bytes) -> u64 (8 bytes)",
//!     ]
//! );
//! // Displayed whole, the same lines, each indented by two spaces.
//! assert!(d.to_string().starts_with("  version 1 -> 2\n  field `port` renamed"));
//! assert!(!d.layout_identical());
//! ```
//!
//! Two types are the same type here when their [fingerprints](Schema::fingerprint) are equal: type
//! names are not part of a layout, so a struct renamed from `Point` to `Vec2` with the same fields is
//! no change at all. The diff trusts the fingerprints it is given (those of [`Schema::from`] and of
//! [`decode`](super::schema::decode) are always right).
//!
//! Offsets in changes are relative to the struct that holds the field, as `offset_of!` gives them, so
//! that a nested struct that moved does not make every one of its fields look moved too.

use std::collections::{HashMap, HashSet};
use std::fmt;

use super::schema::{Schema, SchemaField, SchemaKind, SchemaVariant};
use crate::layout::Primitive;

/// Every difference between two layouts, in a stable order; see [`diff`].
///
/// Its `Display` writes one line per change, each indented by two spaces, separated by newlines
/// (no trailing newline; nothing at all for an empty diff).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutDiff {
    /// The changes, in the order described at [`diff`].
    pub changes: Vec<Change>,
}

impl LayoutDiff {
    /// Whether nothing differs, not even the version.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Whether the two layouts are byte-for-byte compatible (equal fingerprints): at most the
    /// version differs.
    pub fn layout_identical(&self) -> bool {
        self.changes.iter().all(|c| matches!(c, Change::VersionChanged { .. }))
    }
}

/// One difference between the stored layout ("was", `from`) and the expected one ("now", `to`).
///
/// Paths name a field from the top-level struct down, with `.` between nested fields and `[]` for
/// the elements of an array: `port`, `inner.limits.max`, `rows[].score`. The path of the top-level
/// type itself is empty. Offsets are relative to the struct that holds the field. Type names are
/// rendered like [`Schema::display_name`] (`u32`, `[u8; 4]`, `FixedStr<16>`, `Config`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The user-declared version differs. Reported even when the layouts are identical.
    VersionChanged {
        /// The stored version.
        from: u32,
        /// The expected version.
        to: u32,
    },
    /// The top-level type is a different type altogether: another kind (a struct against a `u64`),
    /// another array length, another primitive. A field's type change is [`Retyped`](Self::Retyped)
    /// or [`Resized`](Self::Resized) instead.
    TypeChanged {
        /// The stored type.
        from_type: String,
        /// Its size in bytes.
        from_size: u64,
        /// The expected type.
        to_type: String,
        /// Its size in bytes.
        to_size: u64,
    },
    /// A field exists only in the expected layout.
    Added {
        /// The field.
        path: String,
        /// Its offset in the expected layout.
        offset: u64,
        /// Its type.
        type_name: String,
    },
    /// A field exists only in the stored layout.
    Removed {
        /// The field.
        path: String,
        /// Its offset in the stored layout.
        offset: u64,
        /// Its type.
        type_name: String,
    },
    /// A field has a new name, at the same offset and with the same type: a stored field whose name
    /// is gone, matched with an expected field whose name is new.
    Renamed {
        /// The stored field.
        from: String,
        /// The expected field.
        to: String,
        /// The offset both have.
        offset: u64,
        /// The type both have.
        type_name: String,
    },
    /// A field is at another offset.
    Moved {
        /// The field.
        path: String,
        /// Its stored offset.
        from_offset: u64,
        /// Its expected offset.
        to_offset: u64,
    },
    /// A field has another type of the same size (`u32` to `i32`, `u32` to `AtomicU32`).
    ///
    /// Structs, enums and arrays of them are not reported as retyped when their kind is the same on
    /// both sides: their fields, variants and elements are compared instead.
    Retyped {
        /// The field.
        path: String,
        /// Its stored type.
        from_type: String,
        /// Its expected type.
        to_type: String,
    },
    /// A field has a type of another size (`u32` to `u64`, `[u8; 4]` to `[u8; 5]`, `FixedStr<16>`
    /// to `FixedStr<32>`).
    Resized {
        /// The field.
        path: String,
        /// Its stored type.
        from_type: String,
        /// Its stored size in bytes.
        from_size: u64,
        /// Its expected type.
        to_type: String,
        /// Its expected size in bytes.
        to_size: u64,
    },
    /// A type has the same fields (or variants) and size but another alignment, as when
    /// `#[repr(C, packed)]` or `align(N)` is added or removed.
    Realigned {
        /// The field of that type, or empty for the top-level type.
        path: String,
        /// The expected type.
        type_name: String,
        /// The stored alignment.
        from_align: u64,
        /// The expected alignment.
        to_align: u64,
    },
    /// A struct has the same fields at the same offsets, or an enum the same variants with the same
    /// values, declared in another order (which the fingerprint includes).
    Reordered {
        /// The field of that type, or empty for the top-level type.
        path: String,
        /// The expected type.
        type_name: String,
        /// The stored declaration order of the field or variant names.
        from: Vec<String>,
        /// The expected declaration order.
        to: Vec<String>,
    },
    /// An enum's integer representation changed.
    ReprChanged {
        /// The field of that enum type, or empty for the top-level type.
        path: String,
        /// The expected enum's name.
        enum_name: String,
        /// The stored representation.
        from: Primitive,
        /// The expected representation.
        to: Primitive,
    },
    /// An enum variant exists only in the expected layout.
    VariantAdded {
        /// The field of that enum type, or empty for the top-level type.
        path: String,
        /// The expected enum's name.
        enum_name: String,
        /// The variant.
        variant: String,
        /// Its discriminant (negative for a negative discriminant of a signed representation).
        value: i128,
    },
    /// An enum variant exists only in the stored layout.
    VariantRemoved {
        /// The field of that enum type, or empty for the top-level type.
        path: String,
        /// The stored enum's name.
        enum_name: String,
        /// The variant.
        variant: String,
        /// Its discriminant.
        value: i128,
    },
    /// An enum variant has a new name and the same discriminant: a stored variant whose name is
    /// gone, matched with an expected variant whose name is new.
    VariantRenamed {
        /// The field of that enum type, or empty for the top-level type.
        path: String,
        /// The expected enum's name.
        enum_name: String,
        /// The stored variant name.
        from: String,
        /// The expected variant name.
        to: String,
        /// The discriminant both have.
        value: i128,
    },
    /// An enum variant has another discriminant.
    VariantValueChanged {
        /// The field of that enum type, or empty for the top-level type.
        path: String,
        /// The expected enum's name.
        enum_name: String,
        /// The variant.
        variant: String,
        /// Its stored discriminant.
        from: i128,
        /// Its expected discriminant.
        to: i128,
    },
}

/// Compares the layout an entry was `stored` with against the layout it is `expected` to have.
///
/// Never panics, for any pair of schemas. The result is empty exactly when the fingerprints and the
/// versions are equal, and [`LayoutDiff::layout_identical`] exactly when the fingerprints are.
///
/// How differences are found:
/// - The version comes first, as [`Change::VersionChanged`].
/// - Struct fields are matched by name; a field whose name is gone and a field whose name is new
///   that have the same offset and the same type are a [rename](Change::Renamed); the others are
///   [added](Change::Added) or [removed](Change::Removed). A field matched by name can have several
///   changes: [moved](Change::Moved) and then its type's changes.
/// - A field whose type changed is recursed into when it is a struct on both sides, an enum on both
///   sides, or an array of such (its elements get the path `name[]`; an array whose length changed
///   is also reported as [resized](Change::Resized)). Any other type change is
///   [resized](Change::Resized) or [retyped](Change::Retyped), or, for the top-level type,
///   [`TypeChanged`](Change::TypeChanged).
/// - Enum variants are matched by name, then renames by value, like fields.
///
/// Order: within a struct, changes follow the fields' expected offsets (declaration order among
/// fields at the same offset), a nested struct's changes coming right after its field's own, and
/// then the removed fields in stored offset order. Within an enum, changes follow the expected
/// declaration order, then the removed variants in stored order.
pub fn diff(stored: &Schema, expected: &Schema) -> LayoutDiff {
    let mut changes = Vec::new();
    if stored.version != expected.version {
        changes.push(Change::VersionChanged { from: stored.version, to: expected.version });
    }
    diff_node("", stored, expected, &mut changes);
    LayoutDiff { changes }
}

/// Appends the changes between two types at `path`: nothing if their fingerprints are equal, at
/// least one change otherwise.
fn diff_node(path: &str, stored: &Schema, expected: &Schema, out: &mut Vec<Change>) {
    if stored.fingerprint == expected.fingerprint {
        return;
    }
    let before = out.len();
    match (&stored.kind, &expected.kind) {
        (SchemaKind::Struct { fields: from }, SchemaKind::Struct { fields: to }) => diff_fields(path, from, to, out),
        (SchemaKind::Enum { repr: from_repr, variants: from }, SchemaKind::Enum { repr: to_repr, variants: to }) => {
            if from_repr != to_repr {
                out.push(Change::ReprChanged {
                    path: path.to_owned(),
                    enum_name: expected.type_name.clone(),
                    from: *from_repr,
                    to: *to_repr,
                });
            }
            diff_variants(path, (stored, *from_repr, from), (expected, *to_repr, to), out);
        }
        (SchemaKind::Array { elem: from, len: from_len }, SchemaKind::Array { elem: to, len: to_len })
            if descends(from, to) =>
        {
            if from_len != to_len {
                out.push(type_change(path, stored, expected));
            }
            diff_node(&format!("{path}[]"), from, to, out);
        }
        _ => {}
    }
    if out.len() == before {
        out.push(unexplained(path, stored, expected));
    }
}

/// Whether two types' differences are best shown inside them: both structs, both enums, or arrays
/// of such, nested equally deep.
fn descends(stored: &Schema, expected: &Schema) -> bool {
    match (&stored.kind, &expected.kind) {
        (SchemaKind::Struct { .. }, SchemaKind::Struct { .. }) | (SchemaKind::Enum { .. }, SchemaKind::Enum { .. }) => {
            true
        }
        (SchemaKind::Array { elem: from, .. }, SchemaKind::Array { elem: to, .. }) => descends(from, to),
        _ => false,
    }
}

/// The change for two types with different fingerprints when looking inside them found nothing:
/// another alignment, another declaration order, or else another type.
fn unexplained(path: &str, stored: &Schema, expected: &Schema) -> Change {
    let same_kind = kind_word(&stored.kind) == kind_word(&expected.kind);
    let same_shape = descends(stored, expected) || (same_kind && stored.display_name() == expected.display_name());
    if stored.align != expected.align && stored.size == expected.size && same_shape {
        return Change::Realigned {
            path: path.to_owned(),
            type_name: expected.display_name(),
            from_align: stored.align,
            to_align: expected.align,
        };
    }
    let (from, to) = (member_names(stored), member_names(expected));
    if same_kind && from != to {
        let mut sorted = (from.clone(), to.clone());
        sorted.0.sort();
        sorted.1.sort();
        if sorted.0 == sorted.1 {
            return Change::Reordered { path: path.to_owned(), type_name: expected.display_name(), from, to };
        }
    }
    type_change(path, stored, expected)
}

/// A struct's field names or an enum's variant names, in declaration order; empty for other kinds.
fn member_names(schema: &Schema) -> Vec<String> {
    match &schema.kind {
        SchemaKind::Struct { fields } => fields.iter().map(|f| f.name.clone()).collect(),
        SchemaKind::Enum { variants, .. } => variants.iter().map(|v| v.name.clone()).collect(),
        _ => Vec::new(),
    }
}

/// The whole type at `path` changed: [`Change::TypeChanged`] at the top level, else resized or
/// retyped.
fn type_change(path: &str, stored: &Schema, expected: &Schema) -> Change {
    let (from_type, to_type) = type_names(stored, expected);
    let (from_size, to_size) = (stored.size, expected.size);
    if path.is_empty() {
        Change::TypeChanged { from_type, from_size, to_type, to_size }
    } else if from_size != to_size {
        Change::Resized { path: path.to_owned(), from_type, from_size, to_type, to_size }
    } else {
        Change::Retyped { path: path.to_owned(), from_type, to_type }
    }
}

/// The two types' display names, with their kinds in front (`struct Point`, `enum Point`) when the
/// names alone would look the same.
fn type_names(stored: &Schema, expected: &Schema) -> (String, String) {
    let (from, to) = (stored.display_name(), expected.display_name());
    let (from_kind, to_kind) = (kind_word(&stored.kind), kind_word(&expected.kind));
    if from == to && from_kind != to_kind {
        (format!("{from_kind} {from}"), format!("{to_kind} {to}"))
    } else {
        (from, to)
    }
}

fn kind_word(kind: &SchemaKind) -> &'static str {
    match kind {
        SchemaKind::Primitive(_) => "primitive",
        SchemaKind::Atomic(_) => "atomic",
        SchemaKind::Array { .. } => "array",
        SchemaKind::Struct { .. } => "struct",
        SchemaKind::Enum { .. } => "enum",
        SchemaKind::FixedStr { .. } => "FixedStr",
    }
}

/// Indices of `items` ordered by `key`, then by declaration order.
fn ordered<T>(items: &[T], key: impl Fn(&T) -> u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| key(&items[i]));
    order
}

/// For each expected item, the stored item it matches: first by name, then (among the items left
/// on both sides, in `order`) by `same`, which marks a rename. Returns the matches and whether each
/// was a rename, plus which stored items were matched.
fn match_items<T>(
    stored: &[T],
    expected: &[T],
    order: &[usize],
    name: impl Fn(&T) -> &str,
    same: impl Fn(&T, &T) -> bool,
) -> (Vec<Option<(usize, bool)>>, Vec<bool>) {
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, item) in stored.iter().enumerate() {
        by_name.entry(name(item)).or_insert(i);
    }
    let mut used = vec![false; stored.len()];
    let mut matched: Vec<Option<(usize, bool)>> = vec![None; expected.len()];
    for (e, item) in expected.iter().enumerate() {
        if let Some(&s) = by_name.get(name(item)) {
            if !used[s] {
                used[s] = true;
                matched[e] = Some((s, false));
            }
        }
    }
    // Only names that are gone can be renamed to names that are new.
    let expected_names: HashSet<&str> = expected.iter().map(&name).collect();
    for &e in order {
        if matched[e].is_some() || by_name.contains_key(name(&expected[e])) {
            continue;
        }
        let found = (0..stored.len())
            .find(|&s| !used[s] && !expected_names.contains(name(&stored[s])) && same(&stored[s], &expected[e]));
        if let Some(s) = found {
            used[s] = true;
            matched[e] = Some((s, true));
        }
    }
    (matched, used)
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn diff_fields(path: &str, stored: &[SchemaField], expected: &[SchemaField], out: &mut Vec<Change>) {
    let order = ordered(expected, |f| f.offset);
    let (matched, used) = match_items(
        stored,
        expected,
        &order,
        |f| &f.name,
        |s, e| s.offset == e.offset && s.schema.fingerprint == e.schema.fingerprint,
    );
    for &e in &order {
        let to = &expected[e];
        let to_path = join(path, &to.name);
        match matched[e] {
            Some((s, false)) => {
                let from = &stored[s];
                if from.offset != to.offset {
                    out.push(Change::Moved { path: to_path.clone(), from_offset: from.offset, to_offset: to.offset });
                }
                diff_node(&to_path, &from.schema, &to.schema, out);
            }
            Some((s, true)) => out.push(Change::Renamed {
                from: join(path, &stored[s].name),
                to: to_path,
                offset: to.offset,
                type_name: to.schema.display_name(),
            }),
            None => out.push(Change::Added { path: to_path, offset: to.offset, type_name: to.schema.display_name() }),
        }
    }
    for s in ordered(stored, |f| f.offset) {
        if !used[s] {
            let from = &stored[s];
            out.push(Change::Removed {
                path: join(path, &from.name),
                offset: from.offset,
                type_name: from.schema.display_name(),
            });
        }
    }
}

/// A discriminant as the number it is in its representation: stored values are zero-extended to 64
/// bits, so those of signed representations are sign-extended back here.
fn discriminant(repr: Primitive, value: u64) -> i128 {
    let signed = matches!(repr, Primitive::I8 | Primitive::I16 | Primitive::I32 | Primitive::I64 | Primitive::I128);
    if signed {
        let shift = 64 - (repr.size() as u32 * 8).min(64);
        i128::from(((value << shift) as i64) >> shift)
    } else {
        i128::from(value)
    }
}

fn diff_variants(
    path: &str,
    (stored, from_repr, from): (&Schema, Primitive, &[SchemaVariant]),
    (expected, to_repr, to): (&Schema, Primitive, &[SchemaVariant]),
    out: &mut Vec<Change>,
) {
    let order: Vec<usize> = (0..to.len()).collect();
    let (matched, used) = match_items(
        from,
        to,
        &order,
        |v| &v.name,
        |s, e| discriminant(from_repr, s.value) == discriminant(to_repr, e.value),
    );
    let enum_name = || expected.type_name.clone();
    for (e, variant) in to.iter().enumerate() {
        let value = discriminant(to_repr, variant.value);
        match matched[e] {
            Some((s, false)) => {
                let old = discriminant(from_repr, from[s].value);
                if old != value {
                    out.push(Change::VariantValueChanged {
                        path: path.to_owned(),
                        enum_name: enum_name(),
                        variant: variant.name.clone(),
                        from: old,
                        to: value,
                    });
                }
            }
            Some((s, true)) => out.push(Change::VariantRenamed {
                path: path.to_owned(),
                enum_name: enum_name(),
                from: from[s].name.clone(),
                to: variant.name.clone(),
                value,
            }),
            None => out.push(Change::VariantAdded {
                path: path.to_owned(),
                enum_name: enum_name(),
                variant: variant.name.clone(),
                value,
            }),
        }
    }
    for (s, variant) in from.iter().enumerate() {
        if !used[s] {
            out.push(Change::VariantRemoved {
                path: path.to_owned(),
                enum_name: stored.type_name.clone(),
                variant: variant.name.clone(),
                value: discriminant(from_repr, variant.value),
            });
        }
    }
}

/// `1 byte`, `N bytes`.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 1 {
            f.write_str("1 byte")
        } else {
            write!(f, "{} bytes", self.0)
        }
    }
}

/// The start of a line about a type at `path`: ``field `path`: ``, or nothing at the top level.
struct Subject<'a>(&'a str);

impl fmt::Display for Subject<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "field `{}`: ", self.0)
        }
    }
}

/// Names as `` `a`, `b` ``.
struct Names<'a>(&'a [String]);

impl fmt::Display for Names<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "`{name}`")?;
        }
        Ok(())
    }
}

impl fmt::Display for Change {
    /// One line, without indentation or newline, for example ``field `max_conn` resized: u32 (4
    /// bytes) -> u64 (8 bytes)``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::VersionChanged { from, to } => write!(f, "version {from} -> {to}"),
            Change::TypeChanged { from_type, from_size, to_type, to_size } => {
                write!(f, "type changed: {from_type} ({}) -> {to_type} ({})", Bytes(*from_size), Bytes(*to_size))
            }
            Change::Added { path, offset, type_name } => {
                write!(f, "field `{path}` added at offset {offset}: {type_name}")
            }
            Change::Removed { path, offset, type_name } => {
                write!(f, "field `{path}` removed (was at offset {offset}: {type_name})")
            }
            Change::Renamed { from, to, offset, type_name } => {
                write!(f, "field `{from}` renamed to `{to}` (offset {offset}, {type_name})")
            }
            Change::Moved { path, from_offset, to_offset } => {
                write!(f, "field `{path}` moved: offset {from_offset} -> {to_offset}")
            }
            Change::Retyped { path, from_type, to_type } => {
                write!(f, "field `{path}` retyped: {from_type} -> {to_type}")
            }
            Change::Resized { path, from_type, from_size, to_type, to_size } => write!(
                f,
                "field `{path}` resized: {from_type} ({}) -> {to_type} ({})",
                Bytes(*from_size),
                Bytes(*to_size)
            ),
            Change::Realigned { path, type_name, from_align, to_align } => {
                write!(f, "{}alignment of {type_name} changed: {from_align} -> {to_align}", Subject(path))
            }
            Change::Reordered { path, type_name, from, to } => {
                write!(f, "{}declaration order of {type_name} changed: {} -> {}", Subject(path), Names(from), Names(to))
            }
            Change::ReprChanged { path, enum_name, from, to } => {
                write!(f, "{}repr of enum {enum_name} changed: {} -> {}", Subject(path), from.name(), to.name())
            }
            Change::VariantAdded { path, enum_name, variant, value } => {
                write!(f, "{}variant `{enum_name}::{variant}` added with value {value}", Subject(path))
            }
            Change::VariantRemoved { path, enum_name, variant, value } => {
                write!(f, "{}variant `{enum_name}::{variant}` removed (was value {value})", Subject(path))
            }
            Change::VariantRenamed { path, enum_name, from, to, value } => write!(
                f,
                "{}variant `{enum_name}::{from}` renamed to `{enum_name}::{to}` (value {value})",
                Subject(path)
            ),
            Change::VariantValueChanged { path, enum_name, variant, from, to } => {
                write!(f, "{}variant `{enum_name}::{variant}` value changed: {from} -> {to}", Subject(path))
            }
        }
    }
}

impl fmt::Display for LayoutDiff {
    /// One line per change, each indented by two spaces, separated by newlines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, change) in self.changes.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  {change}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::layout::{Layout, SharedLayout};
    use crate::FixedStr;

    /// The layouts a file was written with.
    #[allow(dead_code)]
    mod old {
        use std::sync::atomic::AtomicU32;

        use crate::{FixedStr, SharedLayout};

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Config {
            pub port: u16,
            pub verbose: bool,
            pub _pad: [u8; 1],
            pub max_conn: u32,
            pub retries: u32,
            pub name: FixedStr<16>,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Rename {
            pub port: u16,
            pub flags: u16,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Grow {
            pub a: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Shrink {
            pub a: u32,
            pub b: u32,
            pub c: u64,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Retype {
            pub a: u32,
            pub b: u32,
            pub c: AtomicU32,
            pub d: [u8; 4],
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Resize {
            pub flag: u8,
            pub _pad: [u8; 1],
            pub a: u16,
            pub b: [u8; 4],
            pub s: FixedStr<16>,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Reorder {
            pub a: u32,
            pub b: u32,
            pub c: u64,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Limits {
            pub min: u32,
            pub max: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Inner {
            pub flags: u64,
            pub limits: Limits,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Outer {
            pub id: u64,
            pub inner: Inner,
            pub tail: u64,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Row {
            pub id: u32,
            pub score: u16,
            pub _pad: u16,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Table {
            pub rows: [Row; 4],
            pub count: u32,
        }

        #[derive(SharedLayout, Clone, Copy)]
        #[repr(u8)]
        pub enum Mode {
            Off = 0,
            On = 1,
            Eco = 2,
            Legacy = 7,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Holder {
            pub mode: Mode,
            pub _pad: [u8; 3],
            pub n: u32,
        }

        #[derive(SharedLayout, Clone, Copy)]
        #[repr(u8)]
        pub enum Level {
            Low,
            High,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Levels {
            pub level: Level,
            pub _pad: [u8; 3],
            pub n: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Same {
            pub a: u32,
            pub b: [u16; 2],
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Zst {
            pub z1: [u8; 0],
            pub z2: [u8; 0],
            pub a: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Pair {
            pub a: u32,
            pub b: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Grid {
            pub cells: [[u16; 2]; 3],
            pub points: [[Limits; 2]; 2],
        }
    }

    /// The layouts a newer program opens it with.
    #[allow(dead_code)]
    mod new {
        use crate::{FixedStr, SharedLayout};

        #[derive(SharedLayout)]
        #[repr(C)]
        #[shared(version = 2)]
        pub struct Config {
            pub listen_port: u16,
            pub verbose: bool,
            pub _pad: [u8; 5],
            pub max_conn: u64,
            pub name: FixedStr<32>,
            pub mode: Mode,
            pub _pad2: [u8; 7],
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Rename {
            pub listen_port: u16,
            pub flags: u16,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Grow {
            pub a: u32,
            pub b: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Shrink {
            pub a: u32,
            pub _pad: [u8; 4],
            pub c: u64,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Retype {
            pub a: i32,
            pub b: f32,
            pub c: u32,
            pub d: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Resize {
            pub flag: u8,
            pub _pad: [u8; 3],
            pub a: u32,
            pub b: [u8; 8],
            pub s: FixedStr<32>,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Reorder {
            pub b: u32,
            pub a: u32,
            pub c: u64,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Limits {
            pub min: u32,
            pub max: i32,
            pub step: u32,
            pub _pad: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Inner {
            pub flags: u64,
            pub limits: Limits,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Outer {
            pub id: u64,
            pub inner: Inner,
            pub tail: u64,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Row {
            pub id: u32,
            pub score: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Table {
            pub rows: [Row; 4],
            pub count: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct LongTable {
            pub rows: [Row; 6],
            pub count: u32,
        }

        #[derive(SharedLayout, Clone, Copy)]
        #[repr(u8)]
        pub enum Mode {
            Off = 0,
            On = 5,
            Saver = 2,
            Auto = 3,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Holder {
            pub mode: Mode,
            pub _pad: [u8; 3],
            pub n: u32,
        }

        #[derive(SharedLayout, Clone, Copy)]
        #[repr(u16)]
        pub enum Level {
            Low,
            High,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Levels {
            pub level: Level,
            pub _pad: [u8; 2],
            pub n: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        #[shared(version = 2)]
        pub struct Same {
            pub a: u32,
            pub b: [u16; 2],
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Zst {
            pub z2: [u8; 0],
            pub z1: [u8; 0],
            pub a: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C, packed)]
        pub struct Pair {
            pub a: u32,
            pub b: u32,
        }

        #[derive(SharedLayout)]
        #[repr(C)]
        pub struct Grid {
            pub cells: [[u16; 3]; 2],
            pub points: [[Limits; 2]; 2],
        }
    }

    fn lines_of(stored: &Layout, expected: &Layout) -> Vec<String> {
        diff(&Schema::from(stored), &Schema::from(expected)).changes.iter().map(ToString::to_string).collect()
    }

    fn lines<A: SharedLayout, B: SharedLayout>() -> Vec<String> {
        lines_of(&A::LAYOUT, &B::LAYOUT)
    }

    #[test]
    fn rename() {
        assert_eq!(lines::<old::Rename, new::Rename>(), ["field `port` renamed to `listen_port` (offset 0, u16)"]);
        assert_eq!(
            diff(&Schema::from(&old::Rename::LAYOUT), &Schema::from(&new::Rename::LAYOUT)).changes,
            [Change::Renamed { from: "port".into(), to: "listen_port".into(), offset: 0, type_name: "u16".into() }]
        );
    }

    #[test]
    fn add_and_remove() {
        assert_eq!(lines::<old::Grow, new::Grow>(), ["field `b` added at offset 4: u32"]);
        assert_eq!(lines::<new::Grow, old::Grow>(), ["field `b` removed (was at offset 4: u32)"]);
        // Another name at the same offset, but another type: not a rename.
        assert_eq!(
            lines::<old::Shrink, new::Shrink>(),
            ["field `_pad` added at offset 4: [u8; 4]", "field `b` removed (was at offset 4: u32)"]
        );
    }

    #[test]
    fn retype() {
        assert_eq!(
            lines::<old::Retype, new::Retype>(),
            [
                "field `a` retyped: u32 -> i32",
                "field `b` retyped: u32 -> f32",
                "field `c` retyped: AtomicU32 -> u32",
                "field `d` retyped: [u8; 4] -> u32",
            ]
        );
    }

    #[test]
    fn resize() {
        assert_eq!(
            lines::<old::Resize, new::Resize>(),
            [
                "field `_pad` resized: [u8; 1] (1 byte) -> [u8; 3] (3 bytes)",
                "field `a` moved: offset 2 -> 4",
                "field `a` resized: u16 (2 bytes) -> u32 (4 bytes)",
                "field `b` moved: offset 4 -> 8",
                "field `b` resized: [u8; 4] (4 bytes) -> [u8; 8] (8 bytes)",
                "field `s` moved: offset 8 -> 16",
                "field `s` resized: FixedStr<16> (16 bytes) -> FixedStr<32> (32 bytes)",
            ]
        );
    }

    #[test]
    fn move_and_reorder() {
        assert_eq!(
            lines::<old::Reorder, new::Reorder>(),
            ["field `b` moved: offset 4 -> 0", "field `a` moved: offset 0 -> 4"]
        );
        // Zero-sized fields swapped at the same offset: only the declaration order differs.
        assert_eq!(
            lines::<old::Zst, new::Zst>(),
            ["declaration order of Zst changed: `z1`, `z2`, `a` -> `z2`, `z1`, `a`"]
        );
    }

    #[test]
    fn nested_structs_have_full_paths() {
        assert_eq!(
            lines::<old::Outer, new::Outer>(),
            [
                "field `inner.limits.max` retyped: u32 -> i32",
                "field `inner.limits.step` added at offset 8: u32",
                "field `inner.limits._pad` added at offset 12: u32",
                "field `tail` moved: offset 24 -> 32",
            ]
        );
        // Only the nested type: paths start at its fields.
        assert_eq!(
            lines::<old::Limits, new::Limits>(),
            [
                "field `max` retyped: u32 -> i32",
                "field `step` added at offset 8: u32",
                "field `_pad` added at offset 12: u32",
            ]
        );
    }

    #[test]
    fn array_elements() {
        assert_eq!(
            lines::<old::Table, new::Table>(),
            [
                "field `rows[].score` resized: u16 (2 bytes) -> u32 (4 bytes)",
                "field `rows[]._pad` removed (was at offset 6: u16)",
            ]
        );
        // A new length, and new elements.
        assert_eq!(
            lines::<old::Table, new::LongTable>(),
            [
                "field `rows` resized: [Row; 4] (32 bytes) -> [Row; 6] (48 bytes)",
                "field `rows[].score` resized: u16 (2 bytes) -> u32 (4 bytes)",
                "field `rows[]._pad` removed (was at offset 6: u16)",
                "field `count` moved: offset 32 -> 48",
            ]
        );
        // Arrays of scalars are reported whole; arrays of structs are looked into, level by level.
        assert_eq!(
            lines::<old::Grid, new::Grid>(),
            [
                "field `cells` retyped: [[u16; 2]; 3] -> [[u16; 3]; 2]",
                "field `points[][].max` retyped: u32 -> i32",
                "field `points[][].step` added at offset 8: u32",
                "field `points[][]._pad` added at offset 12: u32",
            ]
        );
    }

    #[test]
    fn enum_variants() {
        let want = [
            "field `mode`: variant `Mode::On` value changed: 1 -> 5",
            "field `mode`: variant `Mode::Eco` renamed to `Mode::Saver` (value 2)",
            "field `mode`: variant `Mode::Auto` added with value 3",
            "field `mode`: variant `Mode::Legacy` removed (was value 7)",
        ];
        assert_eq!(lines::<old::Holder, new::Holder>(), want);
        // The enum itself, at the top level.
        let top: Vec<_> = want.iter().map(|l| l.strip_prefix("field `mode`: ").unwrap()).collect();
        assert_eq!(lines::<old::Mode, new::Mode>(), top);
        assert_eq!(
            lines::<old::Levels, new::Levels>(),
            [
                "field `level`: repr of enum Level changed: u8 -> u16",
                "field `_pad` moved: offset 1 -> 2",
                "field `_pad` resized: [u8; 3] (3 bytes) -> [u8; 2] (2 bytes)",
            ]
        );
    }

    #[test]
    fn signed_discriminants_read_as_signed() {
        assert_eq!(discriminant(Primitive::I16, 0xffff), -1);
        assert_eq!(discriminant(Primitive::I8, 0x80), -128);
        assert_eq!(discriminant(Primitive::I64, u64::MAX), -1);
        assert_eq!(discriminant(Primitive::U16, 0xffff), 0xffff);
        assert_eq!(discriminant(Primitive::U64, u64::MAX), i128::from(u64::MAX));
        let mut stored = Schema::from(&old::Level::LAYOUT);
        let mut expected = stored.clone();
        let set = |s: &mut Schema, values: [u64; 2]| {
            *s = Schema { size: 2, align: 2, ..s.clone() };
            let SchemaKind::Enum { repr, variants } = &mut s.kind else { unreachable!() };
            *repr = Primitive::I16;
            for (v, value) in variants.iter_mut().zip(values) {
                v.value = value;
            }
            s.fingerprint = s.compute_fingerprint();
        };
        set(&mut stored, [0xffff, 1]);
        set(&mut expected, [0xfffe, 1]);
        assert_eq!(lines_of_schemas(&stored, &expected), ["variant `Level::Low` value changed: -1 -> -2"]);
    }

    fn lines_of_schemas(stored: &Schema, expected: &Schema) -> Vec<String> {
        diff(stored, expected).changes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn realigned() {
        assert_eq!(lines::<old::Pair, new::Pair>(), ["alignment of Pair changed: 4 -> 1"]);
    }

    #[test]
    fn version_only() {
        let d = diff(&Schema::from(&old::Same::LAYOUT), &Schema::from(&new::Same::LAYOUT));
        assert_eq!(d.changes, [Change::VersionChanged { from: 1, to: 2 }]);
        assert_eq!(d.to_string(), "  version 1 -> 2");
        assert!(d.layout_identical());
        assert!(!d.is_empty());
        let same = diff(&Schema::from(&old::Same::LAYOUT), &Schema::from(&old::Same::LAYOUT));
        assert!(same.is_empty() && same.layout_identical());
        assert_eq!(same.to_string(), "");
        // A renamed type with the same fields is the same layout.
        let mut renamed = Schema::from(&old::Same::LAYOUT);
        renamed.type_name = "Other".into();
        assert!(diff(&Schema::from(&old::Same::LAYOUT), &renamed).is_empty());
    }

    #[test]
    fn top_level_type_changes() {
        assert_eq!(lines::<old::Grow, u64>(), ["type changed: Grow (4 bytes) -> u64 (8 bytes)"]);
        assert_eq!(lines::<old::Same, u64>(), ["type changed: Same (8 bytes) -> u64 (8 bytes)"]);
        assert_eq!(lines::<u32, i32>(), ["type changed: u32 (4 bytes) -> i32 (4 bytes)"]);
        assert_eq!(lines::<u8, bool>(), ["type changed: u8 (1 byte) -> bool (1 byte)"]);
        assert_eq!(lines::<[u8; 4], [u8; 5]>(), ["type changed: [u8; 4] (4 bytes) -> [u8; 5] (5 bytes)"]);
        assert_eq!(lines::<FixedStr<8>, [u8; 8]>(), ["type changed: FixedStr<8> (8 bytes) -> [u8; 8] (8 bytes)"]);
        assert_eq!(lines::<new::Same, u64>(), ["version 2 -> 1", "type changed: Same (8 bytes) -> u64 (8 bytes)"]);
        // Arrays of structs at the top level: the length, then the elements.
        assert_eq!(
            lines::<[old::Row; 2], [new::Row; 3]>(),
            [
                "type changed: [Row; 2] (16 bytes) -> [Row; 3] (24 bytes)",
                "field `[].score` resized: u16 (2 bytes) -> u32 (4 bytes)",
                "field `[]._pad` removed (was at offset 6: u16)",
            ]
        );
        // Same name, other kind.
        let mut fake = Schema::from(&old::Grow::LAYOUT);
        fake.type_name = "Mode".into();
        assert_eq!(
            lines_of_schemas(&Schema::from(&old::Mode::LAYOUT), &fake),
            ["type changed: enum Mode (1 byte) -> struct Mode (4 bytes)"]
        );
    }

    #[test]
    fn realistic_config_upgrade() {
        let d = diff(&Schema::from(&old::Config::LAYOUT), &Schema::from(&new::Config::LAYOUT));
        assert_eq!(
            d.to_string(),
            "  version 1 -> 2
  field `port` renamed to `listen_port` (offset 0, u16)
  field `_pad` resized: [u8; 1] (1 byte) -> [u8; 5] (5 bytes)
  field `max_conn` moved: offset 4 -> 8
  field `max_conn` resized: u32 (4 bytes) -> u64 (8 bytes)
  field `name` moved: offset 12 -> 16
  field `name` resized: FixedStr<16> (16 bytes) -> FixedStr<32> (32 bytes)
  field `mode` added at offset 48: Mode
  field `_pad2` added at offset 49: [u8; 7]
  field `retries` removed (was at offset 8: u32)"
        );
        assert!(!d.layout_identical());
        assert_eq!(
            d.changes[4],
            Change::Resized {
                path: "max_conn".into(),
                from_type: "u32".into(),
                from_size: 4,
                to_type: "u64".into(),
                to_size: 8
            }
        );
    }

    /// Every layout of these tests, and some more.
    fn all_layouts() -> Vec<Layout> {
        vec![
            old::Config::LAYOUT,
            old::Rename::LAYOUT,
            old::Grow::LAYOUT,
            old::Shrink::LAYOUT,
            old::Retype::LAYOUT,
            old::Resize::LAYOUT,
            old::Reorder::LAYOUT,
            old::Limits::LAYOUT,
            old::Inner::LAYOUT,
            old::Outer::LAYOUT,
            old::Row::LAYOUT,
            old::Table::LAYOUT,
            old::Mode::LAYOUT,
            old::Holder::LAYOUT,
            old::Level::LAYOUT,
            old::Levels::LAYOUT,
            old::Same::LAYOUT,
            old::Zst::LAYOUT,
            old::Pair::LAYOUT,
            old::Grid::LAYOUT,
            new::Config::LAYOUT,
            new::Rename::LAYOUT,
            new::Grow::LAYOUT,
            new::Shrink::LAYOUT,
            new::Retype::LAYOUT,
            new::Resize::LAYOUT,
            new::Reorder::LAYOUT,
            new::Limits::LAYOUT,
            new::Inner::LAYOUT,
            new::Outer::LAYOUT,
            new::Row::LAYOUT,
            new::Table::LAYOUT,
            new::LongTable::LAYOUT,
            new::Mode::LAYOUT,
            new::Holder::LAYOUT,
            new::Level::LAYOUT,
            new::Levels::LAYOUT,
            new::Same::LAYOUT,
            new::Zst::LAYOUT,
            new::Pair::LAYOUT,
            new::Grid::LAYOUT,
            <[old::Row; 2]>::LAYOUT,
            <[new::Row; 3]>::LAYOUT,
            <[[old::Limits; 2]; 2]>::LAYOUT,
            <[new::Mode; 3]>::LAYOUT,
            u8::LAYOUT,
            u32::LAYOUT,
            i32::LAYOUT,
            u64::LAYOUT,
            bool::LAYOUT,
            <std::sync::atomic::AtomicU64>::LAYOUT,
            <[u8; 0]>::LAYOUT,
            <[u8; 4]>::LAYOUT,
            <[u16; 2]>::LAYOUT,
            FixedStr::<8>::LAYOUT,
            FixedStr::<16>::LAYOUT,
        ]
    }

    /// What every diff promises, whatever the pair.
    fn check(stored: &Schema, expected: &Schema) {
        let d = diff(stored, expected);
        let same_layout = stored.fingerprint == expected.fingerprint;
        assert_eq!(d.layout_identical(), same_layout, "{stored} vs {expected}:\n{d}");
        assert_eq!(d.is_empty(), same_layout && stored.version == expected.version);
        let text = d.to_string();
        assert_eq!(text.lines().count(), d.changes.len());
        assert!(text.lines().all(|l| l.starts_with("  ") && !l[2..].starts_with(' ') && l.len() > 2));
    }

    #[test]
    fn identical_layouts_have_no_changes_and_any_pair_works() {
        let layouts = all_layouts();
        for a in &layouts {
            let schema = Schema::from(a);
            assert_eq!(diff(&schema, &schema), LayoutDiff::default(), "{a}");
        }
        for a in &layouts {
            for b in &layouts {
                check(&Schema::from(a), &Schema::from(b));
            }
        }
    }

    /// Sets one property of the `target`-th node (pre-order) of `s`, leaving fingerprints stale.
    fn tweak(s: &mut Schema, target: &mut usize, which: u8, value: u64) {
        if *target == 0 {
            match (&mut s.kind, which % 8) {
                (_, 0) => s.size = value,
                (_, 1) => s.align = value,
                (_, 2) => s.version = value as u32,
                (SchemaKind::Array { len, .. }, _) => *len = value,
                (SchemaKind::FixedStr { capacity }, _) => *capacity = value,
                (SchemaKind::Struct { fields }, w) if !fields.is_empty() => {
                    let i = (value as usize) % fields.len();
                    match w {
                        3 => fields[i].offset = value >> 8,
                        4 => fields[i].name = format!("f{}", value % 4),
                        5 => drop(fields.remove(i)),
                        _ => fields.swap(0, i),
                    }
                }
                (SchemaKind::Enum { variants, .. }, w) if !variants.is_empty() => {
                    let i = (value as usize) % variants.len();
                    match w {
                        3 => variants[i].value = value,
                        4 => variants[i].name = format!("V{}", value % 4),
                        5 => drop(variants.remove(i)),
                        _ => variants.swap(0, i),
                    }
                }
                (SchemaKind::Primitive(p) | SchemaKind::Atomic(p), _) => {
                    *p = Primitive::ALL[value as usize % Primitive::ALL.len()];
                }
                _ => s.type_name = format!("T{value}"),
            }
        }
        *target = target.wrapping_sub(1);
        match &mut s.kind {
            SchemaKind::Array { elem, .. } => tweak(elem, target, which, value),
            SchemaKind::Struct { fields } => fields.iter_mut().for_each(|f| tweak(&mut f.schema, target, which, value)),
            _ => {}
        }
    }

    /// Recomputes every fingerprint, bottom up.
    fn seal(s: &mut Schema) {
        match &mut s.kind {
            SchemaKind::Array { elem, .. } => seal(elem),
            SchemaKind::Struct { fields } => fields.iter_mut().for_each(|f| seal(&mut f.schema)),
            _ => {}
        }
        s.fingerprint = s.compute_fingerprint();
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        /// Arbitrary (even impossible) schemas derived from the test layouts: no panic, and the
        /// promises of `check`, with fingerprints recomputed or left stale.
        #[test]
        fn tweaked_pairs_never_panic(
            a in any::<usize>(),
            b in any::<usize>(),
            tweaks in proptest::collection::vec((0usize..48, any::<u8>(), any::<u64>(), any::<bool>()), 0..4),
            resealed in any::<bool>(),
        ) {
            let layouts = all_layouts();
            let stored = Schema::from(&layouts[a % layouts.len()]);
            let mut expected = if b % 3 == 0 { stored.clone() } else { Schema::from(&layouts[b % layouts.len()]) };
            let mut tweaked_stored = stored.clone();
            for (target, which, value, on_stored) in tweaks {
                let s = if on_stored { &mut tweaked_stored } else { &mut expected };
                tweak(s, &mut { target }, which, value);
            }
            if resealed {
                seal(&mut tweaked_stored);
                seal(&mut expected);
            }
            check(&tweaked_stored, &expected);
            check(&expected, &tweaked_stored);
            prop_assert!(diff(&expected, &expected).is_empty());
        }
    }
}
