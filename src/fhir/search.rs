//! The search vocabulary of the specification (https://hl7.org/fhir/R4/search.html) that needs
//! no knowledge of the types a server hosts: values split on commas, the result parameters
//! (`_count`, `_total`, `_elements`), and the names of `_include` and `_revinclude`.

use super::{Issue, IssueType};

/// Default and largest page sizes.
pub const DEFAULT_COUNT: i64 = 20;
pub const MAX_COUNT: i64 = 1000;

/// The most parameters one search may carry (every name=value pair, result parameters and
/// includes counted): each is a condition of the query, and their cost adds up.
pub const MAX_PARAMS: usize = 50;
/// The most values one parameter may list (`_id=a,b,c`).
pub const MAX_VALUES: usize = 100;
/// The most links of one chain or `_has` (`subject:Patient.organization.name` is two).
pub const MAX_CHAIN: usize = 3;

/// A NUL is no character of any FHIR value (and PostgreSQL's text cannot hold one): the first
/// parameter that holds one, named.
pub fn without_nul(params: &[(String, String)]) -> Result<(), String> {
    match params
        .iter()
        .find(|(n, v)| n.contains('\0') || v.contains('\0'))
    {
        Some((name, _)) => Err(format!(
            "'{}' holds a NUL character, which no search value may",
            shown(name)
        )),
        None => Ok(()),
    }
}

/// Whether a search stays within the limits above: the first it goes over, said so that the
/// client can tell what to change.
pub fn within_limits(params: &[(String, String)]) -> Result<(), String> {
    if params.len() > MAX_PARAMS {
        return Err(format!(
            "this search has {} parameters; the limit is {MAX_PARAMS} per request",
            params.len()
        ));
    }
    for (name, value) in params {
        let links = name.matches('.').count() + name.matches("_has:").count();
        if links > MAX_CHAIN {
            return Err(format!(
                "'{}' chains {links} links; the limit is {MAX_CHAIN}",
                shown(name)
            ));
        }
        // (Split only when there are commas enough: an escaped one separates nothing.)
        if value.matches(',').count() >= MAX_VALUES {
            let values = split_values(value).len();
            if values > MAX_VALUES {
                return Err(format!(
                    "'{}' lists {values} values; the limit is {MAX_VALUES} per parameter",
                    shown(name)
                ));
            }
        }
    }
    Ok(())
}

/// A parameter name as an answer repeats it: escaped, and cut short.
pub fn shown(name: &str) -> String {
    let cut: String = name.chars().take(64).collect();
    let more = if cut.len() < name.len() { "..." } else { "" };
    format!("{}{more}", cut.escape_default())
}

/// Parameters that only concern the representation.
pub const FORMAT_PARAMS: &[&str] = &["_format", "_pretty"];

/// Splits a parameter's value at its unescaped commas, unescaping `\,` and `\$`. `\\` and `\|`
/// stay escaped: a `|` separates the parts of a token or a quantity ([`split_pipe`]), and
/// [`unescape`] gives the plain value of the other types.
pub fn split_values(v: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        let Some(last) = out.last_mut() else {
            break;
        };
        match c {
            '\\' => match chars.next() {
                Some(n @ (',' | '$')) => last.push(n),
                Some(n) => {
                    last.push('\\');
                    last.push(n);
                }
                None => last.push('\\'),
            },
            ',' => out.push(String::new()),
            c => last.push(c),
        }
    }
    out
}

/// A value of [`split_values`] with `\|` and `\\` unescaped: the value of a type whose values
/// have no parts.
pub fn unescape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('\\', Some(&n @ ('|' | '\\'))) => {
                out.push(n);
                chars.next();
            }
            (c, _) => out.push(c),
        }
    }
    out
}

/// Splits a value of [`split_values`] at its first unescaped `|` (`system|code`,
/// `number|system|code`): the part before it with `\|` and `\\` unescaped, and the rest as
/// written (split it again for a third part).
pub fn split_pipe(v: &str) -> (String, Option<&str>) {
    let mut first = String::new();
    let mut chars = v.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.clone().next() {
                Some((_, n @ ('|' | '\\'))) => {
                    first.push(n);
                    chars.next();
                }
                _ => first.push('\\'),
            },
            '|' => return (first, Some(&v[i + 1..])),
            c => first.push(c),
        }
    }
    (first, None)
}

/// `_count`: a page size, at most [`MAX_COUNT`] (past it, the issue is `too-costly`).
pub fn count(value: &str) -> Result<i64, Issue> {
    let n: i64 = value.parse().map_err(|_| {
        Issue::error(
            IssueType::Invalid,
            format!(
                "_count must be a non-negative integer, not '{}'",
                value.escape_default()
            ),
        )
    })?;
    if n < 0 {
        return Err(Issue::error(
            IssueType::Invalid,
            "_count must not be negative",
        ));
    }
    if n > MAX_COUNT {
        return Err(Issue::error(
            IssueType::TooCostly,
            format!("_count asks for {n} resources a page; the limit is {MAX_COUNT}"),
        ));
    }
    Ok(n)
}

/// `_total`: whether a total is wanted (`none`: no; `estimate`, `accurate`: yes).
pub fn total(value: &str) -> Result<bool, String> {
    match value {
        "none" => Ok(false),
        "estimate" | "accurate" => Ok(true),
        _ => Err("_total must be none, estimate or accurate".into()),
    }
}

/// `_elements`: element names.
pub fn elements(value: &str) -> Result<Vec<String>, String> {
    let names: Vec<String> = value
        .split(',')
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    if names.iter().any(|n| {
        !n.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    }) {
        return Err("_elements takes element names".into());
    }
    Ok(names)
}

/// For a parameter named `_include` or `_revinclude` (with a modifier or not): whether it is
/// a revinclude, and whether it iterates. `None` for any other name.
pub fn include_name(name: &str) -> Option<Result<(bool, bool), String>> {
    let (reverse, modifier) = name
        .strip_prefix("_include")
        .map(|m| (false, m))
        .or_else(|| name.strip_prefix("_revinclude").map(|m| (true, m)))?;
    Some(match modifier {
        "" => Ok((reverse, false)),
        ":iterate" | ":recurse" => Ok((reverse, true)),
        _ => Err(format!(
            "{} takes no modifier other than :iterate",
            name.escape_default()
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commas_separate_values_unless_escaped() {
        assert_eq!(split_values("a,b"), vec!["a", "b"]);
        assert_eq!(split_values(r"a\,b,c"), vec!["a,b", "c"]);
        assert_eq!(split_values(r"x\$y\\z"), vec![r"x$y\\z"]);
        assert_eq!(unescape(r"x$y\\z"), r"x$y\z");
        assert_eq!(split_values(r"sys\|x"), vec![r"sys\|x"]);
        assert_eq!(unescape(r"sys\|x"), "sys|x");
        assert_eq!(split_values(r"a\\,b"), vec![r"a\\", "b"]);
        assert_eq!(unescape(r"a\\"), r"a\");
        assert_eq!(split_values(r"sys\\|x"), vec![r"sys\\|x"]);
        assert_eq!(split_pipe(r"a\|b|c\|d"), (r"a|b".to_owned(), Some(r"c\|d")));
        assert_eq!(split_pipe(r"sys\\|x"), (r"sys\".to_owned(), Some("x")));
        assert_eq!(split_pipe(r"\|"), ("|".to_owned(), None));
        assert_eq!(split_pipe("code"), ("code".to_owned(), None));
    }

    #[test]
    fn result_parameters_take_their_values_or_say_what_they_take() {
        assert_eq!(count("5"), Ok(5));
        assert_eq!(count("1000"), Ok(MAX_COUNT));
        let past = count("1001").unwrap_err();
        assert_eq!(past.code, IssueType::TooCostly);
        assert!(past.diagnostics.contains("the limit is 1000"));
        assert!(count("-1").is_err() && count("x").is_err());
        assert!(count("99999999999999999999").is_err());
        assert_eq!(total("none"), Ok(false));
        assert_eq!(total("accurate"), Ok(true));
        assert!(total("all").is_err());
        assert_eq!(elements("id, name").unwrap(), vec!["id", "name"]);
        assert!(elements("name;drop").is_err());
        assert_eq!(include_name("_include"), Some(Ok((false, false))));
        assert_eq!(include_name("_revinclude:iterate"), Some(Ok((true, true))));
        assert!(matches!(include_name("_include:x"), Some(Err(_))));
        assert_eq!(include_name("_id"), None);
    }
}
