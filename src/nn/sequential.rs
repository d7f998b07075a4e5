//! [`Sequential`]: layers run in order, and their weights saved and loaded as safetensors.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use ndarray::{Array2, ArrayD, Ix2};

use super::{loss, Ctx, Layer, LayerSpec, Param};
use crate::rng::Rng;
use crate::{io, Error, Result};

/// Tensors by name.
pub type Tensors = HashMap<String, ArrayD<f32>>;

/// A stack of layers applied in order; the one model type the trainer and the exporter know.
pub struct Sequential {
    layers: Vec<Box<dyn Layer>>,
}

impl Sequential {
    /// Builds every layer of `specs`, drawing initial weights from `rng`.
    pub fn new(specs: &[LayerSpec], rng: &mut Rng) -> Self {
        Sequential { layers: specs.iter().map(|s| s.build(rng)).collect() }
    }

    /// The layers, in order.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// Descriptions that rebuild this model's architecture.
    pub fn specs(&self) -> Vec<LayerSpec> {
        self.layers.iter().map(|l| l.spec()).collect()
    }

    /// Forward pass through every layer.
    pub fn forward(&mut self, x: ArrayD<f32>, ctx: &mut Ctx) -> ArrayD<f32> {
        self.layers.iter_mut().fold(x, |x, l| l.forward(x, ctx))
    }

    /// Backward pass from dL/d(output); parameter gradients are left in the layers. Layers before
    /// the first one with parameters are skipped (nothing there learns).
    pub fn backward(&mut self, grad: ArrayD<f32>) {
        let Some(first) = self.layers.iter_mut().position(|l| !l.params().is_empty()) else { return };
        let g = self.layers[first + 1..].iter_mut().rev().fold(grad, |g, l| l.backward(g));
        self.layers[first].backward_params(g);
    }

    /// All trainable parameters, named `layers.{i}.{name}`, in a stable order.
    pub fn params(&mut self) -> Vec<(String, Param<'_>)> {
        let mut out = Vec::new();
        for (i, layer) in self.layers.iter_mut().enumerate() {
            for p in layer.params() {
                out.push((format!("layers.{i}.{}", p.name), p));
            }
        }
        out
    }

    /// Copies of all parameter values, by name.
    pub fn state(&mut self) -> Vec<(String, ArrayD<f32>)> {
        self.params().into_iter().map(|(n, p)| (n, p.value.clone())).collect()
    }

    /// Restores parameter values saved by [`Sequential::state`]; every parameter must be present with
    /// its shape.
    pub fn load_state(&mut self, state: &HashMap<String, ArrayD<f32>>) -> Result<()> {
        for (name, p) in self.params() {
            let v = state.get(&name).ok_or_else(|| Error::Tensor { name: name.clone(), msg: "missing".into() })?;
            if v.shape() != p.value.shape() {
                return Err(Error::Tensor {
                    name,
                    msg: format!("shape {:?}, expected {:?}", v.shape(), p.value.shape()),
                });
            }
            p.value.assign(v);
        }
        Ok(())
    }

    /// Class probabilities in inference mode.
    ///
    /// # Shapes
    /// `x` `[N, ...]` -> `[N, C]`
    pub fn predict_proba(&mut self, x: ArrayD<f32>) -> Array2<f32> {
        let mut rng = Rng::new(0);
        let logits = self.forward(x, &mut Ctx::new(false, &mut rng));
        loss::softmax(logits.into_dimensionality::<Ix2>().expect("logits are [N, C]").view())
    }

    /// Saves the architecture and weights as safetensors, with `metadata` alongside (atomic write).
    pub fn save(&mut self, path: &Path, mut metadata: HashMap<String, String>) -> Result<()> {
        let specs = serde_json::to_string(&self.specs()).expect("specs serialise");
        metadata.insert("graft.layers".into(), specs);
        save_tensors(path, &self.state(), metadata)
    }

    /// Loads what [`Sequential::save`] wrote; returns the model and its metadata.
    pub fn load(path: &Path) -> Result<(Self, HashMap<String, String>)> {
        let (tensors, metadata) = load_tensors(path)?;
        let specs = metadata
            .get("graft.layers")
            .ok_or_else(|| Error::data(path, None, "no `graft.layers` metadata: not a graft model"))?;
        let specs: Vec<LayerSpec> =
            serde_json::from_str(specs).map_err(|e| Error::data(path, None, format!("graft.layers: {e}")))?;
        let mut model = Sequential::new(&specs, &mut Rng::new(0));
        model.load_state(&tensors).map_err(|e| Error::data(path, None, e.to_string()))?;
        Ok((model, metadata))
    }
}

/// Writes f32 tensors and string metadata as a safetensors file, atomically. The bytes depend on the
/// arguments alone (tensors and metadata keys in name order), so identical runs write identical
/// files.
pub fn save_tensors(path: &Path, tensors: &[(String, ArrayD<f32>)], metadata: HashMap<String, String>) -> Result<()> {
    fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
        serde_json::to_string(v).expect("strings and numbers serialise")
    }
    let mut sorted: Vec<&(String, ArrayD<f32>)> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let metadata: BTreeMap<String, String> = metadata.into_iter().collect();
    let mut header = format!("{{\"__metadata__\":{}", json(&metadata));
    let mut offset = 0;
    for (name, a) in &sorted {
        let end = offset + a.len() * 4;
        let shape = json(&a.shape().to_vec());
        header.push_str(&format!(
            ",{}:{{\"dtype\":\"F32\",\"shape\":{shape},\"data_offsets\":[{offset},{end}]}}",
            json(name)
        ));
        offset = end;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    let mut bytes = Vec::with_capacity(8 + header.len() + offset);
    bytes.extend_from_slice(&(header.len() as u64).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    for (_, a) in &sorted {
        bytes.extend(a.iter().flat_map(|v| v.to_le_bytes()));
    }
    io::write_atomic(path, &bytes)
}

/// Reads every f32 tensor and the metadata of a safetensors file.
pub fn load_tensors(path: &Path) -> Result<(Tensors, HashMap<String, String>)> {
    let bytes = io::read(path)?;
    let bad = |e: safetensors::SafeTensorError| Error::data(path, None, e.to_string());
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(bad)?;
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(bad)?;
    let mut out = HashMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(Error::data(path, None, format!("tensor `{name}` is {:?}, expected F32", view.dtype())));
        }
        let data: Vec<f32> =
            view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let array = ArrayD::from_shape_vec(view.shape().to_vec(), data).expect("safetensors shapes are consistent");
        out.insert(name, array);
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_bytes_do_not_depend_on_hash_order() {
        let specs = [LayerSpec::Dense { inputs: 3, units: 2, init: crate::nn::Init::Glorot }];
        let mut model = Sequential::new(&specs, &mut Rng::new(1));
        let dir = tempfile::tempdir().unwrap();
        let save = |model: &mut Sequential, name: &str| {
            let meta: HashMap<String, String> = (0..12).map(|i| (format!("key.{i}"), format!("value {i}"))).collect();
            let path = dir.path().join(name);
            model.save(&path, meta).unwrap();
            std::fs::read(path).unwrap()
        };
        let first = save(&mut model, "a.safetensors");
        for i in 0..4 {
            assert_eq!(save(&mut model, &format!("{i}.safetensors")), first);
        }
        let (loaded, meta) = Sequential::load(&dir.path().join("a.safetensors")).unwrap();
        assert_eq!(meta["key.7"], "value 7");
        let mut loaded = loaded;
        assert_eq!(loaded.state(), model.state());
    }
}
