//! `graft lr-find`: the learning-rate range test ([`train::lr_find`]) on a pipeline's own trainable
//! model, optimizer and batch size, over its training rows (the holdout split's, when it holds some
//! out), with the features the pipeline caches. Tabular and image pipelines; a fine-tuning image
//! pipeline is tested on its head alone over the frozen backbone's features (its phase 1), not on
//! the unfrozen tail.

use std::path::Path;

use super::common::{csv_options, dense_stack, embed_folder};
use super::head::{training_rows, Architecture};
use crate::config::manifest::Manifest;
use crate::config::{PipelineConfig, Task};
use crate::data::{read_csv, Dataset, Labels};
use crate::features::{cache, Backbone, FeatureCache};
use crate::nn::{Sequential, Standardize};
use crate::rng::Rng;
use crate::train::lr_find::{self, LrFind, LrFindOptions};
use crate::train::{self, Job, Session};
use crate::{Error, Result};

/// What [`fn@lr_find`] found, and on what.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LrFindReport {
    /// The range test's losses, rates and suggestion.
    pub found: LrFind,
    /// The learning rate the pipeline trains with (`train.optimizer.lr`).
    pub pipeline_lr: f32,
    /// Rows in the pass.
    pub rows: usize,
    /// What was trained, e.g. `hidden [], dropout 0.2 -> 2 classes, on 1280-d features`.
    pub model: String,
    /// Limits of the test worth telling the user (e.g. the tail of a fine-tuning run left out).
    pub notes: Vec<String>,
}

/// Runs the range test for `cfg` and draws the curve at `plot_path`.
///
/// Errors: a text pipeline (not supported), the pipeline's own data errors, or a training split of
/// fewer than 2 batches.
pub fn lr_find(cfg: &PipelineConfig, plot_path: &Path, session: &mut Session) -> Result<LrFindReport> {
    let mut notes = Vec::new();
    let (data, width) = match cfg.task {
        Task::Tabular => tabular_data(cfg)?,
        Task::Image => {
            let bcfg = cfg.backbone.as_ref().ok_or_else(|| Error::config("backbone", "missing"))?;
            if bcfg.fine_tunes() {
                notes.push(
                    "fine-tuning pipeline: tested on the head alone over the frozen backbone's features \
                     (phase 1, train.optimizer.lr); the unfrozen tail is not part of the test"
                        .to_string(),
                );
            }
            image_data(cfg, session)?
        }
        Task::TextLstm | Task::TextEncoder => {
            return Err(Error::Invalid(format!(
                "{}: lr-find runs tabular and image pipelines; this one is a text pipeline",
                cfg.name
            )))
        }
    };
    let (data, classes) = data;
    let standardize = cfg.task == Task::Tabular;
    let arch = |train: &Dataset| {
        let mut specs = if standardize { vec![Standardize::fit(&train.x)] } else { Vec::new() };
        specs.extend(dense_stack(cfg, width, classes));
        specs
    };
    let arch: Architecture = &arch;
    let train_set = data.subset(&training_rows(cfg, &data.y)?);
    let mut rng = Rng::new(cfg.train.seed);
    let mut model = Sequential::new(&arch(&train_set), &mut rng);
    let weights = train::class_weights(&cfg.train.class_weight, &train_set.y, classes)?;
    let job = Job {
        train: &train_set,
        val: None,
        cfg: &cfg.train,
        class_weights: weights.as_deref(),
        run: "lr-find",
        bucket_by_length: false,
    };
    let batches = train_set.len().div_ceil(cfg.train.batch_size);
    let opts = LrFindOptions { beta: LrFindOptions::beta_for(batches), ..Default::default() };
    let found = lr_find::lr_find(&mut model, &job, rng.fork(0), session, &opts)?;
    lr_find::plot(plot_path, &format!("{}: learning-rate range test", cfg.name), &found)?;
    Ok(LrFindReport {
        found,
        pipeline_lr: cfg.train.optimizer.lr,
        rows: train_set.len(),
        model: format!(
            "{}hidden {:?}, dropout {} -> {classes} classes, on {width}-d {}",
            if standardize { "standardize, " } else { "" },
            cfg.model.hidden,
            cfg.model.dropout,
            if standardize { "columns" } else { "features" }
        ),
        notes,
    })
}

type Prepared = ((Dataset, usize), usize);

/// The tabular pipeline's rows (bad rows skipped as it skips them) and classes, and its width.
fn tabular_data(cfg: &PipelineConfig) -> Result<Prepared> {
    let opts = csv_options(cfg);
    let table = read_csv(&cfg.data.path, &opts)?;
    Standardize::check(&table.x, &table.feature_names)?;
    let raw = table.labels.clone().expect("label column was asked for");
    let labels = Labels::fit(&raw);
    let width = table.x.shape()[1];
    Ok(((Dataset { x: table.x, y: labels.encode(&raw)? }, labels.len()), width))
}

/// The image pipeline's features (through its feature cache) and classes, and their width.
fn image_data(cfg: &PipelineConfig, session: &Session) -> Result<Prepared> {
    let bcfg = cfg.backbone.as_ref().ok_or_else(|| Error::config("backbone", "missing"))?;
    let cache_root = bcfg.cache.clone().unwrap_or_else(cache::default_root);
    let backbone = Backbone::prepare(Manifest::load(&bcfg.manifest)?, bcfg.path.as_deref(), &cache_root)?;
    let mut cache = FeatureCache::open(&cache_root, &backbone.sha256, &backbone.recipe(None)?)?;
    let (folder, _, emb) = embed_folder(cfg, bcfg, &backbone, &mut cache, session)?;
    let y = emb.rows.iter().map(|&i| folder.items[i].1).collect();
    let width = emb.features.ncols();
    Ok(((Dataset { x: emb.features.into_dyn(), y }, folder.classes.len()), width))
}
