//! Epoch-end callbacks: early stopping and reduce-LR-on-plateau. Both watch one monitored loss
//! (validation loss when there is validation data, else training loss). Their state is serialisable
//! so a resumed run behaves exactly like an uninterrupted one. [`EpochObserver`]s are told of every
//! finished epoch (e.g. [`TensorBoard`](super::tensorboard::TensorBoard)).

use serde::{Deserialize, Serialize};

use super::EpochRecord;
use crate::config::{EarlyStoppingConfig, ReduceLrConfig};
use crate::Result;

/// Told of every epoch that a [`fit`](super::fit) of a [`Session`](super::Session) finishes,
/// with its complete record (validation numbers included), before the next one starts.
pub trait EpochObserver: Send + std::fmt::Debug {
    /// `run` names the fit (`holdout`, `fold-2`, `final`, `fine-tune`, ...). An error stops the
    /// fit with that error.
    fn epoch_end(&mut self, run: &str, record: &EpochRecord) -> Result<()>;
}

/// Early stopping state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// The best monitored value so far.
    pub best: Option<f32>,
    /// The epoch it was reached at.
    pub best_epoch: usize,
    /// Epochs since then.
    pub wait: usize,
}

/// What early stopping decided at the end of an epoch.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New best: keep these weights.
    Improved,
    /// No improvement yet within the patience.
    Continue,
    /// Patience exhausted: stop and restore the best weights.
    Stop,
}

impl EarlyStopping {
    /// Records epoch `epoch`'s monitored value.
    pub fn update(&mut self, cfg: &EarlyStoppingConfig, epoch: usize, value: f32) -> Verdict {
        if self.best.is_none_or(|b| value < b - cfg.min_delta) {
            self.best = Some(value);
            self.best_epoch = epoch;
            self.wait = 0;
            return Verdict::Improved;
        }
        self.wait += 1;
        if cfg.patience > 0 && self.wait >= cfg.patience {
            Verdict::Stop
        } else {
            Verdict::Continue
        }
    }
}

/// Reduce-LR-on-plateau state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Plateau {
    /// The best monitored value so far.
    pub best: Option<f32>,
    /// Epochs since it or the last reduction.
    pub wait: usize,
}

impl Plateau {
    /// Records the monitored value; returns the new learning rate when it should change.
    pub fn update(&mut self, cfg: &ReduceLrConfig, value: f32, lr: f32) -> Option<f32> {
        if cfg.patience == 0 {
            return None;
        }
        if self.best.is_none_or(|b| value < b) {
            self.best = Some(value);
            self.wait = 0;
            return None;
        }
        self.wait += 1;
        if self.wait >= cfg.patience && lr > cfg.min_lr {
            self.wait = 0;
            return Some((lr * cfg.factor).max(cfg.min_lr));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_stopping_waits_for_patience() {
        let cfg = EarlyStoppingConfig { patience: 2, min_delta: 0.0 };
        let mut es = EarlyStopping::default();
        assert_eq!(es.update(&cfg, 1, 1.0), Verdict::Improved);
        assert_eq!(es.update(&cfg, 2, 0.5), Verdict::Improved);
        assert_eq!(es.update(&cfg, 3, 0.6), Verdict::Continue);
        assert_eq!(es.update(&cfg, 4, 0.7), Verdict::Stop);
        assert_eq!(es.best_epoch, 2);
    }

    #[test]
    fn plateau_reduces_down_to_min() {
        let cfg = ReduceLrConfig { patience: 1, factor: 0.5, min_lr: 0.3 };
        let mut p = Plateau::default();
        assert_eq!(p.update(&cfg, 1.0, 1.0), None);
        assert_eq!(p.update(&cfg, 1.0, 1.0), Some(0.5));
        assert_eq!(p.update(&cfg, 1.0, 0.5), Some(0.3));
        assert_eq!(p.update(&cfg, 1.0, 0.3), None);
    }
}
