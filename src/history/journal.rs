//! The store's journal: a preallocated file that each commit appends its records to, in one
//! write and (when synced) one `fdatasync`, so the updates are durable before the database
//! has them. The store copies the journal's records into the database in larger, less
//! frequent transactions (checkpoints) and then starts the journal over.
//!
//! Why not commit each group to the database: a redb transaction writes several pages (the
//! table's leaf and branches, the allocator's state, the header: seven `pwrite`s for a
//! one-update commit), all of which the sync then writes back. An append is one write, into
//! blocks written once when the file was made, so the sync allocates nothing either.
//!
//! Layout: records back to back from offset 0, each a 24-byte header (body length `u32`,
//! CRC-32 of the rest `u32`, epoch `u64`, sequence `u64`, little-endian) and its body. The
//! sequence's low half numbers the records of an epoch from 0; its high half is the journal's
//! sync point when the record was written: how many records before it were already synced
//! (the previous version wrote 0 there, which reads the same way). Each start over picks a new
//! random epoch, which the database records in the same transaction as the records it took,
//! so reading stops at the first record that is torn (bad CRC), from another epoch, or out of
//! sequence: what follows the last record written is either zeros or an older epoch's records.
//!
//! Where reading stopped is either the end or damage. Only a write no sync completed can be
//! torn by a crash, and each record says how far the journal was synced when it was written:
//! a record of the epoch further on that was written after the one that does not verify had
//! been synced proves damage (a disk or a hand altered it), not a torn tail. A damaged record
//! among the last commit's cannot be told from a torn one: nothing later vouches for it.

use std::{
    fs::{File, OpenOptions},
    io,
    os::unix::fs::FileExt,
    path::Path,
};

/// Bytes before each record's body.
const HEADER: usize = 24;

/// The journal's size when created; it grows only for a commit larger than all of it.
pub const INITIAL_SIZE: u64 = 1 << 20;

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    file: File,
    /// The file's length: all of it written (zeros at first), so appends allocate nothing.
    len: u64,
    /// Where the next record goes.
    used: u64,
    epoch: u64,
    /// The next record's sequence number.
    seq: u64,
    /// How many records of this epoch a completed sync made durable: each record says so.
    synced: u64,
    /// Reused for each commit's records.
    buf: Vec<u8>,
}

/// What a journal held when it was opened.
#[derive(Debug, Default)]
pub struct Contents {
    /// The records of the epoch in order, up to the first that does not verify.
    pub records: Vec<Vec<u8>>,
    /// Set when that one was synced before records further on were written.
    pub damage: Option<Damage>,
}

/// A record that was durable and no longer verifies.
#[derive(Debug)]
pub struct Damage {
    /// Where it starts in the file.
    pub offset: u64,
    /// Its sequence number: the records before it that verify.
    pub seq: u64,
    /// The records of its epoch after it that verify, in order.
    pub later: Vec<Vec<u8>>,
}

impl Journal {
    /// Opens the journal at `path` (creating and preallocating it if needed) and reads the
    /// records it holds of `epoch` (the database's; `None`, from a store of the previous
    /// version: the first record's), oldest first; appends go after them until it starts
    /// over. Reading writes nothing over what the file holds, damaged or not.
    pub fn open(path: &Path, epoch: Option<u64>) -> io::Result<(Self, Contents)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let len = file.metadata()?.len();
        let mut bytes = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
        file.read_exact_at(&mut bytes, 0)?;
        let epoch = epoch.or_else(|| verified(&bytes, 0).map(|(header, _)| header.epoch));
        let (contents, end) = epoch.map_or((Contents::default(), 0), |e| read(&bytes, e));
        let mut journal = Self {
            len,
            file,
            used: end,
            epoch: epoch.unwrap_or_else(new_epoch),
            seq: contents.records.len() as u64,
            // What was read may have been in the page cache only (after a crash of the
            // process): until a sync, records vouch for none of it.
            synced: 0,
            buf: Vec::new(),
        };
        if journal.len < INITIAL_SIZE {
            journal.grow(INITIAL_SIZE)?;
        }
        Ok((journal, contents))
    }

    /// The epoch records are appended under.
    #[must_use]
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether records with these body lengths fit in what is left.
    #[must_use]
    pub fn fits(&self, bodies: impl IntoIterator<Item = usize>) -> bool {
        self.used + framed(bodies) <= self.len
    }

    /// Bytes of records appended since the journal last started over.
    #[must_use]
    pub fn used(&self) -> u64 {
        self.used
    }

    /// Appends records (unsynced), growing the file if they don't fit. Nothing is appended
    /// if it fails: the next append writes at the same place.
    pub fn append<'a>(
        &mut self,
        bodies: impl IntoIterator<Item = &'a [u8]> + Clone,
    ) -> io::Result<()> {
        let needed = self.used + framed(bodies.clone().into_iter().map(<[u8]>::len));
        if needed > self.len {
            self.grow(needed.next_power_of_two())?;
        }
        self.buf.clear();
        let mut seq = self.seq;
        for body in bodies {
            let len = u32::try_from(body.len())
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record too large"))?;
            // Half of the field each; a journal would need over 100 GB to number past it.
            let numbers = u32::try_from(seq)
                .map(|seq| u64::from(seq) | self.synced << 32)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many records"))?;
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf
                .extend_from_slice(&checksum(self.epoch, numbers, body).to_le_bytes());
            self.buf.extend_from_slice(&self.epoch.to_le_bytes());
            self.buf.extend_from_slice(&numbers.to_le_bytes());
            self.buf.extend_from_slice(body);
            seq += 1;
        }
        self.file.write_all_at(&self.buf, self.used)?;
        self.used += self.buf.len() as u64;
        self.seq = seq;
        Ok(())
    }

    /// Where the next append goes, to [`Journal::rewind`] to.
    #[must_use]
    pub fn mark(&self) -> (u64, u64) {
        (self.used, self.seq)
    }

    /// Forgets the appends since `mark`: the next append writes over them. (The sync point
    /// stays where it was, before `mark`: nothing synced is ever written over.)
    pub fn rewind(&mut self, (used, seq): (u64, u64)) {
        self.used = used;
        self.seq = seq;
    }

    /// Makes what was appended durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()?;
        self.synced = self.seq;
        Ok(())
    }

    /// Starts over under `epoch`, once every record is safely elsewhere and the database
    /// holds `epoch` (in the same transaction): records of any other epoch are then old. The
    /// first header is zeroed but not synced, which the new epoch makes unnecessary.
    pub fn start_over(&mut self, epoch: u64) -> io::Result<()> {
        self.used = 0;
        self.seq = 0;
        self.synced = 0;
        self.epoch = epoch;
        self.file.write_all_at(&[0u8; HEADER], 0)
    }

    /// Extends the file to `len` with written zeros, synced (so later appends are one page to
    /// write back, not a block allocation too).
    fn grow(&mut self, len: u64) -> io::Result<()> {
        const CHUNK: usize = 64 * 1024;
        let zeros = vec![0u8; CHUNK];
        let mut at = self.len;
        while at < len {
            let n = usize::try_from(len - at).map_or(CHUNK, |left| left.min(CHUNK));
            self.file.write_all_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.file.sync_all()?;
        self.len = len;
        Ok(())
    }
}

/// The records of `epoch` in `bytes` and where they end; past the first that does not verify,
/// the records further on tell whether it is damaged.
fn read(bytes: &[u8], epoch: u64) -> (Contents, u64) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((header, body)) = verified(bytes, at) {
        if header.epoch != epoch || header.seq != records.len() as u64 {
            break;
        }
        records.push(body.to_vec());
        at += HEADER + body.len();
    }
    let stop = records.len() as u64;
    // Records of the epoch further on: from the torn last commit or an earlier try at it
    // (a failed sync's, written over since), or written after the stop was synced.
    let mut later = Vec::new();
    let mut vouched = false;
    let pattern = epoch.to_le_bytes();
    let mut from = at + 1;
    while let Some(found) = bytes
        .get(from + 8..)
        .and_then(|rest| rest.windows(8).position(|w| w == pattern))
    {
        let candidate = from + found;
        match verified(bytes, candidate) {
            Some((header, body)) if header.epoch == epoch && header.seq >= stop => {
                vouched |= header.synced > stop;
                // In file order; a lower number is a stale earlier try.
                if later.last().is_none_or(|(seq, _)| header.seq > *seq) {
                    later.push((header.seq, body.to_vec()));
                }
                from = candidate + HEADER + body.len();
            }
            _ => from = candidate + 1,
        }
    }
    let damage = vouched.then(|| Damage {
        offset: at as u64,
        seq: stop,
        later: later.into_iter().map(|(_, body)| body).collect(),
    });
    (Contents { records, damage }, at as u64)
}

/// A record's header fields.
struct Header {
    epoch: u64,
    /// Its number in the epoch.
    seq: u64,
    /// How many records of the epoch were synced when it was written.
    synced: u64,
}

/// The record at `at` and its body, if it is whole and its checksum verifies.
fn verified(bytes: &[u8], at: usize) -> Option<(Header, &[u8])> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().unwrap_or_default());
    let (len, crc, epoch, numbers) = (u32_at(0), u32_at(4), u64_at(8), u64_at(16));
    if len == 0 && crc == 0 {
        return None;
    }
    let start = at + HEADER;
    let body = bytes.get(start..start.checked_add(len as usize)?)?;
    let (seq, synced) = (numbers & u64::from(u32::MAX), numbers >> 32);
    (checksum(epoch, numbers, body) == crc && synced <= seq)
        .then_some((Header { epoch, seq, synced }, body))
}

fn framed(bodies: impl IntoIterator<Item = usize>) -> u64 {
    bodies.into_iter().map(|n| (HEADER + n) as u64).sum()
}

fn checksum(epoch: u64, numbers: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&epoch.to_le_bytes());
    hasher.update(&numbers.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// A random epoch for a journal starting over.
#[must_use]
pub fn new_epoch() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the journal at `path` holds of `epoch`.
    fn contents(path: &Path, epoch: u64) -> Contents {
        Journal::open(path, Some(epoch)).unwrap().1
    }

    fn bodies(path: &Path, epoch: u64) -> Vec<Vec<u8>> {
        let contents = contents(path, epoch);
        assert!(contents.damage.is_none());
        contents.records
    }

    /// A new journal in a temporary directory (kept while the first is held), and its path.
    fn fresh() -> (tempfile::TempDir, std::path::PathBuf, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (journal, held) = Journal::open(&path, None).unwrap();
        assert!(held.records.is_empty() && held.damage.is_none());
        (dir, path, journal)
    }

    /// Flips a byte of the body of the record starting at `at`.
    fn flip(journal: &Journal, at: u64) {
        let mut byte = [0u8];
        let body = at + HEADER as u64;
        journal.file.read_exact_at(&mut byte, body).unwrap();
        journal.file.write_all_at(&[byte[0] ^ 0x20], body).unwrap();
    }

    /// Each commit one record, as with `--fsync always`.
    fn committed(journal: &mut Journal, bodies: &[&[u8]]) {
        for body in bodies {
            journal.append([*body]).unwrap();
            journal.sync().unwrap();
        }
    }

    #[test]
    fn records_come_back_in_order_until_the_journal_starts_over() {
        let (_dir, path, mut journal) = fresh();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), INITIAL_SIZE);
        journal.append([&b"one"[..], b"two"]).unwrap();
        journal.append([&b"three"[..]]).unwrap();
        journal.sync().unwrap();
        let first = journal.epoch();
        assert_eq!(bodies(&path, first), [&b"one"[..], b"two", b"three"]);
        // Without the database's word, the first record's epoch is taken.
        assert_eq!(Journal::open(&path, None).unwrap().1.records.len(), 3);

        let second = new_epoch();
        journal.start_over(second).unwrap();
        assert!(bodies(&path, second).is_empty());
        // A shorter epoch over a longer one: the older records after it are not read, and
        // are no sign of damage.
        journal.append([&b"four"[..]]).unwrap();
        journal.sync().unwrap();
        assert_eq!(bodies(&path, second), [b"four"]);
        // The old epoch's records are old even where its first header survived.
        journal.file.write_all_at(&[0u8; HEADER], 0).unwrap();
        assert!(bodies(&path, second).is_empty());
    }

    #[test]
    fn a_reopened_journal_appends_after_what_it_holds() {
        let (_dir, path, mut journal) = fresh();
        journal.append([&b"one"[..]]).unwrap();
        let epoch = journal.epoch();
        drop(journal);
        let (mut journal, held) = Journal::open(&path, Some(epoch)).unwrap();
        assert_eq!(held.records, [b"one"]);
        journal.append([&b"two"[..]]).unwrap();
        assert_eq!(bodies(&path, epoch), [&b"one"[..], b"two"]);
    }

    #[test]
    fn a_torn_last_commit_ends_what_is_read() {
        let (_dir, path, mut journal) = fresh();
        committed(&mut journal, &[b"kept"]);
        // One commit of three records, its first torn (its last two reached the disk).
        journal.append([&b"torn"[..], b"after", b"more"]).unwrap();
        flip(&journal, (HEADER + 4) as u64);
        assert_eq!(bodies(&path, journal.epoch()), [b"kept"]);
    }

    #[test]
    fn a_damaged_record_before_later_commits_is_damage_not_a_torn_tail() {
        let (_dir, path, mut journal) = fresh();
        committed(&mut journal, &[b"r0", b"r1", b"r2", b"r3"]);
        journal.append([&b"r4"[..], b"r5"]).unwrap();
        let record = |n: u64| n * (HEADER as u64 + 2);
        flip(&journal, record(1));
        let held = contents(&path, journal.epoch());
        assert_eq!(held.records, [b"r0"]);
        let damage = held.damage.expect("damage");
        assert_eq!((damage.offset, damage.seq), (record(1), 1));
        assert_eq!(damage.later, [b"r2", b"r3", b"r4", b"r5"]);
        // The first record too: the database names the epoch.
        let (_dir, path, mut journal) = fresh();
        committed(&mut journal, &[b"r0", b"r1"]);
        journal.file.write_all_at(&[0u8; HEADER], 0).unwrap();
        let damage = contents(&path, journal.epoch()).damage.expect("damage");
        assert_eq!((damage.offset, damage.seq), (0, 0));
        assert_eq!(damage.later, [b"r1"]);
    }

    #[test]
    fn unsynced_records_vouch_for_nothing() {
        // `--fsync never`: commits not yet synced may reach the disk in any order.
        let (_dir, path, mut journal) = fresh();
        committed(&mut journal, &[b"r0"]);
        journal.append([&b"r1"[..]]).unwrap();
        journal.append([&b"r2"[..]]).unwrap();
        flip(&journal, (HEADER + 2) as u64);
        assert_eq!(bodies(&path, journal.epoch()), [b"r0"]);
    }

    #[test]
    fn records_of_a_failed_sync_written_over_are_no_sign_of_damage() {
        let (_dir, path, mut journal) = fresh();
        committed(&mut journal, &[b"r0"]);
        let mark = journal.mark();
        journal.append([&b"failed-1"[..], b"failed-2"]).unwrap();
        journal.rewind(mark);
        // The retry is shorter and torn: the failed try's second record is still there.
        journal.append([&b"retry"[..]]).unwrap();
        flip(&journal, mark.0);
        assert_eq!(bodies(&path, journal.epoch()), [b"r0"]);
    }

    #[test]
    fn a_commit_larger_than_the_journal_grows_it() {
        let (_dir, path, mut journal) = fresh();
        let big = vec![7u8; INITIAL_SIZE as usize];
        assert!(!journal.fits([big.len()]));
        journal.append([&big[..], b"small"]).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() >= 2 * INITIAL_SIZE);
        let read = bodies(&path, journal.epoch());
        assert_eq!(read.len(), 2);
        assert_eq!(read[0], big);
        assert_eq!(read[1], b"small");
    }
}
