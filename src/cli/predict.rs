use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use graft::predict::{Model, Prediction, Request};

/// Predict with an exported model (runs the ONNX graph, not the native weights). Inputs follow the
/// model's task: a CSV of numeric features (tabular); image files and folders of images (image);
/// a CSV with a text column and/or --text "..." (text: tokenizer.json must sit beside the model).
/// Inputs a model cannot take are refused, and nothing predicted is an error.
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft predict runs/iris/model.onnx new-flowers.csv
  graft predict runs/cats-vs-dogs/model.onnx photos/ --json --top-k 1
  graft predict runs/cats-vs-dogs/model.onnx a.jpg b.png --device cuda
  graft predict runs/who-said-it-lstm/model.onnx --text \"It was a dark and stormy night\" --text \"Nevermore.\"
  graft predict runs/who-said-it-bert/model.onnx sentences.csv --text-column text --json")]
pub struct PredictArgs {
    /// The exported model.
    model: PathBuf,
    /// Input files: a CSV (tabular and text models); images or folders of images (image models).
    inputs: Vec<PathBuf>,
    /// Text to classify (text models; repeatable; predicted after the CSV's rows, if any).
    #[arg(long)]
    text: Vec<String>,
    /// The CSV's text column (text models).
    #[arg(long, default_value = "text")]
    text_column: String,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    /// Show only the K most likely labels.
    #[arg(long)]
    top_k: Option<usize>,
    /// Images per engine run.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    #[command(flatten)]
    engine: super::engine::EngineArgs,
}

pub fn run(args: PredictArgs) -> anyhow::Result<ExitCode> {
    let request = Request { paths: args.inputs, texts: args.text, text_column: args.text_column };
    let model = Model::load_for(&args.model, &args.engine.options(), &request)?.with_batch_size(args.batch);
    let predicted = model.predict(&request)?;
    let mut out = std::io::stdout().lock();
    for p in &predicted.predictions {
        writeln!(out, "{}", line(p, args.json, args.top_k))?;
    }
    for s in &predicted.skipped {
        eprintln!("skipped {}: {}", s.path, s.reason);
    }
    predicted.ensure_any()?;
    Ok(ExitCode::SUCCESS)
}

/// One output line: tab-separated `id`, `label` and `label=p` pairs (the `top_k` most likely), or
/// a JSON object `{"id", "label", "probabilities": {label: p}}`.
fn line(p: &Prediction, json: bool, top_k: Option<usize>) -> String {
    let probs = match top_k {
        Some(k) => p.top_k(k),
        None => p.probabilities.clone(),
    };
    if json {
        let map: serde_json::Map<String, serde_json::Value> =
            probs.into_iter().map(|(l, p)| (l, serde_json::json!(p))).collect();
        serde_json::json!({"id": p.id, "label": p.label, "probabilities": map}).to_string()
    } else {
        let ps: Vec<String> = probs.iter().map(|(l, p)| format!("{l}={p:.4}")).collect();
        format!("{}\t{}\t{}", p.id, p.label, ps.join(" "))
    }
}
