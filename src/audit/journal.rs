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
//! A file is made at its full size, filled with zeros (so a full disk is an error when a file
//! is made, never when a line is written), and mapped into memory: writing a line is a copy
//! into the mapping, with no system call, and ends with its newline, so a line without one was
//! cut short. Nothing is synced: the line is in the kernel's page cache and survives the
//! process, as a committed SQLite transaction does with synchronous = NORMAL; a power cut can
//! lose the last ones.

use super::Event;
use crate::store::{Db, StoreError};
use memmap2::MmapMut;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use uuid::Uuid;

/// The size of a journal file.
const FILE_SIZE: usize = 8 * 1024 * 1024;
/// Past this much the writer moves the journal on to a new file (made before it is needed); the
/// old one is removed once stored. A line that does not fit in the rest of a file (the writer
/// behind) moves it on at once.
const ROTATE_AT: usize = 4 * 1024 * 1024;
/// Events stored in one transaction while recovering a journal.
const RECOVER_BATCH: usize = 1000;

/// The journal of this process (shared by the requests and the writer).
pub struct Journal {
    dir: PathBuf,
    instance: String,
    state: Mutex<State>,
}

struct State {
    file: Mapped,
    bytes: usize,
    /// Events written so far, in every file: the writer stores them in this order.
    written: u64,
    /// Files moved on from because a line did not fit, for the writer to take.
    full: Vec<Retired>,
}

/// A journal file, locked and mapped.
struct Mapped {
    map: MmapMut,
    path: PathBuf,
    /// Held open: its lock tells that this process is running.
    _file: File,
}

/// A file the journal moved on from: removable once `upto` events are stored.
pub struct Retired {
    file: Mapped,
    pub upto: u64,
}

impl Retired {
    pub fn remove(self) {
        let Mapped { map, path, _file } = self.file;
        drop(map);
        if let Err(e) = std::fs::remove_file(&path) {
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
        let file = new_file(dir, &instance, FILE_SIZE)?;
        Ok(Journal {
            dir: dir.to_owned(),
            instance,
            state: Mutex::new(State {
                file,
                bytes: 0,
                written: 0,
                full: Vec::new(),
            }),
        })
    }

    /// Writes the line of the event `id` with canonical `text`, then calls `then` with the text
    /// (it hands the event to the writer) while no other line can be written: the writer
    /// receives the events in the order of the journal.
    pub fn write(&self, id: Uuid, text: String, then: impl FnOnce(String)) -> io::Result<()> {
        let mut hyphenated = Uuid::encode_buffer();
        let id = id.hyphenated().encode_lower(&mut hyphenated).as_bytes();
        let len = id.len() + 1 + text.len() + 1;
        let mut st = self.lock()?;
        if st.bytes + len > st.file.map.len() {
            let file = new_file(&self.dir, &self.instance, len.max(FILE_SIZE))?;
            let r = st.move_on(file);
            st.full.push(r);
        }
        let at = st.bytes;
        let line = &mut st.file.map[at..at + len];
        line[..id.len()].copy_from_slice(id);
        line[id.len()] = b'\t';
        line[id.len() + 1..len - 1].copy_from_slice(text.as_bytes());
        // The newline last: a line that has one was written whole.
        std::sync::atomic::fence(std::sync::atomic::Ordering::Release);
        line[len - 1] = b'\n';
        st.bytes += len;
        st.written += 1;
        then(text);
        Ok(())
    }

    fn lock(&self) -> io::Result<std::sync::MutexGuard<'_, State>> {
        self.state.lock().map_err(|_| io::Error::other("poisoned"))
    }

    /// The files the journal moved on from since last asked: each is removed once the events
    /// written to it are stored. Past [`ROTATE_AT`] it moves on to a new file, made before the
    /// journal is locked.
    pub fn rotate(&self) -> io::Result<Vec<Retired>> {
        {
            let mut st = self.lock()?;
            if st.bytes < ROTATE_AT {
                return Ok(std::mem::take(&mut st.full));
            }
        }
        let file = new_file(&self.dir, &self.instance, FILE_SIZE)?;
        let mut st = self.lock()?;
        let r = st.move_on(file);
        st.full.push(r);
        Ok(std::mem::take(&mut st.full))
    }

    /// Removes the current file: every event written to it is stored.
    pub fn finish(&self) {
        if let Ok(st) = self.state.lock() {
            if let Err(e) = std::fs::remove_file(&st.file.path) {
                tracing::warn!(error = %e, "could not remove the audit journal file");
            }
        }
    }
}

impl State {
    /// Goes on in `file`; the one before is returned.
    fn move_on(&mut self, file: Mapped) -> Retired {
        let old = std::mem::replace(&mut self.file, file);
        self.bytes = 0;
        Retired {
            file: old,
            upto: self.written,
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

/// A new journal file of `size` bytes, locked, filled with zeros and mapped.
fn new_file(dir: &Path, instance: &str, size: usize) -> io::Result<Mapped> {
    let path = dir.join(format!("{instance}-{}.journal", Uuid::now_v7().simple()));
    let mut o = OpenOptions::new();
    o.read(true).write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let mut file = o.open(&path)?;
    file.try_lock().map_err(io::Error::other)?;
    let zeros = [0u8; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(zeros.len());
        file.write_all(&zeros[..n])?;
        left -= n;
    }
    let map = map(&file)?;
    Ok(Mapped {
        map,
        path,
        _file: file,
    })
}

/// Maps `file` into memory, for writing.
#[allow(unsafe_code)]
fn map(file: &File) -> io::Result<MmapMut> {
    // SAFETY: the file was just made by this process (create_new), in a folder of its owner
    // only, with its lock held for as long as the mapping lives: no other process truncates or
    // writes it (a recovering server skips locked files), so the mapped bytes stay backed and
    // are changed by this process only, through the journal's mutex.
    unsafe { MmapMut::map_mut(file) }
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
        let Ok(file) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // its process is running
        }
        let events = unstored(db, parse(&std::fs::read(&path)?)).await?;
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

/// The events of a journal file's bytes: its whole lines (a line cut short by a crash, whose
/// read was not answered, has no newline; the zeros after the last line are no line).
fn parse(bytes: &[u8]) -> Vec<Event> {
    let Some(end) = bytes.iter().rposition(|b| *b == b'\n') else {
        return vec![];
    };
    bytes[..end]
        .split(|b| *b == b'\n')
        .filter_map(|line| {
            let line = std::str::from_utf8(line).ok()?;
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
        let parsed = parse(format!("{whole}{cut}\0\0\0").as_bytes());
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].id, Some(id));
        assert_eq!(parsed[0].text(), e.text());
    }

    #[test]
    fn a_line_that_does_not_fit_moves_the_journal_on_and_every_line_is_kept() {
        let dir = std::env::temp_dir().join(format!("journal-test-{}", Uuid::now_v7().simple()));
        make_dir(&dir).unwrap();
        let event = |n: usize| Event {
            time: "2026-12-06T10:00:00.000Z".into(),
            category: "rest".into(),
            action: "read".into(),
            outcome: "success".into(),
            resource_id: Some(format!("{n:0>200}")),
            ..Event::default()
        };
        // Room for three lines exactly.
        let line = 36 + 1 + event(0).text().len() + 1;
        let journal = Journal {
            dir: dir.clone(),
            instance: "test".into(),
            state: Mutex::new(State {
                file: new_file(&dir, "test", 3 * line).unwrap(),
                bytes: 0,
                written: 0,
                full: Vec::new(),
            }),
        };
        let mut handed = Vec::new();
        for n in 0..5 {
            journal
                .write(Uuid::now_v7(), event(n).text(), |t| handed.push(t))
                .unwrap();
        }
        let retired = journal.rotate().unwrap();
        assert_eq!(retired.len(), 1, "the first file held three lines");
        assert_eq!(retired[0].upto, 3);
        let mut lines = parse(&std::fs::read(&retired[0].file.path).unwrap());
        let current = journal.state.lock().unwrap().file.path.clone();
        lines.extend(parse(&std::fs::read(&current).unwrap()));
        let texts: Vec<String> = lines.iter().map(Event::text).collect();
        assert_eq!(
            texts, handed,
            "every line, in the order handed to the writer"
        );
        assert_eq!(texts, (0..5).map(|n| event(n).text()).collect::<Vec<_>>());
        retired.into_iter().for_each(Retired::remove);
        journal.finish();
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        std::fs::remove_dir(&dir).unwrap();
    }
}
