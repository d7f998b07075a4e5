//! Load an exported model once, then answer many prediction requests from several threads, as a
//! web service would: [`graft::predict::Model`] is `Send + Sync`, so one `Arc<Model>` serves every
//! thread (images are decoded on the calling thread; engine runs queue on the model's lock).
//!
//! ```sh
//! cargo run --release --example predict_service -- runs/cats-vs-dogs/model.onnx ../shared/data/cats-vs-dogs/train
//! ```
//!
//! Prints `PATH<TAB>LABEL` per image, in the order `graft predict MODEL INPUTS...` prints them (the
//! same first two columns), then a summary line on stderr.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use graft::predict::{Model, Prediction};

/// Images per request.
const REQUEST: usize = 16;
/// Threads answering requests.
const WORKERS: usize = 4;

fn main() -> graft::Result<()> {
    let mut args = std::env::args().skip(1);
    let model_path =
        args.next().ok_or_else(|| graft::Error::Invalid("usage: predict_service MODEL INPUTS...".into()))?;
    let inputs: Vec<PathBuf> = args.map(PathBuf::from).collect();

    let started = Instant::now();
    let model = Arc::new(Model::load(&model_path)?);
    let files = graft::data::collect_images(&inputs)?;
    let requests: Vec<&[PathBuf]> = files.chunks(REQUEST).collect();

    // Each worker takes the next request until none is left; answers are kept by request number.
    let next = AtomicUsize::new(0);
    let answers: Mutex<Vec<Option<Vec<Prediction>>>> = Mutex::new(vec![None; requests.len()]);
    let skipped = Mutex::new(Vec::new());
    std::thread::scope(|scope| -> graft::Result<()> {
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| {
                let model = Arc::clone(&model);
                let (next, answers, skipped, requests) = (&next, &answers, &skipped, &requests);
                scope.spawn(move || -> graft::Result<usize> {
                    let mut served = 0;
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        let Some(request) = requests.get(i) else { return Ok(served) };
                        let predicted = model.predict_images(request)?;
                        skipped.lock().unwrap().extend(predicted.skipped);
                        answers.lock().unwrap()[i] = Some(predicted.predictions);
                        served += 1;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("a worker panicked")?;
        }
        Ok(())
    })?;

    let answers = answers.into_inner().unwrap();
    let predictions: Vec<Prediction> = answers.into_iter().flatten().flatten().collect();
    for p in &predictions {
        println!("{}\t{}", p.id, p.label);
    }
    for s in skipped.into_inner().unwrap() {
        eprintln!("skipped {}: {}", s.path, s.reason);
    }
    let (engine, device) = model.engine();
    eprintln!(
        "{} predictions from {WORKERS} threads sharing one model ({engine} on {device}) in {:.2} s",
        predictions.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
