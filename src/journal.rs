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
//! CRC-32 of the rest `u32`, epoch `u64`, sequence number `u64`, little-endian) and its body.
//! Each start over picks a new random epoch and numbers records from 0, so reading stops at
//! the first record that is torn (bad CRC), from an earlier epoch, or out of sequence: what
//! follows the last record written is either zeros or an older epoch's records.

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
    /// Reused for each commit's records.
    buf: Vec<u8>,
}

impl Journal {
    /// Opens the journal at `path` (creating and preallocating it if needed) and reads the
    /// records it holds, oldest first; appends go after them until it starts over.
    pub fn open(path: &Path) -> io::Result<(Self, Vec<Vec<u8>>)> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let mut journal = Self {
            len: file.metadata()?.len(),
            file,
            used: 0,
            epoch: 0,
            seq: 0,
            buf: Vec::new(),
        };
        let (records, end, epoch) = journal.read_all()?;
        if journal.len < INITIAL_SIZE {
            journal.grow(INITIAL_SIZE)?;
        }
        journal.used = end;
        journal.seq = records.len() as u64;
        journal.epoch = epoch.unwrap_or_else(new_epoch);
        Ok((journal, records))
    }

    /// The records, where they end, and their epoch (if there are any).
    fn read_all(&self) -> io::Result<(Vec<Vec<u8>>, u64, Option<u64>)> {
        let mut records = Vec::new();
        let mut at = 0u64;
        let mut epoch = None;
        let mut header = [0u8; HEADER];
        while at + HEADER as u64 <= self.len {
            self.file.read_exact_at(&mut header, at)?;
            let (len, crc, this_epoch, seq) = parse_header(&header);
            let end = at + HEADER as u64 + u64::from(len);
            if (len == 0 && crc == 0) || end > self.len || seq != records.len() as u64 {
                break;
            }
            if epoch.is_some_and(|e| e != this_epoch) {
                break;
            }
            let mut body = vec![0u8; len as usize];
            self.file.read_exact_at(&mut body, at + HEADER as u64)?;
            if checksum(this_epoch, seq, &body) != crc {
                break;
            }
            epoch = Some(this_epoch);
            records.push(body);
            at = end;
        }
        Ok((records, at, epoch))
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
            self.buf.extend_from_slice(&len.to_le_bytes());
            self.buf
                .extend_from_slice(&checksum(self.epoch, seq, body).to_le_bytes());
            self.buf.extend_from_slice(&self.epoch.to_le_bytes());
            self.buf.extend_from_slice(&seq.to_le_bytes());
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

    /// Forgets the appends since `mark`: the next append writes over them.
    pub fn rewind(&mut self, (used, seq): (u64, u64)) {
        self.used = used;
        self.seq = seq;
    }

    /// Makes what was appended durable.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Starts over, once every record is safely elsewhere: the next append goes to the start,
    /// under a new epoch. The first header is zeroed but not synced: if a crash comes first,
    /// the records are read again, and applying them again changes nothing.
    pub fn start_over(&mut self) -> io::Result<()> {
        self.used = 0;
        self.seq = 0;
        self.epoch = new_epoch();
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

fn framed(bodies: impl IntoIterator<Item = usize>) -> u64 {
    bodies.into_iter().map(|n| (HEADER + n) as u64).sum()
}

fn parse_header(header: &[u8; HEADER]) -> (u32, u32, u64, u64) {
    let u32_at = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().unwrap_or_default());
    let u64_at = |i: usize| u64::from_le_bytes(header[i..i + 8].try_into().unwrap_or_default());
    (u32_at(0), u32_at(4), u64_at(8), u64_at(16))
}

fn checksum(epoch: u64, seq: u64, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&epoch.to_le_bytes());
    hasher.update(&seq.to_le_bytes());
    hasher.update(body);
    hasher.finalize()
}

fn new_epoch() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bodies(journal: &Path) -> Vec<Vec<u8>> {
        Journal::open(journal).unwrap().1
    }

    /// A new journal in a temporary directory (kept while the first is held), and its path.
    fn fresh() -> (tempfile::TempDir, std::path::PathBuf, Journal) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        let (journal, held) = Journal::open(&path).unwrap();
        assert!(held.is_empty());
        (dir, path, journal)
    }

    #[test]
    fn records_come_back_in_order_until_the_journal_starts_over() {
        let (_dir, path, mut journal) = fresh();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), INITIAL_SIZE);
        journal.append([&b"one"[..], b"two"]).unwrap();
        journal.append([&b"three"[..]]).unwrap();
        journal.sync().unwrap();
        assert_eq!(bodies(&path), [&b"one"[..], b"two", b"three"]);

        journal.start_over().unwrap();
        assert!(bodies(&path).is_empty());
        // A shorter epoch over a longer one: the older records after it are not read.
        journal.append([&b"four"[..]]).unwrap();
        assert_eq!(bodies(&path), [b"four"]);
    }

    #[test]
    fn a_reopened_journal_appends_after_what_it_holds() {
        let (_dir, path, mut journal) = fresh();
        journal.append([&b"one"[..]]).unwrap();
        drop(journal);
        let (mut journal, held) = Journal::open(&path).unwrap();
        assert_eq!(held, [b"one"]);
        journal.append([&b"two"[..]]).unwrap();
        assert_eq!(bodies(&path), [&b"one"[..], b"two"]);
    }

    #[test]
    fn a_torn_record_ends_what_is_read() {
        let (_dir, path, mut journal) = fresh();
        journal.append([&b"kept"[..], b"torn", b"after"]).unwrap();
        // Flip a byte of the second record's body.
        let second_body = (HEADER + 4 + HEADER) as u64;
        journal.file.write_all_at(b"X", second_body + 1).unwrap();
        assert_eq!(bodies(&path), [b"kept"]);
    }

    #[test]
    fn a_commit_larger_than_the_journal_grows_it() {
        let (_dir, path, mut journal) = fresh();
        let big = vec![7u8; INITIAL_SIZE as usize];
        assert!(!journal.fits([big.len()]));
        journal.append([&big[..], b"small"]).unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() >= 2 * INITIAL_SIZE);
        let read = bodies(&path);
        assert_eq!(read.len(), 2);
        assert_eq!(read[0], big);
        assert_eq!(read[1], b"small");
    }
}
