//! The hub's resolve protocol over `ureq`, with connect and read timeouts and a bounded retry
//! (exponential backoff) for 5xx answers, resets and timeouts. Downloads go to a `.part` file
//! beside the blob, resume from where a failed attempt stopped, and are checked against the ETag
//! before anything enters the cache.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ureq::{Agent, AgentBuilder, RedirectAuthHeaders};

/// Timeouts and retries of hub requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HttpOptions {
    /// Longest wait for a connection.
    pub connect: Duration,
    /// Longest wait for any read (the answer's head, or the next bytes of a body).
    pub read: Duration,
    /// Further attempts after a 5xx answer, a reset or a timeout.
    pub retries: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff: Duration,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            connect: Duration::from_secs(10),
            read: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(500),
        }
    }
}

/// Environment variable: seconds for both timeouts.
pub const TIMEOUT_ENV: &str = "GRAFT_HTTP_TIMEOUT";
/// Environment variable: number of retries.
pub const RETRIES_ENV: &str = "GRAFT_HTTP_RETRIES";

impl HttpOptions {
    /// Sets both timeouts to `secs` seconds (> 0).
    pub fn with_timeout_secs(mut self, secs: f64) -> Result<Self, String> {
        if !(secs.is_finite() && secs > 0.0) {
            return Err(format!("timeout must be a positive number of seconds, got {secs}"));
        }
        self.connect = Duration::from_secs_f64(secs);
        self.read = self.connect;
        Ok(self)
    }

    /// Defaults changed by `GRAFT_HTTP_TIMEOUT` (seconds) and `GRAFT_HTTP_RETRIES`, as `var` reads
    /// them; an unparsable value is an error naming the variable.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut o = HttpOptions::default();
        if let Some(v) = var(TIMEOUT_ENV) {
            let secs: f64 = v.trim().parse().map_err(|_| format!("{TIMEOUT_ENV}=`{v}`: expected seconds"))?;
            o = o.with_timeout_secs(secs).map_err(|e| format!("{TIMEOUT_ENV}: {e}"))?;
        }
        if let Some(v) = var(RETRIES_ENV) {
            o.retries = v.trim().parse().map_err(|_| format!("{RETRIES_ENV}=`{v}`: expected a whole number"))?;
        }
        Ok(o)
    }

    /// The wait before retry `n` (0-based): `backoff * 2^n`, at most 30 s.
    pub fn delay(&self, n: u32) -> Duration {
        self.backoff.saturating_mul(1u32 << n.min(16)).min(Duration::from_secs(30))
    }

    fn agent(&self, redirects: u32) -> Agent {
        AgentBuilder::new()
            .try_proxy_from_env(true)
            .timeout_connect(self.connect)
            .timeout_read(self.read)
            .timeout_write(self.read)
            .redirects(redirects)
            .redirect_auth_headers(RedirectAuthHeaders::SameHost)
            .user_agent(concat!("graft/", env!("CARGO_PKG_VERSION")))
            .build()
    }
}

/// Why a request failed, and whether trying again may help.
#[derive(Debug)]
pub(crate) struct Failure {
    pub msg: String,
    pub transient: bool,
}

impl Failure {
    fn fatal(msg: impl Into<String>) -> Self {
        Failure { msg: msg.into(), transient: false }
    }

    fn from_ureq(e: ureq::Error, opts: &HttpOptions) -> Self {
        match e {
            ureq::Error::Status(code, r) => {
                let hint = if code == 401 || code == 403 {
                    " (private or gated repositories need HF_TOKEN or `huggingface-cli login`)"
                } else {
                    ""
                };
                Failure {
                    msg: format!("the server answered {code} {}{hint}", r.status_text()),
                    transient: code >= 500 || code == 429,
                }
            }
            ureq::Error::Transport(t) => {
                let timed_out = source_io_kind(&t).is_some_and(is_timeout);
                let msg = if timed_out {
                    timeout_msg(opts)
                } else {
                    let detail = t.message().map(|m| format!(": {m}")).unwrap_or_default();
                    let cause = std::error::Error::source(&t).map(|c| format!(": {c}")).unwrap_or_default();
                    format!("{}{detail}{cause}", t.kind())
                };
                use ureq::ErrorKind::{ConnectionFailed, Io};
                Failure { msg, transient: matches!(t.kind(), ConnectionFailed | Io) }
            }
        }
    }

    fn from_io(e: &std::io::Error, opts: &HttpOptions) -> Self {
        if is_timeout(e.kind()) {
            return Failure { msg: timeout_msg(opts), transient: true };
        }
        Failure { msg: format!("transfer failed: {e}"), transient: true }
    }
}

fn timeout_msg(opts: &HttpOptions) -> String {
    format!(
        "no answer within {} s (connect) / {} s (read); --timeout SECS or {TIMEOUT_ENV} waits longer",
        opts.connect.as_secs_f64(),
        opts.read.as_secs_f64()
    )
}

fn is_timeout(kind: std::io::ErrorKind) -> bool {
    matches!(kind, std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock)
}

fn source_io_kind(t: &ureq::Transport) -> Option<std::io::ErrorKind> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(t);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cur = e.source();
    }
    None
}

/// Runs `attempt` until it succeeds, fails for good, or the retries are spent; the error says how
/// many attempts were made.
pub(crate) fn with_retries<T>(
    opts: &HttpOptions,
    mut attempt: impl FnMut() -> Result<T, Failure>,
) -> Result<T, String> {
    let mut n = 0;
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(f) if f.transient && n < opts.retries => {
                std::thread::sleep(opts.delay(n));
                n += 1;
            }
            Err(f) if n > 0 => return Err(format!("{} (after {} attempts)", f.msg, n + 1)),
            Err(f) => return Err(f.msg),
        }
    }
}

/// What the resolve URL says about a file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Metadata {
    pub commit: String,
    pub etag: String,
    pub size: u64,
}

/// One client for one download: the resolve URL, the token, the options.
pub(crate) struct Client<'a> {
    pub url: String,
    pub token: Option<&'a str>,
    pub opts: &'a HttpOptions,
}

impl Client<'_> {
    fn get(&self, agent: &Agent, url: &str, range: &str) -> ureq::Request {
        let mut r = agent.get(url).set("Range", range);
        if let Some(t) = self.token {
            r = r.set("Authorization", &format!("Bearer {t}"));
        }
        r
    }

    /// Commit, ETag and size of the file, as `huggingface_hub` reads them: a `bytes=0-0` request
    /// that follows relative redirects only; the size from `X-Linked-Size` or `Content-Range`.
    pub fn metadata(&self) -> Result<Metadata, String> {
        with_retries(self.opts, || self.metadata_once())
    }

    fn metadata_once(&self) -> Result<Metadata, Failure> {
        let no_redirect = self.opts.agent(0);
        let mut url = self.url.clone();
        let mut response = None;
        for _ in 0..10 {
            let r = self.get(&no_redirect, &url, "bytes=0-0").call().map_err(|e| Failure::from_ureq(e, self.opts))?;
            let relative = (300..400).contains(&r.status()) && r.header("Location").is_some_and(|l| l.starts_with('/'));
            if !relative {
                response = Some(r);
                break;
            }
            let location = r.header("Location").unwrap_or_default().to_string();
            url = join_path(&url, &location);
        }
        let r = response.ok_or_else(|| Failure::fatal("too many redirects"))?;
        let header = |k: &str| r.header(k).map(bare);
        let etag = header("X-Linked-Etag")
            .or_else(|| header("ETag"))
            .ok_or_else(|| Failure::fatal("the answer has no ETag header: is this a hub endpoint?"))?;
        let commit = header("X-Repo-Commit")
            .ok_or_else(|| Failure::fatal("the answer has no X-Repo-Commit header: is this a hub endpoint?"))?;
        for (name, v) in [("ETag", &etag), ("X-Repo-Commit", &commit)] {
            if v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
                return Err(Failure::fatal(format!("the answer's {name} `{v}` is not a hash")));
            }
        }
        let size = match header("X-Linked-Size").and_then(|s| s.parse().ok()) {
            Some(s) => s,
            None if (300..400).contains(&r.status()) => {
                let location = r.header("Location").unwrap_or_default().to_string();
                let r2 = self
                    .get(&self.opts.agent(5), &location, "bytes=0-0")
                    .call()
                    .map_err(|e| Failure::from_ureq(e, self.opts))?;
                content_range_total(r2.header("Content-Range"))?
            }
            None => content_range_total(r.header("Content-Range"))?,
        };
        Ok(Metadata { commit, etag, size })
    }

    /// Downloads the file into `part` (resuming what is already there) until it holds `size`
    /// bytes; retries resume from the current length.
    pub fn download(&self, part: &Path, size: u64, progress: &dyn Fn(u64, u64)) -> Result<(), String> {
        let agent = self.opts.agent(5);
        with_retries(self.opts, || self.download_once(&agent, part, size, progress))
    }

    fn download_once(&self, agent: &Agent, part: &Path, size: u64, progress: &dyn Fn(u64, u64)) -> Result<(), Failure> {
        let io_fatal = |e: std::io::Error| Failure::fatal(format!("{}: {e}", part.display()));
        let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
        if have > size {
            have = 0;
        }
        if have == size {
            std::fs::OpenOptions::new().create(true).append(true).open(part).map_err(io_fatal)?;
            return Ok(());
        }
        let r = self
            .get(agent, &self.url, &format!("bytes={have}-"))
            .call()
            .map_err(|e| Failure::from_ureq(e, self.opts))?;
        if r.status() != 206 {
            have = 0; // the server sent the whole file
        }
        let mut file =
            std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(part).map_err(io_fatal)?;
        file.set_len(have).map_err(io_fatal)?;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(have)).map_err(io_fatal)?;
        let mut reader = r.into_reader();
        let mut buf = vec![0u8; 1 << 16];
        let mut done = have;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    file.flush().map_err(io_fatal)?;
                    return Err(Failure::from_io(&e, self.opts));
                }
            };
            file.write_all(&buf[..n]).map_err(io_fatal)?;
            done += n as u64;
            progress(done, size);
        }
        file.sync_all().map_err(io_fatal)?;
        if done != size {
            return Err(Failure { msg: format!("the transfer stopped after {done} of {size} bytes"), transient: true });
        }
        Ok(())
    }
}

/// A header value without the quotes and weak-validator prefix of an ETag (`W/"abc"` is `abc`):
/// the cache names blobs by the bare value.
fn bare(v: &str) -> String {
    v.trim().trim_start_matches("W/").trim_matches('"').to_string()
}

fn content_range_total(h: Option<&str>) -> Result<u64, Failure> {
    h.and_then(|v| v.rsplit('/').next())
        .and_then(|t| t.trim().parse().ok())
        .ok_or_else(|| Failure::fatal("the answer has no usable Content-Range header"))
}

/// `url` with its path (and query) replaced by `path`.
fn join_path(url: &str, path: &str) -> String {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let host_end = url[after_scheme..].find('/').map_or(url.len(), |i| after_scheme + i);
    format!("{}{path}", &url[..host_end])
}

/// The cache's relative link from `snapshots/COMMIT/FILE` to `blobs/ETAG`.
pub(crate) fn blob_link(file: &str, etag: &str) -> PathBuf {
    let depth = file.split('/').filter(|c| !c.is_empty()).count();
    let mut p = PathBuf::new();
    for _ in 0..depth + 1 {
        p.push("..");
    }
    p.join("blobs").join(etag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_bounded() {
        let o = HttpOptions::default();
        assert_eq!(o.delay(0), Duration::from_millis(500));
        assert_eq!(o.delay(1), Duration::from_millis(1000));
        assert_eq!(o.delay(3), Duration::from_millis(4000));
        assert_eq!(o.delay(40), Duration::from_secs(30));
    }

    #[test]
    fn retries_are_bounded_and_only_for_transient_failures() {
        let o = HttpOptions { backoff: Duration::ZERO, retries: 2, ..Default::default() };
        let mut calls = 0;
        let err = with_retries::<()>(&o, || {
            calls += 1;
            Err(Failure { msg: "503".into(), transient: true })
        })
        .unwrap_err();
        assert_eq!((calls, err.as_str()), (3, "503 (after 3 attempts)"));
        let mut calls = 0;
        let err = with_retries::<()>(&o, || {
            calls += 1;
            Err(Failure::fatal("404"))
        })
        .unwrap_err();
        assert_eq!((calls, err.as_str()), (1, "404"));
        let mut calls = 0;
        let ok = with_retries(&o, || {
            calls += 1;
            if calls < 3 {
                Err(Failure { msg: "reset".into(), transient: true })
            } else {
                Ok(7)
            }
        });
        assert_eq!(ok, Ok(7));
    }

    #[test]
    fn environment_overrides_are_checked() {
        let vars = |t: &'static str, r: &'static str| {
            move |k: &str| match k {
                TIMEOUT_ENV => Some(t.to_string()),
                RETRIES_ENV => Some(r.to_string()),
                _ => None,
            }
        };
        let o = HttpOptions::from_vars(vars("2.5", "1")).unwrap();
        assert_eq!((o.connect, o.read, o.retries), (Duration::from_millis(2500), Duration::from_millis(2500), 1));
        assert!(HttpOptions::from_vars(vars("soon", "1")).unwrap_err().contains(TIMEOUT_ENV));
        assert!(HttpOptions::from_vars(vars("0", "1")).unwrap_err().contains("positive"));
        assert!(HttpOptions::from_vars(vars("1", "-1")).unwrap_err().contains(RETRIES_ENV));
        assert_eq!(HttpOptions::from_vars(|_| None).unwrap(), HttpOptions::default());
    }

    #[test]
    fn etags_lose_quotes_and_weak_prefix() {
        assert_eq!(bare("\"abc\""), "abc");
        assert_eq!(bare("W/\"abc\""), "abc");
        assert_eq!(bare(" 0123 "), "0123");
    }

    #[test]
    fn paths_and_links() {
        assert_eq!(join_path("https://h.co/a/resolve/main/x", "/b/resolve/main/x"), "https://h.co/b/resolve/main/x");
        assert_eq!(blob_link("model.onnx", "ab"), PathBuf::from("../../blobs/ab"));
        assert_eq!(blob_link("onnx/model.onnx", "ab"), PathBuf::from("../../../blobs/ab"));
    }
}
