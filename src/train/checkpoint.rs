//! Per-run checkpoints: one safetensors file holding the model, the best weights so far, the
//! optimizer's moments and (as metadata) the loop's JSON state, written atomically every epoch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::callbacks::{EarlyStopping, Plateau};
use super::EpochRecord;
use crate::data::Dataset;
use crate::nn::optim::OptimizerState;
use crate::nn::sequential::{load_tensors, save_tensors};
use crate::rng::Rng;
use crate::{Error, Result};

/// The loop's scalar state after a completed epoch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoopState {
    /// Epochs completed.
    pub epoch: usize,
    /// Their records.
    pub history: Vec<EpochRecord>,
    /// Early stopping's state.
    pub early: EarlyStopping,
    /// Plateau reduction's state.
    pub plateau: Plateau,
    /// The random stream, where it stood.
    pub rng: Rng,
    /// The optimizer's scalars.
    pub optimizer: OptimizerState,
    /// Seconds in the loop so far.
    pub seconds: f64,
    /// The run finished; the `model.*` tensors are the final weights.
    pub done: bool,
    /// Early stopping ended the run.
    pub stopped_early: bool,
    /// What the loop trains on (absent in checkpoints written before graft recorded it).
    #[serde(default)]
    pub data: Option<DataPrint>,
}

/// A fingerprint of the examples one run trains and validates on, so that `--resume` refuses
/// checkpoints made from other data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataPrint {
    /// Training rows.
    pub rows: usize,
    /// sha256 of the training inputs' shape and f32 bytes.
    pub features: String,
    /// sha256 of the training labels.
    pub labels: String,
    /// sha256 of the validation inputs and labels, when there are any.
    pub validation: Option<String>,
}

impl DataPrint {
    /// The fingerprint of `train` and `val`.
    pub fn of(train: &Dataset, val: Option<&Dataset>) -> Self {
        let features = |d: &Dataset| {
            let mut h = Sha256::new();
            d.x.shape().iter().for_each(|&n| h.update((n as u64).to_le_bytes()));
            hash_chunked(&mut h, d.x.iter().map(|v| v.to_le_bytes()));
            h
        };
        let labels = |d: &Dataset, mut h: Sha256| {
            hash_chunked(&mut h, d.y.iter().map(|&c| (c as u64).to_le_bytes()));
            hex(h)
        };
        DataPrint {
            rows: train.len(),
            features: hex(features(train)),
            labels: labels(train, Sha256::new()),
            validation: val.map(|v| labels(v, features(v))),
        }
    }

    /// Why data printed as `self` cannot continue a run that trained on data printed as `saved`
    /// (`None` when it can).
    pub fn differs_from(&self, saved: &DataPrint) -> Option<String> {
        if self.rows != saved.rows {
            Some(format!("{} training rows now, {} when it was written", self.rows, saved.rows))
        } else if self.labels != saved.labels {
            Some("the training labels changed".into())
        } else if self.features != saved.features {
            Some("the training inputs changed".into())
        } else if self.validation != saved.validation {
            Some("the validation rows changed".into())
        } else {
            None
        }
    }
}

/// Feeds `items` to `h` through a buffer (one `update` per item is several times slower).
fn hash_chunked<const N: usize>(h: &mut Sha256, items: impl Iterator<Item = [u8; N]>) {
    let mut buf = Vec::with_capacity(1 << 16);
    for item in items {
        buf.extend_from_slice(&item);
        if buf.len() >= 1 << 16 {
            h.update(&buf);
            buf.clear();
        }
    }
    h.update(&buf);
}

fn hex(h: Sha256) -> String {
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A checkpoint read back: state plus tensors grouped by prefix.
pub struct Checkpoint {
    /// The loop's scalars.
    pub state: LoopState,
    /// The model's weights.
    pub model: HashMap<String, ArrayD<f32>>,
    /// The best epoch's weights (early stopping).
    pub best: HashMap<String, ArrayD<f32>>,
    /// The optimizer's moments.
    pub optimizer: HashMap<String, ArrayD<f32>>,
}

/// The checkpoint file of run `run` under `dir`.
pub fn path(dir: &Path, run: &str) -> PathBuf {
    dir.join(format!("{run}.safetensors"))
}

/// Writes a checkpoint atomically.
pub fn save(
    file: &Path,
    state: &LoopState,
    model: Vec<(String, ArrayD<f32>)>,
    best: &[(String, ArrayD<f32>)],
    optimizer: Vec<(String, ArrayD<f32>)>,
) -> Result<()> {
    let mut tensors: Vec<(String, ArrayD<f32>)> = model.into_iter().map(|(n, a)| (format!("model.{n}"), a)).collect();
    tensors.extend(best.iter().map(|(n, a)| (format!("best.{n}"), a.clone())));
    tensors.extend(optimizer.into_iter().map(|(n, a)| (format!("opt.{n}"), a)));
    let json = serde_json::to_string(state).expect("loop state serialises");
    save_tensors(file, &tensors, HashMap::from([("graft.loop_state".to_string(), json)]))
}

/// Reads a checkpoint, or `None` when there is none.
pub fn load(file: &Path) -> Result<Option<Checkpoint>> {
    if !file.exists() {
        return Ok(None);
    }
    let (tensors, meta) = load_tensors(file)?;
    let json = meta.get("graft.loop_state").ok_or_else(|| Error::data(file, None, "not a graft checkpoint"))?;
    let state: LoopState =
        serde_json::from_str(json).map_err(|e| Error::data(file, None, format!("checkpoint state: {e}")))?;
    let mut ck = Checkpoint { state, model: HashMap::new(), best: HashMap::new(), optimizer: HashMap::new() };
    for (name, a) in tensors {
        if let Some(n) = name.strip_prefix("model.") {
            ck.model.insert(n.to_string(), a);
        } else if let Some(n) = name.strip_prefix("best.") {
            ck.best.insert(n.to_string(), a);
        } else if let Some(n) = name.strip_prefix("opt.") {
            ck.optimizer.insert(n.to_string(), a);
        }
    }
    Ok(Some(ck))
}
