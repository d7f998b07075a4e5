//! A run's most confidently wrong evaluated examples, to look at: `mistakes.png` (image runs: a
//! grid of photos with their Grad-CAM heatmaps) and `mistakes.md` (text runs).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use super::head::HeadRun;
use crate::backend::EngineOptions;
use crate::data::{Dataset, Labels};
use crate::explain::{gallery, overlay, Explainer, Tile};
use crate::{io, Result};

/// How many mistakes the gallery and the Markdown list show.
pub const SHOWN: usize = 16;

/// The gallery of an image run.
pub const MISTAKES_PNG: &str = "mistakes.png";

/// The list of a text run.
pub const MISTAKES_MD: &str = "mistakes.md";

/// One wrong prediction: the dataset row, the predicted class and its probability.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Wrong {
    pub row: usize,
    pub predicted: usize,
    pub probability: f32,
}

/// The evaluated rows of `run` predicted wrongly, most confident first (ties: evaluation order).
pub fn ranked(run: &HeadRun, data: &Dataset) -> Vec<Wrong> {
    let predicted = crate::train::metrics::argmax_rows(run.eval_proba.view());
    let mut wrong: Vec<Wrong> = run
        .eval_rows
        .iter()
        .enumerate()
        .filter(|(k, &r)| predicted[*k] != data.y[r])
        .map(|(k, &r)| Wrong { row: r, predicted: predicted[k], probability: run.eval_proba[[k, predicted[k]]] })
        .collect();
    wrong.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    wrong
}

/// Writes `out/mistakes.png`: the [`SHOWN`] most confidently wrong evaluated images of `run`,
/// each with its true label, its predicted label and probability, and the Grad-CAM heatmap of the
/// predicted class from the exported `out/model.onnx` (front on the engine `opts` picks). `file`
/// gives a dataset row's image. Returns the file name, for the run's list of outputs.
pub fn write_images(
    out: &Path,
    (run, data, labels): (&HeadRun, &Dataset, &Labels),
    file: impl Fn(usize) -> PathBuf,
    opts: &EngineOptions,
    name: &str,
) -> Result<&'static str> {
    let wrong: Vec<Wrong> = ranked(run, data).into_iter().take(SHOWN).collect();
    let mut tiles = Vec::with_capacity(wrong.len());
    if !wrong.is_empty() {
        let mut explainer = Explainer::open(&out.join("model.onnx"), opts)?;
        let paths: Vec<PathBuf> = wrong.iter().map(|w| file(w.row)).collect();
        let photos = super::common::load_images(explainer.preprocess(), &paths)?;
        // One image at a time: each is explained for its own predicted class.
        for (w, photo) in wrong.iter().zip(&photos) {
            let cam = explainer.cams(std::slice::from_ref(photo), Some(w.predicted))?.remove(0);
            tiles.push(Tile {
                image: overlay(photo, cam.map.view()),
                truth: labels.0[data.y[w.row]].clone(),
                predicted: labels.0[w.predicted].clone(),
                probability: w.probability,
            });
        }
    }
    let title = format!(
        "{name}: {} most confidently wrong of {} {} images (heatmap: predicted class)",
        tiles.len(),
        run.eval_rows.len(),
        run.evaluated_on
    );
    gallery(&out.join(MISTAKES_PNG), &title, &tiles)?;
    Ok(MISTAKES_PNG)
}

/// Writes `out/mistakes.md`: the [`SHOWN`] most confidently wrong evaluated texts of `run`, with
/// true and predicted label (author) and probability; `text` gives a dataset row's source line and
/// text. Returns the file name, for the run's list of outputs.
pub fn write_texts(
    out: &Path,
    (run, data, labels): (&HeadRun, &Dataset, &Labels),
    text: impl Fn(usize) -> (u64, String),
    name: &str,
) -> Result<&'static str> {
    let wrong = ranked(run, data);
    let mut md = format!("# {name}: most confidently wrong\n\n");
    let _ = writeln!(
        md,
        "{} of {} {} texts are predicted wrongly; the {} most confident:\n",
        wrong.len(),
        run.eval_rows.len(),
        run.evaluated_on,
        wrong.len().min(SHOWN)
    );
    if !wrong.is_empty() {
        md.push_str("| # | line | true | predicted | probability | text |\n|---:|---:|---|---|---:|---|\n");
    }
    for (i, w) in wrong.iter().take(SHOWN).enumerate() {
        let (line, t) = text(w.row);
        let _ = writeln!(
            md,
            "| {} | {line} | {} | {} | {:.3} | {} |",
            i + 1,
            cell(&labels.0[data.y[w.row]]),
            cell(&labels.0[w.predicted]),
            w.probability,
            cell(&t)
        );
    }
    io::write_atomic(&out.join(MISTAKES_MD), md.as_bytes())?;
    Ok(MISTAKES_MD)
}

/// `s` on one line, safe inside a Markdown table cell.
fn cell(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").replace('\\', "\\\\").replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use ndarray::{array, Array2};

    use super::*;
    use crate::train::FitOutcome;

    fn run(eval_rows: Vec<usize>, eval_proba: Array2<f32>) -> HeadRun {
        HeadRun {
            model: crate::nn::Sequential::new(&[], &mut crate::rng::Rng::new(0)),
            outcome: FitOutcome {
                history: Vec::new(),
                best_epoch: 0,
                stopped_early: false,
                seconds: 0.0,
                earlier_seconds: 0.0,
            },
            folds: Vec::new(),
            curves: Vec::new(),
            train_seconds: 0.0,
            earlier_train_seconds: 0.0,
            evaluated_on: "holdout",
            eval_rows,
            eval_proba,
        }
    }

    /// Only wrong rows, most confident first; the Markdown escapes what would break its table.
    #[test]
    fn texts_list_the_most_confident_mistakes_first() {
        let data = Dataset { x: ndarray::ArrayD::zeros(ndarray::IxDyn(&[4, 1])), y: vec![0, 1, 0, 1] };
        let labels = Labels(vec!["EAP".into(), "HPL".into()]);
        // rows 3, 0, 2 are evaluated: row 3 (HPL) wrong at 0.6, row 0 right, row 2 (EAP) wrong at 0.9.
        let r = run(vec![3, 0, 2], array![[0.6, 0.4], [0.8, 0.2], [0.1, 0.9]]);
        let wrong = ranked(&r, &data);
        assert_eq!(wrong.iter().map(|w| w.row).collect::<Vec<_>>(), [2, 3]);
        let dir = tempfile::tempdir().unwrap();
        let text = |row: usize| (row as u64 + 2, format!("row {row} | with a pipe\nand a newline"));
        write_texts(dir.path(), (&r, &data, &labels), text, "who-said-it").unwrap();
        let md = std::fs::read_to_string(dir.path().join(MISTAKES_MD)).unwrap();
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| 1") || l.starts_with("| 2")).collect();
        assert_eq!(rows[0], "| 1 | 4 | EAP | HPL | 0.900 | row 2 \\| with a pipe and a newline |");
        assert_eq!(rows[1], "| 2 | 5 | HPL | EAP | 0.600 | row 3 \\| with a pipe and a newline |");
        assert!(md.contains("2 of 3 holdout texts"), "{md}");
    }
}
