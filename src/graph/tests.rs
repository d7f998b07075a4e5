//! Tail-level tests: partitioning, parameters, side inputs and the errors given before any work.

use ndarray::{ArrayD, IxDyn};

use super::ops::check::{grad_check, param, run, Case};
use super::{Tail, Value};
use crate::onnx::Attr;

#[test]
fn unsupported_op_is_one_error_naming_the_op_and_the_node() {
    let mut c = Case::new(&[2, 3]);
    let r = c.node("Relu", &["x"], &[]);
    let y = c.node("Cos", &[&r], &[]);
    let (model, _) = c.model(&y);
    let e = Tail::new(&model, "x", None).err().expect("Cos is not supported").to_string();
    assert!(e.contains("`Cos`") && e.contains("Cos_node"), "{e}");
    assert!(e.contains("supported: "), "the message lists what is supported: {e}");
}

#[test]
fn unfreeze_point_that_does_not_exist_or_leaves_nothing() {
    let mut c = Case::new(&[2, 3]);
    let y = c.node("Relu", &["x"], &[]);
    let k = c.node("Constant", &[], &[Attr::Floats("value_floats", vec![1.0])]);
    let (model, _) = c.model(&y);
    let e = Tail::new(&model, "no_such_tensor", None).err().unwrap().to_string();
    assert!(e.contains("`no_such_tensor`") && e.contains("no node produces"), "{e}");
    let e = Tail::new(&model, &y, None).err().unwrap().to_string();
    assert!(e.contains("no tail is left"), "{e}");
    let e = Tail::new(&model, "x", Some(&k)).err().unwrap().to_string();
    assert!(e.contains("does not depend on it"), "{e}");
}

/// A tensor computed outside the tail (here from a second graph input) is a side input: not
/// trained, fed with each batch, and named when missing. Scalars and shared initializers stay
/// constants.
#[test]
fn side_inputs_shared_initializers_and_scalars_are_not_parameters() {
    let mut c = Case::new(&[2, 3]);
    let shared = c.init(&param(&[3], 1));
    let own = c.init(&param(&[3], 2));
    let half = c.scalar(0.5);
    // The "frozen" front: front = x * shared; mask = Relu(x) (read by the tail as a side input).
    let front = c.node("Mul", &["x", &shared], &[]);
    let mask = c.node("Relu", &["x"], &[]);
    let a = c.node("Add", &[&front, &own], &[]);
    let b = c.node("Mul", &[&a, &shared], &[]);
    let d = c.node("Mul", &[&b, &half], &[]);
    let y = c.node("Add", &[&d, &mask], &[]);
    let (model, _) = c.model(&y);
    let mut tail = Tail::new(&model, &front, None).unwrap();
    assert_eq!(tail.param_names(), vec![own.as_str()], "`shared` is read by the front, `half` is a scalar");
    assert_eq!(tail.side_inputs(), vec![mask.as_str()]);
    assert_eq!(tail.param_count(), 3);
    let x = param(&[2, 3], 3);
    let e = tail.forward(x.clone(), Vec::new(), false).err().unwrap().to_string();
    assert!(e.contains(&mask) && e.contains("not given"), "{e}");
    let m = ArrayD::from_elem(IxDyn(&[2, 3]), 2.0f32);
    let out = tail.forward(x.clone(), vec![(mask.clone(), Value::F32(m))], true).unwrap();
    let s = crate::graph::ops::check::param(&[3], 1);
    let o = crate::graph::ops::check::param(&[3], 2);
    let want = ((x[[1, 2]] + o[[2]]) * s[[2]]) * 0.5 + 2.0;
    assert!((out[[1, 2]] - want).abs() < 1e-5, "{} vs {want}", out[[1, 2]]);
    let dx = tail.backward(ArrayD::ones(IxDyn(&[2, 3])), true).unwrap().unwrap();
    assert!((dx[[0, 1]] - s[[1]] * 0.5).abs() < 1e-6);
    assert!((tail.params()[0].grad[[1]] - 2.0 * s[[1]] * 0.5).abs() < 1e-5, "summed over the batch");
}

/// A whole transformer-style block checked end to end: every parameter gradient through
/// MatMul, Reshape, Transpose, Softmax with an additive mask, GELU with Erf, residuals and
/// LayerNormalization.
#[test]
fn attention_block_gradients() {
    let (n, s, h, heads) = (2, 3, 4, 2);
    let mut c = Case::new(&[n, s, h]);
    let proj = |c: &mut Case, x: &str, seed| {
        let w = c.init(&param(&[h, h], seed).mapv(|v| v * 0.5));
        let b = c.init(&param(&[h], seed + 50));
        let m = c.node("MatMul", &[x, &w], &[]);
        c.node("Add", &[&m, &b], &[])
    };
    let shp = c.ints(&[0, 0, heads as i64, (h / heads) as i64]);
    let split = |c: &mut Case, t: &str, perm: Vec<i64>| {
        let r = c.node("Reshape", &[t, &shp], &[]);
        c.node("Transpose", &[&r], &[Attr::Ints("perm", perm)])
    };
    let (q, k, v) = (proj(&mut c, "x", 1), proj(&mut c, "x", 2), proj(&mut c, "x", 3));
    let (q, k, v) =
        (split(&mut c, &q, vec![0, 2, 1, 3]), split(&mut c, &k, vec![0, 2, 3, 1]), split(&mut c, &v, vec![0, 2, 1, 3]));
    let scores = c.node("MatMul", &[&q, &k], &[]);
    let scale = c.scalar(0.7);
    let scaled = c.node("Mul", &[&scores, &scale], &[]);
    let mask = c.init(&ArrayD::from_shape_vec(IxDyn(&[n, 1, 1, s]), vec![0.0, 0.0, 0.0, 0.0, 0.0, -1e4]).unwrap());
    let masked = c.node("Add", &[&scaled, &mask], &[]);
    let p = c.node("Softmax", &[&masked], &[Attr::Int("axis", -1)]);
    let ctx = c.node("MatMul", &[&p, &v], &[]);
    let ctx = c.node("Transpose", &[&ctx], &[Attr::Ints("perm", vec![0, 2, 1, 3])]);
    let merge = c.ints(&[0, 0, h as i64]);
    let ctx = c.node("Reshape", &[&ctx, &merge], &[]);
    let o = proj(&mut c, &ctx, 4);
    let res = c.node("Add", &[&o, "x"], &[]);
    let (g, b) = (c.init(&param(&[h], 5)), c.init(&param(&[h], 6)));
    let ln = c.node("LayerNormalization", &[&res, &g, &b], &[Attr::Float("epsilon", 1e-5)]);
    let sqrt2 = c.scalar(std::f32::consts::SQRT_2);
    let half = c.scalar(0.5);
    let one = c.scalar(1.0);
    let d = c.node("Div", &[&ln, &sqrt2], &[]);
    let e = c.node("Erf", &[&d], &[]);
    let e1 = c.node("Add", &[&e, &one], &[]);
    let hx = c.node("Mul", &[&ln, &half], &[]);
    let gelu = c.node("Mul", &[&hx, &e1], &[]);
    let (tail, x) = c.finish(&gelu);
    assert_eq!(tail.side_inputs(), Vec::<&str>::new());
    // Eight projection tensors, the mask (f32, trainable by the rule: nothing else reads it), LN's two.
    assert_eq!(tail.param_names().len(), 11);
    grad_check((tail, x));
}

/// LayerNorm as older BERT exports write it out, with a live f32 `Cast` in the chain.
#[test]
fn written_out_layer_norm_and_cast_gradients() {
    let mut c = Case::new(&[2, 3, 5]);
    let xc = c.node("Cast", &["x"], &[Attr::Int("to", 1)]);
    let mean = c.node("ReduceMean", &[&xc], &[Attr::Ints("axes", vec![-1])]);
    let d = c.node("Sub", &[&xc, &mean], &[]);
    let two = c.scalar(2.0);
    let sq = c.node("Pow", &[&d, &two], &[]);
    let var = c.node("ReduceMean", &[&sq], &[Attr::Ints("axes", vec![-1])]);
    let eps = c.scalar(1e-5);
    let ve = c.node("Add", &[&var, &eps], &[]);
    let sd = c.node("Sqrt", &[&ve], &[]);
    let norm = c.node("Div", &[&d, &sd], &[]);
    let g = c.init(&param(&[5], 1));
    let y = c.node("Mul", &[&norm, &g], &[]);
    grad_check(c.finish(&y));
}

#[test]
fn inference_forward_frees_intermediates_and_backward_then_refuses() {
    let mut c = Case::new(&[2, 3]);
    let y = c.node("Tanh", &["x"], &[]);
    let (mut tail, x) = c.finish(&y);
    run(&mut tail, x);
    let e = tail.backward(ArrayD::ones(IxDyn(&[2, 3])), true).err().unwrap().to_string();
    assert!(e.contains("without a training forward pass"), "{e}");
}
