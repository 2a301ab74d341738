//! The store's writer thread: groups, commits, checkpoints and syncs.

use super::*;

pub(super) struct Writer {
    pub(super) path: PathBuf,
    pub(super) fsync: Fsync,
    /// `None` after a failed transaction until the file is opened again (redb refuses further
    /// writes on a handle that failed).
    pub(super) db: Option<Database>,
    pub(super) journal: Journal,
    /// The records journaled but not yet copied into the database, in order.
    pub(super) unapplied: Vec<Vec<u8>>,
    /// When the oldest of `unapplied` was journaled (or a failed checkpoint last tried).
    pub(super) unapplied_since: Option<Instant>,
    /// The last checkpoint failed, because the disk is full (`true`) or otherwise.
    pub(super) checkpoint_failed: Option<bool>,
    /// With `--fsync never`: when unsynced appends began piling up.
    pub(super) unsynced_since: Option<Instant>,
}

impl Writer {
    pub(super) fn new(store: Store) -> Self {
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
    pub(super) fn db(&mut self) -> Result<&Database, StoreError> {
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
    pub(super) fn next_chore(&self) -> Option<Instant> {
        let sync = self.unsynced_since.map(|since| since + LAZY_SYNC);
        let checkpoint = self
            .unapplied_since
            .map(|since| since + CHECKPOINT_INTERVAL);
        sync.into_iter().chain(checkpoint).min()
    }

    pub(super) fn run(mut self, rx: &mpsc::Receiver<Op>, on_commit: &dyn Fn(Commit)) {
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
    pub(super) fn write(&mut self, batch: &[Op]) -> Result<(), StoreError> {
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
    pub(super) fn chores(&mut self) {
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
    pub(super) fn checkpoint(&mut self) {
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
    pub(super) fn sync(&mut self) {
        if self.unsynced_since.is_none() {
            return;
        }
        match self.journal.sync() {
            Ok(()) => self.unsynced_since = None,
            Err(err) => log::error!("could not sync the store: {err}"),
        }
    }
}
