//! Text examples for data attribution: each example's text is embedded once by a frozen encoder
//! (by default the embedded all-MiniLM-L6-v2: mean-pooled, L2-normalised sentence embeddings),
//! and the subset models are probes trained on those embeddings.
//!
//! A text-examples file holds one JSON object per line, `{"text": …, "label": …}` with an
//! optional `"id"` (default: the 0-based row); blank lines and lines starting with `#` are
//! skipped.

use std::path::Path;

use serde::Deserialize;

use super::features::{FeatureError, Features, UniqueIds};
use crate::model::{LoadedModel, ModelInput};
use crate::value::encoder::mean_pool_normalized;

/// One labelled text.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextExample {
    /// The text embedded.
    pub text: String,
    /// Its class (a string or a number in the file).
    #[serde(deserialize_with = "label_text")]
    pub label: String,
    /// Its name in reports.
    #[serde(default)]
    pub id: Option<String>,
}

fn label_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::String(s) => Ok(s),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!("must be a string or a number, not {other}"))),
    }
}

/// Reads a text-examples file.
pub fn read_text_examples(path: &Path) -> Result<Vec<TextExample>, FeatureError> {
    let source_name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| FeatureError::Read { source_name: source_name.clone(), message: e.to_string() })?;
    let (mut examples, mut seen) = (Vec::new(), UniqueIds::default());
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |message: String| FeatureError::BadLine { source_name: source_name.clone(), line: i + 1, message };
        let mut json = serde_json::Deserializer::from_str(line);
        // The path names the field at fault ("label: invalid type: …").
        let example: TextExample = serde_path_to_error::deserialize(&mut json).map_err(|e| bad(e.to_string()))?;
        if example.text.trim().is_empty() {
            return Err(bad("empty text".into()));
        }
        if example.label.trim().is_empty() {
            return Err(bad("empty label".into()));
        }
        if let Some(id) = &example.id {
            seen.check(id, i + 1, &source_name)?;
        }
        examples.push(example);
    }
    if examples.is_empty() {
        return Err(FeatureError::Empty { source_name });
    }
    Ok(examples)
}

/// The encoder's sentence embedding of `text`: mean over its tokens of the last hidden states,
/// L2-normalised (what sentence-transformers computes for all-MiniLM-L6-v2).
pub fn embed(encoder: &LoadedModel, text: &str) -> Result<Vec<f64>, FeatureError> {
    let fail =
        |e: crate::model::ModelError| FeatureError::Embedding { what: format!("{text:?}"), message: e.to_string() };
    let ids = encoder.encode(text).map_err(fail)?;
    let hidden = encoder.model.forward(&ModelInput::single(&ids)).map_err(fail)?.hidden;
    let pooled = mean_pool_normalized(&hidden, &vec![true; ids.len()]).map_err(fail)?;
    let row = pooled.squeeze(0).and_then(|t| t.to_vec1::<f32>()).map_err(|e| fail(e.into()))?;
    Ok(row.into_iter().map(f64::from).collect())
}

/// Embeds every example once; the rows of the features are the embeddings.
pub fn text_features(encoder: &LoadedModel, examples: &[TextExample]) -> Result<Features, FeatureError> {
    if encoder.model.lm_head().is_some() {
        return Err(FeatureError::Embedding {
            what: "the examples".into(),
            message: "the model is a causal LM; text features need an encoder (e.g. all-MiniLM-L6-v2)".into(),
        });
    }
    let mut x = Vec::new();
    for e in examples {
        x.extend(embed(encoder, &e.text)?);
    }
    let dim = x.len() / examples.len();
    let labels: Vec<&str> = examples.iter().map(|e| e.label.as_str()).collect();
    let ids = examples.iter().enumerate().map(|(i, e)| e.id.clone().unwrap_or_else(|| i.to_string())).collect();
    Features::from_labels(x, dim, &labels, Some(ids))
}
