//! The layering rules of docs/DESIGN.md, checked on the source tree: files and functions small
//! enough to read in one sitting, no SQL text or engine branch in the layers that only
//! orchestrate, and a store that names no table of the clinic schema.

use std::fs;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

fn sources(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap().map(Result::unwrap) {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join(dir), &mut out);
    out.sort();
    out
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap()
}

/// The code of a file without its unit tests (a `#[cfg(test)]` module at its end, or a
/// `tests.rs` module).
fn code(p: &Path) -> String {
    if p.file_name().is_some_and(|n| n == "tests.rs") {
        return String::new();
    }
    let text = read(p);
    match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// The functions of rustfmt-formatted source and their lengths in lines, found by indentation:
/// a body ends at the first `}` at the indentation of its `fn` line.
fn functions(text: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let Some(at) = trimmed.find("fn ") else {
            continue;
        };
        let head = &trimmed[..at];
        let words_before = head
            .split_whitespace()
            .all(|w| matches!(w, "pub" | "async" | "const" | "unsafe") || w.starts_with("pub("));
        if !words_before || trimmed.starts_with("//") {
            continue;
        }
        let name: String = trimmed[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let indent = line.len() - trimmed.len();
        // The signature ends with `{` (a body) or `;` (a declaration).
        let Some(open) = (i..lines.len()).find(|&j| {
            let l = lines[j].trim_end();
            l.ends_with('{') || l.ends_with(';')
        }) else {
            continue;
        };
        if lines[open].trim_end().ends_with(';') {
            continue;
        }
        let close = (open + 1..lines.len()).find(|&j| {
            let l = lines[j];
            l.len() - l.trim_start().len() == indent && l.trim_start().starts_with('}')
        });
        if let Some(close) = close {
            out.push((name, i + 1, close - i + 1));
        }
    }
    out
}

#[test]
fn no_source_file_is_over_600_lines_and_no_function_over_80() {
    let mut long = Vec::new();
    for p in sources("src") {
        let text = read(&p);
        let n = text.lines().count();
        if n > MAX_FILE_LINES {
            long.push(format!("{}: {n} lines", p.display()));
        }
        for (name, at, len) in functions(&text) {
            if len > MAX_FN_LINES {
                long.push(format!("{}:{at} fn {name}: {len} lines", p.display()));
            }
        }
    }
    assert!(long.is_empty(), "over the limits:\n{}", long.join("\n"));
}

#[test]
fn the_length_check_sees_a_long_function() {
    let body = "    let x = 1;\n".repeat(MAX_FN_LINES);
    let text = format!(
        "pub(crate) async fn long(\n    a: u8,\n) -> u8 {{\n{body}    x\n}}\n\nfn short() {{}}\n"
    );
    let found = functions(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "long");
    assert!(found[0].2 > MAX_FN_LINES);
}

/// SQL statements in string literals (SQL is written in capitals here), and engine branches.
fn sql_and_dialect(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let quoted = line.split('"').skip(1).step_by(2);
        for s in quoted {
            if [
                "SELECT ",
                "INSERT INTO",
                "UPDATE ",
                "DELETE FROM",
                "ANALYZE",
            ]
            .iter()
            .any(|k| s.contains(k))
            {
                found.push(format!("line {}: SQL text: {s}", i + 1));
            }
        }
        if line.contains("Dialect") {
            found.push(format!("line {}: engine branch", i + 1));
        }
    }
    found
}

#[test]
fn interactions_and_import_write_no_sql_and_know_no_engine() {
    let mut found = Vec::new();
    for p in sources("src/interactions")
        .into_iter()
        .chain(sources("src/import"))
    {
        for f in sql_and_dialect(&code(&p)) {
            found.push(format!("{}: {f}", p.display()));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
    // And the check does see them.
    let sample = "let q = \"SELECT id FROM t\";\nif db.dialect() == Dialect::Postgres {}\n";
    assert_eq!(sql_and_dialect(sample).len(), 2);
}

/// The tables the migrations create.
fn schema_tables() -> Vec<String> {
    let mut tables = Vec::new();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for e in fs::read_dir(dir).unwrap().map(Result::unwrap) {
        for part in read(&e.path()).split("CREATE TABLE ").skip(1) {
            let name: String = part
                .trim_start_matches("IF NOT EXISTS ")
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            tables.push(name);
        }
    }
    tables
}

#[test]
fn the_store_names_no_table_of_the_schema() {
    let tables = schema_tables();
    assert!(tables.iter().any(|t| t == "patients"), "{tables:?}");
    let mut found = Vec::new();
    for p in sources("src/store") {
        let text = code(&p);
        for t in &tables {
            let named = text.match_indices(t.as_str()).any(|(at, _)| {
                let before = text[..at].chars().last();
                let after = text[at + t.len()..].chars().next();
                let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
                !word(before) && !word(after)
            });
            if named {
                found.push(format!("{}: {t}", p.display()));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}
