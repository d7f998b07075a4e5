//! Fusion of node chains into one op, after the tail is built:
//! - the erf GELU that BERT exporters write as five nodes, `0.5 x (1 + erf(x / sqrt 2))`, becomes
//!   one pass over the widest activation of a transformer layer (`[N, S, 1536]` in MiniLM)
//!   instead of five, forward and backward;
//! - a `MatMul` by a weight and the `Add` of its bias become one step that adds the bias in
//!   place, instead of a second full-size tensor.
//!
//! Export is untouched: it writes the original graph node for node.

use super::value::Value;
use super::{ops, Step, Tail};

/// Whether `slot` holds the f32 scalar `want` (within 1e-6).
fn scalar(tail: &Tail, slot: Option<usize>, want: f32) -> bool {
    match slot.and_then(|s| tail.fixed[s].as_ref()) {
        Some(Value::F32(a)) => a.len() == 1 && a.iter().all(|v| (v - want).abs() <= 1e-6),
        _ => false,
    }
}

/// For a binary step, its live operand when the other is the constant `c`.
fn with_constant(tail: &Tail, step: &Step, op: &str, c: f32) -> Option<usize> {
    if step.op_type != op || step.inputs.len() != 2 {
        return None;
    }
    let (a, b) = (step.inputs[0], step.inputs[1]);
    if scalar(tail, b, c) {
        a
    } else if op != "Div" && scalar(tail, a, c) {
        b
    } else {
        None
    }
}

/// Replaces every `Mul(x, 0.5)`, `Div(x, sqrt 2)` → `Erf` → `Add(·, 1)`, `Mul(·, ·)` chain whose
/// intermediate tensors nothing else reads by one GELU step.
pub(super) fn gelu(tail: &mut Tail) {
    let readers = readers(tail);
    let producer = |steps: &[Step], slot: usize| steps.iter().position(|s| s.output == slot);
    let mut i = 0;
    while i < tail.steps.len() {
        let found = (|| {
            let last = &tail.steps[i];
            if last.op_type != "Mul" || last.inputs.len() != 2 {
                return None;
            }
            let (p, q) = (last.inputs[0]?, last.inputs[1]?);
            let chain = |half_out: usize, one_out: usize| -> Option<(usize, [usize; 4])> {
                let half = producer(&tail.steps, half_out)?;
                let x = with_constant(tail, &tail.steps[half], "Mul", 0.5)?;
                let add = producer(&tail.steps, one_out)?;
                let erf_out = with_constant(tail, &tail.steps[add], "Add", 1.0)?;
                let erf = producer(&tail.steps, erf_out)?;
                (tail.steps[erf].op_type == "Erf").then_some(())?;
                let div = producer(&tail.steps, tail.steps[erf].inputs.first().copied().flatten()?)?;
                let x2 = with_constant(tail, &tail.steps[div], "Div", std::f32::consts::SQRT_2)?;
                let inner = [half, div, erf, add];
                let single = inner.iter().all(|&k| readers[tail.steps[k].output] == 1);
                (x == x2 && single).then_some((x, inner))
            };
            chain(p, q).or_else(|| chain(q, p))
        })();
        let Some((x, inner)) = found else {
            i += 1;
            continue;
        };
        let want = inner[..2].iter().any(|&k| {
            let s = &tail.steps[k];
            s.inputs.iter().zip(&s.want).any(|(slot, w)| *slot == Some(x) && *w)
        });
        let last = &tail.steps[i];
        let step = Step {
            name: format!("{} (fused GELU)", last.name),
            op_type: "Gelu".into(),
            op: ops::gelu(),
            inputs: vec![Some(x)],
            want: vec![want],
            output: last.output,
            moves: false,
        };
        tail.steps[i] = step;
        let mut gone = inner.to_vec();
        gone.sort_unstable();
        for k in gone.into_iter().rev() {
            tail.steps.remove(k);
        }
        i -= inner.len() - 1;
    }
}

/// Replaces every `MatMul` whose output only an `Add` of a constant row vector reads (the bias of
/// a linear layer, either operand order) by one step that adds the bias in place.
pub(super) fn bias(tail: &mut Tail) {
    let readers = readers(tail);
    let mut i = 0;
    while i < tail.steps.len() {
        let found = (|| {
            let add = &tail.steps[i];
            if add.op_type != "Add" || add.inputs.len() != 2 {
                return None;
            }
            let is_product = |s: Option<usize>| {
                let s = s?;
                let k = tail.steps[..i].iter().position(|p| p.output == s && p.op_type == "MatMul")?;
                (readers[s] == 1).then_some(k)
            };
            let row = |s: Option<usize>, n: usize| match s.and_then(|s| tail.fixed[s].as_ref()) {
                Some(Value::F32(b)) => b.shape() == [n],
                _ => false,
            };
            let (k, b) = match (is_product(add.inputs[0]), is_product(add.inputs[1])) {
                (Some(k), _) => (k, add.inputs[1]),
                (_, Some(k)) => (k, add.inputs[0]),
                _ => return None,
            };
            let n = match tail.fixed[tail.steps[k].inputs[1]?].as_ref() {
                Some(Value::F32(w)) if w.ndim() == 2 => w.shape()[1],
                _ => return None,
            };
            row(b, n).then_some((k, b))
        })();
        let Some((k, b)) = found else {
            i += 1;
            continue;
        };
        let add = tail.steps.remove(i);
        let bias_want = add.inputs.iter().zip(&add.want).any(|(s, w)| *s == b && *w);
        let product = &mut tail.steps[k];
        product.name = format!("{} + {} (fused bias)", product.name, add.name);
        product.op_type = "MatMulBias".into();
        product.op = ops::matmul_bias();
        product.inputs.push(b);
        product.want.push(bias_want);
        product.output = add.output;
    }
}

/// Marks the steps that may take their input 0 instead of copying it (reshapes, transposes and
/// Identity after a product, say): the op re-views it, no other step reads it, it is not the
/// start, the end, a side input or a constant, and the step that made it does not read its own
/// output in its VJP.
pub(super) fn moves(tail: &mut Tail) {
    let readers = readers(tail);
    for i in 0..tail.steps.len() {
        let Some(Some(s)) = tail.steps[i].inputs.first().copied() else { continue };
        let producer = tail.steps[..i].iter().find(|p| p.output == s);
        tail.steps[i].moves = tail.steps[i].op.re_views()
            && readers[s] == 1
            && s != tail.start
            && s != tail.end
            && !tail.side.contains(&s)
            && tail.fixed[s].is_none()
            && producer.is_some_and(|p| !p.op.needs_output());
    }
}

/// How many steps read each slot (the tail's end counts as one more reader).
fn readers(tail: &Tail) -> Vec<usize> {
    let mut readers = vec![0usize; tail.names.len()];
    for s in tail.steps.iter().flat_map(|s| s.inputs.iter().flatten()) {
        readers[*s] += 1;
    }
    readers[tail.end] += 1;
    readers
}

#[cfg(test)]
mod tests {
    use crate::graph::ops::check::{grad_check, param, run, Case};
    use crate::graph::ops::erf;
    use crate::onnx::Attr;

    /// `y = W2 · gelu(W1 · x)` with GELU written out as BERT exporters do; `swap` writes the
    /// commutative operands the other way round; `leak` also reads the `Erf` output elsewhere.
    fn case(swap: bool, leak: bool) -> (crate::graph::Tail, ndarray::ArrayD<f32>) {
        let mut c = Case::new(&[3, 4]);
        let w1 = c.init(&param(&[4, 5], 1));
        let h = c.node("MatMul", &["x", &w1], &[]);
        let (half, sqrt2, one) = (c.scalar(0.5), c.scalar(std::f32::consts::SQRT_2), c.scalar(1.0));
        let m = if swap { c.node("Mul", &[&half, &h], &[]) } else { c.node("Mul", &[&h, &half], &[]) };
        let d = c.node("Div", &[&h, &sqrt2], &[]);
        let e = c.node("Erf", &[&d], &[]);
        let a = if swap { c.node("Add", &[&one, &e], &[]) } else { c.node("Add", &[&e, &one], &[]) };
        let mut g = if swap { c.node("Mul", &[&a, &m], &[]) } else { c.node("Mul", &[&m, &a], &[]) };
        if leak {
            g = c.node("Add", &[&g, &e], &[]);
        }
        let w2 = c.init(&param(&[5, 2], 2));
        let y = c.node("MatMul", &[&g, &w2], &[]);
        c.finish(&y)
    }

    #[test]
    fn the_written_out_gelu_becomes_one_step_with_the_same_values_and_gradients() {
        for swap in [false, true] {
            let (mut tail, x) = case(swap, false);
            let ops: Vec<&str> = tail.steps.iter().map(|s| s.op_type.as_str()).collect();
            assert_eq!(ops, ["MatMul", "Gelu", "MatMul"], "swap {swap}");
            let (mut plain, _) = case(swap, true);
            assert_eq!(plain.steps.len(), 8, "the Erf output is read twice: nothing fused");
            let two_d = |a: ndarray::ArrayD<f32>| a.into_dimensionality::<ndarray::Ix2>().unwrap();
            let h = two_d(x.clone()).dot(&two_d(param(&[4, 5], 1)));
            let gelu = h.mapv(|v| 0.5 * v * (1.0 + erf(v / std::f32::consts::SQRT_2)));
            let want = gelu.dot(&two_d(param(&[5, 2], 2)));
            let got = run(&mut tail, x.clone());
            for (g, w) in got.iter().zip(want.iter()) {
                assert!((g - w).abs() < 1e-5, "{g} vs {w}");
            }
            let _ = run(&mut plain, x.clone());
            grad_check((tail, x));
        }
    }

    /// `y = (x W1 + b1) W2 + b2` on `[2, 3, 4]` rows, the first bias written before the product;
    /// `leak` also reads the first product elsewhere (not fused).
    fn linear(leak: bool) -> (crate::graph::Tail, ndarray::ArrayD<f32>) {
        let mut c = Case::new(&[2, 3, 4]);
        let (w1, b1) = (c.init(&param(&[4, 5], 3)), c.init(&param(&[5], 4)));
        let h = c.node("MatMul", &["x", &w1], &[]);
        let mut a = c.node("Add", &[&b1, &h], &[]);
        if leak {
            a = c.node("Add", &[&a, &h], &[]);
        }
        let (w2, b2) = (c.init(&param(&[5, 2], 5)), c.init(&param(&[2], 6)));
        let p = c.node("MatMul", &[&a, &w2], &[]);
        let y = c.node("Add", &[&p, &b2], &[]);
        c.finish(&y)
    }

    #[test]
    fn a_product_and_its_bias_become_one_step_with_the_same_values_and_gradients() {
        let (mut tail, x) = linear(false);
        let ops: Vec<&str> = tail.steps.iter().map(|s| s.op_type.as_str()).collect();
        assert_eq!(ops, ["MatMulBias", "MatMulBias"]);
        let (plain, _) = linear(true);
        let ops: Vec<&str> = plain.steps.iter().map(|s| s.op_type.as_str()).collect();
        assert_eq!(ops, ["MatMul", "Add", "Add", "MatMulBias"], "a product read twice keeps its Add");
        let rows = x.clone().into_shape_with_order((6, 4)).unwrap();
        let two_d = |a: ndarray::ArrayD<f32>| a.into_dimensionality::<ndarray::Ix2>().unwrap();
        let h = rows.dot(&two_d(param(&[4, 5], 3))) + param(&[5], 4).into_dimensionality::<ndarray::Ix1>().unwrap();
        let want = h.dot(&two_d(param(&[5, 2], 5))) + param(&[2], 6).into_dimensionality::<ndarray::Ix1>().unwrap();
        let got = run(&mut tail, x.clone());
        assert_eq!(got.shape(), [2, 3, 2]);
        for (g, w) in got.iter().zip(want.iter()) {
            assert!((g - w).abs() < 1e-5, "{g} vs {w}");
        }
        grad_check((tail, x));
    }

    /// `MatMul` → `Reshape` → `Transpose` → `MatMul` with another reader: the reshape and the
    /// transpose take their inputs (nothing else reads them, and `MatMul` and `Reshape` do not
    /// read their own outputs in their VJPs); a `Softmax` output (read by its own VJP) and a
    /// tensor read twice are copied.
    #[test]
    fn re_viewing_steps_take_their_inputs_when_nothing_else_needs_them() {
        let mut c = Case::new(&[2, 3, 4]);
        let w = c.init(&param(&[4, 6], 7));
        let h = c.node("MatMul", &["x", &w], &[]);
        let shape = c.ints(&[2, 3, 2, 3]);
        let r = c.node("Reshape", &[&h, &shape], &[]);
        let t = c.node("Transpose", &[&r], &[Attr::Ints("perm", vec![0, 2, 1, 3])]);
        let sm = c.node("Softmax", &[&t], &[Attr::Int("axis", -1)]);
        let back = c.ints(&[2, 3, 6]);
        let t2 = c.node("Transpose", &[&sm], &[Attr::Ints("perm", vec![0, 2, 1, 3])]);
        let r2 = c.node("Reshape", &[&t2, &back], &[]);
        let id = c.node("Identity", &[&r2], &[]);
        let twice = c.node("Add", &[&id, &r2], &[]);
        let (tail, x) = c.finish(&twice);
        let moves: Vec<(&str, bool)> = tail.steps.iter().map(|s| (s.op_type.as_str(), s.moves)).collect();
        let want = [
            ("MatMul", false),
            ("Reshape", true),
            ("Transpose", true),
            ("Softmax", false),
            ("Transpose", false),
            ("Reshape", true),
            ("Identity", false),
            ("Add", false),
        ];
        assert_eq!(moves, want);
        grad_check((tail, x));
    }
}
