//! One shard file: a safetensors file holding `features` f32 `[n, d]`, with the content key of each
//! row (`keys`, a JSON list) and a sha256 over the keys and the features (`sha256`) in its metadata.
//! Shards are immutable once renamed into place, and their names are unique across machines, so a
//! name checked once stays good for the life of a process.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{io, Error, Result};

/// Metadata keys of a shard.
const KEYS: &str = "keys";
const SHA256: &str = "sha256";
/// Bytes hashed per read while verifying.
const CHUNK: usize = 1 << 20;

/// Where a shard's rows are, read from its header alone.
#[derive(Clone, Debug)]
pub struct ShardHeader {
    /// The content key of each row.
    pub keys: Vec<String>,
    /// Row width.
    pub dim: usize,
    /// Offset of row 0 in the file.
    pub data_start: u64,
    keys_json: String,
    sum: String,
}

/// Why a shard cannot be used.
#[derive(Debug)]
pub enum Problem {
    /// It is no longer there (another process merged it away after the folder was listed).
    Gone,
    /// Its bytes are wrong; the message says how.
    Damaged(String),
}

impl ShardHeader {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.keys.len()
    }
}

/// Opens `path` for reading; a missing file is [`Problem::Gone`].
pub fn open(path: &Path) -> Result<std::result::Result<File, Problem>> {
    match File::open(path) {
        Ok(f) => Ok(Ok(f)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Err(Problem::Gone)),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Reads the header of an open shard and checks that the file holds exactly the rows it announces
/// (a truncated or padded file is damaged); `verify` also hashes the rows against the checksum,
/// streaming through the file.
pub fn read_header(file: &mut File, path: &Path, verify: bool) -> Result<std::result::Result<ShardHeader, Problem>> {
    let io_err = |e| Error::io(path, e);
    let damaged = |m: String| Ok(Err(Problem::Damaged(m)));
    let len = file.metadata().map_err(io_err)?.len();
    let mut n = [0u8; 8];
    if len < 8 {
        return damaged(format!("{len} bytes, shorter than a header"));
    }
    file.read_exact(&mut n).map_err(io_err)?;
    let n = u64::from_le_bytes(n);
    if n > len - 8 || n > 1 << 31 {
        return damaged(format!("header of {n} bytes in a file of {len}"));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(io_err)?;
    let parsed: serde_json::Value = match serde_json::from_slice(&header) {
        Ok(v) => v,
        Err(e) => return damaged(format!("header: {e}")),
    };
    let meta = &parsed["__metadata__"];
    let (Some(keys_json), features) = (meta[KEYS].as_str(), &parsed["features"]) else {
        return damaged("no `keys` metadata".into());
    };
    let Some(sum) = meta[SHA256].as_str() else {
        return damaged("no checksum (written by an older graft)".into());
    };
    let shape: Option<Vec<usize>> =
        features["shape"].as_array().map(|s| s.iter().filter_map(|d| d.as_u64()).map(|d| d as usize).collect());
    let offsets: Option<Vec<u64>> =
        features["data_offsets"].as_array().map(|s| s.iter().filter_map(|d| d.as_u64()).collect());
    let (Some(shape), Some(offsets)) = (shape, offsets) else {
        return damaged("no `features` tensor".into());
    };
    if features["dtype"] != "F32" || shape.len() != 2 || offsets.len() != 2 {
        return damaged("`features` is not a 2-D F32 tensor".into());
    }
    let keys: Vec<String> = match serde_json::from_str(keys_json) {
        Ok(k) => k,
        Err(e) => return damaged(format!("`keys`: {e}")),
    };
    let bytes = (shape[0] * shape[1] * 4) as u64;
    let data_start = 8 + n + offsets[0];
    if shape[0] != keys.len() || offsets[1] - offsets[0] != bytes || data_start + bytes != len {
        return damaged(format!("`features` {shape:?} does not fit {} keys in {len} bytes", keys.len()));
    }
    let header =
        ShardHeader { keys, dim: shape[1], data_start, keys_json: keys_json.to_string(), sum: sum.to_string() };
    if verify {
        let mut h = Sha256::new();
        h.update(header.keys_json.as_bytes());
        h.update([0u8]);
        file.seek(SeekFrom::Start(data_start)).map_err(io_err)?;
        let mut buf = vec![0u8; CHUNK];
        let mut left = bytes as usize;
        while left > 0 {
            let k = left.min(CHUNK);
            file.read_exact(&mut buf[..k]).map_err(io_err)?;
            h.update(&buf[..k]);
            left -= k;
        }
        if hex(&h.finalize()) != header.sum {
            return damaged("its content does not match its sha256".into());
        }
    }
    Ok(Ok(header))
}

/// Reads and checks the whole shard at `path` (for `graft cache verify`): `Ok(None)` when good.
pub fn check(path: &Path) -> Result<Option<Problem>> {
    let mut file = match open(path)? {
        Ok(f) => f,
        Err(p) => return Ok(Some(p)),
    };
    Ok(read_header(&mut file, path, true)?.err())
}

/// Reads row `row` of an open shard into `out` (`header.dim` values).
pub fn read_row(file: &File, path: &Path, header_dim: usize, offset: u64, out: &mut Vec<f32>) -> Result<()> {
    let mut bytes = vec![0u8; header_dim * 4];
    file.read_exact_at(&mut bytes, offset).map_err(|e| Error::io(path, e))?;
    out.clear();
    out.extend(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A shard file name no other process (nor another call in this one) picks:
/// `shard-HOST-PID-RANDOM-SEQ.safetensors`, SEQ counting this process's shards.
pub fn unique_name() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    use std::hash::{BuildHasher, Hasher};
    static RANDOM: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let random = *RANDOM.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        h.finish()
    });
    format!("shard-{}-{}-{:08x}-{seq:06}.safetensors", host(), std::process::id(), random as u32)
}

/// This machine's name, reduced to file-name-safe characters.
fn host() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let clean: String = raw
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '_' })
        .take(48)
        .collect();
    if clean.is_empty() {
        "host".into()
    } else {
        clean
    }
}

/// Writes a shard of `keys.len()` rows of width `dim` at `path` (temporary file, then rename):
/// `fill(i, out)` puts row `i` into `out` (`dim` values). Rows stream to disk; the checksum is
/// written into the header last. Returns the offset of row 0.
pub fn write(
    path: &Path,
    keys: &[&str],
    dim: usize,
    mut fill: impl FnMut(usize, &mut Vec<f32>) -> Result<()>,
) -> Result<u64> {
    const PLACEHOLDER: &str = "0000000000000000000000000000000000000000000000000000000000000000";
    let keys_json = serde_json::to_string(keys).expect("strings serialise");
    let bytes = keys.len() * dim * 4;
    let meta = serde_json::json!({ KEYS: keys_json, SHA256: PLACEHOLDER });
    let mut header = format!(
        "{{\"__metadata__\":{meta},\"features\":{{\"dtype\":\"F32\",\"shape\":[{},{dim}],\"data_offsets\":[0,{bytes}]}}}}",
        keys.len()
    );
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let at = 8 + header.rfind(PLACEHOLDER).expect("the placeholder is in the header") as u64;
    let mut failed = None;
    let written = io::write_atomic_with(path, |file| {
        let mut h = Sha256::new();
        h.update(keys_json.as_bytes());
        h.update([0u8]);
        let mut w = std::io::BufWriter::with_capacity(CHUNK, &mut *file);
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        let mut row = Vec::with_capacity(dim);
        let mut le = Vec::with_capacity(dim * 4);
        for i in 0..keys.len() {
            if let Err(e) = fill(i, &mut row) {
                failed = Some(e);
                return Err(std::io::Error::other("a row could not be read"));
            }
            assert_eq!(row.len(), dim, "rows of width {dim}");
            le.clear();
            le.extend(row.iter().flat_map(|v| v.to_le_bytes()));
            h.update(&le);
            w.write_all(&le)?;
        }
        w.flush()?;
        drop(w);
        file.seek(SeekFrom::Start(at))?;
        file.write_all(hex(&h.finalize()).as_bytes())
    });
    match failed {
        Some(e) => Err(e),
        None => written.map(|()| 8 + header.len() as u64),
    }
}

/// The path of a new shard in `dir`.
pub fn new_path(dir: &Path) -> PathBuf {
    dir.join(unique_name())
}
