//! Durable history: every accepted update is written to an embedded database (redb) under
//! `--data-dir` before it is acknowledged, and read back when the hub starts.
//!
//! One writer thread owns the database. Updates reach it in order through a channel and are
//! committed in groups: whatever queued up while the previous commit was syncing goes into the
//! next one, so throughput does not fall to one sync per update. `--fsync` says when a group is
//! committed and how:
//! - `always` (default): at once, synced before the updates are acknowledged;
//! - `batch`: after gathering more updates while they keep coming (each within [`BATCH_GAP`]
//!   of the last) for at most [`BATCH_WINDOW`], then synced before they are acknowledged: fewer
//!   syncs when many publishers send at once, at most 2 ms more latency;
//! - `never`: at once, not synced; a sync follows within [`LAZY_SYNC`], so a crash of the
//!   process (or machine) may lose the updates of the last second, acknowledged or not.
//!
//! Each update is one row, keyed by an increasing number; retention deletes the oldest rows in
//! the same commits ([`StoreHandle::trim`]).

use std::{
    io,
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    time::{Duration, Instant},
};

use bytes::Bytes;
use redb::{Database, Durability, ReadableDatabase, TableDefinition};

use crate::{
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

/// Updates committed together at most.
const MAX_BATCH: usize = 4096;

/// The database file in the data directory.
const FILE_NAME: &str = "history.redb";

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
    #[error("a stored update is unreadable (key {0})")]
    Corrupt(u64),
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
            // ENOSPC, EFBIG (a file size limit), EDQUOT.
            redb::Error::Io(io) if matches!(io.raw_os_error(), Some(28 | 27 | 122)) => {
                Self::Full(io::Error::new(io.kind(), io.to_string()))
            }
            _ => Self::Failed(err),
        }
    }
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
    },
    /// Delete every row with a key below this one.
    Trim {
        before: u64,
    },
}

/// The open database, before its writer starts.
#[derive(Debug)]
pub struct Store {
    path: PathBuf,
    db: Database,
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
    /// Opens (or creates) the store in `dir`; a file left by a crash is recovered.
    pub fn open(dir: &Path, fsync: Fsync) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
            path: dir.to_owned(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(StoreError::from_redb)?;
        let txn = db.begin_write().map_err(StoreError::from_redb)?;
        txn.open_table(UPDATES).map_err(StoreError::from_redb)?;
        txn.commit().map_err(StoreError::from_redb)?;
        Ok(Self { path, db, fsync })
    }

    /// Every stored update, oldest first.
    pub fn load(&self) -> Result<Vec<Loaded>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::from_redb)?;
        let table = txn.open_table(UPDATES).map_err(StoreError::from_redb)?;
        let mut out = Vec::new();
        for row in table.range::<u64>(..).map_err(StoreError::from_redb)? {
            let (key, value) = row.map_err(StoreError::from_redb)?;
            let key = key.value();
            let (published_ms, private, id, topics, encoded) = value.value();
            let id = EventId::parse(id).map_err(|_| StoreError::Corrupt(key))?;
            let topics = topics
                .split('\n')
                .map(Topic::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| StoreError::Corrupt(key))?;
            let encoded = Bytes::copy_from_slice(encoded);
            let update = Update::from_parts(id, topics, private, encoded, published_ms);
            out.push(Loaded { key, update });
        }
        Ok(out)
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
    /// Queues `update` under `key` (keys must increase).
    pub fn append(&self, key: u64, update: Arc<Update>) {
        // The writer outlives every handle, so this can't fail while the hub runs.
        let _ = self.tx.send(Op::Append { key, update });
    }

    /// Queues the deletion of every update with a key below `before`.
    pub fn trim(&self, before: u64) {
        let _ = self.tx.send(Op::Trim { before });
    }

    /// Takes no more work: the writer writes what is queued, syncs and ends. Join the returned
    /// thread to wait for that.
    #[must_use]
    pub fn close(self) -> std::thread::JoinHandle<()> {
        self.writer
    }
}

struct Writer {
    path: PathBuf,
    fsync: Fsync,
    /// `None` after a failed commit until the file is opened again (redb refuses further
    /// writes on a handle that failed).
    db: Option<Database>,
    /// With `--fsync never`: when unsynced commits began piling up.
    unsynced_since: Option<Instant>,
}

impl Writer {
    fn new(store: Store) -> Self {
        Self {
            path: store.path,
            fsync: store.fsync,
            db: Some(store.db),
            unsynced_since: None,
        }
    }

    /// The database, opened again if a failure closed it.
    fn db(&mut self) -> Result<&Database, StoreError> {
        if self.db.is_none() {
            let db = Database::create(&self.path).map_err(StoreError::from_redb)?;
            log::info!("store reopened after a failed commit");
            self.db = Some(db);
        }
        self.db
            .as_ref()
            .ok_or_else(|| StoreError::Failed(redb::Error::DatabaseClosed))
    }

    fn run(mut self, rx: &mpsc::Receiver<Op>, on_commit: &dyn Fn(Commit)) {
        loop {
            let first = match self.unsynced_since {
                Some(since) => match rx.recv_timeout(LAZY_SYNC.saturating_sub(since.elapsed())) {
                    Ok(op) => op,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.sync();
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
                // Dropped, then opened again (and recovered) before the next write.
                self.db = None;
                self.unsynced_since = None;
                Arc::new(err)
            });
            if let Some(through) = through {
                on_commit(Commit { through, result });
            }
        }
        // Every handle is gone (shutdown): make what was committed durable.
        self.sync();
    }

    fn write(&mut self, batch: &[Op]) -> Result<(), StoreError> {
        let lazy = self.fsync == Fsync::Never
            && self
                .unsynced_since
                .is_none_or(|since| since.elapsed() < LAZY_SYNC);
        let mut txn = self.db()?.begin_write().map_err(StoreError::from_redb)?;
        if lazy {
            txn.set_durability(Durability::None)
                .map_err(StoreError::from_redb)?;
        }
        {
            let mut table = txn.open_table(UPDATES).map_err(StoreError::from_redb)?;
            for op in batch {
                match op {
                    Op::Append { key, update } => {
                        let topics: Vec<&str> = update.topics().iter().map(Topic::as_str).collect();
                        let topics = topics.join("\n");
                        let row = (
                            update.published_ms(),
                            update.is_private(),
                            update.id().as_str(),
                            topics.as_str(),
                            &update.encoded()[..],
                        );
                        table.insert(key, row).map_err(StoreError::from_redb)?;
                    }
                    Op::Trim { before } => {
                        table
                            .retain_in(..*before, |_, _| false)
                            .map_err(StoreError::from_redb)?;
                    }
                }
            }
        }
        txn.commit().map_err(StoreError::from_redb)?;
        if lazy {
            self.unsynced_since.get_or_insert_with(Instant::now);
        } else {
            self.unsynced_since = None;
        }
        Ok(())
    }

    /// Makes unsynced commits durable (an empty synced commit).
    fn sync(&mut self) {
        if self.unsynced_since.is_none() {
            return;
        }
        let Some(db) = &self.db else {
            return;
        };
        let synced = db
            .begin_write()
            .map_err(redb::Error::from)
            .and_then(|txn| txn.commit().map_err(redb::Error::from));
        match synced {
            Ok(()) => self.unsynced_since = None,
            Err(err) => log::error!("could not sync the store: {err}"),
        }
    }
}
