//! The random generator, and the mutations of JSON documents, strings and bytes.

use serde_json::{Map, Value};

/// A small deterministic generator (xorshift64*, seeded through splitmix64): one seed, one
/// sequence of inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A number in `lo..=hi`.
    pub fn between(&mut self, lo: usize, hi: usize) -> usize {
        lo + self.below(hi - lo + 1)
    }

    /// True one time in `n`.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }

    /// One of `items`, which must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// A version 4 UUID drawn from this generator.
    pub fn uuid(&mut self) -> String {
        let bytes = (u128::from(self.next_u64()) << 64 | u128::from(self.next_u64())).to_le_bytes();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }
}

/// A JSON document being mutated: a value, and raw texts for what a value cannot hold (numbers
/// past f64, lone surrogates, duplicate keys, deep nesting, invalid escapes). A raw text stands
/// in the value as the string `"\u{1}raw:N\u{1}"` and replaces it when the document is written.
pub struct Doc {
    pub value: Value,
    raw: Vec<String>,
}

impl Doc {
    pub fn new(value: Value) -> Doc {
        Doc { value, raw: vec![] }
    }

    /// A value written as the JSON text `text`.
    pub fn raw(&mut self, text: String) -> Value {
        let marker = Value::String(format!("\u{1}raw:{}\u{1}", self.raw.len()));
        self.raw.push(text);
        marker
    }

    /// The document as JSON text. A raw text may hold the marker of an earlier one (a value
    /// written whole into a duplicated key), so the last is replaced first.
    pub fn render(&self) -> Vec<u8> {
        let mut text = self.value.to_string();
        for (i, raw) in self.raw.iter().enumerate().rev() {
            text = text.replace(&format!("\"\\u0001raw:{i}\\u0001\""), raw);
        }
        text.into_bytes()
    }
}

/// Numbers a JSON parser or a database may choke on, as JSON text.
const ODD_NUMBERS: &[&str] = &[
    "1e999999",
    "-1e999999",
    "1e-999999",
    "-0",
    "-0.0",
    "0e0",
    "1E400",
    "4.9e-324",
    "18446744073709551616",
    "-9223372036854775809",
    "9223372036854775807",
    "2147483648",
    "0.1e1",
    "1.0",
    "01",
    "+1",
    ".5",
    "NaN",
    "Infinity",
    "1.",
    "0x10",
    "1e308",
    "1e28",
    "1e29",
    "1e-7",
    "0.000000000000000000000000000001",
    "79228162514264337593543950335",
    "79228162514264337593543950336",
    "-79228162514264337593543950336",
    "12345678901234567890.123456789",
];

/// Strings with unicode and escape edge cases, as JSON text (some of them invalid JSON).
const ODD_STRINGS: &[&str] = &[
    r#""\ud800""#,
    r#""\udfff""#,
    r#""a\ud800b""#,
    r#""\udc00\ud800""#,
    r#""\ud83d\ude00""#,
    r#""\u0000""#,
    r#""a\u0000b""#,
    r#""\u202eRTL\u202c""#,
    "\"مرحبا بالعالم\"",
    "\"👩‍⚕️🏥\"",
    r#""\ufeffx""#,
    r#""e\u0301""#,
    r#""\uffff""#,
    r#""\u2028\u2029""#,
    "\"İstanbul ß ﬃ\"",
    "\" \"",
    "\"\"",
    "\"x\ty\"",
    "\"line\nbreak\"",
    r#""\u00""#,
    r#""\x41""#,
    "\"\u{10ffff}\"",
    r#""%_\\*'\"; --""#,
    "\"\u{7f}\u{80}\u{9f}\"",
];

/// A number past what f64, i64 or rust_decimal hold, as JSON text.
pub fn odd_number(rng: &mut Rng) -> String {
    let digits = |rng: &mut Rng, n: usize| -> String {
        (0..n)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect()
    };
    match rng.below(4) {
        0 => format!("1{}", digits(rng, 999)),
        1 => format!("{}.{}", rng.between(1, 9), digits(rng, 1000)),
        2 => format!("0.{}1", "0".repeat(999)),
        _ => (*rng.pick(ODD_NUMBERS)).to_owned(),
    }
}

/// A string of 10 KB to 1 MB (1 MB rarely).
pub fn long_string(rng: &mut Rng) -> String {
    let len = match rng.below(10) {
        0 => 1 << 20,
        1..=3 => rng.between(100_000, 300_000),
        _ => rng.between(10_000, 20_000),
    };
    let unit = *rng.pick(&["a", "é", "😀", "\\", "ab c", "\u{202e}"]);
    unit.repeat(len / unit.len())
}

/// Arrays or objects nested 10 to 10,000 levels deep, as JSON text.
pub fn nested(rng: &mut Rng) -> String {
    let levels = *rng.pick(&[10, 100, 127, 128, 129, 200, 1000, 10_000]);
    if rng.one_in(2) {
        format!("{}1{}", "[".repeat(levels), "]".repeat(levels))
    } else {
        format!("{}1{}", "{\"a\":".repeat(levels), "}".repeat(levels))
    }
}

/// A value of another JSON type than `v`.
fn other_type(v: &Value, rng: &mut Rng) -> Value {
    let candidates = [
        Value::String("x".into()),
        Value::String("true".into()),
        Value::String("12".into()),
        Value::from(0),
        Value::from(-1.5),
        Value::Bool(true),
        Value::Null,
        Value::Object(Map::new()),
        serde_json::json!({"value": "x", "url": 1}),
        Value::Array(vec![]),
        Value::Array(vec![v.clone()]),
        serde_json::json!([1, "a", null, {}]),
    ];
    loop {
        let c = rng.pick(&candidates).clone();
        if std::mem::discriminant(&c) != std::mem::discriminant(v) || rng.one_in(4) {
            return c;
        }
    }
}

fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// A JSON pointer to a node of `root`, found by a random walk from it: one of the nodes the
/// walk passed for which `want` holds.
fn pick_pointer(root: &Value, rng: &mut Rng, want: fn(&Value) -> bool) -> Option<String> {
    let mut seen = vec![];
    let mut node = root;
    let mut pointer = String::new();
    loop {
        if want(node) {
            seen.push(pointer.clone());
        }
        let next = match node {
            Value::Object(m) if !m.is_empty() && !rng.one_in(5) => {
                let (k, v) = m.iter().nth(rng.below(m.len()))?;
                pointer.push('/');
                pointer.push_str(&escape_pointer(k));
                v
            }
            Value::Array(a) if !a.is_empty() && !rng.one_in(5) => {
                let i = rng.below(a.len());
                pointer.push_str(&format!("/{i}"));
                &a[i]
            }
            _ => break,
        };
        node = next;
    }
    if seen.is_empty() {
        return None;
    }
    // Deeper nodes are likelier: the last ones the walk passed.
    let i = seen.len() - 1 - rng.below(seen.len()).min(rng.below(seen.len()));
    Some(seen.swap_remove(i))
}

fn is_object(v: &Value) -> bool {
    v.is_object()
}
fn any(_: &Value) -> bool {
    true
}
fn is_number(v: &Value) -> bool {
    v.is_number()
}
fn is_string(v: &Value) -> bool {
    v.is_string()
}

/// Applies one mutation to `doc`; answers its name (for the finding files).
pub fn mutate(doc: &mut Doc, rng: &mut Rng) -> &'static str {
    let which = rng.below(13);
    let want = match which {
        0..=2 => is_object,
        6 => is_number,
        9 => is_string,
        _ => any,
    };
    // A number replaces a number when there is one (else anything).
    let picked = pick_pointer(&doc.value, rng, want).or_else(|| pick_pointer(&doc.value, rng, any));
    let Some(pointer) = picked else {
        return "none";
    };
    // Taken out and put back, so that `doc.raw` may be called while it is changed.
    let Some(slot) = doc.value.pointer_mut(&pointer) else {
        return "none";
    };
    let mut node = std::mem::take(slot);
    let name = match which {
        0..=2 => {
            let keys: Vec<String> = node
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            if keys.is_empty() {
                "none"
            } else {
                let key = rng.pick(&keys).clone();
                let map = node.as_object_mut().expect("picked an object");
                match which {
                    0 => {
                        map.remove(&key);
                        "drop key"
                    }
                    1 => {
                        let original = map.get(&key).cloned().unwrap_or(Value::Null);
                        let other = other_type(&original, rng);
                        let text =
                            format!("{}, {}: {}", original, Value::String(key.clone()), other);
                        map.insert(key, doc.raw(text));
                        "duplicate key"
                    }
                    _ => {
                        let value = map.remove(&key).unwrap_or(Value::Null);
                        let renamed = match rng.below(6) {
                            0 => key.to_uppercase(),
                            1 => format!("_{key}"),
                            2 => format!("{key}String"),
                            3 => format!("{key}\u{0}"),
                            4 => "resourceType".to_owned(),
                            _ => format!("{key}{}", rng.below(10)),
                        };
                        map.insert(renamed, value);
                        "rename key"
                    }
                }
            }
        }
        3 | 4 => {
            node = other_type(&node, rng);
            "change type"
        }
        5 => {
            node = Value::String(long_string(rng));
            "long string"
        }
        6 => {
            let text = odd_number(rng);
            node = doc.raw(text);
            "odd number"
        }
        7 => {
            let text = (*rng.pick(ODD_STRINGS)).to_owned();
            node = doc.raw(text);
            "odd unicode"
        }
        8 => {
            let text = nested(rng);
            node = doc.raw(text);
            "deep nesting"
        }
        9 => {
            node = Value::String(odd_text(node.as_str().unwrap_or(""), rng));
            "odd text"
        }
        10 => {
            if let Some(m) = node.as_object_mut() {
                let t = *rng.pick(&[
                    "Patient",
                    "Observation",
                    "Encounter",
                    "Practitioner",
                    "Bundle",
                    "OperationOutcome",
                    "patient",
                    "",
                    "Patient ",
                    "Organization",
                ]);
                m.insert("resourceType".into(), Value::String(t.into()));
            }
            "resourceType"
        }
        11 => {
            if let Value::Array(a) = &mut node {
                if rng.one_in(3) || a.is_empty() {
                    a.clear();
                } else {
                    // Up to 2,000 copies, and some 4 MB at most.
                    let first = a[0].clone();
                    let size = first.to_string().len().max(1);
                    a.resize(rng.between(2, 2000).min(4_000_000 / size).max(2), first);
                }
            } else {
                node = Value::Array(vec![node.clone(), node]);
            }
            "array size"
        }
        _ => {
            node = Value::String(odd_reference(rng));
            "odd reference"
        }
    };
    if let Some(slot) = doc.value.pointer_mut(&pointer) {
        *slot = node;
    }
    name
}

/// A reference a server should refuse or resolve with care.
pub fn odd_reference(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => format!("urn:uuid:{}", rng.uuid()),
        10 => "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|%00".into(),
        11 => "Patient?name=x%2500&_count=1".into(),
        1 => "Patient/../x".into(),
        2 => format!("Patient/{}", "a".repeat(65)),
        3 => "http://elsewhere.example/fhir/Patient/1".into(),
        4 => "#contained".into(),
        5 => "Patient?name=x".into(),
        6 => "Patient/a/_history/1".into(),
        7 => "".into(),
        8 => "Patient/%2e%2e".into(),
        _ => "Observation".into(),
    }
}

/// `s` made odd: a date past the calendar, an escape, whitespace, a control character.
pub fn odd_text(s: &str, rng: &mut Rng) -> String {
    let date = s.len() >= 4 && s.bytes().take(4).all(|b| b.is_ascii_digit());
    match rng.below(9) {
        // Dates at the edges of the calendar, valid ones among them.
        _ if date && rng.one_in(2) => (*rng.pick(&[
            "0001-01-01",
            "9999-12-31",
            "9999-12-31T23:59:59.9999999+14:00",
            "0001-01-01T00:00:00-12:00",
            "2020-02-29",
            "1900-02-29",
            "2020",
            "2020-12",
            "1969-12-31T23:59:59.999Z",
            "2020-01-01T24:00:00Z",
            "2020-06-01T12:00:00+05:45",
        ]))
        .to_owned(),
        0 => (*rng.pick(&[
            "2023-02-30",
            "10000-01-01",
            "0000-01-01",
            "-2023",
            "2023-13-01T25:61:61Z",
            "2023-01-01T00:00:00+25:00",
            "2023-01-01T00:00:00.1234567891234Z",
            "2023-1-1",
            "99999-12-31T23:59:59Z",
            "2023-01-01T00:00:00",
        ]))
        .to_owned(),
        1 => format!(" {s} "),
        2 => format!("{s}\\,\\|\\$\\\\"),
        3 => s.chars().rev().collect(),
        4 => format!("{s}\u{0}"),
        5 => s.to_uppercase(),
        6 => format!("{s}{}", "\u{301}".repeat(100)),
        7 => format!("{s}%"),
        _ => String::new(),
    }
}

/// Applies one mutation to the bytes of a body; answers its name.
pub fn mutate_bytes(bytes: &mut Vec<u8>, rng: &mut Rng) -> &'static str {
    match rng.below(7) {
        0 => {
            bytes.truncate(rng.below(bytes.len().max(1)));
            "truncate"
        }
        1 => {
            for _ in 0..rng.between(1, 8) {
                if !bytes.is_empty() {
                    let i = rng.below(bytes.len());
                    bytes[i] = rng.next_u64() as u8;
                }
            }
            "flip bytes"
        }
        2 => {
            let at = rng.below(bytes.len() + 1);
            let junk: Vec<u8> = (0..rng.between(1, 16))
                .map(|_| rng.next_u64() as u8)
                .collect();
            bytes.splice(at..at, junk);
            "insert bytes"
        }
        3 => {
            bytes.splice(
                0..0,
                rng.pick(&[&b"\xef\xbb\xbf"[..], b"   \n", b"\0"])
                    .iter()
                    .copied(),
            );
            "prefix"
        }
        4 => {
            bytes.extend_from_slice(rng.pick::<&[u8]>(&[
                &b"}"[..],
                b" x",
                b"{}",
                b"\0",
                b"\n\n{\"a\":1}",
            ]));
            "trailing garbage"
        }
        5 => {
            *bytes = rng
                .pick(&[&b""[..], b"null", b"[]", b"\"x\"", b"1", b"{}", b"{"])
                .to_vec();
            "scalar body"
        }
        _ => {
            let s = String::from_utf8_lossy(bytes).into_owned();
            *bytes = s.replace(':', " : ").replace(',', ",\n").into_bytes();
            "respace"
        }
    }
}
