//! The derive's own model of its input, built from `syn::DeriveInput`.
//!
//! Building it never fails: every shape is represented (unions, enums with fields, generics), so that
//! `valid.rs` can report all problems at once instead of stopping at the first.

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{DeriveInput, Generics, Ident, Member, Type};

use crate::attr::{self, Repr, Shared};
use crate::valid::Errors;

/// The whole input: one struct, enum or union.
pub(crate) struct Input<'a> {
    /// The type's name.
    pub ident: &'a Ident,
    /// Its generics, which the derive rejects but the fallback stub must repeat.
    pub generics: &'a Generics,
    /// What its `#[repr(...)]` attributes say.
    pub repr: Repr,
    /// Its `#[shared(...)]` options.
    pub shared: Shared,
    /// The body.
    pub data: Data<'a>,
}

/// The body of the input.
pub(crate) enum Data<'a> {
    /// A struct of any style.
    Struct(Vec<Field<'a>>),
    /// An enum.
    Enum(Vec<Variant<'a>>),
    /// A union; only kept to be rejected.
    Union(&'a syn::token::Union),
}

/// One struct field.
pub(crate) struct Field<'a> {
    /// How to name it in `offset_of!`: an identifier or a tuple index.
    pub member: Member,
    /// Its name as shown to users and stored in the layout: `port`, or `0` for tuple fields.
    pub name: String,
    /// Its type.
    pub ty: &'a Type,
    /// Where to point errors about the field as a whole: its name, or its type for tuple fields.
    pub span: Span,
}

/// One enum variant.
pub(crate) struct Variant<'a> {
    /// The variant's name.
    pub ident: &'a Ident,
    /// Its fields, if any (only fieldless variants are accepted).
    pub fields: &'a syn::Fields,
}

impl<'a> Input<'a> {
    /// Builds the model. Errors in `#[shared(...)]` attributes go to `errors`.
    pub(crate) fn from_syn(input: &'a DeriveInput, errors: &mut Errors) -> Input<'a> {
        let shared = Shared::from_attrs(&input.attrs, errors);
        let data = match &input.data {
            syn::Data::Struct(s) => Data::Struct(
                s.fields
                    .iter()
                    .enumerate()
                    .map(|(i, f)| {
                        attr::reject_misplaced_shared(&f.attrs, "field", errors);
                        Field::from_syn(i, f)
                    })
                    .collect(),
            ),
            syn::Data::Enum(e) => Data::Enum(
                e.variants
                    .iter()
                    .map(|v| {
                        attr::reject_misplaced_shared(&v.attrs, "variant", errors);
                        for f in &v.fields {
                            attr::reject_misplaced_shared(&f.attrs, "field", errors);
                        }
                        Variant { ident: &v.ident, fields: &v.fields }
                    })
                    .collect(),
            ),
            syn::Data::Union(u) => Data::Union(&u.union_token),
        };
        Input { ident: &input.ident, generics: &input.generics, repr: Repr::from_attrs(&input.attrs), shared, data }
    }

    /// The type's name as written, without any `r#`: what the layout stores as `type_name`.
    pub(crate) fn name(&self) -> String {
        self.ident.unraw().to_string()
    }

    /// `struct`, `enum` or `union`, for messages.
    pub(crate) fn kind_word(&self) -> &'static str {
        match self.data {
            Data::Struct(_) => "struct",
            Data::Enum(_) => "enum",
            Data::Union(_) => "union",
        }
    }
}

impl Variant<'_> {
    /// The variant's name as written, without any `r#`.
    pub(crate) fn name(&self) -> String {
        self.ident.unraw().to_string()
    }
}

impl<'a> Field<'a> {
    fn from_syn(index: usize, field: &'a syn::Field) -> Field<'a> {
        match &field.ident {
            Some(ident) => Field {
                member: Member::Named(ident.clone()),
                name: ident.unraw().to_string(),
                ty: &field.ty,
                span: ident.span(),
            },
            None => Field {
                member: Member::Unnamed(syn::Index::from(index)),
                name: index.to_string(),
                ty: &field.ty,
                span: field.ty.span(),
            },
        }
    }

    /// The field's name in messages: `` `port` `` or `` `0` ``.
    pub(crate) fn quoted_name(&self) -> String {
        format!("`{}`", self.name)
    }

    /// The type as written, for messages.
    pub(crate) fn ty_string(&self) -> String {
        type_to_string(self.ty)
    }
}

/// Renders a type the way a user would write it (`[u8; 4]`, `Vec<u8>`), for messages.
pub(crate) fn type_to_string(ty: &Type) -> String {
    let raw = ty.to_token_stream().to_string();
    tidy_tokens(&raw)
}

/// Undoes the spaces that `TokenStream::to_string` puts around punctuation.
fn tidy_tokens(s: &str) -> String {
    let mut out = s.to_owned();
    for (from, to) in [
        (" < ", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        (" ;", ";"),
        ("[ ", "["),
        (" ]", "]"),
        ("( ", "("),
        (" )", ")"),
        (" :: ", "::"),
        (":: ", "::"),
        ("& ", "&"),
        ("* const ", "*const "),
        ("* mut ", "*mut "),
    ] {
        out = out.replace(from, to);
    }
    out
}
