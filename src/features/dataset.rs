//! [`embed_dataset`]: a whole dataset (an image folder or a CSV of texts) through a frozen backbone,
//! cached by content; what `graft embed` runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::partition::Shard;
use super::{cache, embed_images, embed_texts, Backbone, Embedded, FeatureCache, FeatureFile};
use crate::backend::EngineOptions;
use crate::data::{collect_images, read_text_csv, ImageFolder, Labels, TextOptions};
use crate::train::ProgressMode;
use crate::{Error, Result};

/// How [`embed_dataset`] reads the data and runs the backbone.
#[derive(Clone, Debug)]
pub struct EmbedOptions {
    /// Text column of a CSV (text backbones).
    pub text_column: String,
    /// Label column of a CSV (text backbones); `None`: the texts are unlabelled.
    pub label_column: Option<String>,
    /// Embed only the first N items.
    pub limit: Option<usize>,
    /// Embed only this worker's part of the items (after `limit`).
    pub shard: Option<Shard>,
    /// Items per engine run.
    pub batch: usize,
    /// Feature cache root; `None`: recompute everything and keep nothing.
    pub cache: Option<PathBuf>,
    /// The engine running the backbone.
    pub engine: EngineOptions,
    /// How progress is reported.
    pub progress: ProgressMode,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        EmbedOptions {
            text_column: "text".into(),
            label_column: None,
            limit: None,
            shard: None,
            batch: 32,
            cache: Some(cache::default_root()),
            engine: EngineOptions::default(),
            progress: ProgressMode::Quiet,
        }
    }
}

/// What kind of items a dataset holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Items {
    /// Image files.
    Images,
    /// Texts of a CSV.
    Texts,
}

/// Features of a dataset: one row per usable item, with its id and label.
#[derive(Debug)]
pub struct EmbeddedDataset {
    /// What the items were.
    pub items: Items,
    /// Items considered: after `limit` and the shard.
    pub considered: usize,
    /// The items before the shard was taken (equal to `considered` without a shard).
    pub before_shard: usize,
    /// The features and how they were made (skipped items, items computed now, timings, warnings).
    pub embedded: Embedded,
    /// One per feature row: the image's path, or `line N` of the CSV.
    pub ids: Vec<String>,
    /// Class index of each feature row (into `classes`); `None` when the data has no labels (a
    /// folder of images without class subfolders, a CSV without a label column).
    pub labels: Option<Vec<usize>>,
    /// Class names (subfolders, or the label column's values sorted).
    pub classes: Vec<String>,
    /// JSON metadata for the feature file (`ids`, `classes`, `backbone`; for images `skipped` and
    /// `preprocess`).
    pub metadata: HashMap<String, String>,
}

impl EmbeddedDataset {
    /// The `graft embed` file of these features (see [`FeatureFile`]).
    pub fn to_file(&self) -> FeatureFile {
        FeatureFile {
            features: self.embedded.features.clone(),
            labels: self.labels.clone(),
            metadata: self.metadata.clone(),
        }
    }
}

/// Embeds `data` with `backbone`: a CSV's text column for a text backbone; for an image backbone,
/// a folder with one subfolder per class (labelled: [`ImageFolder::scan`], whose errors, such as
/// a class folder without images, are returned), or a folder of images without subfolders
/// (unlabelled, searched recursively) or image files.
///
/// Features are cached by content under `opts.cache`: a re-run embeds only new or changed items.
/// Unreadable images are skipped and listed in the result, never an error.
pub fn embed_dataset(backbone: &Backbone, data: &Path, opts: &EmbedOptions) -> Result<EmbeddedDataset> {
    if backbone.manifest.text.is_some() {
        embed_text_csv(backbone, data, opts)
    } else {
        embed_image_folder(backbone, data, opts)
    }
}

/// The first `limit` of `n` items, then the shard's part of them (`select` gives the indices kept).
pub(crate) fn take(
    n: usize,
    opts: &EmbedOptions,
    select: impl FnOnce(&Shard, usize) -> Vec<usize>,
) -> (Vec<usize>, usize) {
    let n = opts.limit.unwrap_or(n).min(n);
    match &opts.shard {
        Some(s) => (select(s, n), n),
        None => ((0..n).collect(), n),
    }
}

fn open_cache(backbone: &Backbone, recipe: &str, opts: &EmbedOptions) -> Result<FeatureCache> {
    match &opts.cache {
        Some(root) => FeatureCache::open(root, &backbone.sha256, recipe),
        None => Ok(FeatureCache::disabled()),
    }
}

/// Whether `path` is a folder with at least one subfolder (a labelled image folder).
fn has_subfolders(path: &Path) -> Result<bool> {
    if !path.is_dir() {
        return Ok(false);
    }
    let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        if entry.file_type().map_err(|e| Error::io(entry.path(), e))?.is_dir() {
            return Ok(true);
        }
    }
    Ok(false)
}

fn embed_image_folder(backbone: &Backbone, data: &Path, opts: &EmbedOptions) -> Result<EmbeddedDataset> {
    let pre = backbone.preprocess.clone().ok_or_else(|| {
        Error::Invalid(format!("`{}` is neither an image nor a text backbone", backbone.manifest.name))
    })?;
    let (paths, labels, classes) = if has_subfolders(data)? {
        let folder = ImageFolder::scan(data)?;
        let (p, l): (Vec<_>, Vec<_>) = folder.items.iter().cloned().unzip();
        (p, Some(l), folder.classes)
    } else {
        (collect_images(&[data.to_path_buf()])?, None, Vec::new())
    };
    let (keep, before_shard) = take(paths.len(), opts, |s, n| s.select_files(&paths[..n]));
    let paths: Vec<PathBuf> = keep.iter().map(|&i| paths[i].clone()).collect();
    let labels: Option<Vec<usize>> = labels.map(|l| keep.iter().map(|&i| l[i]).collect());
    let mut fcache = open_cache(backbone, &backbone.recipe(None)?, opts)?;
    let embedded = embed_images(backbone, &opts.engine, &paths, &mut fcache, opts.batch, opts.progress)?;
    let ids: Vec<String> = embedded.rows.iter().map(|&i| paths[i].display().to_string()).collect();
    let metadata = HashMap::from([
        ("ids".to_string(), json(&ids)),
        ("classes".to_string(), json(&classes)),
        ("skipped".to_string(), json(&embedded.skipped)),
        ("backbone".to_string(), json(&backbone.info())),
        ("preprocess".to_string(), pre.to_json()),
    ]);
    let labels = labels.map(|l| embedded.rows.iter().map(|&i| l[i]).collect());
    Ok(EmbeddedDataset {
        items: Items::Images,
        considered: paths.len(),
        before_shard,
        embedded,
        ids,
        labels,
        classes,
        metadata,
    })
}

fn embed_text_csv(backbone: &Backbone, data: &Path, opts: &EmbedOptions) -> Result<EmbeddedDataset> {
    let encoder = backbone.text_encoder()?;
    let read = TextOptions { text: opts.text_column.clone(), label: opts.label_column.clone(), skip_bad_rows: false };
    let table = read_text_csv(data, &read)?;
    let (keep, before_shard) = take(table.texts.len(), opts, |s, n| s.select_texts(&table.texts[..n]));
    let texts: Vec<String> = keep.iter().map(|&i| table.texts[i].clone()).collect();
    let (labels, classes) = match &table.labels {
        Some(raw) => {
            let l = Labels::fit(raw);
            let kept: Vec<String> = keep.iter().map(|&i| raw[i].clone()).collect();
            (Some(l.encode(&kept)?), l.0)
        }
        None => (None, Vec::new()),
    };
    let mut fcache = open_cache(backbone, &backbone.recipe(Some(&encoder))?, opts)?;
    let embedded = embed_texts(backbone, &opts.engine, &encoder, &texts, &mut fcache, opts.batch, opts.progress)?;
    let ids: Vec<String> = embedded.rows.iter().map(|&i| format!("line {}", table.lines[keep[i]])).collect();
    let metadata = HashMap::from([
        ("ids".to_string(), json(&ids)),
        ("classes".to_string(), json(&classes)),
        ("backbone".to_string(), json(&backbone.info())),
    ]);
    let labels = labels.map(|l: Vec<usize>| embedded.rows.iter().map(|&i| l[i]).collect());
    Ok(EmbeddedDataset {
        items: Items::Texts,
        considered: texts.len(),
        before_shard,
        embedded,
        ids,
        labels,
        classes,
        metadata,
    })
}

fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("metadata serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_is_labelled_by_its_subfolders_and_their_errors_are_returned() {
        let dir = tempfile::tempdir().unwrap();
        let flat = dir.path().join("flat");
        std::fs::create_dir_all(&flat).unwrap();
        std::fs::write(flat.join("a.jpg"), b"x").unwrap();
        assert!(!has_subfolders(&flat).unwrap());
        assert!(!has_subfolders(&flat.join("a.jpg")).unwrap());
        // One class subfolder: before, ImageFolder::scan's error was swallowed and the photos
        // silently embedded unlabelled; now it is the error.
        let one = dir.path().join("one");
        std::fs::create_dir_all(one.join("cat")).unwrap();
        std::fs::write(one.join("cat/a.jpg"), b"x").unwrap();
        assert!(has_subfolders(&one).unwrap());
        let err = ImageFolder::scan(&one).unwrap_err().to_string();
        assert!(err.contains("at least two classes"), "{err}");
    }

    #[test]
    fn limit_then_shard() {
        let opts = EmbedOptions { limit: Some(5), ..Default::default() };
        assert_eq!(take(9, &opts, |_, _| unreachable!()), ((0..5).collect(), 5));
        let opts = EmbedOptions { shard: Some(Shard::parse("1/2").unwrap()), ..opts };
        assert_eq!(take(9, &opts, |s, n| (0..n).filter(|i| i % 2 == s.index as usize).collect()), (vec![1, 3], 5));
    }
}
