use std::collections::HashMap;
use std::path::Path;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::DimLike;
use tract_onnx::tract_core::tract_linalg::multithread::Executor;
use tract_onnx::tract_hir::infer::Factoid;

use super::{Backend, TensorInfo, Value};
use crate::{Error, Result};

type Plan = std::sync::Arc<TypedRunnableModel>;

/// The pure-Rust engine. The graph is parsed once; an optimised plan is built per distinct set of
/// input shapes (tract optimises far better with concrete shapes than with a symbolic batch).
pub struct TractBackend {
    model: InferenceModel,
    plans: HashMap<Vec<Vec<usize>>, Plan>,
    inputs: Vec<TensorInfo>,
    outputs: Vec<TensorInfo>,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Backend { backend: "tract", msg: format!("{e:#}") }
}

impl TractBackend {
    /// Parses the model at `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let fail = |e: TractError| Error::Backend { backend: "tract", msg: format!("{}: {e:#}", path.display()) };
        let model = tract_onnx::onnx().model_for_path(path).map_err(fail)?;
        // Declared facts only: typing the whole graph with a symbolic batch can fail (LSTM) where
        // the concrete plans built per input shape work.
        let info = |outlets: &[OutletId], input: bool| -> Result<Vec<TensorInfo>> {
            outlets
                .iter()
                .map(|o| {
                    let fact = model.outlet_fact(*o).map_err(err)?;
                    let node = model.node(o.node).name.clone();
                    let name = if input { node } else { model.outlet_label(*o).map(str::to_string).unwrap_or(node) };
                    let dtype =
                        fact.datum_type.concretize().map_or("?".to_string(), |d| format!("{d:?}").to_lowercase());
                    let shape = fact.shape.dims().map(|d| d.concretize().and_then(|d| d.to_usize().ok())).collect();
                    Ok(TensorInfo { name, dtype, shape })
                })
                .collect()
        };
        let inputs = info(model.input_outlets().map_err(err)?, true)?;
        let outputs = info(model.output_outlets().map_err(err)?, false)?;
        Ok(TractBackend { model, plans: HashMap::new(), inputs, outputs })
    }

    fn plan(&mut self, values: &[(DatumType, Vec<usize>)]) -> Result<Plan> {
        let key: Vec<Vec<usize>> = values.iter().map(|(_, s)| s.clone()).collect();
        if let Some(p) = self.plans.get(&key) {
            return Ok(p.clone());
        }
        let mut m = self.model.clone();
        for (i, (dt, shape)) in values.iter().enumerate() {
            m.set_input_fact(i, InferenceFact::dt_shape(*dt, shape.clone())).map_err(err)?;
        }
        let options = RunOptions { executor: Some(Executor::RayonGlobal), ..Default::default() };
        // tract panics on some graphs it cannot handle: report those as errors too.
        let plan = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.into_optimized().and_then(|m| m.into_runnable_with_options(&options))
        }))
        .map_err(|_| err("tract panicked while optimising this graph"))?
        .map_err(err)?;
        self.plans.insert(key, plan.clone());
        Ok(plan)
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
        let mut ordered: Vec<Tensor> = Vec::new();
        for info in &self.inputs {
            let pos = inputs
                .iter()
                .position(|(n, _)| *n == info.name)
                .ok_or_else(|| Error::Tensor { name: info.name.clone(), msg: "input not provided".into() })?;
            ordered.push(match inputs.swap_remove(pos).1 {
                Value::F32(a) => a.into(),
                Value::I64(a) => a.into(),
                Value::U8(a) => a.into(),
            });
        }
        let facts: Vec<(DatumType, Vec<usize>)> =
            ordered.iter().map(|t| (t.datum_type(), t.shape().to_vec())).collect();
        let plan = self.plan(&facts)?;
        let outputs = plan.run(ordered.into_iter().map(|t| t.into_tvalue()).collect()).map_err(err)?;
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
