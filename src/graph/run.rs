//! The forward and backward passes of a [`Tail`].

use ndarray::ArrayD;

use super::ops::par;
use super::value::Value;
use super::{Step, Tail};
use crate::{Error, Result};

fn step_error(step: &Step, msg: String) -> Error {
    Error::onnx(format!("node `{}` ({})", step.name, step.op_type), msg)
}

impl Tail {
    /// Runs the tail on `x` (the start tensor) and the side inputs, by name; returns the end tensor.
    /// With `train`, every intermediate tensor is kept for [`Tail::backward`].
    ///
    /// # Shapes
    /// `x`: the start tensor's shape in the backbone (e.g. `[N, S, 384]` or `[N, C, H, W]`);
    /// side inputs: as in the backbone (e.g. the mask `[N, 1, 1, S]`); returns the end tensor.
    pub fn forward(&mut self, x: ArrayD<f32>, side: Vec<(String, Value)>, train: bool) -> Result<ArrayD<f32>> {
        self.live.iter_mut().for_each(|v| *v = None);
        self.live[self.start] = Some(Value::F32(x));
        for (name, v) in side {
            let slot = self.side.iter().copied().find(|&s| self.names[s] == name).ok_or_else(|| Error::Tensor {
                name: name.clone(),
                msg: format!("is not a side input of the tail (it reads: {})", self.side_inputs().join(", ")),
            })?;
            self.live[slot] = Some(v);
        }
        if let Some(&s) = self.side.iter().find(|&&s| self.live[s].is_none()) {
            return Err(Error::Tensor {
                name: self.names[s].clone(),
                msg: "side input of the tail was not given".into(),
            });
        }
        self.moved.iter_mut().for_each(|m| *m = None);
        for step in &self.steps {
            // A re-viewing step takes its input instead of copying it (see `fuse::moves`).
            let given = match (step.moves, step.inputs[0]) {
                (true, Some(s)) => match self.live[s].take() {
                    Some(Value::F32(a)) => {
                        self.moved[s] = Some(a.shape().to_vec());
                        Some(a)
                    }
                    other => {
                        self.live[s] = other;
                        None
                    }
                },
                _ => None,
            };
            let mut xs: Vec<Option<&Value>> =
                step.inputs.iter().map(|s| s.and_then(|s| self.fixed[s].as_ref().or(self.live[s].as_ref()))).collect();
            let y = match given {
                Some(a) => {
                    xs[0] = None;
                    step.op.forward_owned(a, &xs).map(Value::F32)
                }
                None => step.op.forward(&xs),
            };
            self.live[step.output] = Some(y.map_err(|m| step_error(step, m))?);
        }
        let out = self.fixed[self.end].as_ref().or(self.live[self.end].as_ref());
        let out = match out {
            // Inside the tail a tensor may keep permuted strides (a lazy Transpose); outside, rows
            // are row-major.
            Some(Value::F32(a)) => par::standard(a.view()),
            Some(other) => {
                let msg = format!("is {}, expected f32", other.dtype());
                return Err(Error::Tensor { name: self.names[self.end].clone(), msg });
            }
            None => return Err(Error::Tensor { name: self.names[self.end].clone(), msg: "was not computed".into() }),
        };
        if !train {
            self.live.iter_mut().for_each(|v| *v = None);
        }
        Ok(out)
    }

    /// Backward pass of the last training forward pass: takes dL/d(end tensor), stores the
    /// parameter gradients (see [`Tail::params`]) and returns dL/d(start tensor) when `input_grad`.
    ///
    /// # Shapes
    /// `dy`: the end tensor's shape; returns the start tensor's shape.
    pub fn backward(&mut self, dy: ArrayD<f32>, input_grad: bool) -> Result<Option<ArrayD<f32>>> {
        if self.live[self.start].is_none() {
            return Err(Error::Invalid("Tail::backward called without a training forward pass".into()));
        }
        let mut grads: Vec<Option<ArrayD<f32>>> = vec![None; self.names.len()];
        let no_output = Value::F32(ArrayD::zeros(ndarray::IxDyn(&[0])));
        grads[self.end] = Some(dy);
        for step in self.steps.iter().rev() {
            let Some(dy) = grads[step.output].take() else { continue };
            let want: Vec<bool> =
                step.want.iter().zip(&step.inputs).map(|(w, s)| *w && (input_grad || *s != Some(self.start))).collect();
            if !want.iter().any(|w| *w) {
                continue;
            }
            let get = |s: usize| self.fixed[s].as_ref().or(self.live[s].as_ref());
            let xs: Vec<Option<&Value>> = step.inputs.iter().map(|s| s.and_then(get)).collect();
            let given = step.inputs[0].and_then(|s| self.moved[s].as_deref());
            let dxs = match (get(step.output), given) {
                (_, Some(shape)) => Ok(vec![Some(step.op.vjp_view(shape, dy).map_err(|m| step_error(step, m))?)]),
                (Some(y), None) => step.op.vjp_owned(&xs, y, dy, &want),
                // Given away to the re-viewing step after it: this op's VJP does not read it.
                (None, None) if !step.op.needs_output() => step.op.vjp_owned(&xs, &no_output, dy, &want),
                (None, None) => return Err(step_error(step, "its output was not kept".into())),
            };
            let dxs = dxs.map_err(|m| step_error(step, m))?;
            for ((g, s), w) in dxs.into_iter().zip(&step.inputs).zip(&want) {
                let (Some(g), Some(s), true) = (g, s, *w) else { continue };
                let expected = self.moved[*s].clone().or_else(|| xs_shape(&xs, &step.inputs, *s));
                if Some(g.shape()) != expected.as_deref() {
                    return Err(step_error(
                        step,
                        format!("gradient of `{}` has shape {:?}", self.names[*s], g.shape()),
                    ));
                }
                match &mut grads[*s] {
                    Some(acc) => par::zip_in_place(acc, &g, |a, b| a + b),
                    slot => *slot = Some(g),
                }
            }
        }
        for (k, &s) in self.params.iter().enumerate() {
            match grads[s].take() {
                // Gradients of transposes and slices may be strided.
                Some(g) => self.grads[k] = par::into_standard(g),
                None => self.grads[k].fill(0.0),
            }
        }
        Ok(if input_grad { grads[self.start].take().map(par::into_standard) } else { None })
    }
}

fn xs_shape(xs: &[Option<&Value>], inputs: &[Option<usize>], slot: usize) -> Option<Vec<usize>> {
    inputs.iter().position(|s| *s == Some(slot)).and_then(|i| xs[i]).map(|v| v.shape().to_vec())
}
