use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayD};

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
}

/// A numeric CSV loaded in memory.
#[derive(Clone, Debug)]
pub struct Table {
    pub path: PathBuf,
    pub feature_names: Vec<String>,
    /// # Shapes
    /// `[rows, features]`
    pub x: ArrayD<f32>,
    /// The raw label of each row, when a label column was asked for.
    pub labels: Option<Vec<String>>,
}

/// Reads a CSV with a header into a [`Table`].
///
/// Fails with the file, line and column on: an empty file, a header without rows, a missing column,
/// a ragged row, a malformed quote, a non-numeric or non-finite feature value, an empty label, and a
/// label column with fewer than two classes.
pub fn read_csv(path: &Path, opts: &CsvOptions) -> Result<Table> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(file);
    let csv_err = |e: csv::Error| {
        let line = e.position().map(|p| p.line());
        let msg = match e.kind() {
            csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
                format!("ragged row: {len} fields where the header has {expected_len}")
            }
            _ => e.to_string(),
        };
        Error::data(path, line, msg)
    };
    let header: Vec<String> = reader.headers().map_err(csv_err)?.iter().map(|h| h.trim().to_string()).collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(Error::data(path, Some(1), "the file is empty: expected a header row"));
    }
    let column = |name: &str| {
        header.iter().position(|h| h == name).ok_or_else(|| {
            Error::data(path, Some(1), format!("no column `{name}` in the header (columns: {})", header.join(", ")))
        })
    };
    let label_col = opts.label.as_deref().map(column).transpose()?;
    let feature_cols: Vec<usize> = match &opts.features {
        Some(names) => names.iter().map(|n| column(n)).collect::<Result<_>>()?,
        None => (0..header.len()).filter(|&i| Some(i) != label_col && !opts.exclude.contains(&header[i])).collect(),
    };
    if feature_cols.is_empty() {
        return Err(Error::data(path, Some(1), "no feature columns left"));
    }

    let mut values = Vec::new();
    let mut labels = Vec::new();
    let mut record = csv::StringRecord::new();
    let mut rows = 0;
    while reader.read_record(&mut record).map_err(csv_err)? {
        let line = record.position().map(|p| p.line());
        if record.len() == 1 && record[0].trim().is_empty() {
            continue;
        }
        for &c in &feature_cols {
            let raw = record[c].trim();
            let v: f32 = raw
                .parse()
                .map_err(|_| Error::data(path, line, format!("column `{}`: `{raw}` is not a number", header[c])))?;
            if !v.is_finite() {
                return Err(Error::data(path, line, format!("column `{}`: `{raw}` is not a finite number", header[c])));
            }
            values.push(v);
        }
        if let Some(c) = label_col {
            let raw = record[c].trim();
            if raw.is_empty() {
                return Err(Error::data(path, line, format!("column `{}`: empty label", header[c])));
            }
            labels.push(raw.to_string());
        }
        rows += 1;
    }
    if rows == 0 {
        return Err(Error::data(path, Some(2), "no data rows after the header"));
    }
    if let Some(c) = label_col {
        let first = &labels[0];
        if labels.iter().all(|l| l == first) {
            return Err(Error::data(
                path,
                None,
                format!("column `{}` has a single class (`{first}`): a classifier needs at least two", header[c]),
            ));
        }
    }
    let x = Array2::from_shape_vec((rows, feature_cols.len()), values).expect("rows x features values").into_dyn();
    Ok(Table {
        path: path.to_path_buf(),
        feature_names: feature_cols.iter().map(|&c| header[c].clone()).collect(),
        x,
        labels: label_col.map(|_| labels),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Table> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        std::fs::write(&path, text).unwrap();
        read_csv(&path, &CsvOptions { label: Some("y".into()), ..Default::default() })
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
}
