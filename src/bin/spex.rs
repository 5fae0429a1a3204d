//! The `spex` command line: parses arguments, calls the library, prints.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use spex::engine;
use spex::explain::Explanation;
use spex::io::{read_masks, read_values, write_masks};
use spex::plan::{default_holdout, DecoderConfig, Design, Method, Plan, PlanSpec};
use spex::report::ResultFile;
use spex::rundir::{RunDir, StartMode};
use spex::transform::Index;
use spex::value::{demo, driver, ValueFunction};

#[derive(Parser)]
#[command(name = "spex", version, about = "Batch ablation engine for interaction attribution (SPEX)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Explain a function of n players: the built-in demo, or a driver program (--oracle).
    Explain(ExplainArgs),
    /// Write the masks of a design (one per line) and its design file beside them.
    Design(DesignArgs),
    /// Decode values computed for a design's masks.
    Decode(DecodeArgs),
    /// Serve the built-in demo over the driver protocol on stdin/stdout (an example driver).
    DemoOracle,
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Args, Clone)]
struct PlanArgs {
    /// Sampling method.
    #[arg(long, default_value = "spex")]
    method: Method,
    /// Most design masks to query [default: the reference's b = 8 design for SPEX, 5 000 otherwise].
    #[arg(long)]
    budget: Option<usize>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// SPEX degree parameter t: the largest interaction order recoverable.
    #[arg(long, default_value_t = 5)]
    degree: usize,
    /// Held-out masks for the faithfulness R² [default: a tenth of the budget, 100 to 1 000].
    #[arg(long)]
    holdout: Option<usize>,
}

impl PlanArgs {
    fn spec(&self, n: usize) -> PlanSpec {
        let default = PlanSpec::new(n);
        let budget = self.budget.unwrap_or(if self.method == Method::Spex { default.budget } else { 5000 });
        PlanSpec {
            n,
            method: self.method,
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
    /// Driver command (run through `sh -c`) speaking the JSON-lines protocol; without it, the
    /// built-in demo is explained.
    #[arg(long)]
    oracle: Option<String>,
    /// Players (required with --oracle).
    #[arg(long)]
    n: Option<usize>,
    #[command(flatten)]
    plan: PlanArgs,
    #[command(flatten)]
    show: ShowArgs,
    /// Masks per batch sent to the value function.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Seconds to wait for a driver's answer to one batch before giving up.
    #[arg(long)]
    timeout: Option<f64>,
    /// Run directory: design, values (kept as they arrive) and result.
    #[arg(long, default_value = "spex-out")]
    out: PathBuf,
    /// Continue the unfinished run in --out.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Discard whatever run is in --out and start over.
    #[arg(long)]
    force: bool,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
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
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("spex: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Explain(args) => explain(args),
        Command::Design(args) => design(args),
        Command::Decode(args) => decode(args),
        Command::DemoOracle => {
            let stdin = std::io::stdin();
            Ok(driver::serve(stdin.lock(), std::io::stdout().lock(), &mut demo::demo_game())?)
        }
        Command::Bench { what: BenchCommand::Decode { n, terms, degree, budget, json } } => {
            bench_decode(&n, terms, degree, budget, json)
        }
    }
}

fn explain(args: ExplainArgs) -> Result<()> {
    let (n, names, function) = match (&args.oracle, args.n) {
        (Some(cmd), Some(n)) => (n, None, cmd.clone()),
        (Some(_), None) => bail!("--oracle needs --n, the number of players"),
        (None, n) => {
            if n.is_some_and(|n| n != demo::WORDS.len()) {
                bail!("the built-in demo has {} players; drop --n or give --oracle", demo::WORDS.len());
            }
            (demo::WORDS.len(), Some(demo::WORDS.map(String::from).to_vec()), "demo".to_string())
        }
    };
    let plan = Plan::new(args.plan.spec(n))?;
    let mode = if args.resume { StartMode::Resume } else if args.force { StartMode::Force } else { StartMode::Fresh };
    let (run, mut values) = RunDir::open(&args.out, &plan, &function, mode)?;
    let masks = plan.all_masks();
    if values.len() < masks.len() {
        let mut f: Box<dyn ValueFunction> = match &args.oracle {
            Some(cmd) => {
                let timeout = args.timeout.map(Duration::from_secs_f64);
                let first_id = (values.len() / args.batch_size.max(1)) as u64;
                Box::new(driver::Driver::spawn(cmd, timeout)?.with_first_id(first_id))
            }
            None => Box::new(demo::demo_game()),
        };
        evaluate(&mut *f, &plan, &masks, &mut values, &run, &args)?;
    }
    let explanation = Explanation::decode(&plan, &values, &DecoderConfig::default())?;
    let result = result_file(&explanation, &args.show, names.as_deref())?;
    run.write_result(&result)?;
    print_summary(&result, &args.show);
    println!("wrote {}", run.result_path().display());
    Ok(())
}

/// Evaluates the remaining masks, appending every batch's values to the run directory.
fn evaluate(
    f: &mut dyn ValueFunction,
    plan: &Plan,
    masks: &spex::mask::MaskBatch,
    values: &mut Vec<f64>,
    run: &RunDir,
    args: &ExplainArgs,
) -> Result<()> {
    let bar = progress_bar(masks.len(), values.len(), args.quiet);
    let mut appender = run.appender()?;
    let outcome = engine::evaluate(f, masks.as_slice(), args.batch_size, values, &mut |batch| {
        appender.append(batch.values).map_err(|e| e.to_string())?;
        bar.set_position(batch.done as u64);
        Ok(())
    });
    bar.finish_and_clear();
    if let Err(e) = outcome {
        bail!(
            "{e}\n{} of {} values are kept in {}; fix the problem and run the same command with --resume to continue",
            values.len(),
            masks.len(),
            run.values_path().display()
        );
    }
    if !args.quiet {
        eprintln!("evaluated {} masks ({} design + {} held-out)", masks.len(), plan.budget_used(), plan.holdout().len());
    }
    Ok(())
}

fn progress_bar(total: usize, done: usize, quiet: bool) -> ProgressBar {
    if quiet {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} masks  {per_sec}  ETA {eta}")
            .expect("valid template"),
    );
    bar.set_position(done as u64);
    bar
}

fn design(args: DesignArgs) -> Result<()> {
    let plan = Plan::new(args.plan.spec(args.n))?;
    let design_masks = plan.design_masks();
    let header = vec![
        format!("spex design: method={} n={} seed={}", plan.spec().method, plan.n(), plan.spec().seed),
        format!("lines 1..{}: design masks; the next {}: held-out masks for faithfulness", plan.budget_used(), plan.holdout().len()),
        format!("design file: {}", design_path(&args.out).display()),
    ];
    write_masks(&args.out, &header, &[design_masks.as_slice(), plan.holdout().as_slice()])?;
    plan.save(&design_path(&args.out)).with_context(|| format!("writing {}", design_path(&args.out).display()))?;
    println!("{}", plan_line(&plan));
    println!(
        "wrote {} masks to {} and the design to {}",
        plan.budget_used() + plan.holdout().len(),
        args.out.display(),
        design_path(&args.out).display()
    );
    Ok(())
}

fn design_path(masks: &Path) -> PathBuf {
    let mut name = masks.as_os_str().to_owned();
    name.push(".design.json");
    PathBuf::from(name)
}

fn plan_line(plan: &Plan) -> String {
    let extra = match plan.design() {
        Design::Spex(d) => format!(" (b = {}, t = {}, {} delays)", d.b(), d.t(), d.num_delays()),
        Design::Uniform(_) => String::new(),
    };
    format!(
        "{}: n = {}, {} of {} budgeted masks{extra}, plus {} held-out masks",
        plan.spec().method,
        plan.n(),
        plan.budget_used(),
        plan.spec().budget,
        plan.holdout().len()
    )
}

fn decode(args: DecodeArgs) -> Result<()> {
    let (plan, masks_path) = match (&args.design, &args.masks) {
        (Some(d), _) => (Plan::load(d)?, None),
        (None, Some(m)) => (Plan::load(&design_path(m)).context("the masks file needs its design file beside it")?, Some(m)),
        (None, None) => bail!("give --masks or --design"),
    };
    if let Some(path) = masks_path {
        check_masks_file(path, &plan)?;
    }
    let values = read_values(&args.values)?;
    let explanation = Explanation::decode(&plan, &values, &DecoderConfig::default())
        .with_context(|| format!("decoding {}", args.values.display()))?;
    let result = result_file(&explanation, &args.show, None)?;
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

fn result_file(explanation: &Explanation, show: &ShowArgs, names: Option<&[String]>) -> Result<ResultFile> {
    let interactions = explanation.interactions(show.index, show.max_order.unwrap_or(explanation.degree))?;
    Ok(ResultFile::new(explanation, &interactions, names))
}

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
    // `+ 0.0` turns a negative zero into a positive one for printing.
    println!(
        "value with every player ablated {:.4}, with every player kept {:.4}",
        result.baseline + 0.0,
        result.value_all_kept + 0.0
    );
    println!("top {} interactions ({}, order ≤ {}):", show.top, result.index, result.max_order);
    let mut out = std::io::stdout().lock();
    for e in result.interactions.iter().filter(|e| !e.players.is_empty()).take(show.top) {
        let names = e.names.as_ref().map(|n| format!("  {}", n.join(" "))).unwrap_or_default();
        let _ = writeln!(out, "  {:>+10.4}  {}{names}", e.value, e.players);
    }
}

fn bench_decode(ns: &[usize], terms: usize, degree: usize, budget: Option<usize>, json: bool) -> Result<()> {
    let mut rows = Vec::new();
    for &n in ns {
        let row = spex::bench::decode_row(n, budget.unwrap_or(21_504.max(8 * n)), terms, degree, 0)?;
        if !json {
            eprintln!("n = {n}: decoded in {:.4} s", row.decode_seconds);
        }
        rows.push(row);
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print!("{}", spex::bench::format_decode_table(&rows));
    }
    Ok(())
}

