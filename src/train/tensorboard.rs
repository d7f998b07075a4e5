//! TensorBoard event files for every epoch of every fit: an [`EpochObserver`] that writes, as
//! Keras's TensorBoard callback does, `DIR/<run>/train/` and `DIR/<run>/validation/` event files
//! with the scalars `epoch_loss`, `epoch_accuracy` (both) and `epoch_learning_rate` (train), at
//! step = epoch. `<run>` is the fit's name: `holdout`, `fold-N`, `final`, `fine-tune`.
//!
//! The file format is TensorFlow's record format: each record is its length (u64 little-endian),
//! the masked CRC-32C of those 8 bytes, the data (an `Event` protobuf), and the masked CRC-32C of
//! the data. The first event of a file holds the file version `brain.Event:2`.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use prost::Message;

use super::callbacks::EpochObserver;
use super::EpochRecord;
use crate::{Error, Result};

/// `tensorflow.Event`, the fields graft writes (a `oneof` on the wire: one of the two is set).
#[derive(Clone, PartialEq, Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The epoch (TensorBoard's x axis).
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// `brain.Event:2` in the first event of a file.
    #[prost(string, optional, tag = "3")]
    pub file_version: Option<String>,
    /// The scalars of this step.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, Message)]
pub struct Summary {
    /// One entry per scalar.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value` with a scalar.
#[derive(Clone, PartialEq, Message)]
pub struct SummaryValue {
    /// The scalar's name, e.g. `epoch_loss`.
    #[prost(string, tag = "1")]
    pub tag: String,
    /// Its value.
    #[prost(float, optional, tag = "2")]
    pub simple_value: Option<f32>,
}

const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0x82F6_3B78 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32C (Castagnoli) of `bytes`.
pub fn crc32c(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| CRC32C_TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8))
}

/// The record format's masked CRC-32C.
pub fn masked_crc32c(bytes: &[u8]) -> u32 {
    let c = crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xA282_EAD8)
}

/// One record: length, its masked CRC, `data`, its masked CRC.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(data.len() + 16);
    out.extend(len);
    out.extend(masked_crc32c(&len).to_le_bytes());
    out.extend(data);
    out.extend(masked_crc32c(data).to_le_bytes());
    out
}

/// Seconds since the Unix epoch.
fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// One event file, appended to and flushed after each event (TensorBoard reads files as they grow).
#[derive(Debug)]
struct EventFile {
    path: PathBuf,
    file: File,
}

impl EventFile {
    /// A new event file in `dir` (created if needed), starting with the file-version event.
    fn create(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let wall_time = now();
        let name = format!("events.out.tfevents.{:010}.graft.{}", wall_time as u64, std::process::id());
        let path = dir.join(name);
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let mut f = EventFile { path, file };
        f.write(&Event { wall_time, step: 0, file_version: Some("brain.Event:2".into()), summary: None })?;
        Ok(f)
    }

    fn write(&mut self, event: &Event) -> Result<()> {
        let bytes = record(&event.encode_to_vec());
        self.file.write_all(&bytes).and_then(|()| self.file.flush()).map_err(|e| Error::io(&self.path, e))
    }
}

/// Which side of an epoch a scalar describes (the sub-folder it goes to).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Split {
    Train,
    Validation,
}

/// Writes every epoch's scalars under a log folder (see the module docs).
#[derive(Debug)]
pub struct TensorBoard {
    root: PathBuf,
    files: HashMap<(String, Split), EventFile>,
}

impl TensorBoard {
    /// Logs under `root` (created on the first epoch).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        TensorBoard { root: root.into(), files: HashMap::new() }
    }

    fn scalars(&mut self, run: &str, split: Split, step: usize, values: &[(&str, f32)]) -> Result<()> {
        let key = (run.to_string(), split);
        if !self.files.contains_key(&key) {
            let sub = match split {
                Split::Train => "train",
                Split::Validation => "validation",
            };
            self.files.insert(key.clone(), EventFile::create(&self.root.join(run).join(sub))?);
        }
        let value =
            values.iter().map(|&(tag, v)| SummaryValue { tag: tag.to_string(), simple_value: Some(v) }).collect();
        let event = Event { wall_time: now(), step: step as i64, file_version: None, summary: Some(Summary { value }) };
        self.files.get_mut(&key).expect("inserted above").write(&event)
    }
}

impl EpochObserver for TensorBoard {
    fn epoch_end(&mut self, run: &str, r: &EpochRecord) -> Result<()> {
        let train = [("epoch_loss", r.loss), ("epoch_accuracy", r.accuracy), ("epoch_learning_rate", r.lr)];
        self.scalars(run, Split::Train, r.epoch, &train)?;
        if let (Some(loss), Some(acc)) = (r.val_loss, r.val_accuracy) {
            self.scalars(run, Split::Validation, r.epoch, &[("epoch_loss", loss), ("epoch_accuracy", acc)])?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_values() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA, "RFC 3720 B.4: 32 bytes of zeros");
    }

    #[test]
    fn records_frame_the_data_with_checked_lengths() {
        let data = b"hello";
        let r = record(data);
        assert_eq!(r.len(), 8 + 4 + 5 + 4);
        assert_eq!(u64::from_le_bytes(r[..8].try_into().unwrap()), 5);
        assert_eq!(u32::from_le_bytes(r[8..12].try_into().unwrap()), masked_crc32c(&5u64.to_le_bytes()));
        assert_eq!(&r[12..17], data);
        assert_eq!(u32::from_le_bytes(r[17..].try_into().unwrap()), masked_crc32c(data));
        assert_ne!(masked_crc32c(data), crc32c(data));
    }

    /// Reads back the events of one file (checking every CRC).
    fn read_events(path: &Path) -> Vec<Event> {
        let bytes = std::fs::read(path).unwrap();
        let (mut at, mut out) = (0, Vec::new());
        while at < bytes.len() {
            let len = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            assert_eq!(
                u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()),
                masked_crc32c(&bytes[at..at + 8])
            );
            let data = &bytes[at + 12..at + 12 + len];
            let crc = u32::from_le_bytes(bytes[at + 12 + len..at + 16 + len].try_into().unwrap());
            assert_eq!(crc, masked_crc32c(data));
            out.push(Event::decode(data).unwrap());
            at += 16 + len;
        }
        out
    }

    #[test]
    fn writes_train_and_validation_scalars_per_epoch() {
        let tmp = tempfile::tempdir().unwrap();
        let mut tb = TensorBoard::new(tmp.path());
        for epoch in 1..=3 {
            let r = EpochRecord {
                epoch,
                loss: 1.0 / epoch as f32,
                accuracy: 0.5,
                val_loss: (epoch != 2).then_some(0.7),
                val_accuracy: (epoch != 2).then_some(0.6),
                lr: 0.01,
                seconds: 0.0,
            };
            tb.epoch_end("holdout", &r).unwrap();
        }
        let only = |dir: &str| {
            let files: Vec<_> = std::fs::read_dir(tmp.path().join(dir)).unwrap().flatten().collect();
            assert_eq!(files.len(), 1);
            assert!(files[0].file_name().to_string_lossy().starts_with("events.out.tfevents."));
            read_events(&files[0].path())
        };
        let train = only("holdout/train");
        assert_eq!(train[0].file_version.as_deref(), Some("brain.Event:2"));
        assert_eq!(train.len(), 4);
        assert_eq!(train[3].step, 3);
        let values = &train[3].summary.as_ref().unwrap().value;
        let tags: Vec<_> = values.iter().map(|v| (v.tag.as_str(), v.simple_value.unwrap())).collect();
        assert_eq!(tags, [("epoch_loss", 1.0 / 3.0), ("epoch_accuracy", 0.5), ("epoch_learning_rate", 0.01)]);
        let val = only("holdout/validation");
        assert_eq!(val.iter().skip(1).map(|e| e.step).collect::<Vec<_>>(), [1, 3], "epoch 2 had no validation");
    }
}
