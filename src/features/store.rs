//! `graft embed` files: features, labels and metadata in one safetensors file.

use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array2, ArrayD, Ix2};

use crate::nn::sequential::{load_tensors, save_tensors};
use crate::{Error, Result};

/// What `graft embed` writes: `features` f32 `[N, D]`, `labels` f32 `[N]` (class indices; every
/// one -1 when unlabelled) and metadata (`ids`, `classes`, `skipped`, `backbone`, `preprocess` as
/// JSON).
pub struct FeatureFile {
    /// One row per item.
    pub features: Array2<f32>,
    /// The class index of each row, when the items are labelled.
    pub labels: Option<Vec<usize>>,
    /// JSON strings by key.
    pub metadata: HashMap<String, String>,
}

impl FeatureFile {
    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let n = self.features.nrows();
        let labels: Vec<f32> = match &self.labels {
            Some(l) => l.iter().map(|&c| c as f32).collect(),
            None => vec![-1.0; n],
        };
        let labels = ArrayD::from_shape_vec(vec![labels.len()], labels).expect("1-D");
        save_tensors(
            path,
            &[("features".into(), self.features.clone().into_dyn()), ("labels".into(), labels)],
            self.metadata.clone(),
        )
    }

    /// Reads a file written by [`FeatureFile::save`]; labels all -1 (or absent) read as `None`.
    pub fn load(path: &Path) -> Result<Self> {
        let (mut t, metadata) = load_tensors(path)?;
        let features = t
            .remove("features")
            .and_then(|f| f.into_dimensionality::<Ix2>().ok())
            .ok_or_else(|| Error::data(path, None, "no 2-D `features` tensor"))?;
        let raw: Vec<f32> = t.remove("labels").map(|l| l.iter().copied().collect()).unwrap_or_default();
        let labels = if raw.iter().all(|&l| l == -1.0) {
            None
        } else if raw.iter().all(|&l| l >= 0.0 && l.fract() == 0.0) && raw.len() == features.nrows() {
            Some(raw.iter().map(|&l| l as usize).collect())
        } else {
            return Err(Error::data(path, None, "`labels` must hold one class index per row, or -1 for every row"));
        };
        Ok(FeatureFile { features, labels, metadata })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_class_indices_or_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.safetensors");
        let features = Array2::from_shape_vec((3, 2), (0..6).map(|v| v as f32).collect()).unwrap();
        for labels in [Some(vec![0, 2, 1]), None] {
            let file = FeatureFile { features: features.clone(), labels: labels.clone(), metadata: HashMap::new() };
            file.save(&path).unwrap();
            let back = FeatureFile::load(&path).unwrap();
            assert_eq!((back.features, back.labels), (features.clone(), labels));
        }
        let bad = [
            ("features".to_string(), features.clone().into_dyn()),
            ("labels".to_string(), ndarray::arr1(&[0.0f32, -1.0, 1.0]).into_dyn()),
        ];
        save_tensors(&path, &bad, HashMap::new()).unwrap();
        let err = FeatureFile::load(&path).err().unwrap().to_string();
        assert!(err.contains("f.safetensors") && err.contains("one class index per row"), "{err}");
    }
}
