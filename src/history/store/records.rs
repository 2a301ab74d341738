//! The bytes of journal records and database rows, each with the checksum the hub writes, and
//! how they are read back and applied.

use super::*;

/// The journal records for `op`, added to `out`: an append's row, then its trim if it has one.
pub(super) fn encode(op: &Op, out: &mut Vec<Vec<u8>>) {
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
pub(super) fn append_record(key: u64, update: &Update) -> Vec<u8> {
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
pub(super) fn trim_record(before: u64) -> Vec<u8> {
    let mut out = vec![TAG_TRIM];
    out.extend_from_slice(&before.to_le_bytes());
    out
}

/// Applies journal records to the database in one synced transaction, which also makes
/// `epoch` the journal's; with `legacy`, the previous version's rows are rewritten with their
/// checksum first, in the same transaction.
pub(super) fn apply(
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
pub(super) fn apply_over(
    updates: &mut BTreeMap<u64, Update>,
    records: &[Vec<u8>],
) -> Result<(), StoreError> {
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
pub(super) fn row_value(record: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(4 + record.len());
    value.extend_from_slice(&crc32fast::hash(record).to_le_bytes());
    value.extend_from_slice(record);
    value
}

/// The update a row holds, if its checksum verifies, it is the record of an update under its
/// own key, and its fields parse.
pub(super) fn verify_row(key: u64, value: &[u8]) -> Option<Update> {
    let (crc, record) = value.split_at_checked(4)?;
    if crc32fast::hash(record).to_le_bytes() != crc {
        return None;
    }
    match Record::decode(record)? {
        Record::Append { key: own, row } if own == key => row.update(),
        _ => None,
    }
}

/// A stored update's fields, as a row holds them.
pub(super) struct Row<'a> {
    pub(super) published_ms: u64,
    pub(super) private: bool,
    pub(super) id: &'a str,
    /// Joined by LF.
    pub(super) topics: &'a str,
    pub(super) encoded: &'a [u8],
}

impl Row<'_> {
    /// The update, if its id and topics parse.
    pub(super) fn update(&self) -> Option<Update> {
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
pub(super) enum Record<'a> {
    Append { key: u64, row: Row<'a> },
    Trim { before: u64 },
}

impl<'a> Record<'a> {
    /// Reads a record written by [`encode`].
    pub(super) fn decode(record: &'a [u8]) -> Option<Self> {
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

pub(super) const TAG_APPEND: u8 = 0;
pub(super) const TAG_TRIM: u8 = 1;

/// Reads a journal record's fields in order.
pub(super) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(super) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    pub(super) fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    pub(super) fn u64(&mut self) -> Option<u64> {
        self.take(8)?.try_into().ok().map(u64::from_le_bytes)
    }

    /// A length-prefixed field.
    pub(super) fn field(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u64()?).ok()?;
        self.take(len)
    }
}
