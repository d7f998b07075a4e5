//! Datasets: tabular CSV, image folders, label encoding, stratified splits and k-fold.

mod csv_file;
mod images;
mod split;
mod tabular;
mod text;

pub use images::{collect_images, ImageFolder, IMAGE_EXTENSIONS};
pub use split::{stratified_kfold, stratified_split};
pub use tabular::{read_csv, CsvOptions, Table};
pub use text::{read_text_csv, BadRow, TextOptions, TextTable};

use ndarray::{ArrayD, Axis};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// In-memory examples for the trainer: inputs and class indices.
///
/// # Shapes
/// `x` `[N, ...]`, `y` `[N]`
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Inputs, one row per example.
    pub x: ArrayD<f32>,
    /// Class index of each example.
    pub y: Vec<usize>,
}

impl Dataset {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The examples at `idx`, in that order.
    pub fn subset(&self, idx: &[usize]) -> Dataset {
        Dataset { x: self.x.select(Axis(0), idx), y: idx.iter().map(|&i| self.y[i]).collect() }
    }
}

/// The ordered class names of a model; index = output column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Labels(pub Vec<String>);

impl Labels {
    /// The sorted distinct values of `raw` (numerically when all are integers).
    pub fn fit(raw: &[String]) -> Labels {
        let mut names: Vec<String> = raw.to_vec();
        names.sort();
        names.dedup();
        if names.iter().all(|n| n.parse::<i64>().is_ok()) {
            names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
        }
        Labels(names)
    }

    /// Class index of each raw label.
    pub fn encode(&self, raw: &[String]) -> Result<Vec<usize>> {
        raw.iter()
            .map(|r| self.0.iter().position(|n| n == r).ok_or_else(|| Error::Invalid(format!("unknown label `{r}`"))))
            .collect()
    }

    /// Number of classes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no classes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels as a JSON list (the `graft.labels` metadata).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("strings serialise")
    }

    /// Parses `graft.labels` metadata.
    pub fn from_json(s: &str) -> Result<Labels> {
        serde_json::from_str(s).map(Labels).map_err(|e| Error::Invalid(format!("graft.labels: {e}")))
    }
}

/// Examples per class.
pub fn class_counts(y: &[usize], n_classes: usize) -> Vec<usize> {
    let mut counts = vec![0; n_classes];
    for &c in y {
        counts[c] += 1;
    }
    counts
}
