//! Fine-tuning a text encoder's last layers (MiniLM): the frozen front runs on every text once and
//! keeps the states of its valid tokens at the unfreeze point (`[len, H]` per text, zero-padded
//! into a batch); phase 1 trains the head on the pooled output of the frozen tail, phase 2 trains
//! the tail and the head together with AdamW and their own learning rates, batches bucketed by
//! length, the trainer setting the additive attention mask and the lengths of each batch
//! ([`SequenceMask`]). Exported as the original encoder with the tail's trained initializers, then
//! the pooling and the head.

use ndarray::{Array2, Array3};

use super::{EncoderParts, RouteInput, Routed, VERIFY_TEXTS};
use crate::backend::{BackendKind, DeviceRequest, EngineOptions, OrtOptions};
use crate::data::Dataset;
use crate::export::{self, keys, TextMeta};
use crate::features::{Backbone, FeatureCache};
use crate::graph::TailLayer;
use crate::nn::{Layer, LayerSpec, Sequential};
use crate::pipeline::common::{dense_stack, engine_options};
use crate::pipeline::common::{front, phase_two_fit, phase_two_model, phase_two_split, two_phase_run, unfreeze_tensor};
use crate::pipeline::front::{fill_token_states, read_token_states, token_lengths, token_recipe};
use crate::pipeline::head::train_head;
use crate::pipeline::report::{FineTuneSummary, TextSummary};
use crate::preprocess::TextEncoder;
use crate::rng::Rng;
use crate::train::{self, SequenceMask, Session};
use crate::{Error, Result};

/// The front's states at `start` for the valid tokens of each text, zero-padded to the longest,
/// and how many texts were computed now: the others come from `cache`, which holds one row per
/// valid token, keyed by the text's sha256 and the token's position (the cache's recipe names the
/// model, the tokenizer and the tensor; `graft embed --unfreeze` fills the same entries).
///
/// # Shapes
/// -> `[texts.len(), longest, H]`
fn front_states(
    front: &Backbone,
    opts: &EngineOptions,
    encoder: &TextEncoder,
    texts: &[&str],
    start: &str,
    batch: usize,
    cache: &mut FeatureCache,
) -> Result<(Array3<f32>, usize)> {
    let lengths = token_lengths(encoder, texts, batch)?;
    let computed = fill_token_states(front, opts, encoder, (texts, &lengths), start, batch, cache)?;
    Ok((read_token_states(cache, texts, &lengths)?, computed))
}

/// The additive mask side input of `tail`: its name and its value at padding, read from the
/// backbone on a text of two tokens, the second masked.
fn sequence_mask(
    tail: &TailLayer,
    source: &std::path::Path,
    backbone: &Backbone,
    encoder: &TextEncoder,
) -> Result<SequenceMask> {
    let names = tail.tail().side_inputs();
    let [name] = names[..] else {
        return Err(Error::onnx(
            source.display().to_string(),
            format!("the tail reads side inputs {names:?}; one additive attention mask [N, 1, 1, S] is supported"),
        ));
    };
    let mut enc = encoder.encode(&["a b"])?;
    let last = enc.mask.ncols() - 1;
    enc.mask[[0, last]] = 0;
    let proto = crate::onnx::load(source)?;
    let cut = crate::onnx::cut::cut(&proto, name, source)?;
    let dir = tempfile::tempdir().map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let path = dir.path().join("mask.onnx");
    crate::onnx::save(&path, &cut)?;
    let kept: Vec<String> = cut.graph.iter().flat_map(|g| g.input.iter().map(|i| i.name.clone())).collect();
    let feeds = enc.inputs(&backbone.inputs)?.into_iter().filter(|(n, _)| kept.contains(n)).collect();
    let m = crate::verify::cpu_features(&path, feeds, name)?;
    let ok = m.ndim() == 4 && m.shape()[..3] == [1, 1, 1] && m.iter().next() == Some(&0.0);
    match (ok, m.iter().last()) {
        (true, Some(&pad)) if pad != 0.0 => Ok(SequenceMask { name: name.to_string(), pad }),
        _ => Err(Error::onnx(
            source.display().to_string(),
            format!("side input `{name}` is not an additive attention mask [N, 1, 1, S] (got {:?})", m.shape()),
        )),
    }
}

/// MiniLM with its last layers unfrozen: phase 1 the head on the frozen tail's pooled output,
/// phase 2 tail + head.
pub(super) fn route(input: &RouteInput, session: &mut Session) -> Result<Routed> {
    let RouteInput { cfg, table, labels, y, texts, tokenizer_path } = *input;
    let classes = labels.len();
    let EncoderParts { bcfg, cache_root, backbone, encoder, tokenizer_sha: sha } =
        EncoderParts::open(cfg, tokenizer_path)?;
    let source = crate::onnx::load(&backbone.source)?;
    let what = backbone.source.display().to_string();
    let start = unfreeze_tensor(&source, bcfg.unfreeze, bcfg.unfreeze_from.as_deref(), &backbone.output, &what)?;
    let absolute = std::fs::canonicalize(&backbone.source).map_err(|e| Error::io(&backbone.source, e))?;
    let mut tail = TailLayer::open(&absolute, &start, Some(&backbone.output), Some(&backbone.sha256))?;
    let mask = sequence_mask(&tail, &absolute, &backbone, &encoder)?;
    let front = front(&backbone, &source, &start, &cache_root)?;
    let opts = engine_options(bcfg)?;
    let started = std::time::Instant::now();
    let mut fcache = FeatureCache::open(&cache_root, &backbone.sha256, &token_recipe(&front, &encoder, &start)?)?;
    let (states, computed) = front_states(&front, &opts, &encoder, texts, &start, bcfg.batch_size, &mut fcache)?;
    for w in fcache.take_warnings() {
        log::warn!("{w}");
    }
    drop(fcache);
    let embed_seconds = started.elapsed().as_secs_f64();
    let data = Dataset { x: states.into_dyn(), y: y.to_vec() };

    // Phase 1: the head alone on the frozen tail's pooled output.
    let pool = |tail: &mut TailLayer| -> Array2<f32> {
        let mut m = Sequential::new(&[tail.spec(), LayerSpec::MaskedMean], &mut Rng::new(0));
        train::forward_masked(&mut m, &data.x, 64, &mask)
    };
    let pooled = pool(&mut tail);
    let width = pooled.ncols();
    let head_data = Dataset { x: pooled.into_dyn(), y: data.y.clone() };
    let arch = |_: &Dataset| dense_stack(cfg, width, classes);
    let mut phase1 = train_head(cfg, &head_data, classes, &arch, session)?;

    // Phase 2: tail and head together, from phase 1's head, on the same split.
    let mut rng = Rng::new(cfg.train.seed);
    let mut model = phase_two_model(vec![tail.spec(), LayerSpec::MaskedMean], &mut phase1.model, &mut rng)?;
    let (tr, va) = phase_two_split(cfg, &data.y, &mut rng)?;
    let (train_set, val) = (data.subset(&tr), va.as_ref().map(|v| data.subset(v)));
    // The padded states now live in the two subsets; what follows needs only the labels of all rows.
    let data = match &val {
        Some(_) => Dataset { x: ndarray::ArrayD::zeros(ndarray::IxDyn(&[data.len(), 0])), y: data.y },
        None => data,
    };
    session.sequence_mask = Some(mask.clone());
    let outcome = phase_two_fit(cfg, &mut model, (&train_set, val.as_ref()), classes, true, rng.fork(3), session);
    session.sequence_mask = None;
    let outcome = outcome?;
    let eval_proba = train::predict_masked(&mut model, val.as_ref().map_or(&data.x, |v| &v.x), 64, &mask);
    let (mut run, phases) = two_phase_run(phase1, model, outcome, va, data.len(), eval_proba);
    let fine_tune = FineTuneSummary {
        unfrozen_from: start.clone(),
        tail_end: backbone.output.clone(),
        tail_nodes: tail.tail().nodes().len(),
        tail_parameters: tail.tail().param_count(),
        phases,
    };

    let text_meta = TextMeta {
        max_length: encoder.max_length,
        inputs: backbone.inputs.clone(),
        fixed_padding: false,
        encoder_output: Some(backbone.output.clone()),
        pooling: backbone.pooling(),
    };
    let mut meta = super::text_metadata(labels, &text_meta, &sha);
    meta.push((keys::BACKBONE.into(), serde_json::to_string(&backbone.info()).expect("serialises")));
    let onnx = export::finetuned_encoder_model(&source, &run.model, classes, &meta)?;
    // The reference: the native tail + head on the front's ORT (CPU) states of validation texts.
    let check: Vec<&str> = run.eval_rows.iter().take(VERIFY_TEXTS / 2).map(|&r| texts[r]).collect();
    let cpu = EngineOptions {
        backend: BackendKind::Ort,
        ort: OrtOptions { device: DeviceRequest::Cpu, threads: None, ..Default::default() },
    };
    let no_cache = &mut FeatureCache::disabled();
    let (states, _) = front_states(&front, &cpu, &encoder, &check, &start, check.len(), no_cache)?;
    let native = train::predict_masked(&mut run.model, &states.into_dyn(), check.len().max(1), &mask);
    let verify_inputs = encoder.encode(&check)?.inputs(&backbone.inputs)?;
    let summary = TextSummary {
        vocab_size: encoder.vocab_size(),
        encoder: Some(backbone.info()),
        embedded_now: Some(computed),
        embed_seconds: Some(embed_seconds),
        skipped_rows: table.skipped.clone(),
        most_confidently_wrong: Vec::new(),
    };
    let text_of: Vec<usize> = (0..texts.len()).collect();
    Ok(Routed { run, data, onnx, meta, verify_inputs, native, summary, text_of, fine_tune: Some(fine_tune) })
}
