//! Values written into the SQL text itself, for the one text of several
//! statements a fetch with a report sends (statements of such a text take
//! no placeholders).

use super::super::dialect::{Arg, json_keys, json_written};

/// `sql` with each `?` replaced by the literal of the next of `args`: the
/// statements of one text of several take no placeholders. Names (the
/// namespace, keys, process ids: ASCII letters, digits, `_` and `-`, as
/// checked before) are written quoted, so they compare with the `ascii_bin`
/// columns through their indexes; any other text as a `utf8mb4` hex
/// literal, so nothing in it is ever read as SQL.
pub(super) fn inline(sql: &str, args: Vec<Arg<'_>>) -> String {
    use std::fmt::Write;
    let mut args = args.into_iter();
    let mut out = String::with_capacity(sql.len() + 64);
    for (i, part) in sql.split('?').enumerate() {
        if i > 0 {
            match args.next() {
                Some(Arg::Int(n)) => {
                    let _ = write!(out, "{n}");
                }
                Some(Arg::Text(t)) => literal(&mut out, t),
                Some(Arg::Keys(keys)) => literal(&mut out, &json_keys(keys)),
                Some(Arg::Written(written)) => literal(&mut out, &json_written(&written)),
                Some(Arg::Texts(_) | Arg::Ints(_)) | None => out.push_str("NULL"),
            }
        }
        out.push_str(part);
    }
    out
}

/// A text as a literal: see [`inline`].
fn literal(out: &mut String, text: &str) {
    use std::fmt::Write;
    let name = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if name {
        let _ = write!(out, "'{text}'");
    } else {
        out.push_str("_utf8mb4 X'");
        for b in text.bytes() {
            let _ = write!(out, "{b:02X}");
        }
        out.push('\'');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_in_as_literals_that_cannot_be_read_as_sql() {
        let sql = inline(
            "INSERT INTO t VALUES (?, ?, ?, ?) -- ?",
            vec![
                Arg::Text("flags_2-b"),
                Arg::Int(-42),
                Arg::Text("it's \"x\" ü ; --"),
                Arg::Keys(&["a", "b"]),
            ],
        );
        assert_eq!(
            sql,
            "INSERT INTO t VALUES ('flags_2-b', -42, _utf8mb4 X'697427732022782220C3BC203B202D2D', \
             _utf8mb4 X'5B2261222C2262225D') -- NULL"
        );
    }
}
