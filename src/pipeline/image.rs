//! Image transfer learning: a frozen backbone (cut as its manifest says) embeds every image once
//! (cached by content), a small head (Dropout + Dense by default) trains on the features with the
//! shared loop, and the export is ONE graph: backbone + head.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use super::head::{finish, train_head, Finish, HeadRun};
use super::report::{DataSummary, ImageSummary, Mistake, Report};
use super::tabular::dense_stack;
use crate::backend::{EngineOptions, OrtOptions, Value};
use crate::config::manifest::Manifest;
use crate::config::{BackboneConfig, PipelineConfig};
use crate::data::{Dataset, ImageFolder, Labels};
use crate::export::{self, keys, IMAGE_INPUT};
use crate::features::{cache, embed_images, Backbone, FeatureCache};
use crate::preprocess::ImagePreprocess;
use crate::train::{self, Session};
use crate::verify::{self, Verification};
use crate::{Error, Result};

/// Validation images verified on both engines (tract runs the whole backbone, so this is bounded).
pub const VERIFY_IMAGES: usize = 16;

/// Engine options from a pipeline's backbone section.
pub fn engine_options(b: &BackboneConfig) -> Result<EngineOptions> {
    Ok(EngineOptions { backend: b.backend.parse()?, ort: OrtOptions { device: b.device.parse()?, threads: b.threads } })
}

/// Runs the image pipeline into `out`.
pub fn fit(cfg: &PipelineConfig, out: &Path, session: &mut Session) -> Result<Report> {
    let started = Instant::now();
    let bcfg = cfg.backbone.as_ref().ok_or_else(|| Error::config("backbone", "missing"))?;
    if bcfg.fine_tunes() {
        return super::finetune::fit(cfg, out, session);
    }
    let cache_root = bcfg.cache.clone().unwrap_or_else(cache::default_root);
    let backbone = Backbone::prepare(Manifest::load(&bcfg.manifest)?, bcfg.path.as_deref(), &cache_root)?;
    let pre = backbone.preprocess.clone().ok_or_else(|| Error::config("backbone", "not an image backbone"))?;
    let folder = ImageFolder::scan(&cfg.data.path)?;
    let labels = Labels(folder.classes.clone());
    let paths: Vec<_> = folder.items.iter().map(|(p, _)| p.clone()).collect();

    let mut cache = FeatureCache::open(&cache_root, &backbone.sha256, &backbone.recipe(None)?)?;
    let emb = embed_images(&backbone, &engine_options(bcfg)?, &paths, &mut cache, bcfg.batch_size, session.progress)?;
    for s in &emb.skipped {
        log::warn!("skipped {}: {}", s.path, s.reason);
    }
    for w in &emb.warnings {
        log::warn!("{w}");
    }
    folder.check_kept(&emb.rows, &emb.skipped)?;
    let data = Dataset { x: emb.features.clone().into_dyn(), y: emb.rows.iter().map(|&i| folder.items[i].1).collect() };
    let classes = labels.len();
    let arch = |train: &Dataset| dense_stack(cfg, train.x.shape()[1], classes);
    let mut run = train_head(cfg, &data, classes, &arch, session)?;

    // Verify on validation images: tract and ORT run the exported graph; the reference is the native
    // head on the backbone's ORT (CPU) features of the same images.
    let check: Vec<usize> = run.eval_rows.iter().copied().take(VERIFY_IMAGES).collect();
    let check_paths: Vec<_> = check.iter().map(|&r| paths[emb.rows[r]].clone()).collect();
    let images = load_images(&pre, &check_paths)?;
    let features = verify::cpu_features(
        &backbone.path,
        vec![(backbone.input.clone(), Value::F32(pre.tensor(&images).into_dyn()))],
        &backbone.output,
    )?;
    let features = crate::features::flatten_rows(features, &backbone.output)?;
    let native = train::predict(&mut run.model, &features.into_dyn(), 1024);
    let (verification, outputs) = export_verified(cfg, out, &backbone, &labels, &mut run.model, &images, &native)?;
    let info = backbone.info();

    let metrics = run.metrics(&data, &labels);
    let images = ImageSummary {
        backbone: info,
        preprocess: pre,
        found: paths.len(),
        embedded: emb.rows.len(),
        embedded_now: emb.computed,
        embed_seconds: emb.seconds,
        skipped: emb.skipped.clone(),
        most_confidently_wrong: mistakes(&run, &data, &labels, |r| paths[emb.rows[r]].display().to_string()),
    };
    finish(
        &run,
        Finish {
            cfg,
            out,
            data: DataSummary::new(cfg, &data, &labels, vec![format!("{} ({}-d)", backbone.output, data.x.shape()[1])]),
            labels: &labels,
            metrics,
            verification,
            total_seconds: started.elapsed().as_secs_f64(),
            outputs,
            images: Some(images),
            text: None,
        },
    )
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
        "image",
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
        let pre_u8 =
            ImagePreprocess { dtype: "u8".into(), layout: crate::config::manifest::Layout::Nhwc, ..pre.clone() };
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
    let predicted = crate::train::metrics::argmax_rows(run.eval_proba.view());
    let mut wrong: Vec<Mistake> = run
        .eval_rows
        .iter()
        .enumerate()
        .filter(|(k, &r)| predicted[*k] != data.y[r])
        .map(|(k, &r)| Mistake {
            id: id(r),
            label: labels.0[data.y[r]].clone(),
            predicted: labels.0[predicted[k]].clone(),
            probability: run.eval_proba[[k, predicted[k]]],
        })
        .collect();
    wrong.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    wrong.truncate(10);
    wrong
}
