//! String parameters: prefix, `:exact` and `:contains` on the normalised `search_strings`
//! index.

use super::*;

pub(super) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The characters of a value PostgreSQL's string index keys (`left(value, 256)`: see the
/// migration `bounded index keys`).
const INDEXED_CHARS: usize = 256;

/// The condition of one value of a parameter of target `StringIndex`.
pub(super) fn string_index(
    p: &SearchParam,
    modifier: &Modifier,
    value: &str,
    ctx: &Ctx,
) -> Result<Cond, SearchError> {
    Ok({
        let mut args: Vec<Arg> = vec![ctx.resource_type.into(), p.name.into()];
        let cond = match modifier {
            Modifier::Exact => {
                args.push(value.into());
                format!("s.exact = ?{}", exact_bound(value))
            }
            Modifier::Contains => {
                args.push(format!("%{}%", like_escape(&normalize(value))).into());
                "s.value LIKE ? ESCAPE '\\'".to_owned()
            }
            _ => {
                let n = normalize(value);
                match ctx.dialect {
                    // A range on the binary-ordered index; LIKE would not use it in SQLite.
                    Dialect::Sqlite => {
                        args.push(n.clone().into());
                        args.push(format!("{n}\u{10FFFF}").into());
                        "s.value >= ? AND s.value < ?".to_owned()
                    }
                    // The same range with the operators of the text_pattern_ops index, on
                    // the first 256 characters it keys (a LIKE with a bound pattern gives a
                    // generic plan no index range), and the LIKE itself for exactness.
                    Dialect::Postgres => {
                        let key: String = n.chars().take(INDEXED_CHARS).collect();
                        args.push(key.clone().into());
                        args.push(format!("{key}\u{10FFFF}").into());
                        args.push(format!("{}%", like_escape(&n)).into());
                        "left(s.value, 256) ~>=~ ? AND left(s.value, 256) ~<~ ? \
                         AND s.value LIKE ? ESCAPE '\\'"
                            .to_owned()
                    }
                }
            }
        };
        index_rows(
            "search_strings",
            &format!("s.resource_type = ? AND s.param = ? AND {cond}"),
            args,
        )
    })
}
