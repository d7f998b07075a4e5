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

#[test]
fn paths_in_a_file_are_relative_to_its_folder_and_overrides_to_the_current_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("pipelines").join("p.toml");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let text = IRIS.replace("path = \"iris.csv\"", "path = \"../data/iris.csv\"")
        + "[backbone]\nmanifest = \"../models/m.toml\"\npath = \"m.onnx\"\ncache = \"/abs/cache\"\n";
    std::fs::write(&file, text).unwrap();
    let cfg = PipelineConfig::load(&file, &[]).unwrap();
    assert_eq!(cfg.data.path, dir.path().join("data/iris.csv"));
    let b = cfg.backbone.unwrap();
    assert_eq!(Path::new(&b.manifest), dir.path().join("models/m.toml"));
    assert_eq!(b.path.unwrap(), dir.path().join("pipelines/m.onnx"));
    assert_eq!(b.cache.unwrap(), PathBuf::from("/abs/cache"));

    let sets = ["data.path=other.csv", "train.epochs=3"].map(String::from);
    let cfg = PipelineConfig::load(&file, &sets).unwrap();
    assert_eq!(cfg.data.path, PathBuf::from("other.csv"));
    assert_eq!(cfg.backbone.unwrap().path.unwrap(), dir.path().join("pipelines/m.onnx"));
    let cfg = PipelineConfig::load(&file, &["train.epochs=3".to_string()]).unwrap();
    assert_eq!(cfg.data.path, dir.path().join("data/iris.csv"), "a later override keeps the file's paths");
}

#[test]
fn a_manifest_name_is_not_a_path() {
    let text = IRIS.to_string() + "[backbone]\nmanifest = \"efficientnet-lite0\"\n";
    let cfg = PipelineConfig::parse_in(&text, "p.toml", Path::new("pipelines"), &[]).unwrap();
    assert_eq!(cfg.backbone.unwrap().manifest, "efficientnet-lite0");
    assert_eq!(cfg.data.path, PathBuf::from("pipelines/iris.csv"));
}

#[test]
fn resolve_folds_dots_lexically() {
    assert_eq!(resolve(Path::new("pipelines"), Path::new("../../shared/a.csv")), PathBuf::from("../shared/a.csv"));
    assert_eq!(resolve(Path::new(""), Path::new("./a.csv")), PathBuf::from("a.csv"));
    assert_eq!(resolve(Path::new("/r/pipelines"), Path::new("../x/./a.csv")), PathBuf::from("/r/x/a.csv"));
    assert_eq!(resolve(Path::new("/"), Path::new("../a.csv")), PathBuf::from("/a.csv"));
    assert_eq!(resolve(Path::new("p"), Path::new("/abs.csv")), PathBuf::from("/abs.csv"));
    assert_eq!(resolve(Path::new("p"), Path::new("..")), PathBuf::from("."));
}

#[test]
fn shipped_pipelines_load_from_any_folder() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for name in ["iris", "cats-vs-dogs", "who-said-it-lstm", "who-said-it-bert"] {
        let cfg = PipelineConfig::load(&root.join("pipelines").join(format!("{name}.toml")), &[]).unwrap();
        assert!(cfg.data.path.exists(), "{name}: {}", cfg.data.path.display());
        if let Some(b) = cfg.backbone {
            assert!(Path::new(&b.manifest).is_file(), "{name}: {}", b.manifest);
            assert!(b.path.unwrap().is_file(), "{name}");
        }
    }
}

#[test]
fn backbone_settings_on_a_pipeline_without_a_backbone_say_so() {
    let err = PipelineConfig::parse_in(IRIS, "p.toml", Path::new(""), &["backbone.device=\"cpu\"".into()]).unwrap_err();
    assert!(err.to_string().contains("no [backbone] section"), "{err}");
}

const IMAGE: &str = r#"
name = "pets"
task = "image"

[data]
path = "photos"

[backbone]
manifest = "m"
"#;

#[test]
fn fine_tuning_settings_are_checked() {
    let cfg = PipelineConfig::parse(IMAGE, "p.toml", &[]).unwrap();
    let b = cfg.backbone.as_ref().unwrap();
    assert!(!b.fine_tunes() && b.unfreeze == Unfreeze::Blocks(0), "frozen by default");
    let ft = &cfg.train.fine_tune;
    assert_eq!((ft.tail_lr, ft.head_lr, ft.weight_decay, ft.clip_norm), (1e-4, 1e-3, 0.01, Some(1.0)));
    let set = ["backbone.unfreeze=2".to_string(), "train.fine_tune.epochs=4".to_string()];
    let cfg = PipelineConfig::parse(IMAGE, "p.toml", &set).unwrap();
    assert!(cfg.backbone.unwrap().fine_tunes());
    assert_eq!(cfg.train.fine_tune.epochs, 4);
    let cfg = PipelineConfig::parse(IMAGE, "p.toml", &["backbone.unfreeze='all'".to_string()]).unwrap();
    assert_eq!(cfg.backbone.unwrap().unfreeze, Unfreeze::All(AllBlocks::All));
    let e = PipelineConfig::parse(IMAGE, "p.toml", &["backbone.unfreeze='most'".to_string()]).unwrap_err();
    assert!(e.to_string().contains("backbone"), "{e}");

    let text_encoder = IMAGE
        .replace("task = \"image\"", "task = \"text_encoder\"")
        .replace("path = \"photos\"", "path = \"t.csv\"\nlabel = \"y\"");
    for (text, set, expected) in [
        (IMAGE.to_string(), "backbone.unfreeze_from=x", ""),
        (IMAGE.replace("manifest = \"m\"", "manifest = \"m\"\nunfreeze = 1\nunfreeze_from = \"x\""), "", "not both"),
        (IMAGE.to_string(), "backbone.unfreeze_from=''", "must name a tensor"),
        (IMAGE.to_string(), "train.fine_tune.tail_lr=0", "train.fine_tune.tail_lr"),
        (IMAGE.to_string(), "train.fine_tune.epochs=0", "train.fine_tune.epochs"),
        (IMAGE.to_string(), "validation.method=kfold", "not `kfold`"),
        (text_encoder.replace("text_encoder", "text_lstm"), "", "image and text_encoder pipelines only"),
        (text_encoder, "", ""),
    ] {
        let mut sets = vec!["backbone.unfreeze=1".to_string()];
        sets.extend((!set.is_empty()).then(|| set.to_string()));
        if set.starts_with("backbone.unfreeze_from") {
            sets.remove(0);
        }
        let got = PipelineConfig::parse(&text, "p.toml", &sets);
        match expected {
            "" => assert!(got.is_ok(), "{set}: {:?}", got.err()),
            e => {
                let err = got.unwrap_err().to_string();
                assert!(err.contains(e), "{set}: {err}");
            }
        }
    }
}
