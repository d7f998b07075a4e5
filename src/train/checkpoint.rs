//! Per-run checkpoints: one safetensors file holding the model, the best weights so far, the
//! optimizer's moments and (as metadata) the loop's JSON state, written atomically every epoch.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ndarray::ArrayD;
use serde::{Deserialize, Serialize};

use super::callbacks::{EarlyStopping, Plateau};
use super::EpochRecord;
use crate::nn::optim::OptimizerState;
use crate::nn::sequential::{load_tensors, save_tensors};
use crate::rng::Rng;
use crate::{Error, Result};

/// The loop's scalar state after a completed epoch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoopState {
    pub epoch: usize,
    pub history: Vec<EpochRecord>,
    pub early: EarlyStopping,
    pub plateau: Plateau,
    pub rng: Rng,
    pub optimizer: OptimizerState,
    pub seconds: f64,
    /// The run finished; the `model.*` tensors are the final weights.
    pub done: bool,
    pub stopped_early: bool,
}

/// A checkpoint read back: state plus tensors grouped by prefix.
pub struct Checkpoint {
    pub state: LoopState,
    pub model: HashMap<String, ArrayD<f32>>,
    pub best: HashMap<String, ArrayD<f32>>,
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
