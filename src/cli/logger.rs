//! The CLI's side of the library's `log` warnings: the library never prints; this logger writes
//! its warnings and errors to stderr, one line each (`warning: ...`).

use log::{Level, LevelFilter, Log, Metadata, Record};

struct Stderr;

static LOGGER: Stderr = Stderr;

impl Log for Stderr {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= Level::Warn
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            eprintln!("{}", line(record.level(), &record.args().to_string()));
        }
    }

    fn flush(&self) {}
}

/// The text printed for one record.
fn line(level: Level, msg: &str) -> String {
    match level {
        Level::Error => format!("error: {msg}"),
        _ => format!("warning: {msg}"),
    }
}

/// Installs the logger (once; later calls do nothing).
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Warn);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_prefixed() {
        assert_eq!(line(Level::Warn, "skipped a.jpg: empty file"), "warning: skipped a.jpg: empty file");
        assert_eq!(line(Level::Error, "x"), "error: x");
        assert!(!LOGGER.enabled(&Metadata::builder().level(Level::Debug).build()));
    }
}
