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
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::ModelError;

/// Loads `tokenizer.json` with padding and truncation **disabled** (some checkpoints bake in
/// padding to 128, which would make every pooled embedding mostly `[PAD]`).
pub fn from_json_file(path: &Path) -> Result<Tokenizer, ModelError> {
    if !path.is_file() {
        return Err(ModelError::MissingFile { path: path.to_path_buf(), what: "tokenizer.json".into() });
    }
    let mut tok = Tokenizer::from_file(path)
        .map_err(|e| ModelError::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
    tok.with_padding(None);
    tok.with_truncation(None).map_err(|e| ModelError::Tokenizer { path: path.to_path_buf(), reason: e.to_string() })?;
    Ok(tok)
}

/// GGUF token types (llama.cpp `llama_token_type`).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// Llama 3's (`tokenizer.ggml.pre = "llama-bpe"`): digits in groups of up to three.
const LLAMA3_PATTERN: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's (`"qwen2"`): like Llama 3 with single digits.
const QWEN2_PATTERN: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The pre-tokenizer llama.cpp applies for a `tokenizer.ggml.pre` value, as the Hugging Face
/// `tokenizer.json` of those models spells it:
///
/// * `smollm`: `Digits(individual)` then `ByteLevel` with the GPT-2 regex;
/// * `gpt-2` / `gpt2`, or no value: `ByteLevel` with the GPT-2 regex;
/// * `llama-bpe` / `llama3`, `qwen2`: a regex `Split` then `ByteLevel` without its regex.
///
/// Any other value is an error naming it (its regex is unknown here, and a wrong one tokenizes
/// plausibly but wrongly).
pub fn pre_tokenizer(pre: Option<&str>) -> Result<PreTokenizerWrapper, String> {
    let byte_level = |regex: bool| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, regex));
    let split = |pattern: &str| -> Result<PreTokenizerWrapper, String> {
        let s = Split::new(SplitPattern::Regex(pattern.to_owned()), SplitDelimiterBehavior::Isolated, false)
            .map_err(|e| format!("pre-tokenizer regex: {e}"))?;
        Ok(PreTokenizerWrapper::Split(s))
    };
    Ok(match pre {
        Some("smollm") => PreTokenizerWrapper::Sequence(Sequence::new(vec![PreTokenizerWrapper::Digits(Digits::new(true)), byte_level(true)])),
        None | Some("gpt-2") | Some("gpt2") => byte_level(true),
        Some("llama-bpe") | Some("llama3") => PreTokenizerWrapper::Sequence(Sequence::new(vec![split(LLAMA3_PATTERN)?, byte_level(false)])),
        Some("qwen2") => PreTokenizerWrapper::Sequence(Sequence::new(vec![split(QWEN2_PATTERN)?, byte_level(false)])),
        Some(other) => {
            return Err(format!(
                "unsupported tokenizer.ggml.pre {other:?} (supported: smollm, gpt-2, llama-bpe, qwen2); use the model's Hugging Face directory with its tokenizer.json"
            ))
        }
    })
}

/// Builds a byte-level BPE tokenizer from GGUF metadata: vocabulary and merges from
/// `tokenizer.ggml.tokens` / `.merges`, the pre-tokenizer named by `tokenizer.ggml.pre` (see
/// [`pre_tokenizer`]; SmolLM2: `Digits(individual)` before `ByteLevel(add_prefix_space =
/// false)`), control tokens (type 3) as special tokens, no BOS added.
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
        let (a, b) = m
            .split_once(' ')
            .ok_or_else(|| err(format!("merge {i} ({m:?}) is not two tokens separated by a space")))?;
        merges.push((a.to_owned(), b.to_owned()));
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab.into_iter().collect::<tokenizers::models::bpe::Vocab>(), merges)
        .build()
        .map_err(|e| err(format!("building BPE: {e}")))?;
    let mut tok = Tokenizer::new(bpe);
    let pre_name = meta.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).map(String::as_str);
    tok.with_pre_tokenizer(Some(pre_tokenizer(pre_name).map_err(err)?));
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::quantized::gguf_file::Value;

    /// Byte-level vocabulary (GPT-2's byte → character map) plus the merge `1 2`.
    fn meta(pre: Option<&str>) -> HashMap<String, Value> {
        let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
        let mut cs = bs.clone();
        for b in 0..256u32 {
            if !bs.contains(&b) {
                bs.push(b);
                cs.push(256 + cs.len() as u32 - 188);
            }
        }
        let mut tokens = vec![String::new(); 256];
        for (b, c) in bs.iter().zip(&cs) {
            tokens[*b as usize] = char::from_u32(*c).unwrap().to_string();
        }
        tokens.push("12".into());
        let mut m = HashMap::new();
        m.insert("tokenizer.ggml.model".to_string(), Value::String("gpt2".into()));
        m.insert("tokenizer.ggml.tokens".to_string(), Value::Array(tokens.into_iter().map(Value::String).collect()));
        m.insert("tokenizer.ggml.merges".to_string(), Value::Array(vec![Value::String("1 2".into())]));
        if let Some(p) = pre {
            m.insert("tokenizer.ggml.pre".to_string(), Value::String(p.into()));
        }
        m
    }

    fn pieces(pre: Option<&str>, text: &str) -> Vec<String> {
        let tok = from_gguf_metadata(&meta(pre), Path::new("t.gguf")).unwrap();
        tok.encode(text, false).unwrap().get_tokens().to_vec()
    }

    #[test]
    fn pre_tokenizers_split_digits_as_their_models_do() {
        // GPT-2 keeps " 123" together (so the merge 1+2 applies); SmolLM2 and Qwen2 isolate digits.
        assert_eq!(pieces(None, "a 123"), ["a", "Ġ", "12", "3"]);
        assert_eq!(pieces(Some("gpt-2"), "a 123"), ["a", "Ġ", "12", "3"]);
        assert_eq!(pieces(Some("smollm"), "a 123"), ["a", "Ġ", "1", "2", "3"]);
        assert_eq!(pieces(Some("qwen2"), "a 123"), ["a", "Ġ", "1", "2", "3"]);
        // Llama 3 groups digits by three: "1234" = "123" + "4".
        assert_eq!(pieces(Some("llama-bpe"), "a 1234"), ["a", "Ġ", "12", "3", "4"]);
        assert_eq!(pieces(Some("llama-bpe"), "a 412"), ["a", "Ġ", "4", "12"]);
        let e = from_gguf_metadata(&meta(Some("falcon")), Path::new("t.gguf")).unwrap_err();
        assert!(e.to_string().contains("falcon") && e.to_string().contains("t.gguf"), "{e}");
    }
}
