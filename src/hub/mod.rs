//! Models from the Hugging Face hub, through `hf-hub`: pull into the standard cache layout
//! (`$HF_HOME/hub/models--ORG--NAME/{blobs,snapshots,refs}`), resolve offline from that cache,
//! verify what was downloaded, and turn `hf://REPO/PATH[@REV]` references into local paths.

mod reference;

pub use reference::ModelRef;

use std::path::{Path, PathBuf};

use hf_hub::api::sync::ApiBuilder;
use hf_hub::{Cache, Repo, RepoType};
use sha1::Digest as _;

use crate::{io, Error, Result};

/// Hub client settings; [`HubOptions::from_env`] reads `HF_HOME`, `HF_ENDPOINT`, `HF_TOKEN` and
/// `HF_HUB_OFFLINE`.
#[derive(Clone, Debug, Default)]
pub struct HubOptions {
    /// Base URL (default `https://huggingface.co`).
    pub endpoint: Option<String>,
    /// Cache root (default `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    pub token: Option<String>,
    /// Resolve from the cache only.
    pub offline: bool,
    /// Show a progress bar while downloading.
    pub progress: bool,
}

impl HubOptions {
    /// Settings from the environment, as the Python `huggingface_hub` reads them.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        HubOptions {
            endpoint: var("HF_ENDPOINT"),
            cache_dir: var("HF_HUB_CACHE").map(PathBuf::from),
            token: var("HF_TOKEN"),
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
            progress: true,
        }
    }

    fn cache(&self) -> Cache {
        match &self.cache_dir {
            Some(dir) => Cache::new(dir.clone()),
            None => Cache::from_env(),
        }
    }
}

fn repo(id: &str, revision: Option<&str>) -> Repo {
    Repo::with_revision(id.to_string(), RepoType::Model, revision.unwrap_or("main").to_string())
}

/// Fetches `file` of `repo_id` at `revision` (default `main`) into the cache, or finds it there
/// when offline, and returns its local path. With `sha256`, the file must have that digest (a
/// mismatching download is removed from the cache).
pub fn pull(
    repo_id: &str,
    file: &str,
    revision: Option<&str>,
    sha256: Option<&str>,
    opts: &HubOptions,
) -> Result<PathBuf> {
    let what = format!("hf://{repo_id}/{file}@{}", revision.unwrap_or("main"));
    let hub_err = |msg: String| Error::Backend { backend: "hub", msg: format!("{what}: {msg}") };
    let cached = opts.cache().repo(repo(repo_id, revision)).get(file);
    let path = match (cached, opts.offline) {
        (Some(p), _) => p,
        (None, true) => {
            return Err(hub_err(format!(
                "not in the cache {} and offline mode is on (--offline or HF_HUB_OFFLINE=1); run `graft pull {repo_id} --file {file}` with network access first",
                opts.cache().path().display()
            )))
        }
        (None, false) => {
            let mut builder = ApiBuilder::from_cache(opts.cache()).with_progress(opts.progress).with_retries(0);
            if let Some(e) = &opts.endpoint {
                builder = builder.with_endpoint(e.clone());
            }
            if opts.token.is_some() {
                builder = builder.with_token(opts.token.clone());
            }
            let api = builder.build().map_err(|e| hub_err(e.to_string()))?;
            let path = api.repo(repo(repo_id, revision)).download(file).map_err(|e| hub_err(describe(e)))?;
            if let Err(e) = check_etag(&path) {
                discard(&path);
                return Err(hub_err(e));
            }
            path
        }
    };
    if let Some(want) = sha256 {
        let got = io::sha256_hex(&io::read(&path)?);
        if !got.eq_ignore_ascii_case(want) {
            discard(&path);
            return Err(hub_err(format!("sha256 is {got}, expected {want}; the file was removed from the cache")));
        }
    }
    Ok(path)
}

fn describe(e: hf_hub::api::sync::ApiError) -> String {
    use hf_hub::api::sync::ApiError;
    match e {
        ApiError::RequestError(e) => match *e {
            ureq::Error::Status(code, r) => {
                format!("the server answered {code} {} for {}", r.status_text(), r.get_url())
            }
            ureq::Error::Transport(t) => format!("transfer failed: {t}"),
        },
        other => other.to_string(),
    }
}

/// The cache names each blob by the server's ETag: a sha256 for LFS files, a git blob sha1 for the
/// rest. Checking the content against it catches truncated or corrupted transfers.
fn check_etag(snapshot: &Path) -> std::result::Result<(), String> {
    let blob = std::fs::canonicalize(snapshot).map_err(|e| e.to_string())?;
    let etag = blob.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let bytes = std::fs::read(&blob).map_err(|e| e.to_string())?;
    let got = match etag.len() {
        64 => io::sha256_hex(&bytes),
        40 => {
            let mut h = sha1::Sha1::new();
            h.update(format!("blob {}\0", bytes.len()).as_bytes());
            h.update(&bytes);
            h.finalize().iter().map(|b| format!("{b:02x}")).collect()
        }
        _ => return Ok(()),
    };
    if got != etag {
        return Err(format!(
            "downloaded content ({} bytes) does not match its ETag {etag}: truncated or corrupted",
            bytes.len()
        ));
    }
    Ok(())
}

/// Removes a snapshot link and the blob behind it.
fn discard(snapshot: &Path) {
    if let Ok(blob) = std::fs::canonicalize(snapshot) {
        let _ = std::fs::remove_file(blob);
    }
    let _ = std::fs::remove_file(snapshot);
}

/// A local path for `reference`: a path as is, or an `hf://` reference resolved through [`pull`].
pub fn resolve(reference: &str, sha256: Option<&str>, opts: &HubOptions) -> Result<PathBuf> {
    match ModelRef::parse(reference)? {
        None => {
            let p = PathBuf::from(reference);
            if !p.exists() {
                return Err(Error::io(&p, std::io::Error::from(std::io::ErrorKind::NotFound)));
            }
            Ok(p)
        }
        Some(r) => pull(&r.repo, &r.file, r.revision.as_deref(), sha256, opts),
    }
}
