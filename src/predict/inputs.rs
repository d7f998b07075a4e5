//! Which inputs a model can take, checked before anything runs.

use std::path::{Path, PathBuf};

use crate::export::ModelTask;
use crate::{Error, Result};

/// What a model of `task` predicts on, for messages.
pub fn accepts(task: ModelTask) -> &'static str {
    match task {
        ModelTask::Tabular => "one CSV of numeric features",
        ModelTask::Image => "image files and folders of images",
        ModelTask::Text => "a CSV with a text column (--text-column, default `text`) and/or --text \"...\"",
    }
}

/// `a tabular`, `an image`.
pub(super) fn a(task: ModelTask) -> String {
    let vowel = task.as_str().starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {task}", if vowel { "an" } else { "a" })
}

/// What kind of input a path looks like, by its name (folders by the file system).
fn kind_of(p: &Path) -> Option<&'static str> {
    if p.is_dir() {
        return Some("a folder");
    }
    let ext = p.extension().and_then(|e| e.to_str()).unwrap_or_default().to_ascii_lowercase();
    match ext.as_str() {
        "jpg" | "jpeg" | "png" | "webp" | "gif" | "bmp" | "tif" | "tiff" => Some("an image"),
        "csv" | "tsv" | "txt" => Some("a CSV"),
        _ => None,
    }
}

/// Checks, before anything runs, that `inputs` (paths) and `texts` (`--text` values) can be
/// predicted by the `task` model at `model`: an error names the model's task and what it takes.
pub fn check_inputs(model: &Path, task: ModelTask, inputs: &[PathBuf], texts: usize) -> Result<()> {
    let refuse = |what: String| {
        Error::Invalid(format!("{} is {} model: it predicts {}, not {what}", model.display(), a(task), accepts(task)))
    };
    if inputs.is_empty() && texts == 0 {
        return Err(Error::Invalid(format!(
            "{}: nothing to predict: {} model predicts {}",
            model.display(),
            a(task),
            accepts(task)
        )));
    }
    if texts > 0 && task != ModelTask::Text {
        return Err(refuse("--text".into()));
    }
    let wrong = match task {
        ModelTask::Image => ["a CSV"].as_slice(),
        ModelTask::Tabular | ModelTask::Text => ["a folder", "an image"].as_slice(),
    };
    for p in inputs {
        if let Some(k) = kind_of(p).filter(|k| wrong.contains(k)) {
            return Err(refuse(format!("{} ({k})", p.display())));
        }
    }
    if task != ModelTask::Image && inputs.len() > 1 {
        return Err(refuse(format!("{} files", inputs.len())));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(task: ModelTask, inputs: &[&str], texts: usize) -> std::result::Result<(), String> {
        let inputs: Vec<PathBuf> = inputs.iter().map(PathBuf::from).collect();
        check_inputs(Path::new("m.onnx"), task, &inputs, texts).map_err(|e| e.to_string())
    }

    #[test]
    fn inputs_that_cannot_apply_are_refused_naming_the_task() {
        use ModelTask::*;
        let e = check(Image, &["a.jpg"], 1).unwrap_err();
        assert!(e.contains("m.onnx is an image model") && e.contains("not --text"), "{e}");
        let e = check(Tabular, &[], 2).unwrap_err();
        assert!(e.contains("tabular model") && e.contains("--text"), "{e}");
        let e = check(Text, &["photo.JPG"], 0).unwrap_err();
        assert!(e.contains("text model") && e.contains("--text") && e.contains("photo.JPG (an image)"), "{e}");
        let e = check(Image, &["rows.csv"], 0).unwrap_err();
        assert!(e.contains("rows.csv (a CSV)"), "{e}");
        let e = check(Tabular, &["a.csv", "b.csv"], 0).unwrap_err();
        assert!(e.contains("not 2 files"), "{e}");
        let e = check(Text, &[], 0).unwrap_err();
        assert!(e.contains("nothing to predict") && e.contains("--text"), "{e}");
        assert!(check(Text, &["rows.csv"], 2).is_ok(), "a CSV and --text together");
        assert!(check(Image, &["a.jpg", "b.png"], 0).is_ok());
        assert!(check(Tabular, &["rows.csv"], 0).is_ok());
    }
}
