use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::csv_file::{describe, CsvFile};
use crate::{Error, Result};

/// Which columns of a text CSV to use.
#[derive(Clone, Debug)]
pub struct TextOptions {
    /// The text column.
    pub text: String,
    /// `None` when predicting.
    pub label: Option<String>,
    /// Skip (and report) bad rows instead of stopping at the first.
    pub skip_bad_rows: bool,
}

/// A row that was left out, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadRow {
    /// 1-based line in the file.
    pub line: u64,
    /// What is wrong with it.
    pub reason: String,
}

/// Texts (and labels) read from a CSV.
#[derive(Clone, Debug)]
pub struct TextTable {
    /// The file read.
    pub path: PathBuf,
    /// The texts, in file order.
    pub texts: Vec<String>,
    /// 1-based line of each text.
    pub lines: Vec<u64>,
    /// The label of each text, when a label column was asked for.
    pub labels: Option<Vec<String>>,
    /// Rows left out (with `skip_bad_rows`).
    pub skipped: Vec<BadRow>,
}

/// Reads a CSV with a header and a text column. A missing column or a column name that appears twice
/// is an error naming the file; an empty text, an empty label, invalid UTF-8 or a ragged row (which
/// is also what an unclosed quote produces) is an error naming the file and line (right for CRLF
/// files), or a skipped row with `skip_bad_rows`.
pub fn read_text_csv(path: &Path, opts: &TextOptions) -> Result<TextTable> {
    let file = CsvFile::read(path)?;
    let mut reader = file.reader();
    let header = file.header(&mut reader)?;
    let text_col = header.column(&opts.text)?;
    let label_col = opts.label.as_deref().map(|n| header.column(n)).transpose()?;
    let header = header.names;
    let mut table = TextTable {
        path: path.to_path_buf(),
        texts: Vec::new(),
        lines: Vec::new(),
        labels: label_col.map(|_| Vec::new()),
        skipped: Vec::new(),
    };
    let mut record = csv::StringRecord::new();
    loop {
        let start = reader.position().clone();
        let problem = match reader.read_record(&mut record) {
            Ok(false) => break,
            Err(e) => Some((file.line(e.position().unwrap_or(&start)), format!("unreadable row: {}", describe(&e)))),
            Ok(true) => {
                let line = file.line(record.position().unwrap_or(&start));
                if record.len() == 1 && record[0].trim().is_empty() {
                    continue;
                }
                if record.len() != header.len() {
                    Some((
                        line,
                        format!("{} fields where the header has {} (a broken quote?)", record.len(), header.len()),
                    ))
                } else if record[text_col].trim().is_empty() {
                    Some((line, format!("column `{}`: empty text", opts.text)))
                } else if label_col.is_some_and(|c| record[c].trim().is_empty()) {
                    Some((line, "empty label".to_string()))
                } else {
                    table.texts.push(record[text_col].to_string());
                    table.lines.push(line);
                    if let (Some(c), Some(labels)) = (label_col, table.labels.as_mut()) {
                        labels.push(record[c].trim().to_string());
                    }
                    None
                }
            }
        };
        if let Some((line, reason)) = problem {
            if !opts.skip_bad_rows {
                return Err(Error::data(
                    path,
                    Some(line),
                    format!("{reason} (set data.skip_bad_rows = true to skip such rows)"),
                ));
            }
            table.skipped.push(BadRow { line, reason });
        }
    }
    if table.texts.is_empty() {
        return Err(Error::data(path, Some(2), "no usable rows"));
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str, skip: bool) -> Result<TextTable> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.csv");
        std::fs::write(&p, text).unwrap();
        read_text_csv(&p, &TextOptions { text: "text".into(), label: Some("author".into()), skip_bad_rows: skip })
    }

    #[test]
    fn reads_quoted_and_non_ascii_text() {
        let t = read("id,text,author\n1,\"Hello, \"\"world\"\"\",EAP\n2,Ça va — très bien 🙂,MWS\n", false).unwrap();
        assert_eq!(t.texts, ["Hello, \"world\"", "Ça va — très bien 🙂"]);
        assert_eq!(t.labels.unwrap(), ["EAP", "MWS"]);
        assert_eq!(t.lines, [2, 3]);
    }

    #[test]
    fn bad_rows_name_their_line_or_are_skipped() {
        for (text, expected) in [
            ("id,text,author\n1,ok,EAP\n2,,MWS\n", "t.csv:3: column `text`: empty text"),
            ("id,text,author\n1,ok,EAP\n2,\"unclosed,MWS\n3,more,HPL\n", "t.csv:3: 2 fields where the header has 3"),
            ("id,text,author\n1,ok,EAP\n2,fine\n", "t.csv:3: 2 fields"),
            ("id,text,author\n1,ok,\n", "t.csv:2: empty label"),
            ("id,words,author\n1,ok,EAP\n", "t.csv:1: no column `text`"),
        ] {
            let err = read(text, false).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        let t = read("id,text,author\n1,ok,EAP\n2,,MWS\n3,fine,HPL\n", true).unwrap();
        assert_eq!(t.texts, ["ok", "fine"]);
        assert_eq!(t.skipped, vec![BadRow { line: 3, reason: "column `text`: empty text".into() }]);
    }

    #[test]
    fn crlf_lines_and_duplicate_columns() {
        let err = read("id,text,author\r\n1,ok,EAP\r\n\r\n2,,MWS\r\n", false).unwrap_err().to_string();
        assert!(err.contains("t.csv:4: column `text`: empty text"), "{err}");
        let t = read("id,text,author\r\n1,ok,EAP\r\n2,\"two\r\nlines\",MWS\r\n3,x,HPL\r\n", false).unwrap();
        assert_eq!(t.lines, [2, 3, 5]);
        let err = read("text,author,text\n1,ok,EAP\n", false).unwrap_err().to_string();
        assert!(err.contains("t.csv:1: column `text` appears twice"), "{err}");
    }
}
