//! A search request parsed against the mappings' declarations: filters, the result
//! parameters, sort keys, includes and the cursor.

use super::*;
use crate::fhir::search::{self as vocabulary, split_values, FORMAT_PARAMS};

/// A search as the HTTP layer received it: decoded name/value pairs, in order.
pub struct SearchRequest {
    pub params: Vec<(String, String)>,
    /// `Prefer: handling=strict`: unknown parameters are an error instead of being ignored.
    pub strict: bool,
}

/// One `_sort` key.
pub(super) struct Sort {
    pub(super) param: &'static SearchParam,
    pub(super) descending: bool,
}

/// One `_include` or `_revinclude`.
#[derive(Clone)]
pub(super) struct Include {
    /// The type holding the reference.
    pub(super) source: &'static str,
    /// The reference parameter; `None` for `*` (every reference parameter of `source`).
    pub(super) param: Option<&'static SearchParam>,
    /// The target type named after the parameter, if any.
    pub(super) target: Option<String>,
    pub(super) reverse: bool,
    pub(super) iterate: bool,
}

/// A parsed search, ready to run.
pub struct SearchQuery {
    pub(super) filters: Vec<Filter>,
    /// The parameters applied, for the self link.
    pub(super) applied: Vec<(String, String)>,
    pub(super) count: i64,
    /// `_total`: `Some(false)` for none, `Some(true)` for estimate or accurate; by default a
    /// total is given only when it costs nothing: on a first page that holds every match
    /// (counting a long result means finding every match, where a page needs only its own).
    pub(super) total: Option<bool>,
    pub(super) sort: Vec<Sort>,
    pub(super) includes: Vec<Include>,
    pub(super) summary: Summary,
    pub(super) elements: Option<Vec<String>>,
    pub(super) cursor: Option<Cursor>,
}

/// Where a page starts: after or before the row whose sort values and id it carries; in a
/// link, as the text [`Encoded::encode`] gives.
pub(super) type Cursor = Keyset;

pub(super) trait Encoded: Sized {
    fn encode(&self) -> String;
    fn decode(s: &str, keys: usize) -> Option<Self>;
}

impl Encoded for Cursor {
    fn encode(&self) -> String {
        let json = serde_json::json!([self.values, self.id.to_string()]);
        let dir = if self.after { "a" } else { "b" };
        format!(
            "{dir}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
        )
    }

    fn decode(s: &str, keys: usize) -> Option<Cursor> {
        let after = match s.get(..1)? {
            "a" => true,
            "b" => false,
            _ => return None,
        };
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s.get(1..)?)
            .ok()?;
        let v: Value = serde_json::from_slice(&raw).ok()?;
        let values = v.get(0)?.as_array()?;
        if values.len() != keys {
            return None;
        }
        let values = values
            .iter()
            .map(|x| match x {
                Value::Null => Some(None),
                Value::String(s) => Some(Some(s.clone())),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        let id = Uuid::parse_str(v.get(1)?.as_str()?).ok()?;
        Some(Cursor { after, values, id })
    }
}

impl SearchQuery {
    /// Parses `req` as a search of `resource_type`; `None` for a search across types, which
    /// takes only the parameters every type has.
    pub fn parse(
        req: &SearchRequest,
        registry: &crate::mapping::Registry,
        resource_type: Option<&'static str>,
    ) -> Result<SearchQuery> {
        let mut q = SearchQuery {
            filters: vec![],
            applied: vec![],
            count: DEFAULT_COUNT,
            total: None,
            sort: vec![],
            includes: vec![],
            summary: Summary::False,
            elements: None,
            cursor: None,
        };
        vocabulary::without_nul(&req.params)
            .map_err(|m| Error::BadRequest(vec![Issue::error(IssueType::Value, m)]))?;
        vocabulary::within_limits(&req.params)
            .map_err(|m| Error::BadRequest(vec![Issue::error(IssueType::TooCostly, m)]))?;
        let mut ignored = Vec::new();
        let mut cursor = None;
        for (name, value) in &req.params {
            if name == "_cursor" {
                cursor = Some(value.clone());
            } else if FORMAT_PARAMS.contains(&name.as_str()) {
            } else if name == "_sort" {
                q.sort_by(registry, resource_type, value)?;
                q.applied.push((name.clone(), value.clone()));
            } else if q.result_param(name, value)? {
                // (`_count` goes in the links by itself.)
                if name != "_count" {
                    q.applied.push((name.clone(), value.clone()));
                }
            } else if let Some(spec) = vocabulary::include_name(name) {
                let (reverse, iterate) = spec.map_err(bad)?;
                match parse_include(registry, value, reverse, iterate)? {
                    Some(inc) => {
                        q.includes.push(inc);
                        q.applied.push((name.clone(), value.clone()));
                    }
                    None => ignored.push(format!("{name}={value}")),
                }
            } else if let Some(f) = filter_of(registry, resource_type, name, value)? {
                q.filters.push(f);
                q.applied.push((name.clone(), value.clone()));
            } else {
                ignored.push(name.clone());
            }
        }
        if req.strict && !ignored.is_empty() {
            let issues = ignored
                .iter()
                .map(|n| {
                    Issue::error(
                        IssueType::NotSupported,
                        format!("search parameter '{}' is not supported", n.escape_default()),
                    )
                })
                .collect();
            return Err(Error::BadRequest(issues));
        }
        if let Some(c) = cursor {
            q.cursor = Some(
                Cursor::decode(&c, q.sort.len())
                    .ok_or_else(|| bad("_cursor is not a cursor of this search".into()))?,
            );
        }
        Ok(q)
    }

    /// Takes a result parameter (`_count`, `_total`, `_summary`, `_elements`); `false` for
    /// any other.
    fn result_param(&mut self, name: &str, value: &str) -> Result<bool> {
        match name {
            "_count" => {
                self.count = vocabulary::count(value).map_err(|i| Error::BadRequest(vec![i]))?
            }
            "_total" => self.total = Some(vocabulary::total(value).map_err(bad)?),
            "_summary" => {
                self.summary = Summary::parse(value).ok_or_else(|| {
                    bad("_summary must be true, text, data, count or false".into())
                })?
            }
            "_elements" => self.elements = Some(vocabulary::elements(value).map_err(bad)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Takes `_sort`: parameters of the type with an order, `-` for descending.
    fn sort_by(
        &mut self,
        registry: &crate::mapping::Registry,
        resource_type: Option<&'static str>,
        value: &str,
    ) -> Result<()> {
        let Some(rt) = resource_type else {
            return Err(bad("_sort is not supported in a search across types".into()));
        };
        for key in value.split(',') {
            let (descending, pname) = match key.strip_prefix('-') {
                Some(p) => (true, p),
                None => (false, key),
            };
            let param = find_param(registry, rt, pname)
                .filter(|p| p.kind != ParamKind::Composite)
                .ok_or_else(|| {
                    bad(format!(
                        "_sort: '{}' is not a sortable parameter of {rt}",
                        pname.escape_default()
                    ))
                })?;
            self.sort.push(Sort { param, descending });
        }
        Ok(())
    }

    /// Applies `_elements` (to matches) and `_summary` (to every entry) to an entry's resource.
    pub(super) fn shape(&self, e: &mut SearchEntry) {
        let elements = self.elements.as_ref().filter(|_| e.mode == "match");
        if elements.is_none() && matches!(self.summary, Summary::False | Summary::Count) {
            return;
        }
        let resource = e.resource.json_mut();
        let t = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        if let Some(names) = elements {
            subset::elements(resource, &t, names);
        }
        subset::summary(resource, &t, self.summary);
    }

    /// Whether this page's Bundle carries a total, counted if need be: `_summary=count`,
    /// `_total=estimate` or `accurate` (an estimate is counted exactly), or `_count=0` (no
    /// entries: the total is all it can ask for) unless `_total=none`.
    pub(super) fn counts(&self) -> bool {
        self.summary == Summary::Count || self.total.unwrap_or(self.count == 0)
    }

    /// The total of a first page of `n` rows that holds every match: `n`, unless `_total=none`
    /// (or the page was not read: `_count=0`).
    pub(super) fn complete_total(&self, n: usize) -> Option<i64> {
        (self.total != Some(false) && self.cursor.is_none() && self.count > 0).then_some(n as i64)
    }
}

/// The filter a search parameter gives; `None` for a parameter this server does not know.
fn filter_of(
    registry: &crate::mapping::Registry,
    resource_type: Option<&'static str>,
    name: &str,
    value: &str,
) -> Result<Option<Filter>> {
    let parsed = match resource_type {
        Some(rt) => filter::parse(registry, rt, name, split_values(value)),
        None => {
            // Across types only the parameters of every resource apply.
            let base = name.split(':').next().unwrap_or_default();
            match COMMON.iter().find(|p| p.name == base) {
                Some(_) => filter::parse(registry, "Patient", name, split_values(value)),
                None => Ok(None),
            }
        }
    };
    parsed.map_err(|e| bad(e.0))
}

#[cfg(test)]
mod tests {
    use super::{Cursor, Encoded};
    use uuid::Uuid;

    #[test]
    fn cursors_round_trip_and_refuse_other_shapes() {
        let c = Cursor {
            after: false,
            values: vec![Some("Smith".into()), None],
            id: Uuid::new_v4(),
        };
        let d = Cursor::decode(&c.encode(), 2).unwrap();
        assert_eq!((d.after, d.values, d.id), (false, c.values.clone(), c.id));
        assert!(Cursor::decode(&c.encode(), 1).is_none());
        assert!(Cursor::decode("a.not-base64", 0).is_none());
    }
}
