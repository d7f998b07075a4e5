//! The sliding-window geometry shared by `Conv` and the pools: kernel, strides, pads, dilations.

use super::Attrs;
use crate::graph::value::OpResult;

/// Geometry of a 2-D window op (a 1-D op is run as 2-D with a height of 1).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Kernel height and width (`None`: from the weights).
    pub kernel: Option<[usize; 2]>,
    pub strides: [usize; 2],
    pub dilations: [usize; 2],
    /// Top, left, bottom, right.
    pub pads: [usize; 4],
    auto_pad: String,
    pub ceil_mode: bool,
}

fn pair(v: &[i64], what: &str) -> OpResult<[usize; 2]> {
    match v {
        [a] => Ok([1, *a as usize]),
        [a, b] => Ok([*a as usize, *b as usize]),
        _ => Err(format!("{what} {v:?}: only 1-D and 2-D windows are supported")),
    }
}

impl Window {
    /// Reads `kernel_shape`, `strides`, `dilations`, `pads`, `auto_pad`, `ceil_mode`.
    pub fn new(a: &Attrs) -> OpResult<Self> {
        let kernel = a.ints("kernel_shape").map(|k| pair(&k, "kernel_shape")).transpose()?;
        let strides = a.ints("strides").map_or(Ok([1, 1]), |v| pair(&v, "strides"))?;
        let dilations = a.ints("dilations").map_or(Ok([1, 1]), |v| pair(&v, "dilations"))?;
        let pads = match a.ints("pads").as_deref() {
            None => [0; 4],
            Some([b, e]) => [0, *b as usize, 0, *e as usize],
            Some([t, l, b, r]) => [*t as usize, *l as usize, *b as usize, *r as usize],
            Some(p) => return Err(format!("pads {p:?}: only 1-D and 2-D windows are supported")),
        };
        let auto_pad = a.string("auto_pad", "NOTSET");
        if !["NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"].contains(&auto_pad.as_str()) {
            return Err(format!("auto_pad `{auto_pad}` is not supported"));
        }
        Ok(Window { kernel, strides, dilations, pads, auto_pad, ceil_mode: a.int("ceil_mode", 0) != 0 })
    }

    /// Resolved pads and output size for an input of `[h, w]` and a kernel of `k`.
    pub fn plan(&self, hw: [usize; 2], k: [usize; 2]) -> OpResult<([usize; 4], [usize; 2])> {
        let mut pads = self.pads;
        let mut out = [0; 2];
        for d in 0..2 {
            let span = self.dilations[d] * (k[d] - 1) + 1;
            let s = self.strides[d];
            match self.auto_pad.as_str() {
                "VALID" => (pads[d], pads[d + 2]) = (0, 0),
                "SAME_UPPER" | "SAME_LOWER" => {
                    let o = hw[d].div_ceil(s);
                    let total = ((o - 1) * s + span).saturating_sub(hw[d]);
                    let small = total / 2;
                    (pads[d], pads[d + 2]) =
                        if self.auto_pad == "SAME_UPPER" { (small, total - small) } else { (total - small, small) };
                }
                _ => {}
            }
            let padded = hw[d] + pads[d] + pads[d + 2];
            if padded < span {
                return Err(format!("the window ({span}) is larger than the padded input ({padded})"));
            }
            let steps = padded - span;
            out[d] = if self.ceil_mode { steps.div_ceil(s) } else { steps / s } + 1;
            // With ceil_mode, the last window must start inside the input or its leading pad.
            if self.ceil_mode && (out[d] - 1) * s >= hw[d] + pads[d] {
                out[d] -= 1;
            }
        }
        Ok((pads, out))
    }
}
