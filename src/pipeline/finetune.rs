//! Fine-tuning an image backbone's last blocks, as Keras and fastai do: the frozen front runs once
//! per image and its tensor at the unfreeze point is cached by content (the cache key names the
//! tensor); phase 1 trains the head alone on the tail's output, computed once from the cached
//! tensors; phase 2 trains the tail ([`TailLayer`]) and the head together with AdamW, each with its
//! own learning rate, through the same trainer. The export is the original backbone graph with the
//! tail's trained initializers, then the head.

use std::path::Path;
use std::time::Instant;

use ndarray::{Array2, ArrayD, Axis};

use super::common::{
    dense_stack, embed_folder, engine_options, export_verified, front, image_summary, load_images, phase_two_fit,
    phase_two_model, phase_two_split, two_phase_run, unfreeze_tensor, verification_images,
};
use super::head::{finish, train_head, Finish};
use super::mistakes;
use super::report::{DataSummary, FineTuneSummary, Report};
use crate::backend::Value;
use crate::config::manifest::Manifest;
use crate::config::PipelineConfig;
use crate::data::{Dataset, Labels};
use crate::features::{cache, Backbone, FeatureCache};
use crate::graph::TailLayer;
use crate::nn::{Ctx, Layer};
use crate::rng::Rng;
use crate::train::{self, Session};
use crate::{io, verify, Error, Result};

/// The tail's output on every row of `x`, in inference mode, `batch` rows at a time.
///
/// # Shapes
/// `x` `[N, ...start]` -> `[N, prod(end dims)]`
fn tail_outputs(tail: &mut TailLayer, x: &ArrayD<f32>, batch: usize) -> Result<Array2<f32>> {
    let mut rng = Rng::new(0);
    let mut parts = Vec::new();
    for s in (0..x.shape()[0]).step_by(batch.max(1)) {
        let rows = x.slice_axis(Axis(0), (s..(s + batch).min(x.shape()[0])).into()).to_owned();
        let y = tail.forward(rows, &mut Ctx::new(false, &mut rng));
        parts.push(crate::features::flatten_rows(y, tail.tail().end())?);
    }
    let views: Vec<_> = parts.iter().map(|p| p.view()).collect();
    ndarray::concatenate(Axis(0), &views).map_err(|e| Error::Invalid(format!("tail outputs: {e}")))
}

/// Runs the fine-tuning image pipeline into `out`.
pub fn fit(cfg: &PipelineConfig, out: &Path, session: &mut Session) -> Result<Report> {
    let started = Instant::now();
    let bcfg = cfg.backbone.as_ref().ok_or_else(|| Error::config("backbone", "missing"))?;
    let cache_root = bcfg.cache.clone().unwrap_or_else(cache::default_root);
    let backbone = Backbone::prepare(Manifest::load(&bcfg.manifest)?, bcfg.path.as_deref(), &cache_root)?;
    let pre = backbone.preprocess.clone().ok_or_else(|| Error::config("backbone", "not an image backbone"))?;
    let source = crate::onnx::load(&backbone.source)?;
    let what = backbone.source.display().to_string();
    let start = unfreeze_tensor(&source, bcfg.unfreeze, bcfg.unfreeze_from.as_deref(), &backbone.output, &what)?;
    // The saved model names the backbone by an absolute path, so `graft verify` runs from anywhere.
    let absolute = std::fs::canonicalize(&backbone.source).map_err(|e| Error::io(&backbone.source, e))?;
    let mut tail = TailLayer::open(&absolute, &start, Some(&backbone.output), Some(&backbone.sha256))?;
    let front = front(&backbone, &source, &start, &cache_root)?;

    let mut cache = FeatureCache::open(&cache_root, &backbone.sha256, &front.recipe(None)?)?;
    let (folder, paths, emb) = embed_folder(cfg, bcfg, &front, &mut cache, session)?;
    let labels = Labels(folder.classes.clone());
    let classes = labels.len();
    let one = load_images(&pre, &paths[emb.rows[0]..=emb.rows[0]])?;
    let probe = verify::cpu_features(
        &front.path,
        vec![(front.input.clone(), Value::F32(pre.tensor(&one).into_dyn()))],
        &start,
    )?;
    let mut shape = probe.shape().to_vec();
    shape[0] = emb.rows.len();
    let x = emb
        .features
        .clone()
        .into_shape_with_order(shape.clone())
        .map_err(|e| Error::Tensor { name: start.clone(), msg: e.to_string() })?;
    let data = Dataset { x, y: emb.rows.iter().map(|&i| folder.items[i].1).collect() };

    // Phase 1: the head alone on the frozen tail's output.
    let pooled = tail_outputs(&mut tail, &data.x, 64)?;
    let width = pooled.ncols();
    let head_data = Dataset { x: pooled.into_dyn(), y: data.y.clone() };
    let arch = |_: &Dataset| dense_stack(cfg, width, classes);
    let mut phase1 = train_head(cfg, &head_data, classes, &arch, session)?;

    // Phase 2: tail and head together, from phase 1's head, on the same split.
    let mut rng = Rng::new(cfg.train.seed);
    let mut model = phase_two_model(vec![tail.spec()], &mut phase1.model, &mut rng)?;
    let (tr, va) = phase_two_split(cfg, &data.y, &mut rng)?;
    let (train_set, val) = (data.subset(&tr), va.as_ref().map(|v| data.subset(v)));
    let outcome = phase_two_fit(cfg, &mut model, (&train_set, val.as_ref()), classes, false, rng.fork(3), session)?;
    let eval_proba = train::predict(&mut model, val.as_ref().map_or(&data.x, |v| &v.x), 64);
    let (mut run, phases) = two_phase_run(phase1, model, outcome, va, data.len(), eval_proba);

    // Verify: the native tail + head on the front's ORT (CPU) tensors of validation images.
    let images = verification_images(&run, &paths, &emb, &pre)?;
    let input = vec![(front.input.clone(), Value::F32(pre.tensor(&images).into_dyn()))];
    let at_start = verify::cpu_features(&front.path, input, &start)?;
    let native = train::predict(&mut run.model, &at_start, 64);
    let (verification, mut outputs) = export_verified(cfg, out, &backbone, &labels, &mut run.model, &images, &native)?;
    let file = |r: usize| paths[emb.rows[r]].clone();
    let gallery = mistakes::write_images(out, (&run, &data, &labels), file, &engine_options(bcfg)?, &cfg.name)?;
    outputs.push(gallery.into());

    let metrics = run.metrics(&data, &labels);
    let summary = FineTuneSummary {
        unfrozen_from: start.clone(),
        tail_end: backbone.output.clone(),
        tail_nodes: tail.tail().nodes().len(),
        tail_parameters: tail.tail().param_count(),
        phases,
    };
    let images = image_summary(&run, &data, &labels, &paths, &emb, &backbone, pre);
    let described = format!("{start} {:?} -> fine-tuned tail -> {} ({width}-d)", &shape[1..], backbone.output);
    let mut report = finish(
        &run,
        Finish {
            cfg,
            out,
            data: DataSummary::new(cfg, &data, &labels, vec![described]),
            labels: &labels,
            metrics,
            verification,
            total_seconds: started.elapsed().as_secs_f64(),
            outputs,
            images: Some(images),
            text: None,
        },
    )?;
    report.fine_tune = Some(summary);
    io::write_json(&out.join("report.json"), &report)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TrainConfig, Unfreeze};
    use crate::nn::optim::LrGroup;
    use crate::nn::OptimizerKind;
    use crate::onnx::pb;
    use crate::pipeline::common::phase_two;

    fn effnet() -> pb::ModelProto {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/models/efficientnet-lite0/model.onnx");
        crate::onnx::load(&path).unwrap()
    }

    #[test]
    fn the_unfreeze_point_is_found_or_refused_clearly() {
        let m = effnet();
        let t = |u, f| unfreeze_tensor(&m, Unfreeze::Blocks(u), f, "features", "effnet.onnx");
        assert_eq!(t(2, None).unwrap(), "add_54", "the last block and the 1x1 head conv");
        assert_eq!(t(1, None).unwrap(), "conv_57_out");
        assert_eq!(t(0, Some("add_50")).unwrap(), "add_50");
        let e = t(999, None).unwrap_err().to_string();
        assert!(e.contains("backbone.unfreeze") && e.contains("999 blocks asked"), "{e}");
        let e = t(0, Some("no_such_tensor")).unwrap_err().to_string();
        assert!(e.contains("backbone.unfreeze_from") && e.contains("no tensor `no_such_tensor`"), "{e}");
        let e = t(0, Some("features")).unwrap_err().to_string();
        assert!(e.contains("no tail is left"), "{e}");
        let e = t(0, Some("logits")).unwrap_err().to_string();
        assert!(e.contains("no tail is left"), "after the cut tensor: {e}");
        let e = unfreeze_tensor(&m, Unfreeze::Blocks(1), None, "conv_1_out", "effnet.onnx").unwrap_err().to_string();
        assert!(e.contains("effnet.onnx has no block boundaries"), "a cut before every boundary: {e}");
    }

    #[test]
    fn phase_two_is_adamw_with_a_tail_group() {
        let cfg = TrainConfig::default();
        let p = phase_two(&cfg);
        assert_eq!((p.epochs, p.optimizer.kind, p.optimizer.lr), (5, OptimizerKind::Adamw, 1e-3));
        assert_eq!(p.optimizer.groups, vec![LrGroup { prefix: "layers.0.".into(), lr: 1e-4 }]);
        assert_eq!((p.optimizer.weight_decay, p.optimizer.clip_norm), (Some(0.01), Some(1.0)));
        assert_eq!(p.batch_size, cfg.batch_size);
    }
}
