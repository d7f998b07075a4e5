//! [`Model`]: an exported model loaded once, then asked for predictions many times.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ndarray::{Array2, ArrayD, ArrayView2, Ix2};

use super::inputs::{a, accepts, check_inputs};
use super::{text_encoder, text_inputs, to_predictions, Prediction};
use crate::backend::{Backend, Dtype, EngineOptions, Value};
use crate::data::{read_csv, CsvOptions, TextOptions};
use crate::export::{ModelMeta, ModelTask, TextMeta, IMAGE_INPUT, OUTPUT, TABULAR_INPUT};
use crate::preprocess::{Skip, TextEncoder};
use crate::{Error, Result};

/// Items per engine run unless [`Model::with_batch_size`] says otherwise.
pub const DEFAULT_BATCH: usize = 32;

/// An exported graft model (`model.onnx` of a run folder), loaded once: its metadata (task,
/// labels, preprocessing) read into typed values, an inference engine opened on the graph, and a
/// text model's tokenizer (`tokenizer.json` beside the file, checked against its sha256).
///
/// `Model` is `Send + Sync`: share one behind an [`std::sync::Arc`] between threads. Inputs are
/// prepared (decoded, resized, tokenised) on the calling thread; the engine runs one batch at a
/// time (calls from several threads queue on an internal lock). Load one `Model` per thread
/// instead when the engine itself should run in parallel.
pub struct Model {
    path: PathBuf,
    meta: ModelMeta,
    engine: Mutex<Box<dyn Backend>>,
    engine_name: &'static str,
    device: String,
    /// A text model's tokenizer, read at load, or on first use after [`Model::load_for`].
    text: OnceLock<(TextEncoder, TextMeta)>,
    batch: usize,
}

/// What [`Model::predict`] is asked: input files and texts, as `graft predict` takes them.
#[derive(Clone, Debug)]
pub struct Request {
    /// A CSV (tabular and text models), or image files and folders of images (image models).
    pub paths: Vec<PathBuf>,
    /// Texts to classify (text models), predicted after the CSV's rows.
    pub texts: Vec<String>,
    /// The CSV's text column (text models).
    pub text_column: String,
}

impl Default for Request {
    fn default() -> Self {
        Request { paths: Vec::new(), texts: Vec::new(), text_column: "text".into() }
    }
}

/// Predictions, and the inputs that could not be used (unreadable images) with the reason.
#[derive(Clone, Debug, Default)]
pub struct Predicted {
    /// One per usable input, in input order.
    pub predictions: Vec<Prediction>,
    /// Inputs skipped, with why.
    pub skipped: Vec<Skip>,
}

impl Predicted {
    /// An error when nothing was predicted (every image skipped, or no rows), saying why.
    pub fn ensure_any(&self) -> Result<()> {
        if !self.predictions.is_empty() {
            return Ok(());
        }
        Err(Error::Invalid(format!(
            "nothing was predicted: {}",
            if self.skipped.is_empty() {
                "the inputs hold no rows or images".to_string()
            } else {
                format!("all {} images were skipped", self.skipped.len())
            }
        )))
    }
}

fn probabilities(proba: ArrayD<f32>) -> Result<Array2<f32>> {
    proba.into_dimensionality::<Ix2>().map_err(|e| Error::Tensor { name: OUTPUT.into(), msg: e.to_string() })
}

impl Model {
    /// Loads the model at `path` on the default engine (ONNX Runtime when it can be loaded, else
    /// tract, with a `log` warning; CUDA when usable, else the CPU).
    pub fn load(path: impl AsRef<Path>) -> Result<Model> {
        Model::load_with(path, &EngineOptions::default())
    }

    /// Loads the model at `path` on the engine `opts` asks for.
    pub fn load_with(path: impl AsRef<Path>, opts: &EngineOptions) -> Result<Model> {
        let path = path.as_ref().to_path_buf();
        let meta = ModelMeta::read(&path)?;
        let model = Model::open(path, meta, opts)?;
        if model.meta.task == ModelTask::Text {
            model.text()?;
        }
        Ok(model)
    }

    /// Loads the model at `path` for `request`, refusing inputs it cannot take (naming its task and
    /// what it takes) before the engine is loaded; a text model's tokenizer is read when the first
    /// texts are, so that an unreadable input is reported before a missing tokenizer.
    pub fn load_for(path: impl AsRef<Path>, opts: &EngineOptions, request: &Request) -> Result<Model> {
        let path = path.as_ref().to_path_buf();
        let meta = ModelMeta::read(&path)?;
        check_inputs(&path, meta.task, &request.paths, request.texts.len())?;
        Model::open(path, meta, opts)
    }

    fn open(path: PathBuf, meta: ModelMeta, opts: &EngineOptions) -> Result<Model> {
        let engine = crate::backend::open(&path, opts)?;
        let (engine_name, device) = (engine.name(), engine.device());
        let text = OnceLock::new();
        Ok(Model { path, meta, engine: Mutex::new(engine), engine_name, device, text, batch: DEFAULT_BATCH })
    }

    /// The tokenizer and text settings of a text model, read once.
    fn text(&self) -> Result<&(TextEncoder, TextMeta)> {
        if let Some(t) = self.text.get() {
            return Ok(t);
        }
        let loaded = text_encoder(&self.path, &self.meta)?;
        Ok(self.text.get_or_init(|| loaded))
    }

    /// Runs at most `n` items (images, texts, rows) per engine run (default 32).
    pub fn with_batch_size(mut self, n: usize) -> Self {
        self.batch = n.max(1);
        self
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the model predicts on.
    pub fn task(&self) -> ModelTask {
        self.meta.task
    }

    /// The class names, in the order of [`Prediction::probabilities`].
    pub fn labels(&self) -> &[String] {
        &self.meta.labels.0
    }

    /// Everything its metadata says.
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// The engine running it (`ort`, `tract`) and where (`cpu`, `cuda:0`).
    pub fn engine(&self) -> (&'static str, &str) {
        (self.engine_name, &self.device)
    }

    fn refuse(&self, what: &str) -> Error {
        Error::Invalid(format!(
            "{} is {} model: it predicts {}, not {what}",
            self.path.display(),
            a(self.meta.task),
            accepts(self.meta.task)
        ))
    }

    fn run(&self, inputs: Vec<(String, Value)>) -> Result<Array2<f32>> {
        let mut engine = self.engine.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        probabilities(engine.run_output(inputs, OUTPUT)?)
    }

    /// Predicts rows of raw (unstandardised) features with a tabular model; ids are `1`, `2`, ...
    ///
    /// # Shapes
    /// `rows` `[N, F]` with F the model's feature count ([`ModelMeta::features`]).
    pub fn predict_rows(&self, rows: ArrayView2<f32>) -> Result<Vec<Prediction>> {
        if self.meta.task != ModelTask::Tabular {
            return Err(self.refuse("rows of features"));
        }
        let want = self.meta.features.as_ref().map_or(0, Vec::len);
        if rows.ncols() != want {
            return Err(Error::Tensor {
                name: TABULAR_INPUT.into(),
                msg: format!("has {} columns; {} takes {want} features", rows.ncols(), self.path.display()),
            });
        }
        let mut out = Vec::with_capacity(rows.nrows());
        for start in (0..rows.nrows()).step_by(self.batch) {
            let chunk = rows.slice(ndarray::s![start..(start + self.batch).min(rows.nrows()), ..]);
            let proba = self.run(vec![(TABULAR_INPUT.into(), Value::F32(chunk.to_owned().into_dyn()))])?;
            let ids = (start + 1..=start + chunk.nrows()).map(|i| i.to_string()).collect();
            out.extend(to_predictions(proba.view(), ids, &self.meta));
        }
        Ok(out)
    }

    /// Predicts every row of the CSV at `csv` with a tabular model: the columns the model was
    /// trained on are read by name (others, such as the label, are ignored); ids are `1`, `2`, ...
    pub fn predict_csv(&self, csv: &Path) -> Result<Vec<Prediction>> {
        if self.meta.task != ModelTask::Tabular {
            return Err(self.refuse(&format!("{} (a CSV of features)", csv.display())));
        }
        let features = self
            .meta
            .features
            .clone()
            .ok_or_else(|| Error::onnx(self.path.display().to_string(), "metadata `graft.features` is missing"))?;
        let table = read_csv(csv, &CsvOptions { features: Some(features), ..Default::default() })?;
        let x = table.x.into_dimensionality::<Ix2>().map_err(|e| Error::data(csv, None, e.to_string()))?;
        self.predict_rows(x.view())
    }

    /// Predicts image files with an image model, preprocessed as its `graft.preprocess` says
    /// (decoded in parallel); unreadable images are returned as skips, ids are the paths.
    pub fn predict_images(&self, paths: &[PathBuf]) -> Result<Predicted> {
        use rayon::prelude::*;
        let pre = match (&self.meta.task, &self.meta.preprocess) {
            (ModelTask::Image, Some(pre)) => pre,
            _ => return Err(self.refuse("images")),
        };
        let mut result = Predicted::default();
        for chunk in paths.chunks(self.batch) {
            let loaded: Vec<_> = chunk.par_iter().map(|p| (p, pre.load(p))).collect();
            let (mut ids, mut images) = (Vec::new(), Vec::new());
            for (p, r) in loaded {
                match r {
                    Ok(img) => {
                        ids.push(p.display().to_string());
                        images.push(img);
                    }
                    Err(s) => result.skipped.push(s),
                }
            }
            if images.is_empty() {
                continue;
            }
            let input = match pre.dtype {
                Dtype::U8 => Value::U8(pre.tensor_u8(&images).into_dyn()),
                _ => Value::F32(pre.tensor(&images).into_dyn()),
            };
            let proba = self.run(vec![(IMAGE_INPUT.into(), input)])?;
            result.predictions.extend(to_predictions(proba.view(), ids, &self.meta));
        }
        Ok(result)
    }

    /// Predicts texts with a text model; ids are `text 1`, `text 2`, ...
    pub fn predict_texts<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Prediction>> {
        let ids = (1..=texts.len()).map(|i| format!("text {i}")).collect();
        self.predict_texts_as(texts, ids)
    }

    /// Predicts the `column` texts of the CSV at `csv` with a text model; ids are `line N`.
    pub fn predict_text_csv(&self, csv: &Path, column: &str) -> Result<Vec<Prediction>> {
        if self.meta.task != ModelTask::Text {
            return Err(self.refuse(&format!("{} (a CSV of texts)", csv.display())));
        }
        let opts = TextOptions { text: column.to_string(), label: None, skip_bad_rows: false };
        let table = crate::data::read_text_csv(csv, &opts)?;
        let ids = table.lines.iter().map(|l| format!("line {l}")).collect();
        self.predict_texts_as(&table.texts, ids)
    }

    fn predict_texts_as<S: AsRef<str>>(&self, texts: &[S], ids: Vec<String>) -> Result<Vec<Prediction>> {
        if self.meta.task != ModelTask::Text {
            return Err(self.refuse("texts"));
        }
        let (encoder, text) = self.text()?;
        let mut out = Vec::with_capacity(texts.len());
        for (chunk, chunk_ids) in texts.chunks(self.batch).zip(ids.chunks(self.batch)) {
            let refs: Vec<&str> = chunk.iter().map(AsRef::as_ref).collect();
            let proba = self.run(text_inputs(encoder, text, &refs)?)?;
            out.extend(to_predictions(proba.view(), chunk_ids.to_vec(), &self.meta));
        }
        Ok(out)
    }

    /// Predicts what `graft predict` is given, by the model's task: a CSV of features (tabular);
    /// image files and folders of images (image); a CSV's text column, then `texts` (text).
    /// Inputs the model cannot take are refused before anything runs, naming its task.
    pub fn predict(&self, request: &Request) -> Result<Predicted> {
        let task = self.meta.task;
        check_inputs(&self.path, task, &request.paths, request.texts.len())?;
        let not_read = |p: &Path| {
            format!(
                "{} is {} model: it predicts {}; {} could not be read as such",
                self.path.display(),
                a(task),
                accepts(task),
                p.display()
            )
        };
        match task {
            ModelTask::Tabular => {
                let csv = &request.paths[0];
                let predictions = self.predict_csv(csv).map_err(|e| e.context(not_read(csv)))?;
                Ok(Predicted { predictions, skipped: Vec::new() })
            }
            ModelTask::Image => self.predict_images(&crate::data::collect_images(&request.paths)?),
            ModelTask::Text => {
                let mut predictions = match request.paths.first() {
                    Some(csv) => {
                        self.predict_text_csv(csv, &request.text_column).map_err(|e| e.context(not_read(csv)))?
                    }
                    None => Vec::new(),
                };
                predictions.extend(self.predict_texts(&request.texts)?);
                Ok(Predicted { predictions, skipped: Vec::new() })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Model>();
    }

    #[test]
    fn loads_once_and_predicts_rows_csv_and_refuses_other_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.onnx");
        super::super::doc_model(&path).unwrap();
        let model = Model::load_with(
            &path,
            &EngineOptions { backend: crate::backend::BackendKind::Tract, ..Default::default() },
        )
        .unwrap()
        .with_batch_size(2);
        assert_eq!(model.task(), ModelTask::Tabular);
        assert_eq!(model.labels(), ["no", "yes"]);
        let rows = ndarray::array![[0.0f32, 1.0], [5.0, -3.0], [-2.0, 2.0]];
        let p = model.predict_rows(rows.view()).unwrap();
        assert_eq!(p.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["1", "2", "3"], "ids across batches");
        for p in &p {
            let sum: f32 = p.probabilities.iter().map(|(_, q)| q).sum();
            assert!((sum - 1.0).abs() < 1e-5 && p.label == model.labels()[p.class]);
        }
        let csv = dir.path().join("rows.csv");
        std::fs::write(&csv, "b,a,label\n1,0,x\n-3,5,y\n2,-2,z\n").unwrap();
        assert_eq!(model.predict_csv(&csv).unwrap(), p, "columns read by name, in any order");
        let err = model.predict_rows(ndarray::Array2::zeros((1, 3)).view()).unwrap_err().to_string();
        assert!(err.contains("3 columns") && err.contains("takes 2 features"), "{err}");
        let err = model.predict_texts(&["hello"]).unwrap_err().to_string();
        assert!(err.contains("is a tabular model") && err.contains("not texts"), "{err}");
        let err = model.predict_images(&[PathBuf::from("a.jpg")]).unwrap_err().to_string();
        assert!(err.contains("not images"), "{err}");
        let bad = dir.path().join("bad.csv");
        std::fs::write(&bad, "a,b\n1,oops\n").unwrap();
        let err = model.predict(&Request { paths: vec![bad], ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("could not be read as such"), "{err}");
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains("bad.csv:2"), "the cause names the file and line: {cause}");
    }

    #[test]
    fn nothing_predicted_is_an_error_saying_why() {
        assert!(Predicted::default().ensure_any().unwrap_err().to_string().contains("hold no rows or images"));
        let skipped = vec![Skip { path: "a.jpg".into(), reason: "empty".into() }; 2];
        let err = Predicted { predictions: vec![], skipped }.ensure_any().unwrap_err().to_string();
        assert!(err.contains("nothing was predicted: all 2 images were skipped"), "{err}");
    }
}
