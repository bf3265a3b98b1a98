//! The code `#[lockstep]` generates. It stays thin: slots, accessors and
//! glue that call tested helpers in `::lockstep::__private`.

use heck::{ToShoutySnakeCase, ToSnakeCase};
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Expr, Ident, Lit};

use crate::ast::{Field, Input, Kind, unraw};
use crate::attr::Required;
use crate::ctxt::Ctxt;
use crate::fallback;
use crate::valid::{self, Checked};

/// Expands `#[lockstep(args)] item`.
pub fn registry(args: TokenStream, item: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let input = Input::from_syn(&cx, args, item);
    let checked = input.as_ref().and_then(|input| valid::check(&cx, input));
    if let Err(errors) = cx.check() {
        return fallback::expand(item, errors);
    }
    match (input, checked) {
        (Some(input), Some(checked)) => generate(&input, &checked),
        // Unreachable: no errors means both are there.
        _ => fallback::expand(
            item,
            syn::Error::new(Span::call_site(), "#[lockstep] could not read this struct"),
        ),
    }
}

fn generate(input: &Input, checked: &Checked) -> TokenStream {
    let item = fallback::strip(input.item);
    let vis = &input.item.vis;
    let name = &input.item.ident;
    let name_str = unraw(name);
    let registry = format_ident!("{}Registry", name_str);
    let static_name = match &input.attrs.static_name {
        // Checked by `valid`: an identifier, perhaps raw.
        Some(lit) => match lit.parse::<Ident>() {
            Ok(ident) => ident,
            Err(_) => Ident::new(&name_str.to_shouty_snake_case(), lit.span()),
        },
        None => Ident::new(&name_str.to_shouty_snake_case(), name.span()),
    };
    let namespace = match &input.attrs.namespace {
        Some(lit) => lit.value(),
        None => name_str.to_snake_case(),
    };
    let tick_secs = checked.tick_secs;
    let store_clock = checked.store_clock;
    let backend = &checked.backend;
    let backend_check = {
        let span = match &input.attrs.backend {
            Required::Given(lit) => lit.span(),
            _ => Span::call_site(),
        };
        let check = format_ident!("__backend_{}", backend, span = span);
        quote_spanned!(span=> ::lockstep::#check!{})
    };

    let fields: Vec<Generated> = input
        .fields
        .iter()
        .enumerate()
        .map(|(index, field)| Generated::new(index, field, &namespace))
        .collect();
    let slot_fields = fields.iter().map(|f| &f.slot_field);
    let slot_inits = fields.iter().map(|f| &f.slot_init);
    let consts = fields.iter().map(|f| &f.consts);
    let defs = fields.iter().map(|f| &f.def);
    let defaults = fields.iter().map(|f| &f.default);
    let clones = fields.iter().map(|f| &f.clone);
    let assigns = fields.iter().map(|f| &f.assign);
    let publishes = fields.iter().map(|f| &f.publish);
    let accessors = fields.iter().map(|f| &f.accessor);
    let handles = fields.iter().map(|f| &f.handle);
    let checks = fields.iter().map(|f| &f.check);

    let registry_doc = format!(
        "The registry of [`{name_str}`]: one accessor per field, and through `Deref` \
         everything a [`lockstep::Registry`] does. Namespace `{namespace}`, tick {tick_secs}s."
    );
    let static_doc = format!("The `{namespace}` registry: see [`{name_str}`].");

    quote! {
        #item

        #[doc = #registry_doc]
        #vis struct #registry {
            __lockstep: ::lockstep::__private::Registry<#name>,
        }

        #[doc = #static_doc]
        #vis static #static_name: #registry = #registry::new();

        const _: () = {
            #backend_check
            #(#consts)*

            pub struct __LockstepSlots {
                #(#slot_fields)*
            }

            impl ::lockstep::__private::Fields for #name {
                type Slots = __LockstepSlots;

                const DEF: &'static ::lockstep::__private::RegistryDef = {
                    #(#checks)*
                    &::lockstep::__private::RegistryDef {
                        namespace: #namespace,
                        tick: ::lockstep::__private::Tick::__from_secs(#tick_secs),
                        store: #backend,
                        store_clock: #store_clock,
                        fields: &[#(#defs),*],
                    }
                };

                fn defaults() -> Self {
                    Self { #(#defaults)* }
                }

                fn clone_fields(&self) -> Self {
                    Self { #(#clones)* }
                }

                fn assign(
                    &mut self,
                    __lockstep_index: ::core::primitive::usize,
                    __lockstep_value: &(dyn ::core::any::Any + ::core::marker::Send + ::core::marker::Sync),
                ) {
                    match __lockstep_index {
                        #(#assigns)*
                        _ => {}
                    }
                }

                fn publish(&self, __lockstep_slots: &__LockstepSlots) {
                    #(#publishes)*
                }
            }

            impl #registry {
                /// A registry that is not started yet; `#[lockstep]` puts one in a static.
                pub const fn new() -> Self {
                    #registry {
                        __lockstep: ::lockstep::__private::Registry::__new(__LockstepSlots {
                            #(#slot_inits)*
                        }),
                    }
                }

                #(#accessors)*
            }

            impl ::core::ops::Deref for #registry {
                type Target = ::lockstep::__private::Registry<#name>;

                fn deref(&self) -> &Self::Target {
                    &self.__lockstep
                }
            }

            impl #name {
                #(#handles)*
            }
        };
    }
}

/// The pieces one field contributes.
struct Generated {
    slot_field: TokenStream,
    slot_init: TokenStream,
    consts: TokenStream,
    def: TokenStream,
    default: TokenStream,
    clone: TokenStream,
    assign: TokenStream,
    publish: TokenStream,
    accessor: TokenStream,
    handle: TokenStream,
    check: TokenStream,
}

impl Generated {
    fn new(index: usize, field: &Field, namespace: &str) -> Generated {
        let ident = field.ident;
        let ty = field.ty;
        let vis = &field.original.vis;
        let key = field.key();
        let mut docs: Vec<TokenStream> = field.doc_attrs().map(|a| quote!(#a)).collect();
        if docs.is_empty() {
            // Accessors are public API of the user's crate: never undocumented.
            let doc = format!("The current value of `{}`.", unraw(ident));
            docs.push(quote!(#[doc = #doc]));
        }
        let doc = field.doc();
        let rust_type = quote!(#ty).to_string().replace(' ', "");
        let default_fn = format_ident!("__lockstep_default_{}", unraw(ident));
        let bits = format_ident!("__LOCKSTEP_BITS_{}", unraw(ident));
        let seed = format_ident!("__LOCKSTEP_SEED_{}", unraw(ident));
        let handle = format_ident!("{}", unraw(ident).to_uppercase());
        let p = quote!(::lockstep::__private);

        // Every use that needs the field's traits is spanned at its type and
        // sits in one body (`DEF`), so rustc reports a missing trait once.
        let check = quote_spanned! {ty.span()=>
            #p::assert_field_type::<#ty>();
        };
        let decode = quote_spanned!(ty.span()=> #p::decode::<#ty>);
        let describe = quote_spanned!(ty.span()=> #p::describe::<#ty>);
        let to_json = quote_spanned!(ty.span()=> #p::to_json::<#ty>);
        // The other uses are in other bodies; spanned at the type, their
        // errors at least point at it rather than at the attribute.
        let clone_fn = quote_spanned!(ty.span()=> <#ty as ::core::clone::Clone>::clone);
        let assign_fn = quote_spanned!(ty.span()=> #p::assign::<#ty>);
        let seed_const = quote! {
            const #seed: ::core::primitive::u64 = #p::Percent::__seed(#namespace, #key);
        };

        let (slot_ty, slot_init, consts, default, accessor, publish, assign) = match &field.kind {
            Kind::Scalar(_) | Kind::Percent => {
                let bits_fn = match &field.kind {
                    Kind::Scalar(name) => name.clone(),
                    _ => Ident::new("Percent", Span::call_site()),
                };
                let bits_value = match &field.attrs.default {
                    Some(expr) => {
                        let value = typed(expr, ty);
                        quote!(#p::bits::#bits_fn(#value))
                    }
                    None => quote!(0),
                };
                let consts = quote! {
                    #seed_const
                    const #bits: ::core::primitive::u64 = #bits_value;
                };
                (
                    quote!(#p::Scalar<#ty>),
                    quote!(#p::Scalar::new(#bits, #seed)),
                    consts,
                    quote!(<#ty as #p::ScalarValue>::from_bits(#bits, #seed)),
                    quote! {
                        #(#docs)*
                        #[inline]
                        #vis fn #ident(&self) -> #ty {
                            self.__lockstep.__slots().#ident.get()
                        }
                    },
                    quote!(__lockstep_slots.#ident.set(self.#ident);),
                    match field.kind {
                        Kind::Percent => quote! {
                            #assign_fn(&mut self.#ident, __lockstep_value);
                            self.#ident = self.#ident.__scoped(#seed);
                        },
                        _ => quote!(#assign_fn(&mut self.#ident, __lockstep_value);),
                    },
                )
            }
            Kind::Shared => {
                let value = match &field.attrs.default {
                    Some(expr) => typed_default(expr, ty),
                    None => quote_spanned!(ty.span()=> <#ty as #p::DefaultValue>::default_value()),
                };
                let consts = quote! {
                    fn #default_fn() -> #ty {
                        #value
                    }
                };
                (
                    quote!(#p::Shared<#ty>),
                    quote!(#p::Shared::new(|| #p::ArcSwap::from_pointee(#default_fn()))),
                    consts,
                    quote!(#default_fn()),
                    quote! {
                        #(#docs)*
                        #[inline]
                        #vis fn #ident(&self) -> ::lockstep::Ref<#ty> {
                            self.__lockstep.__slots().#ident.get()
                        }
                    },
                    quote!(__lockstep_slots.#ident.set(#clone_fn(&self.#ident));),
                    quote!(#assign_fn(&mut self.#ident, __lockstep_value);),
                )
            }
        };
        let handle_doc = format!("The field `{key}`, for writes: `REGISTRY.set({handle}, value)`.");
        Generated {
            slot_field: quote!(pub #ident: #slot_ty,),
            slot_init: quote!(#ident: #slot_init,),
            consts,
            def: quote! {
                #p::FieldDef {
                    name: ::core::stringify!(#ident),
                    key: #key,
                    rust_type: #rust_type,
                    doc: #doc,
                    decode: #decode,
                    value_type: #describe,
                    default_json: || #to_json(&<Self as #p::Fields>::defaults().#ident),
                }
            },
            default: quote!(#ident: #default,),
            clone: quote!(#ident: #clone_fn(&self.#ident),),
            assign: quote!(#index => { #assign }),
            publish,
            accessor,
            handle: quote! {
                #[doc = #handle_doc]
                #vis const #handle: ::lockstep::__private::Field<Self, #ty> =
                    ::lockstep::__private::Field::__new(#index, #key);
            },
            check,
        }
    }
}

/// `expr` as a `ty`, type-checked by rustc with errors under the user's
/// expression (and "expected due to this" under the field's type).
fn typed(expr: &Expr, ty: &syn::Type) -> TokenStream {
    quote_spanned! {expr.span()=>
        {
            let __lockstep_value: #ty = #expr;
            __lockstep_value
        }
    }
}

/// [`typed`], except that a string literal converts with `From` (for
/// `String` fields).
fn typed_default(expr: &Expr, ty: &syn::Type) -> TokenStream {
    let is_str = matches!(
        expr,
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(_),
            ..
        })
    );
    if is_str {
        quote_spanned! {expr.span()=>
            {
                let __lockstep_value: #ty = ::core::convert::From::from(#expr);
                __lockstep_value
            }
        }
    } else {
        typed(expr, ty)
    }
}
