//! Train a head on a feature matrix you computed yourself, export it as one ONNX file and verify
//! the file against the native model on a second engine.
//!
//! ```sh
//! cargo run --release --example train_head_on_features -- runs/own-features
//! graft verify runs/own-features/model.onnx --data runs/own-features/features.csv
//! ```
//!
//! The folder gets `model.onnx` (input `features` f32 [N, 6], output `probabilities` f32 [N, 3],
//! the standardisation inside the graph), `head.safetensors` (the native weights `graft verify`
//! compares with) and `features.csv` (the matrix, with its label column).

use std::collections::HashMap;
use std::path::PathBuf;

use graft::config::TrainConfig;
use graft::data::{stratified_split, Dataset, Labels};
use graft::export::{self, keys, ModelTask, TABULAR_INPUT};
use graft::nn::{Init, LayerSpec, Sequential, Standardize};
use graft::rng::Rng;
use graft::train::{self, Job, ProgressMode, Session};
use ndarray::Array2;

const FEATURES: usize = 6;

fn main() -> graft::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "runs/own-features".into()));
    std::fs::create_dir_all(&out).map_err(|e| graft::Error::io(&out, e))?;

    // 1. Your features: here three noisy clusters on different scales, one row per example.
    let labels = Labels(vec!["low".into(), "mid".into(), "high".into()]);
    let names: Vec<String> = (0..FEATURES).map(|j| format!("f{j}")).collect();
    let (x, y) = clusters(900, labels.len(), &mut Rng::new(1));
    let data = Dataset { x: x.into_dyn(), y };
    let (train_rows, val_rows) = stratified_split(&data.y, 0.2, &mut Rng::new(2))?;
    let (train_set, val_set) = (data.subset(&train_rows), data.subset(&val_rows));

    // 2. A head: standardisation fitted on the training rows, one hidden layer, the classes.
    let specs = vec![
        Standardize::fit(&train_set.x),
        LayerSpec::Dense { inputs: FEATURES, units: 16, init: Init::He },
        LayerSpec::Relu,
        LayerSpec::Dense { inputs: 16, units: labels.len(), init: Init::Glorot },
    ];
    let mut model = Sequential::new(&specs, &mut Rng::new(3));
    let cfg = TrainConfig { epochs: 40, ..TrainConfig::default() };
    let job = Job {
        train: &train_set,
        val: Some(&val_set),
        cfg: &cfg,
        class_weights: None,
        run: "own-features",
        bucket_by_length: false,
    };
    let mut session = Session::new(None, false, ProgressMode::Quiet);
    let outcome = train::fit(&mut model, &job, Rng::new(4), &mut session)?;
    let native = train::predict(&mut model, &val_set.x, 1024);
    let accuracy = train::metrics::accuracy(native.view(), &val_set.y);
    println!("trained {} epochs: validation accuracy {accuracy:.3}", outcome.history.len());

    // 3. One ONNX file, with the metadata `graft predict` and `graft verify` read.
    let features_json = serde_json::to_string(&names).expect("strings serialise");
    let meta = export::metadata(ModelTask::Tabular, &labels, &[(keys::FEATURES, features_json)]);
    let onnx = export::tabular(&model, TABULAR_INPUT, FEATURES, labels.len(), &meta)?;
    let model_path = out.join("model.onnx");
    graft::onnx::save(&model_path, &onnx)?;
    model.save(&out.join("head.safetensors"), meta.into_iter().collect::<HashMap<_, _>>())?;
    write_csv(&out.join("features.csv"), &names, &data, &labels)?;

    // 4. The file on tract (and ONNX Runtime when it loads) against the native model.
    let verification = graft::verify::tabular(&model_path, &val_set.x, &native)?;
    println!("{}", verification.summary());
    verification.ensure()?;
    println!("wrote {}", model_path.display());
    Ok(())
}

/// `n` rows of `classes` clusters: feature j of class c is centred on `c * (j + 1)` with noise,
/// so the features have different scales.
fn clusters(n: usize, classes: usize, rng: &mut Rng) -> (Array2<f32>, Vec<usize>) {
    let y: Vec<usize> = (0..n).map(|i| i % classes).collect();
    let x = Array2::from_shape_fn((n, FEATURES), |(i, j)| y[i] as f32 * (j + 1) as f32 + rng.normal() * 0.6);
    (x, y)
}

fn write_csv(path: &std::path::Path, names: &[String], data: &Dataset, labels: &Labels) -> graft::Result<()> {
    let mut text = format!("{},label\n", names.join(","));
    for (row, &y) in data.x.outer_iter().zip(&data.y) {
        let values: Vec<String> = row.iter().map(|v| v.to_string()).collect();
        text.push_str(&format!("{},{}\n", values.join(","), labels.0[y]));
    }
    graft::io::write_atomic(path, text.as_bytes())
}
