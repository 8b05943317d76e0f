//! The [`SharedLayout`] trait and the layout descriptors it carries.
//!
//! A [`Layout`] describes a type's bytes completely: its size and alignment, and what every byte range
//! means, recursively down to primitives. The store writes it into the file next to the data, checks it
//! on every open, and uses it to validate bytes before they are read as a `T`.
//!
//! Descriptors are `const` data built at compile time (by `#[derive(SharedLayout)]` or by the impls in
//! this module), and every descriptor carries a [`fingerprint`](Layout::fingerprint): a 64-bit FNV-1a
//! hash of its structure, computed by a `const fn`, so it is the same on every build and every machine.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, AtomicU64};

/// A type whose values can live in a shared, memory-mapped file.
///
/// Implementors are plain old data: a fixed size, no padding, no pointers, and a [`Layout`] that says
/// exactly which byte patterns are valid values and which bytes are atomics. Derive it with
/// `#[derive(SharedLayout)]` on a `#[repr(C)]` struct or a fieldless `#[repr(u8|u16|u32|u64)]` enum;
/// the derive proves all of this at compile time. Writing an impl by hand is rarely needed, and
/// `unsafe`: the store trusts the layout completely.
///
/// ```
/// use shmstore::{SharedLayout, layout::TypeKind};
///
/// #[derive(SharedLayout, Clone, Copy)]
/// #[repr(C)]
/// #[shared(version = 2)]
/// struct Point { x: i32, y: i32 }
///
/// let layout = Point::LAYOUT;
/// assert_eq!(layout.type_name, "Point");
/// assert_eq!((layout.size, layout.align, layout.version), (8, 4, 2));
/// let TypeKind::Struct { fields } = layout.kind else { unreachable!() };
/// assert_eq!(fields[1].name, "y");
/// assert_eq!(fields[1].offset, 4);
/// ```
///
/// # Safety
///
/// The store copies values in and out of the file as bytes, hands out `&Self` and `&mut Self` into
/// the mapping after checking nothing but `LAYOUT`, and lets other threads and processes use the
/// same bytes at the same time. An implementation therefore promises all of the following:
///
/// 1. **Size and alignment are exact**: `LAYOUT.size == size_of::<Self>()` and
///    `LAYOUT.align == align_of::<Self>()`.
/// 2. **No padding**: every byte of `Self` is part of a field (or element) that `LAYOUT`
///    describes, so every byte of every value is initialised and a byte copy is a value copy.
/// 3. **No pointers**: `Self` holds no pointers, references, or handles to process-local resources
///    (file descriptors, thread ids, ...), so its bytes mean the same in every process.
/// 4. **Validation is sufficient**: every byte pattern for which [`Layout::validate`] returns `Ok`
///    is a valid value of `Self`. (Patterns it rejects may be valid too; they are just refused.)
/// 5. **Interior mutability only through the described atomics**: every byte that can change
///    through a shared reference `&Self` belongs to a std atomic (`AtomicU32`, `AtomicU64`,
///    `AtomicI32`, `AtomicI64`, `AtomicBool`, or a `#[repr(transparent)]` wrapper of one), is only
///    ever changed through that atomic's methods, and is described by `LAYOUT` as a
///    [`TypeKind::Atomic`] of that atomic's primitive at that atomic's offset, nested as the type
///    is. Nothing else may be interior-mutable: no `Cell`, `RefCell`, `UnsafeCell`, `Mutex`, and
///    no wrapper around an atomic that `LAYOUT` describes as a plain integer. Conversely, bytes
///    described as an atomic belong to such an atomic. The store relies on this to read, under a
///    shared lock (while holders of read guards may be storing to the atomics), the atomics with
///    atomic loads of their own width and every other byte with plain reads; and, since atomics are
///    not `Copy`, a `Copy` implementor has no atomics at all.
/// 6. **No drop glue**: `std::mem::needs_drop::<Self>()` is `false`; values in the file are never
///    dropped.
/// 7. `Self: Send + Sync + 'static` (the supertraits; the compiler checks these).
///
/// # What the contract forbids, by example
///
/// This impl compiles, and breaks rule 5. `Hits` holds an `AtomicU64` that every holder of a read
/// guard may `fetch_add` through `&Hits`, but its layout calls it a plain `u64`. The store would then
/// copy those bytes with plain reads while another thread (or process) stores to them: a data race,
/// which is undefined behaviour, even though each rule about size, padding, pointers and validity
/// holds.
///
/// ```no_run
/// use std::sync::atomic::AtomicU64;
/// use shmstore::{Layout, Primitive, SharedLayout, TypeKind};
///
/// #[repr(transparent)]
/// struct Hits(AtomicU64);
///
/// // UNSOUND: do not do this. The layout must say `TypeKind::Atomic(Primitive::U64)`.
/// unsafe impl SharedLayout for Hits {
///     const LAYOUT: Layout = Layout::new("Hits", 8, 8, 1, TypeKind::Primitive(Primitive::U64));
/// }
/// ```
///
/// Derive it instead: the derive describes the field as the atomic it is.
///
/// ```
/// use std::sync::atomic::AtomicU64;
/// use shmstore::{Primitive, SharedLayout, TypeKind};
///
/// #[derive(SharedLayout)]
/// #[repr(transparent)]
/// struct Hits(AtomicU64);
///
/// let TypeKind::Struct { fields } = Hits::LAYOUT.kind else { unreachable!() };
/// assert_eq!(fields[0].layout.kind, TypeKind::Atomic(Primitive::U64));
/// assert!(Hits::LAYOUT.contains_atomics());
/// ```
///
/// The derive refuses `Cell`, `UnsafeCell`, locks and every other field type without a
/// `SharedLayout` impl, so derived types meet rule 5 by construction.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot live in shared memory",
    label = "`{Self}` does not implement `SharedLayout`",
    note = "shared fields must be fixed-width integers, floats, bool, fixed-size arrays, `FixedStr<N>`, \
            atomics, or types with `#[derive(SharedLayout)]`",
    note = "use `u64`/`i64` instead of `usize`/`isize`, `FixedStr<N>` instead of `String`/`&str`, and \
            `[T; N]` instead of `Vec<T>`"
)]
pub unsafe trait SharedLayout: Sized + Send + Sync + 'static {
    /// The complete description of this type's bytes.
    const LAYOUT: Layout;
}

/// A [`SharedLayout`] type made **entirely** of atomics: every byte of it belongs to a std atomic.
///
/// Such a value needs no lock to be used: every access to it is an atomic operation, which
/// synchronises itself across threads and processes. [`Shared::get`](crate::Shared::get) hands out
/// `&T` for such types without a guard, so that a shared counter costs what its `fetch_add` costs.
///
/// `#[derive(SharedLayout)]` implements it for every struct whose fields all implement it (the
/// impl is conditional on its field types, so a struct with one `u64` field simply does not get
/// it); the std atomics (`AtomicU32`, `AtomicU64`, `AtomicI32`, `AtomicI64`, `AtomicBool`) and
/// arrays of such types implement it here.
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use shmstore::{AllAtomic, SharedLayout};
///
/// #[derive(SharedLayout)]
/// #[repr(C)]
/// struct Hits { hits: AtomicU64, misses: [AtomicU64; 2] }
///
/// fn assert_all_atomic<T: AllAtomic>() {}
/// assert_all_atomic::<Hits>();
/// assert!(Hits::LAYOUT.is_all_atomic());
/// ```
///
/// # Safety
///
/// On top of the [`SharedLayout`] contract: `Self::LAYOUT` describes every byte of `Self` as part
/// of a [`TypeKind::Atomic`] (so [`Layout::is_all_atomic`] is `true`), and every byte of `Self` is
/// in fact part of such a std atomic. The store then reads and writes such values only with
/// atomic operations of each atomic's own width, and hands out `&Self` with no lock held.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not made entirely of atomics, so it cannot be used without a guard",
    label = "`{Self}` does not implement `AllAtomic`",
    note = "`Shared::get` gives `&T` without a lock only when every field of `T` is an atomic \
            (`AtomicU32`, `AtomicU64`, `AtomicI32`, `AtomicI64`, `AtomicBool`), an array of atomics, \
            or a struct made only of those",
    note = "for a type that holds other data, use a guard: `shared.read()?` gives `&T` while it lives"
)]
pub unsafe trait AllAtomic: SharedLayout {}

/// A fixed-width scalar type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Primitive {
    /// `u8`
    U8,
    /// `u16`
    U16,
    /// `u32`
    U32,
    /// `u64`
    U64,
    /// `u128`
    U128,
    /// `i8`
    I8,
    /// `i16`
    I16,
    /// `i32`
    I32,
    /// `i64`
    I64,
    /// `i128`
    I128,
    /// `f32`
    F32,
    /// `f64`
    F64,
    /// `bool`: only the bytes 0 and 1 are valid.
    Bool,
}

impl Primitive {
    /// Every primitive, in code order.
    pub const ALL: [Primitive; 13] = [
        Primitive::U8,
        Primitive::U16,
        Primitive::U32,
        Primitive::U64,
        Primitive::U128,
        Primitive::I8,
        Primitive::I16,
        Primitive::I32,
        Primitive::I64,
        Primitive::I128,
        Primitive::F32,
        Primitive::F64,
        Primitive::Bool,
    ];

    /// The stable one-byte code used in fingerprints and in the file's schema encoding.
    pub const fn code(self) -> u8 {
        match self {
            Primitive::U8 => 1,
            Primitive::U16 => 2,
            Primitive::U32 => 3,
            Primitive::U64 => 4,
            Primitive::U128 => 5,
            Primitive::I8 => 6,
            Primitive::I16 => 7,
            Primitive::I32 => 8,
            Primitive::I64 => 9,
            Primitive::I128 => 10,
            Primitive::F32 => 11,
            Primitive::F64 => 12,
            Primitive::Bool => 13,
        }
    }

    /// The primitive with this [`code`](Self::code), if any.
    pub const fn from_code(code: u8) -> Option<Primitive> {
        if code >= 1 && code <= 13 {
            Some(Self::ALL[(code - 1) as usize])
        } else {
            None
        }
    }

    /// Size in bytes.
    pub const fn size(self) -> usize {
        match self {
            Primitive::U8 | Primitive::I8 | Primitive::Bool => 1,
            Primitive::U16 | Primitive::I16 => 2,
            Primitive::U32 | Primitive::I32 | Primitive::F32 => 4,
            Primitive::U64 | Primitive::I64 | Primitive::F64 => 8,
            Primitive::U128 | Primitive::I128 => 16,
        }
    }

    /// The Rust name of the type (`"u16"`, `"bool"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            Primitive::U8 => "u8",
            Primitive::U16 => "u16",
            Primitive::U32 => "u32",
            Primitive::U64 => "u64",
            Primitive::U128 => "u128",
            Primitive::I8 => "i8",
            Primitive::I16 => "i16",
            Primitive::I32 => "i32",
            Primitive::I64 => "i64",
            Primitive::I128 => "i128",
            Primitive::F32 => "f32",
            Primitive::F64 => "f64",
            Primitive::Bool => "bool",
        }
    }
}

/// What a [`Layout`] is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypeKind {
    /// A scalar.
    Primitive(Primitive),
    /// A `std::sync::atomic` type over the given scalar (`AtomicU64` is `Atomic(U64)`).
    Atomic(Primitive),
    /// `[elem; len]`.
    Array {
        /// The element's layout.
        elem: &'static Layout,
        /// The number of elements.
        len: usize,
    },
    /// A struct, with its fields in declaration order.
    Struct {
        /// The fields, in declaration order.
        fields: &'static [Field],
    },
    /// A fieldless enum with an explicit integer representation.
    Enum {
        /// The integer type of the discriminant.
        repr: Primitive,
        /// The variants and their discriminant values.
        variants: &'static [Variant],
    },
    /// [`FixedStr<N>`](crate::FixedStr): UTF-8 text of at most `capacity` bytes, zero-padded.
    FixedStr {
        /// The capacity `N` in bytes.
        capacity: usize,
    },
}

/// One field of a struct layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    /// The field's name as written in the source.
    pub name: &'static str,
    /// Byte offset from the start of the struct.
    pub offset: usize,
    /// The field's own layout.
    pub layout: &'static Layout,
}

/// One variant of an enum layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    /// The variant's name.
    pub name: &'static str,
    /// Its discriminant, zero-extended to 64 bits.
    pub value: u64,
}

/// The versioned description of a shareable type.
///
/// Built at compile time; see [`SharedLayout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// The declared name: the struct or enum identifier, the primitive's name, `"FixedStr"`, or the
    /// atomic type's name. Empty for arrays; [`Layout::display_name`] renders the full name.
    pub type_name: &'static str,
    /// `size_of` the type.
    pub size: usize,
    /// `align_of` the type.
    pub align: usize,
    /// The user-declared version (`#[shared(version = N)]`, default 1). Not part of the fingerprint.
    pub version: u32,
    /// A stable 64-bit hash of the structure: field names, offsets, sizes and the kinds of every
    /// nested type. Type names and versions are not hashed, so renaming a struct keeps its data
    /// readable, while renaming, moving, resizing or retyping any field changes it.
    pub fingerprint: u64,
    /// What the type is made of.
    pub kind: TypeKind,
}

// Tags that separate the kinds inside the fingerprint (and the schema encoding).
pub(crate) const TAG_PRIMITIVE: u8 = 1;
pub(crate) const TAG_ATOMIC: u8 = 2;
pub(crate) const TAG_ARRAY: u8 = 3;
pub(crate) const TAG_STRUCT: u8 = 4;
pub(crate) const TAG_ENUM: u8 = 5;
pub(crate) const TAG_FIXED_STR: u8 = 6;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a over `bytes`, continuing from `hash`.
const fn fnv_bytes(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    hash
}

const fn fnv_u64(hash: u64, value: u64) -> u64 {
    fnv_bytes(hash, &value.to_le_bytes())
}

const fn fnv_str(hash: u64, s: &str) -> u64 {
    // Length-prefixed, so that ("ab", "c") and ("a", "bc") hash differently.
    fnv_bytes(fnv_u64(hash, s.len() as u64), s.as_bytes())
}

// The steps of a fingerprint, shared with `format::schema`, which recomputes the fingerprints of
// decoded schemas: both must hash exactly the same bytes in the same order, so the order is spelled
// out only here. A fingerprint is `fp_begin`, then the steps for its kind.

/// FNV-1a 64 of `bytes`: the fingerprints' hash, and the format's checksum.
pub(crate) const fn fnv1a(bytes: &[u8]) -> u64 {
    fnv_bytes(FNV_OFFSET, bytes)
}

/// Starts a fingerprint with the type's size and alignment.
pub(crate) const fn fp_begin(size: u64, align: u64) -> u64 {
    fnv_u64(fnv_u64(FNV_OFFSET, size), align)
}

/// Finishes the fingerprint of a primitive (`tag` = [`TAG_PRIMITIVE`]) or an atomic ([`TAG_ATOMIC`]).
pub(crate) const fn fp_scalar(h: u64, tag: u8, p: Primitive) -> u64 {
    fnv_bytes(h, &[tag, p.code()])
}

/// Finishes the fingerprint of an array of `len` elements whose own fingerprint is `elem`.
pub(crate) const fn fp_array(h: u64, len: u64, elem: u64) -> u64 {
    fnv_u64(fnv_u64(fnv_bytes(h, &[TAG_ARRAY]), len), elem)
}

/// Continues a struct's fingerprint with its field count; [`fp_field`] then adds each field in order.
pub(crate) const fn fp_struct(h: u64, field_count: u64) -> u64 {
    fnv_u64(fnv_bytes(h, &[TAG_STRUCT]), field_count)
}

/// Adds one struct field: its name, its offset and its type's fingerprint.
pub(crate) const fn fp_field(h: u64, name: &str, offset: u64, fingerprint: u64) -> u64 {
    fnv_u64(fnv_u64(fnv_str(h, name), offset), fingerprint)
}

/// Continues an enum's fingerprint with its repr and variant count; [`fp_variant`] then adds each
/// variant in order.
pub(crate) const fn fp_enum(h: u64, repr: Primitive, variant_count: u64) -> u64 {
    fnv_u64(fnv_bytes(h, &[TAG_ENUM, repr.code()]), variant_count)
}

/// Adds one enum variant: its name and its discriminant.
pub(crate) const fn fp_variant(h: u64, name: &str, value: u64) -> u64 {
    fnv_u64(fnv_str(h, name), value)
}

/// Finishes the fingerprint of a `FixedStr` of `capacity` bytes.
pub(crate) const fn fp_fixed_str(h: u64, capacity: u64) -> u64 {
    fnv_u64(fnv_bytes(h, &[TAG_FIXED_STR]), capacity)
}

const fn fingerprint_of(size: usize, align: usize, kind: &TypeKind) -> u64 {
    let h = fp_begin(size as u64, align as u64);
    match kind {
        TypeKind::Primitive(p) => fp_scalar(h, TAG_PRIMITIVE, *p),
        TypeKind::Atomic(p) => fp_scalar(h, TAG_ATOMIC, *p),
        TypeKind::Array { elem, len } => fp_array(h, *len as u64, elem.fingerprint),
        TypeKind::Struct { fields } => {
            let mut h = fp_struct(h, fields.len() as u64);
            let mut i = 0;
            while i < fields.len() {
                h = fp_field(h, fields[i].name, fields[i].offset as u64, fields[i].layout.fingerprint);
                i += 1;
            }
            h
        }
        TypeKind::Enum { repr, variants } => {
            let mut h = fp_enum(h, *repr, variants.len() as u64);
            let mut i = 0;
            while i < variants.len() {
                h = fp_variant(h, variants[i].name, variants[i].value);
                i += 1;
            }
            h
        }
        TypeKind::FixedStr { capacity } => fp_fixed_str(h, *capacity as u64),
    }
}

impl Layout {
    /// Builds a layout and computes its fingerprint. Used by the derive and by manual impls.
    pub const fn new(type_name: &'static str, size: usize, align: usize, version: u32, kind: TypeKind) -> Layout {
        Layout { type_name, size, align, version, fingerprint: fingerprint_of(size, align, &kind), kind }
    }

    /// The layout of `[elem; len]`.
    pub const fn array(elem: &'static Layout, len: usize, size: usize, align: usize) -> Layout {
        Layout::new("", size, align, 1, TypeKind::Array { elem, len })
    }

    /// Whether some byte patterns of this layout are not valid values (it holds a `bool`, an enum
    /// or a `FixedStr` somewhere), so that bytes must be checked with [`Layout::validate`] before
    /// they are read as the type.
    pub const fn needs_validation(&self) -> bool {
        match &self.kind {
            TypeKind::Primitive(p) | TypeKind::Atomic(p) => matches!(p, Primitive::Bool),
            TypeKind::Array { elem, len } => *len > 0 && elem.needs_validation(),
            TypeKind::Struct { fields } => {
                let mut i = 0;
                while i < fields.len() {
                    if fields[i].layout.needs_validation() {
                        return true;
                    }
                    i += 1;
                }
                false
            }
            TypeKind::Enum { .. } | TypeKind::FixedStr { .. } => true,
        }
    }

    /// Whether every byte of the type belongs to an atomic (a type with no bytes counts): such
    /// values can be used with no lock at all, through [`Shared::get`](crate::Shared::get). This is
    /// what [`AllAtomic`] promises for a type.
    pub const fn is_all_atomic(&self) -> bool {
        match &self.kind {
            TypeKind::Atomic(_) => true,
            TypeKind::Primitive(_) | TypeKind::Enum { .. } | TypeKind::FixedStr { .. } => false,
            TypeKind::Array { elem, len } => *len == 0 || elem.is_all_atomic(),
            TypeKind::Struct { fields } => {
                // The fields cover every byte: `SharedLayout` types have no padding.
                let mut covered = 0;
                let mut i = 0;
                while i < fields.len() {
                    if !fields[i].layout.is_all_atomic() {
                        return false;
                    }
                    covered += fields[i].layout.size;
                    i += 1;
                }
                covered == self.size
            }
        }
    }

    /// Whether the type holds an atomic anywhere. Such values are meant to be mutated in place by
    /// several processes at once, through a read guard; hold one guard for a batch of atomic
    /// operations, since each guard costs a kernel lock pair (see [`Shared`](crate::Shared)).
    pub const fn contains_atomics(&self) -> bool {
        match &self.kind {
            TypeKind::Atomic(_) => true,
            TypeKind::Primitive(_) | TypeKind::Enum { .. } | TypeKind::FixedStr { .. } => false,
            TypeKind::Array { elem, len } => *len > 0 && elem.contains_atomics(),
            TypeKind::Struct { fields } => {
                let mut i = 0;
                while i < fields.len() {
                    if fields[i].layout.contains_atomics() {
                        return true;
                    }
                    i += 1;
                }
                false
            }
        }
    }

    /// The full Rust-like name of the type: `Config`, `u16`, `[FixedStr<16>; 4]`.
    pub fn display_name(&self) -> String {
        match &self.kind {
            TypeKind::Array { elem, len } => format!("[{}; {len}]", elem.display_name()),
            TypeKind::FixedStr { capacity } => format!("FixedStr<{capacity}>"),
            _ => self.type_name.to_owned(),
        }
    }

    /// Checks that `bytes` hold a valid value of this layout.
    ///
    /// `bytes` must be exactly [`size`](Self::size) long. On failure the error names the offending
    /// field by its path (`config.mode`, `rows[3].enabled`) and the bad value.
    ///
    /// ```
    /// use shmstore::SharedLayout;
    /// assert!(bool::LAYOUT.validate(&[1]).is_ok());
    /// let err = bool::LAYOUT.validate(&[7]).unwrap_err();
    /// assert_eq!(err.to_string(), "value holds 7, which is not a valid bool (0 or 1)");
    /// ```
    pub fn validate(&self, bytes: &[u8]) -> Result<(), InvalidValue> {
        if bytes.len() != self.size {
            return Err(InvalidValue {
                path: "value".to_owned(),
                detail: format!("is {} bytes long, but `{}` is {} bytes", bytes.len(), self.display_name(), self.size),
            });
        }
        if !self.needs_validation() {
            return Ok(());
        }
        self.validate_at(bytes, &mut |_| "value".to_owned())
    }

    fn validate_at(&self, bytes: &[u8], path: &mut dyn FnMut(()) -> String) -> Result<(), InvalidValue> {
        match &self.kind {
            TypeKind::Primitive(Primitive::Bool) | TypeKind::Atomic(Primitive::Bool) => match bytes.first() {
                Some(0 | 1) => Ok(()),
                other => Err(InvalidValue {
                    path: path(()),
                    detail: format!("holds {}, which is not a valid bool (0 or 1)", other.copied().unwrap_or(0)),
                }),
            },
            TypeKind::Primitive(_) | TypeKind::Atomic(_) => Ok(()),
            TypeKind::Enum { repr, variants } => {
                let value = read_unsigned(bytes, *repr);
                if variants.iter().any(|v| v.value == value) {
                    Ok(())
                } else {
                    Err(InvalidValue {
                        path: path(()),
                        detail: format!("holds {value}, which is not a variant of enum `{}`", self.type_name),
                    })
                }
            }
            TypeKind::FixedStr { capacity } => check_fixed_str(&bytes[..(*capacity).min(bytes.len())])
                .map_err(|detail| InvalidValue { path: path(()), detail }),
            TypeKind::Array { elem, len } => {
                if !elem.needs_validation() {
                    return Ok(());
                }
                for i in 0..*len {
                    let start = i * elem.size;
                    let Some(chunk) = bytes.get(start..start + elem.size) else {
                        return Err(InvalidValue { path: path(()), detail: "is shorter than its layout".into() });
                    };
                    elem.validate_at(chunk, &mut |()| format!("{}[{i}]", path(())))?;
                }
                Ok(())
            }
            TypeKind::Struct { fields } => {
                for f in fields.iter().filter(|f| f.layout.needs_validation()) {
                    let Some(chunk) = bytes.get(f.offset..f.offset + f.layout.size) else {
                        return Err(InvalidValue { path: path(()), detail: "is shorter than its layout".into() });
                    };
                    f.layout.validate_at(chunk, &mut |()| format!("{}.{}", path(()), f.name))?;
                }
                Ok(())
            }
        }
    }
}

/// Reads an unsigned little- or big-endian (native) integer of the primitive's width.
pub(crate) fn read_unsigned(bytes: &[u8], repr: Primitive) -> u64 {
    let mut buf = [0u8; 8];
    let n = repr.size().min(8).min(bytes.len());
    if cfg!(target_endian = "little") {
        buf[..n].copy_from_slice(&bytes[..n]);
        u64::from_le_bytes(buf)
    } else {
        buf[8 - n..].copy_from_slice(&bytes[..n]);
        u64::from_be_bytes(buf)
    }
}

/// The rule for `FixedStr` bytes: UTF-8 up to the first NUL, and only NULs after it.
pub(crate) fn check_fixed_str(bytes: &[u8]) -> Result<(), String> {
    let len = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    if let Err(e) = std::str::from_utf8(&bytes[..len]) {
        return Err(format!("is not valid UTF-8 after byte {}", e.valid_up_to()));
    }
    if bytes[len..].iter().any(|&b| b != 0) {
        return Err(format!("has non-zero bytes after its end at byte {len}"));
    }
    Ok(())
}

impl fmt::Display for Layout {
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

/// Bytes that are not a valid value of their type: a `bool` that is neither 0 nor 1, an enum
/// discriminant with no variant, or a `FixedStr` that is not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    /// Where the bad bytes are: `value`, `value.mode`, `value.rows[3]`.
    pub path: String,
    /// What is wrong with them.
    pub detail: String,
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.path, self.detail)
    }
}

impl std::error::Error for InvalidValue {}

macro_rules! primitive_impls {
    ($($t:ty => $p:ident),* $(,)?) => {$(
        // SAFETY: a primitive has no padding, no pointers, no drop glue and no interior
        // mutability; its size and align are taken from the compiler; every byte pattern is valid
        // except for `bool`, which `Layout::validate` checks (only 0 and 1 pass).
        unsafe impl SharedLayout for $t {
            const LAYOUT: Layout = Layout::new(
                Primitive::$p.name(),
                std::mem::size_of::<$t>(),
                std::mem::align_of::<$t>(),
                1,
                TypeKind::Primitive(Primitive::$p),
            );
        }
    )*};
}

primitive_impls!(
    u8 => U8, u16 => U16, u32 => U32, u64 => U64, u128 => U128,
    i8 => I8, i16 => I16, i32 => I32, i64 => I64, i128 => I128,
    f32 => F32, f64 => F64, bool => Bool,
);

macro_rules! atomic_impls {
    ($($t:ident => $p:ident),* $(,)?) => {$(
        // SAFETY: the std atomics have the same size and bit validity as their integer (or bool)
        // counterpart, no padding, no pointers and no drop glue. `AtomicBool` is validated like
        // `bool`. All their bytes can change through `&Self`, only through their own methods, and
        // the layout describes them as exactly this atomic (rule 5 of the contract).
        unsafe impl SharedLayout for $t {
            const LAYOUT: Layout = Layout::new(
                stringify!($t),
                std::mem::size_of::<$t>(),
                std::mem::align_of::<$t>(),
                1,
                TypeKind::Atomic(Primitive::$p),
            );
        }
    )*};
}

atomic_impls!(AtomicU32 => U32, AtomicU64 => U64, AtomicI32 => I32, AtomicI64 => I64, AtomicBool => Bool);

// SAFETY: an array has no padding between its elements (its size is `N * size_of::<T>()`), holds no
// pointers and has no drop glue because `T` has none, is valid when each element is, which is what
// `Layout::validate` checks for `TypeKind::Array`, and is interior-mutable exactly where its
// elements are, each described by the element layout at its own offset.
unsafe impl<T: SharedLayout, const N: usize> SharedLayout for [T; N] {
    const LAYOUT: Layout = Layout::array(&T::LAYOUT, N, std::mem::size_of::<[T; N]>(), std::mem::align_of::<[T; N]>());
}

macro_rules! all_atomic_impls {
    ($($t:ident),* $(,)?) => {$(
        // SAFETY: every byte of a std atomic belongs to that atomic, and its layout above is a
        // `TypeKind::Atomic`.
        unsafe impl AllAtomic for $t {}
    )*};
}

all_atomic_impls!(AtomicU32, AtomicU64, AtomicI32, AtomicI64, AtomicBool);

// SAFETY: an array has no bytes of its own besides its elements' (no padding between them), and
// each element's bytes all belong to atomics (`T: AllAtomic`); its layout is an array of `T`'s.
unsafe impl<T: AllAtomic, const N: usize> AllAtomic for [T; N] {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn primitive_codes_round_trip() {
        for p in Primitive::ALL {
            assert_eq!(Primitive::from_code(p.code()), Some(p));
        }
        assert_eq!(Primitive::from_code(0), None);
        assert_eq!(Primitive::from_code(14), None);
    }

    /// The fingerprints of the leaf types, as literals. They are part of the file format: if this
    /// test fails, existing files stop opening; change them only together with the format
    /// version. `tests/fingerprint.rs` pins a struct (its fields, offsets and nesting); this pins
    /// every primitive and atomic kind, which that struct does not reach.
    ///
    /// The literals were computed outside this crate (a few lines of Python) from the documented
    /// sequence: FNV-1a 64 over the size and the alignment as little-endian `u64`s, then the tag
    /// byte (1 primitive, 2 atomic, 3 array, 6 `FixedStr`) and the primitive's code byte (or, for an
    /// array, its length and its element's fingerprint; for a `FixedStr`, its capacity, as `u64`s).
    #[test]
    fn leaf_fingerprints_are_pinned() {
        let pinned: [(Layout, u64); 20] = [
            (u8::LAYOUT, 0xc08b_3f94_579f_5e97),
            (u16::LAYOUT, 0xe698_b3ec_a7dc_89aa),
            (u32::LAYOUT, 0x9a7d_ce3c_0762_389d),
            (u64::LAYOUT, 0x32b3_949d_4856_d238),
            (u128::LAYOUT, 0xed82_1e88_c8f9_eceb),
            (i8::LAYOUT, 0xc08b_3c94_579f_597e),
            (i16::LAYOUT, 0xe698_b0ec_a7dc_8491),
            (i32::LAYOUT, 0x9a7d_c33c_0762_25ec),
            (i64::LAYOUT, 0x32b3_919d_4856_cd1f),
            (i128::LAYOUT, 0xed82_1b88_c8f9_e7d2),
            (f32::LAYOUT, 0x9a7d_c63c_0762_2b05),
            (f64::LAYOUT, 0x32b3_8c9d_4856_c4a0),
            (bool::LAYOUT, 0xc08b_3394_579f_4a33),
            (AtomicU32::LAYOUT, 0x9a87_fe3c_076a_deb2),
            (AtomicU64::LAYOUT, 0x32bd_c69d_485f_7bb3),
            (AtomicI32::LAYOUT, 0x9a88_053c_076a_ea97),
            (AtomicI64::LAYOUT, 0x32bd_d19d_485f_8e64),
            (AtomicBool::LAYOUT, 0xc095_7394_57a8_0b78),
            (<[u8; 4]>::LAYOUT, 0x0fb8_dc48_ca3d_c968),
            (crate::FixedStr::<16>::LAYOUT, 0xfbfc_383e_d0c0_ea06),
        ];
        for (layout, fingerprint) in pinned {
            assert_eq!(layout.fingerprint, fingerprint, "{}", layout.display_name());
        }
    }

    #[test]
    fn bool_and_arrays_validate() {
        assert!(<[bool; 3]>::LAYOUT.validate(&[0, 1, 0]).is_ok());
        let err = <[bool; 3]>::LAYOUT.validate(&[0, 1, 2]).unwrap_err();
        assert_eq!(err.path, "value[2]");
        assert!(<[u8; 3]>::LAYOUT.validate(&[9, 9, 9]).is_ok());
        assert!(u64::LAYOUT.validate(&[0; 7]).is_err());
    }

    #[test]
    fn display_names() {
        assert_eq!(<[[u16; 2]; 3]>::LAYOUT.display_name(), "[[u16; 2]; 3]");
        assert_eq!(AtomicU64::LAYOUT.display_name(), "AtomicU64");
        assert!(AtomicBool::LAYOUT.contains_atomics());
        assert!(!u64::LAYOUT.contains_atomics());
    }

    #[test]
    fn all_atomic_means_every_byte_is_an_atomic() {
        assert!(AtomicU64::LAYOUT.is_all_atomic());
        assert!(<[AtomicBool; 3]>::LAYOUT.is_all_atomic());
        assert!(<[[AtomicI32; 2]; 2]>::LAYOUT.is_all_atomic());
        assert!(!u64::LAYOUT.is_all_atomic());
        assert!(!<[u32; 2]>::LAYOUT.is_all_atomic());
        static FIELDS: [Field; 2] = [
            Field { name: "a", offset: 0, layout: &AtomicU32::LAYOUT },
            Field { name: "b", offset: 4, layout: &u32::LAYOUT },
        ];
        let mixed = Layout::new("Mixed", 8, 4, 1, TypeKind::Struct { fields: &FIELDS });
        assert!(mixed.contains_atomics() && !mixed.is_all_atomic(), "one plain field is enough to refuse");
        static ONE: [Field; 1] = [Field { name: "a", offset: 0, layout: &AtomicU32::LAYOUT }];
        let short = Layout::new("Short", 8, 4, 1, TypeKind::Struct { fields: &ONE });
        assert!(!short.is_all_atomic(), "bytes no field covers are not atomics");
        let whole = Layout::new("Whole", 4, 4, 1, TypeKind::Struct { fields: &ONE });
        assert!(whole.is_all_atomic());
    }
}
