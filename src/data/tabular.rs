use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD};

use super::csv_file::{describe, CsvFile};
use super::BadRow;
use crate::{Error, Result};

/// Which columns of a CSV to use.
#[derive(Clone, Debug, Default)]
pub struct CsvOptions {
    /// The label column; `None` when predicting (a label column present in the file is then ignored
    /// unless it is listed in `features`).
    pub label: Option<String>,
    /// Feature columns, in order; `None`: every column but the label and `exclude`.
    pub features: Option<Vec<String>>,
    /// Columns to leave out when `features` is `None` (ids, free text).
    pub exclude: Vec<String>,
    /// Skip (and report in [`Table::skipped`]) bad rows instead of stopping at the first.
    pub skip_bad_rows: bool,
}

/// A numeric CSV loaded in memory.
#[derive(Clone, Debug)]
pub struct Table {
    /// The file read.
    pub path: PathBuf,
    /// The feature columns, in `x`'s column order.
    pub feature_names: Vec<String>,
    /// # Shapes
    /// `[rows, features]`
    pub x: ArrayD<f32>,
    /// The raw label of each row, when a label column was asked for.
    pub labels: Option<Vec<String>>,
    /// Rows left out with [`CsvOptions::skip_bad_rows`].
    pub skipped: Vec<BadRow>,
}

/// Reads a CSV with a header into a [`Table`].
///
/// Fails with the file, line and column on: an empty file, a header without rows, a column name
/// that appears twice, a missing column, and a label column with fewer than two classes. A bad row
/// (ragged, malformed quote, invalid UTF-8, a non-numeric or non-finite feature value, an empty
/// label) is an error too, or a skipped row with `skip_bad_rows`. Lines count from 1 and are right
/// for CRLF files.
pub fn read_csv(path: &Path, opts: &CsvOptions) -> Result<Table> {
    let file = CsvFile::read(path)?;
    let mut reader = file.reader();
    let header = file.header(&mut reader)?;
    if header.names.is_empty() || header.names.iter().all(String::is_empty) {
        return Err(Error::data(path, Some(1), "the file is empty: expected a header row"));
    }
    let names = &header.names;
    let label_col = opts.label.as_deref().map(|n| header.column(n)).transpose()?;
    let feature_cols: Vec<usize> = match &opts.features {
        Some(wanted) => wanted.iter().map(|n| header.column(n)).collect::<Result<_>>()?,
        None => (0..names.len()).filter(|&i| Some(i) != label_col && !opts.exclude.contains(&names[i])).collect(),
    };
    if feature_cols.is_empty() {
        return Err(Error::data(path, Some(1), "no feature columns left"));
    }

    // One row's feature values and label, or why it is bad.
    let parse = |record: &csv::StringRecord| -> std::result::Result<(Vec<f32>, Option<String>), String> {
        if record.len() != names.len() {
            return Err(format!("ragged row: {} fields where the header has {}", record.len(), names.len()));
        }
        let mut values = Vec::with_capacity(feature_cols.len());
        for &c in &feature_cols {
            let raw = record[c].trim();
            let v: f32 = raw.parse().map_err(|_| format!("column `{}`: `{raw}` is not a number", names[c]))?;
            if !v.is_finite() {
                return Err(format!("column `{}`: `{raw}` is not a finite number", names[c]));
            }
            values.push(v);
        }
        let label = match label_col {
            Some(c) if record[c].trim().is_empty() => return Err(format!("column `{}`: empty label", names[c])),
            Some(c) => Some(record[c].trim().to_string()),
            None => None,
        };
        Ok((values, label))
    };

    let mut values = Vec::new();
    let mut labels = Vec::new();
    let mut skipped = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0;
    loop {
        let start = reader.position().clone();
        let row = match reader.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) if record.len() == 1 && record[0].trim().is_empty() => continue,
            Ok(true) => parse(&record).map_err(|reason| (file.line(record.position().unwrap_or(&start)), reason)),
            Err(e) => Err((file.line(e.position().unwrap_or(&start)), format!("unreadable row: {}", describe(&e)))),
        };
        match row {
            Ok((v, label)) => {
                values.extend(v);
                labels.extend(label);
                rows += 1;
            }
            Err((line, reason)) if opts.skip_bad_rows => skipped.push(BadRow { line, reason }),
            Err((line, reason)) => {
                // Only a training read has a `data.skip_bad_rows` to point at.
                let hint = if opts.label.is_some() { " (set data.skip_bad_rows = true to skip such rows)" } else { "" };
                return Err(Error::data(path, Some(line), format!("{reason}{hint}")));
            }
        }
    }
    if rows == 0 {
        return Err(match skipped.first() {
            Some(first) => Error::data(
                path,
                None,
                format!("every row is bad ({} skipped; line {}: {})", skipped.len(), first.line, first.reason),
            ),
            None => Error::data(path, Some(2), "no data rows after the header"),
        });
    }
    if let Some(c) = label_col {
        let first = &labels[0];
        if labels.iter().all(|l| l == first) {
            return Err(Error::data(
                path,
                None,
                format!("column `{}` has a single class (`{first}`): a classifier needs at least two", names[c]),
            ));
        }
    }
    let x = Array2::from_shape_vec((rows, feature_cols.len()), values).expect("rows x features values").into_dyn();
    Ok(Table {
        path: path.to_path_buf(),
        feature_names: feature_cols.iter().map(|&c| names[c].clone()).collect(),
        x,
        labels: label_col.map(|_| labels),
        skipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_with(text: &str, skip_bad_rows: bool) -> Result<Table> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        read_csv(&path, &CsvOptions { label: Some("y".into()), skip_bad_rows, ..Default::default() })
    }

    fn read(text: &str) -> Result<Table> {
        read_with(text, false)
    }

    fn err_of(text: &str) -> String {
        read(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_numbers_and_labels() {
        let t = read("a,b,y\n1,2,cat\n3.5,-4e1,dog\n").unwrap();
        assert_eq!(t.feature_names, ["a", "b"]);
        assert_eq!(t.x.shape(), [2, 2]);
        assert_eq!(t.x[[1, 1]], -40.0);
        assert_eq!(t.labels.unwrap(), ["cat", "dog"]);
    }

    #[test]
    fn every_bad_csv_names_its_line() {
        let cases = [
            ("", ":1: the file is empty"),
            ("a,b,y\n", ":2: no data rows"),
            ("a,b,label\n1,2,x\n", ":1: no column `y`"),
            ("a,b,y\n1,2,x\n3,4\n", ":3: ragged row: 2 fields where the header has 3"),
            ("a,b,y\n1,2,x\n3,oops,z\n", ":3: column `b`: `oops` is not a number"),
            ("a,b,y\n1,2,x\nNaN,1,z\n", ":3: column `a`: `NaN` is not a finite number"),
            ("a,b,y\n1,2,x\n1,inf,z\n", ":3: column `b`: `inf` is not a finite number"),
            ("a,b,y\n1,2,x\n1,2,\n", ":3: column `y`: empty label"),
            ("a,b,y\n1,2,x\n3,4,x\n", "single class (`x`)"),
        ];
        for (text, expected) in cases {
            let msg = err_of(text);
            assert!(msg.contains("t.csv"), "{msg}");
            assert!(msg.contains(expected), "{text:?}: got `{msg}`, expected `{expected}`");
        }
    }

    #[test]
    fn crlf_files_report_the_right_line() {
        for text in ["a,b,y\n1,2,x\n\n3,4,z\n5,oops,z\n", "a,b,y\r\n1,2,x\r\n\r\n3,4,z\r\n5,oops,z\r\n"] {
            let msg = err_of(text);
            assert!(msg.contains("t.csv:5: column `b`: `oops` is not a number"), "{text:?}: {msg}");
        }
    }

    #[test]
    fn a_duplicate_column_name_is_an_error() {
        let msg = err_of("a,b,a,y\n1,2,3,x\n4,5,6,z\n");
        assert!(msg.contains("t.csv:1: column `a` appears twice in the header"), "{msg}");
    }

    #[test]
    fn skip_bad_rows_skips_and_reports_them() {
        let text = "a,b,y\r\n1,2,x\r\n3,oops,z\r\n4,5\r\n6,7,\r\n8,inf,x\r\n9,10,z\r\n";
        assert!(err_of(text).contains("(set data.skip_bad_rows = true to skip such rows)"));
        let t = read_with(text, true).unwrap();
        assert_eq!(t.x.shape(), [2, 2]);
        assert_eq!(t.labels.unwrap(), ["x", "z"]);
        let lines: Vec<u64> = t.skipped.iter().map(|b| b.line).collect();
        assert_eq!(lines, [3, 4, 5, 6]);
        assert!(t.skipped[0].reason.contains("`oops` is not a number"), "{:?}", t.skipped);
        let all_bad = read_with("a,b,y\n1,oops,x\n", true).unwrap_err().to_string();
        assert!(all_bad.contains("every row is bad (1 skipped; line 2:"), "{all_bad}");
    }
}
