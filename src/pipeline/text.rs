//! "Who said it": text classification by two routes.
//! - `text_lstm`: a word-level vocabulary trained on the training texts, then Embedding → LSTM →
//!   masked mean → Dropout → Dense, trained from scratch by the shared loop with length bucketing;
//!   exported as Gather + ONNX `LSTM` + pooling + head.
//! - `text_encoder`: a frozen sentence encoder (MiniLM) with masked mean pooling embeds every text
//!   once (cached), a Dense head trains on the embeddings; exported as encoder + pooling + head.
//!
//! Both write `tokenizer.json` beside `model.onnx` and its sha256 into the model's metadata.

#[path = "finetune_text.rs"]
mod finetune_text;

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use ndarray::Array2;

use super::common::{dense_stack, engine_options, mistakes};
use super::head::{finish, train_head, train_head_with, training_rows, Finish, HeadRun};
use super::mistakes;
use super::report::{DataSummary, FineTuneSummary, Report, TextSummary};
use crate::backend::Value;
use crate::config::manifest::Manifest;
use crate::config::{BackboneConfig, PipelineConfig, Task};
use crate::data::{read_text_csv, Dataset, Labels, TextOptions, TextTable};
use crate::export::{self, keys, TextMeta, ATTENTION_MASK, INPUT_IDS};
use crate::features::{cache, embed_texts, Backbone, FeatureCache};
use crate::nn::LayerSpec;
use crate::preprocess::TextEncoder;
use crate::train::{self, Session};
use crate::verify::{self, Verification};
use crate::{Error, Result};

/// Validation texts verified on both engines.
pub const VERIFY_TEXTS: usize = 64;

fn read(cfg: &PipelineConfig) -> Result<(TextTable, Labels, Vec<usize>)> {
    let opts = TextOptions {
        text: cfg.data.text.clone().unwrap_or_else(|| "text".into()),
        label: cfg.data.label.clone(),
        skip_bad_rows: cfg.data.skip_bad_rows,
    };
    let table = read_text_csv(&cfg.data.path, &opts)?;
    let raw = table.labels.clone().expect("label column was asked for");
    let labels = Labels::fit(&raw);
    if labels.len() < 2 {
        return Err(Error::data(&cfg.data.path, None, "a classifier needs at least two classes"));
    }
    let y = labels.encode(&raw)?;
    Ok((table, labels, y))
}

/// Runs a text pipeline into `out`.
pub fn fit(cfg: &PipelineConfig, out: &Path, session: &mut Session) -> Result<Report> {
    let started = Instant::now();
    let (table, labels, y) = read(cfg)?;
    for b in &table.skipped {
        log::warn!("skipped {}:{}: {}", cfg.data.path.display(), b.line, b.reason);
    }
    let texts: Vec<&str> = table.texts.iter().map(String::as_str).collect();
    let tokenizer_path = out.join("tokenizer.json");
    let input =
        RouteInput { cfg, table: &table, labels: &labels, y: &y, texts: &texts, tokenizer_path: &tokenizer_path };
    let Routed { mut run, data, onnx, meta, verify_inputs, native, summary, text_of, fine_tune } = match cfg.task {
        Task::TextLstm => lstm_route(&input, session)?,
        Task::TextEncoder if cfg.backbone.as_ref().is_some_and(|b| b.fine_tunes()) => {
            finetune_text::route(&input, session)?
        }
        Task::TextEncoder => encoder_route(&input, session)?,
        other => return Err(Error::Invalid(format!("{other:?} is not a text task"))),
    };

    let model_path = out.join("model.onnx");
    crate::onnx::save(&model_path, &onnx)?;
    run.model.save(&out.join("head.safetensors"), meta.iter().cloned().collect::<HashMap<_, _>>())?;
    let verification: Verification = verify::against(&native, &model_path, &verify_inputs)?;
    let metrics = run.metrics(&data, &labels);
    let mut summary = summary;
    summary.most_confidently_wrong = wrong_texts(&run, &data, &labels, &table, &text_of);
    let text = |r: usize| (table.lines[text_of[r]], table.texts[text_of[r]].clone());
    let listed = mistakes::write_texts(out, (&run, &data, &labels), text, &cfg.name)?;
    let mut report = finish(
        &run,
        Finish {
            cfg,
            out,
            data: DataSummary::new(cfg, &data, &labels, vec![cfg.data.text.clone().unwrap_or_else(|| "text".into())]),
            labels: &labels,
            metrics,
            verification,
            total_seconds: started.elapsed().as_secs_f64(),
            outputs: vec!["model.onnx".into(), "head.safetensors".into(), "tokenizer.json".into(), listed.into()],
            images: None,
            text: Some(summary),
        },
    )?;
    if fine_tune.is_some() {
        report.fine_tune = fine_tune;
        crate::io::write_json(&out.join("report.json"), &report)?;
    }
    Ok(report)
}

/// What a route hands to the shared end of [`fit`]: the trained model and its data, the exported
/// graph with its metadata, and the inputs and native probabilities verification compares.
struct Routed {
    run: HeadRun,
    data: Dataset,
    onnx: crate::onnx::pb::ModelProto,
    meta: Vec<(String, String)>,
    verify_inputs: Vec<(String, Value)>,
    native: Array2<f32>,
    summary: TextSummary,
    /// The text index of each dataset row.
    text_of: Vec<usize>,
    /// The unfrozen tail and both phases, when the encoder was fine-tuned.
    fine_tune: Option<FineTuneSummary>,
}

/// What both routes read.
/// What both sentence-encoder routes open first: the pipeline's backbone section, the feature
/// cache root, the prepared backbone, its tokenizer (saved beside the run) and that file's sha256.
struct EncoderParts<'a> {
    bcfg: &'a BackboneConfig,
    cache_root: std::path::PathBuf,
    backbone: Backbone,
    encoder: TextEncoder,
    tokenizer_sha: String,
}

impl<'a> EncoderParts<'a> {
    fn open(cfg: &'a PipelineConfig, tokenizer_path: &Path) -> Result<Self> {
        let bcfg = cfg.backbone.as_ref().ok_or_else(|| Error::config("backbone", "missing"))?;
        let cache_root = bcfg.cache.clone().unwrap_or_else(cache::default_root);
        let backbone = Backbone::prepare(Manifest::load(&bcfg.manifest)?, bcfg.path.as_deref(), &cache_root)?;
        let encoder = backbone.text_encoder()?;
        let tokenizer_sha = encoder.save(tokenizer_path)?;
        Ok(EncoderParts { bcfg, cache_root, backbone, encoder, tokenizer_sha })
    }
}

struct RouteInput<'a> {
    cfg: &'a PipelineConfig,
    table: &'a TextTable,
    labels: &'a Labels,
    y: &'a [usize],
    texts: &'a [&'a str],
    tokenizer_path: &'a Path,
}

/// Vocabulary trained on the training texts, then Embedding → LSTM → masked mean → head.
fn lstm_route(input: &RouteInput, session: &mut Session) -> Result<Routed> {
    let RouteInput { cfg, table, labels, y, texts, tokenizer_path } = *input;
    let classes = labels.len();
    let l = &cfg.model.lstm;
    let train_texts: Vec<String> = training_rows(cfg, y)?.iter().map(|&i| table.texts[i].clone()).collect();
    let encoder = TextEncoder::train_word_level(&train_texts, l.vocab_size, l.lowercase, l.max_length)?;
    let sha = encoder.save(tokenizer_path)?;
    // Stored padded to max_length; batches are cut to their longest text (the LSTM's outputs at a
    // text's words ignore right padding, in both directions).
    let x = encoder.encode_fixed(texts)?.ids.mapv(|v| v as f32);
    let data = Dataset { x: x.into_dyn(), y: y.to_vec() };
    let vocab = encoder.vocab_size();
    let arch = |_: &Dataset| {
        let mut specs = vec![LayerSpec::Embedding { vocab, dim: l.embedding_dim }];
        if l.embedding_dropout > 0.0 {
            specs.push(LayerSpec::Dropout { rate: l.embedding_dropout });
        }
        specs.push(LayerSpec::Lstm { inputs: l.embedding_dim, hidden: l.units, bidirectional: l.bidirectional });
        specs.push(LayerSpec::MaskedMean);
        let width = l.units * if l.bidirectional { 2 } else { 1 };
        specs.extend(dense_stack(cfg, width, classes));
        specs
    };
    let mut run = train_head_with(cfg, &data, classes, &arch, true, session)?;
    let text_meta = TextMeta {
        max_length: l.max_length,
        inputs: vec![INPUT_IDS.into(), ATTENTION_MASK.into()],
        fixed_padding: false,
        encoder_output: None,
        pooling: Default::default(),
    };
    let meta = text_metadata(labels, &text_meta, &sha);
    let onnx = export::native_text_model(&run.model, classes, &meta)?;
    // Verification inputs: validation texts padded as predict pads them.
    let check: Vec<&str> = run.eval_rows.iter().take(VERIFY_TEXTS).map(|&i| texts[i]).collect();
    let enc = encoder.encode(&check)?;
    let native = train::predict(&mut run.model, &enc.ids.mapv(|v| v as f32).into_dyn(), 1024);
    let inputs = enc.inputs(&text_meta.inputs)?;
    let summary = TextSummary {
        vocab_size: vocab,
        encoder: None,
        embedded_now: None,
        embed_seconds: None,
        skipped_rows: table.skipped.clone(),
        most_confidently_wrong: Vec::new(),
    };
    let text_of: Vec<usize> = (0..texts.len()).collect();
    Ok(Routed { run, data, onnx, meta, verify_inputs: inputs, native, summary, text_of, fine_tune: None })
}

/// A frozen sentence encoder embeds every text once (cached); a Dense head trains on the embeddings.
fn encoder_route(input: &RouteInput, session: &mut Session) -> Result<Routed> {
    let RouteInput { cfg, table, labels, y, texts, tokenizer_path } = *input;
    let classes = labels.len();
    let EncoderParts { bcfg, cache_root, backbone, encoder, tokenizer_sha: sha } =
        EncoderParts::open(cfg, tokenizer_path)?;
    let mut fcache = FeatureCache::open(&cache_root, &backbone.sha256, &backbone.recipe(Some(&encoder))?)?;
    let emb = embed_texts(
        &backbone,
        &engine_options(bcfg)?,
        &encoder,
        &table.texts,
        &mut fcache,
        bcfg.batch_size,
        session.progress,
    )?;
    for w in &emb.warnings {
        log::warn!("{w}");
    }
    let data = Dataset { x: emb.features.clone().into_dyn(), y: emb.rows.iter().map(|&i| y[i]).collect() };
    let arch = |train: &Dataset| dense_stack(cfg, train.x.shape()[1], classes);
    let mut run = train_head(cfg, &data, classes, &arch, session)?;
    let text_meta = TextMeta {
        max_length: encoder.max_length,
        inputs: backbone.inputs.clone(),
        fixed_padding: false,
        encoder_output: Some(backbone.output.clone()),
        pooling: backbone.pooling(),
    };
    let mut meta = text_metadata(labels, &text_meta, &sha);
    meta.push((keys::BACKBONE.into(), serde_json::to_string(&backbone.info()).expect("serialises")));
    let encoder_graph = crate::onnx::load(&backbone.path)?;
    let onnx = export::encoder_model(&encoder_graph, &backbone.output, backbone.pooling(), &run.model, classes, &meta)?;
    let check: Vec<usize> = run.eval_rows.iter().copied().take(VERIFY_TEXTS / 2).collect();
    let check_texts: Vec<&str> = check.iter().map(|&r| texts[emb.rows[r]]).collect();
    let enc = encoder.encode(&check_texts)?;
    let inputs = enc.inputs(&backbone.inputs)?;
    // The reference: the native head on the encoder's ORT (CPU) states of the same texts.
    let states = verify::cpu_features(&backbone.path, inputs.clone(), &backbone.output)?;
    let pooled = crate::features::pool(backbone.pooling(), &states, &enc.mask.clone().into_dyn())?;
    let native = train::predict(&mut run.model, &pooled.into_dyn(), 1024);
    let summary = TextSummary {
        vocab_size: encoder.vocab_size(),
        encoder: Some(backbone.info()),
        embedded_now: Some(emb.computed),
        embed_seconds: Some(emb.seconds),
        skipped_rows: table.skipped.clone(),
        most_confidently_wrong: Vec::new(),
    };
    Ok(Routed {
        run,
        data,
        onnx,
        meta,
        verify_inputs: inputs,
        native,
        summary,
        text_of: emb.rows.clone(),
        fine_tune: None,
    })
}

/// The most confidently wrong evaluated texts; `text_of[row]` is the text index of a dataset row.
fn wrong_texts(
    run: &HeadRun,
    data: &Dataset,
    labels: &Labels,
    table: &TextTable,
    text_of: &[usize],
) -> Vec<super::Mistake> {
    mistakes(run, data, labels, |r| {
        let i = text_of[r];
        let t: String = table.texts[i].chars().take(120).collect();
        format!("line {}: {t}", table.lines[i])
    })
}

fn text_metadata(labels: &Labels, text: &TextMeta, tokenizer_sha: &str) -> Vec<(String, String)> {
    export::metadata(
        export::ModelTask::Text,
        labels,
        &[
            (keys::TEXT, serde_json::to_string(text).expect("serialises")),
            (keys::TOKENIZER_SHA256, tokenizer_sha.to_string()),
        ],
    )
}
