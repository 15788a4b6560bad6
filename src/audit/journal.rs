//! The audit journal: a file of this process where the event of each read is written before the
//! read is answered, so that a crash of the process loses the events of no answered read. The
//! writer stores the events into the chain in large batches (cheaper per event than small
//! ones), and removes a journal file once every event in it is stored; a file left by a process
//! that crashed is stored by the next server to start on the same database ([`recover`]).
//!
//! A file is `{instance}-{uuid}.journal` in the journal folder, `instance` being the database's
//! own name for itself (audit_chain.instance), so a folder may serve several databases. Each
//! line is an event's row id, a tab, and the event's canonical text. The process that writes a
//! file holds a lock on it: a file that can be locked is one whose process has ended.
//! Writing a line is a plain write (no fsync): the line survives the process, as a committed
//! SQLite transaction does with synchronous = NORMAL; a power cut can lose the last ones.

use super::Event;
use crate::store::{Db, StoreError};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use uuid::Uuid;

/// Past this size the journal goes on in a new file; the old one is removed once stored.
const ROTATE_AT: u64 = 4 * 1024 * 1024;
/// Events stored in one transaction while recovering a journal.
const RECOVER_BATCH: usize = 1000;

/// The journal of this process (shared by the requests and the writer).
pub struct Journal {
    dir: PathBuf,
    instance: String,
    state: Mutex<State>,
}

struct State {
    file: File,
    path: PathBuf,
    bytes: u64,
    /// Events written so far, in every file: the writer stores them in this order.
    written: u64,
}

/// A file the journal moved on from: removable once `upto` events are stored.
pub struct Retired {
    path: PathBuf,
    _file: File,
    pub upto: u64,
}

impl Retired {
    pub fn remove(self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(error = %e, "could not remove a stored audit journal file");
        }
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Journal({})", self.dir.display())
    }
}

impl Journal {
    /// Opens a new journal file for `db` in `dir` (made, readable by its owner only, when
    /// missing).
    pub async fn open(db: &Db, dir: &Path) -> anyhow::Result<Journal> {
        let instance = instance(db).await?;
        make_dir(dir)?;
        let (file, path) = new_file(dir, &instance)?;
        Ok(Journal {
            dir: dir.to_owned(),
            instance,
            state: Mutex::new(State {
                file,
                path,
                bytes: 0,
                written: 0,
            }),
        })
    }

    /// Writes the line of the event `id` with canonical `text`, then calls `then` with the text
    /// (it hands the event to the writer) while no other line can be written: the writer
    /// receives the events in the order of the journal.
    pub fn write(&self, id: Uuid, text: String, then: impl FnOnce(String)) -> io::Result<()> {
        let mut line = Vec::with_capacity(text.len() + 38);
        line.extend_from_slice(id.hyphenated().to_string().as_bytes());
        line.push(b'\t');
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n');
        let mut st = self
            .state
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        st.file.write_all(&line)?;
        st.bytes += line.len() as u64;
        st.written += 1;
        then(text);
        Ok(())
    }

    /// Goes on in a new file when the current one is large: the old one, returned, is removed
    /// once the events written to it are stored.
    pub fn rotate(&self) -> io::Result<Option<Retired>> {
        let mut st = self
            .state
            .lock()
            .map_err(|_| io::Error::other("poisoned"))?;
        if st.bytes < ROTATE_AT {
            return Ok(None);
        }
        let (file, path) = new_file(&self.dir, &self.instance)?;
        let old_file = std::mem::replace(&mut st.file, file);
        let old_path = std::mem::replace(&mut st.path, path);
        st.bytes = 0;
        Ok(Some(Retired {
            path: old_path,
            _file: old_file,
            upto: st.written,
        }))
    }

    /// Removes the current file: every event written to it is stored.
    pub fn finish(&self) {
        if let Ok(st) = self.state.lock() {
            if let Err(e) = std::fs::remove_file(&st.path) {
                tracing::warn!(error = %e, "could not remove the audit journal file");
            }
        }
    }
}

fn make_dir(dir: &Path) -> io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

fn new_file(dir: &Path, instance: &str) -> io::Result<(File, PathBuf)> {
    let path = dir.join(format!("{instance}-{}.journal", Uuid::now_v7().simple()));
    let mut o = OpenOptions::new();
    o.append(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let file = o.open(&path)?;
    file.try_lock().map_err(io::Error::other)?;
    Ok((file, path))
}

/// The database's own name for itself.
async fn instance(db: &Db) -> Result<String, StoreError> {
    db.fetch_optional("SELECT instance FROM audit_chain WHERE id = 1", &[])
        .await?
        .and_then(|r| r.text("instance").ok().flatten())
        .ok_or_else(|| StoreError::Decode("the audit chain has no instance name".into()))
}

/// Stores the events of the journal files in `dir` left by processes that ended (files of
/// other databases, and of processes still running, are left alone); returns how many events
/// were stored. Events already in the chain are not stored twice.
pub async fn recover(db: &Db, dir: &Path) -> anyhow::Result<usize> {
    let instance = instance(db).await?;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let mut total = 0;
    for entry in entries {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !(name.starts_with(&format!("{instance}-")) && name.ends_with(".journal")) {
            continue;
        }
        let Ok(mut file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // its process is running
        }
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let events = unstored(db, parse(&text)).await?;
        for batch in events.chunks(RECOVER_BATCH) {
            let mut tx = db.begin().await?;
            super::chain::append(&mut tx, batch).await?;
            tx.commit().await?;
        }
        total += events.len();
        std::fs::remove_file(&path)?;
    }
    if total > 0 {
        tracing::warn!(
            events = total,
            "stored audit events left in a journal by a server that stopped without storing them"
        );
    }
    Ok(total)
}

/// The events of a journal's text (a line cut short by a crash, whose read was not answered, is
/// left out).
fn parse(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|line| {
            let (id, event) = line.split_once('\t')?;
            let mut e: Event = serde_json::from_str(event).ok()?;
            e.id = Some(Uuid::parse_str(id).ok()?);
            Some(e)
        })
        .collect()
}

/// `events` without those already in the chain.
async fn unstored(db: &Db, mut events: Vec<Event>) -> Result<Vec<Event>, StoreError> {
    let ids: Vec<Uuid> = events.iter().filter_map(|e| e.id).collect();
    let mut stored = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let (cond, args) = crate::store::one_of(db.dialect(), "id", chunk);
        let sql = format!("SELECT id FROM audit_logs WHERE {cond}");
        for r in db.fetch_all(&sql, &args).await? {
            stored.insert(r.uuid("id")?);
        }
    }
    events.retain(|e| e.id.is_some_and(|id| !stored.contains(&id)));
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_cut_short_is_left_out() {
        let e = Event {
            time: "2026-12-06T10:00:00.000Z".into(),
            category: "rest".into(),
            action: "read".into(),
            outcome: "success".into(),
            ..Event::default()
        };
        let id = Uuid::now_v7();
        let whole = format!("{id}\t{}\n", e.text());
        let cut = &whole[..whole.len() - 5];
        let parsed = parse(&format!("{whole}{cut}"));
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].id, Some(id));
        assert_eq!(parsed[0].text(), e.text());
    }
}
