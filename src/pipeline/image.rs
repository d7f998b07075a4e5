//! Image transfer learning: a frozen backbone (cut as its manifest says) embeds every image once
//! (cached by content), a small head (Dropout + Dense by default) trains on the features with the
//! shared loop, and the export is ONE graph: backbone + head.

use std::path::Path;
use std::time::Instant;

use super::common::{dense_stack, embed_folder, engine_options, export_verified, image_summary, verification_images};
use super::head::{finish, train_head, Finish};
use super::mistakes;
use super::report::{DataSummary, Report};
use crate::backend::Value;
use crate::config::manifest::Manifest;
use crate::config::PipelineConfig;
use crate::data::{Dataset, Labels};
use crate::features::{cache, Backbone, FeatureCache};
use crate::train::{self, Session};
use crate::verify;
use crate::{Error, Result};

/// Runs the image pipeline into `out`.
pub fn fit(cfg: &PipelineConfig, out: &Path, session: &mut Session) -> Result<Report> {
    let started = Instant::now();
    let bcfg = cfg.backbone.as_ref().ok_or_else(|| Error::config("backbone", "missing"))?;
    let cache_root = bcfg.cache.clone().unwrap_or_else(cache::default_root);
    let backbone = Backbone::prepare(Manifest::load(&bcfg.manifest)?, bcfg.path.as_deref(), &cache_root)?;
    let pre = backbone.preprocess.clone().ok_or_else(|| Error::config("backbone", "not an image backbone"))?;
    let mut cache = FeatureCache::open(&cache_root, &backbone.sha256, &backbone.recipe(None)?)?;
    let (folder, paths, emb) = embed_folder(cfg, bcfg, &backbone, &mut cache, session)?;
    let labels = Labels(folder.classes.clone());
    let data = Dataset { x: emb.features.clone().into_dyn(), y: emb.rows.iter().map(|&i| folder.items[i].1).collect() };
    let classes = labels.len();
    let arch = |train: &Dataset| dense_stack(cfg, train.x.shape()[1], classes);
    let mut run = train_head(cfg, &data, classes, &arch, session)?;

    // Verify on validation images: tract and ORT run the exported graph; the reference is the native
    // head on the backbone's ORT (CPU) features of the same images.
    let images = verification_images(&run, &paths, &emb, &pre)?;
    let features = verify::cpu_features(
        &backbone.path,
        vec![(backbone.input.clone(), Value::F32(pre.tensor(&images).into_dyn()))],
        &backbone.output,
    )?;
    let features = crate::features::flatten_rows(features, &backbone.output)?;
    let native = train::predict(&mut run.model, &features.into_dyn(), 1024);
    let (verification, mut outputs) = export_verified(cfg, out, &backbone, &labels, &mut run.model, &images, &native)?;
    let file = |r: usize| paths[emb.rows[r]].clone();
    let gallery = mistakes::write_images(out, (&run, &data, &labels), file, &engine_options(bcfg)?, &cfg.name)?;
    outputs.push(gallery.into());

    let metrics = run.metrics(&data, &labels);
    let images = image_summary(&run, &data, &labels, &paths, &emb, &backbone, pre);
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
