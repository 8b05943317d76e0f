//! The schema encoding: an entry's [`Layout`] written into the store file, so that tools (an
//! inspector, a JSON dumper, a C header exporter, layout diffs) can decode the entry without its
//! Rust type.
//!
//! [`encode`] turns a layout into bytes. [`decode`] turns bytes back into an owned [`Schema`] tree
//! and treats them as hostile: it never panics, bounds its recursion by [`MAX_DEPTH`], its input by
//! [`MAX_SCHEMA_LEN`], every name by [`MAX_SCHEMA_NAME_LEN`] and its allocations by the input's
//! length, and refuses any schema whose structure does not add up (padding, overlapping fields,
//! wrong sizes, a fingerprint that does not match) or whose names hold control characters. A
//! schema that decodes is one a real shmstore type could have.
//!
//! In short, all integers little-endian:
//!
//! ```text
//! schema = "SHSC" | version: u16 = 1 | node
//! node   = tag: u8 | type_name: str | size: u64 | align: u64 | version: u32 | fingerprint: u64
//!          | body, by tag:
//!            1 primitive  code: u8
//!            2 atomic     code: u8
//!            3 array      len: u64 | element: node
//!            4 struct     count: u32 | count x (name: str | offset: u64 | node)
//!            5 enum       repr code: u8 | count: u32 | count x (name: str | value: u64)
//!            6 FixedStr   capacity: u64
//! str    = byte length: u32 | UTF-8 bytes
//! ```
//!
//! `docs/schema-encoding.md` is the byte-by-byte specification.
//!
//! ```
//! use shmstore::format::schema::{self, Schema};
//! use shmstore::SharedLayout;
//!
//! let layout = <[u16; 4]>::LAYOUT;
//! let bytes = schema::encode(&layout);
//! let decoded = schema::decode(&bytes)?;
//! assert_eq!(decoded, Schema::from(&layout));
//! assert_eq!(decoded.display_name(), "[u16; 4]");
//! assert_eq!(decoded.compute_fingerprint(), layout.fingerprint);
//! # Ok::<(), schema::SchemaError>(())
//! ```

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::layout::{
    fp_array, fp_begin, fp_enum, fp_field, fp_fixed_str, fp_scalar, fp_struct, fp_variant, Layout, Primitive, TypeKind,
    TAG_ARRAY, TAG_ATOMIC, TAG_ENUM, TAG_FIXED_STR, TAG_PRIMITIVE, TAG_STRUCT,
};

/// The first four bytes of every encoded schema.
pub const MAGIC: [u8; 4] = *b"SHSC";

/// The encoding version this build writes, and the only one it reads.
pub const ENCODING_VERSION: u16 = 1;

/// The deepest nesting [`decode`] accepts: the root is at depth 1, its fields and elements at
/// depth 2, and so on.
pub const MAX_DEPTH: usize = 32;

/// The longest encoded schema [`decode`] accepts, in bytes: 16 MiB.
///
/// Catalog records whose `schema_len` exceeds it are refused when a store is opened, before
/// anything is allocated, and a layout whose encoding is longer cannot be recorded (entry creation
/// refuses whatever [`decode`] refuses). Real layouts stay far below it: every node takes a few
/// dozen bytes, an array is encoded once whatever its length, so even a generated struct with
/// 100,000 leaf fields encodes to about 6 MiB.
pub const MAX_SCHEMA_LEN: usize = 16 << 20;

/// The longest type, field or variant name [`decode`] accepts, in bytes of UTF-8.
pub const MAX_SCHEMA_NAME_LEN: usize = 1024;

/// Length of the magic and the version.
const HEADER_LEN: usize = 6;
/// Length of a node without its type name's bytes and without its body.
const NODE_HEAD_LEN: usize = 1 + 4 + 8 + 8 + 4 + 8;
/// The shortest possible node: a primitive or atomic with an empty type name.
const MIN_NODE_LEN: usize = NODE_HEAD_LEN + 1;
/// The shortest possible struct field: empty name, offset, shortest node.
const MIN_FIELD_LEN: usize = 4 + 8 + MIN_NODE_LEN;
/// The shortest possible enum variant: empty name, value.
const MIN_VARIANT_LEN: usize = 4 + 8;
/// How many fields or variants to make room for before they are decoded. Beyond it, vectors grow
/// only with items actually decoded: nested structs each promise the same remaining input, so
/// reserving their full counts up front could reserve the input's worth [`MAX_DEPTH`] times over.
const PREALLOCATE: usize = 64;

/// The decoded description of a type: what a [`Layout`] says, as owned data.
///
/// Get one from a layout with [`Schema::from`], or from bytes with [`decode`]. Fields mirror
/// [`Layout`]'s, with sizes as `u64`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// The declared name: the struct or enum identifier, the primitive's name, `"FixedStr"`, or the
    /// atomic type's name; empty for arrays. [`Schema::display_name`] renders the full name.
    pub type_name: String,
    /// Size of the type in bytes.
    pub size: u64,
    /// Alignment of the type in bytes.
    pub align: u64,
    /// The user-declared version.
    pub version: u32,
    /// The structural hash of the type; see [`Layout::fingerprint`].
    pub fingerprint: u64,
    /// What the type is made of.
    pub kind: SchemaKind,
}

/// What a [`Schema`] is made of: the owned counterpart of [`TypeKind`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SchemaKind {
    /// A scalar.
    Primitive(Primitive),
    /// A `std::sync::atomic` type over the given scalar.
    Atomic(Primitive),
    /// `[elem; len]`.
    Array {
        /// The element's schema.
        elem: Box<Schema>,
        /// The number of elements.
        len: u64,
    },
    /// A struct, with its fields in declaration order.
    Struct {
        /// The fields, in declaration order.
        fields: Vec<SchemaField>,
    },
    /// A fieldless enum with an explicit integer representation.
    Enum {
        /// The integer type of the discriminant.
        repr: Primitive,
        /// The variants and their discriminant values.
        variants: Vec<SchemaVariant>,
    },
    /// [`FixedStr<N>`](crate::FixedStr): UTF-8 text of at most `capacity` bytes, zero-padded.
    FixedStr {
        /// The capacity `N` in bytes.
        capacity: u64,
    },
}

/// One field of a struct schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaField {
    /// The field's name.
    pub name: String,
    /// Byte offset from the start of the struct.
    pub offset: u64,
    /// The field's own schema.
    pub schema: Schema,
}

/// One variant of an enum schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaVariant {
    /// The variant's name.
    pub name: String,
    /// Its discriminant, zero-extended to 64 bits.
    pub value: u64,
}

impl From<&Layout> for Schema {
    fn from(layout: &Layout) -> Schema {
        let kind = match layout.kind {
            TypeKind::Primitive(p) => SchemaKind::Primitive(p),
            TypeKind::Atomic(p) => SchemaKind::Atomic(p),
            TypeKind::Array { elem, len } => SchemaKind::Array { elem: Box::new(Schema::from(elem)), len: len as u64 },
            TypeKind::Struct { fields } => SchemaKind::Struct {
                fields: fields
                    .iter()
                    .map(|f| SchemaField {
                        name: f.name.to_owned(),
                        offset: f.offset as u64,
                        schema: Schema::from(f.layout),
                    })
                    .collect(),
            },
            TypeKind::Enum { repr, variants } => SchemaKind::Enum {
                repr,
                variants: variants.iter().map(|v| SchemaVariant { name: v.name.to_owned(), value: v.value }).collect(),
            },
            TypeKind::FixedStr { capacity } => SchemaKind::FixedStr { capacity: capacity as u64 },
        };
        Schema {
            type_name: layout.type_name.to_owned(),
            size: layout.size as u64,
            align: layout.align as u64,
            version: layout.version,
            fingerprint: layout.fingerprint,
            kind,
        }
    }
}

impl Schema {
    /// The full Rust-like name of the type, rendered like [`Layout::display_name`]: `Config`, `u16`,
    /// `[FixedStr<16>; 4]`.
    pub fn display_name(&self) -> String {
        match &self.kind {
            SchemaKind::Array { elem, len } => format!("[{}; {len}]", elem.display_name()),
            SchemaKind::FixedStr { capacity } => format!("FixedStr<{capacity}>"),
            _ => self.type_name.clone(),
        }
    }

    /// The fingerprint this schema's structure hashes to, computed from scratch all the way down.
    ///
    /// It is exactly the value [`Layout::new`] computes for the corresponding layout (the two share
    /// their code), so for any schema from [`decode`] or from a layout built by `Layout::new` (or
    /// the derive), it equals [`fingerprint`](Self::fingerprint). The stored fingerprints of nested
    /// schemas are ignored: a hand-built schema gets its true fingerprint here whatever they hold.
    pub fn compute_fingerprint(&self) -> u64 {
        self.fingerprint_with(&|child| child.compute_fingerprint())
    }

    /// This node's fingerprint, given how to get each direct child's.
    fn fingerprint_with(&self, child: &dyn Fn(&Schema) -> u64) -> u64 {
        let h = fp_begin(self.size, self.align);
        match &self.kind {
            SchemaKind::Primitive(p) => fp_scalar(h, TAG_PRIMITIVE, *p),
            SchemaKind::Atomic(p) => fp_scalar(h, TAG_ATOMIC, *p),
            SchemaKind::Array { elem, len } => fp_array(h, *len, child(elem)),
            SchemaKind::Struct { fields } => fields
                .iter()
                .fold(fp_struct(h, fields.len() as u64), |h, f| fp_field(h, &f.name, f.offset, child(&f.schema))),
            SchemaKind::Enum { repr, variants } => {
                variants.iter().fold(fp_enum(h, *repr, variants.len() as u64), |h, v| fp_variant(h, &v.name, v.value))
            }
            SchemaKind::FixedStr { capacity } => fp_fixed_str(h, *capacity),
        }
    }

    /// Encodes this schema: the same bytes as [`encode`] gives for the corresponding layout.
    ///
    /// Writes the fields as they are; nothing is checked, so [`decode`] refuses the result if the
    /// schema is inconsistent.
    ///
    /// # Panics
    ///
    /// If a name is 4 GiB or longer, or a struct or enum has more than `u32::MAX` fields or
    /// variants.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&ENCODING_VERSION.to_le_bytes());
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(match self.kind {
            SchemaKind::Primitive(_) => TAG_PRIMITIVE,
            SchemaKind::Atomic(_) => TAG_ATOMIC,
            SchemaKind::Array { .. } => TAG_ARRAY,
            SchemaKind::Struct { .. } => TAG_STRUCT,
            SchemaKind::Enum { .. } => TAG_ENUM,
            SchemaKind::FixedStr { .. } => TAG_FIXED_STR,
        });
        put_str(out, &self.type_name);
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.align.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.fingerprint.to_le_bytes());
        match &self.kind {
            SchemaKind::Primitive(p) | SchemaKind::Atomic(p) => out.push(p.code()),
            SchemaKind::Array { elem, len } => {
                out.extend_from_slice(&len.to_le_bytes());
                elem.write(out);
            }
            SchemaKind::Struct { fields } => {
                put_count(out, fields.len());
                for f in fields {
                    put_str(out, &f.name);
                    out.extend_from_slice(&f.offset.to_le_bytes());
                    f.schema.write(out);
                }
            }
            SchemaKind::Enum { repr, variants } => {
                out.push(repr.code());
                put_count(out, variants.len());
                for v in variants {
                    put_str(out, &v.name);
                    out.extend_from_slice(&v.value.to_le_bytes());
                }
            }
            SchemaKind::FixedStr { capacity } => out.extend_from_slice(&capacity.to_le_bytes()),
        }
    }
}

impl fmt::Display for Schema {
    /// The same one-line summary as [`Layout`]'s `Display`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} v{} ({} bytes, align {}, fingerprint {:016x})",
            self.display_name(),
            self.version,
            self.size,
            self.align,
            self.fingerprint
        )
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).expect("schema names are shorter than 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_count(out: &mut Vec<u8>, count: usize) {
    let count = u32::try_from(count).expect("at most u32::MAX fields or variants");
    out.extend_from_slice(&count.to_le_bytes());
}

/// Encodes `layout` for the store file: see the [module docs](self) for the format.
///
/// The encoding is canonical: one layout has exactly one encoding, and [`decode`] gives back
/// `Schema::from(layout)`, provided the layout passes [`decode`]'s checks (no padding, sizes and
/// alignments that add up: what the derive guarantees) and nests at most [`MAX_DEPTH`] levels
/// deep. Nothing is checked here.
///
/// # Panics
///
/// Only for impossible layouts: a name of 4 GiB or more, or more than `u32::MAX` fields or variants.
pub fn encode(layout: &Layout) -> Vec<u8> {
    Schema::from(layout).encode()
}

/// Why bytes are not a valid schema. Offsets are byte positions in the input; paths name the
/// type being decoded, from `root` through field names (`root.origin.x`) and array elements
/// (`root.rows[]`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// Fewer bytes than the magic and version.
    #[error("schema is {len} bytes long, shorter than its {HEADER_LEN}-byte header")]
    TooShort {
        /// The input's length.
        len: usize,
    },
    /// The first four bytes are not [`MAGIC`].
    #[error("not a schema: it starts with b\"{}\", not b\"SHSC\"", found.escape_ascii())]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// Written in an encoding version this build does not read.
    #[error("schema encoding version {found} is not supported (this build reads version {ENCODING_VERSION})")]
    UnsupportedVersion {
        /// The version in the input.
        found: u16,
    },
    /// The input ends in the middle of an item.
    #[error(
        "schema ends early: the {what} of {path} at byte {offset} needs {needed} bytes, but only {available} remain"
    )]
    UnexpectedEnd {
        /// The type whose item is cut off.
        path: String,
        /// Where the item starts.
        offset: usize,
        /// Which item (`"size"`, `"field name"`, ...).
        what: &'static str,
        /// The item's length.
        needed: usize,
        /// How many bytes were left.
        available: usize,
    },
    /// Bytes follow the complete schema.
    #[error("{count} unexpected bytes after the end of the schema at byte {offset}")]
    TrailingBytes {
        /// Where the schema ends.
        offset: usize,
        /// How many bytes follow it.
        count: usize,
    },
    /// A node's kind tag is not one of 1 to 6.
    #[error("{path} at byte {offset}: unknown kind tag {tag}")]
    UnknownTag {
        /// The node.
        path: String,
        /// Where the tag is.
        offset: usize,
        /// The tag.
        tag: u8,
    },
    /// A primitive code (of a primitive, an atomic or an enum's repr) is not one of 1 to 13.
    #[error("{path} at byte {offset}: unknown primitive code {code}")]
    UnknownPrimitive {
        /// The node.
        path: String,
        /// Where the code is.
        offset: usize,
        /// The code.
        code: u8,
    },
    /// A name is not UTF-8.
    #[error("{path}: the {what} is not valid UTF-8 (bad byte at {offset})")]
    InvalidUtf8 {
        /// The node the name belongs to.
        path: String,
        /// The first byte that is not UTF-8.
        offset: usize,
        /// Which name (`"type name"`, `"field name"` or `"variant name"`).
        what: &'static str,
    },
    /// Nodes are nested deeper than [`MAX_DEPTH`].
    #[error("{path} at byte {offset}: nested deeper than {max} levels")]
    TooDeep {
        /// The node that is too deep.
        path: String,
        /// Where it starts.
        offset: usize,
        /// [`MAX_DEPTH`].
        max: usize,
    },
    /// A field or variant count that the rest of the input cannot possibly hold.
    #[error("{path} at byte {offset}: {what} {count} cannot fit in the {remaining} bytes that remain")]
    CountTooLarge {
        /// The struct or enum.
        path: String,
        /// Where the count is.
        offset: usize,
        /// `"field count"` or `"variant count"`.
        what: &'static str,
        /// The count.
        count: u32,
        /// How many bytes follow it.
        remaining: usize,
    },
    /// A well-formed node whose structure is inconsistent.
    #[error("{path} (node at byte {offset}): {problem}")]
    Invalid {
        /// The inconsistent node.
        path: String,
        /// Where the node starts (its tag byte).
        offset: usize,
        /// What is wrong with it.
        problem: Inconsistency,
    },
    /// The input is longer than [`MAX_SCHEMA_LEN`].
    #[error("schema is {len} bytes long, more than the {max} bytes a schema may take")]
    TooLong {
        /// The input's length.
        len: usize,
        /// [`MAX_SCHEMA_LEN`].
        max: usize,
    },
    /// A name longer than [`MAX_SCHEMA_NAME_LEN`] bytes.
    #[error("{path} at byte {offset}: the {what} is {len} bytes long, more than the {max} bytes a name may take")]
    NameTooLong {
        /// The node the name belongs to.
        path: String,
        /// Where the name's length prefix is.
        offset: usize,
        /// Which name (`"type name"`, `"field name"` or `"variant name"`).
        what: &'static str,
        /// Its length in bytes.
        len: u32,
        /// [`MAX_SCHEMA_NAME_LEN`].
        max: usize,
    },
    /// A name holding a NUL, a line break or another control character.
    #[error("{path}: the {what} holds the control character {found:?} at byte {offset}")]
    NameControlChar {
        /// The node the name belongs to.
        path: String,
        /// Where the control character is.
        offset: usize,
        /// Which name (`"type name"`, `"field name"` or `"variant name"`).
        what: &'static str,
        /// The character.
        found: char,
    },
}

/// What is wrong with a well-formed but inconsistent schema node ([`SchemaError::Invalid`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Inconsistency {
    /// The alignment is zero or not a power of two.
    #[error("alignment {align} is not a power of two")]
    AlignNotPowerOfTwo {
        /// The alignment.
        align: u64,
    },
    /// The size is not a multiple of the alignment.
    #[error("size {size} is not a multiple of alignment {align}")]
    SizeNotMultipleOfAlign {
        /// The size.
        size: u64,
        /// The alignment.
        align: u64,
    },
    /// A primitive whose size is not its width, or whose alignment exceeds it.
    #[error(
        "`{}` is {} bytes with an alignment of at most {}, but the schema says {size} bytes, alignment {align}",
        primitive.name(), primitive.size(), primitive.size()
    )]
    PrimitiveLayout {
        /// The primitive.
        primitive: Primitive,
        /// The size in the schema.
        size: u64,
        /// The alignment in the schema.
        align: u64,
    },
    /// An atomic over a primitive that has no atomic type (a float or a 128-bit integer).
    #[error("there is no atomic `{}` type", primitive.name())]
    UnsupportedAtomic {
        /// The primitive.
        primitive: Primitive,
    },
    /// An atomic whose size and alignment are not both its primitive's width.
    #[error(
        "an atomic `{}` is {} bytes with alignment {}, but the schema says {size} bytes, alignment {align}",
        primitive.name(), primitive.size(), primitive.size()
    )]
    AtomicLayout {
        /// The atomic's primitive.
        primitive: Primitive,
        /// The size in the schema.
        size: u64,
        /// The alignment in the schema.
        align: u64,
    },
    /// An array whose size is not its element's size times its length.
    #[error(
        "{len} elements of {elem_size} bytes take {}, but the schema says {size} bytes",
        array_bytes(*elem_size, *len)
    )]
    ArraySize {
        /// The number of elements.
        len: u64,
        /// The element's size.
        elem_size: u64,
        /// The array's size in the schema.
        size: u64,
    },
    /// An array whose alignment is not its element's.
    #[error("an array has its element's alignment {elem_align}, but the schema says {align}")]
    ArrayAlign {
        /// The element's alignment.
        elem_align: u64,
        /// The array's alignment in the schema.
        align: u64,
    },
    /// A struct field that extends beyond the struct.
    #[error("field `{field}` ({field_size} bytes at offset {offset}) ends beyond the struct's {size} bytes")]
    FieldOutOfBounds {
        /// The field's name.
        field: String,
        /// Its offset.
        offset: u64,
        /// Its size.
        field_size: u64,
        /// The struct's size.
        size: u64,
    },
    /// A struct field at an offset its alignment forbids, or with a larger alignment than the
    /// struct's.
    #[error("field `{field}` (alignment {field_align}) cannot be at offset {offset} of a struct with alignment {struct_align}")]
    FieldMisaligned {
        /// The field's name.
        field: String,
        /// Its offset.
        offset: u64,
        /// Its alignment.
        field_align: u64,
        /// The struct's alignment.
        struct_align: u64,
    },
    /// Two fields with the same name.
    #[error("field name `{name}` appears twice")]
    DuplicateFieldName {
        /// The name.
        name: String,
    },
    /// A field that starts inside another.
    #[error("field `{field}` at offset {offset} overlaps field `{other}`, which ends at {other_end}")]
    FieldOverlap {
        /// The later field (by offset).
        field: String,
        /// Its offset.
        offset: u64,
        /// The field it overlaps.
        other: String,
        /// Where that field ends.
        other_end: u64,
    },
    /// Bytes of a struct that no field covers. shmstore types have no padding, so the fields of a
    /// struct must tile it exactly.
    #[error("bytes {start}..{end} are padding (no field covers them), which shmstore types cannot have")]
    Padding {
        /// The first uncovered byte.
        start: u64,
        /// The end of the uncovered range.
        end: u64,
    },
    /// An enum repr that is not an integer type.
    #[error("`{}` cannot be an enum's representation", repr.name())]
    EnumRepr {
        /// The repr.
        repr: Primitive,
    },
    /// An enum whose size is not its repr's width, or whose alignment exceeds it.
    #[error(
        "an enum with repr `{}` is {} bytes with an alignment of at most {}, but the schema says {size} bytes, alignment {align}",
        repr.name(), repr.size(), repr.size()
    )]
    EnumLayout {
        /// The repr.
        repr: Primitive,
        /// The size in the schema.
        size: u64,
        /// The alignment in the schema.
        align: u64,
    },
    /// An enum without variants, which no value could inhabit.
    #[error("the enum has no variants")]
    NoVariants,
    /// A variant whose value does not fit in the repr.
    #[error("variant `{variant}` has value {value}, which does not fit in `{}`", repr.name())]
    VariantOutOfRange {
        /// The variant's name.
        variant: String,
        /// Its value.
        value: u64,
        /// The enum's repr.
        repr: Primitive,
    },
    /// Two variants with the same name.
    #[error("variant name `{name}` appears twice")]
    DuplicateVariantName {
        /// The name.
        name: String,
    },
    /// Two variants with the same value.
    #[error("variants `{first}` and `{second}` have the same value {value}")]
    DuplicateVariantValue {
        /// The earlier variant.
        first: String,
        /// The later variant.
        second: String,
        /// Their value.
        value: u64,
    },
    /// A `FixedStr` whose size is not its capacity, or whose alignment is not 1.
    #[error("FixedStr<{capacity}> is {capacity} bytes with alignment 1, but the schema says {size} bytes, alignment {align}")]
    FixedStrLayout {
        /// The capacity.
        capacity: u64,
        /// The size in the schema.
        size: u64,
        /// The alignment in the schema.
        align: u64,
    },
    /// The stored fingerprint is not the one the node's structure hashes to.
    #[error("stored fingerprint {stored:016x} does not match the structure, which hashes to {computed:016x}")]
    FingerprintMismatch {
        /// The fingerprint in the input.
        stored: u64,
        /// The fingerprint of the decoded structure.
        computed: u64,
    },
}

fn array_bytes(elem_size: u64, len: u64) -> String {
    match elem_size.checked_mul(len) {
        Some(total) => format!("{total} bytes"),
        None => "more than 2^64 bytes".to_owned(),
    }
}

/// Decodes a schema written by [`encode`], checking every byte.
///
/// The input is treated as hostile: this never panics, recurses at most [`MAX_DEPTH`] levels, and
/// allocates memory in proportion to `bytes.len()` (a few times its size at most). It refuses
/// anything that [`encode`] could not have written for a consistent layout:
///
/// - an input longer than [`MAX_SCHEMA_LEN`], checked first;
/// - a wrong magic, an unknown encoding version, a truncated item or trailing bytes;
/// - an unknown kind tag or primitive code; a name that is not UTF-8, is longer than
///   [`MAX_SCHEMA_NAME_LEN`] or holds a control character; nesting deeper than [`MAX_DEPTH`]; a
///   field or variant count larger than the remaining input could hold;
/// - an inconsistent node ([`SchemaError::Invalid`]): an alignment that is not a power of two or
///   does not divide the size; a primitive whose size is not its width or whose alignment exceeds
///   it; an atomic whose size and alignment are not its width, or over a float or a 128-bit integer;
///   an array whose size is not `elem.size * len` or whose alignment is not its element's; struct
///   fields that leave the struct, are misaligned, share a name, overlap or leave padding; an enum
///   with a non-integer repr, a size other than the repr's, no variants, a value that does not fit
///   the repr, or repeated names or values; a `FixedStr` whose size is not its capacity or whose
///   alignment is not 1; a stored fingerprint that differs from the structure's.
///
/// Alignments of primitives and enums are only required to be a power of two no larger than the
/// size, because they vary between platforms (`u64` is 4-aligned on 32-bit x86).
///
/// Children are checked before their parents, so the error names the innermost bad node.
pub fn decode(bytes: &[u8]) -> Result<Schema, SchemaError> {
    if bytes.len() > MAX_SCHEMA_LEN {
        return Err(SchemaError::TooLong { len: bytes.len(), max: MAX_SCHEMA_LEN });
    }
    let Some((header, _)) = bytes.split_first_chunk::<HEADER_LEN>() else {
        return Err(SchemaError::TooShort { len: bytes.len() });
    };
    let [m0, m1, m2, m3, v0, v1] = *header;
    if [m0, m1, m2, m3] != MAGIC {
        return Err(SchemaError::BadMagic { found: [m0, m1, m2, m3] });
    }
    let version = u16::from_le_bytes([v0, v1]);
    if version != ENCODING_VERSION {
        return Err(SchemaError::UnsupportedVersion { found: version });
    }
    let mut reader = Reader { bytes, pos: HEADER_LEN };
    let schema = reader.node(&Path::Root, 1)?;
    let count = bytes.len() - reader.pos;
    if count != 0 {
        return Err(SchemaError::TrailingBytes { offset: reader.pos, count });
    }
    Ok(schema)
}

/// Where a node sits in the tree, built on the stack and rendered only for an error.
enum Path<'a> {
    Root,
    Field(&'a Path<'a>, &'a str),
    Element(&'a Path<'a>),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("root"),
            Path::Field(parent, name) => write!(f, "{parent}.{name}"),
            Path::Element(parent) => write!(f, "{parent}[]"),
        }
    }
}

/// The node kinds, by their tag.
#[derive(Clone, Copy)]
enum Tag {
    Primitive,
    Atomic,
    Array,
    Struct,
    Enum,
    FixedStr,
}

impl Tag {
    fn from_u8(tag: u8) -> Option<Tag> {
        Some(match tag {
            TAG_PRIMITIVE => Tag::Primitive,
            TAG_ATOMIC => Tag::Atomic,
            TAG_ARRAY => Tag::Array,
            TAG_STRUCT => Tag::Struct,
            TAG_ENUM => Tag::Enum,
            TAG_FIXED_STR => Tag::FixedStr,
            _ => return None,
        })
    }
}

/// A cursor over the input. Invariant: `pos <= bytes.len()`.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn rest(&self) -> &'a [u8] {
        self.bytes.get(self.pos..).unwrap_or_default()
    }

    fn end(&self, needed: usize, what: &'static str, path: &Path<'_>) -> SchemaError {
        SchemaError::UnexpectedEnd {
            path: path.to_string(),
            offset: self.pos,
            what,
            needed,
            available: self.rest().len(),
        }
    }

    fn take(&mut self, n: usize, what: &'static str, path: &Path<'_>) -> Result<&'a [u8], SchemaError> {
        let Some(taken) = self.rest().get(..n) else {
            return Err(self.end(n, what, path));
        };
        self.pos += n;
        Ok(taken)
    }

    fn chunk<const N: usize>(&mut self, what: &'static str, path: &Path<'_>) -> Result<[u8; N], SchemaError> {
        let Some((taken, _)) = self.rest().split_first_chunk::<N>() else {
            return Err(self.end(N, what, path));
        };
        self.pos += N;
        Ok(*taken)
    }

    fn u8(&mut self, what: &'static str, path: &Path<'_>) -> Result<u8, SchemaError> {
        let [b] = self.chunk::<1>(what, path)?;
        Ok(b)
    }

    fn u32(&mut self, what: &'static str, path: &Path<'_>) -> Result<u32, SchemaError> {
        self.chunk(what, path).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str, path: &Path<'_>) -> Result<u64, SchemaError> {
        self.chunk(what, path).map(u64::from_le_bytes)
    }

    /// A length-prefixed name: UTF-8, at most [`MAX_SCHEMA_NAME_LEN`] bytes, no control
    /// characters; `what` names it in errors.
    fn string(&mut self, what: &'static str, path: &Path<'_>) -> Result<String, SchemaError> {
        let offset = self.pos;
        let len = self.u32(what, path)?;
        let Some(len) = usize::try_from(len).ok().filter(|&n| n <= MAX_SCHEMA_NAME_LEN) else {
            return Err(SchemaError::NameTooLong {
                path: path.to_string(),
                offset,
                what,
                len,
                max: MAX_SCHEMA_NAME_LEN,
            });
        };
        let start = self.pos;
        let bytes = self.take(len, what, path)?;
        let name = std::str::from_utf8(bytes).map_err(|e| SchemaError::InvalidUtf8 {
            path: path.to_string(),
            offset: start + e.valid_up_to(),
            what,
        })?;
        if let Some((at, found)) = name.char_indices().find(|(_, c)| c.is_control()) {
            return Err(SchemaError::NameControlChar { path: path.to_string(), offset: start + at, what, found });
        }
        Ok(name.to_owned())
    }

    fn primitive(&mut self, what: &'static str, path: &Path<'_>) -> Result<Primitive, SchemaError> {
        let offset = self.pos;
        let code = self.u8(what, path)?;
        Primitive::from_code(code).ok_or_else(|| SchemaError::UnknownPrimitive { path: path.to_string(), offset, code })
    }

    /// A count of items that take at least `min_len` bytes each, refused unless the rest of the
    /// input could hold that many, so that a hostile count fails at once.
    fn count(&mut self, what: &'static str, min_len: usize, path: &Path<'_>) -> Result<usize, SchemaError> {
        let offset = self.pos;
        let count = self.u32(what, path)?;
        let remaining = self.rest().len();
        match usize::try_from(count).ok().filter(|&n| n.checked_mul(min_len).is_some_and(|total| total <= remaining)) {
            Some(n) => Ok(n),
            None => Err(SchemaError::CountTooLarge { path: path.to_string(), offset, what, count, remaining }),
        }
    }

    /// One node at `depth`, with all its children, checked.
    fn node(&mut self, path: &Path<'_>, depth: usize) -> Result<Schema, SchemaError> {
        let start = self.pos;
        if depth > MAX_DEPTH {
            return Err(SchemaError::TooDeep { path: path.to_string(), offset: start, max: MAX_DEPTH });
        }
        let raw_tag = self.u8("kind tag", path)?;
        let Some(tag) = Tag::from_u8(raw_tag) else {
            return Err(SchemaError::UnknownTag { path: path.to_string(), offset: start, tag: raw_tag });
        };
        let type_name = self.string("type name", path)?;
        let size = self.u64("size", path)?;
        let align = self.u64("alignment", path)?;
        let version = self.u32("version", path)?;
        let fingerprint = self.u64("fingerprint", path)?;
        let kind = match tag {
            Tag::Primitive => SchemaKind::Primitive(self.primitive("primitive code", path)?),
            Tag::Atomic => SchemaKind::Atomic(self.primitive("primitive code", path)?),
            Tag::Array => {
                let len = self.u64("array length", path)?;
                let elem = self.node(&Path::Element(path), depth + 1)?;
                SchemaKind::Array { elem: Box::new(elem), len }
            }
            Tag::Struct => {
                let count = self.count("field count", MIN_FIELD_LEN, path)?;
                let mut fields = Vec::with_capacity(count.min(PREALLOCATE));
                for _ in 0..count {
                    let name = self.string("field name", path)?;
                    let offset = self.u64("field offset", path)?;
                    let schema = self.node(&Path::Field(path, &name), depth + 1)?;
                    fields.push(SchemaField { name, offset, schema });
                }
                SchemaKind::Struct { fields }
            }
            Tag::Enum => {
                let repr = self.primitive("enum repr", path)?;
                let count = self.count("variant count", MIN_VARIANT_LEN, path)?;
                let mut variants = Vec::with_capacity(count.min(PREALLOCATE));
                for _ in 0..count {
                    let name = self.string("variant name", path)?;
                    let value = self.u64("variant value", path)?;
                    variants.push(SchemaVariant { name, value });
                }
                SchemaKind::Enum { repr, variants }
            }
            Tag::FixedStr => SchemaKind::FixedStr { capacity: self.u64("capacity", path)? },
        };
        let schema = Schema { type_name, size, align, version, fingerprint, kind };
        check_node(&schema).map_err(|problem| SchemaError::Invalid {
            path: path.to_string(),
            offset: start,
            problem,
        })?;
        Ok(schema)
    }
}

/// Checks one node whose children are already checked (so their sizes, alignments and
/// fingerprints can be trusted).
fn check_node(node: &Schema) -> Result<(), Inconsistency> {
    let (size, align) = (node.size, node.align);
    if !align.is_power_of_two() {
        return Err(Inconsistency::AlignNotPowerOfTwo { align });
    }
    if !size.is_multiple_of(align) {
        return Err(Inconsistency::SizeNotMultipleOfAlign { size, align });
    }
    match &node.kind {
        SchemaKind::Primitive(p) => {
            if size != p.size() as u64 || align > size {
                return Err(Inconsistency::PrimitiveLayout { primitive: *p, size, align });
            }
        }
        SchemaKind::Atomic(p) => {
            if !has_atomic(*p) {
                return Err(Inconsistency::UnsupportedAtomic { primitive: *p });
            }
            if size != p.size() as u64 || align != size {
                return Err(Inconsistency::AtomicLayout { primitive: *p, size, align });
            }
        }
        SchemaKind::Array { elem, len } => {
            if elem.size.checked_mul(*len) != Some(size) {
                return Err(Inconsistency::ArraySize { len: *len, elem_size: elem.size, size });
            }
            if align != elem.align {
                return Err(Inconsistency::ArrayAlign { elem_align: elem.align, align });
            }
        }
        SchemaKind::Struct { fields } => check_struct(size, align, fields)?,
        SchemaKind::Enum { repr, variants } => check_enum(size, align, *repr, variants)?,
        SchemaKind::FixedStr { capacity } => {
            if size != *capacity || align != 1 {
                return Err(Inconsistency::FixedStrLayout { capacity: *capacity, size, align });
            }
        }
    }
    // The children's fingerprints are already checked, so only this node's own step is hashed,
    // which keeps decoding linear in the input.
    let computed = node.fingerprint_with(&|child| child.fingerprint);
    if computed != node.fingerprint {
        return Err(Inconsistency::FingerprintMismatch { stored: node.fingerprint, computed });
    }
    Ok(())
}

/// The primitives that have a `std::sync::atomic` type.
fn has_atomic(p: Primitive) -> bool {
    matches!(
        p,
        Primitive::U8
            | Primitive::U16
            | Primitive::U32
            | Primitive::U64
            | Primitive::I8
            | Primitive::I16
            | Primitive::I32
            | Primitive::I64
            | Primitive::Bool
    )
}

fn check_struct(size: u64, align: u64, fields: &[SchemaField]) -> Result<(), Inconsistency> {
    let mut names = HashSet::with_capacity(fields.len());
    for f in fields {
        if !names.insert(f.name.as_str()) {
            return Err(Inconsistency::DuplicateFieldName { name: f.name.clone() });
        }
        let (field_size, field_align) = (f.schema.size, f.schema.align);
        if f.offset.checked_add(field_size).is_none_or(|end| end > size) {
            return Err(Inconsistency::FieldOutOfBounds { field: f.name.clone(), offset: f.offset, field_size, size });
        }
        // A field may be more aligned than its struct: `repr(packed)` lowers the struct's
        // alignment, and the derive still requires each field to sit at a multiple of its own.
        if !f.offset.is_multiple_of(field_align) {
            return Err(Inconsistency::FieldMisaligned {
                field: f.name.clone(),
                offset: f.offset,
                field_align,
                struct_align: align,
            });
        }
    }
    // Walk the fields in memory order (zero-sized ones before the field that starts at the same
    // offset): each must start exactly where the previous one ended.
    let mut by_offset: Vec<&SchemaField> = fields.iter().collect();
    by_offset.sort_by_key(|f| (f.offset, f.schema.size));
    let mut end = 0;
    let mut previous = "";
    for f in by_offset {
        if f.offset > end {
            return Err(Inconsistency::Padding { start: end, end: f.offset });
        }
        if f.offset < end {
            return Err(Inconsistency::FieldOverlap {
                field: f.name.clone(),
                offset: f.offset,
                other: previous.to_owned(),
                other_end: end,
            });
        }
        // Free of overflow: `f.offset + f.schema.size <= size` was checked above.
        end = f.offset + f.schema.size;
        previous = &f.name;
    }
    if end != size {
        return Err(Inconsistency::Padding { start: end, end: size });
    }
    Ok(())
}

fn check_enum(size: u64, align: u64, repr: Primitive, variants: &[SchemaVariant]) -> Result<(), Inconsistency> {
    let integer = matches!(
        repr,
        Primitive::U8
            | Primitive::U16
            | Primitive::U32
            | Primitive::U64
            | Primitive::U128
            | Primitive::I8
            | Primitive::I16
            | Primitive::I32
            | Primitive::I64
            | Primitive::I128
    );
    if !integer {
        return Err(Inconsistency::EnumRepr { repr });
    }
    if size != repr.size() as u64 || align > size {
        return Err(Inconsistency::EnumLayout { repr, size, align });
    }
    if variants.is_empty() {
        return Err(Inconsistency::NoVariants);
    }
    let bits = repr.size() * 8;
    let mut names = HashSet::with_capacity(variants.len());
    let mut values: HashMap<u64, &str> = HashMap::with_capacity(variants.len());
    for v in variants {
        if bits < 64 && v.value >> bits != 0 {
            return Err(Inconsistency::VariantOutOfRange { variant: v.name.clone(), value: v.value, repr });
        }
        if !names.insert(v.name.as_str()) {
            return Err(Inconsistency::DuplicateVariantName { name: v.name.clone() });
        }
        if let Some(first) = values.insert(v.value, &v.name) {
            return Err(Inconsistency::DuplicateVariantValue {
                first: first.to_owned(),
                second: v.name.clone(),
                value: v.value,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64};

    use proptest::prelude::*;

    use super::*;
    use crate::layout::{Field, SharedLayout, Variant};
    use crate::FixedStr;

    // Layouts built by hand with `Layout::new`, as the derive would build them.

    const POINT: Layout = Layout::new(
        "Point",
        8,
        4,
        2,
        TypeKind::Struct {
            fields: &[
                Field { name: "x", offset: 0, layout: &i32::LAYOUT },
                Field { name: "y", offset: 4, layout: &i32::LAYOUT },
            ],
        },
    );
    const MODE: Layout = Layout::new(
        "Mode",
        1,
        1,
        3,
        TypeKind::Enum {
            repr: Primitive::U8,
            variants: &[
                Variant { name: "Off", value: 0 },
                Variant { name: "On", value: 1 },
                Variant { name: "Auto", value: 200 },
            ],
        },
    );
    const LEVEL: Layout = Layout::new(
        "Level",
        2,
        2,
        1,
        TypeKind::Enum {
            repr: Primitive::I16,
            // -1, zero-extended to 64 bits.
            variants: &[Variant { name: "Low", value: 0xffff }, Variant { name: "High", value: 1 }],
        },
    );
    const WIDE: Layout = Layout::new(
        "Wide",
        4,
        4,
        1,
        TypeKind::Enum { repr: Primitive::U32, variants: &[Variant { name: "Max", value: u32::MAX as u64 }] },
    );
    const CORNERS: Layout = Layout::array(&POINT, 4, 32, 4);
    const CONFIG: Layout = Layout::new(
        "Config",
        96,
        8,
        7,
        TypeKind::Struct {
            fields: &[
                Field { name: "name", offset: 0, layout: &FixedStr::<16>::LAYOUT },
                Field { name: "origin", offset: 16, layout: &POINT },
                Field { name: "corners", offset: 24, layout: &CORNERS },
                Field { name: "hits", offset: 56, layout: &AtomicU64::LAYOUT },
                Field { name: "mode", offset: 64, layout: &MODE },
                Field { name: "flags", offset: 65, layout: &<[bool; 3]>::LAYOUT },
                Field { name: "count", offset: 68, layout: &u32::LAYOUT },
                Field { name: "grid", offset: 72, layout: &<[[u16; 2]; 3]>::LAYOUT },
                Field { name: "level", offset: 84, layout: &LEVEL },
                Field { name: "nothing", offset: 86, layout: &<[u8; 0]>::LAYOUT },
                Field { name: "tail", offset: 86, layout: &<[u8; 2]>::LAYOUT },
                Field { name: "total", offset: 88, layout: &AtomicI64::LAYOUT },
            ],
        },
    );
    const CONFIGS: Layout = Layout::array(&CONFIG, 2, 192, 8);
    const OUTER: Layout = Layout::new(
        "Outer",
        296,
        8,
        1,
        TypeKind::Struct {
            fields: &[
                Field { name: "current", offset: 0, layout: &CONFIG },
                Field { name: "history", offset: 96, layout: &CONFIGS },
                Field { name: "wide", offset: 288, layout: &WIDE },
                Field { name: "on", offset: 292, layout: &AtomicBool::LAYOUT },
                Field { name: "mode", offset: 293, layout: &MODE },
                Field { name: "pair", offset: 294, layout: &<[u8; 2]>::LAYOUT },
            ],
        },
    );
    const UNIT: Layout = Layout::new("Unit", 0, 1, 1, TypeKind::Struct { fields: &[] });
    /// Fields declared out of memory order are still a valid layout.
    const SWAPPED: Layout = Layout::new(
        "Swapped",
        8,
        4,
        1,
        TypeKind::Struct {
            fields: &[
                Field { name: "b", offset: 4, layout: &AtomicI32::LAYOUT },
                Field { name: "z", offset: 4, layout: &<[u32; 0]>::LAYOUT },
                Field { name: "a", offset: 0, layout: &AtomicU32::LAYOUT },
            ],
        },
    );

    // The layouts whose fingerprints were recorded before the fingerprint code was shared with
    // this module (and which are the same on every platform).
    const P: Layout = Layout::new(
        "P",
        4,
        2,
        1,
        TypeKind::Struct {
            fields: &[
                Field { name: "a", offset: 0, layout: &u16::LAYOUT },
                Field { name: "b", offset: 2, layout: &<[u8; 2]>::LAYOUT },
            ],
        },
    );
    const E: Layout = Layout::new(
        "E",
        2,
        2,
        3,
        TypeKind::Enum {
            repr: Primitive::U16,
            variants: &[Variant { name: "A", value: 0 }, Variant { name: "B", value: 7 }],
        },
    );

    fn all_layouts() -> Vec<Layout> {
        vec![
            u8::LAYOUT,
            u16::LAYOUT,
            u32::LAYOUT,
            u64::LAYOUT,
            u128::LAYOUT,
            i8::LAYOUT,
            i16::LAYOUT,
            i32::LAYOUT,
            i64::LAYOUT,
            i128::LAYOUT,
            f32::LAYOUT,
            f64::LAYOUT,
            bool::LAYOUT,
            AtomicU32::LAYOUT,
            AtomicU64::LAYOUT,
            AtomicI32::LAYOUT,
            AtomicI64::LAYOUT,
            AtomicBool::LAYOUT,
            <[u8; 0]>::LAYOUT,
            <[u16; 4]>::LAYOUT,
            <[[u16; 2]; 3]>::LAYOUT,
            <[[[u8; 3]; 2]; 1]>::LAYOUT,
            <[[u64; 0]; 5]>::LAYOUT,
            <[bool; 3]>::LAYOUT,
            <[FixedStr<8>; 2]>::LAYOUT,
            FixedStr::<0>::LAYOUT,
            FixedStr::<16>::LAYOUT,
            FixedStr::<255>::LAYOUT,
            POINT,
            MODE,
            LEVEL,
            WIDE,
            CORNERS,
            CONFIG,
            CONFIGS,
            OUTER,
            UNIT,
            SWAPPED,
            P,
            E,
        ]
    }

    // Hand-built schemas, for the shapes no consistent layout has. `seal` gives them their true
    // fingerprints, so that only the intended inconsistency is left.

    fn node(type_name: &str, size: u64, align: u64, kind: SchemaKind) -> Schema {
        Schema { type_name: type_name.to_owned(), size, align, version: 1, fingerprint: 0, kind }
    }

    fn prim(p: Primitive) -> Schema {
        let n = p.size() as u64;
        node(p.name(), n, n, SchemaKind::Primitive(p))
    }

    fn array(elem: Schema, len: u64) -> Schema {
        node("", elem.size * len, elem.align, SchemaKind::Array { elem: Box::new(elem), len })
    }

    fn strukt(size: u64, align: u64, fields: Vec<(&str, u64, Schema)>) -> Schema {
        let fields = fields
            .into_iter()
            .map(|(name, offset, schema)| SchemaField { name: name.to_owned(), offset, schema })
            .collect();
        node("S", size, align, SchemaKind::Struct { fields })
    }

    fn enm(repr: Primitive, variants: &[(&str, u64)]) -> Schema {
        let variants = variants.iter().map(|&(name, value)| SchemaVariant { name: name.to_owned(), value }).collect();
        let n = repr.size() as u64;
        node("E", n, n, SchemaKind::Enum { repr, variants })
    }

    fn seal(s: &mut Schema) {
        match &mut s.kind {
            SchemaKind::Array { elem, .. } => seal(elem),
            SchemaKind::Struct { fields } => fields.iter_mut().for_each(|f| seal(&mut f.schema)),
            _ => {}
        }
        s.fingerprint = s.fingerprint_with(&|child| child.fingerprint);
    }

    fn sealed(mut s: Schema) -> Schema {
        seal(&mut s);
        s
    }

    /// The inconsistency `decode` finds in `s` (with true fingerprints), and where.
    fn problem(s: Schema) -> (String, Inconsistency) {
        match decode(&sealed(s).encode()) {
            Err(SchemaError::Invalid { path, problem, .. }) => (path, problem),
            other => panic!("expected an inconsistency, got {other:?}"),
        }
    }

    fn root_problem(s: Schema) -> Inconsistency {
        let (path, problem) = problem(s);
        assert_eq!(path, "root");
        problem
    }

    fn position(haystack: &[u8], needle: &[u8]) -> usize {
        haystack.windows(needle.len()).position(|w| w == needle).expect("needle present")
    }

    fn walk_fingerprints(layout: &Layout, schema: &Schema) {
        assert_eq!(schema.compute_fingerprint(), layout.fingerprint, "{}", layout.display_name());
        assert_eq!(schema.fingerprint_with(&|c| c.fingerprint), layout.fingerprint);
        match (&layout.kind, &schema.kind) {
            (TypeKind::Array { elem, .. }, SchemaKind::Array { elem: s, .. }) => walk_fingerprints(elem, s),
            (TypeKind::Struct { fields }, SchemaKind::Struct { fields: s }) => {
                assert_eq!(fields.len(), s.len());
                for (f, s) in fields.iter().zip(s) {
                    walk_fingerprints(f.layout, &s.schema);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn every_layout_round_trips() {
        for layout in all_layouts() {
            let bytes = encode(&layout);
            let schema = Schema::from(&layout);
            assert_eq!(decode(&bytes).as_ref(), Ok(&schema), "{}", layout.display_name());
            assert_eq!(schema.encode(), bytes);
            assert_eq!(schema.display_name(), layout.display_name());
            assert_eq!(schema.to_string(), layout.to_string());
        }
    }

    #[test]
    fn fingerprints_agree_with_layouts() {
        for layout in all_layouts() {
            walk_fingerprints(&layout, &Schema::from(&layout));
        }
        // Every kind and every primitive, by hand.
        for p in Primitive::ALL {
            let s = prim(p);
            let l = Layout::new("", s.size as usize, s.align as usize, 1, TypeKind::Primitive(p));
            assert_eq!(s.compute_fingerprint(), l.fingerprint);
            let l = Layout::new("", s.size as usize, s.align as usize, 1, TypeKind::Atomic(p));
            let s = node("", s.size, s.align, SchemaKind::Atomic(p));
            assert_eq!(s.compute_fingerprint(), l.fingerprint);
        }
        // The stored fingerprints of children do not matter to `compute_fingerprint`.
        let mut schema = Schema::from(&OUTER);
        let SchemaKind::Struct { fields } = &mut schema.kind else { unreachable!() };
        fields[0].schema.fingerprint = 0;
        assert_eq!(schema.compute_fingerprint(), OUTER.fingerprint);
    }

    #[test]
    fn fingerprints_are_pinned() {
        // Recorded before the fingerprint steps were shared with this module: sharing them must
        // not change a single value, or existing files become unreadable.
        assert_eq!(u8::LAYOUT.fingerprint, 0xc08b_3f94_579f_5e97);
        assert_eq!(bool::LAYOUT.fingerprint, 0xc08b_3394_579f_4a33);
        assert_eq!(AtomicU64::LAYOUT.fingerprint, 0x32bd_c69d_485f_7bb3);
        assert_eq!(<[[u16; 2]; 3]>::LAYOUT.fingerprint, 0xf2f7_78fc_5aa9_1f57);
        assert_eq!(FixedStr::<16>::LAYOUT.fingerprint, 0xfbfc_383e_d0c0_ea06);
        assert_eq!(P.fingerprint, 0xc530_7f85_6ce2_4d35);
        assert_eq!(E.fingerprint, 0x28c2_e917_1c23_d67a);
        for l in [u8::LAYOUT, bool::LAYOUT, AtomicU64::LAYOUT, P, E] {
            assert_eq!(Schema::from(&l).compute_fingerprint(), l.fingerprint);
        }
    }

    #[test]
    fn encoding_is_pinned() {
        // The worked example of docs/schema-encoding.md, byte for byte.
        let want = concat!(
            "53485343",
            "0100", // magic, encoding version 1
            // root: struct `P`, 4 bytes, align 2, version 1, fingerprint, 2 fields
            "04",
            "01000000",
            "50",
            "0400000000000000",
            "0200000000000000",
            "01000000",
            "354de26c857f30c5",
            "02000000",
            // field `a` at offset 0: primitive `u16`, 2 bytes, align 2, code 2
            "01000000",
            "61",
            "0000000000000000",
            "01",
            "03000000",
            "753136",
            "0200000000000000",
            "0200000000000000",
            "01000000",
            "aa89dca7ecb398e6",
            "02",
            // field `b` at offset 2: array `[u8; 2]`, 2 bytes, align 1, len 2
            "01000000",
            "62",
            "0200000000000000",
            "03",
            "00000000",
            "0200000000000000",
            "0100000000000000",
            "01000000",
            "8801ccf55f98a3c0",
            "0200000000000000",
            // its element: primitive `u8`, code 1
            "01",
            "02000000",
            "7538",
            "0100000000000000",
            "0100000000000000",
            "01000000",
            "975e9f57943f8bc0",
            "01",
        );
        let got: String = encode(&P).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn display_names() {
        let name = |l: &Layout| decode(&encode(l)).unwrap().display_name();
        assert_eq!(name(&<[[u16; 2]; 3]>::LAYOUT), "[[u16; 2]; 3]");
        assert_eq!(name(&FixedStr::<16>::LAYOUT), "FixedStr<16>");
        assert_eq!(name(&<[FixedStr<8>; 2]>::LAYOUT), "[FixedStr<8>; 2]");
        assert_eq!(name(&CORNERS), "[Point; 4]");
        assert_eq!(name(&AtomicU64::LAYOUT), "AtomicU64");
        assert_eq!(name(&CONFIG), "Config");
        let schema = Schema::from(&FixedStr::<16>::LAYOUT);
        assert_eq!(
            schema.to_string(),
            format!("FixedStr<16> v1 (16 bytes, align 1, fingerprint {:016x})", schema.fingerprint)
        );
    }

    #[test]
    fn rejects_bad_headers_and_trailing_bytes() {
        let good = encode(&u32::LAYOUT);
        for len in 0..HEADER_LEN {
            assert_eq!(decode(&good[..len]), Err(SchemaError::TooShort { len }));
        }
        let mut bad = good.clone();
        bad[0] = b'X';
        let err = decode(&bad).unwrap_err();
        assert_eq!(err, SchemaError::BadMagic { found: *b"XHSC" });
        assert_eq!(err.to_string(), "not a schema: it starts with b\"XHSC\", not b\"SHSC\"");
        for version in [0u16, 2, 0x0100, u16::MAX] {
            let mut bad = good.clone();
            bad[4..6].copy_from_slice(&version.to_le_bytes());
            assert_eq!(decode(&bad), Err(SchemaError::UnsupportedVersion { found: version }));
        }
        let mut long = good.clone();
        long.extend_from_slice(&[0, 0, 0]);
        assert_eq!(decode(&long), Err(SchemaError::TrailingBytes { offset: good.len(), count: 3 }));
    }

    #[test]
    fn rejects_every_truncation() {
        for layout in [CONFIG, OUTER, LEVEL, FixedStr::<3>::LAYOUT] {
            let bytes = encode(&layout);
            for len in HEADER_LEN..bytes.len() {
                match decode(&bytes[..len]) {
                    Err(SchemaError::UnexpectedEnd { offset, needed, available, .. }) => {
                        assert!(offset <= len && available == len - offset && needed > available);
                    }
                    Err(SchemaError::CountTooLarge { .. }) => {}
                    other => panic!("{} cut at {len}: {other:?}", layout.display_name()),
                }
            }
        }
        let err = decode(&encode(&POINT)[..20]).unwrap_err();
        assert_eq!(err.to_string(), "schema ends early: the size of root at byte 16 needs 8 bytes, but only 4 remain");
    }

    #[test]
    fn rejects_unknown_tags_and_codes() {
        for tag in [0, 7, 0x7f, 0xff] {
            let mut bytes = encode(&u32::LAYOUT);
            bytes[HEADER_LEN] = tag;
            assert_eq!(decode(&bytes), Err(SchemaError::UnknownTag { path: "root".into(), offset: 6, tag }));
        }
        // The code is the last byte of a primitive or an atomic.
        for layout in [u32::LAYOUT, AtomicU32::LAYOUT] {
            for code in [0, 14, 0xff] {
                let mut bytes = encode(&layout);
                let offset = bytes.len() - 1;
                bytes[offset] = code;
                assert_eq!(decode(&bytes), Err(SchemaError::UnknownPrimitive { path: "root".into(), offset, code }));
            }
        }
        // An enum's repr code follows its fingerprint.
        let mut bytes = encode(&MODE);
        let offset = position(&bytes, &MODE.fingerprint.to_le_bytes()) + 8;
        bytes[offset] = 0;
        assert_eq!(decode(&bytes), Err(SchemaError::UnknownPrimitive { path: "root".into(), offset, code: 0 }));
        // A nested node's tag, with its path.
        let mut bytes = encode(&CONFIG);
        let offset = position(&bytes, b"corners") + 7 + 8;
        bytes[offset] = 9;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err, SchemaError::UnknownTag { path: "root.corners".into(), offset, tag: 9 });
        assert_eq!(err.to_string(), format!("root.corners at byte {offset}: unknown kind tag 9"));
    }

    #[test]
    fn rejects_names_that_are_not_utf8() {
        let cases: [(&Layout, &[u8], &str, &str); 3] = [
            (&u32::LAYOUT, b"u32", "root", "type name"),
            (&POINT, b"x", "root", "field name"),
            (&MODE, b"Auto", "root", "variant name"),
        ];
        for (layout, name, path, what) in cases {
            let mut bytes = encode(layout);
            let offset = position(&bytes, name) + name.len() - 1;
            bytes[offset] = 0xc3; // a truncated two-byte sequence
            assert_eq!(decode(&bytes), Err(SchemaError::InvalidUtf8 { path: path.into(), offset, what }));
        }
        let mut bytes = encode(&CONFIG);
        let offset = position(&bytes, b"Point");
        bytes[offset] = 0xff;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(err, SchemaError::InvalidUtf8 { path: "root.origin".into(), offset, what: "type name" });
        assert_eq!(err.to_string(), format!("root.origin: the type name is not valid UTF-8 (bad byte at {offset})"));
    }

    #[test]
    fn rejects_names_with_control_characters() {
        let cases: [(&Layout, &[u8], &str, &str); 3] = [
            (&u32::LAYOUT, b"u32", "root", "type name"),
            (&POINT, b"y", "root", "field name"),
            (&MODE, b"Auto", "root", "variant name"),
        ];
        for (layout, name, path, what) in cases {
            for found in ['\0', '\n', '\u{7f}'] {
                let mut bytes = encode(layout);
                let offset = position(&bytes, name) + name.len() - 1;
                bytes[offset] = found as u8;
                let expected = SchemaError::NameControlChar { path: path.into(), offset, what, found };
                assert_eq!(decode(&bytes), Err(expected), "{what} with {found:?}");
            }
        }
        // A two-byte control character (U+0085, NEXT LINE) is found too, at its first byte.
        let s = sealed(strukt(4, 4, vec![("a\u{85}", 0, prim(Primitive::U32))]));
        let bytes = s.encode();
        let offset = position(&bytes, "a\u{85}".as_bytes()) + 1;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            SchemaError::NameControlChar { path: "root".into(), offset, what: "field name", found: '\u{85}' }
        );
        assert_eq!(
            err.to_string(),
            format!("root: the field name holds the control character '\\u{{85}}' at byte {offset}")
        );
        // Other non-ASCII text is fine.
        assert!(decode(&sealed(strukt(4, 4, vec![("größe", 0, prim(Primitive::U32))])).encode()).is_ok());
    }

    #[test]
    fn limits_name_length() {
        let named = |name: &str| {
            let mut s = strukt(4, 4, vec![("a", 0, prim(Primitive::U32))]);
            s.type_name = name.to_owned();
            sealed(s).encode()
        };
        assert_eq!(decode(&named(&"n".repeat(MAX_SCHEMA_NAME_LEN))).unwrap().type_name.len(), MAX_SCHEMA_NAME_LEN);
        let err = decode(&named(&"n".repeat(MAX_SCHEMA_NAME_LEN + 1))).unwrap_err();
        let expected = SchemaError::NameTooLong {
            path: "root".into(),
            offset: HEADER_LEN + 1,
            what: "type name",
            len: MAX_SCHEMA_NAME_LEN as u32 + 1,
            max: MAX_SCHEMA_NAME_LEN,
        };
        assert_eq!(err, expected);
        assert_eq!(
            err.to_string(),
            "root at byte 7: the type name is 1025 bytes long, more than the 1024 bytes a name may take"
        );
        // A hostile length prefix is refused before anything is read or allocated for it.
        let mut bytes = encode(&POINT);
        let offset = position(&bytes, b"x") - 4;
        bytes[offset..offset + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        match decode(&bytes) {
            Err(SchemaError::NameTooLong { offset: o, what: "field name", len: u32::MAX, .. }) => assert_eq!(o, offset),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn limits_total_length() {
        // Checked before anything else: even the magic is not looked at.
        let mut huge = vec![0u8; MAX_SCHEMA_LEN + 1];
        let err = decode(&huge).unwrap_err();
        assert_eq!(err, SchemaError::TooLong { len: MAX_SCHEMA_LEN + 1, max: MAX_SCHEMA_LEN });
        assert_eq!(err.to_string(), "schema is 16777217 bytes long, more than the 16777216 bytes a schema may take");
        // Exactly the maximum is decoded (and here refused for what it holds, not for its length).
        huge.pop();
        huge[..HEADER_LEN].copy_from_slice(&encode(&u8::LAYOUT)[..HEADER_LEN]);
        assert!(matches!(decode(&huge), Err(SchemaError::UnknownTag { tag: 0, .. })), "{:?}", decode(&huge));
        let mut padded = encode(&u8::LAYOUT);
        let len = padded.len();
        padded.resize(MAX_SCHEMA_LEN, 0);
        assert_eq!(decode(&padded), Err(SchemaError::TrailingBytes { offset: len, count: MAX_SCHEMA_LEN - len }));
    }

    #[test]
    fn limits_depth() {
        let nested = |depth: usize| {
            let mut s = prim(Primitive::U8);
            for _ in 1..depth {
                s = array(s, 1);
            }
            sealed(s).encode()
        };
        assert!(decode(&nested(MAX_DEPTH)).is_ok());
        let bytes = nested(MAX_DEPTH + 1);
        let offset = HEADER_LEN + MAX_DEPTH * (NODE_HEAD_LEN + 8);
        let path = format!("root{}", "[]".repeat(MAX_DEPTH));
        assert_eq!(decode(&bytes), Err(SchemaError::TooDeep { path, offset, max: MAX_DEPTH }));
        // Far deeper than the stack could take, were it not cut off.
        let mut deep = Vec::from(&nested(1)[..HEADER_LEN]);
        for _ in 0..100_000 {
            deep.extend_from_slice(&nested(2)[HEADER_LEN..HEADER_LEN + NODE_HEAD_LEN + 8]);
        }
        assert!(matches!(decode(&deep), Err(SchemaError::TooDeep { .. })));
    }

    #[test]
    fn limits_counts_by_the_remaining_input() {
        let mut bytes = encode(&POINT);
        let offset = position(&bytes, &POINT.fingerprint.to_le_bytes()) + 8;
        bytes[offset..offset + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let remaining = bytes.len() - offset - 4;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            SchemaError::CountTooLarge { path: "root".into(), offset, what: "field count", count: u32::MAX, remaining }
        );
        let mut bytes = encode(&MODE);
        let offset = position(&bytes, &MODE.fingerprint.to_le_bytes()) + 9;
        bytes[offset..offset + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
        assert!(matches!(
            decode(&bytes),
            Err(SchemaError::CountTooLarge { what: "variant count", count: 1_000_000, .. })
        ));
        // A name length beyond the input is a truncation, not an allocation.
        let mut bytes = encode(&u8::LAYOUT);
        bytes[HEADER_LEN + 1..HEADER_LEN + 5].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(SchemaError::UnexpectedEnd { what: "type name", needed: 1000, .. })));
    }

    #[test]
    fn rejects_bad_alignments() {
        let mut s = prim(Primitive::U32);
        s.align = 3;
        assert_eq!(root_problem(s), Inconsistency::AlignNotPowerOfTwo { align: 3 });
        let mut s = prim(Primitive::U8);
        s.align = 0;
        assert_eq!(root_problem(s), Inconsistency::AlignNotPowerOfTwo { align: 0 });
        let mut s = array(prim(Primitive::U16), 3);
        s.align = 4;
        assert_eq!(root_problem(s), Inconsistency::SizeNotMultipleOfAlign { size: 6, align: 4 });
    }

    #[test]
    fn rejects_bad_primitives_and_atomics() {
        let mut s = prim(Primitive::U32);
        s.size = 8;
        assert_eq!(root_problem(s), Inconsistency::PrimitiveLayout { primitive: Primitive::U32, size: 8, align: 4 });
        let mut s = prim(Primitive::Bool);
        s.size = 0;
        assert_eq!(root_problem(s), Inconsistency::PrimitiveLayout { primitive: Primitive::Bool, size: 0, align: 1 });
        // A smaller alignment than the size is fine: `u64` is 4-aligned on 32-bit x86.
        let mut s = prim(Primitive::U64);
        s.align = 4;
        assert_eq!(decode(&sealed(s.clone()).encode()), Ok(sealed(s)));

        let atomic = |p: Primitive, size: u64, align: u64| node("A", size, align, SchemaKind::Atomic(p));
        assert_eq!(
            root_problem(atomic(Primitive::F64, 8, 8)),
            Inconsistency::UnsupportedAtomic { primitive: Primitive::F64 }
        );
        assert_eq!(
            root_problem(atomic(Primitive::U128, 16, 16)),
            Inconsistency::UnsupportedAtomic { primitive: Primitive::U128 }
        );
        assert_eq!(
            root_problem(atomic(Primitive::U64, 8, 4)),
            Inconsistency::AtomicLayout { primitive: Primitive::U64, size: 8, align: 4 }
        );
        assert_eq!(
            root_problem(atomic(Primitive::I32, 8, 8)),
            Inconsistency::AtomicLayout { primitive: Primitive::I32, size: 8, align: 8 }
        );
        assert!(decode(&sealed(atomic(Primitive::U8, 1, 1)).encode()).is_ok());
    }

    #[test]
    fn rejects_bad_arrays() {
        let mut s = array(prim(Primitive::U16), 3);
        s.size = 8;
        assert_eq!(root_problem(s), Inconsistency::ArraySize { len: 3, elem_size: 2, size: 8 });
        // elem.size * len overflows.
        let mut s = array(array(prim(Primitive::U8), 1 << 40), 1);
        let SchemaKind::Array { len, .. } = &mut s.kind else { unreachable!() };
        *len = 1 << 40;
        let problem = root_problem(s);
        assert_eq!(problem, Inconsistency::ArraySize { len: 1 << 40, elem_size: 1 << 40, size: 1 << 40 });
        assert_eq!(
            problem.to_string(),
            "1099511627776 elements of 1099511627776 bytes take more than 2^64 bytes, but the schema says 1099511627776 bytes"
        );
        let mut s = array(prim(Primitive::U16), 2);
        s.align = 4;
        assert_eq!(root_problem(s), Inconsistency::ArrayAlign { elem_align: 2, align: 4 });
        let mut s = array(prim(Primitive::U32), 2);
        s.align = 2;
        assert_eq!(root_problem(s), Inconsistency::ArrayAlign { elem_align: 4, align: 2 });
    }

    #[test]
    fn rejects_fields_out_of_bounds_or_misaligned() {
        let s = strukt(4, 4, vec![("a", 2, prim(Primitive::U32))]);
        assert_eq!(
            root_problem(s),
            Inconsistency::FieldOutOfBounds { field: "a".into(), offset: 2, field_size: 4, size: 4 }
        );
        let s = strukt(4, 4, vec![("a", u64::MAX, prim(Primitive::U32))]);
        assert_eq!(
            root_problem(s),
            Inconsistency::FieldOutOfBounds { field: "a".into(), offset: u64::MAX, field_size: 4, size: 4 }
        );
        let s = strukt(
            8,
            4,
            vec![("a", 0, prim(Primitive::U16)), ("b", 2, prim(Primitive::U32)), ("c", 6, prim(Primitive::U16))],
        );
        assert_eq!(
            root_problem(s),
            Inconsistency::FieldMisaligned { field: "b".into(), offset: 2, field_align: 4, struct_align: 4 }
        );
        // A packed struct (alignment 2) may hold a field aligned to 8, at an offset multiple of 8.
        let packed = strukt(8, 2, vec![("a", 0, prim(Primitive::U64))]);
        assert!(decode(&sealed(packed).encode()).is_ok());
        let s = strukt(2, 1, vec![("a", 0, prim(Primitive::U8)), ("a", 1, prim(Primitive::U8))]);
        assert_eq!(root_problem(s), Inconsistency::DuplicateFieldName { name: "a".into() });
    }

    #[test]
    fn rejects_overlaps_and_padding() {
        let s = strukt(4, 4, vec![("a", 0, prim(Primitive::U32)), ("b", 2, prim(Primitive::U16))]);
        let problem = root_problem(s);
        assert_eq!(
            problem,
            Inconsistency::FieldOverlap { field: "b".into(), offset: 2, other: "a".into(), other_end: 4 }
        );
        assert_eq!(problem.to_string(), "field `b` at offset 2 overlaps field `a`, which ends at 4");
        // Two fields at the same offset.
        let s = strukt(2, 1, vec![("a", 0, prim(Primitive::U8)), ("b", 0, prim(Primitive::U8))]);
        assert!(matches!(root_problem(s), Inconsistency::FieldOverlap { offset: 0, .. }));
        // A zero-sized field strictly inside another.
        let s = strukt(4, 4, vec![("a", 0, prim(Primitive::U32)), ("z", 2, array(prim(Primitive::U8), 0))]);
        assert!(matches!(root_problem(s), Inconsistency::FieldOverlap { offset: 2, .. }));
        // A gap between fields, at the end, and in an empty struct.
        let s = strukt(4, 2, vec![("a", 0, prim(Primitive::U8)), ("b", 2, prim(Primitive::U16))]);
        let problem = root_problem(s);
        assert_eq!(problem, Inconsistency::Padding { start: 1, end: 2 });
        assert_eq!(
            problem.to_string(),
            "bytes 1..2 are padding (no field covers them), which shmstore types cannot have"
        );
        let s = strukt(8, 4, vec![("a", 0, prim(Primitive::U32))]);
        assert_eq!(root_problem(s), Inconsistency::Padding { start: 4, end: 8 });
        let s = strukt(4, 1, vec![]);
        assert_eq!(root_problem(s), Inconsistency::Padding { start: 0, end: 4 });
        // Zero-sized fields at field boundaries are fine, in any declaration order.
        let s = sealed(strukt(
            4,
            4,
            vec![
                ("z1", 4, array(prim(Primitive::U32), 0)),
                ("a", 0, prim(Primitive::U32)),
                ("z0", 0, array(prim(Primitive::U8), 0)),
            ],
        ));
        assert_eq!(decode(&s.encode()), Ok(s));
    }

    #[test]
    fn rejects_bad_enums() {
        let mut s = enm(Primitive::F32, &[("A", 0)]);
        s.type_name = "F".into();
        assert_eq!(root_problem(s), Inconsistency::EnumRepr { repr: Primitive::F32 });
        assert_eq!(root_problem(enm(Primitive::Bool, &[("A", 0)])), Inconsistency::EnumRepr { repr: Primitive::Bool });
        let mut s = enm(Primitive::U16, &[("A", 0)]);
        s.size = 4;
        assert_eq!(root_problem(s), Inconsistency::EnumLayout { repr: Primitive::U16, size: 4, align: 2 });
        assert_eq!(root_problem(enm(Primitive::U8, &[])), Inconsistency::NoVariants);
        assert_eq!(
            root_problem(enm(Primitive::U8, &[("A", 0), ("B", 256)])),
            Inconsistency::VariantOutOfRange { variant: "B".into(), value: 256, repr: Primitive::U8 }
        );
        assert_eq!(
            root_problem(enm(Primitive::I32, &[("A", 1 << 32)])),
            Inconsistency::VariantOutOfRange { variant: "A".into(), value: 1 << 32, repr: Primitive::I32 }
        );
        assert_eq!(
            root_problem(enm(Primitive::U8, &[("A", 0), ("A", 1)])),
            Inconsistency::DuplicateVariantName { name: "A".into() }
        );
        assert_eq!(
            root_problem(enm(Primitive::U8, &[("A", 3), ("B", 1), ("C", 3)])),
            Inconsistency::DuplicateVariantValue { first: "A".into(), second: "C".into(), value: 3 }
        );
        // Every 64-bit value fits in a 64- or 128-bit repr.
        for repr in [Primitive::U64, Primitive::I64, Primitive::U128, Primitive::I128] {
            let s = sealed(enm(repr, &[("Max", u64::MAX), ("Zero", 0)]));
            assert_eq!(decode(&s.encode()), Ok(s));
        }
    }

    #[test]
    fn rejects_bad_fixed_strs() {
        let fixed =
            |capacity: u64, size: u64, align: u64| node("FixedStr", size, align, SchemaKind::FixedStr { capacity });
        assert_eq!(root_problem(fixed(16, 8, 1)), Inconsistency::FixedStrLayout { capacity: 16, size: 8, align: 1 });
        assert_eq!(root_problem(fixed(16, 16, 2)), Inconsistency::FixedStrLayout { capacity: 16, size: 16, align: 2 });
    }

    #[test]
    fn rejects_fingerprint_mismatches() {
        let mut bytes = encode(&POINT);
        let offset = position(&bytes, &POINT.fingerprint.to_le_bytes());
        bytes[offset] ^= 1;
        let stored = POINT.fingerprint ^ 1;
        let err = decode(&bytes).unwrap_err();
        assert_eq!(
            err,
            SchemaError::Invalid {
                path: "root".into(),
                offset: HEADER_LEN,
                problem: Inconsistency::FingerprintMismatch { stored, computed: POINT.fingerprint },
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "root (node at byte 6): stored fingerprint {stored:016x} does not match the structure, which hashes to {:016x}",
                POINT.fingerprint
            )
        );
        // A nested mismatch is found at the nested node. `x` and `y` share a fingerprint, so the
        // first occurrence is `x`'s.
        let mut bytes = encode(&CONFIG);
        let offset = position(&bytes, &i32::LAYOUT.fingerprint.to_le_bytes());
        bytes[offset + 7] ^= 0x80;
        assert!(matches!(
            decode(&bytes),
            Err(SchemaError::Invalid { path, problem: Inconsistency::FingerprintMismatch { .. }, .. })
                if path == "root.origin.x"
        ));
        // Renaming a type or changing its version keeps the fingerprint, so both are accepted.
        let mut s = Schema::from(&POINT);
        s.type_name = "Renamed".into();
        s.version = 99;
        assert_eq!(decode(&s.encode()), Ok(s));
    }

    #[test]
    fn errors_name_the_nested_path() {
        // Make `Config.corners[].y` 8 bytes long: its array and its struct are then wrong too, but
        // children are checked first, so the innermost node is the one reported.
        let mut s = Schema::from(&CONFIG);
        let SchemaKind::Struct { fields } = &mut s.kind else { unreachable!() };
        let SchemaKind::Array { elem, .. } = &mut fields[2].schema.kind else { unreachable!() };
        let SchemaKind::Struct { fields } = &mut elem.kind else { unreachable!() };
        fields[1].schema.size = 8;
        let (path, problem) = problem(s);
        assert_eq!(path, "root.corners[].y");
        assert_eq!(problem, Inconsistency::PrimitiveLayout { primitive: Primitive::I32, size: 8, align: 4 });
    }

    /// A valid encoding of one of the test layouts, with `mutations` applied (each a position,
    /// wrapped to the length, and a new byte) and then cut to `cut` bytes (wrapped).
    fn mutate(layout: usize, mutations: &[(usize, u8)], cut: Option<usize>) -> Vec<u8> {
        let layouts = all_layouts();
        let mut bytes = encode(&layouts[layout % layouts.len()]);
        for &(at, byte) in mutations {
            let len = bytes.len();
            bytes[at % len] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        bytes
    }

    /// What a successful decode promises: the schema is consistent and re-encodes to the input.
    fn check_accepted(bytes: &[u8]) {
        if let Ok(schema) = decode(bytes) {
            assert_eq!(schema.encode(), bytes);
            assert_eq!(schema.compute_fingerprint(), schema.fingerprint);
        }
    }

    /// Sets one numeric property of the `target`-th node (pre-order) to `value`.
    fn tweak(s: &mut Schema, target: &mut usize, which: u8, value: u64) {
        if *target == 0 {
            match (&mut s.kind, which % 6) {
                (_, 0) => s.size = value,
                (_, 1) => s.align = value,
                (SchemaKind::Array { len, .. }, _) => *len = value,
                (SchemaKind::FixedStr { capacity }, _) => *capacity = value,
                (SchemaKind::Struct { fields }, w) if !fields.is_empty() => {
                    let i = (value as usize) % fields.len();
                    if w == 2 {
                        fields[i].offset = value >> 8;
                    } else {
                        fields.swap(0, i);
                    }
                }
                (SchemaKind::Enum { variants, .. }, _) if !variants.is_empty() => variants[0].value = value,
                (SchemaKind::Primitive(p) | SchemaKind::Atomic(p), _) => {
                    *p = Primitive::ALL[value as usize % Primitive::ALL.len()];
                }
                _ => s.size = value,
            }
        }
        *target = target.wrapping_sub(1);
        match &mut s.kind {
            SchemaKind::Array { elem, .. } => tweak(elem, target, which, value),
            SchemaKind::Struct { fields } => fields.iter_mut().for_each(|f| tweak(&mut f.schema, target, which, value)),
            _ => {}
        }
    }

    fn interesting_u64() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..=20,
            Just(u64::MAX),
            Just(u64::MAX / 2 + 1),
            Just(1 << 32),
            (0u32..64).prop_map(|shift| 1u64 << shift),
            any::<u64>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            check_accepted(&bytes);
        }

        #[test]
        fn arbitrary_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut bytes = encode(&u8::LAYOUT)[..HEADER_LEN].to_vec();
            bytes.extend_from_slice(&body);
            check_accepted(&bytes);
        }

        #[test]
        fn mutated_encodings_never_panic(
            layout in any::<usize>(),
            mutations in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
            cut in proptest::option::of(any::<usize>()),
        ) {
            check_accepted(&mutate(layout, &mutations, cut));
        }

        /// Structural changes with fingerprints made to match, so that the structural checks are
        /// what decides.
        #[test]
        fn resealed_tweaks_never_panic(
            layout in any::<usize>(),
            target in 0usize..64,
            which in any::<u8>(),
            value in interesting_u64(),
        ) {
            let layouts = all_layouts();
            let mut schema = Schema::from(&layouts[layout % layouts.len()]);
            tweak(&mut schema, &mut { target }, which, value);
            seal(&mut schema);
            let bytes = schema.encode();
            check_accepted(&bytes);
            if let Ok(decoded) = decode(&bytes) {
                prop_assert_eq!(decoded, schema);
            }
        }
    }
}
