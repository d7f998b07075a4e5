//! What the CSV readers share: the file held in memory, a header whose names are unique, and line
//! numbers that stay right in CRLF files and after blank lines (the `csv` crate's own line count
//! does not: it counts a record from the end of the previous one).

use std::path::{Path, PathBuf};

use crate::{io, Error, Result};

/// A CSV file read into memory.
pub(crate) struct CsvFile {
    pub path: PathBuf,
    bytes: Vec<u8>,
    /// Byte offset of every `\n`.
    newlines: Vec<usize>,
}

/// The trimmed column names of a CSV header, all distinct.
pub(crate) struct Header {
    pub names: Vec<String>,
    path: PathBuf,
}

impl CsvFile {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = io::read(path)?;
        let newlines = bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i).collect();
        Ok(CsvFile { path: path.to_path_buf(), bytes, newlines })
    }

    /// A reader over the file that takes the first record as the header and lets rows differ in
    /// length (callers report ragged rows with their line).
    pub fn reader(&self) -> csv::Reader<&[u8]> {
        csv::ReaderBuilder::new().has_headers(true).flexible(true).from_reader(self.bytes.as_slice())
    }

    /// The 1-based line on which the record that the reader reports at `pos` starts.
    pub fn line(&self, pos: &csv::Position) -> u64 {
        let mut at = (pos.byte() as usize).min(self.bytes.len());
        // The reader's position may be the rest of the previous line ending, or blank lines.
        while at < self.bytes.len() && matches!(self.bytes[at], b'\r' | b'\n') {
            at += 1;
        }
        self.newlines.partition_point(|&n| n < at) as u64 + 1
    }

    /// Reads the header of `reader`: fails on an unreadable header and on a name that appears
    /// twice (which column would win is a guess), naming the file and the column.
    pub fn header(&self, reader: &mut csv::Reader<&[u8]>) -> Result<Header> {
        let record = reader.headers().map_err(|e| Error::data(&self.path, Some(1), describe(&e)))?;
        let names: Vec<String> = record.iter().map(|h| h.trim().to_string()).collect();
        for (j, name) in names.iter().enumerate() {
            if let Some(i) = names[..j].iter().position(|n| n == name) {
                return Err(Error::data(
                    &self.path,
                    Some(1),
                    format!(
                        "column `{name}` appears twice in the header (columns {} and {}): rename one",
                        i + 1,
                        j + 1
                    ),
                ));
            }
        }
        Ok(Header { names, path: self.path.clone() })
    }
}

impl Header {
    /// The index of column `name`.
    pub fn column(&self, name: &str) -> Result<usize> {
        self.names.iter().position(|h| h == name).ok_or_else(|| {
            Error::data(
                &self.path,
                Some(1),
                format!("no column `{name}` in the header (columns: {})", self.names.join(", ")),
            )
        })
    }
}

/// A csv error without the crate's own (unreliable) position.
pub(crate) fn describe(e: &csv::Error) -> String {
    match e.kind() {
        csv::ErrorKind::Utf8 { err, .. } => format!("field {} is not valid UTF-8", err.field() + 1),
        csv::ErrorKind::Io(e) => e.to_string(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> (tempfile::TempDir, CsvFile) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, text).unwrap();
        let f = CsvFile::read(&p).unwrap();
        (dir, f)
    }

    fn record_lines(f: &CsvFile) -> Vec<u64> {
        let mut r = f.reader();
        f.header(&mut r).unwrap();
        r.records().map(|rec| f.line(rec.unwrap().position().unwrap())).collect()
    }

    #[test]
    fn lines_are_right_with_crlf_and_blank_lines() {
        for text in
            ["a,b\n1,2\n3,4\n\n5,6\n", "a,b\r\n1,2\r\n3,4\r\n\r\n5,6\r\n", "a,b\r\n1,2\r\n\"3\r\nx\",4\r\n\r\n5,6"]
        {
            let (_d, f) = file(text);
            let want = if text.contains("\"3") { [2, 3, 6] } else { [2, 3, 5] };
            assert_eq!(record_lines(&f), want, "{text:?}");
        }
    }

    #[test]
    fn a_name_twice_in_the_header_is_an_error() {
        let (_d, f) = file("a,b, a\n1,2,3\n");
        let err = f.header(&mut f.reader()).err().unwrap().to_string();
        assert!(err.contains("t.csv:1: column `a` appears twice in the header (columns 1 and 3)"), "{err}");
    }
}
