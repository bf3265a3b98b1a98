//! The value decoder and the Redis entry reader: arbitrary bytes never
//! panic, and whatever decodes re-encodes to something that decodes the same.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use lockstep::__private::{decode, open_envelope};
use lockstep::Percent;

fn check<T>(text: &str)
where
    T: lockstep::FieldType + PartialEq + std::fmt::Debug,
{
    if let Ok(value) = decode::<T>(text) {
        let value = value
            .downcast_ref::<T>()
            .expect("decode gives its own type");
        let again = serde_json::to_string(value).expect("a decoded value encodes");
        let back = decode::<T>(&again).expect("an encoded value decodes");
        assert_eq!(back.downcast_ref::<T>(), Some(value));
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = open_envelope(data);
    let text = String::from_utf8_lossy(data);
    check::<u8>(&text);
    check::<i64>(&text);
    check::<bool>(&text);
    check::<String>(&text);
    check::<Percent>(&text);
    check::<Option<Vec<u32>>>(&text);
    check::<BTreeMap<String, String>>(&text);
});
