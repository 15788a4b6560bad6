//! What a run of a batch's writes touches, so that two runs go to the database side by side
//! only when neither could see, take or change what the other writes: their answers and what
//! is stored are then those of the runs one after the other.

use super::*;

/// The resources a run writes, the values it takes and what it looks at.
#[derive(Debug, Default)]
pub(super) struct Touches {
    /// `Type/id` of each write by id.
    ids: HashSet<String>,
    /// The types the run writes.
    writes: HashSet<String>,
    /// `Type|system|value` for each identifier of a written resource, and `Type||value` too.
    identifiers: HashSet<String>,
    /// The identifiers that the run's conditional writes look for, as above.
    looks_for: HashSet<String>,
    /// The unique values its writes take ([`ResourceMapping::claims`]).
    claims: HashSet<String>,
    /// The types its resources refer to.
    refers: HashSet<String>,
    /// A criterion other than identifiers, or a reference of no type (an absolute URL, a
    /// `urn:`): it may see a write of any type.
    sees_all: bool,
}

impl Touches {
    /// What `run` touches; `mapping` gives each type's mapping, when it has one.
    pub(super) fn of(
        run: &[Entry],
        mapping: impl Fn(&str) -> Option<Arc<dyn ResourceMapping>>,
    ) -> Touches {
        let mut t = Touches::default();
        for e in run {
            t.writes.insert(e.rtype.clone());
            if let Some(id) = &e.id {
                t.ids.insert(format!("{}/{id}", e.rtype));
            }
            for criteria in [&e.query, &e.if_none_exist].into_iter().flatten() {
                t.look_for(&e.rtype, criteria);
            }
            let Some(body) = &e.resource else { continue };
            identifiers_of(&e.rtype, body, &mut t.identifiers);
            if let Some(m) = mapping(&e.rtype) {
                t.claims.extend(m.claims(body));
            }
            crate::fhir::references(body, &mut |r| match type_of(r) {
                Some(rtype) => {
                    t.refers.insert(rtype.to_owned());
                }
                None if r.starts_with('#') => {}
                None => t.sees_all = true,
            });
        }
        t
    }

    /// Notes what conditional `criteria` on `rtype` look for: identifiers only, or anything.
    fn look_for(&mut self, rtype: &str, criteria: &str) {
        for (name, value) in form_urlencoded::parse(criteria.as_bytes()) {
            if name != "identifier" || value.contains('\\') {
                self.sees_all = true;
                continue;
            }
            for one in value.split(',') {
                match one.split_once('|') {
                    Some((system, v)) if !v.is_empty() => {
                        self.looks_for.insert(format!("{rtype}|{system}|{v}"));
                    }
                    Some(_) => self.sees_all = true,
                    None => {
                        self.looks_for.insert(format!("{rtype}||{one}"));
                    }
                }
            }
        }
    }

    /// Whether the two runs may go side by side.
    pub(super) fn apart(&self, other: &Touches) -> bool {
        let one_way = |a: &Touches, b: &Touches| {
            (!a.sees_all || b.writes.is_empty())
                && a.refers.is_disjoint(&b.writes)
                && a.looks_for.is_disjoint(&b.identifiers)
        };
        self.ids.is_disjoint(&other.ids)
            && self.claims.is_disjoint(&other.claims)
            && self.looks_for.is_disjoint(&other.looks_for)
            && one_way(self, other)
            && one_way(other, self)
    }

    /// Adds what `other` touches.
    pub(super) fn join(&mut self, other: Touches) {
        self.ids.extend(other.ids);
        self.writes.extend(other.writes);
        self.identifiers.extend(other.identifiers);
        self.looks_for.extend(other.looks_for);
        self.claims.extend(other.claims);
        self.refers.extend(other.refers);
        self.sees_all |= other.sees_all;
    }
}

/// The type of a relative reference (`Type/id`, `Type?criteria`).
fn type_of(reference: &str) -> Option<&str> {
    let end = reference.find(['/', '?'])?;
    let rtype = &reference[..end];
    let mut chars = rtype.chars();
    (chars.next()?.is_ascii_uppercase() && chars.all(|c| c.is_ascii_alphanumeric()))
        .then_some(rtype)
}

/// The identifiers of a resource, as a conditional write on `rtype` would look for them.
fn identifiers_of(rtype: &str, body: &Value, out: &mut HashSet<String>) {
    let Some(list) = body.get("identifier").and_then(Value::as_array) else {
        return;
    };
    for i in list {
        let Some(value) = i.get("value").and_then(Value::as_str) else {
            continue;
        };
        let system = i.get("system").and_then(Value::as_str).unwrap_or("");
        out.insert(format!("{rtype}|{system}|{value}"));
        out.insert(format!("{rtype}||{value}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(method: Method, rtype: &str, id: Option<&str>, body: Value) -> Entry {
        Entry {
            index: 0,
            full_url: None,
            method,
            rtype: rtype.into(),
            id: id.map(|i| Id::parse(i).unwrap()),
            version: None,
            query: None,
            resource: Some(body),
            patch: None,
            if_match: None,
            if_none_exist: None,
        }
    }

    fn create_if(rtype: &str, criteria: &str, body: Value) -> Entry {
        let mut e = entry(Method::Post, rtype, None, body);
        e.if_none_exist = Some(criteria.into());
        e
    }

    fn touches(run: &[Entry]) -> Touches {
        Touches::of(run, |_| None)
    }

    fn npi(n: &str) -> Value {
        json!({"resourceType": "Practitioner",
               "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": n}]})
    }

    #[test]
    fn conditional_creates_of_other_identifiers_are_apart() {
        let a = [create_if(
            "Practitioner",
            "identifier=http://hl7.org/fhir/sid/us-npi|1",
            npi("1"),
        )];
        let b = [create_if(
            "Practitioner",
            "identifier=http%3A%2F%2Fhl7.org%2Ffhir%2Fsid%2Fus-npi%7C2",
            npi("2"),
        )];
        assert!(touches(&a).apart(&touches(&b)));
        // One run writes the identifier the other looks for, with or without its system.
        let c = [create_if("Practitioner", "identifier=1", npi("3"))];
        assert!(!touches(&a).apart(&touches(&c)));
        let d = [entry(Method::Put, "Practitioner", Some("x"), npi("2"))];
        assert!(!touches(&b).apart(&touches(&d)));
        // Criteria of any other kind may match anything written.
        let e = [create_if("Practitioner", "name=smith", npi("9"))];
        assert!(!touches(&e).apart(&touches(&b)));
        assert!(!touches(&b).apart(&touches(&e)));
    }

    #[test]
    fn a_reference_to_a_type_the_other_run_writes_keeps_them_in_turn() {
        let patient = [entry(Method::Put, "Patient", Some("p1"), json!({}))];
        let obs = |r: &str| {
            [entry(
                Method::Post,
                "Observation",
                None,
                json!({"subject": {"reference": r}, "contained": [], "performer": [{"reference": "#c"}]}),
            )]
        };
        assert!(!touches(&patient).apart(&touches(&obs("Patient/p1"))));
        assert!(!touches(&obs("Patient?identifier=x")).apart(&touches(&patient)));
        assert!(!touches(&obs("urn:uuid:1")).apart(&touches(&patient)));
        assert!(!touches(&obs("http://other/fhir/Patient/p1")).apart(&touches(&patient)));
        assert!(touches(&obs("Practitioner/d1")).apart(&touches(&patient)));
        // The same resource written by both.
        let again = [entry(Method::Delete, "Patient", Some("p1"), json!({}))];
        assert!(!touches(&patient).apart(&touches(&again)));
        let other = [entry(Method::Put, "Patient", Some("p2"), json!({}))];
        let mut joined = touches(&patient);
        assert!(joined.apart(&touches(&other)));
        joined.join(touches(&other));
        assert!(!joined.apart(&touches(&other)));
    }

    #[test]
    fn the_same_unique_email_taken_by_both_keeps_them_in_turn() {
        let registry = crate::mapping::Registry::standard();
        let with = |id: &str, email: &str| {
            let run = [entry(
                Method::Put,
                "Practitioner",
                Some(id),
                json!({"resourceType": "Practitioner",
                       "telecom": [{"system": "email", "value": email}]}),
            )];
            Touches::of(&run, |t| registry.get(t).cloned())
        };
        assert!(with("a", "a@x.org").apart(&with("b", "b@x.org")));
        assert!(!with("a", "a@x.org").apart(&with("b", "a@x.org")));
    }
}
