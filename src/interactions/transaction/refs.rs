//! Conditional references (`Patient?identifier=sys|val`) of a transaction, resolved before its
//! writes when none of them can change the answer.

use super::*;

impl Fhir {
    /// The conditional references `wanted` (met in the transaction's resources, without the
    /// server's base) whose answer none of its writes can change, resolved before the writes (a read among them waits for every write sent
    /// before it), as (reference, literal reference) for [`Fhir::resolve_conditional_references`];
    /// the others are resolved when their entry is written, after the entries it follows.
    ///
    /// An answer can change when the transaction writes a resource of the referenced type that
    /// may match the criteria (told from `identifier` criteria by the resources' identifiers;
    /// for any other criteria, any write of that type may), writes the resource found, or
    /// patches one of that type; chained and `_has` criteria may read other types, and wait.
    /// Only criteria that find exactly one resource are kept: the others fail where their entry
    /// is written, naming it. Deletes were made before, and count. What is found is known to
    /// exist, and its row, for the rest of the transaction.
    pub(super) async fn resolve_ahead(
        &self,
        tx: &mut Tx,
        caller: &Caller,
        wanted: &BTreeSet<String>,
        entries: &[Entry],
        targets: &[Option<Id>],
        existing: &HashSet<usize>,
    ) -> Result<HashMap<String, String>> {
        let mut resolved = HashMap::new();
        for local in wanted {
            let Some((ty, criteria)) = local.split_once('?') else {
                continue;
            };
            let Some(m) = self.registry.get(ty).cloned() else {
                continue;
            };
            let params: Vec<(String, String)> = form_urlencoded::parse(criteria.as_bytes())
                .into_owned()
                .collect();
            if params
                .iter()
                .any(|(name, _)| name.contains('.') || name.starts_with("_has"))
            {
                continue;
            }
            // The writes of that type.
            let writes: Vec<&Entry> = entries
                .iter()
                .filter(|e| {
                    e.rtype == ty
                        && matches!(e.method, Method::Post | Method::Put | Method::Patch)
                        && targets[e.index].is_some()
                        && !existing.contains(&e.index)
                })
                .collect();
            if writes.iter().any(|e| e.method == Method::Patch) {
                continue;
            }
            if !writes.is_empty() {
                let Some(values) = identifier_values(&params) else {
                    continue;
                };
                if writes.iter().any(|e| {
                    e.resource
                        .as_ref()
                        .is_none_or(|r| may_carry_identifier(r, &values))
                }) {
                    continue;
                }
            }
            let hits = self
                .matches_in(&mut Conn::Tx(tx), caller, &m, criteria, 2)
                .await?;
            let [(row, id)] = hits.as_slice() else {
                continue;
            };
            if writes
                .iter()
                .any(|e| targets[e.index].as_ref().is_some_and(|t| t.as_str() == id))
            {
                continue;
            }
            // Found, so there (see check_references), and its row known.
            super::super::WriteMemo::found(tx, ty, id);
            crate::mapping::memo::remember_row(tx, m.table(), id, *row);
            resolved.insert(local.clone(), format!("{ty}/{id}"));
        }
        Ok(resolved)
    }
}

/// Criteria that name a bundle entry by its fullUrl (`subject=urn:uuid:...`) name its id.
pub(super) fn rewrite_criteria(criteria: &str, local: &HashMap<String, String>) -> String {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(criteria.as_bytes())
        .into_owned()
        .map(|(k, v)| {
            let v = local.get(&v).cloned().unwrap_or(v);
            (k, v)
        })
        .collect();
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// The identifier values criteria made only of `identifier` parameters (no modifier) ask for,
/// lowercased (`system|value` and `value` both give the value); `None` for any other criteria,
/// or a system without a value.
pub(super) fn identifier_values(params: &[(String, String)]) -> Option<Vec<String>> {
    let mut values = Vec::new();
    for (name, value) in params {
        if name != "identifier" {
            return None;
        }
        for one in value.split(',') {
            let v = one.rsplit_once('|').map_or(one, |(_, v)| v);
            if v.is_empty() {
                return None;
            }
            values.push(v.to_lowercase());
        }
    }
    (!values.is_empty()).then_some(values)
}

/// Whether `resource` carries an identifier whose value is one of `values` (any system, any
/// case: a resource that may match the criteria).
pub(super) fn may_carry_identifier(resource: &Value, values: &[String]) -> bool {
    resource
        .get("identifier")
        .and_then(Value::as_array)
        .is_some_and(|ids| {
            ids.iter().any(|i| {
                i.get("value")
                    .and_then(Value::as_str)
                    .is_some_and(|v| values.contains(&v.to_lowercase()))
            })
        })
}
