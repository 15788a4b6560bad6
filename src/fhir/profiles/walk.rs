//! The walk of a resource against a profile's rules: elements found by path, slices sorted
//! by their discriminators, cardinality, fixed and pattern values, invariants.

use super::*;

/// The values of a path inside an item (arrays flattened).
pub(super) fn values_at<'a>(v: &'a Value, path: &[String]) -> Vec<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return match v {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
    };
    match v {
        Value::Array(a) => a.iter().flat_map(|x| values_at(x, path)).collect(),
        Value::Object(o) => o.get(first).map(|x| values_at(x, rest)).unwrap_or_default(),
        _ => vec![],
    }
}

impl Matcher {
    pub(super) fn matches(&self, item: &Value) -> bool {
        self.conditions.iter().all(|(path, want)| {
            values_at(item, path)
                .into_iter()
                .any(|v| matches_pattern(want, v))
        })
    }
}

/// One rule being checked against a resource.
pub(super) struct Walk<'a> {
    pub(super) profile: &'a Profile,
    pub(super) rule: &'a Rule,
    pub(super) url: &'a str,
    pub(super) issues: &'a mut Vec<Issue>,
}

impl Walk<'_> {
    /// The items of step `depth` under `node`, with their keys: a choice matches its typed
    /// keys, a slice keeps the items that belong to it. `slice_id` is the element id so far.
    pub(super) fn children<'v>(
        &self,
        node: &'v Value,
        depth: usize,
        slice_id: &str,
    ) -> Option<(Vec<(String, &'v Value)>, String)> {
        let step = &self.rule.path[depth];
        let id = if slice_id.is_empty() {
            step.name.clone()
        } else {
            format!("{slice_id}.{}", step.name)
        };
        let Some(obj) = node.as_object() else {
            return Some((vec![], id));
        };
        let keys: Vec<&String> = match step.name.strip_suffix("[x]") {
            Some(prefix) => obj.keys().filter(|k| is_choice(k, prefix)).collect(),
            None => obj.keys().filter(|k| **k == step.name).collect(),
        };
        let mut out = Vec::new();
        for k in keys {
            match &obj[k.as_str()] {
                Value::Array(a) => {
                    out.extend(a.iter().enumerate().map(|(i, v)| (format!("{k}[{i}]"), v)))
                }
                v => out.push((k.clone(), v)),
            }
        }
        match &step.slice {
            None => Some((out, id)),
            Some(slice) => {
                let sliced = format!("{id}:{slice}");
                if step.name.ends_with("[x]") {
                    // A type slice of a choice: `value[x]:valueQuantity`.
                    out.retain(|(k, _)| k == slice);
                } else {
                    match self.profile.slices.get(&sliced) {
                        Some(m) if !m.unknown && !m.conditions.is_empty() => {
                            out.retain(|(_, v)| m.matches(v))
                        }
                        _ => return None,
                    }
                }
                Some((out, sliced))
            }
        }
    }

    pub(super) fn check(&mut self, node: &Value, at: String, depth: usize, slice_id: String) {
        if self.rule.path.is_empty() {
            self.leaf(&[(String::new(), node)], &at);
            return;
        }
        let Some((found, id)) = self.children(node, depth, &slice_id) else {
            return;
        };
        if depth + 1 < self.rule.path.len() {
            for (key, child) in found {
                self.check(child, format!("{at}.{key}"), depth + 1, id.clone());
            }
            return;
        }
        let here = format!(
            "{at}.{}",
            self.rule.path[depth].name.trim_end_matches("[x]")
        );
        let n = found.len() as u64;
        let url = self.url;
        let what = match &self.rule.path[depth].slice {
            Some(s) => format!(" (slice {s})"),
            None => String::new(),
        };
        if n < self.rule.min {
            self.issues.push(
                Issue::error(
                    IssueType::Required,
                    format!("at least {}{what} required by profile {url}", self.rule.min),
                )
                .at(here.clone()),
            );
        }
        if self.rule.max.is_some_and(|m| n > m) {
            self.issues.push(
                Issue::error(
                    IssueType::Structure,
                    format!(
                        "at most {}{what} allowed by profile {url}",
                        self.rule.max.unwrap_or(0)
                    ),
                )
                .at(here.clone()),
            );
        }
        self.leaf(&found, &at);
    }

    pub(super) fn leaf(&mut self, found: &[(String, &Value)], at: &str) {
        let url = self.url;
        for (key, v) in found {
            let place = if key.is_empty() {
                at.to_owned()
            } else {
                format!("{at}.{key}")
            };
            if self.rule.fixed.as_ref().is_some_and(|f| f != *v) {
                self.issues.push(
                    Issue::error(
                        IssueType::Value,
                        format!("must have the value fixed by profile {url}"),
                    )
                    .at(place.clone()),
                );
            }
            if self
                .rule
                .pattern
                .as_ref()
                .is_some_and(|p| !matches_pattern(p, v))
            {
                self.issues.push(
                    Issue::error(
                        IssueType::Value,
                        format!("must match the pattern of profile {url}"),
                    )
                    .at(place.clone()),
                );
            }
            for (k, human, check) in &self.rule.invariants {
                if !check(v) {
                    self.issues.push(
                        Issue::error(
                            IssueType::Invariant,
                            format!("{k}: {human} (profile {url})"),
                        )
                        .at(place.clone()),
                    );
                }
            }
        }
    }
}

/// Whether `value` carries everything `pattern` has (objects key by key, arrays item by item).
pub(super) fn matches_pattern(pattern: &Value, value: &Value) -> bool {
    match (pattern, value) {
        (Value::Object(p), Value::Object(v)) => p
            .iter()
            .all(|(k, pv)| v.get(k).is_some_and(|vv| matches_pattern(pv, vv))),
        (Value::Array(p), Value::Array(v)) => p
            .iter()
            .all(|pi| v.iter().any(|vi| matches_pattern(pi, vi))),
        (p, v) => p == v,
    }
}
