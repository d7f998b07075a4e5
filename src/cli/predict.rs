use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

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
    let meta = graft::export::ModelMeta::read(&args.model)?;
    let task = meta.task.as_str();
    graft::predict::check_inputs(&args.model, task, &args.inputs, args.text.len())?;
    let mut engine = graft::backend::open(&args.model, &args.engine.options())?;
    let not_read = |p: &PathBuf| {
        format!(
            "{} is a {task} model: it predicts {}; {} could not be read as such",
            args.model.display(),
            graft::predict::accepts(task),
            p.display()
        )
    };
    let (predictions, skipped) = match task {
        "tabular" => {
            let csv = &args.inputs[0];
            (graft::predict::tabular(&args.model, csv, engine.as_mut()).with_context(|| not_read(csv))?, Vec::new())
        }
        "image" => {
            let files = graft::data::collect_images(&args.inputs)?;
            graft::predict::images(&args.model, &files, engine.as_mut(), args.batch)?
        }
        "text" => {
            let (mut texts, mut ids) = (Vec::new(), Vec::new());
            if let Some(csv) = args.inputs.first() {
                let opts =
                    graft::data::TextOptions { text: args.text_column.clone(), label: None, skip_bad_rows: false };
                let table = graft::data::read_text_csv(csv, &opts).with_context(|| not_read(csv))?;
                ids.extend(table.lines.iter().map(|l| format!("line {l}")));
                texts.extend(table.texts);
            }
            ids.extend((1..=args.text.len()).map(|i| format!("text {i}")));
            texts.extend(args.text.iter().cloned());
            (graft::predict::texts(&args.model, &texts, ids, engine.as_mut(), args.batch)?, Vec::new())
        }
        other => anyhow::bail!("{}: unknown task `{other}`", args.model.display()),
    };
    let mut out = std::io::stdout().lock();
    for p in &predictions {
        writeln!(out, "{}", p.line(args.json, args.top_k))?;
    }
    for s in &skipped {
        eprintln!("skipped {}: {}", s.path, s.reason);
    }
    if predictions.is_empty() {
        anyhow::bail!(
            "nothing was predicted: {}",
            if skipped.is_empty() {
                "the inputs hold no rows or images".to_string()
            } else {
                format!("all {} images were skipped", skipped.len())
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
