//! Strict JSON for FHIR bodies: what serde_json accepts, minus what FHIR forbids and what would
//! silently lose data — duplicate keys, control characters, and numbers no engine can hold.

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// Why a body is not acceptable JSON; the message is safe to show (it never echoes values).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JsonError(pub String);

/// Parses a request body. Nesting deeper than serde_json's limit (128) is an error, not a crash.
pub fn parse_strict(bytes: &[u8]) -> Result<Value, JsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let start = bytes.as_ptr() as usize;
    let value = Strict {
        input: (start, start + bytes.len()),
    }
    .deserialize(&mut de)
    .map_err(|e| JsonError(describe(&e)))?;
    de.end().map_err(|e| JsonError(describe(&e)))?;
    Ok(value)
}

fn describe(e: &serde_json::Error) -> String {
    // serde_json messages name the problem and its line/column, never the content.
    format!("The body is not valid FHIR JSON: {e}")
}

/// The key under which serde_json hands over a number kept as written (its
/// arbitrary-precision numbers arrive as a map of this one key).
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Reads one value of the body whose bytes span the addresses `input`.
#[derive(Clone, Copy)]
struct Strict {
    input: (usize, usize),
}

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor { input: self.input })
    }
}

struct StrictVisitor {
    input: (usize, usize),
}

/// A property name, and whether the body wrote it: serde_json's number key is its own static
/// text, a key of the body is read from the body (or unescaped from it into a new string).
struct Key {
    text: String,
    written: bool,
}

#[derive(Clone, Copy)]
struct KeySeed {
    input: (usize, usize),
}

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a property name")
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Key, E> {
        let at = v.as_ptr() as usize;
        Ok(Key {
            text: v.to_owned(),
            written: at >= self.input.0 && at < self.input.1,
        })
    }
    fn visit_str<E>(self, v: &str) -> Result<Key, E> {
        Ok(Key {
            text: v.to_owned(),
            written: true,
        })
    }
}

fn check_text<E: de::Error>(s: &str) -> Result<(), E> {
    if s.chars()
        .any(|c| (c as u32) < 0x20 && !matches!(c, '\t' | '\r' | '\n'))
    {
        return Err(E::custom(
            "strings must not contain control characters other than tab, CR and LF",
        ));
    }
    Ok(())
}

fn number<E: de::Error>(text: &str) -> Result<Value, E> {
    let finite = text.parse::<f64>().map(f64::is_finite).unwrap_or(false);
    if !finite || text.len() > 64 {
        return Err(E::custom(
            "a number is out of the range this server can store",
        ));
    }
    text.parse::<Number>()
        .map(Value::Number)
        .map_err(|_| E::custom("invalid number"))
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("a number is out of range"))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        check_text(v)?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        check_text(&v)?;
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(Strict { input: self.input })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let input = self.input;
        while let Some(Key { text: key, written }) = map.next_key_seed(KeySeed { input })? {
            if key == NUMBER_TOKEN {
                if written {
                    return Err(de::Error::custom(
                        "a property name is serde_json's own number marker",
                    ));
                }
                // serde_json's arbitrary-precision numbers arrive as this one-entry map.
                let text: String = map.next_value()?;
                return number(&text);
            }
            check_text(&key)?;
            let value = map.next_value_seed(Strict { input })?;
            if out.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "duplicate property '{}'",
                    key.escape_default()
                )));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::parse_strict;

    #[test]
    fn duplicate_keys_are_rejected_at_any_depth() {
        assert!(parse_strict(br#"{"id":"a","id":"b"}"#).is_err());
        assert!(parse_strict(br#"{"a":[{"x":1,"x":1}]}"#).is_err());
        assert!(parse_strict(br#"{"a":{"x":1},"b":{"x":1}}"#).is_ok());
    }

    #[test]
    fn an_object_is_never_read_as_a_number_whatever_its_keys() {
        for body in [
            r#"{"resource":{"$serde_json::private::Number":"0"}}"#,
            r#"{"a":1,"$serde_json::private::Number":"1"}"#,
            r#"{"\u0024serde_json::private::Number":"2"}"#,
        ] {
            assert!(parse_strict(body.as_bytes()).is_err(), "{body}");
        }
        let numbers = parse_strict(b"[1.0, {\"n\": 2e3}]").unwrap();
        assert_eq!(numbers[0].to_string(), "1.0");
        assert!(numbers[1]["n"].is_number());
    }

    #[test]
    fn decimals_keep_their_precision() {
        let v = parse_strict(br#"{"v":1.50,"w":-0,"x":0.000000000000000000001}"#).unwrap();
        assert_eq!(
            v.to_string(),
            r#"{"v":1.50,"w":-0,"x":0.000000000000000000001}"#
        );
    }

    #[test]
    fn unstorable_numbers_are_rejected() {
        assert!(parse_strict(br#"{"v":1e999999}"#).is_err());
        assert!(parse_strict(format!(r#"{{"v":{}}}"#, "9".repeat(1000)).as_bytes()).is_err());
        assert!(parse_strict(br#"{"v":NaN}"#).is_err());
    }

    #[test]
    fn control_characters_and_bad_unicode_are_rejected() {
        assert!(parse_strict(br#"{"v":"a\u0000b"}"#).is_err());
        assert!(parse_strict(br#"{"v":"\ud800"}"#).is_err());
        assert!(parse_strict(b"{\"v\":\"\xc0\xaf\"}").is_err());
        assert!(parse_strict(br#"{"v":"tab\tand\nnewline"}"#).is_ok());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        assert!(parse_strict(deep.as_bytes()).is_err());
        let deep_obj = r#"{"a":"#.repeat(50_000) + "1" + &"}".repeat(50_000);
        assert!(parse_strict(deep_obj.as_bytes()).is_err());
    }

    #[test]
    fn trailing_garbage_is_rejected() {
        assert!(parse_strict(br#"{"a":1} x"#).is_err());
    }
}
