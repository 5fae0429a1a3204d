//! Tokenizers: from a Hugging Face `tokenizer.json`, or built from GGUF metadata (GPT-2 style
//! byte-level BPE: `tokenizer.ggml.tokens`, `.merges`, `.token_type`).

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, Tokenizer};

use super::ModelError;

/// Loads `tokenizer.json` with padding and truncation **disabled** (some checkpoints bake in
/// padding to 128, which would make every pooled embedding mostly `[PAD]`).
pub fn from_json_file(path: &Path) -> Result<Tokenizer, ModelError> {
    if !path.is_file() {
        return Err(ModelError::MissingFile { path: path.to_path_buf(), what: "tokenizer.json".into() });
    }
    let mut tok = Tokenizer::from_file(path).map_err(|e| ModelError::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
    tok.with_padding(None);
    tok.with_truncation(None).map_err(|e| ModelError::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(tok)
}

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Builds a byte-level BPE tokenizer from GGUF metadata: vocabulary and merges from
/// `tokenizer.ggml.tokens` / `.merges`, a `Digits(individual)` pre-tokenizer before
/// `ByteLevel(add_prefix_space = false)`, control tokens (type 3) as special tokens, no BOS added.
pub fn from_gguf_metadata(meta: &HashMap<String, gguf_file::Value>, path: &Path) -> Result<Tokenizer, ModelError> {
    let err = |reason: String| ModelError::Tokenizer { path: path.to_path_buf(), reason };
    let model = meta.get("tokenizer.ggml.model").and_then(|v| v.to_string().ok()).map(String::as_str).unwrap_or("");
    if model != "gpt2" {
        return Err(err(format!("unsupported GGUF tokenizer model {model:?} (supported: gpt2 byte-level BPE)")));
    }
    let strings = |key: &str| -> Result<Vec<String>, ModelError> {
        let v = meta.get(key).ok_or_else(|| err(format!("missing metadata {key}")))?;
        let arr = v.to_vec().map_err(|e| err(format!("{key}: {e}")))?;
        arr.iter().map(|x| x.to_string().cloned().map_err(|e| err(format!("{key}: {e}")))).collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges_raw = strings("tokenizer.ggml.merges")?;
    let types: Vec<i32> = match meta.get("tokenizer.ggml.token_type").and_then(|v| v.to_vec().ok()) {
        Some(a) => a.iter().map(|x| x.to_i32().unwrap_or(1)).collect(),
        None => vec![1; tokens.len()],
    };
    let vocab: HashMap<String, u32> = tokens.iter().enumerate().map(|(i, t)| (t.clone(), i as u32)).collect();
    let mut merges = Vec::with_capacity(merges_raw.len());
    for (i, m) in merges_raw.iter().enumerate() {
        let (a, b) = m.split_once(' ').ok_or_else(|| err(format!("merge {i} ({m:?}) is not two tokens separated by a space")))?;
        merges.push((a.to_owned(), b.to_owned()));
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<tokenizers::models::bpe::Vocab>(), merges)
        .build()
        .map_err(|e| err(format!("building BPE: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Digits(Digits::new(true)),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, true)),
    ]);
    tok.with_pre_tokenizer(Some(pre));
    tok.with_decoder(Some(ByteLevelDecoder::default()));
    let special: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == TOKEN_TYPE_CONTROL)
        .map(|(s, _)| AddedToken::from(s.clone(), true))
        .collect();
    tok.add_special_tokens(special).map_err(|e| err(format!("adding special tokens: {e}")))?;
    let user: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|(_, &t)| t == TOKEN_TYPE_USER_DEFINED)
        .map(|(s, _)| AddedToken::from(s.clone(), false))
        .collect();
    tok.add_tokens(user).map_err(|e| err(format!("adding user-defined tokens: {e}")))?;
    Ok(tok)
}
