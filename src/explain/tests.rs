use std::path::PathBuf;

use ndarray::{s, Array2, ArrayD};

use super::*;
use crate::backend::BackendKind;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn tract() -> EngineOptions {
    EngineOptions { backend: BackendKind::Tract, ..Default::default() }
}

/// 8x8 photos with different patterns, so the maps differ.
fn photos() -> Vec<image::RgbImage> {
    (0..3u32)
        .map(|k| {
            image::RgbImage::from_fn(8, 8, |x, y| {
                image::Rgb([(x * 30 + k * 40) as u8, (y * 31 * (k + 1)) as u8, ((x * y * 7 + k * 90) % 256) as u8])
            })
        })
        .collect()
}

fn max_diff(a: &Array2<f32>, b: &Array2<f32>) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Grad-CAM through a non-linear head (Gemm → Relu → Gemm after the pooling, as in a fine-tuned
/// model): the channel weights are checked against central finite differences of the class score
/// (each channel of the feature map shifted by ±ε), for the predicted class and for a fixed one.
#[test]
fn grad_cam_matches_finite_differences_on_a_nonlinear_head() {
    let path = fixture("tiny_cam.onnx");
    let mut ex = Explainer::open(&path, &tract()).unwrap();
    let want = Taps { feature: "features".into(), score: "logits".into(), softmax: true };
    assert_eq!(ex.taps(), &want);
    let imgs = photos();
    let a = ex.features(&imgs).unwrap();
    assert_eq!(a.shape(), [3, 6, 8, 8]);
    let model = crate::onnx::load(&path).unwrap();
    let mut scores = Tail::new(&model, "features", Some("logits")).unwrap();
    let mut score = |x: ArrayD<f32>, k: usize| scores.forward(x, Vec::new(), false).unwrap()[[0, k]] as f64;
    let mut distinct = 0;
    for class in [None, Some(2)] {
        let cams = ex.cams(&imgs, class).unwrap();
        for (i, cam) in cams.iter().enumerate() {
            let row = a.slice(s![i..i + 1, .., .., ..]).to_owned();
            let (eps, hw) = (1e-3f32, 64.0);
            let mut expected = Array2::<f32>::zeros((8, 8));
            for c in 0..6 {
                let shifted = |d: f32| {
                    let mut x = row.clone();
                    x.slice_mut(s![0, c, .., ..]).mapv_inplace(|v| v + d);
                    x
                };
                let (up, down) = (shifted(eps).into_dyn(), shifted(-eps).into_dyn());
                let slope = (score(up, cam.class) - score(down, cam.class)) / (2.0 * eps as f64);
                expected.scaled_add(slope as f32 / hw, &row.slice(s![0, c, .., ..]));
            }
            let expected = normalise(expected);
            assert!(expected.iter().any(|v| *v > 0.0), "image {i}: an empty map tests nothing");
            let d = max_diff(&cam.map, &expected);
            assert!(d < 1e-3, "image {i}, class {class:?}: max |Grad-CAM - finite differences| = {d}");
            if class.is_some() && cam.probabilities.iter().cloned().fold(0.0, f32::max) != cam.probabilities[2] {
                distinct += 1;
            }
        }
        if let Some(c) = class {
            assert!(cams.iter().all(|m| m.class == c));
        }
        let sum: f32 = cams[0].probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-5, "{sum}");
    }
    assert!(distinct > 0, "the fixed class should differ from the predicted one for some image");
}

/// With a linear head after global average pooling, Grad-CAM is the classic CAM: the head's
/// weights for the class applied to the feature map.
#[test]
fn with_a_linear_head_grad_cam_is_the_classic_cam() {
    let model = crate::onnx::load(&fixture("tiny_cnn.onnx")).unwrap();
    let taps = taps(&model, "tiny_cnn").unwrap();
    assert_eq!(taps, Taps { feature: "relu".into(), score: "logits".into(), softmax: true });
    let fc: ArrayD<f32> = model
        .graph
        .as_ref()
        .unwrap()
        .initializer
        .iter()
        .find(|t| t.name == "fc_w")
        .map(|t| match crate::graph::value::from_proto(t).unwrap() {
            crate::graph::Value::F32(a) => a,
            _ => unreachable!(),
        })
        .unwrap();
    let mut tail = Tail::new(&model, &taps.feature, Some(&taps.score)).unwrap();
    let a = crate::nn::gradcheck::input(&[2, 4, 5, 5], 7).mapv(f32::abs);
    for class in 0..3 {
        let cams = grad_cam(&mut tail, a.clone(), Some(class), true).unwrap();
        for (i, cam) in cams.iter().enumerate() {
            let mut cam_map = Array2::<f32>::zeros((5, 5));
            for c in 0..4 {
                cam_map.scaled_add(fc[[class, c]], &a.slice(s![i, c, .., ..]));
            }
            let d = max_diff(&cam.map, &normalise(cam_map));
            assert!(d < 1e-5, "class {class}, image {i}: {d}");
        }
    }
}

#[test]
fn a_model_without_global_pooling_is_refused_by_name() {
    let model = crate::onnx::load(&fixture("tiny_text.onnx")).unwrap();
    let e = taps(&model, "tiny_text.onnx").unwrap_err().to_string();
    assert!(e.contains("tiny_text.onnx") && e.contains("no global pooling"), "{e}");
}

#[test]
fn an_unknown_class_is_refused_with_the_model_classes() {
    let ex = Explainer::open(&fixture("tiny_cam.onnx"), &tract()).unwrap();
    assert_eq!(ex.class("bee").unwrap(), 1);
    let e = ex.class("wasp").unwrap_err().to_string();
    assert!(e.contains("`wasp`") && e.contains("ant, bee, cat"), "{e}");
}

#[test]
fn normalise_clips_negatives_and_scales_to_one() {
    let m = normalise(Array2::from_shape_vec((1, 3), vec![-2.0, 1.0, 4.0]).unwrap());
    assert_eq!(m.into_raw_vec_and_offset().0, [0.0, 0.25, 1.0]);
    let none = normalise(Array2::from_elem((2, 2), -1.0));
    assert!(none.iter().all(|v| *v == 0.0));
}

#[test]
fn upsampling_keeps_constants_and_corners() {
    let flat = Array2::from_elem((3, 3), 0.4f32);
    assert!(upsample(flat.view(), 10, 7).iter().all(|v| (v - 0.4).abs() < 1e-6));
    let ramp = Array2::from_shape_vec((1, 2), vec![0.0f32, 1.0]).unwrap();
    let up = upsample(ramp.view(), 8, 1);
    assert_eq!((up[0], up[7]), (0.0, 1.0));
    assert!(up.windows(2).all(|w| w[0] <= w[1]), "{up:?}");
    assert_eq!(jet(0.0), [0, 0, 128]);
    assert_eq!(jet(1.0), [128, 0, 0]);
}

/// The overlay reddens where the map is hot and blues where it is cold.
#[test]
fn overlay_colours_hot_and_cold_regions() {
    let grey = image::RgbImage::from_pixel(16, 16, image::Rgb([128, 128, 128]));
    let mut map = Array2::<f32>::zeros((2, 2));
    map[[0, 0]] = 1.0;
    let out = overlay(&grey, map.view());
    let (hot, cold) = (out.get_pixel(0, 0), out.get_pixel(15, 15));
    assert!(hot[0] > hot[2] && cold[2] > cold[0], "{hot:?} {cold:?}");
}

/// The gallery has one captioned tile per mistake, four to a row.
#[test]
fn gallery_draws_captioned_tiles() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mistakes.png");
    let tile = |k: u8| Tile {
        image: image::RgbImage::from_pixel(32, 32, image::Rgb([k, 100, 200])),
        truth: "cat".into(),
        predicted: "dog".into(),
        probability: 0.97,
    };
    gallery(&path, "most confidently wrong", &(0..6).map(tile).collect::<Vec<_>>()).unwrap();
    let img = image::open(&path).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (GAP_TEST + 4 * (192 + GAP_TEST), 40 + 2 * (192 + 42 + GAP_TEST)));
    // Caption text under the first tile: dark and red pixels.
    let caption = (10..150).flat_map(|x| (40 + 192..40 + 192 + 42).map(move |y| (x, y)));
    let pixels: Vec<_> = caption.map(|(x, y)| *img.get_pixel(x, y)).collect();
    assert!(pixels.iter().any(|p| p[0] < 100 && p[1] < 100), "no black text");
    assert!(pixels.iter().any(|p| p[0] as i32 > p[1] as i32 + 60), "no red text");
    gallery(&path, "nothing wrong", &[]).unwrap();
    assert!(image::open(&path).is_ok());
}

const GAP_TEST: u32 = 10;
