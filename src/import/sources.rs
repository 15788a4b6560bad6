//! The files an import reads, in loading order: batches first, then the other JSON files,
//! then NDJSON files, patients first.

use super::*;

/// A file to import, in the order files are loaded.
pub(super) struct Source {
    pub(super) path: PathBuf,
    pub(super) rank: u8,
    pub(super) bytes: u64,
}

/// Every `.json` and `.ndjson` file under `paths`, in loading order.
pub(super) fn sources(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let mut files = Vec::new();
    for p in paths {
        collect(p, &mut files).with_context(|| format!("reading {}", p.display()))?;
    }
    files.sort();
    files.dedup();
    let mut out = Vec::new();
    for path in files {
        let bytes = std::fs::metadata(&path)?.len();
        let rank = if is_ndjson(&path) {
            10 + ndjson_rank(&path)
        } else {
            match head_of(&path) {
                (Some(rt), Some(kind)) if rt == "Bundle" && kind == "batch" => 0,
                _ => 1,
            }
        };
        out.push(Source { path, rank, bytes });
    }
    out.sort_by(|a, b| (a.rank, &a.path).cmp(&(b.rank, &b.path)));
    Ok(out)
}

/// A JSON file's `resourceType` and `type`, read from its start: the file is read only as far
/// as they are (the first two properties of a Synthea bundle), not parsed whole.
pub(super) fn head_of(path: &Path) -> (Option<String>, Option<String>) {
    use serde::de::{Deserializer as _, IgnoredAny, MapAccess, Visitor};
    struct Head<'a>(&'a mut (Option<String>, Option<String>));
    impl<'de> Visitor<'de> for Head<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<String>()? {
                match key.as_str() {
                    "resourceType" => self.0 .0 = map.next_value::<Option<String>>()?,
                    "type" => self.0 .1 = map.next_value::<Option<String>>()?,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                if self.0 .0.is_some() && self.0 .1.is_some() {
                    // Stopping here leaves the object unfinished: the error that makes is
                    // not one (what was wanted has been read).
                    break;
                }
            }
            Ok(())
        }
    }
    let mut found = (None, None);
    if let Ok(f) = std::fs::File::open(path) {
        let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(f));
        let _ = de.deserialize_map(Head(&mut found));
    }
    found
}

pub(super) fn collect(p: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    let meta = std::fs::metadata(p)?;
    if meta.is_dir() {
        for e in std::fs::read_dir(p)? {
            let path = e?.path();
            let wanted = path.is_dir()
                || matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("json") | Some("ndjson")
                );
            if wanted {
                collect(&path, out)?;
            }
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

pub(super) fn is_ndjson(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()) == Some("ndjson")
}

/// NDJSON files of the types others refer to load first (by the type of the first line).
pub(super) fn ndjson_rank(p: &Path) -> u8 {
    use std::io::BufRead;
    let first = std::fs::File::open(p)
        .ok()
        .and_then(|f| {
            std::io::BufReader::new(f)
                .lines()
                .map_while(Result::ok)
                .find(|l| !l.trim().is_empty())
        })
        .and_then(|l| serde_json::from_str::<Value>(&l).ok());
    match first
        .as_ref()
        .and_then(|v| v.get("resourceType"))
        .and_then(Value::as_str)
    {
        Some("Practitioner") => 0,
        Some("Patient") => 1,
        Some("Encounter") => 2,
        Some("AllergyIntolerance") | Some("MedicationRequest") => 3,
        Some("Observation") => 4,
        Some("DiagnosticReport") => 5,
        _ => 6,
    }
}
