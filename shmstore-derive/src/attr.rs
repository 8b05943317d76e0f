//! Parsing of the two attributes the derive reads: `#[repr(...)]` and `#[shared(...)]`.
//!
//! Parsing only records what was written, with spans; whether it is acceptable is decided in
//! `valid.rs`. Malformed `#[shared(...)]` attributes are reported here, since nothing else would
//! report them. Malformed `#[repr(...)]` attributes are left to rustc, which already reports them.

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;
use syn::{Attribute, LitInt, Token};

use crate::valid::Errors;

/// An integer type named in `#[repr(...)]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntRepr {
    U8,
    U16,
    U32,
    U64,
    U128,
    Usize,
    I8,
    I16,
    I32,
    I64,
    I128,
    Isize,
}

impl IntRepr {
    fn from_ident(name: &str) -> Option<IntRepr> {
        Some(match name {
            "u8" => IntRepr::U8,
            "u16" => IntRepr::U16,
            "u32" => IntRepr::U32,
            "u64" => IntRepr::U64,
            "u128" => IntRepr::U128,
            "usize" => IntRepr::Usize,
            "i8" => IntRepr::I8,
            "i16" => IntRepr::I16,
            "i32" => IntRepr::I32,
            "i64" => IntRepr::I64,
            "i128" => IntRepr::I128,
            "isize" => IntRepr::Isize,
            _ => return None,
        })
    }

    /// The name as written in Rust source.
    pub(crate) fn name(self) -> &'static str {
        match self {
            IntRepr::U8 => "u8",
            IntRepr::U16 => "u16",
            IntRepr::U32 => "u32",
            IntRepr::U64 => "u64",
            IntRepr::U128 => "u128",
            IntRepr::Usize => "usize",
            IntRepr::I8 => "i8",
            IntRepr::I16 => "i16",
            IntRepr::I32 => "i32",
            IntRepr::I64 => "i64",
            IntRepr::I128 => "i128",
            IntRepr::Isize => "isize",
        }
    }

    /// The `::shmstore::Primitive` variant for the supported enum representations.
    pub(crate) fn primitive(self) -> Option<&'static str> {
        match self {
            IntRepr::U8 => Some("U8"),
            IntRepr::U16 => Some("U16"),
            IntRepr::U32 => Some("U32"),
            IntRepr::U64 => Some("U64"),
            _ => None,
        }
    }
}

/// Everything written in the type's `#[repr(...)]` attributes (there may be several).
#[derive(Default)]
pub(crate) struct Repr {
    /// `C`.
    pub c: Option<Span>,
    /// `transparent`.
    pub transparent: Option<Span>,
    /// `Rust`, written explicitly.
    pub rust: Option<Span>,
    /// `u8`, `i32`, ...
    pub int: Option<(IntRepr, Span)>,
    /// `packed` or `packed(N)`.
    pub packed: Option<Span>,
    /// `align(N)`, with N as written.
    pub align: Option<(String, Span)>,
}

impl Repr {
    pub(crate) fn from_attrs(attrs: &[Attribute]) -> Repr {
        let mut repr = Repr::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("repr")) {
            // A malformed `repr` is a rustc error already; whatever we could not parse is ignored.
            let _ = attr.parse_nested_meta(|meta| {
                let span = meta.path.span();
                let Some(ident) = meta.path.get_ident() else {
                    return Ok(());
                };
                let name = ident.to_string();
                match name.as_str() {
                    "C" => repr.c = Some(span),
                    "transparent" => repr.transparent = Some(span),
                    "Rust" => repr.rust = Some(span),
                    "packed" => {
                        repr.packed = Some(span);
                        if meta.input.peek(syn::token::Paren) {
                            let content;
                            syn::parenthesized!(content in meta.input);
                            content.parse::<LitInt>()?;
                        }
                    }
                    "align" => {
                        let content;
                        syn::parenthesized!(content in meta.input);
                        let n: LitInt = content.parse()?;
                        repr.align = Some((n.base10_digits().to_owned(), span));
                    }
                    other => {
                        if let Some(int) = IntRepr::from_ident(other) {
                            repr.int = Some((int, span));
                        }
                    }
                }
                Ok(())
            });
        }
        repr
    }
}

/// The options in `#[shared(...)]` on the type.
pub(crate) struct Shared {
    /// `version = N`; 1 when absent.
    pub version: u32,
}

impl Shared {
    /// Parses every `#[shared(...)]` on the type, reporting unknown keys, bad values and repeats.
    pub(crate) fn from_attrs(attrs: &[Attribute], errors: &mut Errors) -> Shared {
        let mut version: Option<u32> = None;
        for attr in attrs.iter().filter(|a| a.path().is_ident("shared")) {
            if !matches!(attr.meta, syn::Meta::List(_)) {
                errors.push(syn::Error::new_spanned(
                    attr,
                    "expected options in parentheses: write `#[shared(version = 2)]`, or remove the \
                     attribute to keep the default version 1",
                ));
                continue;
            }
            // Problems with one option are recorded and the next options are still read; only
            // input that cannot be parsed at all stops the attribute.
            let result = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("version") {
                    let value = meta.value().map_err(|_| meta.error("`version` needs a value: write `version = 2`"))?;
                    let expr: syn::Expr = value.parse()?;
                    match version_value(&expr) {
                        Ok(n) => {
                            if version.replace(n).is_some() {
                                errors.spanned(
                                    &meta.path,
                                    "`version` is given more than once: keep a single `version = N`",
                                );
                            }
                        }
                        Err(e) => errors.push(e),
                    }
                } else {
                    // Skip the unknown option's value, if any, so that the options after it are read.
                    if meta.input.peek(Token![=]) {
                        let _: Token![=] = meta.input.parse()?;
                        let _: syn::Expr = meta.input.parse()?;
                    } else if meta.input.peek(syn::token::Paren) {
                        let _content;
                        syn::parenthesized!(_content in meta.input);
                    }
                    let key = meta.path.to_token_stream().to_string().replace(' ', "");
                    errors.spanned(
                        &meta.path,
                        format!(
                            "unknown option `{key}` in `#[shared(...)]`: the only option is `version`, as \
                             in `#[shared(version = 2)]`"
                        ),
                    );
                }
                Ok(())
            });
            if let Err(e) = result {
                errors.push(e);
            }
        }
        Shared { version: version.unwrap_or(1) }
    }
}

/// The value of `version = ...`: an integer literal that fits in a `u32`.
fn version_value(expr: &syn::Expr) -> syn::Result<u32> {
    let lit = match expr {
        syn::Expr::Lit(syn::ExprLit { lit: syn::Lit::Int(lit), .. }) => lit,
        syn::Expr::Unary(syn::ExprUnary { op: syn::UnOp::Neg(_), .. }) => {
            return Err(syn::Error::new_spanned(
                expr,
                "`version` cannot be negative (it is a `u32`): write a number such as `version = 2`",
            ))
        }
        _ => {
            return Err(syn::Error::new_spanned(expr, "`version` must be a plain integer literal, as in `version = 2`"))
        }
    };
    if !matches!(lit.suffix(), "" | "u32") {
        return Err(syn::Error::new_spanned(
            lit,
            format!("`version` is a `u32`: drop the `{}` suffix, as in `version = 2`", lit.suffix()),
        ));
    }
    lit.base10_parse::<u32>().map_err(|_| {
        syn::Error::new_spanned(
            lit,
            format!("`version` must fit in a `u32` (0 to {}): pick a smaller number", u32::MAX),
        )
    })
}

/// Reports `#[shared(...)]` written on a field or a variant, where it means nothing.
pub(crate) fn reject_misplaced_shared(attrs: &[Attribute], place: &str, errors: &mut Errors) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("shared")) {
        errors.push(syn::Error::new_spanned(
            attr,
            format!(
                "`#[shared(...)]` is not allowed on a {place}: move it onto the type, next to \
                 `#[derive(SharedLayout)]`"
            ),
        ));
    }
}
