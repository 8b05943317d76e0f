//! What the derive emits when the input is rejected: the errors, plus a stub impl.
//!
//! Without the stub, every place that uses the type as `SharedLayout` (a store handle, a nested
//! field in another derived struct, ...) would add its own "trait not implemented" error, burying
//! the real problem. The stub makes those uses type-check, so the user sees only the derive's
//! errors, each on the offending item.
//!
//! Two refinements keep the output complete but quiet:
//! - the per-field `SharedLayout` assertions are still emitted for the fields the syntactic checks
//!   did not already reject, so a field type without `SharedLayout` is reported in the same build
//!   as, say, a missing `#[repr(C)]`;
//! - no stub is emitted for a struct that visibly holds something neither `Send` nor `Sync` (a raw
//!   pointer, an `Rc`, a `Cell`): the trait requires both, so such a stub could only move errors
//!   to every use site.

use proc_macro2::TokenStream;
use quote::quote;

use crate::ast::{Data, Input};
use crate::expand::assert_field_is_shared;
use crate::valid::{is_thread_unsafe, unsupported_type};

/// The `compile_error!`s for `errors`, followed by a stub `unsafe impl SharedLayout`.
pub(crate) fn expand(input: &Input, errors: &syn::Error) -> TokenStream {
    let errors = errors.to_compile_error();
    let ident = input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let self_ty = quote!(#ident #ty_generics);
    let predicates = where_clause.map(|w| w.predicates.iter()).into_iter().flatten();
    let name = input.name();
    let version = input.shared.version;

    // The field-type assertions report real problems of their own (a field type without
    // `SharedLayout` that the syntactic checks did not catch), so they are kept when they can be:
    // for a non-generic struct, on the fields that were not already rejected.
    let field_asserts: TokenStream = match &input.data {
        Data::Struct(fields) if input.generics.params.is_empty() => fields
            .iter()
            .filter(|f| unsupported_type(f.ty).is_none())
            .map(|f| {
                let assert = assert_field_is_shared(f);
                quote!(const _: () = { #assert };)
            })
            .collect(),
        _ => TokenStream::new(),
    };

    // `SharedLayout: Send + Sync`, so a type that holds a raw pointer or an `Rc` cannot have even a
    // stub impl: its uses would each fail with "cannot be sent between threads safely". Without the
    // stub they fail once each with the trait's own message, "`Node` cannot live in shared memory",
    // which is the truth.
    let thread_unsafe = match &input.data {
        Data::Struct(fields) => fields.iter().any(|f| is_thread_unsafe(f.ty)),
        Data::Enum(_) | Data::Union(_) => false,
    };
    let stub = if thread_unsafe {
        TokenStream::new()
    } else {
        quote! {
            // SAFETY: this impl never reaches a binary: it is only emitted together with the
            // `compile_error!`s above, so the crate fails to compile. It exists only to silence
            // follow-on errors at the places that use the type.
            //
            // The `for<'__shm>` bounds restate the trait's supertraits without being checked here
            // (a trivially false bound with no generics is an error, a higher-ranked one is not).
            #[automatically_derived]
            unsafe impl #impl_generics ::shmstore::SharedLayout for #self_ty
            where
                #(#predicates,)*
                for<'__shm> #self_ty: ::shmstore::__private::Sized
                    + ::shmstore::__private::Send
                    + ::shmstore::__private::Sync
                    + 'static,
            {
                const LAYOUT: ::shmstore::Layout = ::shmstore::Layout::new(
                    #name,
                    ::shmstore::__private::size_of::<Self>(),
                    ::shmstore::__private::align_of::<Self>(),
                    #version,
                    ::shmstore::TypeKind::Struct { fields: &[] },
                );
            }
        }
    };

    quote! {
        #errors

        #[doc(hidden)]
        #[allow(non_upper_case_globals, unused_qualifications, clippy::all)]
        const _: () = {
            #field_asserts
            #stub
        };
    }
}
