use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Serialize};

use crate::rng::Rng;

/// Weight initialisation scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Init {
    /// He (Kaiming) normal, `std = sqrt(2 / fan_in)`: for layers followed by ReLU.
    He,
    /// Glorot (Xavier) uniform, `limit = sqrt(6 / (fan_in + fan_out))`: for the rest.
    Glorot,
}

impl Init {
    /// A `[fan_in, fan_out]` matrix drawn from this scheme.
    pub fn matrix(self, fan_in: usize, fan_out: usize, rng: &mut Rng) -> ArrayD<f32> {
        let n = fan_in * fan_out;
        let data: Vec<f32> = match self {
            Init::He => {
                let std = (2.0 / fan_in as f32).sqrt();
                (0..n).map(|_| rng.normal() * std).collect()
            }
            Init::Glorot => {
                let limit = (6.0 / (fan_in + fan_out) as f32).sqrt();
                (0..n).map(|_| (rng.uniform() * 2.0 - 1.0) * limit).collect()
            }
        };
        ArrayD::from_shape_vec(IxDyn(&[fan_in, fan_out]), data).expect("shape matches length")
    }
}
