//! What the pipelines share beyond the head trainer (`head.rs`): the dense head's layers, engine
//! options, the most-confidently-wrong list, and the image route's embedding, export and
//! verification (used by the frozen and the fine-tuned image pipelines).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::head::HeadRun;
use super::report::{ImageSummary, Mistake, Phase};
use crate::backend::{EngineOptions, OrtOptions, Value};
use crate::config::{BackboneConfig, PipelineConfig, TrainConfig, Unfreeze, ValidationMethod};
use crate::data::stratified_split;
use crate::data::{CsvOptions, Dataset, ImageFolder, Labels};
use crate::export::{self, keys, IMAGE_INPUT};
use crate::features::{embed_images, Backbone, Embedded, FeatureCache};
use crate::nn::optim::LrGroup;
use crate::nn::Sequential;
use crate::nn::{Init, LayerSpec};
use crate::nn::{OptimizerConfig, OptimizerKind};
use crate::onnx::pb;
use crate::preprocess::ImagePreprocess;
use crate::rng::Rng;
use crate::train::Session;
use crate::train::{plot, EpochRecord, FitOutcome};
use crate::verify::{self, Verification};
use crate::{io, Error, Result};

/// Validation images verified on both engines (tract runs the whole backbone, so this is bounded).
pub const VERIFY_IMAGES: usize = 16;

/// How a tabular pipeline reads its CSV: its label, feature and excluded columns, and whether bad
/// rows are skipped.
pub fn csv_options(cfg: &PipelineConfig) -> CsvOptions {
    CsvOptions {
        label: cfg.data.label.clone(),
        features: cfg.data.features.clone(),
        exclude: cfg.data.exclude.clone(),
        skip_bad_rows: cfg.data.skip_bad_rows,
    }
}

/// Engine options from a pipeline's backbone section.
pub fn engine_options(b: &BackboneConfig) -> Result<EngineOptions> {
    Ok(EngineOptions {
        backend: b.backend,
        ort: OrtOptions { device: b.device, threads: b.threads, ..Default::default() },
    })
}

/// Dense layers of `cfg.model` from `inputs` features to `classes` logits, with dropout before each.
pub fn dense_stack(cfg: &PipelineConfig, inputs: usize, classes: usize) -> Vec<LayerSpec> {
    let mut specs = Vec::new();
    let mut width = inputs;
    for &units in &cfg.model.hidden {
        if cfg.model.dropout > 0.0 {
            specs.push(LayerSpec::Dropout { rate: cfg.model.dropout });
        }
        specs.push(LayerSpec::Dense { inputs: width, units, init: Init::He });
        specs.push(LayerSpec::Relu);
        width = units;
    }
    if cfg.model.dropout > 0.0 {
        specs.push(LayerSpec::Dropout { rate: cfg.model.dropout });
    }
    specs.push(LayerSpec::Dense { inputs: width, units: classes, init: Init::Glorot });
    specs
}

/// Scans the image folder `cfg.data.path` and embeds every image with `backbone` through `cache`
/// (skipped files and cache warnings go to the log); a class left with no readable image is an
/// error. Returns the folder, its image paths (index = item) and the embedding.
pub fn embed_folder(
    cfg: &PipelineConfig,
    bcfg: &BackboneConfig,
    backbone: &Backbone,
    cache: &mut FeatureCache,
    session: &Session,
) -> Result<(ImageFolder, Vec<PathBuf>, Embedded)> {
    let folder = ImageFolder::scan(&cfg.data.path)?;
    let paths: Vec<PathBuf> = folder.items.iter().map(|(p, _)| p.clone()).collect();
    let emb = embed_images(backbone, &engine_options(bcfg)?, &paths, cache, bcfg.batch_size, session.progress)?;
    for s in &emb.skipped {
        log::warn!("skipped {}: {}", s.path, s.reason);
    }
    for w in &emb.warnings {
        log::warn!("{w}");
    }
    folder.check_kept(&emb.rows, &emb.skipped)?;
    Ok((folder, paths, emb))
}

/// The evaluated images that verification runs (at most [`VERIFY_IMAGES`]), decoded as `pre` says;
/// `paths[emb.rows[r]]` is the file of data row `r`.
pub fn verification_images(
    run: &HeadRun,
    paths: &[PathBuf],
    emb: &Embedded,
    pre: &ImagePreprocess,
) -> Result<Vec<image::RgbImage>> {
    let check: Vec<PathBuf> = run.eval_rows.iter().take(VERIFY_IMAGES).map(|&r| paths[emb.rows[r]].clone()).collect();
    load_images(pre, &check)
}

/// What an image run reports about its images: counts, skips, and its most confident mistakes.
pub fn image_summary(
    run: &HeadRun,
    data: &Dataset,
    labels: &Labels,
    paths: &[PathBuf],
    emb: &Embedded,
    backbone: &Backbone,
    pre: ImagePreprocess,
) -> ImageSummary {
    ImageSummary {
        backbone: backbone.info(),
        preprocess: pre,
        found: paths.len(),
        embedded: emb.rows.len(),
        embedded_now: emb.computed,
        embed_seconds: emb.seconds,
        skipped: emb.skipped.clone(),
        most_confidently_wrong: mistakes(run, data, labels, |r| paths[emb.rows[r]].display().to_string()),
    }
}

/// Decodes and resizes `paths` as `pre` says (a file that fails is an error naming it).
pub(super) fn load_images(pre: &ImagePreprocess, paths: &[std::path::PathBuf]) -> Result<Vec<image::RgbImage>> {
    paths.iter().map(|p| pre.load(p).map_err(|s| Error::Invalid(format!("{}: {}", s.path, s.reason)))).collect()
}

/// Exports `model` (a head, or a fine-tuned tail and head) after `backbone`'s cut graph into `out`
/// as `model.onnx` (and `model-u8.onnx` with `export.with_preprocessing`), saves its weights as
/// `head.safetensors`, and verifies the exports on `images` against `native`, the model's own
/// probabilities for them. Returns the verification and the files written.
pub(super) fn export_verified(
    cfg: &PipelineConfig,
    out: &Path,
    backbone: &Backbone,
    labels: &Labels,
    model: &mut crate::nn::Sequential,
    images: &[image::RgbImage],
    native: &ndarray::Array2<f32>,
) -> Result<(Verification, Vec<String>)> {
    let pre = backbone.preprocess.clone().ok_or_else(|| Error::config("backbone", "not an image backbone"))?;
    let classes = labels.len();
    let info = backbone.info();
    let meta = export::metadata(
        export::ModelTask::Image,
        labels,
        &[(keys::PREPROCESS, pre.to_json()), (keys::BACKBONE, serde_json::to_string(&info).expect("serialises"))],
    );
    let cut = crate::onnx::load(&backbone.path)?;
    let model_path = out.join("model.onnx");
    let onnx = export::image_model(&cut, &backbone.input, model, classes, &pre, false, &meta)?;
    crate::onnx::save(&model_path, &onnx)?;
    model.save(&out.join("head.safetensors"), meta.iter().cloned().collect::<HashMap<_, _>>())?;
    let mut outputs = vec!["model.onnx".to_string(), "head.safetensors".to_string()];
    let mut verification = verify_images(&model_path, &pre, images, native, false)?;
    if cfg.export.with_preprocessing {
        let u8_path = out.join("model-u8.onnx");
        let pre_u8 = ImagePreprocess {
            dtype: crate::backend::Dtype::U8,
            layout: crate::config::manifest::Layout::Nhwc,
            ..pre.clone()
        };
        let meta_u8: Vec<(String, String)> = meta
            .iter()
            .map(|(k, v)| if k == keys::PREPROCESS { (k.clone(), pre_u8.to_json()) } else { (k.clone(), v.clone()) })
            .collect();
        let onnx = export::image_model(&cut, &backbone.input, model, classes, &pre, true, &meta_u8)?;
        crate::onnx::save(&u8_path, &onnx)?;
        let v = verify_images(&u8_path, &pre_u8, images, native, true)?;
        verification.engines.extend(v.engines.into_iter().map(|mut e| {
            e.engine = format!("{} (u8 input)", e.engine);
            e
        }));
        verification.passed &= v.passed;
        outputs.push("model-u8.onnx".into());
    }
    Ok((verification, outputs))
}

/// Runs the exported image model at `model` on `paths` (preprocessed as `pre` says) on every
/// verification engine and compares with `native`.
fn verify_images(
    model: &Path,
    pre: &ImagePreprocess,
    images: &[image::RgbImage],
    native: &ndarray::Array2<f32>,
    u8_input: bool,
) -> Result<Verification> {
    let input =
        if u8_input { Value::U8(pre.tensor_u8(images).into_dyn()) } else { Value::F32(pre.tensor(images).into_dyn()) };
    verify::against(native, model, &[(IMAGE_INPUT.to_string(), input)])
}

/// The evaluated examples predicted wrongly with the highest confidence (at most 10).
pub fn mistakes(run: &HeadRun, data: &Dataset, labels: &Labels, id: impl Fn(usize) -> String) -> Vec<Mistake> {
    super::mistakes::ranked(run, data)
        .into_iter()
        .take(10)
        .map(|w| Mistake {
            id: id(w.row),
            label: labels.0[data.y[w.row]].clone(),
            predicted: labels.0[w.predicted].clone(),
            probability: w.probability,
        })
        .collect()
}

/// The tensor where the tail starts: boundary `backbone.unfreeze` of `model` before `end` (the
/// backbone's cut tensor), or `backbone.unfreeze_from`. `what` names the backbone in errors.
///
/// Errors (on `backbone.unfreeze` / `backbone.unfreeze_from`): the tensor does not exist, it is
/// `end` itself or comes after it (no tail left), or what follows it cannot be trained.
pub fn unfreeze_tensor(
    model: &pb::ModelProto,
    unfreeze: Unfreeze,
    from: Option<&str>,
    end: &str,
    what: &str,
) -> Result<String> {
    let Some(t) = from else {
        return Ok(crate::graph::unfreeze_point(model, Some(end), unfreeze, what)?.tensor);
    };
    let bad = |m: String| Err(Error::config("backbone.unfreeze_from", m));
    let nodes = model.graph.as_ref().map_or(&[][..], |g| &g.node[..]);
    let made = |x: &str| nodes.iter().position(|n| n.output.iter().any(|o| o == x));
    match (made(t), made(end)) {
        (None, _) => bad(format!("{what} has no tensor `{t}` (`graft inspect` lists the block boundaries)")),
        (Some(i), Some(e)) if i >= e => {
            bad(format!("`{t}` is at or after `{end}`, where {what} is cut: no tail is left to fine-tune"))
        }
        _ => crate::graph::Tail::new(model, t, Some(end))
            .map(|_| t.to_string())
            .or_else(|e| bad(format!("what follows `{t}` in {what} cannot be trained: {e}"))),
    }
}

/// `backbone` cut at `tensor` (the frozen front), its graph cached in `cache_root/backbones/`;
/// its inputs are those the cut graph still reads.
pub fn front(backbone: &Backbone, model: &pb::ModelProto, tensor: &str, cache_root: &Path) -> Result<Backbone> {
    let file = cache_root.join("backbones").join(format!(
        "{}-{}.onnx",
        &backbone.sha256[..16],
        &io::sha256_hex(tensor.as_bytes())[..8]
    ));
    let cut = crate::onnx::cut::cut(model, tensor, &backbone.source)?;
    if !file.exists() {
        crate::onnx::save(&file, &cut)?;
    }
    // A front cut early (e.g. at the embeddings) reads fewer inputs: no attention mask.
    let kept: Vec<&str> = cut.graph.iter().flat_map(|g| g.input.iter().map(|i| i.name.as_str())).collect();
    let inputs = backbone.inputs.iter().filter(|n| kept.contains(&n.as_str())).cloned().collect();
    Ok(Backbone { path: file, cut: Some(tensor.to_string()), output: tensor.to_string(), inputs, ..backbone.clone() })
}

/// Phase 2's training settings: AdamW over tail (`layers.0.`, `tail_lr`) and head (`head_lr`).
pub fn phase_two(cfg: &TrainConfig) -> TrainConfig {
    let f = &cfg.fine_tune;
    TrainConfig {
        epochs: f.epochs,
        optimizer: OptimizerConfig {
            kind: OptimizerKind::Adamw,
            lr: f.head_lr,
            weight_decay: Some(f.weight_decay),
            clip_norm: f.clip_norm,
            groups: vec![LrGroup { prefix: "layers.0.".into(), lr: f.tail_lr }],
            ..Default::default()
        },
        early_stopping: f.early_stopping.clone(),
        reduce_lr: crate::config::ReduceLrConfig { patience: 0, ..Default::default() },
        ..cfg.clone()
    }
}

/// `history` numbered on from epoch `offset`, so that phase 2 is drawn after phase 1.
pub fn after(history: &[EpochRecord], offset: usize) -> Vec<EpochRecord> {
    history.iter().map(|r| EpochRecord { epoch: r.epoch + offset, ..r.clone() }).collect()
}

/// Phase 2's model: `front` (the tail, and any layer between it and the head) followed by phase
/// 1's trained `head`, whose weights are carried over; `rng` seeds the rest.
pub fn phase_two_model(front: Vec<LayerSpec>, head: &mut Sequential, rng: &mut Rng) -> Result<Sequential> {
    let offset = front.len();
    let mut specs = front;
    specs.extend(head.specs());
    let mut model = Sequential::new(&specs, &mut rng.fork(2));
    let mut init: HashMap<String, ndarray::ArrayD<f32>> = model.state().into_iter().collect();
    for (name, value) in head.state() {
        let (layer, rest) = name.strip_prefix("layers.").and_then(|n| n.split_once('.')).expect("layers.N.name");
        let layer: usize = layer.parse().expect("a layer index");
        init.insert(format!("layers.{}.{rest}", layer + offset), value);
    }
    model.load_state(&init)?;
    Ok(model)
}

/// Phase 2's training run (`fine-tune`): `model` on `train`, validated on `val`, with
/// [`phase_two`]'s settings and `cfg`'s class weights; `bucket_by_length` for sequences.
pub fn phase_two_fit(
    cfg: &PipelineConfig,
    model: &mut Sequential,
    (train, val): (&Dataset, Option<&Dataset>),
    classes: usize,
    bucket_by_length: bool,
    rng: Rng,
    session: &mut Session,
) -> Result<FitOutcome> {
    let tcfg = phase_two(&cfg.train);
    let weights = crate::train::class_weights(&cfg.train.class_weight, &train.y, classes)?;
    let job = crate::train::Job {
        train,
        val,
        cfg: &tcfg,
        class_weights: weights.as_deref(),
        run: "fine-tune",
        bucket_by_length,
    };
    crate::train::fit(model, &job, rng, session)
}

/// Phase 2's rows: the stratified holdout split of `cfg.validation` drawn from `rng` (train rows,
/// validation rows), or every row for training and none held out.
pub fn phase_two_split(cfg: &PipelineConfig, y: &[usize], rng: &mut Rng) -> Result<(Vec<usize>, Option<Vec<usize>>)> {
    if cfg.validation.method == ValidationMethod::Holdout {
        stratified_split(y, cfg.validation.fraction, rng).map(|(t, v)| (t, Some(v)))
    } else {
        Ok(((0..y.len()).collect(), None))
    }
}

/// Phases 1 and 2 as one run to report and export: phase 2's `model` and `outcome` after
/// `phase1`, evaluated on the held-out rows `va` (or all `rows`) with probabilities `eval_proba`.
/// Also returns both phases for the report.
pub fn two_phase_run(
    phase1: HeadRun,
    model: Sequential,
    outcome: FitOutcome,
    va: Option<Vec<usize>>,
    rows: usize,
    eval_proba: ndarray::Array2<f32>,
) -> (HeadRun, Vec<Phase>) {
    let phase = |name: &str, o: &FitOutcome| Phase {
        name: name.into(),
        history: o.history.clone(),
        best_epoch: o.best_epoch,
        stopped_early: o.stopped_early,
        seconds: o.seconds,
    };
    let phases = vec![phase("head", &phase1.outcome), phase("fine-tune", &outcome)];
    let run = HeadRun {
        train_seconds: phase1.train_seconds + outcome.seconds,
        earlier_train_seconds: phase1.earlier_train_seconds + outcome.earlier_seconds,
        curves: vec![
            plot::Curve::new("head (phase 1)", phase1.outcome.history.clone()),
            plot::Curve::new("fine-tune (phase 2)", after(&outcome.history, phase1.outcome.history.len())),
        ],
        model,
        outcome,
        folds: Vec::new(),
        evaluated_on: if va.is_some() { "holdout" } else { "train" },
        eval_rows: va.unwrap_or_else(|| (0..rows).collect()),
        eval_proba,
    };
    (run, phases)
}
