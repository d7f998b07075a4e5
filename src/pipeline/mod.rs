//! Pipelines compose the stages (data, model, the shared trainer, export, verification) into one
//! `graft fit`; each writes a run folder with `model.onnx`, `report.json`, `report.html`,
//! `curves.png`, `confusion.png` and the native weights.

mod builder;
mod common;
mod finetune;
mod front;
mod head;
mod html;
mod image;
mod lr_find;
mod mistakes;
mod report;
mod run_dir;
mod tabular;
mod text;

pub use builder::{Pipeline, PipelineBuilder, Run};
pub use front::{embed_front, UnfreezeAt};
pub use html::REPORT_HTML;
pub use lr_find::{lr_find, LrFindReport};
pub use report::{
    DataSummary, FineTuneSummary, FoldResult, ImageSummary, Mistake, Phase, Report, TextSummary, Timing,
    ValidationSummary,
};
pub use run_dir::{Inputs, RunDir};

use std::path::PathBuf;

use crate::config::{PipelineConfig, Task};
use crate::train::Session;
use crate::{Error, Result};

/// Where a fit writes and how it runs.
pub struct FitOptions {
    /// The run folder; the run is built in `OUT.partial/` beside it (see [`RunDir`]).
    pub out: PathBuf,
    /// Checkpoints, resumption, progress, stop requests.
    pub session: Session,
    /// Replace a finished run at `out`, or discard an interrupted one, instead of refusing.
    pub force: bool,
}

/// Runs the pipeline `cfg` into `opts.out`; fails (after writing the run folder, report included)
/// when verification fails.
///
/// The run is built in `OUT.partial/` and renamed to `OUT` once every file is written. Before
/// anything is created, the data path must exist and `OUT` must be free (see [`RunDir::prepare`]);
/// a failed fresh run leaves nothing behind, except when it can be resumed (interrupted, or an I/O
/// error such as a full disk after checkpoints were written): then `OUT.partial/` stays for
/// `--resume`, which refuses another pipeline or changed data.
pub fn fit(cfg: &PipelineConfig, mut opts: FitOptions) -> Result<Report> {
    let dir = RunDir::new(&opts.out)?;
    let inputs = Inputs::of(cfg)?;
    let resume = opts.session.resume;
    dir.prepare(resume, opts.force)?;
    if resume {
        dir.check_resumable(cfg, &inputs)?;
    } else {
        dir.start(cfg, &inputs)?;
    }
    opts.session.checkpoint_dir = Some(dir.checkpoints());
    if let Some(logs) = &cfg.train.tensorboard {
        let tb = crate::train::tensorboard::TensorBoard::new(logs.clone());
        opts.session.observers.push(std::sync::Arc::new(std::sync::Mutex::new(tb)));
    }
    let built = match cfg.task {
        Task::Tabular => tabular::fit(cfg, &dir.partial, &mut opts.session),
        Task::Image if cfg.backbone.as_ref().is_some_and(|b| b.fine_tunes()) => {
            finetune::fit(cfg, &dir.partial, &mut opts.session)
        }
        Task::Image => image::fit(cfg, &dir.partial, &mut opts.session),
        Task::TextLstm | Task::TextEncoder => text::fit(cfg, &dir.partial, &mut opts.session),
    };
    let report = match built.and_then(|r| with_html(&dir.partial, r)) {
        Ok(report) => report,
        Err(e) => {
            let resumable =
                matches!(e, Error::Interrupted { .. }) || matches!(e, Error::Io { .. }) && dir.has_checkpoints();
            if !resume && !resumable {
                dir.discard();
            }
            return Err(e);
        }
    };
    dir.commit()?;
    report.verification.ensure()?;
    Ok(report)
}

/// Adds `report.html` to the run being built in `partial` (and to `report.json`'s list of files).
fn with_html(partial: &std::path::Path, mut report: Report) -> Result<Report> {
    report.outputs.push(html::REPORT_HTML.to_string());
    crate::io::write_json(&partial.join("report.json"), &report)?;
    html::write(partial, &report)?;
    Ok(report)
}
