//! The stored envelope of an entry: `{"f":1,"w":"<write id>","t":<written
//! at, ms>,"by":"<writer>","r":<revision>,"v":<value JSON>}`, written by the
//! commit script.
//!
//! The revision `r` came after format 1, and is format 1 still: readers
//! ignore keys they do not know (serde's default, which this reader keeps),
//! so a process of an older build reads new entries, and an entry without
//! `r`, written before, reads as revision 0.

use serde::Deserialize;

use crate::store::stored::Origin;
use crate::tick::Millis;

/// The format version of stored envelopes this build reads and writes.
pub const FORMAT: u32 = 1;

#[derive(Deserialize)]
struct Envelope<'a> {
    f: u32,
    #[serde(borrow)]
    v: Option<&'a serde_json::value::RawValue>,
    w: Option<String>,
    t: Option<Millis>,
    by: Option<String>,
    r: Option<u64>,
}

/// The JSON text of a stored envelope's value (or why it cannot be read),
/// and who wrote it when the envelope says.
pub fn open_envelope(bytes: &[u8]) -> (Result<String, String>, Option<Origin>) {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return (Err("not UTF-8 text".to_owned()), None);
    };
    let envelope: Envelope = match serde_json::from_str(text) {
        Ok(envelope) => envelope,
        Err(e) => return (Err(format!("not a lockstep entry ({e})")), None),
    };
    let origin = match (envelope.w, envelope.t) {
        (Some(write), Some(written_at)) => Some(Origin {
            write,
            written_at,
            by: envelope.by.unwrap_or_default(),
            revision: envelope.r.unwrap_or(0),
        }),
        _ => None,
    };
    if envelope.f != FORMAT {
        let why = format!(
            "format version {} is not the version {FORMAT} this process reads (written by a \
             newer lockstep?)",
            envelope.f
        );
        return (Err(why), origin);
    }
    match envelope.v {
        Some(v) => (Ok(v.get().to_owned()), origin),
        None => (Err("the entry has no value".to_owned()), origin),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic_the_envelope_reader(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128)) {
            let _ = open_envelope(&bytes);
        }
    }

    #[test]
    fn envelopes() {
        assert_eq!(
            open_envelope(br#"{"f":1,"v":[1, 2]}"#).0,
            Ok("[1, 2]".to_owned())
        );
        let (value, origin) = open_envelope(br#"{"f":1,"w":"ab","t":5,"by":"me","v":1}"#);
        assert_eq!(value, Ok("1".to_owned()));
        let origin = origin.unwrap();
        assert_eq!(
            (origin.write.as_str(), origin.written_at, origin.by.as_str()),
            ("ab", 5, "me")
        );
        // What the commit script writes: cjson escapes `/`.
        let (value, origin) = open_envelope(br#"{"f":1,"w":"a","t":5,"by":"cli a\/b","v":"x"}"#);
        assert_eq!(
            (value.unwrap(), origin.unwrap().by),
            ("\"x\"".into(), "cli a/b".into())
        );
        assert!(
            open_envelope(br#"{"f":2,"v":1}"#)
                .0
                .unwrap_err()
                .contains("version 2")
        );
        assert!(open_envelope(b"\xff\xfe").0.unwrap_err().contains("UTF-8"));
        assert!(open_envelope(b"12").0.is_err());
    }

    #[test]
    fn the_revision_is_read_where_the_envelope_has_one_else_it_is_0() {
        let revision = |bytes: &[u8]| open_envelope(bytes).1.unwrap().revision;
        assert_eq!(
            revision(br#"{"f":1,"w":"a","t":5,"by":"x","r":42,"v":1}"#),
            42
        );
        assert_eq!(revision(br#"{"f":1,"w":"a","t":5,"by":"x","v":1}"#), 0);
        // What an older build reads: the same envelope, `r` ignored.
        #[derive(Deserialize)]
        struct Before<'a> {
            f: u32,
            #[serde(borrow)]
            v: Option<&'a serde_json::value::RawValue>,
        }
        let before: Before = serde_json::from_str(r#"{"f":1,"w":"a","r":42,"v":[1]}"#).unwrap();
        assert_eq!((before.f, before.v.unwrap().get()), (FORMAT, "[1]"));
    }
}
