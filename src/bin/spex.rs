//! The `spex` command line: parses arguments, calls the library, prints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{HumanDuration, ProgressBar, ProgressStyle};

use spex::explain::Explanation;
use spex::io::{read_masks, read_values, write_masks};
use spex::plan::{default_holdout, DecoderConfig, Design, Diagnostics, Method, Plan, PlanSpec};
use spex::report::{write_reports, ResultFile};
use spex::rundir::{RunDir, RunInfo, StartMode};
use spex::runner::{self, RunOptions, RunOutcome};
use spex::store::Shard;
use spex::sweep::SweepEvent;
use spex::transform::Index;
use spex::value::data::{
    player_names, text, tune_allocator, ClassChoice, Column, CsvOptions, DataValue, Features, HeaderMode, ModelKind,
    Precision, Target, TrainConfig, ValueSpec,
};
use spex::value::setup::{self, ComputeDevice, InputSpec, Players, TokenAblation, EXAMPLE_PROMPT};
use spex::value::{demo, driver, ValueError, ValueFunction};

#[derive(Parser)]
#[command(name = "spex", version, about = "Batch ablation engine for interaction attribution (SPEX)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explain one input of a model (default: the embedded LLM on a built-in example), the
    /// built-in toy function (--demo), or a driver program (--oracle).
    Explain(ExplainArgs),
    /// Explain many model inputs (a JSON-lines file), one run directory each; rerunning the same
    /// command continues the sweep.
    Sweep(SweepArgs),
    /// Data attribution: players are training examples, a mask a training subset, the value a
    /// test prediction of a model trained on it.
    Data(DataArgs),
    /// Write the masks of a design (one per line) and its design file beside them.
    Design(DesignArgs),
    /// Decode values computed for a design's masks.
    Decode(DecodeArgs),
    /// Decode a sharded run once all its shards are done.
    Merge(MergeArgs),
    /// Serve the built-in demo over the driver protocol on stdin/stdout (an example driver).
    DemoOracle,
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

impl Command {
    /// How the command reports interactions, if it does.
    fn show(&self) -> Option<&ShowArgs> {
        match self {
            Command::Explain(a) => Some(&a.show),
            Command::Sweep(a) => Some(&a.show),
            Command::Data(a) => Some(&a.show),
            Command::Decode(a) => Some(&a.show),
            Command::Merge(a) => Some(&a.show),
            Command::Design(_) | Command::DemoOracle | Command::Bench { .. } => None,
        }
    }
}

#[derive(Args, Clone)]
struct PlanArgs {
    /// Method: spex, proxyspex, uniform (random masks + LASSO, the baseline), exhaustive (all
    /// 2^n masks, exact) or auto [default: auto for models, spex for --demo; otherwise
    /// exhaustive where all 2^n masks fit the budget, else spex].
    #[arg(long)]
    method: Option<Method>,
    /// Most design masks to query [default: 1 200 for models; otherwise the reference's b = 8
    /// design for spex, 2^n for exhaustive, 5 000 for the other methods].
    #[arg(long)]
    budget: Option<usize>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// SPEX degree parameter t: the largest interaction order recoverable.
    #[arg(long, default_value_t = 5)]
    degree: usize,
    /// Held-out masks for the faithfulness R² [default: a tenth of the budget, 100 to 1 000];
    /// with them come probes of the extreme masks the design lacks (0 queries the design alone).
    #[arg(long)]
    holdout: Option<usize>,
}

impl PlanArgs {
    /// The plan for `n` players with the defaults of functions other than models
    /// ([`PlanSpec::with_defaults`]); without `exact_if_it_fits` an open method is SPEX.
    fn spec(&self, n: usize, exact_if_it_fits: bool) -> PlanSpec {
        let method = self.method.or((!exact_if_it_fits).then_some(Method::Spex));
        let defaults = PlanSpec::with_defaults(n, method, self.budget);
        self.spec_or(n, defaults.method, defaults.budget)
    }

    /// The plan for `n` players, with the method and budget used when none is given.
    fn spec_or(&self, n: usize, method: Method, budget: usize) -> PlanSpec {
        let method = self.method.unwrap_or(method);
        let budget = self.budget.unwrap_or(budget);
        PlanSpec {
            n,
            method,
            budget,
            seed: self.seed,
            degree: self.degree,
            holdout: self.holdout.unwrap_or_else(|| default_holdout(budget)),
        }
    }
}

#[derive(Args, Clone)]
struct ShowArgs {
    /// Interaction index to report.
    #[arg(long, default_value = "fbii")]
    index: Index,
    /// Highest interaction order to report [default: the highest the method recovers, SPEX's t].
    #[arg(long)]
    max_order: Option<usize>,
    /// Interactions to print.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

#[derive(Args)]
struct ExplainArgs {
    /// Explain the built-in toy sentiment function of 14 words instead of a model (no model needed).
    #[arg(long, conflicts_with = "oracle")]
    demo: bool,
    /// Driver command (run through `sh -c`) speaking the JSON-lines protocol, instead of a model.
    #[arg(long)]
    oracle: Option<String>,
    /// Players (required with --oracle).
    #[arg(long, requires = "oracle", conflicts_with = "demo")]
    n: Option<usize>,
    #[command(flatten)]
    input: InputArgs,
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    show: ShowArgs,
    /// Seconds to wait for a driver's answer to one batch before giving up.
    #[arg(long, requires = "oracle", conflicts_with = "demo", value_parser = positive_seconds, allow_negative_numbers = true)]
    timeout: Option<Duration>,
    #[command(flatten)]
    run: RunArgs,
}

/// One model input (without --demo or --oracle).
#[derive(Args, Clone)]
struct InputArgs {
    /// Model: a GGUF file or a Hugging Face directory [default: SmolLM2-135M-Instruct, fetched
    /// into the cache on first use].
    #[arg(long)]
    model: Option<PathBuf>,
    /// Text to explain [default: a built-in example].
    #[arg(long, conflicts_with = "input_file")]
    prompt: Option<String>,
    /// File holding the text to explain.
    #[arg(long)]
    input_file: Option<PathBuf>,
    /// Fixed text before the prompt, never ablated (e.g. a chat template's opening).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Fixed text after the prompt, never ablated.
    #[arg(long, default_value = "")]
    suffix: String,
    /// Players: words, tokens, sentences, marked (the [bracketed] parts of the prompt), heads,
    /// tokens+heads or words+heads.
    #[arg(long, default_value = "words")]
    players: Players,
    /// How an ablated token is removed (token players): attention (hidden from every query),
    /// replace (by the unknown/mask/pad token) or remove.
    #[arg(long, default_value = "attention")]
    token_mode: TokenAblation,
    /// With --token-mode replace: the single-token text put in place of ablated tokens
    /// [default: the model's unknown, mask or pad token].
    #[arg(long)]
    replace_with: Option<String>,
    /// How an ablated head is removed (head players): zero its output, or replace it by its mean
    /// over positions.
    #[arg(long, value_enum, default_value = "zero")]
    head_mode: HeadModeArg,
    /// Causal LMs: the continuation whose log-probability is the value [default: the model's
    /// greedy answer].
    #[arg(long)]
    target: Option<String>,
    /// Tokens of the greedy answer [default: 1 for the built-in example, else 5].
    #[arg(long, conflicts_with_all = ["target", "logit_diff"])]
    max_new_tokens: Option<usize>,
    /// Causal LMs: the value is logit(A) − logit(B) of the next token (single-token texts).
    #[arg(long, num_args = 2, value_names = ["A", "B"], conflicts_with = "target")]
    logit_diff: Option<Vec<String>>,
    /// Encoders: the text whose embedding the input's is compared with [default: the unablated
    /// input].
    #[arg(long)]
    reference: Option<String>,
    /// Where the forwards run: auto (every visible GPU when this build has the GPU path, else the
    /// CPU), cpu, or cuda.
    #[arg(long, default_value = "auto")]
    device: ComputeDevice,
}

/// How ablated heads are removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum HeadModeArg {
    /// Zero the head's output.
    Zero,
    /// Replace it by its mean over the input's positions.
    Mean,
}

impl InputArgs {
    /// Whether the input is the built-in example (no text given).
    fn is_example(&self) -> bool {
        self.prompt.is_none() && self.input_file.is_none()
    }

    /// The input described, with the built-in example when no text is given.
    fn spec(&self) -> Result<InputSpec> {
        let prompt = match (&self.prompt, &self.input_file) {
            (Some(p), _) => p.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                text.trim_end_matches(['\n', '\r']).to_string()
            }
            (None, None) => EXAMPLE_PROMPT.to_string(),
        };
        let logit_diff = self.logit_diff.as_ref().map(|v| (v[0].clone(), v[1].clone()));
        Ok(InputSpec {
            model: self.model.clone(),
            prefix: self.prefix.clone(),
            suffix: self.suffix.clone(),
            players: self.players,
            token_mode: self.token_mode,
            head_mean: self.head_mode == HeadModeArg::Mean,
            target: self.target.clone(),
            max_new_tokens: self.max_new_tokens,
            logit_diff,
            reference: self.reference.clone(),
            replace_with: self.replace_with.clone(),
            ..InputSpec::new(prompt)
        })
    }

    /// Whether any model-input option was given (they make no sense with --demo or --oracle).
    fn any_given(&self) -> bool {
        self.model.is_some()
            || self.prompt.is_some()
            || self.input_file.is_some()
            || self.target.is_some()
            || self.max_new_tokens.is_some()
            || self.logit_diff.is_some()
            || self.reference.is_some()
            || self.replace_with.is_some()
            || self.device != ComputeDevice::Auto
            || !self.prefix.is_empty()
            || !self.suffix.is_empty()
            || self.players != Players::Words
            || self.token_mode != TokenAblation::Attention
            || self.head_mode != HeadModeArg::Zero
    }
}

/// Where and how a run executes.
#[derive(Args, Clone)]
struct RunArgs {
    /// Masks per batch sent to the value function: a number, or auto (32 for models on the CPU,
    /// 256 otherwise).
    #[arg(long, default_value = "auto")]
    batch_size: BatchSize,
    /// Run directory: design, sample store (kept batch by batch), reports [default: spex-out].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the unfinished run in DIR (default: --out) exactly where it stopped; give the
    /// same options as the first time.
    #[arg(long, value_name = "DIR", num_args = 0..=1, conflicts_with = "force")]
    resume: Option<Option<PathBuf>>,
    /// Discard whatever run is in --out and start over.
    #[arg(long)]
    force: bool,
    /// Compute only shard I of K (batches with id % K == I); `spex merge` decodes the shards.
    #[arg(long, value_name = "I/K")]
    shard: Option<Shard>,
    /// Sync the sample store to disk every this many batches.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    sync_every: usize,
    /// Progress display.
    #[arg(long, value_enum, default_value = "bar")]
    log: LogMode,
    /// No progress display (same as --log quiet).
    #[arg(long, short)]
    quiet: bool,
}

impl RunArgs {
    fn log_mode(&self) -> LogMode {
        if self.quiet {
            LogMode::Quiet
        } else {
            self.log
        }
    }

    /// How to run, with `auto_batch` masks per batch unless a number was given.
    fn options(&self, auto_batch: usize) -> Result<RunOptions> {
        let out = match (&self.resume, &self.out) {
            (Some(Some(dir)), Some(out)) if dir != out => {
                bail!("--resume {} and --out {} name different runs", dir.display(), out.display())
            }
            (Some(Some(dir)), _) => dir.clone(),
            (_, Some(out)) => out.clone(),
            _ => PathBuf::from("spex-out"),
        };
        Ok(RunOptions {
            out,
            mode: if self.resume.is_some() {
                StartMode::Resume
            } else if self.force {
                StartMode::Force
            } else {
                StartMode::Fresh
            },
            shard: self.shard.unwrap_or(Shard::ALL),
            batch_size: self.batch_size.rows(auto_batch),
            sync_every: self.sync_every,
            queue: 4,
            cancel: Some(interrupt_flag()),
        })
    }
}

/// The flag a first Ctrl-C sets, so that a run stops after its current batch with the resume
/// advice (the handler is installed on first use); a second Ctrl-C exits at once.
fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let seen = flag.clone();
        let installed = ctrlc::set_handler(move || {
            if seen.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
            eprintln!("\nstopping after the current batch (Ctrl-C again stops at once)");
        });
        if let Err(e) = installed {
            // Without the handler Ctrl-C still stops the run, only without the message.
            eprintln!("note: Ctrl-C will stop at once ({e})");
        }
        flag
    })
    .clone()
}

/// `--batch-size auto|N`.
#[derive(Clone, Copy, Debug)]
enum BatchSize {
    Auto,
    Rows(usize),
}

impl std::str::FromStr for BatchSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BatchSize::Auto),
            n => at_least_one(n).map(BatchSize::Rows).map_err(|e| format!("expected auto or {e}")),
        }
    }
}

/// A count of at least one (`--batch-size`, `--sync-every`): 0 would mean nothing ever happens.
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("a number of at least 1, not 0".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("a number of at least 1, not {s:?}")),
    }
}

/// `x` among values printed together (`largest` is the largest magnitude among them; `|x|` for
/// a value on its own): four decimals when `largest` reads well so, else scientific notation
/// for all (values of 1e-8 printed as "+0.0000", values of 1e100 as a hundred digits). A value that rounds to zero prints without
/// its sign: rounding noise such as -1e-17 beside values near 1 would read "-0.0000".
fn four_digits(x: f64, largest: f64, signed: bool) -> String {
    let text = match ((1e-3..1e5).contains(&largest) || largest == 0.0, signed) {
        (true, true) => format!("{x:+.4}"),
        (true, false) => format!("{x:.4}"),
        (false, true) => format!("{x:+.3e}"),
        (false, false) => format!("{x:.3e}"),
    };
    let digits = text.trim_start_matches(['-', '+']);
    if digits.chars().take_while(|c| *c != 'e').all(|c| c == '0' || c == '.') {
        format!("{}{digits}", if signed { "+" } else { "" })
    } else {
        text
    }
}

/// A file size for people: "512 B", "3.4 MB", "6.7 GB" (powers of 1 000).
fn human_bytes(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let (mut size, mut unit) = (bytes as f64, 0);
    while size >= 1000.0 && unit + 1 < units.len() {
        size /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{size:.1} {}", units[unit])
    }
}

/// A positive, finite number of seconds (`Duration::from_secs_f64` panics on NaN and infinity).
fn positive_seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() && x < 1e9 => Ok(Duration::from_secs_f64(x)),
        _ => Err(format!("a positive number of seconds, not {s:?}")),
    }
}

impl BatchSize {
    /// Masks per batch, `auto` standing for `auto_rows`.
    fn rows(self, auto_rows: usize) -> usize {
        match self {
            BatchSize::Auto => auto_rows,
            BatchSize::Rows(n) => n,
        }
    }
}

/// Masks per batch of `--batch-size auto` for functions other than models (for models:
/// [`ComputeDevice::model_batch_rows`]).
const AUTO_BATCH_OTHER: usize = 256;

#[derive(Args)]
struct MergeArgs {
    /// Run directory holding the shard stores (samples.shard-I-of-K.store).
    dir: PathBuf,
    #[command(flatten)]
    show: ShowArgs,
}

/// Which model `spex data` trains.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ModelArg {
    /// Multinomial logistic regression.
    Logreg,
    /// One hidden tanh layer (--hidden units), then softmax.
    Mlp,
}

#[derive(Args)]
struct DataArgs {
    /// Training examples, one example (one player) per row: a numeric CSV file of feature columns
    /// and a label column, or a `.jsonl` file of texts (`{"text": …, "label": …, "id": …}`),
    /// embedded once by --encoder.
    #[arg(long)]
    train: PathBuf,
    /// Encoder embedding the texts of `.jsonl` examples [default: the embedded all-MiniLM-L6-v2,
    /// fetched on first use].
    #[arg(long)]
    encoder: Option<PathBuf>,
    /// Test examples, with the same columns [default: the --train file, so that the test example
    /// is also a player].
    #[arg(long)]
    test: Option<PathBuf>,
    /// 0-based data row of the test example in the test file (header not counted); without it,
    /// `--target loss` is the mean loss over the whole test file.
    #[arg(long)]
    test_index: Option<usize>,
    /// Label column: a header name, @N for the 0-based position N, or last (a bare number is
    /// a position where no header column has that name).
    #[arg(long, default_value = "last")]
    label: Column,
    /// Id column naming the examples, given as --label is [default: none; examples are named by
    /// their 0-based row].
    #[arg(long)]
    id: Option<Column>,
    /// Header line: auto (the first line is a header when none of its fields is a number, when
    /// --label or --id names a column, when it holds text over a label or id column of numbers, or
    /// in --test when it names the training file's feature columns; an undecidable first line is
    /// refused), yes, no.
    #[arg(long, default_value = "auto")]
    header: HeaderMode,
    /// Model trained on each subset.
    #[arg(long, value_enum, default_value = "logreg")]
    model: ModelArg,
    /// Hidden units of the MLP.
    #[arg(long, default_value_t = 32)]
    hidden: usize,
    /// Value of a subset: margin or logodds of --class at the test example, or loss (cross-entropy).
    #[arg(long, default_value = "margin")]
    target: Target,
    /// Class of the margin or log-odds: true (the test example's label), predicted (by the model
    /// trained on every example), or a class label.
    #[arg(long, default_value = "true")]
    class: ClassChoice,
    /// Full-batch gradient-descent steps per model.
    #[arg(long, default_value_t = 200)]
    steps: usize,
    /// Step size [default: 1/L for the curvature bound L of the full training set].
    #[arg(long)]
    lr: Option<f64>,
    /// L2 penalty on the weights.
    #[arg(long, default_value_t = 1e-3)]
    l2: f64,
    /// Seed of the models' initialisation (the MLP's; logistic regression starts at zero).
    #[arg(long, default_value_t = 0)]
    init_seed: u64,
    /// Train in 64-bit floats (default: 32-bit).
    #[arg(long)]
    f64: bool,
    /// Where the models train: auto (the first GPU when this build has the GPU path), cpu or cuda.
    #[arg(long, default_value = "auto")]
    device: ComputeDevice,
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    show: ShowArgs,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Args)]
struct SweepArgs {
    /// Inputs: one JSON object per line, with the fields of a model input (`prompt`, and
    /// optionally `id`, `model`, `prefix`, `suffix`, `players`, `token_mode`, `replace_with`, `head_mean`,
    /// `target`, `max_new_tokens`, `logit_diff`, `reference`).
    #[arg(long)]
    inputs: PathBuf,
    /// Sweep directory: one run directory per input, and the summary sweep.json.
    #[arg(long)]
    out: PathBuf,
    /// Redo every input from scratch.
    #[arg(long)]
    force: bool,
    /// Explain only inputs K with K % N == I (the I-th of N parallel sweeps, e.g. a Slurm array).
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// Masks per batch: a number, or auto.
    #[arg(long, default_value = "auto")]
    batch_size: BatchSize,
    /// Sync the sample stores every this many batches.
    #[arg(long, default_value_t = 1, value_parser = at_least_one)]
    sync_every: usize,
    /// Progress display.
    #[arg(long, value_enum, default_value = "bar")]
    log: LogMode,
    /// Where the forwards run: auto, cpu or cuda (as for `spex explain`).
    #[arg(long, default_value = "auto")]
    device: ComputeDevice,
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    show: ShowArgs,
}

#[derive(Args)]
struct DesignArgs {
    /// Players.
    #[arg(long)]
    n: usize,
    #[command(flatten)]
    plan: PlanArgs,
    /// Masks file to write; the design file goes to FILE.design.json.
    #[arg(long)]
    out: PathBuf,
    /// Replace a masks or design file of another design at --out.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct DecodeArgs {
    /// Masks file written by `spex design` (its design file FILE.design.json is read too).
    #[arg(long, required_unless_present = "design")]
    masks: Option<PathBuf>,
    /// Design file, instead of --masks (e.g. DIR/design.json of an explain run).
    #[arg(long, conflicts_with = "masks")]
    design: Option<PathBuf>,
    /// Values file: one number per line, in the order of the masks.
    #[arg(long)]
    values: PathBuf,
    #[command(flatten)]
    show: ShowArgs,
    /// Result file (JSON) to write.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Masked queries per second of whole runs on a model (pipeline, store and decoding
    /// included), with the engine's overhead and the worker's idle share.
    Throughput {
        /// Model [default: the embedded SmolLM2-135M-Instruct].
        #[arg(long, conflicts_with = "shape")]
        model: Option<PathBuf>,
        /// Random weights of a model's architecture instead, no download: smollm2-135m (the
        /// default model's), llama-1b (Llama 3.2 1B's) or bert-base (BERT-base's, scored on a
        /// class logit); random prompt and target tokens.
        #[arg(long)]
        shape: Option<String>,
        /// Where the forwards run: auto (every visible GPU when this build has the GPU path,
        /// else the CPU), cpu, or cuda.
        #[arg(long, default_value = "auto")]
        device: ComputeDevice,
        /// Prompt lengths in tokens (every token a player).
        #[arg(long, value_delimiter = ',', default_value = "16,64,128", value_parser = at_least_one)]
        lengths: Vec<usize>,
        /// Masks per batch.
        #[arg(long, value_delimiter = ',', default_value = "1,8,32,128", value_parser = at_least_one)]
        batches: Vec<usize>,
        /// Design masks per run (ProxySPEX; held-out masks come on top).
        #[arg(long, default_value_t = 256)]
        budget: usize,
        /// Fixed tokens before the players of every causal-LM prompt (a chat template's
        /// stand-in), run once through the prefix cache.
        #[arg(long, default_value_t = 0)]
        template: usize,
        /// Run the template in every row instead (for comparison).
        #[arg(long, requires = "template")]
        no_prefix_cache: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// SPEX decode time and R² on planted sparse functions.
    Decode {
        /// Player counts.
        #[arg(long, value_delimiter = ',', default_value = "64,256,1000,4096,10000")]
        n: Vec<usize>,
        /// Planted coefficients.
        #[arg(long, default_value_t = 20)]
        terms: usize,
        /// Their largest order.
        #[arg(long, default_value_t = 3)]
        degree: usize,
        /// Budget per run [default: 21 504, or 8·n if larger].
        #[arg(long)]
        budget: Option<usize>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// R² against budget of SPEX and ProxySPEX side by side (the ground for `--method auto`).
    Curve {
        /// Player counts.
        #[arg(long, value_delimiter = ',', default_value = "64,256,1000")]
        n: Vec<usize>,
        /// Budgets.
        #[arg(long, value_delimiter = ',', default_value = "1000,2000,4000,8000,16000,32000")]
        budget: Vec<usize>,
        /// Methods compared.
        #[arg(long, value_delimiter = ',', default_value = "spex,proxyspex")]
        methods: Vec<Method>,
        /// Planted functions: fourier (random parities) or moebius (AND interactions).
        #[arg(long, default_value = "fourier")]
        family: spex::bench::Family,
        /// Planted interactions.
        #[arg(long, default_value_t = 20)]
        terms: usize,
        /// Their largest order.
        #[arg(long, default_value_t = 3)]
        degree: usize,
        /// Standard deviation of Gaussian noise on every queried value.
        #[arg(long, default_value_t = 0.0)]
        noise: f64,
        /// Seeds averaged.
        #[arg(long, default_value_t = 3)]
        seeds: u64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spex: error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes, each cause once: the library's errors already name their cause in
/// their message ("path: No such file…"), which `{:#}` would repeat.
fn error_text(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

fn run(cli: Cli) -> Result<()> {
    if let Some(show) = cli.command.show() {
        // A report the decoded run could never give is refused before any query is spent.
        spex::transform::index::check_order(show.index, show.max_order.unwrap_or(1))?;
    }
    match cli.command {
        Command::Explain(args) => explain(args),
        Command::Sweep(args) => sweep(args),
        Command::Data(args) => data(args),
        Command::Design(args) => design(args),
        Command::Decode(args) => decode(args),
        Command::Merge(args) => merge(args),
        Command::DemoOracle => {
            let stdin = std::io::stdin();
            Ok(driver::serve(stdin.lock(), std::io::stdout().lock(), &mut demo::demo_game())?)
        }
        Command::Bench {
            what:
                BenchCommand::Throughput { model, shape, device, lengths, batches, budget, template, no_prefix_cache, json },
        } => {
            let model = match shape {
                Some(shape) => spex::bench::BenchModel::random(&shape, device)?,
                None => {
                    let (lm, identity) = setup::load_model(model.as_deref())?;
                    eprintln!("model: {identity}");
                    spex::bench::BenchModel::loaded(lm)
                }
            };
            let model = model.with_template(template, !no_prefix_cache);
            bench_throughput(&model, device, &lengths, &batches, budget, json)
        }
        Command::Bench { what: BenchCommand::Decode { n, terms, degree, budget, json } } => {
            bench_decode(&n, terms, degree, budget, json)
        }
        Command::Bench {
            what: BenchCommand::Curve { n, budget, methods, family, terms, degree, noise, seeds, json },
        } => {
            let setting = spex::bench::CurveSetting { family, terms, degree, noise, seeds };
            bench_curve(&n, &budget, &methods, &setting, json)
        }
    }
}

fn explain(args: ExplainArgs) -> Result<()> {
    if !args.demo && args.oracle.is_none() {
        return explain_model(args);
    }
    if args.input.any_given() {
        bail!(
            "--model, --prompt and the other input options describe a model input; drop them with --demo or --oracle"
        );
    }
    let (n, info) = match (&args.oracle, args.n) {
        (Some(cmd), Some(n)) => (n, RunInfo::new(format!("driver: {cmd}"))),
        (Some(_), None) => bail!("--oracle needs --n, the number of players"),
        (None, _) => (demo::WORDS.len(), RunInfo::new("demo").with_players(demo::WORDS.map(String::from).to_vec())),
    };
    // The demo shows SPEX at work, so it keeps SPEX although its 2^14 masks would fit.
    let plan = Plan::new(args.plan.spec(n, args.oracle.is_some()))?;
    let timeout = args.timeout;
    let oracle = args.oracle.clone();
    let mut start = || -> Result<Box<dyn ValueFunction>, ValueError> {
        Ok(match &oracle {
            Some(cmd) => Box::new(driver::Driver::spawn(cmd, timeout)?),
            None => Box::new(demo::demo_game()),
        })
    };
    run_and_report(&plan, &info, &args.run.options(AUTO_BATCH_OTHER)?, &args.run, &args.show, &mut start)
}

/// Default budget of model runs: enough for ProxySPEX to reach R² ≈ 1 on prompts of a few dozen
/// players, and a quick start of about a minute on two CPU cores.
const MODEL_BUDGET: usize = 1200;

/// `spex explain` on a model: builds the input's game (the model answers once, unablated, to
/// fix the target), then runs it.
fn explain_model(args: ExplainArgs) -> Result<()> {
    let mut spec = args.input.spec()?;
    let quiet = args.run.log_mode() == LogMode::Quiet;
    if !quiet {
        eprintln!(
            "loading {}…",
            spec.model.as_ref().map_or("the default model".to_string(), |p| p.display().to_string())
        );
    }
    let (model, identity) = setup::load_model(spec.model.as_deref())?;
    let greedy = model.model.info().causal && spec.target.is_none() && spec.logit_diff.is_none();
    if args.input.is_example() && greedy {
        // The built-in example asks for one word.
        spec.max_new_tokens.get_or_insert(1);
    }
    let game = setup::build_on(model, &identity, &spec, args.input.device)?;
    let device = game.device;
    println!("explaining: {}", game.input.text);
    let (n, kind) = (game.players.len(), spec.players.to_string());
    // "1 sentence", not "1 sentences".
    let kind = if n == 1 { kind.trim_end_matches('s') } else { &kind };
    println!("players: {n} {kind}; value: {}", game.scored);
    let plan = Plan::new(args.plan.spec_or(game.players.len(), Method::Auto, MODEL_BUDGET))?;
    let info = game.info();
    let mut value = Some(game.value);
    let mut start = || -> Result<Box<dyn ValueFunction>, ValueError> {
        Ok(value.take().expect("the value function is started once"))
    };
    run_and_report(&plan, &info, &args.run.options(device.model_batch_rows())?, &args.run, &args.show, &mut start)
}

fn sweep(args: SweepArgs) -> Result<()> {
    let inputs = spex::sweep::read_inputs(&args.inputs)?;
    let plan_for = |n: usize| args.plan.spec_or(n, Method::Auto, MODEL_BUDGET);
    let interrupted = interrupt_flag();
    let options = spex::sweep::SweepOptions {
        device: args.device,
        out: args.out.clone(),
        force: args.force,
        shard: args.shard.unwrap_or(Shard::ALL),
        batch_size: match args.batch_size {
            BatchSize::Auto => None,
            rows => Some(rows.rows(0)),
        },
        sync_every: args.sync_every,
        plan_for: &plan_for,
        index: args.show.index,
        max_order: args.show.max_order,
        top: args.show.top,
        cancel: Some(interrupted.clone()),
    };
    let log = args.log;
    let bar = Progress::new(log, 0);
    // The input under way ("[3/40] paris") and the sweep's time left, for the bar's prefix.
    let (mut current, mut remaining) = (String::new(), None);
    let report = spex::sweep::run(&inputs, &options, &mut |event| match event {
        SweepEvent::Start { id, index, count } => {
            bar.bar.reset();
            current = format!("[{}/{count}] {id}", index + 1);
            match log {
                LogMode::Bar => bar.bar.set_prefix(sweep_prefix(&current, remaining)),
                LogMode::Json => {
                    eprintln!("{}", serde_json::json!({"event": "input", "id": id, "index": index, "count": count}))
                }
                LogMode::Quiet => {}
            }
        }
        SweepEvent::Batch(p) => bar.update(p),
        SweepEvent::Finished { outcome, remaining_seconds } => {
            bar.bar.suspend(|| print_outcome(outcome));
            remaining = remaining_seconds;
            bar.bar.set_prefix(sweep_prefix(&current, remaining));
            if log == LogMode::Json {
                eprintln!(
                    "{}",
                    serde_json::json!({"event": "finished", "outcome": outcome, "remaining_seconds": remaining_seconds})
                );
            }
        }
    });
    bar.finish();
    let outcomes = &report.outcomes;
    let failed = outcomes.iter().filter(|o| o.status == "failed").count();
    let summary = match &report.summary_error {
        None => format!("summary in {}", report.summary.display()),
        Some(e) => format!("the summary {} could not be written: {e}", report.summary.display()),
    };
    println!("{} inputs: {} explained, {failed} failed; {summary}", outcomes.len(), outcomes.len() - failed);
    if let Some(e) = &report.summary_error {
        bail!("writing the summary {}: {e} (each input's run directory holds its result)", report.summary.display());
    }
    let finished = outcomes.iter().filter(|o| o.status != "failed").count();
    if interrupted.load(Ordering::Relaxed) && finished < report.count {
        bail!(
            "interrupted: {finished} of {} inputs are finished; rerun the same command to continue (finished \
             inputs are reused, an interrupted one continues from its sample store)",
            report.count
        );
    }
    if failed > 0 {
        bail!(
            "{failed} of {} inputs failed (see above); rerun the same command once fixed: finished inputs are \
             reused (an input whose options or design changed needs --force or another --out)",
            outcomes.len()
        );
    }
    Ok(())
}

/// The bar's prefix during a sweep: the input under way, and the sweep's time left once known.
fn sweep_prefix(current: &str, remaining_seconds: Option<f64>) -> String {
    match remaining_seconds {
        Some(s) => format!("{current} (sweep: {} left)", HumanDuration(Duration::from_secs_f64(s.max(0.0)))),
        None => current.to_string(),
    }
}

fn print_outcome(o: &spex::sweep::InputOutcome) {
    match &o.error {
        Some(e) => println!("{}: failed: {e}", o.id),
        None => {
            let r2 = o.r2.map_or("undefined".to_string(), |r| format!("{r:.3}"));
            let top =
                o.top.first().map(|(names, v)| format!("; top: {} {v:+.3}", names.join(" × "))).unwrap_or_default();
            println!("{}: {} ({} players, R² {r2}, {:.1} s){top}", o.id, o.status, o.n.unwrap_or(0), o.seconds);
        }
    }
}

/// Runs a plan into its directory with progress, then writes and prints the reports.
fn run_and_report(
    plan: &Plan,
    info: &RunInfo,
    options: &RunOptions,
    run: &RunArgs,
    show: &ShowArgs,
    start: &mut dyn FnMut() -> Result<Box<dyn ValueFunction>, ValueError>,
) -> Result<()> {
    let progress = Progress::new(run.log_mode(), plan.total_masks());
    let (dir, outcome) =
        runner::run(plan, info, options, start, &DecoderConfig::default(), &mut |p| progress.update(p))?;
    progress.finish();
    match outcome {
        RunOutcome::ShardDone { stats, store } => {
            println!(
                "shard {} done: {} masks in {:.1} s stored in {}; when every shard is done, run `spex merge {}`",
                options.shard,
                stats.masks,
                stats.wall_seconds,
                store.display(),
                dir.dir().display()
            );
            Ok(())
        }
        RunOutcome::Complete { explanation, stats } => {
            if stats.masks > 0 && run.log_mode() != LogMode::Quiet {
                eprintln!(
                    "evaluated {} masks in {:.1} s ({:.0} masks/s, engine overhead {:.1} %)",
                    stats.masks,
                    stats.wall_seconds,
                    stats.masks as f64 / stats.wall_seconds.max(1e-9),
                    100.0 * stats.overhead_share()
                );
            }
            report(&dir, &explanation, show, Some(info))
        }
    }
}

/// Writes the reports of a finished run and prints its summary.
fn report(dir: &RunDir, explanation: &Explanation, show: &ShowArgs, info: Option<&RunInfo>) -> Result<()> {
    let interactions = explanation.interactions(show.index, show.max_order.unwrap_or(explanation.degree))?;
    let result = write_reports(dir, explanation, &interactions, info, show.top)?;
    print_summary(&result, show);
    println!("wrote {} (and interactions.csv, shapiq.json, report.html)", dir.result_path().display());
    Ok(())
}

fn merge(args: MergeArgs) -> Result<()> {
    let (dir, explanation) = runner::merge(&args.dir, &DecoderConfig::default())?;
    let info = dir.info();
    report(&dir, &explanation, &args.show, info.as_ref())
}

/// How progress is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogMode {
    /// A progress bar with masks/s and ETA.
    Bar,
    /// Nothing.
    Quiet,
    /// One JSON line per batch on stderr, for batch jobs.
    Json,
}

/// The progress display of one run.
struct Progress {
    mode: LogMode,
    bar: ProgressBar,
}

impl Progress {
    fn new(mode: LogMode, total: usize) -> Self {
        let bar = if mode == LogMode::Bar { ProgressBar::new(total as u64) } else { ProgressBar::hidden() };
        bar.set_style(
            ProgressStyle::with_template("{prefix} {bar:40} {pos}/{len} masks  {msg}  ETA {eta}")
                .expect("valid template"),
        );
        Progress { mode, bar }
    }

    fn update(&self, p: &runner::Progress) {
        match self.mode {
            LogMode::Bar => {
                self.bar.set_length(p.total as u64);
                self.bar.set_position(p.done as u64);
                self.bar.set_message(format!("{:.0} masks/s", p.masks_per_second));
            }
            LogMode::Json => eprintln!(
                "{}",
                serde_json::json!({"event": "batch", "batch": p.batch, "done": p.done, "total": p.total,
                    "masks_per_second": p.masks_per_second})
            ),
            LogMode::Quiet => {}
        }
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

fn data(args: DataArgs) -> Result<()> {
    // Training allocates and frees large tensors every step; keep the memory (glibc only).
    tune_allocator();
    let test_path = args.test.as_ref().unwrap_or(&args.train);
    let (train, test) = read_examples(&args)?;
    let spec = ValueSpec { target: args.target, test: args.test_index, class: args.class.clone() };
    let model = match args.model {
        ModelArg::Logreg => ModelKind::LogReg,
        ModelArg::Mlp => ModelKind::Mlp { hidden: args.hidden },
    };
    let precision = if args.f64 { Precision::F64 } else { Precision::F32 };
    let config = TrainConfig {
        model,
        steps: args.steps,
        lr: args.lr,
        l2: args.l2,
        seed: args.init_seed,
        precision,
        ..TrainConfig::default()
    };
    // The value function is built before the run directory is opened, so that bad input fails
    // before anything is written.
    let device = args.device.resolve();
    let value = DataValue::new(&train, &test, &spec, config, &device.candle_device()?)?;
    let what = match (value.class(), args.test_index) {
        (Some(k), Some(i)) => format!(
            "{} of class {:?} at test example {i} ({}:{})",
            args.target,
            train.classes[k],
            test.ids[i],
            test.label(i)
        ),
        (None, Some(i)) => format!("loss at test example {i} ({}:{})", test.ids[i], test.label(i)),
        _ => format!("mean loss over the {} test examples", test.rows()),
    };
    let lr = value.trainer().learning_rate();
    println!(
        "data: {} training examples, {} features, {} classes; {}, {} steps of size {}; value: {what}",
        train.rows(),
        train.dim,
        train.classes.len(),
        match model {
            ModelKind::LogReg => "logistic regression".to_string(),
            ModelKind::Mlp { hidden } => format!("MLP with {hidden} hidden units"),
        },
        args.steps,
        four_digits(lr, lr, false)
    );
    let function = format!(
        "data train={} ({}) test={} ({}) encoder={} label={} id={} header={:?} model={:?} steps={} lr={:?} l2={} \
         init_seed={} f64={} target={} class={} test_index={:?}{}",
        args.train.display(),
        fingerprint(&args.train)?,
        test_path.display(),
        fingerprint(test_path)?,
        args.encoder.as_ref().map_or(String::new(), |p| p.display().to_string()),
        args.label,
        args.id.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        args.header,
        model,
        args.steps,
        args.lr,
        args.l2,
        args.init_seed,
        args.f64,
        args.target,
        args.class,
        args.test_index,
        if device == ComputeDevice::Cuda { " device=cuda" } else { "" }
    );
    let plan = Plan::new(args.plan.spec(train.rows(), true))?;
    let info = RunInfo::new(function).with_players(player_names(&train));
    let mut value = Some(value);
    let mut start = || -> Result<Box<dyn ValueFunction>, ValueError> {
        Ok(Box::new(value.take().expect("the value function is started once")))
    };
    run_and_report(&plan, &info, &args.run.options(AUTO_BATCH_OTHER)?, &args.run, &args.show, &mut start)
}

/// The training and test examples of `spex data`: CSV features, or `.jsonl` texts embedded by
/// the encoder.
fn read_examples(args: &DataArgs) -> Result<(Features, Features)> {
    let is_text = |p: &Path| p.extension().is_some_and(|e| e == "jsonl");
    let test_path = args.test.as_ref().unwrap_or(&args.train);
    if is_text(&args.train) != is_text(test_path) {
        bail!("--train and --test must both be CSV or both be .jsonl texts");
    }
    if !is_text(&args.train) {
        if args.encoder.is_some() {
            bail!("--encoder embeds .jsonl texts; {} is a CSV file", args.train.display());
        }
        let csv = CsvOptions { header: args.header, label: args.label.clone(), id: args.id.clone() };
        let train = Features::from_csv(&args.train, &csv)?;
        let test = if args.test.is_some() { Features::from_csv_like(test_path, &csv, &train)? } else { train.clone() };
        return Ok((train, test));
    }
    let encoder = match &args.encoder {
        Some(path) => spex::model::load(path)?,
        None => spex::model::cache::load_default_encoder()?,
    };
    let embed = |path: &Path| -> Result<Features> {
        let examples = text::read_text_examples(path)?;
        eprintln!("embedding {} texts of {}…", examples.len(), path.display());
        Ok(text::text_features(&encoder, &examples)?)
    };
    let train = embed(&args.train)?;
    let test = if args.test.is_some() { embed(test_path)? } else { train.clone() };
    Ok((train, test))
}

/// Size and FNV-1a hash of a file's bytes: a resumed run must see the same data.
fn fingerprint(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    Ok(format!("{} bytes, fnv1a {hash:016x}", bytes.len()))
}

fn design(args: DesignArgs) -> Result<()> {
    let plan = Plan::new(args.plan.spec(args.n, true))?;
    let design = design_path(&args.out);
    let header = vec![
        format!("spex design: method={} n={} seed={}", plan.spec().method, plan.n(), plan.spec().seed),
        format!(
            "lines 1..{}: design masks; the next {}: held-out masks for faithfulness{}",
            plan.budget_used(),
            plan.holdout().len(),
            probes_text(&plan, "; then")
        ),
        format!("design file: {}", design.display()),
    ];
    let design_file = plan.to_json();
    if !args.force {
        check_design_out(&args.out, &design, &design_file)?;
    }
    write_masks(&args.out, &header, &[plan.all_masks().as_slice()])?;
    std::fs::write(&design, design_file).with_context(|| format!("writing {}", design.display()))?;
    println!("{}", plan_line(&plan));
    let size = std::fs::metadata(&args.out).map_or(0, |m| m.len());
    println!(
        "wrote {} masks ({}) to {} and the design to {}",
        plan.total_masks(),
        human_bytes(size),
        args.out.display(),
        design.display()
    );
    Ok(())
}

/// Refuses to replace the masks file `out` and its design file `design` unless they are this
/// very design (`design_file` is the new design file's text): values computed for the old masks
/// would otherwise decode, silently wrong, against the new design.
fn check_design_out(out: &Path, design: &Path, design_file: &str) -> Result<()> {
    match std::fs::read_to_string(design) {
        Ok(old) if old == design_file => Ok(()),
        Ok(_) => bail!(
            "{} holds another design; values computed for the masks in {} would no longer match it. \
             Choose another --out, or pass --force to replace both",
            design.display(),
            out.display()
        ),
        Err(_) if out.exists() => bail!(
            "{} exists and is not the masks file of a design (no {} beside it); \
             choose another --out, or pass --force to replace it",
            out.display(),
            design.display()
        ),
        Err(_) => Ok(()),
    }
}

fn design_path(masks: &Path) -> PathBuf {
    let mut name = masks.as_os_str().to_owned();
    name.push(".design.json");
    PathBuf::from(name)
}

fn plan_line(plan: &Plan) -> String {
    let extra = match plan.design() {
        Design::Spex(d) => format!(" (b = {}, t = {}, {} delays)", d.b(), d.t(), d.num_delays()),
        Design::Uniform(_) | Design::Proxy(_) | Design::Exhaustive => String::new(),
    };
    let choice = plan.choice().map(|c| format!("\n{c}")).unwrap_or_default();
    format!(
        "{}: n = {}, {} of {} budgeted masks{extra}, plus {} held-out masks{}{choice}",
        plan.spec().method,
        plan.n(),
        plan.budget_used(),
        plan.spec().budget,
        plan.holdout().len(),
        probes_text(plan, " and")
    )
}

/// `lead` and the probes of `plan`, such as " and 2 probes (every player ablated, every player
/// kept)"; nothing without probes.
fn probes_text(plan: &Plan, lead: &str) -> String {
    let names: Vec<_> = plan.probes().iter().map(|p| p.to_string()).collect();
    match names.len() {
        0 => String::new(),
        1 => format!("{lead} 1 probe ({})", names[0]),
        k => format!("{lead} {k} probes ({})", names.join(", ")),
    }
}

fn decode(args: DecodeArgs) -> Result<()> {
    let (plan, masks_path) = match (&args.design, &args.masks) {
        (Some(d), _) => (Plan::load(d)?, None),
        (None, Some(m)) => {
            (Plan::load(&design_path(m)).context("the masks file needs its design file beside it")?, Some(m))
        }
        (None, None) => bail!("give --masks or --design"),
    };
    if let Some(path) = masks_path {
        check_masks_file(path, &plan)?;
    }
    let values = read_values(&args.values)?;
    let explanation = Explanation::decode(&plan, &values, &DecoderConfig::default())
        .with_context(|| format!("decoding {}", args.values.display()))?;
    let result = result_file(&explanation, &args.show)?;
    print_summary(&result, &args.show);
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&result)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

/// The masks file must hold exactly the plan's masks (else the values belong to something else).
fn check_masks_file(path: &Path, plan: &Plan) -> Result<()> {
    let file = read_masks(path, Some(plan.n()))?;
    let expected = plan.all_masks();
    if file.len() != expected.len() {
        bail!("{} has {} masks but its design has {}", path.display(), file.len(), expected.len());
    }
    if let Some(row) = (0..file.len()).find(|&i| file.row(i) != expected.row(i)) {
        bail!("mask {} of {} differs from its design; was the file edited?", row + 1, path.display());
    }
    Ok(())
}

fn result_file(explanation: &Explanation, show: &ShowArgs) -> Result<ResultFile> {
    let interactions = explanation.interactions(show.index, show.max_order.unwrap_or(explanation.degree))?;
    Ok(ResultFile::new(explanation, &interactions, None))
}

/// Faithfulness below which the summary warns that the explanation fits poorly.
const LOW_R2: f64 = 0.5;

fn print_summary(result: &ResultFile, show: &ShowArgs) {
    let r2 = match result.faithfulness.r2 {
        Some(r2) => format!("R² = {r2:.4} on {} held-out masks", result.faithfulness.masks),
        None if result.faithfulness.masks == 0 => "R² not measured (no held-out values)".to_string(),
        None => "R² undefined (held-out values are all equal)".to_string(),
    };
    println!(
        "{}: n = {}, {} of {} budgeted masks, degree ≤ {}; faithfulness {r2}",
        result.method, result.n, result.budget.used, result.budget.requested, result.degree
    );
    if let Some(choice) = &result.choice {
        println!("{choice}");
    }
    if result.faithfulness.r2.is_some_and(|r2| r2 < LOW_R2) {
        println!(
            "note: R² below {LOW_R2}: these interactions explain little of the held-out values; \
             a larger --budget or another --method may fit better"
        );
    }
    if let Diagnostics::Spex(d) = &result.diagnostics {
        if d.refit_skipped {
            println!(
                "note: the least-squares refit of the {} recovered terms on {} samples was skipped as too large; \
                 the peeled values stand",
                d.peeled, result.budget.used
            );
        }
    }
    let shown: Vec<_> = result.interactions.iter().filter(|e| !e.players.is_empty()).take(show.top).collect();
    let largest = shown
        .iter()
        .map(|e| e.value.abs())
        .chain([result.baseline.abs(), result.value_all_kept.abs()])
        .chain([result.measured.all_ablated, result.measured.all_kept].into_iter().flatten().map(f64::abs))
        .fold(0.0, f64::max);
    // The recovered representation's values, not measurements: far from the sampled masks
    // (ProxySPEX's, SPEX's) they can be extrapolations, so a measured value is shown beside.
    let extreme = |value: f64, measured: Option<f64>| {
        let measured = measured.map(|m| format!(" (measured {})", four_digits(m, largest, false)));
        format!("{}{}", four_digits(value, largest, false), measured.unwrap_or_default())
    };
    println!(
        "the interactions give {} with every player ablated, {} with every player kept",
        extreme(result.baseline, result.measured.all_ablated),
        extreme(result.value_all_kept, result.measured.all_kept)
    );
    println!("top {} interactions ({}, order ≤ {}):", show.top, result.index, result.max_order);
    let mut out = std::io::stdout().lock();
    for e in &shown {
        let names = e.names.as_ref().map(|n| format!("  {}", n.join(" "))).unwrap_or_default();
        let _ = writeln!(out, "  {:>10}  {}{names}", four_digits(e.value, largest, true), e.players);
    }
    if shown.is_empty() && show.top > 0 {
        let why = if result.max_order == 0 { "order 0 holds only the empty set" } else { "every one is zero" };
        let _ = writeln!(out, "  none ({why})");
    }
}

fn bench_decode(ns: &[usize], terms: usize, degree: usize, budget: Option<usize>, json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for &n in ns {
        let row = spex::bench::decode_row(n, budget.unwrap_or(21_504.max(8 * n)), terms, degree, 0)?;
        eprintln!("n = {n}: decoded in {:.4} s", row.decode_seconds);
        rows.push(row);
    }
    print_rows(&rows, json, spex::bench::format_decode_table)
}

fn bench_throughput(
    model: &spex::bench::BenchModel,
    device: ComputeDevice,
    lengths: &[usize],
    batches: &[usize],
    budget: usize,
    json: bool,
) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("spex-bench-{}", std::process::id()));
    let (mut rows, mut failed) = (Vec::new(), 0);
    for &len in lengths {
        for &batch in batches {
            let row = spex::bench::throughput_row(model, len, batch, budget, &dir, device);
            let _ = std::fs::remove_dir_all(&dir);
            // A configuration that fails (too long for the model, out of memory) is reported and
            // the others still run and print: a long benchmark keeps what it measured.
            match row {
                Ok(row) => {
                    eprintln!("{len} tokens, batch {batch}: {:.2} queries/s", row.queries_per_second);
                    rows.push(row);
                }
                Err(e) => {
                    eprintln!("{len} tokens, batch {batch}: failed: {e:#}");
                    failed += 1;
                }
            }
        }
    }
    if !rows.is_empty() {
        print_rows(&rows, json, spex::bench::format_throughput_table)?;
    }
    if failed > 0 {
        bail!("{failed} of {} configurations failed (see above)", lengths.len() * batches.len());
    }
    Ok(())
}

fn bench_curve(
    ns: &[usize],
    budgets: &[usize],
    methods: &[Method],
    setting: &spex::bench::CurveSetting,
    json: bool,
) -> Result<()> {
    let mut points = Vec::new();
    for &n in ns {
        for &b in budgets {
            for &m in methods {
                let p = spex::bench::curve_point(m, n, b, setting);
                eprintln!("n = {n}, budget {b}, {m}: R² {:?}", p.r2);
                points.push(p);
            }
        }
    }
    print_rows(&points, json, spex::bench::format_curve_table)
}

/// Prints benchmark rows as JSON or as the given table (progress went to stderr).
fn print_rows<T: serde::Serialize>(rows: &[T], json: bool, table: fn(&[T]) -> String) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(rows)?);
    } else {
        print!("{}", table(rows));
    }
    Ok(())
}
