//! Fine-tuning: `graft inspect` lists where a backbone can be unfrozen.

use crate::common::*;

#[test]
fn inspect_lists_block_boundaries_from_the_end() {
    let minilm = shared("models/all-minilm-l6-v2/model.onnx");
    let out = ok(&["inspect", s(&minilm)]);
    let blocks: Vec<&str> = out.lines().skip_while(|l| !l.starts_with("blocks")).skip(1).take(6).collect();
    assert!(blocks[1].trim_start().starts_with("2  layernormalization_152  (layer end"), "{out}");
    assert!(blocks.iter().all(|l| l.contains(": trainable,")), "{out}");
    let json: serde_json::Value = serde_json::from_str(&ok(&["inspect", s(&minilm), "--json"])).unwrap();
    let b = json["blocks"].as_array().unwrap();
    assert_eq!(b.len(), 6, "the embeddings' end and layers 0-4 (layer 5 ends at the output)");
    assert_eq!((b[5]["number"].as_u64(), b[5]["tensor"].as_str()), (Some(6), Some("layernormalization_8")));
    assert_eq!(b[0]["parameters"], 1_774_464);

    let effnet = shared("models/efficientnet-lite0/model.onnx");
    let out = ok(&["inspect", s(&effnet)]);
    assert!(out.contains("up to `logits`") && out.contains("   1  conv_57_out  (block output `conv_57`)"), "{out}");
}

/// `pipelines/cats-vs-dogs-finetune.toml` on 30 cats and 30 dogs, one epoch per phase: the front's
/// tensor at `add_54` is cached, both phases are in the report, and the export (the backbone with
/// the tail's trained weights, then the head) passes verification on tract and ORT.
#[test]
fn image_fine_tune_route_exports_a_verified_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    crate::images::subset(&data, 30);
    let (run, cache) = (dir.path().join("run"), dir.path().join("cache"));
    let args = ["--set", "backbone.device=cpu", "--set", "train.epochs=2", "--set", "train.fine_tune.epochs=1"];
    let r = fit_pipeline("pipelines/cats-vs-dogs-finetune.toml", &run, &data, &cache, &args);
    let ft = &r["fine_tune"];
    assert_eq!(ft["unfrozen_from"], "add_54", "{ft}");
    let phases = phase_epochs(ft);
    assert_eq!(phases, [("head", 2), ("fine-tune", 1)]);
    assert_eq!(r["verification"]["passed"], true, "{}", r["verification"]);
    assert_eq!(r["images"]["embedded"], 60);
    assert!(r["data"]["features"][0].as_str().unwrap().starts_with("add_54 [192, 7, 7]"), "{}", r["data"]);
    assert!(run.join("model.onnx").is_file() && run.join("curves.png").is_file());
    let out = ok(&["verify", s(&run.join("model.onnx")), "--data", s(&data.join("dog"))]);
    assert!(out.contains("verification passed"), "graft verify runs the fine-tuned tail natively: {out}");
}

/// Interrupted in phase 2 and resumed, the run ends as the uninterrupted one: phase 1 comes back
/// from its finished checkpoint, phase 2 from its own.
#[test]
fn image_fine_tune_resumes_in_phase_two() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("photos");
    crate::images::subset(&data, 20);
    let cache = dir.path().join("cache");
    let args = ["--set", "backbone.device=cpu", "--set", "train.epochs=2", "--set", "train.fine_tune.epochs=2"];
    let args = [&args[..], &["--set", "train.fine_tune.early_stopping.patience=0"]].concat();
    let full = fit_pipeline("pipelines/cats-vs-dogs-finetune.toml", &dir.path().join("full"), &data, &cache, &args);
    let run = dir.path().join("run");
    let set_data = format!("data.path={}", s(&data));
    let base =
        [&["fit", "pipelines/cats-vs-dogs-finetune.toml", "--out", s(&run), "-q", "--set", &set_data][..], &args]
            .concat();
    let halted = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args([&base[..], &["--halt-after-epochs", "3"]].concat())
        .env("GRAFT_CACHE", &cache)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(!halted.status.success() && String::from_utf8_lossy(&halted.stderr).contains("--resume"));
    let resumed = std::process::Command::new(env!("CARGO_BIN_EXE_graft"))
        .args([&base[..], &["--resume"]].concat())
        .env("GRAFT_CACHE", &cache)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", String::from_utf8_lossy(&resumed.stderr));
    let losses = |r: &serde_json::Value| -> Vec<f64> {
        let phases = r["fine_tune"]["phases"].as_array().unwrap().clone();
        phases
            .iter()
            .flat_map(|p| {
                p["history"].as_array().unwrap().iter().map(|h| h["val_loss"].as_f64().unwrap()).collect::<Vec<_>>()
            })
            .collect()
    };
    let again = report(&run);
    assert_eq!(losses(&again).len(), 4);
    assert_eq!(losses(&again), losses(&full));
    assert_eq!(again["validation"]["metrics"], full["validation"]["metrics"]);
}

/// `pipelines/who-said-it-bert-finetune.toml` on 100 sentences, one epoch per phase: MiniLM's last
/// two layers are unfrozen from `layernormalization_152`, both phases are in the report, the
/// export (the encoder with the trained weights, pooling, head) passes verification on tract and
/// ORT, and a second run reads the front's states from the cache; `unfreeze = "all"` trains all
/// six layers.
#[test]
fn text_fine_tune_route_exports_a_verified_model() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shared("data/spooky-authors/train.csv")).unwrap();
    let csv = dir.path().join("spooky.csv");
    std::fs::write(&csv, text.lines().take(101).collect::<Vec<_>>().join("\n") + "\n").unwrap();
    let (run, cache) = (dir.path().join("run"), dir.path().join("cache"));
    let args = ["--set", "backbone.device=cpu", "--set", "train.epochs=1", "--set", "train.fine_tune.epochs=1"];
    let r = fit_pipeline("pipelines/who-said-it-bert-finetune.toml", &run, &csv, &cache, &args);
    let ft = &r["fine_tune"];
    assert_eq!(ft["unfrozen_from"], "layernormalization_152", "{ft}");
    let phases = phase_epochs(ft);
    assert_eq!(phases, [("head", 1), ("fine-tune", 1)]);
    assert_eq!(r["verification"]["passed"], true, "{}", r["verification"]);
    assert!(run.join("model.onnx").is_file() && run.join("tokenizer.json").is_file());
    let g = graft::onnx::load(&run.join("model.onnx")).unwrap().graph.unwrap();
    let inputs: Vec<&str> = g.input.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(inputs, ["input_ids", "attention_mask", "token_type_ids"]);
    assert_eq!(r["text"]["embedded_now"], 100);
    // The front's states of the valid tokens are cached: a second run computes none.
    let r2 = fit_pipeline("pipelines/who-said-it-bert-finetune.toml", &dir.path().join("run2"), &csv, &cache, &args);
    assert_eq!(r2["text"]["embedded_now"], 0);
    assert_eq!(r2["verification"]["passed"], true, "{}", r2["verification"]);
    // Another unfreeze point is another tensor: nothing of it is cached yet. "all" starts after
    // the embeddings, where the front no longer reads the attention mask.
    let mut all = args.to_vec();
    all.extend(["--set", "backbone.unfreeze='all'"]);
    let r3 = fit_pipeline("pipelines/who-said-it-bert-finetune.toml", &dir.path().join("run3"), &csv, &cache, &all);
    assert_eq!(r3["fine_tune"]["unfrozen_from"], "layernormalization_8", "{}", r3["fine_tune"]);
    assert_eq!(r3["text"]["embedded_now"], 100);
    assert_eq!(r3["verification"]["passed"], true, "{}", r3["verification"]);
}

/// Each phase of a report's `fine_tune` record: its name and how many epochs it ran.
fn phase_epochs(ft: &serde_json::Value) -> Vec<(&str, usize)> {
    let phases = ft["phases"].as_array().unwrap();
    phases.iter().map(|p| (p["name"].as_str().unwrap(), p["history"].as_array().unwrap().len())).collect()
}
