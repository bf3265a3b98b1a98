//! `#[lockstep]` expands to code that works wherever a user puts it: in a
//! module that shadows the prelude's names, in one without a prelude, on
//! every kind of field, with every option.

// Most fields are named for their type; doc comments would repeat the names.
#![allow(missing_docs)]

use std::collections::BTreeMap;

use lockstep::{Percent, lockstep};
use serde::{Deserialize, Serialize};

/// A user enum as a field type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Theme {
    /// The default.
    #[default]
    Classic,
    /// The other one.
    Dark,
}

/// A user struct as a field type.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Requests a second.
    pub per_second: u32,
    /// Requests at once.
    pub burst: u32,
}

/// A registry of every kind of field, with every option.
#[lockstep(
    tick = "1m",
    store = "memory",
    namespace = "every-kind_1",
    static_name = "EVERY"
)]
pub struct EveryKind {
    /// A `u8`.
    #[lockstep(default = 8)]
    pub a_u8: u8,
    #[lockstep(default = 16)]
    pub a_u16: u16,
    #[lockstep(default = 32)]
    pub a_u32: u32,
    #[lockstep(default = u64::MAX)]
    pub a_u64: u64,
    #[lockstep(default = 1 << 20)]
    pub a_usize: usize,
    #[lockstep(default = -8)]
    pub an_i8: i8,
    #[lockstep(default = -16)]
    pub an_i16: i16,
    #[lockstep(default = -32)]
    pub an_i32: i32,
    #[lockstep(default = i64::MIN)]
    pub an_i64: i64,
    #[lockstep(default = -1)]
    pub an_isize: isize,
    #[lockstep(default = 1.5)]
    pub an_f32: f32,
    #[lockstep(default = -0.25)]
    pub an_f64: f64,
    #[lockstep(default = true)]
    pub a_bool: bool,
    #[lockstep(default = 'λ')]
    pub a_char: char,
    #[lockstep(default = Percent::whole(25))]
    pub a_percent: Percent,
    /// No default: `Default::default()` of each type.
    pub zero_u8: u8,
    pub zero_f64: f64,
    pub zero_char: char,
    pub zero_percent: lockstep::Percent,
    #[lockstep(default = Some("hello".to_owned()))]
    pub some_string: Option<String>,
    pub no_string: Option<String>,
    #[lockstep(default = vec![1, 2, 3])]
    pub ids: Vec<u32>,
    #[lockstep(default = BTreeMap::from([("eu".to_owned(), 10)]))]
    pub per_region: BTreeMap<String, u32>,
    #[lockstep(default = Theme::Dark)]
    pub theme: Theme,
    pub default_theme: Theme,
    #[lockstep(default = Limits { per_second: 100, burst: 20 })]
    pub limits: Limits,
    #[lockstep(default = "renamed", key = "stored-as")]
    pub renamed: String,
    #[lockstep(default = 7)]
    pub r#type: u32,
    #[lockstep(default = "raw")]
    pub r#match: String,
    /// `std::primitive` spelled out: not a scalar to the macro, still a field.
    #[lockstep(default = 3)]
    pub spelled_out: std::primitive::u8,
}

/// A private registry: its static and registry type are private too.
#[lockstep(tick = "1s", store = "memory")]
struct Private {
    #[lockstep(default = 1)]
    value: u8,
    /// Named like methods `Registry` has but users cannot call: free.
    publish: bool,
    engine: u8,
    /// Named like items every type has through the std prelude: free.
    from: u8,
    into: u8,
    try_into: u8,
}

/// A crate-visible registry, its store declared by `backend`, the other
/// name `store` is accepted under.
#[lockstep(tick = "1d", backend = "memory")]
pub(crate) struct CrateVisible {
    #[lockstep(default = "crate")]
    pub(crate) value: String,
}

/// A redis store compiles when lockstep's `redis` feature is on, which it
/// is by default (with it off, the same registry is a compile error naming
/// the feature: see `tests/ui.rs`).
#[lockstep(tick = "10m", store = "redis")]
pub struct OnRedis {
    pub enabled: bool,
}

/// Names the generated code must not pick up from the user's scope.
#[allow(dead_code, non_camel_case_types, non_upper_case_globals)]
mod shadowed {
    pub struct Option;
    pub struct Some;
    pub struct None;
    pub struct Result;
    pub struct Ok;
    pub struct Err;
    pub struct Box;
    pub struct String;
    pub struct Vec;
    pub struct Arc;
    pub struct Any;
    pub struct u64;
    pub trait Clone {}
    pub trait Copy {}
    pub trait Default {}
    pub trait Send {}
    pub trait Sync {}
    pub trait Into {}
    pub trait From {}
    pub trait Deref {}
    pub trait Fields {}
    pub trait Serialize {}
    pub trait Deserialize {}
    pub mod core {}
    pub mod std {}
    pub mod serde {}
    pub mod serde_json {}
    pub mod lockstep {}
    pub mod __private {}
    pub fn stringify() {}
    pub fn assign() {}
    pub fn decode() {}
    pub const __LOCKSTEP_BITS_count: () = ();

    #[::lockstep::lockstep(tick = "1h", store = "memory")]
    pub struct Shadowed {
        #[lockstep(default = 5)]
        pub count: u32,
        #[lockstep(default = "x")]
        pub name: ::std::string::String,
        #[lockstep(default = ::std::vec![1, 2])]
        pub ids: ::std::vec::Vec<u32>,
        pub maybe: ::std::option::Option<::std::string::String>,
        pub share: ::lockstep::Percent,
    }
}

/// No prelude at all: every path the generated code uses is absolute.
#[no_implicit_prelude]
mod no_prelude {
    #[::lockstep::lockstep(tick = "30s", store = "memory")]
    pub struct Bare {
        #[lockstep(default = 5)]
        pub count: u32,
        #[lockstep(default = "x")]
        pub name: ::std::string::String,
        pub maybe: ::std::option::Option<u8>,
    }
}

#[test]
fn accessors_return_the_defaults_before_start() {
    assert!(!EVERY.status().started);
    assert_eq!(EVERY.a_u8(), 8);
    assert_eq!(EVERY.a_u16(), 16);
    assert_eq!(EVERY.a_u32(), 32);
    assert_eq!(EVERY.a_u64(), u64::MAX);
    assert_eq!(EVERY.a_usize(), 1 << 20);
    assert_eq!(EVERY.an_i8(), -8);
    assert_eq!(EVERY.an_i16(), -16);
    assert_eq!(EVERY.an_i32(), -32);
    assert_eq!(EVERY.an_i64(), i64::MIN);
    assert_eq!(EVERY.an_isize(), -1);
    assert_eq!(EVERY.an_f32(), 1.5);
    assert_eq!(EVERY.an_f64(), -0.25);
    assert!(EVERY.a_bool());
    assert_eq!(EVERY.a_char(), 'λ');
    assert_eq!(EVERY.a_percent().thousandths(), 25_000);
    assert_eq!(EVERY.zero_u8(), 0);
    assert_eq!(EVERY.zero_f64(), 0.0);
    assert_eq!(EVERY.zero_char(), '\0');
    assert_eq!(EVERY.zero_percent().thousandths(), 0);
    assert_eq!(*EVERY.some_string(), Some("hello".to_owned()));
    assert_eq!(*EVERY.no_string(), None);
    assert_eq!(*EVERY.ids(), vec![1, 2, 3]);
    assert_eq!(*EVERY.per_region(), BTreeMap::from([("eu".to_owned(), 10)]));
    assert_eq!(*EVERY.theme(), Theme::Dark);
    assert_eq!(*EVERY.default_theme(), Theme::Classic);
    assert_eq!(
        *EVERY.limits(),
        Limits {
            per_second: 100,
            burst: 20
        }
    );
    assert_eq!(*EVERY.renamed(), "renamed");
    assert_eq!(EVERY.r#type(), 7);
    assert_eq!(*EVERY.r#match(), "raw");
    assert_eq!(*EVERY.spelled_out(), 3);

    // The snapshot holds the same defaults.
    let snapshot = EVERY.snapshot();
    assert_eq!(snapshot.a_u64, u64::MAX);
    assert_eq!(snapshot.r#type, 7);
    assert_eq!(snapshot.limits.burst, 20);

    assert_eq!(PRIVATE.value(), 1);
    assert_eq!((PRIVATE.publish(), PRIVATE.engine()), (false, 0));
    // `PRIVATE.into()` is `Into::into`, which takes `self`: spelled out.
    assert_eq!(PrivateRegistry::from(&PRIVATE), 0);
    assert_eq!(PrivateRegistry::into(&PRIVATE), 0);
    assert_eq!(PrivateRegistry::try_into(&PRIVATE), 0);
    assert_eq!(*CRATE_VISIBLE.value(), "crate");
    assert!(!ON_REDIS.enabled());
    assert_eq!(shadowed::SHADOWED.count(), 5);
    assert_eq!(*shadowed::SHADOWED.name(), "x");
    assert_eq!(*shadowed::SHADOWED.ids(), vec![1, 2]);
    assert_eq!(*shadowed::SHADOWED.maybe(), None);
    assert_eq!(no_prelude::BARE.count(), 5);
    assert_eq!(*no_prelude::BARE.name(), "x");
}

#[test]
fn field_constants_carry_their_keys_and_positions() {
    assert_eq!(EveryKind::A_U8.key(), "a_u8");
    assert_eq!(EveryKind::A_U8.index(), 0);
    assert_eq!(EveryKind::A_PERCENT.key(), "a_percent");
    assert_eq!(EveryKind::RENAMED.key(), "stored-as");
    assert_eq!(EveryKind::TYPE.key(), "type");
    assert_eq!(EveryKind::MATCH.key(), "match");
    assert_eq!(EveryKind::SPELLED_OUT.key(), "spelled_out");
    assert_eq!(EveryKind::SPELLED_OUT.index(), 29);
    assert_eq!(Private::VALUE.key(), "value");
    assert_eq!(CrateVisible::VALUE.key(), "value");
    assert_eq!(shadowed::Shadowed::SHARE.key(), "share");
    assert_eq!(no_prelude::Bare::MAYBE.index(), 2);
}

#[test]
fn options_reach_the_registry() {
    assert_eq!(EVERY.namespace(), "every-kind_1");
    assert_eq!(EVERY.tick().as_secs(), 60);
    assert_eq!(PRIVATE.namespace(), "private");
    assert_eq!(PRIVATE.tick().as_secs(), 1);
    assert_eq!(CRATE_VISIBLE.namespace(), "crate_visible");
    assert_eq!(CRATE_VISIBLE.tick().as_secs(), 86_400);
    assert_eq!(ON_REDIS.namespace(), "on_redis");
    assert_eq!(shadowed::SHADOWED.namespace(), "shadowed");
    assert_eq!(no_prelude::BARE.tick().as_secs(), 30);

    let schema = EVERY.schema();
    let keys: Vec<&str> = schema.fields.iter().map(|f| f.key.as_str()).collect();
    assert_eq!(keys.len(), 30);
    assert!(keys.contains(&"stored-as"));
    assert!(keys.contains(&"type"));
    let field = |key: &str| schema.fields.iter().find(|f| f.key == key).unwrap();
    assert_eq!(field("a_u8").default, serde_json::json!(8));
    assert_eq!(field("a_u8").doc, "A `u8`.");
    assert_eq!(field("theme").default, serde_json::json!("Dark"));
    assert_eq!(field("a_percent").rust_type, "Percent");
    assert_eq!(field("zero_percent").rust_type, "lockstep::Percent");
    assert_eq!(
        field("limits").default,
        serde_json::json!({ "per_second": 100, "burst": 20 })
    );
}
