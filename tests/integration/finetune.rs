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
