//! NDJSON files read in parts: a bulk export's files run to gigabytes, and an import holds a
//! few parts of one (the reader keeps up to `READ_AHEAD` parts ready), never the whole file.

use super::*;
use std::io::BufRead;

/// The most lines of a part.
const PART_LINES: usize = 500;
/// A part ends at the first line that brings it past this many bytes.
const PART_BYTES: usize = 1 << 20;

impl Reader {
    /// Reads the NDJSON file `f` part by part, handing each to `send` parsed and checked;
    /// false when `send` refused one (the import stops).
    pub(super) fn ndjson(&self, f: &Source, mut send: impl FnMut(Parsed<Unit>) -> bool) -> bool {
        let name = f.path.display().to_string();
        let mut part = Parsed::empty(0);
        part.first = true;
        let mut input = match std::fs::File::open(&f.path) {
            Ok(file) => std::io::BufReader::with_capacity(1 << 16, file),
            Err(e) => {
                part.failed.push((name, e.to_string(), 0));
                part.last = true;
                part.bytes = f.bytes;
                return send(self.prepared(part));
            }
        };
        let mut buf = Vec::new();
        let (mut n, mut text) = (0usize, 0usize);
        loop {
            buf.clear();
            let read = match input.read_until(b'\n', &mut buf) {
                Ok(read) => read,
                Err(e) => {
                    part.failed
                        .push((format!("{name}:{}", n + 1), e.to_string(), 0));
                    0
                }
            };
            if read > 0 {
                n += 1;
                text += read;
                part.bytes += read as u64;
                match std::str::from_utf8(&buf) {
                    Ok(line) => self.parse_line(&name, n, line, &mut part),
                    Err(_) => part
                        .failed
                        .push((format!("{name}:{n}"), "not UTF-8".into(), 1)),
                }
            }
            let end = read == 0;
            if end || part.units.len() + part.failed.len() >= PART_LINES || text >= PART_BYTES {
                part.last = end;
                let full = std::mem::replace(&mut part, Parsed::empty(0));
                if !send(self.prepared(full)) {
                    return false;
                }
                if end {
                    return true;
                }
                text = 0;
            }
        }
    }
}
