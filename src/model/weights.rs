//! Weight sources: a Hugging Face safetensors directory (single file or sharded with its index) or
//! a GGUF file, both read into `f32` tensors on the CPU. Every lookup checks the shape and names
//! the file and tensor when something is missing or wrong.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file;
use candle_core::{DType, Device, Tensor};

use super::ModelError;

/// Named `f32` tensors loaded from one model's files.
pub struct Weights {
    /// The file or directory they came from (for error messages).
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    /// Loads every tensor of the safetensors files of a Hugging Face directory: `model.safetensors`,
    /// or the shards listed in `model.safetensors.index.json`.
    pub fn from_safetensors_dir(dir: &Path) -> Result<Self, ModelError> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<PathBuf> = if single.is_file() {
            vec![single]
        } else if index.is_file() {
            let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
            let json: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| ModelError::Corrupt { path: index.clone(), reason: e.to_string() })?;
            let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| ModelError::Corrupt {
                path: index.clone(),
                reason: "no \"weight_map\" object".into(),
            })?;
            let mut shards: Vec<String> = map.values().filter_map(|v| v.as_str().map(str::to_owned)).collect();
            shards.sort();
            shards.dedup();
            shards.into_iter().map(|s| dir.join(s)).collect()
        } else {
            return Err(ModelError::MissingFile {
                path: single,
                what: "model weights (model.safetensors or model.safetensors.index.json)".into(),
            });
        };
        let mut tensors = HashMap::new();
        for f in &files {
            if !f.is_file() {
                return Err(ModelError::MissingFile { path: f.clone(), what: "safetensors shard".into() });
            }
            let loaded = candle_core::safetensors::load(f, &Device::Cpu)
                .map_err(|e| ModelError::Corrupt { path: f.clone(), reason: e.to_string() })?;
            for (k, t) in loaded {
                let t = t
                    .to_dtype(DType::F32)
                    .map_err(|e| ModelError::Corrupt { path: f.clone(), reason: e.to_string() })?;
                tensors.insert(k, t);
            }
        }
        Ok(Weights { path: dir.to_path_buf(), tensors })
    }

    /// Reads a GGUF file: its metadata and every tensor, dequantized to `f32`.
    pub fn from_gguf(path: &Path) -> Result<(Self, HashMap<String, gguf_file::Value>), ModelError> {
        let file = File::open(path).map_err(|e| ModelError::io(path, e))?;
        let mut reader = BufReader::new(file);
        let corrupt = |e: candle_core::Error| ModelError::Corrupt { path: path.to_path_buf(), reason: e.to_string() };
        let content = gguf_file::Content::read(&mut reader).map_err(corrupt)?;
        let mut tensors = HashMap::new();
        for name in content.tensor_infos.keys() {
            let q = content.tensor(&mut reader, name, &Device::Cpu).map_err(corrupt)?;
            let t = q.dequantize(&Device::Cpu).map_err(corrupt)?;
            tensors.insert(name.clone(), t);
        }
        Ok((Weights { path: path.to_path_buf(), tensors }, content.metadata))
    }

    /// Wraps tensors already in memory (tests, conversions).
    pub fn from_tensors(path: impl Into<PathBuf>, tensors: HashMap<String, Tensor>) -> Self {
        Weights { path: path.into(), tensors }
    }

    /// An empty set of random weights on `device` in `dtype`, filled by [`RandomWeights::draw`]
    /// (benchmarks' random models).
    pub(crate) fn random(device: &Device, dtype: DType) -> RandomWeights {
        RandomWeights { device: device.clone(), dtype, tensors: HashMap::new() }
    }

    /// The file or directory the weights came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether a tensor of that name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The shape of tensor `name`, if present.
    pub fn dims(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors.get(name).map(|t| t.dims().to_vec())
    }

    /// The tensor `name`, which must have exactly `shape`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, ModelError> {
        match self.get_opt(name, shape)? {
            Some(t) => Ok(t),
            None => Err(ModelError::MissingTensor { path: self.path.clone(), name: name.to_owned() }),
        }
    }

    /// The tensor `name` if present (checked against `shape`), `None` if absent.
    pub fn get_opt(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>, ModelError> {
        let Some(t) = self.tensors.get(name) else {
            return Ok(None);
        };
        if t.dims() != shape {
            return Err(ModelError::ShapeMismatch {
                path: self.path.clone(),
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        Ok(Some(t.clone()))
    }

    /// The first of `names` that exists (checked against `shape`); the error names the first.
    pub fn get_any(&self, names: &[&str], shape: &[usize]) -> Result<Tensor, ModelError> {
        for n in names {
            if let Some(t) = self.get_opt(n, shape)? {
                return Ok(t);
            }
        }
        Err(ModelError::MissingTensor { path: self.path.clone(), name: names.join(" or ") })
    }

    /// Like [`Weights::get_any`] but `None` when no name exists.
    pub fn get_any_opt(&self, names: &[&str], shape: &[usize]) -> Result<Option<Tensor>, ModelError> {
        for n in names {
            if let Some(t) = self.get_opt(n, shape)? {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// The common prefix under which a family's tensors live (`""`, `"model."`, `"bert."`, …): the
    /// first of `prefixes` for which `prefix + probe` exists.
    pub fn find_prefix<'p>(&self, prefixes: &[&'p str], probe: &str) -> Option<&'p str> {
        prefixes.iter().copied().find(|p| self.contains(&format!("{p}{probe}")))
    }
}

/// Random weights being drawn ([`Weights::random`]).
pub(crate) struct RandomWeights {
    device: Device,
    dtype: DType,
    tensors: HashMap<String, Tensor>,
}

impl RandomWeights {
    /// Adds `name` of `shape`: `fill` everywhere, or (`None`) normal with standard deviation 0.02,
    /// drawn on the device.
    pub(crate) fn draw(&mut self, name: String, shape: &[usize], fill: Option<f32>) -> Result<(), ModelError> {
        let x = match fill {
            Some(v) => Tensor::full(v, shape, &self.device)?,
            None => Tensor::randn(0f32, 0.02, shape, &self.device)?,
        };
        self.tensors.insert(name, x.to_dtype(self.dtype)?);
        Ok(())
    }

    /// The weights drawn.
    pub(crate) fn done(self) -> Weights {
        Weights::from_tensors("(random weights)", self.tensors)
    }
}
