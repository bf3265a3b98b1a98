//! What to emit when the attribute has errors: the struct itself, with the
//! field options stripped, and the errors; so the rest of the crate and the
//! IDE keep working while the user fixes the attribute.

use proc_macro2::TokenStream;
use quote::quote;
use syn::DeriveInput;

/// The struct without `#[lockstep]` attributes on its fields.
pub fn strip(item: &DeriveInput) -> DeriveInput {
    let mut item = item.clone();
    if let syn::Data::Struct(data) = &mut item.data {
        for field in data.fields.iter_mut() {
            field.attrs.retain(|a| !a.path().is_ident("lockstep"));
        }
    }
    item
}

/// The stripped struct plus the errors.
pub fn expand(item: &DeriveInput, errors: syn::Error) -> TokenStream {
    let item = strip(item);
    let errors = errors.to_compile_error();
    quote! {
        #item
        #errors
    }
}
