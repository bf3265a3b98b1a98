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
        // The store is checked against lockstep's store kinds all the
        // same, so that a wrong one is told with the other mistakes.
        let mut tokens = fallback::expand(item, errors);
        tokens.extend(input.as_ref().map(store_check));
        return tokens;
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

/// The check that the declared store is one of lockstep's store kinds,
/// built with its feature: a constant lockstep evaluates
/// (`store::kind::declared`), its error pointing at the store's name.
/// None for a name the macro already told is another's.
fn store_check(input: &Input) -> TokenStream {
    match &input.attrs.store {
        Required::Given(lit) if valid::hint(&lit.value()).is_none() => {
            quote_spanned!(lit.span()=> const _: () = ::lockstep::__private::store_kind(#lit);)
        }
        _ => TokenStream::new(),
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
    let store = &checked.store;
    let store_check = store_check(input);

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
    let access = fields.iter().map(|f| &f.access);
    let defaults = fields.iter().map(|f| &f.default);
    let accessors = fields.iter().map(|f| &f.accessor);
    let handles = fields.iter().map(|f| &f.handle);
    // Every std prelude trait with an item of these names applies to any
    // type: `Registry::into` would be ambiguous, and no field hides them.
    let idents: Vec<&Ident> = input
        .fields
        .iter()
        .map(|f| f.ident)
        .filter(|ident| !["into", "from", "try_into", "try_from"].contains(&unraw(ident).as_str()))
        .collect();
    let free_names = idents.iter().map(|ident| {
        quote_spanned!(ident.span()=> ::lockstep::__private::free_name(&<::lockstep::__private::Registry<#name>>::#ident);)
    });

    let registry_doc = format!(
        "The registry of [`{name_str}`]: one accessor per field, and through `Deref` \
         everything a [`lockstep::Registry`] does. Namespace `{namespace}`, tick {tick_secs}s."
    );
    let static_doc = format!("The `{namespace}` registry: see [`{name_str}`].");
    let p = quote!(::lockstep::__private);

    quote! {
        #item

        #[doc = #registry_doc]
        #vis struct #registry {
            __lockstep: #p::Registry<#name>,
        }

        #[doc = #static_doc]
        #vis static #static_name: #registry = #registry::new();

        const _: () = {
            #store_check
            #(#consts)*

            pub struct __LockstepSlots {
                #(#slot_fields)*
            }

            impl #p::Sealed for #name {}

            impl #p::Fields for #name {
                type Slots = __LockstepSlots;

                const DEF: &'static #p::RegistryDef<Self> = &#p::RegistryDef {
                    namespace: #namespace,
                    tick: match #p::Tick::from_secs(#tick_secs) {
                        ::core::result::Result::Ok(tick) => tick,
                        ::core::result::Result::Err(_) => ::core::panic!("checked by #[lockstep]"),
                    },
                    store: #store,
                    store_clock: #store_clock,
                    fields: &[#(#defs),*],
                    access: &[#(#access),*],
                };

                fn defaults() -> Self {
                    Self { #(#defaults)* }
                }
            }

            // A field may not take the name of a method of `Registry`,
            // which its accessor would hide.
            #[allow(non_upper_case_globals)]
            trait __LockstepNames {
                #(const #idents: #p::FreeName = #p::FreeName;)*
            }
            impl __LockstepNames for #p::Registry<#name> {}
            const _: () = { #(#free_names)* };

            impl #registry {
                /// A registry that is not started yet; `#[lockstep]` puts one in a static.
                pub const fn new() -> Self {
                    #registry {
                        __lockstep: #p::Registry::__new(__LockstepSlots {
                            #(#slot_inits)*
                        }),
                    }
                }

                #(#accessors)*
            }

            impl ::core::ops::Deref for #registry {
                type Target = #p::Registry<#name>;

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
    access: TokenStream,
    default: TokenStream,
    accessor: TokenStream,
    handle: TokenStream,
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
        let name = unraw(ident);
        let default_fn = format_ident!("__lockstep_default_{}", name);
        let bits = format_ident!("__LOCKSTEP_BITS_{}", name);
        let seed = format_ident!("__LOCKSTEP_SEED_{}", name);
        let handle = format_ident!("{}", name.to_uppercase());
        let p = quote!(::lockstep::__private);

        // Every use that needs the field type's traits is spanned at the
        // type and sits in one body (`DEF`), asking only for `FieldType`:
        // rustc reports a type that is not a field type once.
        let def = quote_spanned! {ty.span()=>
            #p::FieldDef::of::<#ty>(#key, #rust_type, #doc, || {
                #p::to_json::<#ty>(&<Self as #p::Fields>::defaults().#ident)
            })
        };

        let (slot_ty, slot_init, consts, default, returns, access) = match &field.kind {
            Kind::Scalar(name) => {
                let bits_value = match &field.attrs.default {
                    Some(expr) => {
                        let value = typed(expr, ty);
                        quote!(#p::bits::#name(#value))
                    }
                    None => quote!(0),
                };
                let assign = quote_spanned! {ty.span()=>
                    |__lockstep_fields, __lockstep_value| #p::assign::<#ty>(&mut __lockstep_fields.#ident, __lockstep_value)
                };
                (
                    quote!(#p::Scalar<#ty>),
                    quote!(#p::Scalar::new(#bits, 0)),
                    quote!(const #bits: ::core::primitive::u64 = #bits_value;),
                    quote!(<#ty as #p::ScalarValue>::from_bits(#bits, 0)),
                    quote!(#ty),
                    quote! {
                        #p::Access {
                            assign: #assign,
                            publish: |__lockstep_value, __lockstep_slots| __lockstep_slots.#ident.publish(__lockstep_value, #bits),
                        }
                    },
                )
            }
            // Stored as lockstep's `Percent`, which hashes with its field's
            // seed; the field's own type meets it only through
            // `percent::<#ty>()`, so a type that is not lockstep's is one
            // error.
            Kind::Percent => {
                let percent = quote!(#p::Percent);
                let bits_value = match &field.attrs.default {
                    Some(expr) => {
                        let value = typed(expr, &syn::parse_quote!(::lockstep::Percent));
                        quote!(#p::bits::Percent(#value))
                    }
                    None => quote!(0),
                };
                let of = quote!(#p::percent::<#ty>());
                (
                    quote!(#p::Scalar<#percent>),
                    quote!(#p::Scalar::new(#bits, #seed)),
                    quote! {
                        const #seed: ::core::primitive::u64 = #p::Percent::__seed(#namespace, #key);
                        const #bits: ::core::primitive::u64 = #bits_value;
                    },
                    quote!((#of.from)(<#percent as #p::ScalarValue>::from_bits(#bits, #seed))),
                    quote!(::lockstep::Percent),
                    quote! {
                        #p::Access {
                            assign: |__lockstep_fields, __lockstep_value| #p::assign_percent(&mut __lockstep_fields.#ident, __lockstep_value, #seed, #of),
                            publish: |__lockstep_value, __lockstep_slots| __lockstep_slots.#ident.publish(__lockstep_value, #bits),
                        }
                    },
                )
            }
            Kind::Shared => {
                let value = match &field.attrs.default {
                    Some(expr) => typed_default(expr, ty),
                    None => quote_spanned!(ty.span()=> <#ty as #p::DefaultValue>::default_value()),
                };
                let publish = quote_spanned!(ty.span()=> |__lockstep_value, __lockstep_slots| #p::publish::<#ty>(&__lockstep_slots.#ident, __lockstep_value));
                let assign = quote_spanned!(ty.span()=> |__lockstep_fields, __lockstep_value| #p::assign::<#ty>(&mut __lockstep_fields.#ident, __lockstep_value));
                (
                    quote!(#p::Shared<#ty>),
                    quote!(#p::Shared::new(|| #p::ArcSwap::from_pointee(#default_fn()))),
                    quote! {
                        fn #default_fn() -> #ty {
                            #value
                        }
                    },
                    quote!(#default_fn()),
                    quote!(::lockstep::Ref<#ty>),
                    quote!(#p::Access { assign: #assign, publish: #publish }),
                )
            }
        };
        let handle_doc = format!("The field `{key}`, for writes: `REGISTRY.set({handle}, value)`.");
        Generated {
            slot_field: quote!(pub #ident: #slot_ty,),
            slot_init: quote!(#ident: #slot_init,),
            consts,
            def,
            access,
            default: quote!(#ident: #default,),
            accessor: quote! {
                #(#docs)*
                #[inline]
                #vis fn #ident(&self) -> #returns {
                    self.__lockstep.__slots().#ident.get()
                }
            },
            handle: quote! {
                #[doc = #handle_doc]
                #vis const #handle: #p::Field<Self, #ty> = #p::Field::__new(#index, #key);
            },
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
