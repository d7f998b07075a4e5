//! `graft pull` and `hf://` references against a loopback server that speaks the hub's resolve
//! protocol (`/{repo}/resolve/{revision}/{file}` with ETag / X-Linked-Etag, X-Repo-Commit and
//! Range / Content-Range), started by each test on 127.0.0.1; and against one that accepts
//! connections and never answers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::common::*;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
}

/// A loopback hub. Repos: `org/good` (model.onnx: an LFS-style file whose ETag is its sha256;
/// config.json: a plain file whose ETag is its git blob sha1), `org/broken` (500 on everything),
/// `org/flaky` (503 to its first two requests, then as `org/good`), `org/truncated` (promises the
/// whole file, sends half and hangs up); anything else is 404.
struct Hub {
    url: String,
    stop: Arc<AtomicBool>,
    seen_auth: Arc<Mutex<Vec<String>>>,
    /// Requests to `org/broken` and `org/flaky`.
    hits: Arc<Hits>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Hits {
    broken: AtomicUsize,
    flaky: AtomicUsize,
}

impl Hub {
    fn start() -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let seen_auth = Arc::new(Mutex::new(Vec::new()));
        let hits = Arc::new(Hits::default());
        let (stop2, auth2, hits2) = (stop.clone(), seen_auth.clone(), hits.clone());
        let model = std::fs::read(root().join("tests/fixtures/tiny_cnn.onnx")).unwrap();
        let thread = std::thread::spawn(move || {
            for (served, conn) in listener.incoming().enumerate() {
                if stop2.load(Ordering::SeqCst) || served > 200 {
                    break;
                }
                if let Ok(conn) = conn {
                    serve(conn, &model, &auth2, &hits2);
                }
            }
        });
        Hub { url, stop, seen_auth, hits, thread: Some(thread) }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn git_sha1(b: &[u8]) -> String {
    use sha1::Digest as _;
    let mut h = sha1::Sha1::new();
    h.update(format!("blob {}\0", b.len()).as_bytes());
    h.update(b);
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

fn serve(mut conn: TcpStream, model: &[u8], seen_auth: &Mutex<Vec<String>>, hits: &Hits) {
    conn.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut request = String::new();
    if reader.read_line(&mut request).is_err() {
        return;
    }
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(r) = lower.strip_prefix("range: bytes=") {
            let (a, b) = r.trim().split_once('-').unwrap_or((r.trim(), ""));
            range = a.parse().ok().map(|a| (a, b.parse().ok()));
        }
        if lower.starts_with("authorization:") {
            seen_auth.lock().unwrap().push(line.trim().to_string());
        }
    }
    let config = br#"{"architecture": "tiny"}"#.to_vec();
    let flaky_hit = if path.starts_with("/org/flaky/") { hits.flaky.fetch_add(1, Ordering::SeqCst) } else { 0 };
    if path.starts_with("/org/broken/") {
        hits.broken.fetch_add(1, Ordering::SeqCst);
    }
    let (status, body, etag, truncate) = match path.as_str() {
        "/org/flaky/resolve/main/model.onnx" if flaky_hit < 2 => (503, b"busy".to_vec(), String::new(), false),
        "/org/good/resolve/main/model.onnx" | "/org/flaky/resolve/main/model.onnx" => {
            (200, model.to_vec(), sha256_hex(model), false)
        }
        "/org/good/resolve/main/config.json" => (200, config.clone(), git_sha1(&config), false),
        "/org/truncated/resolve/main/model.onnx" => (200, model.to_vec(), sha256_hex(model), true),
        p if p.starts_with("/org/broken/") => (500, b"internal error".to_vec(), String::new(), false),
        _ => (404, b"Entry not found".to_vec(), String::new(), false),
    };
    let mut head = String::new();
    let payload = if status != 200 {
        let reason = match status {
            404 => "Not Found",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        };
        head.push_str(&format!("HTTP/1.1 {status} {reason}\r\n"));
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        body
    } else {
        // hf-hub probes with `bytes=0-0` (metadata), then downloads with `bytes=START-`.
        let total = body.len();
        let (start, last) = match range {
            Some((a, b)) => (a.min(total), b.unwrap_or(total - 1).min(total - 1)),
            None => (0, total - 1),
        };
        let slice = &body[start..=last.max(start)];
        head.push_str("HTTP/1.1 206 Partial Content\r\n");
        head.push_str(&format!("X-Linked-Etag: \"{etag}\"\r\nETag: \"{etag}\"\r\nX-Repo-Commit: {COMMIT}\r\n"));
        head.push_str(&format!("Content-Range: bytes {start}-{last}/{total}\r\n"));
        head.push_str(&format!("Content-Length: {}\r\n", slice.len()));
        let is_download = slice.len() > 1;
        if truncate && is_download {
            slice[..slice.len() / 2].to_vec()
        } else {
            slice.to_vec()
        }
    };
    head.push_str("Connection: close\r\n\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&payload);
    let _ = conn.flush();
    let mut sink = [0u8; 64];
    let _ = conn.set_read_timeout(Some(std::time::Duration::from_millis(10)));
    let _ = conn.read(&mut sink);
}

/// Accepts connections and never answers (holds them open until dropped).
struct Silent {
    url: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Silent {
    fn start() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                held.extend(conn.ok());
            }
        });
        Silent { url, stop, thread: Some(thread) }
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A pull that has not finished after this long is killed and fails the test (a hang).
const HANG: std::time::Duration = std::time::Duration::from_secs(60);

fn pull(hub_url: &str, home: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_graft"));
    cmd.arg("pull").args(args).current_dir(root()).env("HF_HOME", home).env("HF_ENDPOINT", hub_url);
    cmd.env_remove("HF_TOKEN").env_remove("HF_HUB_OFFLINE").env_remove("HF_HUB_CACHE");
    cmd.env_remove("GRAFT_HTTP_TIMEOUT").env_remove("GRAFT_HTTP_RETRIES");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("graft pull {args:?} still running after {HANG:?}: it hangs");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "pull failed: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn stderr(o: &Output) -> String {
    assert!(!o.status.success(), "pull should fail: {}", String::from_utf8_lossy(&o.stdout));
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn pull_lands_in_the_standard_cache_and_offline_finds_it() {
    let hub = Hub::start();
    let home = tempfile::tempdir().unwrap();
    let out = pull(
        &hub.url,
        home.path(),
        &["org/good", "--file", "model.onnx", "--file", "config.json"],
        &[("HF_TOKEN", "secret")],
    );
    let paths: Vec<PathBuf> = stdout(&out).lines().map(PathBuf::from).collect();
    let snapshot = home.path().join("hub/models--org--good/snapshots").join(COMMIT);
    assert_eq!(paths, vec![snapshot.join("model.onnx"), snapshot.join("config.json")]);
    assert_eq!(std::fs::read(&paths[0]).unwrap(), std::fs::read(root().join("tests/fixtures/tiny_cnn.onnx")).unwrap());
    assert_eq!(std::fs::read_to_string(home.path().join("hub/models--org--good/refs/main")).unwrap().trim(), COMMIT);
    assert!(hub.seen_auth.lock().unwrap().iter().all(|a| a == "Authorization: Bearer secret"));
    assert!(!hub.seen_auth.lock().unwrap().is_empty(), "HF_TOKEN is sent");
    drop(hub);

    // The server is gone: offline mode (flag or HF_HUB_OFFLINE) resolves from the cache.
    let dead = "http://127.0.0.1:9";
    assert_eq!(stdout(&pull(dead, home.path(), &["org/good", "--file", "model.onnx", "--offline"], &[])), s(&paths[0]));
    let out = pull(dead, home.path(), &["org/good", "--file", "model.onnx"], &[("HF_HUB_OFFLINE", "1")]);
    assert_eq!(stdout(&out), s(&paths[0]));
    let err = stderr(&pull(dead, home.path(), &["org/good", "--file", "other.onnx", "--offline"], &[]));
    assert!(err.contains("hf://org/good/other.onnx@main") && err.contains("offline"), "{err}");

    // hf:// references resolve through the same cache.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_graft"));
    cmd.args(["inspect", "hf://org/good/model.onnx"])
        .current_dir(root())
        .env("HF_HOME", home.path())
        .env("HF_HUB_OFFLINE", "1");
    let out = cmd.output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("final classifier Gemm"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_token_file_is_sent_when_hf_token_is_unset() {
    let hub = Hub::start();
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("token"), "from-login\n").unwrap();
    stdout(&pull(&hub.url, home.path(), &["org/good", "--file", "config.json"], &[]));
    let seen = hub.seen_auth.lock().unwrap().clone();
    assert!(!seen.is_empty() && seen.iter().all(|a| a == "Authorization: Bearer from-login"), "{seen:?}");
}

#[test]
fn pull_errors_are_clear() {
    let hub = Hub::start();
    let home = tempfile::tempdir().unwrap();
    let err = stderr(&pull(&hub.url, home.path(), &["org/missing", "--file", "model.onnx"], &[]));
    assert!(err.contains("hf://org/missing/model.onnx@main") && err.contains("404"), "{err}");
    let err = stderr(&pull(&hub.url, home.path(), &["org/broken", "--file", "model.onnx"], &[]));
    assert!(err.contains("500"), "{err}");
    let err = stderr(&pull(&hub.url, home.path(), &["org/truncated", "--file", "model.onnx"], &[]));
    assert!(err.contains("hf://org/truncated/model.onnx@main"), "{err}");
    assert!(!home.path().join("hub/models--org--truncated/snapshots").join(COMMIT).join("model.onnx").exists());
}

#[test]
fn sha256_mismatch_is_refused_and_not_cached() {
    let hub = Hub::start();
    let home = tempfile::tempdir().unwrap();
    let wrong = "0".repeat(64);
    let err = stderr(&pull(&hub.url, home.path(), &["org/good", "--file", "model.onnx", "--sha256", &wrong], &[]));
    assert!(err.contains("sha256") && err.contains(&wrong), "{err}");
    let cached = home.path().join("hub/models--org--good/snapshots").join(COMMIT).join("model.onnx");
    assert!(!cached.exists(), "a mismatching file is removed from the cache");
    let right = sha256_hex(&std::fs::read(root().join("tests/fixtures/tiny_cnn.onnx")).unwrap());
    assert_eq!(
        stdout(&pull(&hub.url, home.path(), &["org/good", "--file", "model.onnx", "--sha256", &right], &[])),
        s(&cached)
    );
}

#[test]
fn a_server_that_never_answers_times_out_naming_the_url() {
    let silent = Silent::start();
    let home = tempfile::tempdir().unwrap();
    let url = format!("{}/org/name/resolve/main/model.onnx", silent.url);
    let started = Instant::now();
    let err = stderr(&pull(&silent.url, home.path(), &["org/name", "--timeout", "1", "--retries", "1"], &[]));
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "took {:?}", started.elapsed());
    assert!(err.contains(&url) && err.contains("no answer within 1 s") && err.contains("after 2 attempts"), "{err}");
    assert!(err.contains("--timeout"), "the message says how to wait longer: {err}");
    // The same from the environment.
    let env = [("GRAFT_HTTP_TIMEOUT", "0.5"), ("GRAFT_HTTP_RETRIES", "0")];
    let err = stderr(&pull(&silent.url, home.path(), &["org/name"], &env));
    assert!(err.contains(&url) && err.contains("no answer within 0.5 s") && !err.contains("attempts"), "{err}");
    let err = stderr(&pull(&silent.url, home.path(), &["org/name"], &[("GRAFT_HTTP_TIMEOUT", "soon")]));
    assert!(err.contains("GRAFT_HTTP_TIMEOUT"), "{err}");
}

#[test]
fn server_errors_are_retried_with_backoff_then_given_up() {
    let hub = Hub::start();
    let home = tempfile::tempdir().unwrap();
    // 503 twice, then the file.
    let path = PathBuf::from(stdout(&pull(&hub.url, home.path(), &["org/flaky"], &[])));
    assert_eq!(std::fs::read(&path).unwrap(), std::fs::read(root().join("tests/fixtures/tiny_cnn.onnx")).unwrap());
    assert!(hub.hits.flaky.load(Ordering::SeqCst) >= 3);
    // 500 always: a bounded number of attempts, then an error naming the URL.
    let started = Instant::now();
    let err = stderr(&pull(&hub.url, home.path(), &["org/broken", "--retries", "2"], &[]));
    assert_eq!(hub.hits.broken.load(Ordering::SeqCst), 3, "one attempt and two retries");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500), "backoff 0.5 s, then 1 s");
    let url = format!("{}/org/broken/resolve/main/model.onnx", hub.url);
    assert!(err.contains(&url) && err.contains("500") && err.contains("after 3 attempts"), "{err}");
}
