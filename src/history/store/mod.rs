//! Durable history: every accepted update is written to disk under `--data-dir` before it is
//! acknowledged, and read back when the hub starts.
//!
//! One writer thread owns the store. Updates reach it in order through a channel and are
//! committed in groups: whatever queued up while the previous commit was syncing goes into the
//! next one, so throughput does not fall to one sync per update. A commit appends the group's
//! records to the [`Journal`] in one write and syncs it; the records are copied into an
//! embedded database (redb) in one transaction at most every [`CHECKPOINT_INTERVAL`] (or when
//! the journal fills), which then starts the journal over. A start loads history from the
//! database's rows with what the journal still holds applied over them, and the writer copies
//! those records into the database first thing. `--fsync` says when a group is committed
//! and how:
//! - `always` (default): at once, synced before the updates are acknowledged;
//! - `batch`: after gathering more updates while they keep coming (each within [`BATCH_GAP`]
//!   of the last) for at most [`BATCH_WINDOW`], then synced before they are acknowledged: fewer
//!   syncs when many publishers send at once, at most 2 ms more latency;
//! - `never`: at once, not synced; a sync follows within [`LAZY_SYNC`], so a crash of the
//!   process (or machine) may lose the updates of the last second, acknowledged or not.
//!
//! Each update is one row, keyed by an increasing number; retention deletes the oldest rows,
//! journaled like the rows: those an update evicts in its own commit
//! ([`StoreHandle::append`]), those past their age on their own ([`StoreHandle::trim`]).
//!
//! Integrity: redb checks its pages only when it recovers from a crash, so each row carries a
//! CRC-32 the hub writes, as journal records do, and every row and record is verified when
//! the store opens. Damage (a row that does not verify, an unreadable database, a journal
//! record that was synced and no longer verifies) stops the start with one line, changing
//! nothing; [`Store::open`] with `salvage` keeps everything that verifies instead, and moves
//! the damaged files aside. Rows of the previous version (table `updates`, no checksum) are
//! taken as they are once, and rewritten with one at that start.

use std::{
    collections::BTreeMap,
    io,
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use bytes::Bytes;
use redb::{Database, ReadableDatabase, TableDefinition};

use crate::{
    history::journal::{self, Contents, Journal},
    protocol::topic::Topic,
    protocol::update::{EventId, Update},
};

mod records;
mod salvage;
mod writer;

use records::*;
use salvage::*;
use writer::*;

/// The longest an update waits for others to share its commit with `--fsync batch`.
pub const BATCH_WINDOW: Duration = Duration::from_millis(2);

/// With `--fsync batch`, gathering stops when no update came for this long: publishers that
/// each wait for their answer can't send more, and waiting would only slow them down.
pub const BATCH_GAP: Duration = Duration::from_micros(200);

/// With `--fsync never`, the longest before unsynced commits are synced.
pub const LAZY_SYNC: Duration = Duration::from_secs(1);

/// The longest a journaled update waits to be copied into the database.
pub const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// The journal is copied into the database once it holds this much, however recent.
const CHECKPOINT_BYTES: u64 = crate::history::journal::INITIAL_SIZE / 2;

/// Updates committed together at most.
const MAX_BATCH: usize = 4096;

/// The database file in the data directory.
const FILE_NAME: &str = "history.redb";

/// The journal file in the data directory.
const JOURNAL_NAME: &str = "history.journal";

/// Rows: key -> the update's journal record (see [`append_record`]) after its CRC-32 (4
/// bytes, little-endian). Raw bytes, so a damaged row is reported, never a panic in decoding.
const ROWS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("rows");

/// Rows as the previous version wrote them, without a checksum: key -> (accepted at, ms since
/// the epoch; private; id; topics joined by LF; the SSE encoding). Rewritten into [`ROWS`] at
/// the first start, then deleted.
const LEGACY_UPDATES: TableDefinition<'_, u64, (u64, bool, &str, &str, &[u8])> =
    TableDefinition::new("updates");

/// The store's own settings: [`EPOCH`].
const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");

/// The journal's epoch, written in the transaction that takes the previous epoch's records:
/// records of any other epoch are already in the database.
const EPOCH: &str = "journal-epoch";

/// When commits are synced to disk (`--fsync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// Commit and sync at once; acknowledge after the sync.
    Always,
    /// Gather updates while they keep coming (up to 2 ms), commit and sync; acknowledge after.
    Batch,
    /// Commit at once without a sync (synced within a second); a crash may lose the last second.
    Never,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the disk is full")]
    Full(#[source] io::Error),
    #[error("cannot create the data directory {path}: {source}")]
    Directory { path: PathBuf, source: io::Error },
    #[error("storage failed: {0}")]
    Failed(#[from] redb::Error),
    #[error("storage failed: {0}")]
    Io(#[source] io::Error),
    #[error(
        "damaged storage: {0}; left as it is: start once with --salvage to keep what verifies \
         and move the damaged file(s) aside"
    )]
    Damaged(String),
    #[error("a journal record is unreadable")]
    CorruptJournal,
    #[error("storage failed: the journal is full and the database can't take its records")]
    JournalStuck,
}

impl StoreError {
    /// Whether the disk (or the file size limit) ran out, rather than something else failing.
    #[must_use]
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full(_))
    }

    fn from_redb(err: impl Into<redb::Error>) -> Self {
        let err = err.into();
        match &err {
            redb::Error::Io(io) if is_full(io) => {
                Self::Full(io::Error::new(io.kind(), io.to_string()))
            }
            _ => Self::Failed(err),
        }
    }

    fn from_io(err: io::Error) -> Self {
        if is_full(&err) {
            Self::Full(err)
        } else {
            Self::Io(err)
        }
    }
}

/// ENOSPC, EFBIG (a file size limit), EDQUOT.
fn is_full(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(28 | 27 | 122))
}

/// An update read back from the store, with its key.
#[derive(Debug)]
pub struct Loaded {
    pub key: u64,
    pub update: Update,
}

/// What a commit did: every update appended with a key up to `through` is durable (`Ok`) or
/// was not stored (`Err`).
#[derive(Debug)]
pub struct Commit {
    pub through: u64,
    pub result: Result<(), Arc<StoreError>>,
}

enum Op {
    Append {
        key: u64,
        update: Arc<Update>,
        /// Deleted in the same commit: every row with a key below this one.
        trim: Option<u64>,
    },
    /// Delete every row with a key below this one.
    Trim { before: u64 },
}

/// The open database and journal, before the writer starts.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    db: Database,
    journal: Journal,
    /// The database's rows, verified, until [`Store::load`] takes them.
    rows: BTreeMap<u64, Update>,
    /// The records the journal held at start, not yet in the database.
    recovered: Vec<Vec<u8>>,
    fsync: Fsync,
}

impl std::fmt::Debug for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Append { key, .. } => write!(f, "Append({key})"),
            Self::Trim { before } => write!(f, "Trim(..{before})"),
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`; files left by a crash are recovered, and every
    /// row and journal record is verified. What the journal holds is loaded with the rows and
    /// copied into the database by the writer's first checkpoint (so a start needs no room on
    /// the disk). Damage is [`StoreError::Damaged`], unless `salvage`: then what verifies is
    /// kept (written into the database at once) and the damaged files are moved aside.
    pub fn open(dir: &Path, fsync: Fsync, salvage: bool) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let mut damage = Vec::new();
        let db = match Database::create(&path) {
            Ok(db) => Some(db),
            // Damaged pages, or not a database at all (redb's `InvalidData`).
            Err(redb::DatabaseError::Storage(err))
                if matches!(&err, redb::StorageError::Corrupted(_))
                    || matches!(&err, redb::StorageError::Io(io)
                        if io.kind() == io::ErrorKind::InvalidData) =>
            {
                damage.push(format!("{FILE_NAME} is unreadable ({err})"));
                None
            }
            Err(err) => return Err(StoreError::from_redb(err)),
        };
        let (rows, epoch) = match &db {
            Some(db) => (read_rows(db)?, stored_epoch(db)?),
            None => (Rows::default(), None),
        };
        damage.extend(rows.damage());
        let (journal, contents) =
            Journal::open(&dir.join(JOURNAL_NAME), epoch).map_err(StoreError::from_io)?;
        if let Some(hurt) = &contents.damage {
            damage.push(format!(
                "{JOURNAL_NAME}: record {} (at byte {}) does not verify, and {} record(s) \
                 written after it was synced do",
                hurt.seq,
                hurt.offset,
                hurt.later.len()
            ));
        }
        match db {
            Some(db) if damage.is_empty() => {
                if salvage {
                    log::info!("--salvage: the durable history verifies, nothing to salvage");
                }
                if epoch.is_none() || rows.legacy {
                    // The first start, or the first of this version: later starts write
                    // nothing here.
                    apply(&db, &[], journal.epoch(), rows.legacy.then_some(&rows))?;
                }
                if !contents.records.is_empty() {
                    log::info!(
                        "{} record(s) recovered from the journal",
                        contents.records.len()
                    );
                }
                Ok(Self {
                    path,
                    db,
                    journal,
                    rows: rows.good,
                    recovered: contents.records,
                    fsync,
                })
            }
            _ if !salvage => Err(StoreError::Damaged(damage.join("; "))),
            db => {
                drop(journal);
                for what in &damage {
                    log::warn!("--salvage: {what}");
                }
                Salvage {
                    dir,
                    db,
                    rows,
                    contents,
                }
                .run(fsync)
            }
        }
    }

    /// Every stored update, oldest first: the database's rows, then what the journal holds
    /// applied over them.
    pub fn load(&mut self) -> Result<Vec<Loaded>, StoreError> {
        let mut updates = std::mem::take(&mut self.rows);
        apply_over(&mut updates, &self.recovered)?;
        Ok(updates
            .into_iter()
            .map(|(key, update)| Loaded { key, update })
            .collect())
    }

    /// Starts the writer thread; `on_commit` hears of every commit, in order.
    pub fn start(self, on_commit: impl Fn(Commit) + Send + 'static) -> io::Result<StoreHandle> {
        let (tx, rx) = mpsc::channel();
        let writer = std::thread::Builder::new()
            .name("sse-hub-store".into())
            .spawn(move || Writer::new(self).run(&rx, &on_commit))?;
        Ok(StoreHandle { tx, writer })
    }
}

/// Sends work to the writer thread.
#[derive(Debug)]
pub struct StoreHandle {
    tx: mpsc::Sender<Op>,
    writer: std::thread::JoinHandle<()>,
}

impl StoreHandle {
    /// Queues `update` under `key` (keys must increase), and the deletion of every row with a
    /// key below `trim` in the same commit.
    pub fn append(&self, key: u64, update: Arc<Update>, trim: Option<u64>) {
        // The writer outlives every handle, so this can't fail while the hub runs.
        let _ = self.tx.send(Op::Append { key, update, trim });
    }

    /// Queues the deletion of every update with a key below `before`.
    pub fn trim(&self, before: u64) {
        let _ = self.tx.send(Op::Trim { before });
    }

    /// Takes no more work: the writer writes what is queued, copies the journal into the
    /// database (or, failing that, syncs it) and ends. Join the returned thread to wait for
    /// that.
    #[must_use]
    pub fn close(self) -> std::thread::JoinHandle<()> {
        self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(id: &str) -> Update {
        Update::from_parts(
            EventId::parse(id).unwrap(),
            vec![Topic::parse("/t").unwrap()],
            false,
            Bytes::from(format!("id: {id}\ndata: x\n\n")),
            1,
        )
    }

    fn ids(store: &mut Store) -> Vec<String> {
        store
            .load()
            .unwrap()
            .iter()
            .map(|l| l.update.id().as_str().to_owned())
            .collect()
    }

    /// Writes a journal as the previous version did after a crash (records not synced, so
    /// their sync point is 0, as that version wrote it), holding `update` under `key`.
    fn previous_journal(dir: &Path, key: u64, update: &Update) {
        let (mut journal, _) = Journal::open(&dir.join(JOURNAL_NAME), None).unwrap();
        journal
            .append([append_record(key, update).as_slice()])
            .unwrap();
    }

    #[test]
    fn rows_of_the_previous_version_are_taken_once_and_rewritten_with_a_checksum() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(LEGACY_UPDATES).unwrap();
                for (key, id) in [(1u64, "a"), (2, "b")] {
                    let encoded = format!("id: {id}\ndata: x\n\n");
                    table
                        .insert(key, (1u64, false, id, "/t", encoded.as_bytes()))
                        .unwrap();
                }
            }
            txn.commit().unwrap();
        }
        previous_journal(dir.path(), 3, &update("c"));
        let mut store = Store::open(dir.path(), Fsync::Always, false).unwrap();
        assert_eq!(ids(&mut store), ["a", "b", "c"]);
        drop(store);
        {
            let db = Database::create(dir.path().join(FILE_NAME)).unwrap();
            let txn = db.begin_read().unwrap();
            assert!(txn.open_table(LEGACY_UPDATES).is_err());
            let rows = txn.open_table(ROWS).unwrap();
            for key in [1, 2] {
                let row = rows.get(key).unwrap().unwrap();
                assert!(verify_row(key, row.value()).is_some());
            }
        }
        // The journal's epoch was recorded with them: its record is still read.
        let mut store = Store::open(dir.path(), Fsync::Always, false).unwrap();
        assert_eq!(ids(&mut store), ["a", "b", "c"]);
    }

    #[test]
    fn an_unreadable_database_is_moved_aside_by_salvage_and_the_journal_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, vec![0x5a; 64 * 1024]).unwrap();
        previous_journal(dir.path(), 1, &update("kept"));
        let refused = Store::open(dir.path(), Fsync::Always, false).unwrap_err();
        assert!(
            matches!(&refused, StoreError::Damaged(what) if what.contains(FILE_NAME)),
            "{refused}"
        );
        let mut store = Store::open(dir.path(), Fsync::Always, true).unwrap();
        assert_eq!(ids(&mut store), ["kept"]);
        drop(store);
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("history.redb.damaged-"))
            .collect();
        assert_eq!(aside.len(), 1);
        let mut store = Store::open(dir.path(), Fsync::Always, false).unwrap();
        assert_eq!(ids(&mut store), ["kept"]);
    }
}
