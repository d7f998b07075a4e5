use super::*;

const IRIS: &str = r#"
name = "iris"
task = "tabular"

[data]
path = "iris.csv"
label = "species"

[train]
epochs = 10
"#;

#[test]
fn defaults_fill_the_rest() {
    let cfg = PipelineConfig::parse(IRIS, "p.toml", &[]).unwrap();
    assert_eq!(cfg.train.epochs, 10);
    assert_eq!(cfg.train.batch_size, 32);
    assert_eq!(cfg.validation.method, ValidationMethod::Holdout);
}

#[test]
fn unknown_keys_name_their_line() {
    let text = IRIS.replace("epochs = 10", "epochs = 10\nepoch = 3");
    let err = PipelineConfig::parse(&text, "p.toml", &[]).unwrap_err().to_string();
    assert!(err.starts_with("p.toml:11:"), "{err}");
    assert!(err.contains("epoch"), "{err}");
}

#[test]
fn overrides_change_any_field() {
    let sets = [
        "data.path=other.csv",
        "data.label=label",
        "model.hidden=[8]",
        "train.optimizer.lr=0.5",
        "train.optimizer.kind=sgd",
        "validation.method=kfold",
        "train.class_weight=balanced",
    ]
    .map(String::from);
    let cfg = PipelineConfig::parse(IRIS, "p.toml", &sets).unwrap();
    assert_eq!(cfg.data.path, PathBuf::from("other.csv"));
    assert_eq!(cfg.data.label.as_deref(), Some("label"));
    assert_eq!(cfg.model.hidden, [8]);
    assert_eq!(cfg.train.optimizer.lr, 0.5);
    assert_eq!(cfg.validation.method, ValidationMethod::Kfold);
    assert_eq!(cfg.train.class_weight, ClassWeight::Named(ClassWeightMode::Balanced));
}

#[test]
fn bad_overrides_are_named() {
    for (set, expected) in [
        ("train.epochz=3", "unknown field"),
        ("train.epochs=0", "train.epochs"),
        ("nonsense", "expected key=value"),
        ("model.dropout=1.5", "model.dropout"),
        ("train.optimizer.lr=-1", "lr must be"),
    ] {
        let err = PipelineConfig::parse(IRIS, "p.toml", &[set.to_string()]).unwrap_err().to_string();
        assert!(err.contains(&format!("--set {set}")), "{err}");
        assert!(err.contains(expected), "{set}: {err}");
    }
}
