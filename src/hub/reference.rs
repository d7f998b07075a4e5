use crate::{Error, Result};

/// A file in a hub repository: `hf://ORG/NAME/PATH/IN/REPO[@REVISION]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelRef {
    /// `ORG/NAME`.
    pub repo: String,
    /// Path of the file in the repository.
    pub file: String,
    /// Branch, tag or commit (`main` when absent).
    pub revision: Option<String>,
}

impl ModelRef {
    /// `Ok(None)` for anything that is not an `hf://` reference (a local path).
    pub fn parse(s: &str) -> Result<Option<ModelRef>> {
        let Some(rest) = s.strip_prefix("hf://") else { return Ok(None) };
        let bad = || Error::Invalid(format!("`{s}`: expected hf://ORG/NAME/PATH[@REVISION]"));
        let (path, revision) = match rest.rsplit_once('@') {
            Some((p, r)) if !r.is_empty() && !r.contains('/') => (p, Some(r.to_string())),
            Some(_) => return Err(bad()),
            None => (rest, None),
        };
        let mut parts = path.splitn(3, '/');
        let (org, name, file) =
            (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
        if org.is_empty() || name.is_empty() || file.is_empty() {
            return Err(bad());
        }
        Ok(Some(ModelRef { repo: format!("{org}/{name}"), file: file.to_string(), revision }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        assert_eq!(ModelRef::parse("models/x.onnx").unwrap(), None);
        let r = ModelRef::parse("hf://sentence-transformers/all-MiniLM-L6-v2/onnx/model.onnx@v1").unwrap().unwrap();
        assert_eq!(r.repo, "sentence-transformers/all-MiniLM-L6-v2");
        assert_eq!(r.file, "onnx/model.onnx");
        assert_eq!(r.revision.as_deref(), Some("v1"));
        assert_eq!(ModelRef::parse("hf://a/b/c").unwrap().unwrap().revision, None);
        for bad in ["hf://a/b", "hf://a", "hf://a/b/c@", "hf:///b/c"] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
    }
}
