use std::path::Path;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;

use super::{Backend, TensorInfo, Value};
use crate::{Error, Result};

type Plan = std::sync::Arc<TypedRunnableModel>;

/// The pure-Rust engine: loads an ONNX file, optimises it once and runs it with symbolic batch sizes.
pub struct TractBackend {
    plan: Plan,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Backend { backend: "tract", msg: format!("{e:#}") }
}

impl TractBackend {
    /// Loads and optimises the model at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let model = tract_onnx::onnx()
            .model_for_path(path)
            .and_then(|m| m.into_optimized())
            .map_err(|e| Error::Backend { backend: "tract", msg: format!("{}: {e:#}", path.display()) })?;
        let info = |outlets: &[OutletId]| -> Result<Vec<TensorInfo>> {
            outlets
                .iter()
                .map(|o| {
                    let fact = model.outlet_fact(*o).map_err(err)?;
                    Ok(TensorInfo {
                        name: model.node(o.node).name.clone(),
                        dtype: format!("{:?}", fact.datum_type).to_lowercase(),
                        shape: fact.shape.iter().map(|d| d.to_usize().ok()).collect(),
                    })
                })
                .collect()
        };
        let inputs = info(model.input_outlets().map_err(err)?)?;
        let mut outputs = info(model.output_outlets().map_err(err)?)?;
        for (o, label) in outputs.iter_mut().zip(model.output_outlets().map_err(err)?) {
            if let Some(l) = model.outlet_label(*label) {
                o.name = l.to_string();
            }
        }
        let plan = model.into_runnable().map_err(err)?;
        Ok(TractBackend { plan, inputs, outputs })
    }
}

impl Backend for TractBackend {
    fn name(&self) -> &'static str {
        "tract"
    }

    fn inputs(&self) -> &[TensorInfo] {
        &self.inputs
    }

    fn outputs(&self) -> &[TensorInfo] {
        &self.outputs
    }

    fn run(&mut self, mut inputs: Vec<(String, Value)>) -> Result<Vec<(String, Value)>> {
        let mut ordered = TVec::new();
        for info in &self.inputs {
            let pos = inputs
                .iter()
                .position(|(n, _)| *n == info.name)
                .ok_or_else(|| Error::Tensor { name: info.name.clone(), msg: "input not provided".into() })?;
            let tensor: Tensor = match inputs.swap_remove(pos).1 {
                Value::F32(a) => a.into(),
                Value::I64(a) => a.into(),
                Value::U8(a) => a.into(),
            };
            ordered.push(tensor.into_tvalue());
        }
        let outputs = self.plan.run(ordered).map_err(err)?;
        self.outputs
            .iter()
            .zip(outputs)
            .map(|(info, t)| {
                let t = t.into_tensor();
                let v = match t.datum_type() {
                    DatumType::F32 => Value::F32(t.into_plain_array::<f32>().map_err(err)?),
                    DatumType::I64 => Value::I64(t.into_plain_array::<i64>().map_err(err)?),
                    DatumType::U8 => Value::U8(t.into_plain_array::<u8>().map_err(err)?),
                    other => return Err(err(format!("output `{}` has unsupported type {other:?}", info.name))),
                };
                Ok((info.name.clone(), v))
            })
            .collect()
    }
}
