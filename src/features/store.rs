use std::collections::HashMap;
use std::path::Path;

use ndarray::{Array2, ArrayD, Ix2};

use crate::nn::sequential::{load_tensors, save_tensors};
use crate::{Error, Result};

/// What `graft embed` writes: `features` f32 `[N, D]`, `labels` f32 `[N]` (class index, -1 when
/// unlabelled) and metadata (`ids`, `classes`, `skipped`, `backbone`, `preprocess` as JSON).
pub struct FeatureFile {
    pub features: Array2<f32>,
    pub labels: Vec<f32>,
    pub metadata: HashMap<String, String>,
}

impl FeatureFile {
    /// Writes the file atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let n = self.labels.len();
        let labels = ArrayD::from_shape_vec(vec![n], self.labels.clone()).expect("1-D");
        save_tensors(
            path,
            &[("features".into(), self.features.clone().into_dyn()), ("labels".into(), labels)],
            self.metadata.clone(),
        )
    }

    /// Reads a file written by [`FeatureFile::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let (mut t, metadata) = load_tensors(path)?;
        let features = t
            .remove("features")
            .and_then(|f| f.into_dimensionality::<Ix2>().ok())
            .ok_or_else(|| Error::data(path, None, "no 2-D `features` tensor"))?;
        let labels = t.remove("labels").map(|l| l.iter().copied().collect()).unwrap_or_default();
        Ok(FeatureFile { features, labels, metadata })
    }
}
