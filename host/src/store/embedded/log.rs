//! The write-ahead log: append-only files in the data directory, where a
//! batch of writes becomes durable before it is answered.
//!
//! Why a log: an fsync of one sequential append costs a fraction of a
//! millisecond whatever it holds, while a durable redb commit of the same
//! batch writes every B-tree page it touched. So the writer appends each
//! batch here as one record and syncs, and redb receives the writes later,
//! in large checkpoints (see `checkpoint`).
//!
//! Files are `wal-<n>.log`, numbered upwards; the writer appends to the
//! newest and starts the next one when it freezes the memtable, so a file
//! holds exactly what one checkpoint stores. redb records the number of the
//! last file it holds (`tables::LOG`); files up to it are deleted, files after
//! it are replayed on open.
//!
//! A record is `magic (4) | length (u32 LE) | CRC-32 of length and payload
//! (u32 LE) | payload`. Only the last record of the newest file can be torn:
//! the writer starts a write only after the previous one was synced, and a
//! file is left for the next only once complete. So a damaged record with no
//! valid record after it, in the newest file, is a torn write, which was
//! never answered: the file is cut before it. Any other damage refuses the
//! open rather than drop what may have been answered.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::ops::Range;
use std::path::{Path, PathBuf};

const MAGIC: [u8; 4] = *b"AEwl";
const HEADER: usize = 12;

/// The file the writer appends to.
pub(super) struct Log {
    dir: PathBuf,
    seq: u64,
    file: File,
    buffer: Vec<u8>,
}

impl Log {
    /// Creates log file `seq` in `dir`, durably (the directory is synced too).
    pub(super) fn create(dir: &Path, seq: u64) -> io::Result<Self> {
        let file = OpenOptions::new().append(true).create_new(true).open(dir.join(file_name(seq)))?;
        File::open(dir)?.sync_all()?;
        Ok(Self { dir: dir.to_owned(), seq, file, buffer: Vec::new() })
    }

    /// The number of the file written to.
    pub(super) fn seq(&self) -> u64 {
        self.seq
    }

    /// Appends one record, whose payload `fill` writes, and syncs it to disk.
    pub(super) fn append(&mut self, fill: impl FnOnce(&mut Vec<u8>)) -> io::Result<()> {
        self.buffer.clear();
        self.buffer.resize(HEADER, 0);
        fill(&mut self.buffer);
        let (header, payload) = self.buffer.split_at_mut(HEADER);
        let len = u32::try_from(payload.len()).map_err(|_| io::Error::other("a log record over 4 GiB"))?;
        header[..4].copy_from_slice(&MAGIC);
        header[4..8].copy_from_slice(&len.to_le_bytes());
        header[8..].copy_from_slice(&checksum(payload).to_le_bytes());
        self.file.write_all(&self.buffer)?;
        self.file.sync_data()?;
        if self.buffer.capacity() > 4 << 20 {
            // One huge batch should not pin its buffer for good.
            self.buffer = Vec::new();
        }
        Ok(())
    }

    /// Continues in a new file; returns the number of the one left behind.
    pub(super) fn rotate(&mut self) -> io::Result<u64> {
        let next = Self::create(&self.dir, self.seq + 1)?;
        Ok(std::mem::replace(self, next).seq)
    }
}

fn checksum(payload: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&(payload.len() as u32).to_le_bytes());
    crc.update(payload);
    crc.finalize()
}

fn file_name(seq: u64) -> String {
    format!("wal-{seq:020}.log")
}

/// The log files in `dir`, oldest first.
pub(super) fn files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let seq = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix("wal-")?.strip_suffix(".log"));
        if let Some(seq) = seq.and_then(|s| s.parse().ok()) {
            files.push((seq, path));
        }
    }
    files.sort();
    Ok(files)
}

/// Deletes the log files numbered `seq` and below: redb holds their writes.
pub(super) fn remove_through(dir: &Path, seq: u64) -> io::Result<()> {
    for (_, path) in files(dir)?.into_iter().take_while(|(n, _)| *n <= seq) {
        std::fs::remove_file(path)?;
    }
    Ok(())
}

/// Calls `apply` with each record of the file at `path`, in order. In the
/// newest file (`newest`) a torn last record is cut off the file.
///
/// # Errors
///
/// I/O, a damaged record that is not a torn tail, or `apply`'s error; each
/// message names the file and the offset.
pub(super) fn replay(
    path: &Path,
    newest: bool,
    mut apply: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let name = path.display();
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read log {name}: {e}"))?;
    let at =
        valid_records(&bytes, |at, record| apply(record).map_err(|e| format!("log {name}, record at byte {at}: {e}")))?;
    if at == bytes.len() {
        return Ok(());
    }
    if let Some(next) = next_record(&bytes, at) {
        return Err(format!(
            "log {name} is damaged at bytes {at}..{next} and a valid record follows, so this is not a torn \
             write: answered writes may be in it; restore the file, or move it away to accept losing them"
        ));
    }
    if !newest {
        return Err(format!(
            "log {name} is damaged from byte {at} to its end, but a newer log exists, so it was complete: \
             restore the file, or move it away to accept losing the writes in it"
        ));
    }
    tracing::warn!(log = %name, offset = at, dropped = bytes.len() - at, "cutting a torn write off the log");
    let file = OpenOptions::new().write(true).open(path).map_err(|e| format!("cannot open log {name}: {e}"))?;
    file.set_len(at as u64).and_then(|()| file.sync_all()).map_err(|e| format!("cannot cut log {name}: {e}"))
}

/// Calls `apply` with the offset and payload of each valid record from the
/// start of `bytes`, in order; returns the offset where they end (the length
/// of `bytes` when every byte is in a record). A record's length is trusted
/// only once its bytes are present and its checksum matches.
///
/// # Errors
///
/// `apply`'s.
pub(super) fn valid_records(
    bytes: &[u8],
    mut apply: impl FnMut(usize, &[u8]) -> Result<(), String>,
) -> Result<usize, String> {
    let mut at = 0;
    while let Some(record) = record_at(bytes, at) {
        apply(at, &bytes[record.clone()])?;
        at = record.end;
    }
    Ok(at)
}

/// The offset of the first valid record after `at`, if any.
pub(super) fn next_record(bytes: &[u8], at: usize) -> Option<usize> {
    (at + 1..bytes.len()).find(|&y| record_at(bytes, y).is_some())
}

/// The payload of a valid record starting at `at`, if there is one.
fn record_at(bytes: &[u8], at: usize) -> Option<Range<usize>> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let (magic, rest) = header.split_first_chunk::<4>()?;
    let (len, rest) = rest.split_first_chunk::<4>()?;
    let crc = u32::from_le_bytes(*rest.first_chunk::<4>()?);
    let len = u32::from_le_bytes(*len) as usize;
    let payload = at + HEADER..(at + HEADER).checked_add(len)?;
    let body = bytes.get(payload.clone())?;
    (*magic == MAGIC && len > 0 && checksum(body) == crc).then_some(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(path: &Path, newest: bool) -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::new();
        replay(path, newest, |r| {
            out.push(r.to_vec());
            Ok(())
        })?;
        Ok(out)
    }

    fn three_records(dir: &Path) -> (PathBuf, Vec<u64>) {
        let mut log = Log::create(dir, 7).unwrap();
        let path = dir.join(file_name(7));
        let mut ends = Vec::new();
        for payload in [&b"first"[..], b"second", b"third"] {
            log.append(|buffer| buffer.extend_from_slice(payload)).unwrap();
            ends.push(std::fs::metadata(&path).unwrap().len());
        }
        (path, ends)
    }

    #[test]
    fn records_come_back_in_order_and_files_are_listed_by_number() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _) = three_records(dir.path());
        assert_eq!(records(&path, true).unwrap(), [&b"first"[..], b"second", b"third"]);
        let mut log = Log::create(dir.path(), 9).unwrap();
        assert_eq!(log.rotate().unwrap(), 9);
        assert_eq!(log.seq(), 10);
        assert_eq!(files(dir.path()).unwrap().iter().map(|f| f.0).collect::<Vec<_>>(), [7, 9, 10]);
        remove_through(dir.path(), 9).unwrap();
        assert_eq!(files(dir.path()).unwrap().iter().map(|f| f.0).collect::<Vec<_>>(), [10]);
    }

    #[test]
    fn a_torn_last_record_is_cut_off() {
        for cut in [1, 5, 11, 12, 14] {
            let dir = tempfile::tempdir().unwrap();
            let (path, ends) = three_records(dir.path());
            let file = OpenOptions::new().write(true).open(&path).unwrap();
            file.set_len(ends[2] - cut).unwrap();
            assert_eq!(records(&path, true).unwrap(), [&b"first"[..], b"second"], "cut {cut}");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[1], "the torn bytes are gone");
        }
    }

    #[test]
    fn a_torn_record_of_zeros_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = three_records(dir.path());
        // A crash after the file grew but before its new blocks were written reads back zeros.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(ends[2] + 4096).unwrap();
        assert_eq!(records(&path, true).unwrap().len(), 3);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), ends[2]);
    }

    #[test]
    fn damage_before_the_tail_is_an_error_not_a_loss() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = three_records(dir.path());
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[ends[0] as usize + HEADER] ^= 0x20; // a bit of "second"
        std::fs::write(&path, &bytes).unwrap();
        let err = records(&path, true).unwrap_err();
        assert!(err.contains("a valid record follows"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing is cut");
    }

    /// A header claiming a 4 GiB record is a torn write, found from the
    /// bytes present, not a read of what it claims.
    #[test]
    fn a_length_past_the_end_is_damage_not_a_read() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(u32::MAX.to_le_bytes());
        bytes.extend(checksum(b"x").to_le_bytes());
        bytes.extend(b"x");
        assert_eq!(valid_records(&bytes, |_, _| Err("no record is valid".into())), Ok(0));
        assert_eq!(next_record(&bytes, 0), None);
    }

    #[test]
    fn a_damaged_end_of_an_older_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (path, ends) = three_records(dir.path());
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(ends[2] - 1).unwrap();
        let err = records(&path, false).unwrap_err();
        assert!(err.contains("a newer log exists"), "{err}");
    }
}
