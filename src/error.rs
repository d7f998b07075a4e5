//! The library's error type.

use std::path::PathBuf;

/// Everything that can go wrong in graft. Each variant names what it is about (a file and a line, a
/// field, a tensor) so that the message alone tells the user what to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file failed. The message says what happened (`no such file: PATH`);
    /// the I/O error is part of it and not repeated as a separate cause.
    #[error("{}", io_message(path, err))]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        err: std::io::Error,
    },
    /// A data file (CSV, image folder) is malformed.
    #[error("{}{}: {msg}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Data {
        /// The file.
        path: PathBuf,
        /// 1-based line number in the file, when it is about one line.
        line: Option<u64>,
        /// What is wrong.
        msg: String,
    },
    /// A pipeline TOML or a `--set` override is invalid.
    #[error("{origin}: {msg}")]
    Config {
        /// The file and line, or the `--set` override, or the field.
        origin: String,
        /// What is wrong.
        msg: String,
    },
    /// An ONNX file cannot be read, written or understood.
    #[error("{what}: {msg}")]
    Onnx {
        /// The file or tensor.
        what: String,
        /// What is wrong.
        msg: String,
    },
    /// An inference engine failed.
    #[error("{backend}: {msg}")]
    Backend {
        /// The engine (`ort`, `tract`).
        backend: &'static str,
        /// What it said.
        msg: String,
    },
    /// A tensor has the wrong shape or type.
    #[error("tensor `{name}`: {msg}")]
    Tensor {
        /// The tensor.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// The exported model disagrees with the native one.
    #[error("verification failed: {0}")]
    Verification(String),
    /// Training was stopped before it finished; `--resume` continues it.
    #[error("training interrupted after epoch {epoch}; run again with --resume to continue")]
    Interrupted {
        /// The last epoch completed.
        epoch: usize,
    },
    /// Invalid argument or combination of arguments.
    #[error("{0}")]
    Invalid(String),
    /// `source` happened while doing what `context` says (printed as the context, then the cause).
    #[error("{context}")]
    Context {
        /// What was being done.
        context: String,
        /// What went wrong.
        #[source]
        source: Box<Error>,
    },
}

/// `no such file: PATH`, `permission denied: PATH`, else `PATH: <the OS's message>`.
fn io_message(path: &std::path::Path, err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    let p = path.display();
    match err.kind() {
        ErrorKind::NotFound => format!("no such file: {p}"),
        ErrorKind::PermissionDenied => format!("permission denied: {p}"),
        _ => format!("{p}: {err}"),
    }
}

/// Shorthand used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }

    /// A data error at a given 1-based line of `path`.
    pub fn data(path: impl Into<PathBuf>, line: Option<u64>, msg: impl Into<String>) -> Self {
        Error::Data { path: path.into(), line, msg: msg.into() }
    }

    /// A config error from `origin` (a file, possibly with a line, or a `--set` override).
    pub fn config(origin: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { origin: origin.into(), msg: msg.into() }
    }

    /// This error, as the cause of `context` (what was being done).
    pub fn context(self, context: impl Into<String>) -> Self {
        Error::Context { context: context.into(), source: Box::new(self) }
    }

    /// An ONNX error about `what` (a file or a tensor).
    pub fn onnx(what: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Onnx { what: what.into(), msg: msg.into() }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::io::ErrorKind;

    use super::*;

    #[test]
    fn io_errors_name_the_file_once_and_have_no_repeated_cause() {
        let e = Error::io("a/b.onnx", std::io::Error::from(ErrorKind::NotFound));
        assert_eq!(e.to_string(), "no such file: a/b.onnx");
        assert!(e.source().is_none(), "the cause is in the message; a chain would print it twice");
        let e = Error::io("x", std::io::Error::other("disk on fire"));
        assert_eq!(e.to_string(), "x: disk on fire");
        assert!(e.source().is_none());
    }
}
