//! Values typed on the command line: parsed as JSON, checked against the
//! field's type before anything is written.

use lockstep::schema::ValueType;
use serde_json::Value;

/// Parses `text` as a value of `ty`.
///
/// `text` is JSON; for types that accept strings, text that is not JSON (or
/// a number or boolean that is not of the type, like `2` for a string
/// field) is taken as a string. `None` (no type known, with `--force`) accepts any JSON.
pub fn parse(text: &str, ty: Option<&ValueType>) -> Result<Value, String> {
    let as_string = || Value::String(text.to_owned());
    match (serde_json::from_str::<Value>(text), ty) {
        (Ok(value), None) => Ok(value),
        (Ok(value), Some(ty)) => match ty.check(&value) {
            Ok(()) => Ok(value),
            Err(e) => {
                let scalar = value.is_number() || value.is_boolean();
                if scalar && ty.accepts_string() && ty.check(&as_string()).is_ok() {
                    Ok(as_string())
                } else {
                    Err(e)
                }
            }
        },
        (Err(_), Some(ty)) if ty.accepts_string() => {
            let value = as_string();
            ty.check(&value)?;
            Ok(value)
        }
        (Err(_), Some(ty)) if *ty != ValueType::Any => {
            Err(format!("`{text}` is not JSON: expected {}", ty.expected()))
        }
        (Err(_), _) => Err(format!(
            "`{text}` is not JSON: quote a string as '\"{text}\"' (the field's type is not \
             known, so a bare word is not taken as a string)"
        )),
    }
}

/// Splits a ramp's values: comma-separated JSON (`0,10,25`, `[1,2],[3]`
/// for a list field) or one JSON array of them (`[0, 10, 25]`), else text
/// split at commas (`red,green`), each part parsed as [`parse`] does.
pub fn parse_list(text: &str, ty: Option<&ValueType>) -> Result<Vec<Value>, String> {
    let trimmed = text.trim();
    let parts: Vec<String> = match serde_json::from_str::<Vec<Value>>(&format!("[{trimmed}]")) {
        // One JSON array that is not itself a value of the type: its items.
        Ok(values)
            if values.len() == 1
                && values[0].is_array()
                && ty.is_none_or(|t| t.check(&values[0]).is_err()) =>
        {
            let items = values[0].as_array().map(Vec::as_slice).unwrap_or_default();
            items.iter().map(Value::to_string).collect()
        }
        Ok(values) => values.iter().map(Value::to_string).collect(),
        Err(_) => trimmed.split(',').map(|p| p.trim().to_owned()).collect(),
    };
    if parts.is_empty() || parts.iter().any(String::is_empty) {
        return Err(format!(
            "`{text}` is not a list of values: expected them comma-separated, e.g. 0,10,25,50,100"
        ));
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| parse(part, ty).map_err(|e| format!("value {} ({part}): {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_first_then_bare_words_for_strings() {
        assert_eq!(parse("42", Some(&ValueType::of::<u8>())), Ok(json!(42)));
        assert_eq!(
            parse("dark", Some(&ValueType::of::<String>())),
            Ok(json!("dark"))
        );
        assert_eq!(
            parse("\"dark\"", Some(&ValueType::of::<String>())),
            Ok(json!("dark"))
        );
        assert_eq!(parse("2", Some(&ValueType::of::<String>())), Ok(json!("2")));
        assert_eq!(
            parse("null", Some(&ValueType::of::<Option<String>>())),
            Ok(json!(null))
        );
        assert_eq!(
            parse("two words", Some(&ValueType::of::<String>())),
            Ok(json!("two words"))
        );
        assert_eq!(parse("[1,2]", None), Ok(json!([1, 2])));
    }

    #[test]
    fn wrong_values_say_what_is_accepted() {
        assert_eq!(
            parse("300", Some(&ValueType::of::<u8>())).unwrap_err(),
            "300 is out of range for u8: expected an integer from 0 to 255"
        );
        assert_eq!(
            parse("ten", Some(&ValueType::of::<u8>())).unwrap_err(),
            "`ten` is not JSON: expected an integer from 0 to 255"
        );
        let e = parse("dark", None).unwrap_err();
        assert!(e.contains("quote a string as '\"dark\"'"), "{e}");
        assert!(parse("ab", Some(&ValueType::of::<char>())).is_err());
        // Structures are not strings by accident.
        assert!(parse("[1]", Some(&ValueType::of::<String>())).is_err());
        assert!(parse("null", Some(&ValueType::of::<String>())).is_err());
    }

    #[test]
    fn lists() {
        let u8s = ValueType::of::<u8>();
        assert_eq!(
            parse_list("0,10,25,50,100", Some(&u8s)),
            Ok(vec![json!(0), json!(10), json!(25), json!(50), json!(100)])
        );
        assert_eq!(
            parse_list("[1, 2]", Some(&u8s)),
            Ok(vec![json!(1), json!(2)])
        );
        assert_eq!(
            parse_list("red, green", Some(&ValueType::of::<String>())),
            Ok(vec![json!("red"), json!("green")])
        );
        assert_eq!(
            parse_list("[1,2],[3]", Some(&ValueType::of::<Vec<u8>>())),
            Ok(vec![json!([1, 2]), json!([3])])
        );
        let e = parse_list("0,10,300", Some(&u8s)).unwrap_err();
        assert!(e.starts_with("value 3 (300): 300 is out of range"), "{e}");
        assert!(parse_list("1,,2", Some(&u8s)).is_err());
        assert!(parse_list("", Some(&u8s)).is_err());
    }
}
