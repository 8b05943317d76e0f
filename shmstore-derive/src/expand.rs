//! Code generation for inputs that passed `valid.rs`.
//!
//! # Why the generated `unsafe impl` is sound
//!
//! `SharedLayout` promises four things (see its `# Safety` section). The derive discharges each one
//! either syntactically (in `valid.rs`, before any code is generated) or with an assertion the
//! compiler checks (generated here); if any check fails, the crate does not compile.
//!
//! For a struct:
//! - **Size and alignment** are `size_of::<Self>()` and `align_of::<Self>()`, taken from the compiler.
//! - **A fixed, declared layout**: `valid.rs` requires `repr(C)` (fields in declaration order) or
//!   `repr(transparent)` (the layout of the one non-zero-sized field), and rejects generics, so the
//!   layout is one concrete thing and every offset recorded is `offset_of!` of the real field.
//! - **No pointers or process-local handles**: every field type must implement `SharedLayout`
//!   (a generated `assert_shared_layout::<FieldTy>()` per field, and the `<FieldTy as
//!   SharedLayout>::LAYOUT` the layout refers to), so by induction no field holds one.
//!   The same bound gives `Send + Sync + 'static + Sized` for every field, hence for the struct.
//! - **No padding**: for `repr(C)`, the first field is at offset 0, each next field starts exactly
//!   where the previous one ends (`offset_of!(next) == offset_of!(prev) + size_of::<Prev>()`), and the
//!   struct ends where its last field ends (`size_of::<Self>() == offset_of!(last) + size_of::<Last>()`).
//!   Since the fields themselves have no padding (they are `SharedLayout`), neither does the struct.
//!   For `repr(transparent)` the struct is its one non-zero-sized field, which has no padding either.
//! - **Valid bit patterns**: the struct's bytes are exactly its fields' bytes, and `TypeKind::Struct`
//!   lists every field with its offset and layout, so `Layout::validate` checks every byte range that
//!   has invalid patterns (bools, enums, `FixedStr`) with that field's own rules.
//! - **`repr(packed)`**: additionally every field's offset is asserted to be a multiple of its type's
//!   alignment, so that a field is as aligned inside the mapping as the struct itself is.
//!
//! - **The checks mean what they say**: the generated code names every item through `::shmstore`
//!   (`size_of`, `offset_of!`, `assert!`, `u8`, `u64`, ... through `::shmstore::__private`), never
//!   through `::core`, `::std` or a bare primitive name, which the user's crate can rebind (for
//!   example with `extern crate self as core;` or `type u64 = u8;`). `tests/ui/pass/fake_core.rs`
//!   and `tests/ui/fail/fake_core_padding.rs` hold an impostor `core` and check that layouts and
//!   padding errors do not change.
//!
//! `AllAtomic` (every byte is an atomic) is implemented for every struct, on the condition that
//! every field type implements it (higher-ranked `where` bounds, so that the impl compiles when they
//! fail): with no padding (asserted above), the struct's bytes are then exactly its fields' atomics.
//!
//! For a fieldless enum with `repr(u8|u16|u32|u64)` (required by `valid.rs`): its bytes are exactly
//! the discriminant, an unsigned integer with no padding and no pointers; the only valid patterns are
//! the discriminants of its variants, which are listed (`Self::Variant as u64`) in `TypeKind::Enum`,
//! and `Layout::validate` rejects every other value.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::DeriveInput;

use crate::ast::{Data, Field, Input, Variant};
use crate::fallback;
use crate::valid::{self, Errors};

/// Runs the whole derive: parse, check, then generate the impl or, on error, the fallback.
pub(crate) fn derive(input: &DeriveInput) -> TokenStream {
    let mut errors = Errors::default();
    let ast = Input::from_syn(input, &mut errors);
    valid::check(&ast, &mut errors);
    match errors.finish() {
        Ok(()) => match &ast.data {
            Data::Struct(fields) => expand_struct(&ast, fields),
            Data::Enum(variants) => expand_enum(&ast, variants),
            // `valid::check` rejects unions.
            Data::Union(_) => unreachable!("unions are rejected by valid::check"),
        },
        Err(errors) => fallback::expand(&ast, &errors),
    }
}

fn expand_struct(input: &Input, fields: &[Field]) -> TokenStream {
    let ident = input.ident;
    let name = input.name();
    let version = input.shared.version;

    let field_asserts = fields.iter().map(assert_field_is_shared);
    let padding_asserts = if input.repr.transparent.is_some() {
        // A transparent struct is laid out exactly as its one non-zero-sized field, which has no
        // padding since it implements `SharedLayout`. (Its zero-sized fields all sit at offset 0,
        // so the pairwise checks below would not even apply.)
        TokenStream::new()
    } else {
        padding_asserts(input, fields)
    };
    let packed_asserts = if input.repr.packed.is_some() {
        fields.iter().map(|f| packed_alignment_assert(input, f)).collect()
    } else {
        TokenStream::new()
    };

    let no_drop = no_drop_assert(input);
    let entries = fields.iter().map(|f| {
        let (member, ty, field_name) = (&f.member, f.ty, &f.name);
        quote! {
            ::shmstore::Field {
                name: #field_name,
                offset: ::shmstore::__private::offset_of!(#ident, #member),
                layout: &<#ty as ::shmstore::SharedLayout>::LAYOUT,
            }
        }
    });

    // `AllAtomic` holds exactly when every field's type is `AllAtomic`. The bounds are
    // higher-ranked so that the impl itself compiles when they do not hold (a trivially false
    // bound of a non-generic impl is an error, a higher-ranked one is not): the struct then simply
    // does not implement the trait, and a use that needs it says which field type is not atomic.
    let all_atomic_bounds = fields.iter().map(|f| {
        let ty = f.ty;
        quote_spanned! {ty.span()=> for<'__shm> #ty: ::shmstore::AllAtomic }
    });
    let all_atomic = quote! {
        // SAFETY: the struct has no padding (asserted above) and every field's type is `AllAtomic`
        // (the bounds), so every byte of the struct belongs to an atomic, and `LAYOUT` lists every
        // field with that field's own (all-atomic) layout.
        #[automatically_derived]
        unsafe impl ::shmstore::AllAtomic for #ident where #(#all_atomic_bounds),* {}
    };

    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #padding_asserts
            #packed_asserts
            #no_drop
            #all_atomic

            // SAFETY: see the module documentation of `shmstore-derive/src/expand.rs`. In short:
            // `repr(C)` (or `transparent`) fixes the layout; the assertions above prove that there
            // is no padding (and, for `packed`, that every field is aligned); the assertions at the
            // top of `LAYOUT` (type-checked whether or not `LAYOUT` is ever used) prove that every
            // field implements `SharedLayout`; and the layout lists every field with its real
            // offset, so `Layout::validate` checks every byte that has invalid patterns.
            #[automatically_derived]
            unsafe impl ::shmstore::SharedLayout for #ident {
                const LAYOUT: ::shmstore::Layout = {
                    #(#field_asserts)*
                    ::shmstore::Layout::new(
                        #name,
                        ::shmstore::__private::size_of::<#ident>(),
                        ::shmstore::__private::align_of::<#ident>(),
                        #version,
                        ::shmstore::TypeKind::Struct { fields: &[#(#entries),*] },
                    )
                };
            }
        };
    }
}

/// Values in a shared file are never dropped (they outlive every process), so a `Drop` impl on a
/// shared type would silently never run, or run on bytes another process still uses: refuse it.
fn no_drop_assert(input: &Input) -> TokenStream {
    let ident = input.ident;
    let message = format!(
        "`{ident}` implements `Drop`, but values in a shared file are never dropped: remove the `Drop` impl \
         and release resources outside the shared value"
    );
    quote_spanned! {ident.span()=>
        const _: () = ::shmstore::__private::assert!(!::shmstore::__private::needs_drop::<#ident>(), #message);
    }
}

/// `assert_shared_layout::<FieldTy>();`, spanned on the field's type so that a missing impl is
/// reported there, with the trait's `on_unimplemented` advice.
///
/// The statements go in the body of `LAYOUT`, next to the `<FieldTy as SharedLayout>::LAYOUT` they
/// guard: rustc then reports one error per field, not a second one for the same type and span.
pub(crate) fn assert_field_is_shared(field: &Field) -> TokenStream {
    let ty = field.ty;
    quote_spanned! {ty.span()=>
        ::shmstore::__private::assert_shared_layout::<#ty>();
    }
}

/// The padding checks of a `repr(C)` struct.
///
/// Each gap is checked twice, by two separate items, because neither diagnostic alone says
/// everything: a `const` panic can name the struct and both fields but cannot format a number,
/// and a trait error (`[u8; GAP]: NoPaddingAfter<S>`, implemented only for `[u8; 0]`) shows the
/// exact padding field to add, `_pad: [u8; 3]`, but cannot name fields. Both are spanned on the field
/// after which the padding lies. They are separate `const` items so that the trait error (found
/// during type checking) does not stop the panic (found during const evaluation) from being shown.
fn padding_asserts(input: &Input, fields: &[Field]) -> TokenStream {
    let ident = input.ident;
    let name = input.name();
    let mut out = TokenStream::new();

    let Some(first) = fields.first() else {
        return out;
    };
    let member = &first.member;
    let message = format!(
        "struct `{name}` has padding before its first field {}: this cannot happen with `#[repr(C)]`; \
         check the struct's `#[repr]` attribute",
        first.quoted_name()
    );
    out.extend(quote_spanned! {first.span=>
        const _: () = ::shmstore::__private::assert!(::shmstore::__private::offset_of!(#ident, #member) == 0, #message);
    });

    for pair in fields.windows(2) {
        let (prev, next) = (&pair[0], &pair[1]);
        let (prev_member, prev_ty, next_member) = (&prev.member, prev.ty, &next.member);
        let end_of_prev = quote_spanned! {prev.span=>
            ::shmstore::__private::offset_of!(#ident, #prev_member) + ::shmstore::__private::size_of::<#prev_ty>()
        };
        let start_of_next = quote_spanned! {prev.span=> ::shmstore::__private::offset_of!(#ident, #next_member) };
        let message = format!(
            "struct `{name}` has padding between fields {p} and {n}: add an explicit `_pad: [u8; N]` \
             field after {p}, where N is the number of padding bytes, shown in the next error",
            p = prev.quoted_name(),
            n = next.quoted_name(),
        );
        out.extend(gap_asserts(input, prev, &start_of_next, &end_of_prev, &message));
    }

    let last = fields.last().expect("fields is not empty");
    let (last_member, last_ty) = (&last.member, last.ty);
    let end_of_last = quote_spanned! {last.span=>
        ::shmstore::__private::offset_of!(#ident, #last_member) + ::shmstore::__private::size_of::<#last_ty>()
    };
    let size = quote_spanned! {last.span=> ::shmstore::__private::size_of::<#ident>() };
    let cause = match &input.repr.align {
        Some((n, _)) => format!(" (its size is rounded up to a multiple of its alignment, set by `align({n})`)"),
        None => " (its size is rounded up to a multiple of its most aligned field's alignment)".to_owned(),
    };
    let message = format!(
        "struct `{name}` has padding after its last field {l}{cause}: add an explicit `_pad: [u8; N]` \
         field after {l}, where N is the number of padding bytes, shown in the next error",
        l = last.quoted_name(),
    );
    out.extend(gap_asserts(input, last, &size, &end_of_last, &message));
    out
}

/// Asserts `next == end`, both as a `const` panic with `message` and as a trait bound that shows
/// the size of the gap; see [`padding_asserts`].
fn gap_asserts(input: &Input, after: &Field, next: &TokenStream, end: &TokenStream, message: &str) -> TokenStream {
    let ident = input.ident;
    quote_spanned! {after.span=>
        const _: () = ::shmstore::__private::assert!(#next == #end, #message);
        const _: () = ::shmstore::__private::assert_no_padding_after::<
            #ident,
            [::shmstore::__private::u8; ::shmstore::__private::padding(#next, #end)],
        >();
    }
}

/// For `repr(packed)`: asserts that the field's offset is a multiple of its type's alignment.
fn packed_alignment_assert(input: &Input, field: &Field) -> TokenStream {
    let ident = input.ident;
    let name = input.name();
    let (member, ty) = (&field.member, field.ty);
    let message = format!(
        "field {f} of packed struct `{name}` is misaligned: its offset is not a multiple of the \
         alignment of its type `{t}`; move it before the less aligned fields, add an explicit padding \
         field (`_pad: [u8; N]`) before it, or drop `packed` from the `#[repr]`",
        f = field.quoted_name(),
        t = field.ty_string(),
    );
    quote_spanned! {field.span=>
        const _: () = ::shmstore::__private::assert!(
            ::shmstore::__private::offset_of!(#ident, #member) % ::shmstore::__private::align_of::<#ty>() == 0,
            #message
        );
    }
}

fn expand_enum(input: &Input, variants: &[Variant]) -> TokenStream {
    let ident = input.ident;
    let name = input.name();
    let version = input.shared.version;
    let primitive =
        input.repr.int.and_then(|(int, _)| int.primitive()).expect("valid::check requires an unsigned integer repr");
    let primitive = syn::Ident::new(primitive, proc_macro2::Span::call_site());
    let entries = variants.iter().map(|v| {
        let variant = v.ident;
        let variant_name = v.name();
        quote! {
            ::shmstore::Variant { name: #variant_name, value: #ident::#variant as ::shmstore::__private::u64 }
        }
    });

    let no_drop = no_drop_assert(input);
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #no_drop
            // SAFETY: see the module documentation of `shmstore-derive/src/expand.rs`. The enum is
            // fieldless with an unsigned integer `repr` (checked by the derive), so its bytes are
            // exactly the discriminant, and every valid discriminant is listed below, which is what
            // `Layout::validate` accepts.
            #[automatically_derived]
            unsafe impl ::shmstore::SharedLayout for #ident {
                const LAYOUT: ::shmstore::Layout = ::shmstore::Layout::new(
                    #name,
                    ::shmstore::__private::size_of::<#ident>(),
                    ::shmstore::__private::align_of::<#ident>(),
                    #version,
                    ::shmstore::TypeKind::Enum {
                        repr: ::shmstore::Primitive::#primitive,
                        variants: &[#(#entries),*],
                    },
                );
            }
        };
    }
}
