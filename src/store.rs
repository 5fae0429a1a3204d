//! The sample store: an append-only, self-describing binary file of evaluated batches, durable
//! batch by batch, that a run resumes from after any crash.
//!
//! Layout (all integers little-endian):
//!
//! ```text
//! header  b"SPEXSTR1" | u32 json_len | json (StoreHeader) | u32 crc32(json)
//! record  u32 0x52435244 ("RCRD") | u64 batch | u32 count | count × f64 | u32 crc32(batch|count|values)
//! ```
//!
//! The header names the design (the whole plan file), the value function's fingerprint, the batch
//! size and the shard, so a store is never mixed with another run. Batch `b` holds the values of
//! masks `b·batch_size ..` of the plan's masks, in order. On opening, a torn or corrupt tail (a
//! crash mid-write) is cut off and kept beside the store as `<store>.torn-<offset>`; everything
//! before it is intact by its checksums. A batch stored twice (only possible when merging) must
//! hold the same values and counts once.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::PlanFile;

const MAGIC: &[u8; 8] = b"SPEXSTR1";
const RECORD: u32 = 0x5243_5244;
/// Version tag of the store header.
pub const STORE_FORMAT: &str = "spex-store/1";

/// Which share of the batches a store holds: batches with `id % count == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This shard, `0..count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// The whole run.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// Whether batch `batch` belongs to this shard.
    pub fn owns(&self, batch: usize) -> bool {
        batch % self.count == self.index
    }
}

impl std::fmt::Display for Shard {
    /// `i/k`, as `--shard` takes it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// Parses `i/k` with `0 ≤ i < k`.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("shard {s:?} is not of the form i/k with 0 <= i < k");
        let (i, k) = s.split_once('/').ok_or_else(bad)?;
        let (index, count) = (i.trim().parse().map_err(|_| bad())?, k.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

/// What a store belongs to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoreHeader {
    /// Always [`STORE_FORMAT`].
    pub format: String,
    /// The plan: design parameters, seed, budget, held-out masks.
    pub plan: PlanFile,
    /// Fingerprint of what was queried (model and input, or the driver command).
    pub function: String,
    /// Masks in the whole run (design, held-out and probes).
    pub total_masks: usize,
    /// Masks per batch.
    pub batch_size: usize,
    /// The share of batches this store holds.
    pub shard: Shard,
}

impl StoreHeader {
    /// Number of batches of the whole run.
    pub fn num_batches(&self) -> usize {
        self.total_masks.div_ceil(self.batch_size.max(1))
    }

    /// Masks in batch `batch`.
    pub fn batch_len(&self, batch: usize) -> usize {
        let start = batch * self.batch_size;
        self.total_masks.saturating_sub(start).min(self.batch_size)
    }

    /// The batches this store is responsible for.
    pub fn owned_batches(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.num_batches()).filter(|&b| self.shard.owns(b))
    }

    /// What differs if `other` is not a store of the same run (its shard aside): the design,
    /// the value function or the batch size.
    pub fn run_difference(&self, other: &StoreHeader) -> Option<&'static str> {
        if self.plan != other.plan {
            Some("design")
        } else if self.function != other.function {
            Some("value function")
        } else if self.batch_size != other.batch_size {
            Some("batch size")
        } else {
            None
        }
    }
}

/// Why a store could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O error.
    #[error("{path}: {source}")]
    Io {
        /// The store.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Writing a batch failed (disk full, …); everything before it is stored.
    #[error(
        "{path}: writing batch {batch} failed: {source}; {stored} earlier batches are safely stored — \
         free space or fix the problem, then resume"
    )]
    Write {
        /// The store.
        path: PathBuf,
        /// The batch being written.
        batch: usize,
        /// Batches safely stored before it.
        stored: usize,
        /// The error.
        source: std::io::Error,
    },
    /// Not a store, or a store of another version.
    #[error("{path} is not a spex sample store ({reason})")]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The store belongs to another run.
    #[error("{path} belongs to a different run: its {what} differs from this run's; use another output directory")]
    Mismatch {
        /// The store.
        path: PathBuf,
        /// What differs.
        what: String,
    },
    /// A record disagrees with the header or with another record of the same batch.
    #[error("{path}: {reason}")]
    Inconsistent {
        /// The store.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// An open store: its header, the batches it holds, and a handle to append more.
pub struct Store {
    path: PathBuf,
    /// `None` for a store only read ([`Store::read`]).
    file: Option<File>,
    header: StoreHeader,
    batches: Batches,
    sync_every: usize,
    unsynced: usize,
    /// Bytes cut off a torn tail when the store was opened (0 if none).
    pub dropped_bytes: u64,
}

fn crc(parts: &[&[u8]]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    parts.iter().for_each(|p| h.update(p));
    h.finalize()
}

fn encode_record(batch: usize, values: &[f64]) -> Vec<u8> {
    let mut body = Vec::with_capacity(12 + 8 * values.len());
    body.extend_from_slice(&(batch as u64).to_le_bytes());
    body.extend_from_slice(&(values.len() as u32).to_le_bytes());
    values.iter().for_each(|v| body.extend_from_slice(&v.to_le_bytes()));
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&RECORD.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&crc(&[&body]).to_le_bytes());
    out
}

/// Parses one record at the start of `bytes`: `(batch, values, length)`, or `None` if the bytes
/// do not hold a whole, intact record.
fn decode_record(bytes: &[u8]) -> Option<(usize, Vec<f64>, usize)> {
    let u32_at = |at: usize| Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?));
    if u32_at(0)? != RECORD {
        return None;
    }
    let batch = u64::from_le_bytes(bytes.get(4..12)?.try_into().ok()?) as usize;
    let count = u32_at(12)? as usize;
    let end = 16 + 8 * count;
    let body = bytes.get(4..end)?;
    if crc(&[body]) != u32_at(end)? {
        return None;
    }
    let values = bytes[16..end].chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
    Some((batch, values, end + 4))
}

impl Store {
    /// Creates a new store at `path` (refusing to overwrite an existing file).
    pub fn create(path: &Path, header: StoreHeader, sync_every: usize) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io { path: path.to_path_buf(), source };
        let mut file = OpenOptions::new().read(true).append(true).create_new(true).open(path).map_err(io)?;
        let json = serde_json::to_vec(&header).expect("header serialises");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&(json.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&json);
        bytes.extend_from_slice(&crc(&[&json]).to_le_bytes());
        file.write_all(&bytes).and_then(|_| file.sync_all()).map_err(io)?;
        Ok(Store {
            path: path.to_path_buf(),
            file: Some(file),
            header,
            batches: BTreeMap::new(),
            sync_every: sync_every.max(1),
            unsynced: 0,
            dropped_bytes: 0,
        })
    }

    /// Opens an existing store, reading every intact batch and cutting off a torn tail.
    pub fn open(path: &Path, sync_every: usize) -> Result<Self, StoreError> {
        let io = |source| StoreError::Io { path: path.to_path_buf(), source };
        let mut file = OpenOptions::new().read(true).append(true).open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io)?;
        let (header, batches, at) = parse_store(path, &bytes)?;
        let dropped_bytes = (bytes.len() - at) as u64;
        if dropped_bytes > 0 {
            // Keep what is cut off, so nothing is destroyed silently.
            let aside = PathBuf::from(format!("{}.torn-{at}", path.display()));
            std::fs::write(&aside, &bytes[at..]).map_err(io)?;
            file.set_len(at as u64).map_err(io)?;
            file.sync_all().map_err(io)?;
        }
        file.seek(SeekFrom::End(0)).map_err(io)?;
        Ok(Store {
            path: path.to_path_buf(),
            file: Some(file),
            header,
            batches,
            sync_every: sync_every.max(1),
            unsynced: 0,
            dropped_bytes,
        })
    }

    /// Reads a store without changing it, for a store another process may be writing (a shard
    /// still running while `spex merge` or a sibling shard looks at it): a torn or half-written
    /// tail is left alone and not counted. The result cannot be appended to.
    pub fn read(path: &Path) -> Result<Self, StoreError> {
        let bytes = std::fs::read(path).map_err(|source| StoreError::Io { path: path.to_path_buf(), source })?;
        let (header, batches, _) = parse_store(path, &bytes)?;
        Ok(Store {
            path: path.to_path_buf(),
            file: None,
            header,
            batches,
            sync_every: 1,
            unsynced: 0,
            dropped_bytes: 0,
        })
    }

    /// Reads only a store's header, without its batches: what a run needs to tell whether a
    /// sibling store belongs to it, without reading a large store whole. The store is not changed.
    pub fn read_header(path: &Path) -> Result<StoreHeader, StoreError> {
        let io = |source| StoreError::Io { path: path.to_path_buf(), source };
        let mut file = File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        (&mut file).take(12).read_to_end(&mut bytes).map_err(io)?;
        // The JSON and its checksum, only behind a store's magic (not a length read off any file).
        if bytes.len() == 12 && &bytes[..8] == MAGIC {
            let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as u64;
            file.take(len + 4).read_to_end(&mut bytes).map_err(io)?;
        }
        parse_header(path, &bytes).map(|(header, _)| header)
    }

    /// The file to append to; an error for a store only read.
    fn file(&mut self) -> Result<&mut File, StoreError> {
        let path = &self.path;
        self.file.as_mut().ok_or_else(|| StoreError::Inconsistent {
            path: path.clone(),
            reason: "the store was opened read-only".into(),
        })
    }

    /// Opens the store at `path` for `header`'s run, creating it if absent; an existing store must
    /// belong to the same run (plan, function, batch size, shard).
    pub fn open_or_create(path: &Path, header: StoreHeader, sync_every: usize) -> Result<Self, StoreError> {
        if !path.exists() {
            return Store::create(path, header, sync_every);
        }
        let store = Store::open(path, sync_every)?;
        let mismatch = |what: &str| Err(StoreError::Mismatch { path: path.to_path_buf(), what: what.to_string() });
        let h = &store.header;
        if h.plan != header.plan {
            return mismatch("design (n, method, budget, seed, degree or hold-out size)");
        }
        if h.function != header.function {
            let what = format!("value function (stored: {}; this run: {})", h.function, header.function);
            return mismatch(&what);
        }
        if h.batch_size != header.batch_size {
            // `--batch-size auto` differs between devices: say what continues the store.
            let what = format!(
                "batch size (stored: {}; this run: {}; --batch-size {} continues it)",
                h.batch_size, header.batch_size, h.batch_size
            );
            return mismatch(&what);
        }
        if h.shard != header.shard {
            return mismatch("shard");
        }
        Ok(store)
    }

    /// The header.
    pub fn header(&self) -> &StoreHeader {
        &self.header
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether batch `batch` is stored.
    pub fn has(&self, batch: usize) -> bool {
        self.batches.contains_key(&batch)
    }

    /// The stored batches, by id.
    pub fn batches(&self) -> &BTreeMap<usize, Vec<f64>> {
        &self.batches
    }

    /// Batches this store owns that are not stored yet, ascending.
    pub fn missing(&self) -> Vec<usize> {
        self.header.owned_batches().filter(|b| !self.has(*b)).collect()
    }

    /// Appends batch `batch` (durable once synced: every `sync_every` batches and on
    /// [`sync`](Self::sync)). A batch already stored is not written again.
    pub fn append(&mut self, batch: usize, values: &[f64]) -> Result<(), StoreError> {
        check_record(&self.path, &self.header, batch, values)?;
        if self.has(batch) {
            return Ok(());
        }
        let record = encode_record(batch, values);
        let (stored, path) = (self.batches.len(), self.path.clone());
        let failed = |source| StoreError::Write { path, batch, stored, source };
        let sync = self.unsynced + 1 >= self.sync_every;
        let file = self.file()?;
        write_record(file, &record).and_then(|_| if sync { file.sync_data() } else { Ok(()) }).map_err(failed)?;
        self.unsynced = if sync { 0 } else { self.unsynced + 1 };
        self.batches.insert(batch, values.to_vec());
        Ok(())
    }

    /// Makes every appended batch durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        self.file()?.sync_data().map_err(|source| StoreError::Io { path, source })?;
        self.unsynced = 0;
        Ok(())
    }

    /// Every value of the run in mask order, if every batch is present in `stores` together
    /// (the shards of one run); else the first missing batch.
    pub fn assemble(stores: &[&Store]) -> Result<Vec<f64>, usize> {
        let header = &stores[0].header;
        let mut values = Vec::with_capacity(header.total_masks);
        for b in 0..header.num_batches() {
            let found = stores.iter().find_map(|s| s.batches.get(&b)).ok_or(b)?;
            values.extend_from_slice(found);
        }
        Ok(values)
    }
}

/// Writes one record, undoing a partial write so a failed append leaves no torn tail behind.
fn write_record(file: &mut File, record: &[u8]) -> std::io::Result<()> {
    let before = file.seek(SeekFrom::End(0))?;
    if let Err(e) = file.write_all(record) {
        let _ = file.set_len(before);
        return Err(e);
    }
    Ok(())
}

fn parse_header(path: &Path, bytes: &[u8]) -> Result<(StoreHeader, usize), StoreError> {
    let not = |reason: &str| StoreError::NotAStore { path: path.to_path_buf(), reason: reason.to_string() };
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err(not("bad magic"));
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let json = bytes.get(12..12 + len).ok_or_else(|| not("truncated header"))?;
    let sum = bytes.get(12 + len..16 + len).ok_or_else(|| not("truncated header"))?;
    if crc(&[json]) != u32::from_le_bytes(sum.try_into().unwrap()) {
        return Err(not("header checksum mismatch"));
    }
    let header: StoreHeader = serde_json::from_slice(json).map_err(|e| not(&format!("header: {e}")))?;
    if header.format != STORE_FORMAT {
        return Err(not(&format!("format {:?}, expected {STORE_FORMAT:?}", header.format)));
    }
    Ok((header, 16 + len))
}

/// Stored batches by id.
type Batches = BTreeMap<usize, Vec<f64>>;

/// The header and intact batches of a store's `bytes`, and where the intact part ends.
fn parse_store(path: &Path, bytes: &[u8]) -> Result<(StoreHeader, Batches, usize), StoreError> {
    let (header, mut at) = parse_header(path, bytes)?;
    let mut batches = BTreeMap::new();
    while at < bytes.len() {
        let Some((batch, values, len)) = decode_record(&bytes[at..]) else { break };
        check_record(path, &header, batch, &values)?;
        if let Some(old) = batches.insert(batch, values) {
            if old != batches[&batch] {
                return Err(StoreError::Inconsistent {
                    path: path.to_path_buf(),
                    reason: format!("batch {batch} is stored twice with different values"),
                });
            }
        }
        at += len;
    }
    Ok((header, batches, at))
}

fn check_record(path: &Path, header: &StoreHeader, batch: usize, values: &[f64]) -> Result<(), StoreError> {
    let bad = |reason: String| Err(StoreError::Inconsistent { path: path.to_path_buf(), reason });
    if batch >= header.num_batches() || !header.shard.owns(batch) {
        return bad(format!("batch {batch} does not belong to this run's shard {:?}", header.shard));
    }
    if values.len() != header.batch_len(batch) {
        return bad(format!("batch {batch} has {} values, expected {}", values.len(), header.batch_len(batch)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Plan, PlanSpec};

    fn header(batch_size: usize, shard: Shard) -> StoreHeader {
        let plan = Plan::new(PlanSpec { budget: 700, holdout: 20, ..PlanSpec::new(10) }).unwrap();
        StoreHeader {
            format: STORE_FORMAT.into(),
            total_masks: plan.budget_used() + 20,
            plan: plan.to_file(),
            function: "f".into(),
            batch_size,
            shard,
        }
    }

    fn batch_values(h: &StoreHeader, b: usize) -> Vec<f64> {
        (0..h.batch_len(b)).map(|i| (b * 1000 + i) as f64 * 0.5).collect()
    }

    #[test]
    fn round_trip_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.store");
        let h = header(100, Shard::ALL);
        let mut s = Store::create(&path, h.clone(), 1).unwrap();
        for b in [0, 1, 3] {
            s.append(b, &batch_values(&h, b)).unwrap();
        }
        drop(s);
        let mut s = Store::open_or_create(&path, h.clone(), 1).unwrap();
        assert_eq!(s.missing(), (0..h.num_batches()).filter(|b| ![0, 1, 3].contains(b)).collect::<Vec<_>>());
        for b in s.missing() {
            s.append(b, &batch_values(&h, b)).unwrap();
        }
        s.append(0, &batch_values(&h, 0)).unwrap(); // a repeat is not stored twice
        let values = Store::assemble(&[&s]).unwrap();
        assert_eq!(values.len(), h.total_masks);
        assert_eq!(values[250], 2000.0 * 0.5 + 50.0 * 0.5);
        let len = std::fs::metadata(&path).unwrap().len();
        drop(s);
        let s = Store::open(&path, 1).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
        assert_eq!(s.batches().len(), h.num_batches());
    }

    #[test]
    fn torn_and_corrupt_tails_are_cut_and_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.store");
        let h = header(100, Shard::ALL);
        let mut s = Store::create(&path, h.clone(), 1).unwrap();
        s.append(0, &batch_values(&h, 0)).unwrap();
        s.append(1, &batch_values(&h, 1)).unwrap();
        drop(s);
        let good = std::fs::read(&path).unwrap();
        // Torn: half of a third record.
        let rec = encode_record(2, &batch_values(&h, 2));
        let mut torn = good.clone();
        torn.extend_from_slice(&rec[..rec.len() / 2]);
        std::fs::write(&path, &torn).unwrap();
        let s = Store::open(&path, 1).unwrap();
        assert_eq!((s.batches().len(), s.dropped_bytes), (2, (rec.len() / 2) as u64));
        assert_eq!(std::fs::read(&path).unwrap(), good);
        assert!(dir.path().read_dir().unwrap().any(|e| e.unwrap().file_name().to_string_lossy().contains(".torn-")));
        // Corrupt: a flipped bit inside the last record.
        let mut corrupt = good.clone();
        let at = corrupt.len() - 10;
        corrupt[at] ^= 1;
        std::fs::write(&path, &corrupt).unwrap();
        let s = Store::open(&path, 1).unwrap();
        assert_eq!(s.batches().len(), 1);
        assert_eq!(s.batches()[&0], batch_values(&h, 0));
    }

    #[test]
    fn header_alone_is_read_and_every_cut_of_it_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.store");
        let h = header(100, Shard { index: 1, count: 3 });
        let mut s = Store::create(&path, h.clone(), 1).unwrap();
        s.append(1, &batch_values(&h, 1)).unwrap();
        drop(s);
        assert_eq!(Store::read_header(&path).unwrap(), h);
        let bytes = std::fs::read(&path).unwrap();
        let (_, header_len) = parse_header(&path, &bytes).unwrap();
        // A store being created, cut anywhere inside its header, is not a store yet.
        for cut in [0, 5, 12, header_len / 2, header_len - 1] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = Store::read_header(&path).unwrap_err();
            assert!(matches!(err, StoreError::NotAStore { .. }), "cut {cut}: {err}");
        }
        let mut flipped = bytes[..header_len].to_vec();
        flipped[20] ^= 1;
        std::fs::write(&path, &flipped).unwrap();
        assert!(Store::read_header(&path).unwrap_err().to_string().contains("checksum"));
    }

    #[test]
    fn another_runs_store_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.store");
        let h = header(100, Shard::ALL);
        Store::create(&path, h.clone(), 1).unwrap();
        let other = StoreHeader { function: "g".into(), ..h.clone() };
        let err = Store::open_or_create(&path, other, 1).err().unwrap().to_string();
        assert!(err.contains("value function"), "{err}");
        let other = StoreHeader { batch_size: 50, ..h.clone() };
        assert!(Store::open_or_create(&path, other, 1).is_err());
        std::fs::write(&path, b"hello").unwrap();
        assert!(matches!(Store::open(&path, 1), Err(StoreError::NotAStore { .. })));
    }

    #[test]
    fn shards_partition_batches_and_assemble() {
        let dir = tempfile::tempdir().unwrap();
        let h0 = header(64, "0/3".parse().unwrap());
        let stores: Vec<Store> = (0..3)
            .map(|i| {
                let h = StoreHeader { shard: Shard { index: i, count: 3 }, ..h0.clone() };
                let mut s = Store::create(&dir.path().join(format!("{i}")), h.clone(), 4).unwrap();
                for b in s.missing() {
                    s.append(b, &batch_values(&h, b)).unwrap();
                }
                s
            })
            .collect();
        let refs: Vec<&Store> = stores.iter().collect();
        let all = Store::assemble(&refs).unwrap();
        let expected: Vec<f64> = (0..h0.num_batches()).flat_map(|b| batch_values(&h0, b)).collect();
        assert_eq!(all, expected);
        assert_eq!(Store::assemble(&refs[..2]), Err(2));
        assert!("3/3".parse::<Shard>().is_err() && "1/0".parse::<Shard>().is_err() && "x".parse::<Shard>().is_err());
    }
}
