//! Every layer's [`Layer::to_onnx`] run on tract against its native inference forward pass.

use ndarray::{ArrayD, Axis, IxDyn};

use super::{Ctx, Dense, Dropout, Embedding, Init, Layer, Lstm, MaskedMean, Relu, Standardize};
use crate::backend::{Backend, TractBackend, Value};
use crate::onnx::{pb, Attr, Dim, GraphBuilder, OPSET};
use crate::rng::Rng;

use pb::tensor_proto::DataType;

/// Right-padded rows of different lengths, one empty.
const LENGTHS: [usize; 4] = [5, 2, 0, 3];

/// Runs `layer`'s graph on tract; its output has rank `rank`. `x` is the layer's input (ids as i64
/// when `ids`); with `mask`, an `attention_mask` input (i64 `[B, S]`) feeds the `mask` context as
/// the text export does.
fn tract_output(layer: &dyn Layer, x: &ArrayD<f32>, ids: bool, mask: Option<&ArrayD<i64>>, rank: usize) -> ArrayD<f32> {
    let mut g = GraphBuilder::new("");
    let dims: Vec<Dim> = (0..x.ndim()).map(|i| Dim::Symbol(format!("d{i}"))).collect();
    let mut inputs = Vec::new();
    if ids {
        g.input("x", DataType::Int64, &dims);
        inputs.push(("x".to_string(), Value::I64(x.mapv(|v| v as i64))));
    } else {
        g.input("x", DataType::Float, &dims);
        inputs.push(("x".to_string(), Value::F32(x.clone())));
    }
    if let Some(m) = mask {
        g.input("attention_mask", DataType::Int64, &dims[..2]);
        let mask = g.node("Cast", &["attention_mask"], &[Attr::Int("to", DataType::Float as i64)]);
        g.set_context("mask", &mask);
        inputs.push(("attention_mask".to_string(), Value::I64(m.clone())));
    }
    let y = layer.to_onnx(&mut g, "x").unwrap();
    g.node_to("Identity", &[&y], &[], &["y"]);
    let out_dims: Vec<Dim> = (0..rank).map(|i| Dim::Symbol(format!("y{i}"))).collect();
    g.output("y", DataType::Float, &out_dims);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layer.onnx");
    crate::onnx::save(&path, &g.into_model(OPSET, &[])).unwrap();
    TractBackend::load(&path).unwrap().run_output(inputs, "y").unwrap()
}

/// The native inference output of `layer` with `lengths` in the context.
fn native_output(layer: &mut dyn Layer, x: &ArrayD<f32>, lengths: Option<Vec<usize>>) -> ArrayD<f32> {
    let mut rng = Rng::new(1);
    let mut ctx = Ctx::new(false, &mut rng);
    ctx.lengths = lengths;
    layer.forward(x.clone(), &mut ctx)
}

fn max_diff(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn agrees(layer: &mut dyn Layer, x: ArrayD<f32>, ids: bool, lengths: Option<&[usize]>) {
    let mask = lengths.map(|l| mask(l, x.shape()[1]));
    let native = native_output(layer, &x, lengths.map(<[usize]>::to_vec));
    let onnx = tract_output(layer, &x, ids, mask.as_ref(), native.ndim());
    let diff = max_diff(&native, &onnx);
    assert!(diff < 1e-5, "{:?}: native vs tract differ by {diff}", layer.spec());
}

/// The attention mask of rows with these lengths, `[B, S]`.
fn mask(lengths: &[usize], s: usize) -> ArrayD<i64> {
    ArrayD::from_shape_fn(IxDyn(&[lengths.len(), s]), |i| i64::from(i[1] < lengths[i[0]]))
}

/// Sequences `[B, S, E]` whose padding steps hold arbitrary (non-zero) values.
fn sequences(s: usize, e: usize, seed: u64) -> ArrayD<f32> {
    super::gradcheck::input(&[LENGTHS.len(), s, e], seed)
}

#[test]
fn standardize() {
    let mut l = Standardize::new(vec![1.0, -2.0, 0.5], vec![2.0, 0.5, 1.5]);
    agrees(&mut l, super::gradcheck::input(&[4, 3], 1), false, None);
}

#[test]
fn dense() {
    agrees(&mut Dense::new(3, 5, Init::Glorot, &mut Rng::new(2)), super::gradcheck::input(&[4, 3], 3), false, None);
}

#[test]
fn relu() {
    agrees(&mut Relu::default(), super::gradcheck::input(&[4, 6], 4), false, None);
}

#[test]
fn dropout_is_identity() {
    agrees(&mut Dropout::new(0.5), super::gradcheck::input(&[4, 6], 5), false, None);
}

#[test]
fn embedding() {
    let ids = ArrayD::from_shape_vec(vec![2, 4], vec![3.0, 1.0, 3.0, 0.0, 2.0, 4.0, 0.0, 0.0]).unwrap();
    agrees(&mut Embedding::new(5, 3, &mut Rng::new(6)), ids, true, None);
}

#[test]
fn masked_mean() {
    agrees(&mut MaskedMean::default(), sequences(5, 3, 7), false, Some(&LENGTHS));
}

#[test]
fn lstm_forward_direction() {
    agrees(&mut Lstm::new(3, 4, false, &mut Rng::new(8)), sequences(5, 3, 9), false, Some(&LENGTHS));
}

#[test]
fn lstm_both_directions() {
    agrees(&mut Lstm::new(3, 4, true, &mut Rng::new(10)), sequences(5, 3, 11), false, Some(&LENGTHS));
    agrees(&mut Lstm::new(3, 2, true, &mut Rng::new(12)), sequences(4, 3, 13), false, Some(&[4, 4, 4, 4]));
}

/// The exported bidirectional LSTM's outputs at a row's valid steps are those of the row alone,
/// unpadded: the padding (its amount and its contents) changes nothing.
#[test]
fn lstm_export_ignores_padding() {
    let lstm = Lstm::new(3, 4, true, &mut Rng::new(14));
    let x = sequences(7, 3, 15);
    let batch = tract_output(&lstm, &x, false, Some(&mask(&LENGTHS, 7)), 3);
    for (row, &len) in LENGTHS.iter().enumerate().filter(|(_, &l)| l > 0) {
        let alone = x.index_axis(Axis(0), row).slice_axis(Axis(0), (0..len).into()).insert_axis(Axis(0)).to_owned();
        let alone = tract_output(&lstm, &alone, false, Some(&mask(&[len], len)), 3);
        let valid = batch.index_axis(Axis(0), row).slice_axis(Axis(0), (0..len).into()).insert_axis(Axis(0)).to_owned();
        let diff = max_diff(&valid, &alone);
        assert!(diff < 1e-5, "row {row} (length {len}): alone vs padded differ by {diff}");
    }
}
