//! The library's error type.

use std::path::PathBuf;

/// Everything that can go wrong in graft. Each variant names what it is about (a file and a line, a
/// field, a tensor) so that the message alone tells the user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A data file (CSV, image folder) is malformed.
    #[error("{}{}: {msg}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Data {
        path: PathBuf,
        /// 1-based line number in the file, when it is about one line.
        line: Option<u64>,
        msg: String,
    },
    /// A pipeline TOML or a `--set` override is invalid.
    #[error("{origin}: {msg}")]
    Config { origin: String, msg: String },
    /// An ONNX file cannot be read, written or understood.
    #[error("{what}: {msg}")]
    Onnx { what: String, msg: String },
    /// An inference engine failed.
    #[error("{backend}: {msg}")]
    Backend { backend: &'static str, msg: String },
    /// A tensor has the wrong shape or type.
    #[error("tensor `{name}`: {msg}")]
    Tensor { name: String, msg: String },
    /// The exported model disagrees with the native one.
    #[error("verification failed: {0}")]
    Verification(String),
    /// Training was stopped before it finished; `--resume` continues it.
    #[error("training interrupted after epoch {epoch}; run again with --resume to continue")]
    Interrupted { epoch: usize },
    /// Invalid argument or combination of arguments.
    #[error("{0}")]
    Invalid(String),
}

/// Shorthand used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A data error at a given 1-based line of `path`.
    pub fn data(path: impl Into<PathBuf>, line: Option<u64>, msg: impl Into<String>) -> Self {
        Error::Data { path: path.into(), line, msg: msg.into() }
    }

    /// A config error from `origin` (a file, possibly with a line, or a `--set` override).
    pub fn config(origin: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { origin: origin.into(), msg: msg.into() }
    }

    /// An ONNX error about `what` (a file or a tensor).
    pub fn onnx(what: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Onnx { what: what.into(), msg: msg.into() }
    }
}
