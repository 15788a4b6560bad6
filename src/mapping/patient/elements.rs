//! Each element of a Patient that has columns, as a [`Field`]: what the columns hold of it,
//! and the element rebuilt from them (lossless by construction, docs/DESIGN.md).

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MappingData {
    pub(super) marital_status: MaritalData,
    pub(super) language_system: String,
    pub(super) contact_relationship_system: String,
    pub(super) element_order: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MaritalData {
    pub(super) system: String,
    pub(super) null_flavor_system: String,
    pub(super) codes: HashMap<String, String>,
}

pub(super) static DATA: LazyLock<MappingData> = LazyLock::new(|| {
    serde_json::from_str(include_str!("../../../mappings/patient.json"))
        .expect("mappings/patient.json is valid (checked by a unit test)")
});

pub(super) struct Active;
impl Field for Active {
    type Cols = Option<bool>;
    const KEY: &'static str = "active";
    fn project(e: Option<&Value>) -> Option<bool> {
        e.and_then(Value::as_bool)
    }
    fn patch(_: Option<Value>, c: &Option<bool>) -> Option<Value> {
        c.map(Value::Bool)
    }
}

pub(super) struct Gender;
impl Field for Gender {
    type Cols = Option<String>;
    const KEY: &'static str = "gender";
    fn project(e: Option<&Value>) -> Option<String> {
        e.and_then(Value::as_str).map(str::to_owned)
    }
    fn patch(_: Option<Value>, c: &Option<String>) -> Option<Value> {
        c.clone().map(Value::String)
    }
}

/// birthDate ⇄ (birth_date, birth_date_precision): `1974`, `1974-12` and `1974-12-25` all fit.
pub(super) struct BirthDate;
impl Field for BirthDate {
    type Cols = (Option<NaiveDate>, &'static str);
    const KEY: &'static str = "birthDate";
    fn project(e: Option<&Value>) -> Self::Cols {
        let s = e.and_then(Value::as_str).unwrap_or("");
        let parsed = match s.len() {
            4 => s
                .parse()
                .ok()
                .and_then(|y| NaiveDate::from_ymd_opt(y, 1, 1))
                .map(|d| (d, "year")),
            7 => NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d")
                .ok()
                .map(|d| (d, "month")),
            10 => NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .map(|d| (d, "day")),
            _ => None,
        };
        match parsed {
            Some((d, p)) => (Some(d), p),
            None => (None, "day"),
        }
    }
    fn patch(_: Option<Value>, c: &Self::Cols) -> Option<Value> {
        let d = c.0?;
        Some(Value::String(match c.1 {
            "year" => format!("{:04}", d.year()),
            "month" => d.format("%Y-%m").to_string(),
            _ => d.format("%Y-%m-%d").to_string(),
        }))
    }
}

/// name[] ⇄ (first_name, last_name) of the official name, or the first one.
pub(super) struct Name;
pub(super) fn primary_name(names: &[Value]) -> Option<usize> {
    names
        .iter()
        .position(|n| str_of(Some(n), "use") == Some("official"))
        .or((!names.is_empty()).then_some(0))
}
impl Field for Name {
    type Cols = (Option<String>, Option<String>);
    const KEY: &'static str = "name";
    fn project(e: Option<&Value>) -> Self::Cols {
        let names = e
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        primary_name(names).map_or((None, None), |i| fields::name_project(names.get(i)))
    }
    fn patch(e: Option<Value>, c: &Self::Cols) -> Option<Value> {
        let mut names = match e {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let i = match primary_name(&names) {
            Some(i) => i,
            None if *c == (None, None) => return None,
            None => {
                names.push(json!({}));
                names.len() - 1
            }
        };
        if let Some(n) = names[i].as_object_mut() {
            fields::name_patch(n, &c.0, &c.1);
            if n.is_empty() {
                names.remove(i);
            }
        }
        (!names.is_empty()).then_some(Value::Array(names))
    }
}

pub(super) struct Telecom;
impl Field for Telecom {
    type Cols = (Option<String>, Option<String>);
    const KEY: &'static str = "telecom";
    fn project(e: Option<&Value>) -> Self::Cols {
        fields::telecom_project(e)
    }
    fn patch(e: Option<Value>, c: &Self::Cols) -> Option<Value> {
        fields::telecom_patch(e, &c.0, &c.1)
    }
}

/// address[0] ⇄ (address_line (lines joined by newlines), city, state, postal_code, country).
pub(super) struct Address;
pub(super) type AddressCols = [Option<String>; 5];
pub(super) const ADDRESS_KEYS: [&str; 4] = ["city", "state", "postalCode", "country"];
impl Field for Address {
    type Cols = AddressCols;
    const KEY: &'static str = "address";
    fn project(e: Option<&Value>) -> AddressCols {
        let first = e.and_then(Value::as_array).and_then(|a| a.first());
        [
            fields::joined(first, "line", "\n"),
            str_of(first, ADDRESS_KEYS[0]).map(str::to_owned),
            str_of(first, ADDRESS_KEYS[1]).map(str::to_owned),
            str_of(first, ADDRESS_KEYS[2]).map(str::to_owned),
            str_of(first, ADDRESS_KEYS[3]).map(str::to_owned),
        ]
    }
    fn patch(e: Option<Value>, c: &AddressCols) -> Option<Value> {
        let mut list = match e {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        if list.is_empty() {
            if c.iter().all(Option::is_none) {
                return None;
            }
            list.push(json!({}));
        }
        if let Some(a) = list[0].as_object_mut() {
            fields::set_joined(a, "line", "\n", &c[0]);
            for (k, v) in ADDRESS_KEYS.iter().zip(&c[1..]) {
                set_str(a, k, v);
            }
            if a.is_empty() {
                list.remove(0);
            }
        }
        (!list.is_empty()).then_some(Value::Array(list))
    }
}

/// maritalStatus ⇄ marital_status (a v3-MaritalStatus code, or UNK from v3-NullFlavor).
pub(super) struct Marital;
pub(super) fn marital_code(e: Option<&Value>) -> Option<(String, bool)> {
    let d = &DATA.marital_status;
    e?.get("coding")?.as_array()?.iter().find_map(|c| {
        let sys = str_of(Some(c), "system")?;
        let code = str_of(Some(c), "code")?;
        if sys == d.system {
            Some((code.to_owned(), d.codes.contains_key(code) && code != "UNK"))
        } else if sys == d.null_flavor_system && code == "UNK" {
            Some((code.to_owned(), true))
        } else {
            None
        }
    })
}
impl Field for Marital {
    type Cols = Option<String>;
    const KEY: &'static str = "maritalStatus";
    fn project(e: Option<&Value>) -> Option<String> {
        marital_code(e).map(|(c, _)| c)
    }
    fn patch(_: Option<Value>, c: &Option<String>) -> Option<Value> {
        let d = &DATA.marital_status;
        let code = c.as_deref()?;
        let system = if code == "UNK" {
            &d.null_flavor_system
        } else {
            &d.system
        };
        let mut coding = json!({"system": system, "code": code});
        if let Some(display) = d.codes.get(code) {
            coding["display"] = json!(display);
        }
        Some(json!({ "coding": [coding] }))
    }
}

/// communication[] ⇄ preferred_language: the language of the preferred entry, or the first.
pub(super) struct Communication;
pub(super) fn preferred_entry(list: &[Value]) -> Option<usize> {
    list.iter()
        .position(|c| c.get("preferred").and_then(Value::as_bool) == Some(true))
        .or((!list.is_empty()).then_some(0))
}
pub(super) fn language_code(entry: &Value) -> Option<String> {
    let coding = entry.get("language")?.get("coding")?.as_array()?;
    coding
        .iter()
        .find_map(|c| str_of(Some(c), "code"))
        .map(str::to_owned)
}
impl Field for Communication {
    type Cols = Option<String>;
    const KEY: &'static str = "communication";
    fn project(e: Option<&Value>) -> Option<String> {
        let list = e.and_then(Value::as_array)?;
        language_code(list.get(preferred_entry(list)?)?)
    }
    fn patch(e: Option<Value>, c: &Option<String>) -> Option<Value> {
        let mut list = match e {
            Some(Value::Array(a)) => a,
            _ => Vec::new(),
        };
        let fresh =
            |code: &str| json!({"coding": [{"system": DATA.language_system, "code": code}]});
        match (preferred_entry(&list), c) {
            (Some(i), Some(code)) => list[i]["language"] = fresh(code),
            (Some(i), None) => {
                list.remove(i);
            }
            (None, Some(code)) => list.push(json!({"language": fresh(code), "preferred": true})),
            (None, None) => {}
        }
        (!list.is_empty()).then_some(Value::Array(list))
    }
}

/// The logical id of the first `Practitioner/{id}` in generalPractitioner.
pub(super) fn practitioner_ref(e: Option<&Value>) -> Option<String> {
    e?.as_array()?.iter().find_map(|r| {
        let id = str_of(Some(r), "reference")?.strip_prefix("Practitioner/")?;
        Id::parse(id).map(|i| i.to_string())
    })
}

/// One identifier row: (use, system, value).
pub(super) struct IdentifierRow;
impl Field for IdentifierRow {
    type Cols = [Option<String>; 3];
    const KEY: &'static str = "";
    fn project(e: Option<&Value>) -> Self::Cols {
        ["use", "system", "value"].map(|k| str_of(e, k).map(str::to_owned))
    }
    fn patch(e: Option<Value>, c: &Self::Cols) -> Option<Value> {
        let mut o = match e {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        for (k, v) in ["use", "system", "value"].iter().zip(c) {
            set_str(&mut o, k, v);
        }
        Some(Value::Object(o))
    }
}

/// One contact row: (relationship, first_name, last_name, phone, email).
pub(super) struct ContactRow;
impl Field for ContactRow {
    type Cols = [Option<String>; 5];
    const KEY: &'static str = "";
    fn project(e: Option<&Value>) -> Self::Cols {
        let relationship = e
            .and_then(|c| c.get("relationship"))
            .and_then(|r| r.get(0))
            .and_then(|r| r.get("coding"))
            .and_then(|c| c.get(0))
            .and_then(|c| str_of(Some(c), "code"))
            .map(str::to_owned);
        let (given, family) = fields::name_project(e.and_then(|c| c.get("name")));
        let (phone, email) = fields::telecom_project(e.and_then(|c| c.get("telecom")));
        [relationship, given, family, phone, email]
    }
    fn patch(e: Option<Value>, c: &Self::Cols) -> Option<Value> {
        let mut o = match e {
            Some(Value::Object(o)) => o,
            _ => Map::new(),
        };
        if Self::project(Some(&Value::Object(o.clone())))[0] != c[0] {
            match &c[0] {
                Some(code) => {
                    o.insert(
                        "relationship".into(),
                        json!([{"coding": [{"system": DATA.contact_relationship_system, "code": code}]}]),
                    );
                }
                None => {
                    o.remove("relationship");
                }
            }
        }
        let mut name = match o.remove("name") {
            Some(Value::Object(n)) => n,
            _ => Map::new(),
        };
        fields::name_patch(&mut name, &c[1], &c[2]);
        if !name.is_empty() {
            o.insert("name".into(), Value::Object(name));
        }
        match fields::telecom_patch(o.remove("telecom"), &c[3], &c[4]) {
            Some(t) => {
                o.insert("telecom".into(), t);
            }
            None => {
                o.remove("telecom");
            }
        }
        Some(Value::Object(o))
    }
}

/// What a stored row keeps of an array item: `{}` when the columns rebuild it exactly.
pub(super) fn row_extra<F: Field>(item: &Value) -> (F::Cols, Value) {
    let cols = F::project(Some(item));
    let extra = if F::patch(None, &cols).as_ref() == Some(item) {
        json!({})
    } else {
        item.clone()
    };
    (cols, extra)
}

pub(super) fn row_rebuild<F: Field>(extra: Option<Value>, cols: &F::Cols) -> Option<Value> {
    let kept = extra.filter(|e| e.as_object().is_some_and(|o| !o.is_empty()));
    match kept {
        Some(o) if F::project(Some(&o)) == *cols => Some(o),
        o => F::patch(o, cols),
    }
}
