//! Test support: tiny one-input graphs and a finite-difference check of a whole [`Tail`]'s
//! backward pass (input gradient and every parameter gradient).

use ndarray::{ArrayD, IxDyn};

use crate::graph::{Tail, Value};
use crate::onnx::{pb, Attr, Dim, GraphBuilder, OPSET};
use crate::rng::Rng;

/// A graph under construction whose input is `x` (f32, shape `shape`).
pub struct Case {
    g: GraphBuilder,
    shape: Vec<usize>,
    opset: i64,
}

/// A reproducible random array.
pub fn param(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut rng = Rng::new(seed);
    ArrayD::from_shape_fn(IxDyn(shape), |_| rng.normal())
}

impl Case {
    /// A graph with input `x` of `shape`.
    pub fn new(shape: &[usize]) -> Self {
        let mut g = GraphBuilder::new("t_");
        let dims: Vec<Dim> = shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
        g.input("x", pb::tensor_proto::DataType::Float, &dims);
        Case { g, shape: shape.to_vec(), opset: OPSET }
    }

    /// Uses opset `v` instead of graft's default.
    pub fn opset(mut self, v: i64) -> Self {
        self.opset = v;
        self
    }

    /// An f32 initializer (trainable when it has more than one element).
    pub fn init(&mut self, v: &ArrayD<f32>) -> String {
        self.g.initializer("w", v)
    }

    /// A one-element f32 constant.
    pub fn scalar(&mut self, v: f32) -> String {
        self.g.initializer("c", &ArrayD::from_elem(IxDyn(&[1]), v))
    }

    /// An i64 constant.
    pub fn ints(&mut self, v: &[i64]) -> String {
        self.g.initializer_i64("i", v, &[v.len() as i64])
    }

    /// Adds a node; returns its output.
    pub fn node(&mut self, op: &str, inputs: &[&str], attrs: &[Attr]) -> String {
        self.g.node(op, inputs, attrs)
    }

    /// The model, whose output is `y`.
    pub fn model(self, y: &str) -> (pb::ModelProto, Vec<usize>) {
        let mut g = self.g;
        g.output(y, pb::tensor_proto::DataType::Float, &[]);
        (g.into_model(self.opset, &[]), self.shape)
    }

    /// The tail from `x` to `y` and a random input.
    pub fn finish(self, y: &str) -> (Tail, ArrayD<f32>) {
        self.finish_with_input(y, |v| v)
    }

    /// Like [`Case::finish`], with `f` applied to every input element (to keep it in a domain).
    pub fn finish_with_input(self, y: &str, f: impl Fn(f32) -> f32) -> (Tail, ArrayD<f32>) {
        let (model, shape) = self.model(y);
        let tail = Tail::new(&model, "x", Some(y)).expect("the test graph builds");
        (tail, param(&shape, 77).mapv(f))
    }
}

/// Checks the tail's backward pass against central differences of `L = sum(y * r)` for a fixed
/// random `r`, for the input gradient and every parameter element.
pub fn grad_check((mut tail, x): (Tail, ArrayD<f32>)) {
    let mut rng = Rng::new(99);
    let y = tail.forward(x.clone(), Vec::new(), true).unwrap();
    let r = y.mapv(|_| rng.normal());
    let loss = |tail: &mut Tail, x: ArrayD<f32>| -> f64 {
        let y = tail.forward(x, Vec::new(), false).unwrap();
        y.iter().zip(r.iter()).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
    };
    let dx = tail.backward(r.clone(), true).unwrap().expect("input gradient");
    assert_eq!(dx.shape(), x.shape());
    let analytic: Vec<ArrayD<f32>> = tail.params().iter().map(|p| p.grad.clone()).collect();
    let eps = 1e-2f32;
    let close = |num: f64, ana: f32, what: &str| {
        let tol = 2e-2 * (1.0 + num.abs().max(ana.abs() as f64));
        assert!((num - ana as f64).abs() < tol, "{what}: numeric {num} vs analytic {ana}");
    };
    for i in 0..x.len() {
        let (mut hi, mut lo) = (x.clone(), x.clone());
        hi.as_slice_mut().unwrap()[i] += eps;
        lo.as_slice_mut().unwrap()[i] -= eps;
        let num = (loss(&mut tail, hi) - loss(&mut tail, lo)) / (2.0 * eps as f64);
        close(num, dx.as_slice().unwrap()[i], &format!("input[{i}]"));
    }
    for (k, grad) in analytic.iter().enumerate() {
        for i in 0..grad.len() {
            let nudge = |tail: &mut Tail, d: f32| tail.params()[k].value.as_slice_mut().unwrap()[i] += d;
            nudge(&mut tail, eps);
            let hi = loss(&mut tail, x.clone());
            nudge(&mut tail, -2.0 * eps);
            let lo = loss(&mut tail, x.clone());
            nudge(&mut tail, eps);
            close((hi - lo) / (2.0 * eps as f64), grad.as_slice().unwrap()[i], &format!("param {k}[{i}]"));
        }
    }
}

/// Runs the tail once on `x` (inference).
pub fn run(tail: &mut Tail, x: ArrayD<f32>) -> ArrayD<f32> {
    tail.forward(x, Vec::<(String, Value)>::new(), false).unwrap()
}

/// Checks the backward pass of a large tail along one random direction: `<dL/dx, v>` against
/// `(L(x + eps v) - L(x - eps v)) / 2 eps`, and likewise for all parameters at once, with
/// `L = sum(y * r)`. Returns the relative errors `(input, parameters)`.
pub fn directional_check(tail: &mut Tail, x: ArrayD<f32>, side: Vec<(String, Value)>, eps: f32) -> (f64, f64) {
    let y = tail.forward(x.clone(), side.clone(), true).unwrap();
    let r = param(y.shape(), 11);
    let dx = tail.backward(r.clone(), true).unwrap().unwrap();
    let grads: Vec<ArrayD<f32>> = tail.params().iter().map(|p| p.grad.clone()).collect();
    let loss = |tail: &mut Tail, x: ArrayD<f32>| -> f64 {
        let y = tail.forward(x, side.clone(), false).unwrap();
        y.iter().zip(r.iter()).map(|(a, b)| (*a as f64) * (*b as f64)).sum()
    };
    let dot =
        |a: &ArrayD<f32>, b: &ArrayD<f32>| a.iter().zip(b.iter()).map(|(p, q)| (*p as f64) * (*q as f64)).sum::<f64>();
    let rel = |num: f64, ana: f64| (num - ana).abs() / (num.abs().max(ana.abs()) + 1e-6);
    let v = param(x.shape(), 12);
    let ana_x = dot(&dx, &v);
    let num_x = (loss(tail, &x + &(&v * eps)) - loss(tail, &x - &(&v * eps))) / (2.0 * eps as f64);
    let vs: Vec<ArrayD<f32>> = grads.iter().enumerate().map(|(i, g)| param(g.shape(), 100 + i as u64)).collect();
    let ana_p: f64 = grads.iter().zip(&vs).map(|(g, v)| dot(g, v)).sum();
    let nudge = |tail: &mut Tail, d: f32| {
        for (p, v) in tail.params().into_iter().zip(&vs) {
            p.value.scaled_add(d, v);
        }
    };
    nudge(tail, eps);
    let hi = loss(tail, x.clone());
    nudge(tail, -2.0 * eps);
    let lo = loss(tail, x.clone());
    nudge(tail, eps);
    (rel(num_x, ana_x), rel((hi - lo) / (2.0 * eps as f64), ana_p))
}
