//! Text to token ids with the `tokenizers` crate: a pretrained `tokenizer.json` (BERT route) or a
//! word-level vocabulary trained on the training texts (LSTM route), saved beside the model.
//! Batches are padded dynamically (to their longest text) and truncated at `max_length`.

use std::path::Path;

use ndarray::Array2;
use tokenizers::models::wordlevel::{WordLevel, WordLevelTrainer};
use tokenizers::normalizers::utils::Lowercase;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::utils::padding::{PaddingParams, PaddingStrategy};
use tokenizers::utils::truncation::TruncationParams;
use tokenizers::{AddedToken, Tokenizer};

use crate::{io, Error, Result};

/// Padding token (id 0) and unknown-word token (id 1) of trained vocabularies.
pub const PAD: &str = "[PAD]";
/// Unknown-word token (id 1) of trained vocabularies.
pub const UNK: &str = "[UNK]";

/// One padded batch.
///
/// # Shapes
/// all `[B, S]`, `S` the longest text of the batch (at least 1)
pub struct Encoded {
    /// Token ids (0 at padding).
    pub ids: Array2<i64>,
    /// 1 at tokens, 0 at padding.
    pub mask: Array2<i64>,
    /// Segment ids (all 0).
    pub type_ids: Array2<i64>,
}

impl Encoded {
    /// The tensors for a model's text inputs, by name (`input_ids`, `attention_mask`,
    /// `token_type_ids`).
    pub fn inputs(&self, names: &[String]) -> Result<Vec<(String, crate::backend::Value)>> {
        names
            .iter()
            .map(|name| {
                let t = match name.as_str() {
                    "input_ids" => &self.ids,
                    "attention_mask" => &self.mask,
                    "token_type_ids" => &self.type_ids,
                    other => {
                        return Err(Error::Tensor { name: other.into(), msg: "not a text input graft can fill".into() })
                    }
                };
                Ok((name.clone(), crate::backend::Value::I64(t.clone().into_dyn())))
            })
            .collect()
    }
}

/// A tokenizer with graft's padding and truncation settings.
pub struct TextEncoder {
    tokenizer: Tokenizer,
    /// Tokens kept per text (longer texts are truncated).
    pub max_length: usize,
}

fn tok_err(what: &str) -> impl Fn(tokenizers::Error) -> Error + '_ {
    move |e| Error::Invalid(format!("{what}: {e}"))
}

impl TextEncoder {
    /// Loads `tokenizer.json`; its own padding is replaced by dynamic padding, its truncation by
    /// `max_length`.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(path).map_err(|e| Error::data(path, None, format!("tokenizer: {e}")))?;
        Self::configure(tokenizer, max_length)
    }

    /// Trains a word-level vocabulary (lowercased when asked, split on whitespace and punctuation) of
    /// at most `vocab_size` entries, `[PAD]` = 0 and `[UNK]` = 1 included.
    pub fn train_word_level(texts: &[String], vocab_size: usize, lowercase: bool, max_length: usize) -> Result<Self> {
        let model = WordLevel::builder().unk_token(UNK.into()).build().map_err(tok_err("word-level model"))?;
        let mut tokenizer = Tokenizer::new(model);
        if lowercase {
            tokenizer.with_normalizer(Some(Lowercase)).map_err(tok_err("normalizer"))?;
        }
        tokenizer.with_pre_tokenizer(Some(BertPreTokenizer));
        let mut trainer: tokenizers::models::TrainerWrapper = WordLevelTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(1)
            .show_progress(false)
            .special_tokens(vec![AddedToken::from(PAD, true), AddedToken::from(UNK, true)])
            .build()
            .map_err(|e| Error::Invalid(format!("word-level trainer: {e}")))?
            .into();
        tokenizer.train(&mut trainer, texts.iter()).map_err(tok_err("training the vocabulary"))?;
        Self::configure(tokenizer, max_length)
    }

    fn configure(mut tokenizer: Tokenizer, max_length: usize) -> Result<Self> {
        let pad_token = if tokenizer.token_to_id(PAD).is_some() { PAD.to_string() } else { "[PAD]".into() };
        let pad_id = tokenizer.token_to_id(&pad_token).unwrap_or(0);
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            pad_id,
            pad_token,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length, ..Default::default() }))
            .map_err(tok_err("truncation"))?;
        Ok(TextEncoder { tokenizer, max_length })
    }

    /// Vocabulary size, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }

    /// The tokenizer as JSON (what `tokenizer.json` holds).
    pub fn to_json(&self) -> Result<String> {
        self.tokenizer.to_string(true).map_err(tok_err("tokenizer"))
    }

    /// Writes `tokenizer.json` atomically; returns its sha256.
    pub fn save(&self, path: &Path) -> Result<String> {
        let json = self.to_json()?;
        io::write_atomic(path, json.as_bytes())?;
        Ok(io::sha256_hex(json.as_bytes()))
    }

    /// Tokenizes a batch padded to `max_length` instead of to its longest text.
    pub fn encode_fixed(&self, texts: &[&str]) -> Result<Encoded> {
        let e = self.encode(texts)?;
        let (b, s) = e.ids.dim();
        let pad = |a: Array2<i64>| {
            let mut out = Array2::zeros((b, self.max_length.max(s)));
            out.slice_mut(ndarray::s![.., ..s]).assign(&a);
            out
        };
        Ok(Encoded { ids: pad(e.ids), mask: pad(e.mask), type_ids: pad(e.type_ids) })
    }

    /// Tokenizes and pads a batch.
    pub fn encode(&self, texts: &[&str]) -> Result<Encoded> {
        let encodings = self.tokenizer.encode_batch(texts.to_vec(), true).map_err(tok_err("tokenizing"))?;
        let s = encodings.iter().map(|e| e.get_ids().len()).max().unwrap_or(0).max(1);
        let b = encodings.len();
        let mut out =
            Encoded { ids: Array2::zeros((b, s)), mask: Array2::zeros((b, s)), type_ids: Array2::zeros((b, s)) };
        for (row, e) in encodings.iter().enumerate() {
            for (t, ((&id, &m), &ty)) in
                e.get_ids().iter().zip(e.get_attention_mask()).zip(e.get_type_ids()).enumerate()
            {
                out.ids[[row, t]] = id as i64;
                out.mask[[row, t]] = m as i64;
                out.type_ids[[row, t]] = ty as i64;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_level_vocabulary_pads_with_zero_and_truncates() {
        let texts: Vec<String> =
            ["The raven said", "the RAVEN, nevermore!", "Ça va — très bien"].map(String::from).to_vec();
        let enc = TextEncoder::train_word_level(&texts, 100, true, 4).unwrap();
        assert_eq!(enc.tokenizer.token_to_id(PAD), Some(0));
        assert_eq!(enc.tokenizer.token_to_id(UNK), Some(1));
        let e = enc.encode(&["the raven", "", "the raven said the raven nevermore", "zebra"]).unwrap();
        assert_eq!(e.ids.shape(), [4, 4], "padded to the longest, truncated at 4");
        assert_eq!(e.mask.row(0).to_vec(), [1, 1, 0, 0]);
        assert_eq!(e.mask.row(1).to_vec(), [0, 0, 0, 0], "the empty string is all padding");
        assert_eq!(e.ids[[0, 0]], e.ids[[2, 0]], "lowercased: The == the");
        assert_eq!(e.ids[[3, 0]], 1, "unknown word");
        assert!(e.ids.row(1).iter().all(|&i| i == 0));
        let enc2 = TextEncoder::from_file(
            &{
                let dir = tempfile::tempdir().unwrap().keep();
                let p = dir.join("tokenizer.json");
                enc.save(&p).unwrap();
                p
            },
            4,
        )
        .unwrap();
        assert_eq!(enc2.encode(&["Ça va très bien"]).unwrap().ids, enc.encode(&["Ça va très bien"]).unwrap().ids);
    }
}
