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

struct Writer {
    path: PathBuf,
    fsync: Fsync,
    /// `None` after a failed transaction until the file is opened again (redb refuses further
    /// writes on a handle that failed).
    db: Option<Database>,
    journal: Journal,
    /// The records journaled but not yet copied into the database, in order.
    unapplied: Vec<Vec<u8>>,
    /// When the oldest of `unapplied` was journaled (or a failed checkpoint last tried).
    unapplied_since: Option<Instant>,
    /// The last checkpoint failed, because the disk is full (`true`) or otherwise.
    checkpoint_failed: Option<bool>,
    /// With `--fsync never`: when unsynced appends began piling up.
    unsynced_since: Option<Instant>,
}

impl Writer {
    fn new(store: Store) -> Self {
        Self {
            path: store.path,
            fsync: store.fsync,
            db: Some(store.db),
            journal: store.journal,
            unapplied_since: (!store.recovered.is_empty()).then(Instant::now),
            unapplied: store.recovered,
            checkpoint_failed: None,
            unsynced_since: None,
        }
    }

    /// The database, opened again if a failure closed it.
    fn db(&mut self) -> Result<&Database, StoreError> {
        if self.db.is_none() {
            let db = Database::create(&self.path).map_err(StoreError::from_redb)?;
            log::info!("store reopened after a failed transaction");
            self.db = Some(db);
        }
        self.db
            .as_ref()
            .ok_or_else(|| StoreError::Failed(redb::Error::DatabaseClosed))
    }

    /// When the writer has something to do without being sent work: a lazy sync or a
    /// checkpoint.
    fn next_chore(&self) -> Option<Instant> {
        let sync = self.unsynced_since.map(|since| since + LAZY_SYNC);
        let checkpoint = self
            .unapplied_since
            .map(|since| since + CHECKPOINT_INTERVAL);
        sync.into_iter().chain(checkpoint).min()
    }

    fn run(mut self, rx: &mpsc::Receiver<Op>, on_commit: &dyn Fn(Commit)) {
        // What the journal held at start goes into the database first.
        self.checkpoint();
        loop {
            let first = match self.next_chore() {
                Some(at) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                    Ok(op) => op,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.chores();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                },
            };
            let mut batch = vec![first];
            if self.fsync == Fsync::Batch {
                let deadline = Instant::now() + BATCH_WINDOW;
                while batch.len() < MAX_BATCH {
                    let wait = deadline
                        .saturating_duration_since(Instant::now())
                        .min(BATCH_GAP);
                    match rx.recv_timeout(wait) {
                        Ok(op) => batch.push(op),
                        Err(_) => break,
                    }
                }
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let through = batch.iter().rev().find_map(|op| match op {
                Op::Append { key, .. } => Some(*key),
                Op::Trim { .. } => None,
            });
            let result = self.write(&batch).map_err(|err| {
                log::error!("could not store {} update(s): {err}", batch.len());
                Arc::new(err)
            });
            if let Some(through) = through {
                on_commit(Commit { through, result });
            }
            self.chores();
        }
        // Every handle is gone (shutdown): everything into the database, or at least synced.
        self.checkpoint();
        if !self.unapplied.is_empty() {
            self.sync();
        }
    }

    /// Journals `batch`, synced unless `--fsync never` allows a lazy sync.
    fn write(&mut self, batch: &[Op]) -> Result<(), StoreError> {
        let mut records = Vec::with_capacity(batch.len());
        for op in batch {
            encode(op, &mut records);
        }
        if !self.journal.fits(records.iter().map(Vec::len)) {
            // Copying the journal into the database makes room (after a failure, the next try
            // waits for its time). The journal grows only for a commit larger than all of it,
            // so what waits for the database stays bounded.
            if self.checkpoint_failed.is_none() {
                self.checkpoint();
            }
            if !self.unapplied.is_empty() {
                return Err(match self.checkpoint_failed {
                    Some(true) => StoreError::Full(io::Error::new(
                        io::ErrorKind::StorageFull,
                        "the journal is full and the database can't grow",
                    )),
                    _ => StoreError::JournalStuck,
                });
            }
        }
        let lazy = self.fsync == Fsync::Never
            && self
                .unsynced_since
                .is_none_or(|since| since.elapsed() < LAZY_SYNC);
        let mark = self.journal.mark();
        self.journal
            .append(records.iter().map(Vec::as_slice))
            .map_err(StoreError::from_io)?;
        if lazy {
            self.unsynced_since.get_or_insert_with(Instant::now);
        } else {
            if let Err(err) = self.journal.sync() {
                // Not acknowledged, so not kept: the next append writes over them.
                self.journal.rewind(mark);
                return Err(StoreError::from_io(err));
            }
            self.unsynced_since = None;
        }
        self.unapplied_since.get_or_insert_with(Instant::now);
        self.unapplied.extend(records);
        Ok(())
    }

    /// A lazy sync or a checkpoint, if one is due. After a failed checkpoint the next one
    /// waits [`CHECKPOINT_INTERVAL`], so a full disk costs one try a second, not one per
    /// publish.
    fn chores(&mut self) {
        let now = Instant::now();
        // A journal half full is copied in at once, unless that just failed: then it waits.
        let full = self.journal.used() >= CHECKPOINT_BYTES && self.checkpoint_failed.is_none();
        if full
            || self
                .unapplied_since
                .is_some_and(|since| now >= since + CHECKPOINT_INTERVAL)
        {
            self.checkpoint();
        }
        if self
            .unsynced_since
            .is_some_and(|since| now >= since + LAZY_SYNC)
        {
            self.sync();
        }
    }

    /// Copies the journal's records into the database in one synced transaction, then starts
    /// the journal over.
    fn checkpoint(&mut self) {
        if self.unapplied.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.unapplied);
        let epoch = journal::new_epoch();
        let applied = self.db().and_then(|db| apply(db, &records, epoch, None));
        match applied {
            Ok(()) => {
                self.unapplied_since = None;
                self.checkpoint_failed = None;
                // The database has what was not synced yet, too.
                self.unsynced_since = None;
                if let Err(err) = self.journal.start_over(epoch) {
                    log::warn!("could not clear the store's journal: {err}");
                }
            }
            Err(err) => {
                log::error!("could not copy the journal into the database (retrying): {err}");
                self.checkpoint_failed = Some(err.is_full());
                self.db = None;
                self.unapplied = records;
                self.unapplied_since = Some(Instant::now());
            }
        }
    }

    /// Makes unsynced appends durable.
    fn sync(&mut self) {
        if self.unsynced_since.is_none() {
            return;
        }
        match self.journal.sync() {
            Ok(()) => self.unsynced_since = None,
            Err(err) => log::error!("could not sync the store: {err}"),
        }
    }
}

/// The journal records for `op`, added to `out`: an append's row, then its trim if it has one.
fn encode(op: &Op, out: &mut Vec<Vec<u8>>) {
    match op {
        Op::Append { key, update, trim } => {
            out.push(append_record(*key, update));
            out.extend(trim.map(trim_record));
        }
        Op::Trim { before } => out.push(trim_record(*before)),
    }
}

/// An append's record: a tag byte, its key and its row's fields (accepted at, private, id and
/// topics each with its length, the SSE encoding to the end).
fn append_record(key: u64, update: &Update) -> Vec<u8> {
    let topics: Vec<&str> = update.topics().iter().map(Topic::as_str).collect();
    let topics = topics.join("\n");
    let id = update.id().as_str();
    let encoded = update.encoded();
    let mut out = Vec::with_capacity(34 + id.len() + topics.len() + encoded.len());
    out.push(TAG_APPEND);
    out.extend_from_slice(&key.to_le_bytes());
    out.extend_from_slice(&update.published_ms().to_le_bytes());
    out.push(u8::from(update.is_private()));
    for field in [id.as_bytes(), topics.as_bytes()] {
        out.extend_from_slice(&(field.len() as u64).to_le_bytes());
        out.extend_from_slice(field);
    }
    out.extend_from_slice(encoded);
    out
}

/// A trim's record: a tag byte and the key below which rows go.
fn trim_record(before: u64) -> Vec<u8> {
    let mut out = vec![TAG_TRIM];
    out.extend_from_slice(&before.to_le_bytes());
    out
}

/// Applies journal records to the database in one synced transaction, which also makes
/// `epoch` the journal's; with `legacy`, the previous version's rows are rewritten with their
/// checksum first, in the same transaction.
fn apply(
    db: &Database,
    records: &[Vec<u8>],
    epoch: u64,
    legacy: Option<&Rows>,
) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(StoreError::from_redb)?;
    {
        let mut table = txn.open_table(ROWS).map_err(StoreError::from_redb)?;
        for (key, update) in legacy.iter().flat_map(|rows| &rows.good) {
            let value = row_value(&append_record(*key, update));
            table
                .insert(*key, value.as_slice())
                .map_err(StoreError::from_redb)?;
        }
        for record in records {
            match Record::decode(record).ok_or(StoreError::CorruptJournal)? {
                Record::Append { key, .. } => {
                    table
                        .insert(key, row_value(record).as_slice())
                        .map_err(StoreError::from_redb)?;
                }
                Record::Trim { before } => {
                    table
                        .retain_in(..before, |_, _| false)
                        .map_err(StoreError::from_redb)?;
                }
            }
        }
        let mut meta = txn.open_table(META).map_err(StoreError::from_redb)?;
        meta.insert(EPOCH, epoch).map_err(StoreError::from_redb)?;
    }
    if legacy.is_some() {
        txn.delete_table(LEGACY_UPDATES)
            .map_err(StoreError::from_redb)?;
    }
    txn.commit().map_err(StoreError::from_redb)?;
    if let Some(rows) = legacy {
        log::info!(
            "{} stored update(s) of the previous version rewritten with a checksum",
            rows.good.len()
        );
    }
    Ok(())
}

/// Applies journal records to loaded updates.
fn apply_over(updates: &mut BTreeMap<u64, Update>, records: &[Vec<u8>]) -> Result<(), StoreError> {
    for record in records {
        match Record::decode(record).ok_or(StoreError::CorruptJournal)? {
            Record::Append { key, row } => {
                updates.insert(key, row.update().ok_or(StoreError::CorruptJournal)?);
            }
            Record::Trim { before } => *updates = updates.split_off(&before),
        }
    }
    Ok(())
}

/// A row's value: the CRC-32 of `record`, then `record`.
fn row_value(record: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(4 + record.len());
    value.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
    value.extend_from_slice(record);
    value
}

/// The update a row holds, if its checksum verifies, it is the record of an update under its
/// own key, and its fields parse.
fn verify_row(key: u64, value: &[u8]) -> Option<Update> {
    let (crc, record) = value.split_at_checked(4)?;
    if crc32fast::hash(record).to_le_bytes() != crc {
        return None;
    }
    match Record::decode(record)? {
        Record::Append { key: own, row } if own == key => row.update(),
        _ => None,
    }
}

/// The database's rows, read and verified.
#[derive(Debug, Default)]
struct Rows {
    /// Those that verify.
    good: BTreeMap<u64, Update>,
    /// The keys of those that do not.
    bad: Vec<u64>,
    /// Why reading stopped short, if it did: the rows past it are unreadable.
    unreadable: Option<String>,
    /// Some are the previous version's, without a checksum.
    legacy: bool,
}

impl Rows {
    /// What is damaged, if anything.
    fn damage(&self) -> Option<String> {
        let mut what = Vec::new();
        if let Some(first) = self.bad.first() {
            what.push(format!(
                "{} stored update(s) do not verify (the first under key {first})",
                self.bad.len()
            ));
        }
        if let Some(err) = &self.unreadable {
            let after = self.good.keys().chain(&self.bad).max();
            what.push(match after {
                Some(key) => format!("the rows after key {key} are unreadable ({err})"),
                None => format!("its rows are unreadable ({err})"),
            });
        }
        (!what.is_empty()).then(|| {
            format!(
                "{FILE_NAME}: {}, {} verify",
                what.join(" and "),
                self.good.len()
            )
        })
    }
}

/// Reads every row, this version's and the previous version's.
fn read_rows(db: &Database) -> Result<Rows, StoreError> {
    let mut rows = Rows::default();
    let txn = db.begin_read().map_err(StoreError::from_redb)?;
    match txn.open_table(ROWS) {
        Ok(table) => {
            let read = table.range::<u64>(..).map_err(|e| e.to_string());
            for row in read.into_iter().flatten() {
                match row {
                    Ok((key, value)) => {
                        let key = key.value();
                        match verify_row(key, value.value()) {
                            Some(update) => drop(rows.good.insert(key, update)),
                            None => rows.bad.push(key),
                        }
                    }
                    Err(err) => {
                        rows.unreadable = Some(err.to_string());
                        break;
                    }
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(err) => rows.unreadable = Some(err.to_string()),
    }
    match txn.open_table(LEGACY_UPDATES) {
        Ok(table) => {
            rows.legacy = true;
            for row in table.range::<u64>(..).map_err(StoreError::from_redb)? {
                let (key, value) = row.map_err(StoreError::from_redb)?;
                let key = key.value();
                let (published_ms, private, id, topics, encoded) = value.value();
                let row = Row {
                    published_ms,
                    private,
                    id,
                    topics,
                    encoded,
                };
                match row.update() {
                    Some(update) => drop(rows.good.insert(key, update)),
                    None => rows.bad.push(key),
                }
            }
        }
        Err(redb::TableError::TableDoesNotExist(_)) => {}
        Err(err) => return Err(StoreError::from_redb(err)),
    }
    Ok(rows)
}

/// The journal's epoch as the database has it; `None` before the first start of this
/// version.
fn stored_epoch(db: &Database) -> Result<Option<u64>, StoreError> {
    let txn = db.begin_read().map_err(StoreError::from_redb)?;
    match txn.open_table(META) {
        Ok(meta) => Ok(meta
            .get(EPOCH)
            .map_err(StoreError::from_redb)?
            .map(|epoch| epoch.value())),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(err) => Err(StoreError::from_redb(err)),
    }
}

/// A start with `--salvage` on damaged storage: everything that verifies goes into the
/// database at once, under a new journal epoch; the damaged files are moved aside first.
struct Salvage<'a> {
    dir: &'a Path,
    /// `None` when it could not be opened.
    db: Option<Database>,
    rows: Rows,
    contents: Contents,
}

impl Salvage<'_> {
    fn run(self, fsync: Fsync) -> Result<Store, StoreError> {
        let Self {
            dir,
            db,
            rows,
            contents,
        } = self;
        let path = dir.join(FILE_NAME);
        let journal_path = dir.join(JOURNAL_NAME);
        let db_damaged = db.is_none() || rows.damage().is_some();
        let mut records = contents.records;
        if let Some(damage) = contents.damage {
            // A copy, not a link: the journal file is written in place again (once its
            // records are in the database, a crash leaves it to be started over).
            let aside = aside(&journal_path);
            std::fs::copy(&journal_path, &aside).map_err(StoreError::from_io)?;
            sync_dir(dir)?;
            log::warn!(
                "--salvage: {JOURNAL_NAME} copied aside to {}: what does not verify from its \
                 record {} on is lost; the {} record(s) before it and {} after it that verify \
                 are kept",
                aside.display(),
                damage.seq,
                records.len(),
                damage.later.len()
            );
            records.extend(damage.later);
        }
        let epoch = journal::new_epoch();
        let db = match db {
            Some(db) if !db_damaged => {
                apply(&db, &records, epoch, rows.legacy.then_some(&rows))?;
                Some(db)
            }
            db => {
                drop(db);
                None
            }
        };
        let mut updates = rows.good;
        apply_over(&mut updates, &records)?;
        let db = match db {
            Some(db) => db,
            None => {
                // A new database beside the damaged one, then swapped in: at no moment is
                // there none.
                let fresh = dir.join(format!("{FILE_NAME}.salvage"));
                match std::fs::remove_file(&fresh) {
                    Err(err) if err.kind() != io::ErrorKind::NotFound => {
                        return Err(StoreError::from_io(err))
                    }
                    _ => {}
                }
                let new = Database::create(&fresh).map_err(StoreError::from_redb)?;
                let all: Vec<Vec<u8>> = updates
                    .iter()
                    .map(|(key, update)| append_record(*key, update))
                    .collect();
                apply(&new, &all, epoch, None)?;
                drop(new);
                let aside = aside(&path);
                if path.exists() {
                    std::fs::hard_link(&path, &aside)
                        .or_else(|_| std::fs::copy(&path, &aside).map(drop))
                        .map_err(StoreError::from_io)?;
                }
                std::fs::rename(&fresh, &path).map_err(StoreError::from_io)?;
                sync_dir(dir)?;
                log::warn!(
                    "--salvage: {FILE_NAME} moved aside to {}; the new one holds the {} \
                     update(s) that verify",
                    aside.display(),
                    updates.len()
                );
                Database::create(&path).map_err(StoreError::from_redb)?
            }
        };
        // Every record that verified is in the database, under the new epoch: the journal's
        // are old now.
        let (mut journal, _old) =
            Journal::open(&journal_path, Some(epoch)).map_err(StoreError::from_io)?;
        journal.start_over(epoch).map_err(StoreError::from_io)?;
        log::warn!(
            "--salvage: {} stored update(s) kept; the hub starts with them",
            updates.len()
        );
        Ok(Store {
            path,
            db,
            journal,
            rows: updates,
            recovered: Vec::new(),
            fsync,
        })
    }
}

/// A free name beside `path` for a damaged file: `NAME.damaged-SECONDS[-N]`.
fn aside(path: &Path) -> PathBuf {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".damaged-{secs}"));
    let first = PathBuf::from(name);
    let mut candidate = first.clone();
    let mut n = 1;
    while candidate.exists() {
        let mut name = first.as_os_str().to_owned();
        name.push(format!("-{n}"));
        candidate = PathBuf::from(name);
        n += 1;
    }
    candidate
}

/// Makes renames and new names in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::from_io)
}

/// A stored update's fields, as a row holds them.
struct Row<'a> {
    published_ms: u64,
    private: bool,
    id: &'a str,
    /// Joined by LF.
    topics: &'a str,
    encoded: &'a [u8],
}

impl Row<'_> {
    /// The update, if its id and topics parse.
    fn update(&self) -> Option<Update> {
        let id = EventId::parse(self.id).ok()?;
        let topics = self
            .topics
            .split('\n')
            .map(Topic::parse)
            .collect::<Result<Vec<_>, _>>()
            .ok()?;
        let encoded = Bytes::copy_from_slice(self.encoded);
        Some(Update::from_parts(
            id,
            topics,
            self.private,
            encoded,
            self.published_ms,
        ))
    }
}

/// A journal record, read.
enum Record<'a> {
    Append { key: u64, row: Row<'a> },
    Trim { before: u64 },
}

impl<'a> Record<'a> {
    /// Reads a record written by [`encode`].
    fn decode(record: &'a [u8]) -> Option<Self> {
        let mut reader = Reader(record);
        match reader.u8()? {
            TAG_APPEND => {
                let key = reader.u64()?;
                let published_ms = reader.u64()?;
                let private = reader.u8()? != 0;
                let id = std::str::from_utf8(reader.field()?).ok()?;
                let topics = std::str::from_utf8(reader.field()?).ok()?;
                let row = Row {
                    published_ms,
                    private,
                    id,
                    topics,
                    encoded: reader.0,
                };
                Some(Self::Append { key, row })
            }
            TAG_TRIM => Some(Self::Trim {
                before: reader.u64()?,
            }),
            _ => None,
        }
    }
}

const TAG_APPEND: u8 = 0;
const TAG_TRIM: u8 = 1;

/// Reads a journal record's fields in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }

    /// A length-prefixed field.
    fn field(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u64()?).ok()?;
        self.take(len)
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
