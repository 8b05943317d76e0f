//! The `#[derive(SharedLayout)]` macro for [shmstore](https://docs.rs/shmstore).
//!
//! Use it through the `shmstore` crate, which re-exports it as `shmstore::SharedLayout`.
//!
//! The derive is split by phase, like `serde_derive` and `thiserror-impl`:
//! - `ast.rs` turns the `syn` input into the derive's own model;
//! - `attr.rs` reads `#[repr(...)]` and `#[shared(...)]`;
//! - `valid.rs` checks the model and collects every error, each spanned on the offending item;
//! - `expand.rs` generates the impl, with compile-time assertions for what only the compiler knows
//!   (field types implement `SharedLayout`, no padding, aligned packed fields);
//! - `fallback.rs` emits the errors plus a stub impl, so that a rejected type causes no follow-on
//!   errors where it is used.
#![warn(missing_docs)]

mod ast;
mod attr;
mod expand;
mod fallback;
mod valid;

use proc_macro::TokenStream;

/// Derives `shmstore::SharedLayout`: a compile-time description of the type's bytes that lets it live
/// in a shared, memory-mapped file.
///
/// Accepted shapes:
/// - a struct with named or tuple fields and `#[repr(C)]` (optionally with `align(N)` or
///   `packed`/`packed(N)`) or `#[repr(transparent)]`, whose fields all implement `SharedLayout`
///   and which has no padding (fill any gap with an explicit `_pad: [u8; N]` field);
/// - a fieldless enum with `#[repr(u8)]`, `#[repr(u16)]`, `#[repr(u32)]` or `#[repr(u64)]`.
///
/// The optional `#[shared(version = N)]` attribute sets the layout's version (a `u32`, default 1).
///
/// Everything else is rejected at compile time with an error that says what to write instead:
/// missing `repr(C)`, padding, references, pointers, heap types (`String`, `Vec`, `Box`, ...),
/// `usize`, generic types, enums with fields or without an unsigned integer `repr`, unions.
///
/// ```
/// use shmstore::{FixedStr, SharedLayout, TypeKind};
///
/// #[derive(SharedLayout, Clone, Copy)]
/// #[repr(u8)]
/// enum Mode {
///     Idle,
///     Serving = 4,
/// }
///
/// #[derive(SharedLayout)]
/// #[repr(C)]
/// #[shared(version = 3)]
/// struct Config {
///     name: FixedStr<14>,
///     mode: Mode,
///     verbose: bool,
///     max_conn: u32,
/// }
///
/// let layout = Config::LAYOUT;
/// assert_eq!((layout.type_name, layout.size, layout.version), ("Config", 20, 3));
/// let TypeKind::Struct { fields } = layout.kind else { unreachable!() };
/// assert_eq!(fields[3].name, "max_conn");
/// assert_eq!(fields[3].offset, 16);
/// ```
///
/// A gap between fields is a compile error that names the fields and the fix:
///
/// ```compile_fail
/// #[derive(shmstore::SharedLayout)]
/// #[repr(C)]
/// struct Config {
///     verbose: bool,
///     max_conn: u32, // 3 padding bytes before this field: add `_pad: [u8; 3]` after `verbose`
/// }
/// ```
#[proc_macro_derive(SharedLayout, attributes(shared))]
pub fn derive_shared_layout(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).into()
}
