//! The `#[lockstep]` attribute macro. Use it through the `lockstep` crate,
//! which re-exports it and documents it.
//!
//! The macro reads the struct in phases, one module each: `ast` (a typed
//! view of the input), `attr` (the options, each keeping its span),
//! `valid` (checks of meaning), `expand` (the generated code) and
//! `fallback` (what is emitted when there are errors); `tick` reads tick
//! strings. Every error of one
//! attribute is collected by `ctxt` and reported in one compile.

mod ast;
mod attr;
mod ctxt;
mod expand;
mod fallback;
mod tick;
mod valid;

use proc_macro::TokenStream;

/// The attribute is implemented in the `lockstep-macros` crate; use it
/// through `lockstep`, which re-exports it.
#[proc_macro_attribute]
pub fn lockstep(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = match syn::parse::<syn::DeriveInput>(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let mut tokens = proc_macro2::TokenStream::from(input);
            let error = syn::Error::new(
                proc_macro2::Span::call_site(),
                "#[lockstep] goes on a struct with named fields",
            );
            tokens.extend(error.to_compile_error());
            return tokens.into();
        }
    };
    expand::registry(args.into(), &item).into()
}
