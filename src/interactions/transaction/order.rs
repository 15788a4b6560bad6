//! The order of a transaction's writes.

use super::*;

/// The order of a transaction's writes: by phase (POST, then PUT and PATCH) and bundle order,
/// except that an entry comes after every entry whose `Type/id` it references. A cycle of
/// references cannot be ordered: its first entry written names one not written yet, and the
/// transaction fails naming it.
pub(super) fn write_order(entries: &[Entry], targets: &[Option<Id>]) -> Vec<usize> {
    let writes: Vec<usize> = entries
        .iter()
        .filter(|e| matches!(e.method, Method::Post | Method::Put | Method::Patch))
        .filter(|e| targets[e.index].is_some())
        .map(|e| e.index)
        .collect();
    let by_target: HashMap<String, usize> = writes
        .iter()
        .filter_map(|&i| {
            targets[i]
                .as_ref()
                .map(|id| (format!("{}/{id}", entries[i].rtype), i))
        })
        .collect();
    // POSTs in bundle order; updates by target, the order rows are locked in: each write's
    // place in that order.
    let mut sorted: Vec<usize> = writes.clone();
    sorted.sort_by_cached_key(|&i| {
        let e = &entries[i];
        let target = match e.method {
            Method::Put | Method::Patch => targets[i]
                .as_ref()
                .map(|id| format!("{}/{id}", e.rtype))
                .unwrap_or_default(),
            _ => String::new(),
        };
        (e.method.phase(), target, i)
    });
    let rank: HashMap<usize, usize> = sorted.iter().enumerate().map(|(r, &i)| (i, r)).collect();
    let mut deps: HashMap<usize, Vec<usize>> = HashMap::new();
    for &i in &writes {
        let mut found = Vec::new();
        if let Some(r) = &entries[i].resource {
            references(r, &mut |s| {
                let target = s.split("/_history/").next().unwrap_or(s);
                if let Some(&j) = by_target.get(target) {
                    if j != i {
                        found.push(j);
                    }
                }
            });
        }
        deps.insert(i, found);
    }
    // Depth-first: before an entry, the entries it needs (in their own order).
    let mut done: HashSet<usize> = HashSet::new();
    let mut visiting: HashSet<usize> = HashSet::new();
    let mut out = Vec::with_capacity(writes.len());
    pub(super) fn visit(
        i: usize,
        deps: &HashMap<usize, Vec<usize>>,
        rank: &HashMap<usize, usize>,
        done: &mut HashSet<usize>,
        visiting: &mut HashSet<usize>,
        out: &mut Vec<usize>,
    ) {
        if done.contains(&i) || !visiting.insert(i) {
            return;
        }
        let mut needs = deps.get(&i).cloned().unwrap_or_default();
        needs.sort_by_key(|j| rank.get(j));
        for j in needs {
            visit(j, deps, rank, done, visiting, out);
        }
        visiting.remove(&i);
        done.insert(i);
        out.push(i);
    }
    for i in sorted {
        visit(i, &deps, &rank, &mut done, &mut visiting, &mut out);
    }
    out
}
