//! Pipelines compose the stages (data, model, the shared trainer, export, verification) into one
//! `graft fit`; each writes a run folder with `model.onnx`, `report.json`, `curves.png`,
//! `confusion.png` and the native weights.

mod head;
mod image;
mod report;
mod tabular;
mod text;

pub use report::{DataSummary, FoldResult, ImageSummary, Mistake, Report, TextSummary, Timing, ValidationSummary};

use std::path::{Path, PathBuf};

use crate::config::{PipelineConfig, Task};
use crate::train::Session;
use crate::{io, Error, Result};

/// Where a fit writes and how it runs.
pub struct FitOptions {
    pub out: PathBuf,
    pub session: Session,
}

/// Runs the pipeline `cfg` into `opts.out`; fails (after writing the report) when verification
/// fails.
pub fn fit(cfg: &PipelineConfig, mut opts: FitOptions) -> Result<Report> {
    std::fs::create_dir_all(&opts.out).map_err(|e| Error::io(&opts.out, e))?;
    let ck = opts.out.join("checkpoints");
    check_resumable(cfg, &ck, opts.session.resume)?;
    opts.session.checkpoint_dir = Some(ck.clone());
    let report = match cfg.task {
        Task::Tabular => tabular::fit(cfg, &opts.out, &mut opts.session)?,
        Task::Image => image::fit(cfg, &opts.out, &mut opts.session)?,
        Task::TextLstm | Task::TextEncoder => text::fit(cfg, &opts.out, &mut opts.session)?,
    };
    report.verification.ensure()?;
    std::fs::remove_dir_all(&ck).map_err(|e| Error::io(&ck, e))?;
    Ok(report)
}

/// With `--resume`, refuses checkpoints made by a different pipeline; without it, starts over.
fn check_resumable(cfg: &PipelineConfig, ck: &Path, resume: bool) -> Result<()> {
    let saved = ck.join("pipeline.json");
    if resume && saved.exists() {
        let before: PipelineConfig = io::read_json(&saved)?;
        if &before != cfg {
            return Err(Error::Invalid(format!(
                "{}: the pipeline changed since these checkpoints were written; run without --resume to start over",
                ck.display()
            )));
        }
    } else if ck.exists() {
        std::fs::remove_dir_all(ck).map_err(|e| Error::io(ck, e))?;
    }
    io::write_json(&saved, cfg)
}
