//! Models from the Hugging Face hub: pull into the standard cache layout
//! (`$HF_HOME/hub/models--ORG--NAME/{blobs,snapshots,refs}`, as `hf-hub` and `huggingface_hub`
//! read it), resolve offline from that cache, verify what was downloaded, and turn
//! `hf://REPO/PATH[@REV]` references into local paths. Requests have connect and read timeouts and
//! a bounded retry ([`HttpOptions`]).

mod http;
mod reference;

pub use http::{HttpOptions, RETRIES_ENV, TIMEOUT_ENV};
pub use reference::ModelRef;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use hf_hub::{Cache, Repo, RepoType};
use sha1::Digest as _;

use crate::{io, Error, Result};

/// Called while a file downloads with (bytes so far, bytes in all).
#[derive(Clone)]
pub struct OnProgress(pub Arc<dyn Fn(u64, u64) + Send + Sync>);

impl std::fmt::Debug for OnProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnProgress")
    }
}

/// Hub client settings; [`HubOptions::from_env`] reads `HF_ENDPOINT`, `HF_HUB_CACHE`, `HF_TOKEN`,
/// `HF_HUB_OFFLINE`, `GRAFT_HTTP_TIMEOUT` and `GRAFT_HTTP_RETRIES` (`HF_HOME` is read by the cache).
#[derive(Clone, Debug, Default)]
pub struct HubOptions {
    /// Base URL (default `https://huggingface.co`).
    pub endpoint: Option<String>,
    /// Cache root (default `$HF_HOME/hub`, else `~/.cache/huggingface/hub`).
    pub cache_dir: Option<PathBuf>,
    /// Bearer token (default: the token file `huggingface-cli login` writes, if any).
    pub token: Option<String>,
    /// Resolve from the cache only.
    pub offline: bool,
    /// Timeouts and retries.
    pub http: HttpOptions,
    /// An invalid `GRAFT_HTTP_*` variable, reported by the first request.
    pub env_error: Option<String>,
    /// Told of each download's progress (the library prints nothing).
    pub progress: Option<OnProgress>,
}

impl HubOptions {
    /// Settings from the environment, as the Python `huggingface_hub` reads them.
    pub fn from_env() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let (http, env_error) = match HttpOptions::from_vars(var) {
            Ok(h) => (h, None),
            Err(e) => (HttpOptions::default(), Some(e)),
        };
        HubOptions {
            endpoint: var("HF_ENDPOINT"),
            cache_dir: var("HF_HUB_CACHE").map(PathBuf::from),
            token: var("HF_TOKEN"),
            offline: var("HF_HUB_OFFLINE").is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true")),
            http,
            env_error,
            progress: None,
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
/// mismatching download is removed from the cache). A server that does not answer within the
/// timeouts, or keeps answering 5xx, is an error naming the URL once the retries are spent.
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
            if let Some(e) = &opts.env_error {
                return Err(Error::Invalid(e.clone()));
            }
            download(repo_id, file, revision, opts).map_err(hub_err)?
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

/// Downloads into `blobs/ETAG` (through `blobs/ETAG.part`, checked against the ETag), links
/// `snapshots/COMMIT/FILE` to it and records the revision's commit in `refs/`.
fn download(
    repo_id: &str,
    file: &str,
    revision: Option<&str>,
    opts: &HubOptions,
) -> std::result::Result<PathBuf, String> {
    let endpoint = opts.endpoint.as_deref().unwrap_or("https://huggingface.co").trim_end_matches('/');
    let r = repo(repo_id, revision);
    let url = format!("{endpoint}/{}/resolve/{}/{file}", r.url(), r.url_revision());
    let token = opts.token.clone().or_else(|| opts.cache().token());
    let client = http::Client { url: url.clone(), token: token.as_deref(), opts: &opts.http };
    let at = |e: String| format!("GET {url}: {e}");
    let meta = client.metadata().map_err(at)?;
    let cache = opts.cache();
    let dir = cache.path().join(r.folder_name());
    let blobs = dir.join("blobs");
    std::fs::create_dir_all(&blobs).map_err(|e| Error::io(&blobs, e).to_string())?;
    let blob = blobs.join(&meta.etag);
    if !blob.is_file() {
        let part = blobs.join(format!("{}.part", meta.etag));
        let report = |done, total| {
            if let Some(p) = &opts.progress {
                (p.0)(done, total)
            }
        };
        client.download(&part, meta.size, &report).map_err(at)?;
        if let Err(e) = check_etag(&part, &meta.etag) {
            let _ = std::fs::remove_file(&part);
            return Err(at(e));
        }
        std::fs::rename(&part, &blob).map_err(|e| Error::io(&blob, e).to_string())?;
    }
    let snapshot = dir.join("snapshots").join(&meta.commit).join(file);
    if let Some(parent) = snapshot.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e).to_string())?;
    }
    let _ = std::fs::remove_file(&snapshot);
    link(&http::blob_link(file, &meta.etag), &blob, &snapshot).map_err(|e| Error::io(&snapshot, e).to_string())?;
    cache.repo(r).create_ref(&meta.commit).map_err(|e| Error::io(dir.join("refs"), e).to_string())?;
    Ok(snapshot)
}

#[cfg(unix)]
fn link(relative: &Path, _blob: &Path, snapshot: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(relative, snapshot)
}

#[cfg(not(unix))]
fn link(_relative: &Path, blob: &Path, snapshot: &Path) -> std::io::Result<()> {
    std::fs::copy(blob, snapshot).map(|_| ())
}

/// The cache names each blob by the server's ETag: a sha256 for LFS files, a git blob sha1 for the
/// rest. Checking the content against it catches truncated or corrupted transfers.
fn check_etag(file: &Path, etag: &str) -> std::result::Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| Error::io(file, e).to_string())?;
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
