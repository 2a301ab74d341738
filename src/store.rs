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
    journal::Journal,
    topic::Topic,
    update::{EventId, Update},
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
const CHECKPOINT_BYTES: u64 = crate::journal::INITIAL_SIZE / 2;

/// Updates committed together at most.
const MAX_BATCH: usize = 4096;

/// The database file in the data directory.
const FILE_NAME: &str = "history.redb";

/// The journal file in the data directory.
const JOURNAL_NAME: &str = "history.journal";

/// Rows: key -> (accepted at, ms since the epoch; private; id; topics joined by LF, which no
/// topic may contain; the SSE encoding).
const UPDATES: TableDefinition<'_, u64, (u64, bool, &str, &str, &[u8])> =
    TableDefinition::new("updates");

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
    #[error("a stored update is unreadable (key {0})")]
    Corrupt(u64),
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
    /// Opens (or creates) the store in `dir`; files left by a crash are recovered. What the
    /// journal holds is loaded with the database's rows and copied into the database by the
    /// writer's first checkpoint (so a start needs no room on the disk).
    pub fn open(dir: &Path, fsync: Fsync) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(StoreError::from_redb)?;
        // Created on the first start only: later starts write nothing here.
        let read = db.begin_read().map_err(StoreError::from_redb)?;
        if let Err(redb::TableError::TableDoesNotExist(_)) = read.open_table(UPDATES) {
            let txn = db.begin_write().map_err(StoreError::from_redb)?;
            txn.open_table(UPDATES).map_err(StoreError::from_redb)?;
            txn.commit().map_err(StoreError::from_redb)?;
        }
        drop(read);
        let (journal, records) =
            Journal::open(&dir.join(JOURNAL_NAME)).map_err(StoreError::from_io)?;
        if !records.is_empty() {
            log::info!("{} record(s) recovered from the journal", records.len());
        }
        Ok(Self {
            path,
            db,
            journal,
            recovered: records,
            fsync,
        })
    }

    /// Every stored update, oldest first: the database's rows, then what the journal holds
    /// applied over them.
    pub fn load(&self) -> Result<Vec<Loaded>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::from_redb)?;
        let table = txn.open_table(UPDATES).map_err(StoreError::from_redb)?;
        let mut updates = BTreeMap::new();
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
            updates.insert(key, row.update().ok_or(StoreError::Corrupt(key))?);
        }
        for record in &self.recovered {
            match Record::decode(record).ok_or(StoreError::CorruptJournal)? {
                Record::Append { key, row } => {
                    updates.insert(key, row.update().ok_or(StoreError::CorruptJournal)?);
                }
                Record::Trim { before } => updates = updates.split_off(&before),
            }
        }
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
        let applied = self.db().and_then(|db| apply(db, &records));
        match applied {
            Ok(()) => {
                self.unapplied_since = None;
                self.checkpoint_failed = None;
                // The database has what was not synced yet, too.
                self.unsynced_since = None;
                if let Err(err) = self.journal.start_over() {
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

/// Applies journal records to the database in one synced transaction.
fn apply(db: &Database, records: &[Vec<u8>]) -> Result<(), StoreError> {
    let txn = db.begin_write().map_err(StoreError::from_redb)?;
    {
        let mut table = txn.open_table(UPDATES).map_err(StoreError::from_redb)?;
        for record in records {
            match Record::decode(record).ok_or(StoreError::CorruptJournal)? {
                Record::Append { key, row } => {
                    let row = (
                        row.published_ms,
                        row.private,
                        row.id,
                        row.topics,
                        row.encoded,
                    );
                    table.insert(key, row).map_err(StoreError::from_redb)?;
                }
                Record::Trim { before } => {
                    table
                        .retain_in(..before, |_, _| false)
                        .map_err(StoreError::from_redb)?;
                }
            }
        }
    }
    txn.commit().map_err(StoreError::from_redb)
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
