//! `traced` and `check` for every family of types.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::*;
use crate::Percent;

fn ok<T: Serialize + serde::de::DeserializeOwned + 'static>(value: serde_json::Value) {
    let ty = traced::<T>();
    assert_eq!(ty.check(&value), Ok(()), "{value} as {ty}");
    // The check agrees with serde_json.
    serde_json::from_value::<T>(value.clone())
        .unwrap_or_else(|e| panic!("{value} passed the check but serde_json refuses it: {e}"));
}

fn refused<T: Serialize + serde::de::DeserializeOwned + 'static>(
    value: serde_json::Value,
) -> String {
    let ty = traced::<T>();
    ty.check(&value).expect_err(&format!("{value} as {ty}"))
}

#[test]
fn booleans_and_unit() {
    assert_eq!(traced::<bool>(), ValueType::Bool);
    ok::<bool>(json!(true));
    assert_eq!(
        refused::<bool>(json!("yes")),
        r#""yes" is not a boolean: expected true or false"#
    );
    assert_eq!(traced::<()>(), ValueType::Unit);
    ok::<()>(json!(null));
    assert!(refused::<()>(json!(0)).contains("expected null"));
}

#[test]
fn integers_have_their_ranges() {
    assert_eq!(
        refused::<u8>(json!(300)),
        "300 is out of range for u8: expected an integer from 0 to 255"
    );
    assert_eq!(
        refused::<u8>(json!(-1)),
        "-1 is out of range for u8: expected an integer from 0 to 255"
    );
    assert_eq!(
        refused::<u8>(json!(1.5)),
        "1.5 is not an integer (u8): expected an integer from 0 to 255"
    );
    assert_eq!(
        refused::<u8>(json!("7")),
        r#""7" is not an integer (u8): expected an integer from 0 to 255"#
    );
    ok::<u8>(json!(255));
    ok::<i8>(json!(-128));
    assert!(refused::<i8>(json!(128)).contains("out of range for i8"));
    ok::<u16>(json!(65_535));
    assert!(refused::<i16>(json!(40_000)).contains("for i16"));
    ok::<u32>(json!(4_294_967_295u64));
    assert!(refused::<i32>(json!(3_000_000_000u64)).contains("for i32"));
    ok::<u64>(json!(u64::MAX));
    ok::<i64>(json!(i64::MIN));
    assert!(refused::<i64>(json!(u64::MAX)).contains("for i64"));
    ok::<usize>(json!(12));
    ok::<i128>(json!(-5));
    assert_eq!(
        traced::<u128>(),
        ValueType::Integer {
            min: 0,
            max: u64::MAX
        }
    );
}

#[test]
fn floats_are_finite_numbers() {
    assert_eq!(traced::<f64>(), ValueType::Float { bits: 64 });
    ok::<f64>(json!(1.5));
    ok::<f64>(json!(3));
    ok::<f32>(json!(-2.25));
    assert_eq!(
        refused::<f32>(json!(1e39)),
        "1e+39 is out of range for f32: expected a number (f32)"
    );
    assert_eq!(
        refused::<f64>(json!("1.5")),
        r#""1.5" is not a number: expected a number"#
    );
}

#[test]
fn chars_and_strings() {
    ok::<char>(json!("x"));
    assert!(refused::<char>(json!("xy")).contains("expected a string of one character"));
    ok::<String>(json!("dark"));
    assert_eq!(
        refused::<String>(json!(42)),
        "42 is not a string: expected a string"
    );
    assert!(traced::<String>().accepts_string());
    assert!(!traced::<u8>().accepts_string());
}

#[test]
fn percentages_anywhere() {
    assert_eq!(traced::<Percent>(), ValueType::Percent);
    ok::<Percent>(json!(12.5));
    ok::<Percent>(json!(100));
    assert_eq!(
        refused::<Percent>(json!(300)),
        "300 is not a percentage: expected a number from 0 to 100 (a percentage)"
    );
    assert_eq!(
        traced::<Option<Percent>>(),
        ValueType::Option {
            some: Box::new(ValueType::Percent)
        }
    );
    #[derive(Serialize, Deserialize)]
    struct Split {
        share: Percent,
        tiers: Vec<Percent>,
    }
    ok::<Split>(json!({"share": 5, "tiers": [1, 2.5]}));
    assert_eq!(
        refused::<Split>(json!({"share": 5, "tiers": [1, 101]})),
        "at .tiers[1]: 101 is not a percentage: expected a number from 0 to 100 (a percentage)"
    );
}

#[test]
fn options_lists_arrays_tuples() {
    ok::<Option<u8>>(json!(null));
    ok::<Option<u8>>(json!(3));
    assert_eq!(
        refused::<Option<u8>>(json!(true)),
        "true is not an integer (u8): expected an integer from 0 to 255, or null"
    );
    ok::<Vec<u16>>(json!([1, 2, 3]));
    ok::<Vec<u16>>(json!([]));
    assert_eq!(
        refused::<Vec<u16>>(json!([1, 70000])),
        "at [1]: 70000 is out of range for u16: expected an integer from 0 to 65535"
    );
    assert!(refused::<Vec<u16>>(json!({"a": 1})).contains("is not a list"));
    assert_eq!(
        traced::<[u8; 3]>(),
        ValueType::List {
            items: Box::new(ValueType::Integer { min: 0, max: 255 }),
            len: Some(3)
        }
    );
    ok::<[u8; 3]>(json!([1, 2, 3]));
    assert!(
        refused::<[u8; 3]>(json!([1, 2])).contains("has 2 items: expected a list of exactly 3")
    );
    ok::<(u8, String)>(json!([1, "a"]));
    assert!(refused::<(u8, String)>(json!([1, 2])).starts_with("at [1]: 2 is not a string"));
    assert!(refused::<(u8, String)>(json!([1])).contains(r#"expected [u8, string]"#));
}

#[test]
fn maps_check_their_keys() {
    ok::<HashMap<String, u32>>(json!({"a": 1, "b": 2}));
    assert_eq!(
        refused::<HashMap<String, u32>>(json!({"a": -1})),
        r#"at ["a"]: -1 is out of range for u32: expected an integer from 0 to 4294967295"#
    );
    ok::<BTreeMap<u16, bool>>(json!({"80": true, "443": false}));
    assert!(
        refused::<BTreeMap<u16, bool>>(json!({"http": true}))
            .starts_with(r#"key "http": "http" is not an integer (u16)"#)
    );
    assert!(refused::<BTreeMap<u16, bool>>(json!({"70000": true})).contains("out of range"));
}

#[derive(Serialize, Deserialize)]
struct Limits {
    burst: u32,
    per_user: Option<u16>,
    #[serde(rename = "mode")]
    kind: Mode,
}

#[derive(Serialize, Deserialize)]
enum Mode {
    Light,
    Dark,
    Custom { hue: u16 },
    Fixed(u8),
    Pair(u8, bool),
}

#[test]
fn structs_need_their_fields_and_no_others() {
    ok::<Limits>(json!({"burst": 5, "per_user": 2, "mode": "Dark"}));
    // A missing Option field is None.
    ok::<Limits>(json!({"burst": 5, "mode": {"Fixed": 3}}));
    let e = refused::<Limits>(json!({"burst": 5, "mode": "Dark", "brust": 1}));
    assert!(
        e.starts_with("unknown field `brust`: expected {\"burst\": u32"),
        "{e}"
    );
    let e = refused::<Limits>(json!({"per_user": 1, "mode": "Dark"}));
    assert!(e.starts_with("missing field `burst`"), "{e}");
    assert!(refused::<Limits>(json!([5, null, "Dark"])).contains("is not an object"));
}

#[test]
fn enums_are_externally_tagged_with_every_variant() {
    let ty = traced::<Mode>();
    assert_eq!(
        ty.to_string(),
        r#""Light" | "Dark" | {"Custom": {"hue": u16}} | {"Fixed": u8} | {"Pair": [u8, bool]}"#
    );
    ok::<Mode>(json!("Light"));
    ok::<Mode>(json!({"Custom": {"hue": 100}}));
    ok::<Mode>(json!({"Pair": [1, true]}));
    assert_eq!(
        refused::<Mode>(json!("Sepia")),
        r#""Sepia" is not a variant: expected one of "Light", "Dark", {"Custom": {"hue": u16}}, {"Fixed": u8}, {"Pair": [u8, bool]}"#
    );
    assert_eq!(
        refused::<Mode>(json!({"Fixed": 256})),
        "at .Fixed: 256 is out of range for u8: expected an integer from 0 to 255"
    );
    assert!(refused::<Mode>(json!("Fixed")).starts_with("`Fixed` needs a value"));
    assert!(refused::<Mode>(json!({"Dark": 1})).starts_with("`Dark` carries no value"));
    assert!(ty.accepts_string());
}

#[test]
fn enums_nested_anywhere_are_complete() {
    #[derive(Serialize, Deserialize)]
    struct Deep {
        modes: Vec<Option<Mode>>,
        by_name: BTreeMap<String, Level>,
    }
    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Level {
        Low,
        High,
        Custom(Mode),
    }
    ok::<Deep>(
        json!({"modes": [null, {"Pair": [1, false]}], "by_name": {"x": "high", "y": {"custom": "Dark"}}}),
    );
    let e = refused::<Deep>(json!({"modes": [], "by_name": {"x": {"custom": "Grey"}}}));
    assert!(
        e.starts_with(r#"at .by_name["x"].custom: "Grey" is not a variant"#),
        "{e}"
    );
}

#[test]
fn newtype_tuple_and_unit_structs() {
    #[derive(Serialize, Deserialize)]
    struct Millis(u64);
    #[derive(Serialize, Deserialize)]
    struct Point(i32, i32);
    #[derive(Serialize, Deserialize)]
    struct Nothing;
    assert_eq!(traced::<Millis>(), traced::<u64>());
    ok::<Point>(json!([1, -2]));
    ok::<Nothing>(json!(null));
}

#[test]
fn what_cannot_be_traced_is_any() {
    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Loose {
        N(u8),
        S(String),
    }
    #[derive(Serialize, Deserialize)]
    #[serde(tag = "kind")]
    enum Tagged {
        A { x: u8 },
        B,
    }
    assert_eq!(traced::<Loose>(), ValueType::Any);
    assert_eq!(traced::<Tagged>(), ValueType::Any);
    assert_eq!(traced::<serde_json::Value>(), ValueType::Any);
    assert_eq!(ValueType::Any.check(&json!({"anything": [1]})), Ok(()));
    // A field the serialization skips would make the description refuse
    // the type's own values: no description then.
    #[derive(Serialize, Deserialize)]
    struct Sparse {
        #[serde(default, skip_serializing_if = "is_zero")]
        n: u8,
    }
    fn is_zero(n: &u8) -> bool {
        *n == 0
    }
    assert_eq!(traced::<Sparse>(), ValueType::Any);
}

#[test]
fn recursive_types_end() {
    // The first variant recurses: serde-reflection alone would never end.
    #[derive(Serialize, Deserialize)]
    enum List {
        Cons(u8, Box<List>),
        Nil,
    }
    let _ = traced::<List>();
    #[derive(Serialize, Deserialize)]
    struct Tree {
        label: String,
        children: Vec<Tree>,
    }
    let tree = traced::<Tree>();
    ok::<Tree>(json!({"label": "a", "children": [{"label": "b", "children": []}]}));
    assert!(
        matches!(tree, ValueType::Struct { .. } | ValueType::Any),
        "{tree:?}"
    );
}

#[test]
fn value_types_travel_as_tagged_json() {
    for ty in [
        traced::<Limits>(),
        traced::<Mode>(),
        traced::<Option<[u8; 2]>>(),
        traced::<HashMap<String, (bool, f32)>>(),
        traced::<Percent>(),
        ValueType::Any,
    ] {
        let json = serde_json::to_string(&ty).unwrap();
        let back: ValueType = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ty, "{json}");
    }
    assert_eq!(
        serde_json::to_value(traced::<Option<bool>>()).unwrap(),
        json!({"type": "option", "some": {"type": "bool"}})
    );
    // A type a newer lockstep describes reads as Any.
    let newer: ValueType = serde_json::from_value(json!({"type": "uuid", "v": 4})).unwrap();
    assert_eq!(newer, ValueType::Any);
}

#[test]
fn schemas_without_value_types_still_read() {
    let old = json!({
        "namespace": "flags",
        "tick_secs": 10,
        "fields": [{"key": "limit", "rust_type": "u8", "default": 0}]
    });
    let schema: Schema = serde_json::from_value(old).unwrap();
    assert_eq!(schema.fields[0].value_type, None);
    assert_eq!(schema.field("limit").unwrap().rust_type, "u8");
    assert!(schema.field("nope").is_none());
}

#[test]
fn common_std_types() {
    use std::collections::{BTreeSet, HashSet};
    use std::net::IpAddr;
    use std::num::NonZeroU8;
    use std::time::Duration;
    ok::<Duration>(json!({"secs": 5, "nanos": 0}));
    ok::<HashSet<String>>(json!(["a", "b"]));
    ok::<BTreeSet<u8>>(json!([1, 2]));
    ok::<Box<u8>>(json!(3));
    assert_eq!(traced::<Box<u8>>(), traced::<u8>());
    ok::<Option<Option<u8>>>(json!(4));
    ok::<Vec<(String, Percent)>>(json!([["a", 50]]));
    // Types whose Deserialize validates what it reads cannot be traced.
    assert_eq!(traced::<NonZeroU8>(), ValueType::Any);
    assert_eq!(traced::<IpAddr>(), ValueType::Any);
}
