//! Strict JSON bodies: read back as written, or refused (duplicate keys, controls, deep nesting).

use expediente::fhir::json::parse_strict;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::Value;

use super::{config, decimal_text, json_key, json_string, json_value, object};

/// Bytes that look like JSON, to reach deeper into the parser than random bytes do.
fn json_like_bytes() -> impl Strategy<Value = Vec<u8>> {
    let token = select(vec![
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        " ",
        "\"a\"",
        "\"\\u0061\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "\"\\t\"",
        "\"$serde_json::private::Number\"",
        "\"1.5\"",
        "1",
        "-0.50",
        "1e999",
        "NaN",
        "true",
        "null",
        "\"\u{e9}\"",
        "\u{0}",
        "\\",
    ]);
    vec(token, 0..40).prop_map(|t| t.concat().into_bytes())
}

/// A number's text split into its digits as written and its exponent's value.
fn mantissa_and_exponent(t: &str) -> (String, Option<i32>) {
    match t.split_once(['e', 'E']) {
        Some((m, e)) => (m.to_owned(), e.parse().ok()),
        None => (t.to_owned(), None),
    }
}

/// `s` as a JSON string with every character escaped (`\uXXXX`, surrogate pairs beyond the BMP).
fn fully_escaped(s: &str) -> String {
    let mut out = String::from("\"");
    for unit in s.encode_utf16() {
        out.push_str(&format!("\\u{unit:04x}"));
    }
    out.push('"');
    out
}

/// A body nested `depth` levels: arrays and objects in turn.
fn nested(depth: usize) -> String {
    let mut open = String::new();
    let mut close = String::new();
    for i in 0..depth {
        if i % 2 == 0 {
            open.push('[');
            close.insert(0, ']');
        } else {
            open.push_str("{\"a\":");
            close.insert(0, '}');
        }
    }
    format!("{open}1{close}")
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn arbitrary_bytes_are_accepted_or_refused_and_what_is_accepted_reads_back_the_same(
        bytes in prop_oneof![vec(any::<u8>(), 0..256), json_like_bytes()]
    ) {
        if let Ok(v) = parse_strict(&bytes) {
            prop_assert_eq!(parse_strict(v.to_string().as_bytes()).ok(), Some(v));
        }
    }

    #[test]
    fn generated_json_values_read_back_equal_and_in_order_after_serialization(v in json_value()) {
        let compact = v.to_string();
        let read = parse_strict(compact.as_bytes());
        prop_assert!(read.is_ok(), "{} refused: {:?}", compact, read.err());
        let read = read.unwrap();
        prop_assert_eq!(&read, &v);
        // Members keep their order (preserve_order) and numbers their text (arbitrary_precision).
        prop_assert_eq!(read.to_string(), compact);
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        prop_assert_eq!(parse_strict(pretty.as_bytes()).ok(), Some(v));
    }

    #[test]
    fn numbers_keep_the_digits_and_exponent_they_were_written_with(t in decimal_text()) {
        let body = format!("{{\"v\":{t}}}");
        let read = parse_strict(body.as_bytes());
        prop_assert!(read.is_ok(), "{} refused", body);
        let read = read.unwrap()["v"].to_string();
        // serde_json writes an exponent as `e+N`: the same number, not the same spelling.
        let (digits, exponent) = mantissa_and_exponent(&t);
        prop_assert_eq!(mantissa_and_exponent(&read), (digits, exponent), "{} read as {}", t, read);
    }

    #[test]
    fn numbers_no_engine_can_hold_are_refused(exponent in 309u32..100_000, digits in 65usize..300) {
        let bodies = [
            format!("{{\"v\":1e{exponent}}}"),
            format!("{{\"v\":-1e{exponent}}}"),
            format!("{{\"v\":{}}}", "7".repeat(digits)),
            format!("[0.{}]", "3".repeat(digits)),
        ];
        for body in bodies {
            prop_assert!(parse_strict(body.as_bytes()).is_err(), "{} accepted", body);
        }
    }

    #[test]
    fn strings_with_control_characters_other_than_tab_cr_and_lf_are_refused(
        before in json_string(),
        control in (0u32..0x20).prop_filter("tab, CR and LF are allowed", |c| ![9, 10, 13].contains(c)),
        after in json_string(),
        in_key in any::<bool>(),
    ) {
        let s = format!("{before}{}{after}", char::from_u32(control).unwrap());
        let text = serde_json::to_string(&s).unwrap();
        let body = if in_key { format!("{{{text}:1}}") } else { format!("{{\"v\":{text}}}") };
        prop_assert!(parse_strict(body.as_bytes()).is_err(), "{} accepted", body);
    }

    #[test]
    fn duplicate_keys_are_refused_at_any_depth_however_they_are_spelled(
        key in json_key(),
        first in json_value(),
        second in json_value(),
        others in vec((json_key(), json_value()), 0..4),
        depth in 0usize..6,
        escape_second in any::<bool>(),
    ) {
        let mut members = vec![format!("{}:{first}", Value::String(key.clone()))];
        let mut seen = vec![key.clone()];
        for (k, v) in others {
            if !seen.contains(&k) {
                members.push(format!("{}:{v}", Value::String(k.clone())));
                seen.push(k);
            }
        }
        let once = format!("{{{}}}", members.join(","));
        let spelled = if escape_second { fully_escaped(&key) } else { Value::String(key).to_string() };
        members.push(format!("{spelled}:{second}"));
        let twice = format!("{{{}}}", members.join(","));
        let wrap = |mut body: String| {
            for i in 0..depth {
                body = if i % 2 == 0 { format!("[{body}]") } else { format!("{{\"w\":{body}}}") };
            }
            body
        };
        prop_assert!(parse_strict(wrap(once.clone()).as_bytes()).is_ok(), "{} refused", once);
        prop_assert!(parse_strict(wrap(twice.clone()).as_bytes()).is_err(), "{} accepted", twice);
    }

    // Regression: an object with a member named like serde_json's number marker was read as a
    // number (its other members dropped); it is refused.
    #[test]
    fn objects_are_read_as_objects_or_refused_whatever_their_member_names(
        members in vec((json_key(), json_value()), 0..3),
        number in decimal_text(),
    ) {
        let mut parts: Vec<String> = object(members)
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
            .collect();
        parts.push(format!("\"$serde_json::private::Number\":\"{number}\""));
        let body = format!("{{\"resource\":{{{}}}}}", parts.join(","));
        if let Ok(v) = parse_strict(body.as_bytes()) {
            prop_assert!(v["resource"].is_object(), "{} read as {}", body, v);
        }
    }

    #[test]
    fn nesting_up_to_127_levels_is_read_and_deeper_is_refused(depth in 1usize..400) {
        prop_assert_eq!(parse_strict(nested(depth).as_bytes()).is_ok(), depth < 128, "depth {}", depth);
    }
}

#[test]
fn nesting_a_hundred_thousand_levels_deep_is_an_error_not_a_stack_overflow() {
    let n = 100_000;
    let arrays = "[".repeat(n) + &"]".repeat(n);
    let objects = r#"{"a":"#.repeat(n) + "1" + &"}".repeat(n);
    let unclosed = "[{\"a\":".repeat(n);
    for body in [arrays, objects, nested(n), unclosed] {
        assert!(parse_strict(body.as_bytes()).is_err());
    }
}
