use crate::{Error, Result};

/// Applies one `key.path=value` override to a TOML document. The value is parsed as TOML (`3`,
/// `0.5`, `true`, `[16, 8]`, `"text"`); anything that does not parse is taken as a bare string, so
/// `--set data.path=other.csv` works without quotes. Intermediate tables are created as needed.
pub fn apply_override(doc: &mut toml::Value, assignment: &str) -> Result<()> {
    let origin = || format!("--set {assignment}");
    let (key, raw) = assignment
        .split_once('=')
        .ok_or_else(|| Error::config(origin(), "expected key=value, e.g. train.epochs=50"))?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(Error::config(origin(), "the key must be dotted names, e.g. train.optimizer.lr"));
    }
    let value = parse_value(raw.trim());
    let mut table = doc.as_table_mut().ok_or_else(|| Error::config(origin(), "the pipeline is not a table"))?;
    let parts: Vec<&str> = key.split('.').collect();
    if parts.len() > 1 && parts[0] == "backbone" && !table.contains_key("backbone") {
        return Err(Error::config(
            origin(),
            "this pipeline has no [backbone] section: backbone settings (and fit's --device and --backend) \
             apply only to pipelines with a pretrained backbone",
        ));
    }
    for part in &parts[..parts.len() - 1] {
        let entry = table.entry(part.to_string()).or_insert_with(|| toml::Value::Table(Default::default()));
        table = entry
            .as_table_mut()
            .ok_or_else(|| Error::config(origin(), format!("`{part}` is a value, not a section")))?;
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

fn parse_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}
