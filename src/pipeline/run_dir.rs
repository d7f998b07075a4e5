//! A run folder's life: a run is built in `OUT.partial/` (its checkpoints in
//! `OUT.partial/checkpoints/`) and renamed to `OUT` only once every file is written, so a reader
//! never sees a half-finished run and an interrupted one can be resumed.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::PipelineConfig;
use crate::{io, Error, Result};

/// The folders of one run.
#[derive(Clone, Debug)]
pub struct RunDir {
    /// Where the finished run goes.
    pub out: PathBuf,
    /// Where it is built, beside `out`.
    pub partial: PathBuf,
}

/// What is at a run's final path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Found {
    Nothing,
    EmptyFolder,
    /// A graft run folder (finished, or written by an older graft).
    Run,
    /// A file, or a folder holding something else.
    Other,
}

impl RunDir {
    /// The folders of a run that goes to `out`; refuses a path that names no folder (`.`, `/`).
    pub fn new(out: &Path) -> Result<Self> {
        let name = out
            .file_name()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::Invalid(format!("--out {}: name a folder to write the run into", out.display())))?;
        let mut partial_name = name.to_os_string();
        partial_name.push(".partial");
        Ok(RunDir { out: out.to_path_buf(), partial: out.with_file_name(partial_name) })
    }

    /// Where checkpoints (and what they were made from) are kept while the run is built.
    pub fn checkpoints(&self) -> PathBuf {
        self.partial.join("checkpoints")
    }

    /// Decides whether a fit may start, before anything is written: with `resume`, there must be an
    /// interrupted run in [`RunDir::partial`]; without it, `out` must be free (missing or an empty
    /// folder) and there must be no interrupted run, unless `force` (which removes the interrupted
    /// run now and replaces `out` once the new run is complete). A folder that is not a graft run
    /// is never replaced.
    pub fn prepare(&self, resume: bool, force: bool) -> Result<()> {
        let found = found(&self.out);
        if found == Found::Other {
            return Err(Error::Invalid(format!(
                "{}: exists and is not a graft run folder; choose another --out",
                self.out.display()
            )));
        }
        let interrupted = self.checkpoints().join(PIPELINE).is_file();
        if resume {
            if interrupted {
                return Ok(());
            }
            let what = if found == Found::Run { "it is a finished run" } else { "no interrupted run was found" };
            return Err(Error::Invalid(format!(
                "{}: nothing to resume: {what} (no checkpoints in {}); run without --resume to train, \
                 with --force to replace a finished run",
                self.out.display(),
                self.checkpoints().display()
            )));
        }
        if !force {
            if interrupted {
                return Err(Error::Invalid(format!(
                    "{}: holds an interrupted run; continue it with --resume, or start over with --force",
                    self.partial.display()
                )));
            }
            if found == Found::Run {
                return Err(Error::Invalid(format!(
                    "{}: already holds a run; pass --force to replace it, or choose another --out",
                    self.out.display()
                )));
            }
        }
        if self.partial.exists() {
            std::fs::remove_dir_all(&self.partial).map_err(|e| Error::io(&self.partial, e))?;
        }
        Ok(())
    }

    /// Starts a fresh run: records the pipeline and its inputs beside the checkpoints.
    pub fn start(&self, cfg: &PipelineConfig, inputs: &Inputs) -> Result<()> {
        let ck = self.checkpoints();
        io::write_json(&ck.join(PIPELINE), cfg)?;
        io::write_json(&ck.join(INPUTS), inputs)
    }

    /// Checks that an interrupted run was made by the same pipeline from the same inputs.
    pub fn check_resumable(&self, cfg: &PipelineConfig, inputs: &Inputs) -> Result<()> {
        let ck = self.checkpoints();
        let before: PipelineConfig = io::read_json(&ck.join(PIPELINE))?;
        if &before != cfg {
            return Err(Error::Invalid(format!(
                "{}: the pipeline changed since these checkpoints were written; resume with the same \
                 pipeline and --set options, or start over with --force",
                ck.display()
            )));
        }
        let saved = ck.join(INPUTS);
        if saved.is_file() {
            let before: Inputs = io::read_json(&saved)?;
            if let Some(why) = inputs.differs_from(&before) {
                return Err(Error::Invalid(format!(
                    "{}: cannot resume: {why} since these checkpoints were written; restore it, or start \
                     over with --force",
                    ck.display()
                )));
            }
        }
        Ok(())
    }

    /// Whether a failed run should be kept for `--resume`: it holds at least one checkpoint.
    pub fn has_checkpoints(&self) -> bool {
        std::fs::read_dir(self.checkpoints())
            .is_ok_and(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "safetensors")))
    }

    /// Removes the run being built (after a failure that cannot be resumed).
    pub fn discard(&self) {
        // Best effort: the error that made the run fail is the one to report.
        let _ = std::fs::remove_dir_all(&self.partial);
    }

    /// Publishes the finished run: drops its checkpoints and renames [`RunDir::partial`] to `out`,
    /// replacing what is there (an empty folder or a graft run; [`RunDir::prepare`] refused
    /// anything else).
    pub fn commit(&self) -> Result<()> {
        let ck = self.checkpoints();
        if ck.exists() {
            std::fs::remove_dir_all(&ck).map_err(|e| Error::io(&ck, e))?;
        }
        let rename = |from: &Path, to: &Path| std::fs::rename(from, to).map_err(|e| Error::io(to, e));
        match found(&self.out) {
            Found::Nothing => rename(&self.partial, &self.out),
            Found::EmptyFolder => {
                std::fs::remove_dir(&self.out).map_err(|e| Error::io(&self.out, e))?;
                rename(&self.partial, &self.out)
            }
            Found::Run => {
                let mut old_name = self.partial.file_name().expect("named in new").to_os_string();
                old_name.push(".replaced");
                let old = self.partial.with_file_name(old_name);
                if old.exists() {
                    std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
                }
                rename(&self.out, &old)?;
                rename(&self.partial, &self.out)?;
                std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))
            }
            Found::Other => Err(Error::Invalid(format!(
                "{}: exists and is not a graft run folder; the run is kept in {}",
                self.out.display(),
                self.partial.display()
            ))),
        }
    }
}

const PIPELINE: &str = "pipeline.json";
const INPUTS: &str = "inputs.json";

fn found(out: &Path) -> Found {
    if !out.exists() {
        return Found::Nothing;
    }
    if !out.is_dir() {
        return Found::Other;
    }
    let is_run = ["report.json", "model.onnx", "checkpoints/pipeline.json"].iter().any(|f| out.join(f).exists());
    if is_run {
        Found::Run
    } else if std::fs::read_dir(out).is_ok_and(|mut entries| entries.next().is_none()) {
        Found::EmptyFolder
    } else {
        Found::Other
    }
}

/// Fingerprints of a pipeline's input data, recorded when a run starts and compared on `--resume`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Inputs {
    /// `data.path` as configured.
    pub data: PathBuf,
    /// A file: sha256 of its bytes; a folder: sha256 of its files' relative paths and sizes.
    pub sha256: String,
}

impl Inputs {
    /// Reads (and so checks the presence of) the data that `cfg` trains on.
    pub fn of(cfg: &PipelineConfig) -> Result<Self> {
        Ok(Inputs { data: cfg.data.path.clone(), sha256: fingerprint(&cfg.data.path)? })
    }

    fn differs_from(&self, before: &Inputs) -> Option<String> {
        (self.sha256 != before.sha256).then(|| {
            let kind = if self.data.is_dir() { "the files in data folder" } else { "data file" };
            format!("{kind} {} changed", self.data.display())
        })
    }
}

/// sha256 of a file's bytes, or of a folder's listing (relative paths and sizes, sorted); file
/// contents in a folder are covered by the training loop's own check of the examples it trains on.
fn fingerprint(path: &Path) -> Result<String> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    if meta.is_dir() {
        let mut listing = Vec::new();
        list(path, path, &mut listing)?;
        listing.sort();
        for (name, size) in listing {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(size.to_le_bytes());
        }
    } else {
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        std::io::copy(&mut file, &mut h).map_err(|e| Error::io(path, e))?;
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

fn list(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
        if meta.is_dir() {
            list(root, &path, out)?;
        } else {
            let rel = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().into_owned();
            out.push((rel, meta.len()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_in(dir: &Path) -> RunDir {
        RunDir::new(&dir.join("run")).unwrap()
    }

    #[test]
    fn partial_folder_sits_beside_the_run() {
        let r = RunDir::new(Path::new("runs/iris/")).unwrap();
        assert_eq!(r.partial, Path::new("runs/iris.partial"));
        assert!(RunDir::new(Path::new(".")).is_err());
    }

    #[test]
    fn commit_replaces_a_finished_run_only_when_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let r = run_in(tmp.path());
        std::fs::create_dir_all(&r.out).unwrap();
        std::fs::write(r.out.join("report.json"), "old").unwrap();
        assert!(r.prepare(false, false).unwrap_err().to_string().contains("--force"));
        r.prepare(false, true).unwrap();
        assert_eq!(std::fs::read_to_string(r.out.join("report.json")).unwrap(), "old", "kept until commit");
        std::fs::create_dir_all(r.checkpoints()).unwrap();
        std::fs::write(r.partial.join("report.json"), "new").unwrap();
        r.commit().unwrap();
        assert_eq!(std::fs::read_to_string(r.out.join("report.json")).unwrap(), "new");
        assert!(!r.partial.exists());
        assert!(!r.out.join("checkpoints").exists());
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1, "nothing else left beside the run");
    }

    #[test]
    fn never_replaces_a_folder_that_is_not_a_run() {
        let tmp = tempfile::tempdir().unwrap();
        let r = run_in(tmp.path());
        std::fs::create_dir_all(&r.out).unwrap();
        r.prepare(false, false).unwrap();
        std::fs::write(r.out.join("notes.txt"), "mine").unwrap();
        for (resume, force) in [(false, false), (false, true), (true, false)] {
            let err = r.prepare(resume, force).unwrap_err().to_string();
            assert!(err.contains("not a graft run folder"), "{err}");
        }
    }

    #[test]
    fn resume_needs_an_interrupted_run() {
        let tmp = tempfile::tempdir().unwrap();
        let r = run_in(tmp.path());
        assert!(r.prepare(true, false).unwrap_err().to_string().contains("nothing to resume"));
        std::fs::create_dir_all(&r.out).unwrap();
        std::fs::write(r.out.join("model.onnx"), "x").unwrap();
        let err = r.prepare(true, false).unwrap_err().to_string();
        assert!(err.contains("nothing to resume: it is a finished run"), "{err}");
    }

    #[test]
    fn folder_fingerprint_follows_names_and_sizes() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("cat")).unwrap();
        std::fs::write(tmp.path().join("cat/a.jpg"), "aaa").unwrap();
        let before = fingerprint(tmp.path()).unwrap();
        assert_eq!(fingerprint(tmp.path()).unwrap(), before);
        std::fs::write(tmp.path().join("cat/b.jpg"), "b").unwrap();
        assert_ne!(fingerprint(tmp.path()).unwrap(), before);
    }
}
