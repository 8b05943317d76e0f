//! Checks on the parsed input. Every problem found is recorded, spanned on the offending item, so the
//! user sees all of them in one build; each message says what to write instead.
//!
//! Only what can be decided from the syntax is checked here. Facts that need the compiler (whether a
//! field type implements `SharedLayout`, whether the struct has padding, whether a packed field is
//! aligned) are checked by assertions that `expand.rs` generates.

use std::fmt::Display;

use proc_macro2::Span;
use quote::ToTokens;
use syn::{GenericArgument, GenericParam, PathArguments, Type};

use crate::ast::{type_to_string, Data, Field, Input, Variant};
use crate::attr::IntRepr;

/// Accumulates errors; [`Errors::finish`] joins them into one with `syn::Error::combine`.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    /// Records an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Records an error spanned on `tokens` (from their first to their last token).
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// Records an error at `span`.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// All recorded errors as one, or `Ok` if there were none.
    pub(crate) fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// Runs every check on the input.
pub(crate) fn check(input: &Input, errors: &mut Errors) {
    check_generics(input, errors);
    match &input.data {
        Data::Union(token) => errors.spanned(
            token,
            format!(
                "unions cannot derive `SharedLayout`, because nothing records which field of `{}` holds a \
                 valid value: use a fieldless `#[repr(u8)]` enum as a tag, next to a `#[repr(C)]` struct \
                 for each case",
                input.ident
            ),
        ),
        Data::Struct(fields) => {
            check_struct_repr(input, errors);
            for field in fields {
                check_field(field, errors);
            }
        }
        Data::Enum(variants) => {
            check_enum_repr(input, errors);
            check_variants(input, variants, errors);
        }
    }
}

fn check_generics(input: &Input, errors: &mut Errors) {
    let kind = input.kind_word();
    for param in &input.generics.params {
        match param {
            GenericParam::Type(t) => errors.spanned(
                param,
                format!(
                    "generic types cannot derive `SharedLayout`, because a shared layout is fixed when the \
                     file is written: remove the type parameter `{}` and use a concrete type in the {kind} \
                     (write one {kind} per type you need)",
                    t.ident
                ),
            ),
            GenericParam::Lifetime(l) => errors.spanned(
                param,
                format!(
                    "shared types cannot borrow, because a reference is only meaningful in the process \
                     that made it: remove the lifetime parameter `{}` and store owned data instead \
                     (`FixedStr<N>` for text, `[T; N]` for lists)",
                    l.lifetime
                ),
            ),
            GenericParam::Const(c) => errors.spanned(
                param,
                format!(
                    "generic types cannot derive `SharedLayout`, because a shared layout is fixed when the \
                     file is written: remove the const parameter `{}` and write the number itself, as in \
                     `[u8; 64]` (write one {kind} per size you need)",
                    c.ident
                ),
            ),
        }
    }
}

fn check_struct_repr(input: &Input, errors: &mut Errors) {
    let repr = &input.repr;
    if repr.c.is_some() || repr.transparent.is_some() {
        return;
    }
    let name = input.ident;
    if let Some(span) = repr.rust {
        errors.at(
            span,
            format!(
                "`repr(Rust)` lets the compiler reorder the fields of `{name}` and change its layout \
                 between builds: write `#[repr(C)]` instead"
            ),
        );
    } else if let Some((int, span)) = repr.int {
        errors.at(
            span,
            format!(
                "a struct cannot have an integer representation: write `#[repr(C)]` instead of \
                 `#[repr({})]` on `{name}`",
                int.name()
            ),
        );
    } else if let Some((modifier, span)) = repr_modifier(repr) {
        errors.at(
            span,
            format!(
                "`{modifier}` alone keeps the default representation, which lets the compiler reorder the \
                 fields of `{name}`: write `#[repr(C, {modifier})]`"
            ),
        );
    } else {
        errors.spanned(
            name,
            format!(
                "struct `{name}` needs `#[repr(C)]` to derive `SharedLayout`: without it the compiler may \
                 reorder its fields and change its layout between builds; add `#[repr(C)]` to the struct"
            ),
        );
    }
}

/// `packed` or `align(N)`, as written, if the repr has one.
fn repr_modifier(repr: &crate::attr::Repr) -> Option<(String, Span)> {
    if let Some(span) = repr.packed {
        return Some(("packed".to_owned(), span));
    }
    repr.align.as_ref().map(|(n, span)| (format!("align({n})"), *span))
}

const UNSIGNED: &str = "`#[repr(u8)]` (or `u16`, `u32`, `u64`)";

fn check_enum_repr(input: &Input, errors: &mut Errors) {
    let repr = &input.repr;
    let name = input.ident;
    match repr.int {
        Some((int, _)) if int.primitive().is_some() => {}
        Some((int, span)) => {
            let advice = match int {
                IntRepr::I8 | IntRepr::I16 | IntRepr::I32 | IntRepr::I64 => format!(
                    "enum `{name}` has signed discriminants, which are not supported: write \
                     `#[repr(u{0})]` instead of `#[repr(i{0})]`, and give every variant a non-negative \
                     discriminant",
                    &int.name()[1..]
                ),
                IntRepr::Usize | IntRepr::Isize => format!(
                    "`repr({})` makes enum `{name}` change size between 32-bit and 64-bit processes: write \
                     `#[repr(u32)]` or `#[repr(u64)]` instead",
                    int.name()
                ),
                _ => format!(
                    "`repr({})` discriminants are not supported in enum `{name}`: write `#[repr(u64)]` or a \
                     smaller {UNSIGNED}",
                    int.name()
                ),
            };
            errors.at(span, advice);
        }
        None => {
            let message = if let Some(span) = repr.c.or(repr.transparent).or(repr.rust) {
                (
                    span,
                    format!(
                        "this representation does not fix the size of the discriminant of enum `{name}`: \
                         write {UNSIGNED} instead"
                    ),
                )
            } else {
                (
                    name.span(),
                    format!(
                        "enum `{name}` needs an explicit unsigned integer representation to derive \
                         `SharedLayout`: add {UNSIGNED} to the enum, so that its discriminant has a fixed \
                         size"
                    ),
                )
            };
            errors.at(message.0, message.1);
        }
    }
    if let Some((n, span)) = &repr.align {
        errors.at(
            *span,
            format!(
                "`align({n})` adds padding bytes after the discriminant of enum `{name}`: remove it, and \
                 put the enum in a `#[repr(C, align({n}))]` struct with explicit padding if you need the \
                 alignment"
            ),
        );
    }
}

fn check_variants(input: &Input, variants: &[Variant], errors: &mut Errors) {
    let name = input.ident;
    if variants.is_empty() {
        errors.spanned(
            name,
            format!("enum `{name}` has no variants, so no value of it can be stored: add at least one variant"),
        );
    }
    for v in variants {
        let ident = v.ident;
        match v.fields {
            syn::Fields::Unit => {}
            fields if fields.is_empty() => errors.spanned(
                fields,
                format!(
                    "variant `{name}::{ident}` is written with empty brackets: write a plain `{ident}`, \
                     since only fieldless variants can derive `SharedLayout`"
                ),
            ),
            fields => errors.spanned(
                fields,
                format!(
                    "variant `{name}::{ident}` has fields, but only fieldless enums can derive \
                     `SharedLayout`: make it a plain `{ident}` and keep its data in a `#[repr(C)]` struct \
                     next to the enum (for example `struct Tagged {{ tag: {name}, data: ... }}`)"
                ),
            ),
        }
    }
}

fn check_field(field: &Field, errors: &mut Errors) {
    if let Some(error) = unsupported_type(field.ty) {
        errors.push(error);
    }
}

/// If `ty` is a type that can never be shared (a pointer, a heap owner, `usize`, ...), an error that
/// says what to use instead, spanned on it.
///
/// Detection is syntactic and conservative: anything not recognised here is left to the generated
/// `SharedLayout` assertion, which the compiler checks with the real types.
pub(crate) fn unsupported_type(ty: &Type) -> Option<syn::Error> {
    let shown = type_to_string(ty);
    let message = match ty {
        Type::Paren(t) => return unsupported_type(&t.elem),
        Type::Group(t) => return unsupported_type(&t.elem),
        Type::Array(a) => return unsupported_type(&a.elem),
        Type::Reference(r) => match &*r.elem {
            Type::Path(p) if p.qself.is_none() && p.path.is_ident("str") => format!(
                "`{shown}` cannot live in shared memory: a reference points into one process's memory; use \
                 `FixedStr<N>`, UTF-8 text of at most N bytes stored inline, as in `FixedStr<64>`"
            ),
            Type::Slice(s) => format!(
                "`{shown}` cannot live in shared memory: a reference points into one process's memory; use \
                 a fixed-size array `[{}; N]` stored inline",
                type_to_string(&s.elem)
            ),
            elem => format!(
                "`{shown}` cannot live in shared memory: a reference points into one process's memory; \
                 store the `{}` itself, or an index into a shared array as a `u32` or `u64`",
                type_to_string(elem)
            ),
        },
        Type::Ptr(_) => format!(
            "`{shown}` cannot live in shared memory: an address means something only in the process that \
             made it; store an index or a byte offset as a `u64` instead"
        ),
        Type::BareFn(_) => format!(
            "`{shown}` cannot live in shared memory: code addresses differ between processes and builds; \
             store a fieldless `#[repr(u8)]` enum that names the function, and match on it"
        ),
        Type::TraitObject(_) | Type::ImplTrait(_) => format!(
            "`{shown}` cannot live in shared memory: it has no fixed size and its vtable pointer is \
             process-local; use a concrete type, or a `#[repr(u8)]` enum tag plus a struct per case"
        ),
        Type::Tuple(t) if t.elems.is_empty() => "`()` holds no data: remove the field".to_owned(),
        Type::Tuple(_) => format!(
            "`{shown}` cannot live in shared memory: tuples have no guaranteed layout; use a \
             `#[derive(SharedLayout)]` `#[repr(C)]` struct with named fields instead"
        ),
        Type::Slice(s) => {
            format!("`{shown}` has no fixed size: use an array with a fixed length, `[{}; N]`", type_to_string(&s.elem))
        }
        Type::Never(_) => "`!` has no values: remove the field".to_owned(),
        Type::Path(p) if p.qself.is_none() => return unsupported_path(ty, &p.path, &shown),
        _ => return None,
    };
    Some(syn::Error::new_spanned(ty, message))
}

const HEAP: &str = "cannot live in shared memory: it points to a buffer in one process's heap";
const FIXED_STR: &str = "use `FixedStr<N>`, UTF-8 text of at most N bytes stored inline, as in `FixedStr<64>`";

fn unsupported_path(ty: &Type, path: &syn::Path, shown: &str) -> Option<syn::Error> {
    // Only judge names that are unambiguous: a bare name (`Vec<u8>`) or a path into the standard
    // library (`std::vec::Vec<u8>`). A user's own `my::Vec` may well be fine.
    let std_path = path.segments.len() == 1
        || path.segments.first().is_some_and(|s| matches!(s.ident.to_string().as_str(), "std" | "core" | "alloc"));
    if !std_path {
        return None;
    }
    let last = path.segments.last()?;
    let arg = first_type_arg(&last.arguments).map(type_to_string);
    let arg_or = |default: &str| arg.clone().unwrap_or_else(|| default.to_owned());
    let message = match last.ident.to_string().as_str() {
        "String" | "CString" | "OsString" | "PathBuf" | "Cow" => format!("`{shown}` {HEAP}; {FIXED_STR}"),
        "str" | "CStr" | "OsStr" | "Path" => format!("`{shown}` has no fixed size; {FIXED_STR}"),
        "Vec" | "VecDeque" | "LinkedList" | "BinaryHeap" => format!(
            "`{shown}` {HEAP}; use a fixed-size array `[{}; N]` stored inline (with a length field such as \
             `len: u32` if it is not always full)",
            arg_or("T")
        ),
        "HashMap" | "BTreeMap" | "HashSet" | "BTreeSet" => format!(
            "`{shown}` {HEAP}; use a fixed-size array of entries, `[Entry; N]` where `Entry` is a \
             `#[derive(SharedLayout)]` struct, plus a length field such as `len: u32`"
        ),
        "Box" => format!("`{shown}` {HEAP}; store the `{}` itself, inline", arg_or("T")),
        "Rc" | "Arc" | "Weak" => format!(
            "`{shown}` {HEAP}; store the `{}` itself, inline (for a value that several processes update, \
             use an atomic such as `AtomicU64`)",
            arg_or("T")
        ),
        "Option" => format!(
            "`{shown}` has no layout that other processes can check: store the `{}` next to a `bool` flag \
             (as in `has_value: bool, value: {0}`), or reserve a sentinel value such as 0",
            arg_or("T")
        ),
        "Result" => format!(
            "`{shown}` has no layout that other processes can check: store a fieldless `#[repr(u8)]` enum \
             for the outcome, next to fields for the values"
        ),
        "usize" => format!(
            "`{shown}` is 4 bytes in 32-bit processes and 8 in 64-bit ones: use `u64` (or `u32`) so that \
             every process agrees on the layout"
        ),
        "isize" => format!(
            "`{shown}` is 4 bytes in 32-bit processes and 8 in 64-bit ones: use `i64` (or `i32`) so that \
             every process agrees on the layout"
        ),
        "AtomicUsize" => format!("`{shown}` changes size between 32-bit and 64-bit processes: use `AtomicU64`"),
        "AtomicIsize" => format!("`{shown}` changes size between 32-bit and 64-bit processes: use `AtomicI64`"),
        "AtomicPtr" | "NonNull" => format!(
            "`{shown}` cannot live in shared memory: an address means something only in the process that \
             made it; store an index or a byte offset as a `u64` (or `AtomicU64`) instead"
        ),
        "char" => format!(
            "`{shown}` is not supported: store a `u32` and convert it with `char::from_u32`, or use \
             `FixedStr<4>` to keep one character as text"
        ),
        "Cell" | "RefCell" | "UnsafeCell" | "OnceCell" | "Mutex" | "RwLock" | "OnceLock" | "Condvar" => {
            format!(
                "`{shown}` only coordinates threads of one process: for values that several processes \
                 update in place, use atomics (`AtomicU32`, `AtomicU64`, `AtomicBool`, ...)"
            )
        }
        _ => return None,
    };
    Some(syn::Error::new_spanned(ty, message))
}

fn first_type_arg(args: &PathArguments) -> Option<&Type> {
    match args {
        PathArguments::AngleBracketed(a) => a.args.iter().find_map(|arg| match arg {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        }),
        _ => None,
    }
}

/// Whether `ty` is, by its syntax, probably neither `Send` nor `Sync`: it holds a raw pointer,
/// `NonNull`, `Rc`, a `Cell`, or a trait object without `Send + Sync`, possibly inside an array,
/// a tuple, a reference or a standard container.
///
/// `fallback.rs` uses this to decide whether a stub impl could exist at all: `SharedLayout` requires
/// `Send + Sync`, so a stub for such a type would only move the errors to every place that uses it.
pub(crate) fn is_thread_unsafe(ty: &Type) -> bool {
    match ty {
        Type::Ptr(_) => true,
        Type::Paren(t) => is_thread_unsafe(&t.elem),
        Type::Group(t) => is_thread_unsafe(&t.elem),
        Type::Array(a) => is_thread_unsafe(&a.elem),
        Type::Slice(s) => is_thread_unsafe(&s.elem),
        Type::Reference(r) => is_thread_unsafe(&r.elem),
        Type::Tuple(t) => t.elems.iter().any(is_thread_unsafe),
        Type::TraitObject(t) => {
            let has = |name: &str| {
                t.bounds.iter().any(|b| {
                    matches!(b, syn::TypeParamBound::Trait(tb)
                        if tb.path.segments.last().is_some_and(|s| s.ident == name))
                })
            };
            !(has("Send") && has("Sync"))
        }
        Type::Path(p) if p.qself.is_none() => {
            let Some(last) = p.path.segments.last() else {
                return false;
            };
            let name = last.ident.to_string();
            if matches!(name.as_str(), "NonNull" | "Rc" | "Cell" | "RefCell" | "UnsafeCell" | "OnceCell") {
                return true;
            }
            match &last.arguments {
                PathArguments::AngleBracketed(a) => a.args.iter().any(|arg| match arg {
                    GenericArgument::Type(t) => is_thread_unsafe(t),
                    _ => false,
                }),
                _ => false,
            }
        }
        _ => false,
    }
}
