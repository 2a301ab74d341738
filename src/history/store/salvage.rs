//! Reading every stored row and record back, telling damage apart, and `--salvage`: keeping
//! what verifies and moving damaged files aside.

use super::*;

/// The database's rows, read and verified.
#[derive(Debug, Default)]
pub(super) struct Rows {
    /// Those that verify.
    pub(super) good: BTreeMap<u64, Update>,
    /// The keys of those that do not.
    pub(super) bad: Vec<u64>,
    /// Why reading stopped short, if it did: the rows past it are unreadable.
    pub(super) unreadable: Option<String>,
    /// Some are the previous version's, without a checksum.
    pub(super) legacy: bool,
}

impl Rows {
    /// What is damaged, if anything.
    pub(super) fn damage(&self) -> Option<String> {
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
pub(super) fn read_rows(db: &Database) -> Result<Rows, StoreError> {
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
pub(super) fn stored_epoch(db: &Database) -> Result<Option<u64>, StoreError> {
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
pub(super) struct Salvage<'a> {
    pub(super) dir: &'a Path,
    /// `None` when it could not be opened.
    pub(super) db: Option<Database>,
    pub(super) rows: Rows,
    pub(super) contents: Contents,
}

impl Salvage<'_> {
    pub(super) fn run(self, fsync: Fsync) -> Result<Store, StoreError> {
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
pub(super) fn aside(path: &Path) -> PathBuf {
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
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(StoreError::from_io)
}
