use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

/// Predict with an exported model (runs the ONNX graph, not the native weights). Inputs follow the
/// model's task: a CSV of features (tabular), or image files and folders (image).
#[derive(Args, Debug)]
#[command(after_help = "Examples:
  graft predict runs/iris/model.onnx new-flowers.csv
  graft predict runs/cats-vs-dogs/model.onnx photos/ --json --top-k 1
  graft predict runs/cats-vs-dogs/model.onnx a.jpg b.png --device cuda
  graft predict runs/who-said-it-lstm/model.onnx --text \"It was a dark and stormy night\"
  graft predict runs/who-said-it-bert/model.onnx sentences.csv --text-column text --json")]
pub struct PredictArgs {
    /// The exported model.
    model: PathBuf,
    /// Input files: a CSV (tabular and text models); images or folders of images (image models).
    #[arg(required_unless_present = "text")]
    inputs: Vec<PathBuf>,
    /// Text to classify (text models; repeatable).
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
    let mut engine = graft::backend::open(&args.model, &args.engine.options())?;
    let (predictions, skipped) = match meta.task.as_str() {
        "tabular" => {
            let [csv] = args.inputs.as_slice() else { anyhow::bail!("a tabular model predicts one CSV file") };
            (graft::predict::tabular(&args.model, csv, engine.as_mut())?, Vec::new())
        }
        "image" => {
            let files = graft::data::collect_images(&args.inputs)?;
            graft::predict::images(&args.model, &files, engine.as_mut(), args.batch)?
        }
        "text" => {
            let (texts, ids) = if args.text.is_empty() {
                let [csv] = args.inputs.as_slice() else {
                    anyhow::bail!("a text model predicts one CSV file or --text")
                };
                let opts =
                    graft::data::TextOptions { text: args.text_column.clone(), label: None, skip_bad_rows: false };
                let table = graft::data::read_text_csv(csv, &opts)?;
                let ids = table.lines.iter().map(|l| format!("line {l}")).collect();
                (table.texts, ids)
            } else {
                let ids = (1..=args.text.len()).map(|i| i.to_string()).collect();
                (args.text.clone(), ids)
            };
            (graft::predict::texts(&args.model, &texts, ids, engine.as_mut(), args.batch)?, Vec::new())
        }
        other => anyhow::bail!("{}: unknown task `{other}`", args.model.display()),
    };
    let mut out = std::io::stdout().lock();
    for p in predictions {
        writeln!(out, "{}", p.line(args.json, args.top_k))?;
    }
    for s in &skipped {
        eprintln!("skipped {}: {}", s.path, s.reason);
    }
    Ok(ExitCode::SUCCESS)
}
