//! Throughput of a model on random inputs, for `graft bench` and the GPU check.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use ndarray::ArrayD;

use super::{open, EngineOptions, Value};
use crate::rng::Rng;
use crate::{Error, Result};

/// One measurement.
#[derive(Clone, Debug)]
pub struct Throughput {
    /// The engine (`ort`, `tract`).
    pub engine: String,
    /// Where it ran (`cpu`, `cuda:0`).
    pub device: String,
    /// Items per run.
    pub batch: usize,
    /// Timed runs.
    pub iters: usize,
    /// Seconds of the timed runs.
    pub seconds: f64,
}

impl Throughput {
    /// Items (images, rows) per second.
    pub fn items_per_second(&self) -> f64 {
        (self.batch * self.iters) as f64 / self.seconds
    }
}

impl fmt::Display for Throughput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {}: batch {}, {:.1} items/s ({:.2} ms per batch, {} runs)",
            self.engine,
            self.device,
            self.batch,
            self.items_per_second(),
            self.seconds * 1e3 / self.iters as f64,
            self.iters
        )
    }
}

/// Runs `path` `warmup + iters` times on random inputs of batch `batch` and times the last `iters`.
pub fn throughput(path: &Path, opts: &EngineOptions, batch: usize, warmup: usize, iters: usize) -> Result<Throughput> {
    let mut engine = open(path, opts)?;
    let mut rng = Rng::new(0);
    let mut inputs = Vec::new();
    for info in engine.inputs() {
        let shape: Vec<usize> = info.shape.iter().map(|d| d.unwrap_or(batch)).collect();
        let n: usize = shape.iter().product();
        let value = match info.dtype.as_str() {
            "f32" | "float32" => {
                Value::F32(ArrayD::from_shape_vec(shape, (0..n).map(|_| rng.normal()).collect()).expect("n"))
            }
            "i64" | "int64" => {
                Value::I64(ArrayD::from_shape_vec(shape, (0..n).map(|_| rng.below(100) as i64).collect()).expect("n"))
            }
            "u8" | "uint8" => {
                Value::U8(ArrayD::from_shape_vec(shape, (0..n).map(|_| rng.below(256) as u8).collect()).expect("n"))
            }
            other => {
                return Err(Error::Tensor { name: info.name.clone(), msg: format!("cannot make random {other} input") })
            }
        };
        inputs.push((info.name.clone(), value));
    }
    for _ in 0..warmup {
        engine.run(inputs.clone())?;
    }
    // Only the engine's runs are timed, not the copies of the inputs that each run takes.
    let mut seconds = 0.0;
    for _ in 0..iters.max(1) {
        let feed = inputs.clone();
        let started = Instant::now();
        engine.run(feed)?;
        seconds += started.elapsed().as_secs_f64();
    }
    Ok(Throughput { engine: engine.name().to_string(), device: engine.device(), batch, iters: iters.max(1), seconds })
}
