//! Data attribution: the players are training examples, a mask selects a training subset, and
//! the value is a test prediction of a model trained on that subset.
//!
//! [`DataValue`] is a [`ValueFunction`]: for a batch of `B` masks it trains `B` models at once —
//! one batched tensor program, not `B` loops (see [`train`]) — and returns one value per mask:
//!
//! * [`Target::Margin`]: the logit of a class at one test example minus the largest other logit;
//! * [`Target::LogOdds`]: `log p − log(1 − p)` of that class's softmax probability;
//! * [`Target::Loss`]: the cross-entropy at one test example, or its mean over a test set.
//!
//! The class is the test example's true class, the class the model trained on every example
//! predicts, or one named class ([`ClassChoice`]). Models are multinomial logistic regression or
//! a one-hidden-layer tanh MLP, trained by a fixed, seeded number of full-batch gradient steps
//! from one seeded initialisation, so the value is a deterministic, smooth function of the mask.
//! **The empty subset** trains nothing: its value is the initial model's (for logistic
//! regression, all logits zero: margin 0, log-odds `−log(C−1)`, loss `log C`).
//!
//! Features are standardised with the mean and standard deviation of all training examples
//! (whatever subset a mask later keeps) and the same transform is applied to the test examples.
//! They come from a numeric CSV file, from texts embedded by a frozen encoder ([`text`]), or from
//! any matrix: see [`Features`].
//!
//! ```
//! use spex::mask::MaskBatch;
//! use spex::value::data::{ClassChoice, DataValue, Features, Target, TrainConfig, ValueSpec};
//! use spex::value::ValueFunction;
//!
//! // Four examples in one dimension: two of class "a" on the left, two of "b" on the right.
//! let train = Features::from_labels(vec![-2.0, -1.0, 1.0, 2.0], 1, &["a", "a", "b", "b"], None)?;
//! let spec = ValueSpec { target: Target::Margin, test: Some(3), class: ClassChoice::True };
//! let device = candle_core::Device::Cpu;
//! let mut f = DataValue::new(&train, &train, &spec, TrainConfig::default(), &device)?;
//! let masks = MaskBatch::parse_rows(["1111", "0000", "1100"])?;
//! let v = f.evaluate(masks.as_slice())?;
//! assert!(v[0] > 1.0); // trained on everything, example 3 is confidently "b"
//! assert_eq!(v[1], 0.0); // the empty subset: the untrained model
//! assert!(v[2] < 0.0); // trained on the two "a" examples only
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Text examples go through frozen embeddings: [`text`] embeds each example once with an encoder
//! (the embedded all-MiniLM-L6-v2 by default) into [`Features`], and the probes are trained on
//! subsets of those rows.

pub mod features;
mod kernels;
pub mod reference;
pub mod text;
pub mod train;

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

pub use features::{Column, CsvOptions, FeatureError, Features, HeaderMode, Standardizer};
pub use train::{BatchTrainer, ModelKind, ModelParams, Precision, TrainConfig, Trained};

use super::{ValueError, ValueFunction};
use crate::mask::{Mask, MaskBatch, MaskSlice};

/// Why a data-attribution value function could not be built or evaluated.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The features could not be read.
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// The training examples have only one class.
    #[error("every training example has the class {class:?}; training needs at least two classes")]
    SingleClass {
        /// The one class.
        class: String,
    },
    /// No training examples.
    #[error("no training examples")]
    NoExamples,
    /// The test index is past the test set.
    #[error("test index {index} is out of range: the test set has {rows} examples (0-based: 0..{rows})")]
    TestIndex {
        /// The index asked for.
        index: usize,
        /// Test examples.
        rows: usize,
    },
    /// Training and test sets have different numbers of features.
    #[error("the training examples have {train} features but the test examples {test}")]
    FeatureCount {
        /// Training features.
        train: usize,
        /// Test features.
        test: usize,
    },
    /// Training and test headers name the feature columns differently.
    #[error(
        "the test examples' feature columns ({test}) are not the training examples' ({train}); columns are \
         matched by position, so their names must agree, in order"
    )]
    FeatureNames {
        /// Training feature names, comma-separated.
        train: String,
        /// Test feature names, comma-separated.
        test: String,
    },
    /// A test example's label is not a class of the training set, and the target needs it.
    #[error("test example {row} has the label {label:?}, which no training example has (classes: {classes})")]
    UnknownLabel {
        /// 0-based test row.
        row: usize,
        /// Its label.
        label: String,
        /// The training classes.
        classes: String,
    },
    /// The class asked for is not a training class.
    #[error("no class {class:?} among the training labels ({classes})")]
    UnknownClass {
        /// The class asked for.
        class: String,
        /// The training classes.
        classes: String,
    },
    /// Margin and log-odds are about one test example.
    #[error("the {0} target is about one test example: give a test index")]
    NeedsTestIndex(Target),
    /// A setting is out of range.
    #[error("{0}")]
    Config(String),
    /// Training produced non-finite logits: the step size is too large for the data.
    #[error("training diverged (non-finite logits) with step size {lr:e}: use a smaller learning rate")]
    Diverged {
        /// The step size used.
        lr: f64,
    },
    /// A mask has the wrong number of players.
    #[error("masks have {found} players but there are {expected} training examples")]
    MaskWidth {
        /// Training examples.
        expected: usize,
        /// Players in the masks.
        found: usize,
    },
    /// The tensor library failed.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl From<DataError> for ValueError {
    fn from(e: DataError) -> Self {
        ValueError::Failed(e.to_string())
    }
}

/// What the value of a mask is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// `z_k − max_{j≠k} z_j` at the test example (`z` the logits, `k` the class).
    Margin,
    /// `log p_k − log(1 − p_k) = z_k − log Σ_{j≠k} e^{z_j}` at the test example.
    LogOdds,
    /// Cross-entropy `−log p_y` at the test example, or its mean over the test set (with no
    /// test index), `y` each example's true class.
    Loss,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Target::Margin => "margin",
            Target::LogOdds => "logodds",
            Target::Loss => "loss",
        })
    }
}

impl FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "margin" => Ok(Target::Margin),
            "logodds" | "log-odds" => Ok(Target::LogOdds),
            "loss" => Ok(Target::Loss),
            other => Err(format!("unknown target {other:?}; expected margin, logodds or loss")),
        }
    }
}

/// Whose class the margin or log-odds is of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClassChoice {
    /// The test example's label.
    True,
    /// The class predicted at the test example by the model trained on every training example.
    Predicted,
    /// A class by name (a label of the training set).
    Label(String),
}

impl fmt::Display for ClassChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClassChoice::True => f.write_str("true"),
            ClassChoice::Predicted => f.write_str("predicted"),
            ClassChoice::Label(l) => write!(f, "label {l:?}"),
        }
    }
}

impl FromStr for ClassChoice {
    type Err = String;
    /// `true`, `predicted`, or any other text as a class label.
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "true" => ClassChoice::True,
            "predicted" => ClassChoice::Predicted,
            label => ClassChoice::Label(label.to_string()),
        })
    }
}

/// What [`DataValue`] reports for each mask.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueSpec {
    /// The quantity.
    pub target: Target,
    /// 0-based test example; `None` (loss only) means every test example.
    pub test: Option<usize>,
    /// The class of a margin or log-odds (ignored by the loss, which uses each true class).
    pub class: ClassChoice,
}

/// The data-attribution value function (see the module documentation).
pub struct DataValue {
    trainer: BatchTrainer,
    target: Target,
    /// Standardised test examples used, row-major.
    test_x: Vec<f64>,
    /// Their true classes (for the loss).
    test_y: Vec<usize>,
    /// The class of a margin or log-odds.
    class: Option<usize>,
}

impl DataValue {
    /// Standardises `train` and `test` with the training statistics, and prepares the trainer.
    /// `test` may be `train` itself (the test example is then also a player).
    pub fn new(
        train: &Features,
        test: &Features,
        spec: &ValueSpec,
        config: TrainConfig,
        device: &Device,
    ) -> Result<Self, DataError> {
        if test.dim != train.dim {
            return Err(DataError::FeatureCount { train: train.dim, test: test.dim });
        }
        if let (Some(a), Some(b)) = (&train.feature_names, &test.feature_names) {
            // Features are matched by position: swapped columns would score silently wrong.
            if a != b {
                return Err(DataError::FeatureNames { train: a.join(", "), test: b.join(", ") });
            }
        }
        let rows: Vec<usize> = match (spec.test, spec.target) {
            (Some(index), _) if index >= test.rows() => return Err(DataError::TestIndex { index, rows: test.rows() }),
            (Some(index), _) => vec![index],
            (None, Target::Loss) => (0..test.rows()).collect(),
            (None, target) => return Err(DataError::NeedsTestIndex(target)),
        };
        let classes = || train.classes.join(", ");
        let train_class = |row: usize| {
            let label = test.label(row);
            train.classes.iter().position(|c| c == label).ok_or_else(|| DataError::UnknownLabel {
                row,
                label: label.to_string(),
                classes: classes(),
            })
        };
        let scaler = Standardizer::fit(train);
        let standard = scaler.apply(train);
        let trainer = BatchTrainer::new(&standard, config, device)?;
        let mut test_x = Vec::with_capacity(rows.len() * test.dim);
        for &r in &rows {
            let start = test_x.len();
            test_x.extend_from_slice(test.row(r));
            scaler.apply_row(&mut test_x[start..]);
        }
        let (class, test_y) = match spec.target {
            Target::Loss => (None, rows.iter().map(|&r| train_class(r)).collect::<Result<Vec<_>, _>>()?),
            Target::Margin | Target::LogOdds => {
                let class = match &spec.class {
                    ClassChoice::True => train_class(rows[0])?,
                    ClassChoice::Label(l) => train
                        .classes
                        .iter()
                        .position(|c| c == l)
                        .ok_or_else(|| DataError::UnknownClass { class: l.clone(), classes: classes() })?,
                    ClassChoice::Predicted => {
                        let all = Mask::ones(train.rows());
                        let mut batch = MaskBatch::new(train.rows());
                        batch.push(all.as_ref()).expect("same width");
                        let z = trainer.train(batch.as_slice())?.logits(&test_x, 1)?;
                        argmax(&z)
                    }
                };
                (Some(class), Vec::new())
            }
        };
        Ok(DataValue { trainer, target: spec.target, test_x, test_y, class })
    }

    /// Players: the training examples.
    pub fn n(&self) -> usize {
        self.trainer.n()
    }

    /// The class whose margin or log-odds is reported (index into the training classes).
    pub fn class(&self) -> Option<usize> {
        self.class
    }

    /// The trainer.
    pub fn trainer(&self) -> &BatchTrainer {
        &self.trainer
    }

    /// One value per mask.
    pub fn values(&self, masks: MaskSlice<'_>) -> Result<Vec<f64>, DataError> {
        let c = self.trainer.classes();
        let rows = self.test_x.len() / self.trainer.dim().max(1);
        let z = self.trainer.train(masks)?.logits(&self.test_x, rows)?;
        if z.iter().any(|v| !v.is_finite()) {
            return Err(DataError::Diverged { lr: self.trainer.learning_rate() });
        }
        Ok(z.chunks_exact(rows * c).map(|model| self.value(model, c)).collect())
    }

    /// The target from one model's logits at the test examples (`rows × c`).
    fn value(&self, z: &[f64], c: usize) -> f64 {
        match (self.target, self.class) {
            (Target::Loss, _) => {
                let rows = z.len() / c;
                z.chunks_exact(c).zip(&self.test_y).map(|(z, &y)| log_sum_exp(z.iter().copied()) - z[y]).sum::<f64>()
                    / rows as f64
            }
            (Target::Margin, Some(k)) => {
                z[k] - z.iter().enumerate().filter(|&(j, _)| j != k).map(|(_, v)| *v).fold(f64::NEG_INFINITY, f64::max)
            }
            (Target::LogOdds, Some(k)) => {
                z[k] - log_sum_exp(z.iter().enumerate().filter(|&(j, _)| j != k).map(|(_, v)| *v))
            }
            _ => unreachable!("margin and log-odds have a class"),
        }
    }
}

impl ValueFunction for DataValue {
    fn evaluate(&mut self, masks: MaskSlice<'_>) -> Result<Vec<f64>, ValueError> {
        Ok(self.values(masks)?)
    }
}

/// Makes glibc's allocator keep freed memory for reuse instead of returning it to the system
/// after every step; returns whether anything was changed (only on Linux with glibc).
///
/// Every training step allocates a few tensors of the same large size and frees them. glibc
/// serves an allocation at least as large as the largest freed mmapped chunk with a fresh `mmap`,
/// so without this each step faults in (and zeroes) its tensors page by page again — about a
/// third of the time of a batched logistic regression in `benches/data.rs`. The setting (an
/// mmap threshold of 32 MiB, a trim threshold of 512 MiB) is process-wide, so the library never
/// applies it by itself: `spex data` and the benchmark call this once.
pub fn tune_allocator() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only sets allocator parameters; it is safe to call at any time.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// Player names for training examples: `id:label`.
pub fn player_names(train: &Features) -> Vec<String> {
    (0..train.rows()).map(|i| format!("{}:{}", train.ids[i], train.label(i))).collect()
}

fn log_sum_exp(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    max + values.map(|v| (v - max).exp()).sum::<f64>().ln()
}

fn argmax(z: &[f64]) -> usize {
    z.iter().enumerate().fold(0, |best, (j, &v)| if v > z[best] { j } else { best })
}
