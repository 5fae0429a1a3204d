//! A run directory keeps an explanation's work on disk as it happens, so that nothing is lost
//! when a run stops early:
//!
//! * `design.json`: the plan (see [`crate::plan`]); `spex decode --design` reads it;
//! * `run.json`: what was queried (driver command, model and input) and the players' names;
//! * `samples.store` (or `samples.shard-I-of-K.store` for a shard): the sample store, appended and
//!   synced batch by batch (see [`crate::store`]);
//! * `values.txt`: every value, one per line, written when a run completes;
//! * `result.json` and the other reports, written at the end.
//!
//! An unfinished run is never overwritten by accident: continue it with resume, or start over
//! explicitly. A finished run of the same plan and function is reused.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::plan::{Plan, PlanFile};
use crate::store::{Shard, Store, StoreError, StoreHeader, STORE_FORMAT};

/// Why a run directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// An unfinished run is there and neither resume nor a fresh start was asked for.
    #[error(
        "{dir} holds an unfinished run ({done} of {total} batches); continue it with --resume, or pass \
         --force to discard it and start over"
    )]
    Unfinished {
        /// The directory.
        dir: PathBuf,
        /// Batches stored.
        done: usize,
        /// Batches the run (or shard) needs.
        total: usize,
    },
    /// The store is unusable or belongs to another run.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// Resume was asked for but there is nothing to resume.
    #[error("--resume: {0} holds no run to resume")]
    NothingToResume(PathBuf),
    /// A merge found no shard stores, or shards that do not make up a whole run.
    #[error("{0}")]
    Merge(String),
    /// The directory holds files a run writes but no run: they are someone else's.
    #[error("{dir} holds {files} but no spex run; a run there would overwrite them: choose another output directory")]
    Foreign {
        /// The directory.
        dir: PathBuf,
        /// The files that would be overwritten, comma-separated.
        files: String,
    },
    /// Another store in the directory belongs to another run: the two could never be merged.
    #[error(
        "{other} in {dir} belongs to another run (its {what} differs); the shards of one run share every \
         option: use another directory, or remove that store"
    )]
    OtherRun {
        /// The directory.
        dir: PathBuf,
        /// The other run's store.
        other: PathBuf,
        /// What differs.
        what: &'static str,
    },
    /// A batch size of 0 was asked for.
    #[error("a batch size of 0: every batch needs at least one mask")]
    ZeroBatch,
    /// Writing a finished run's values or reports failed; every sample is in the store.
    #[error(
        "{path}: {source}\nevery sample is kept in the run's store; once this is fixed, run the same command \
         again: it writes the files from the store without querying anything"
    )]
    Output {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// How to treat a directory that already holds a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartMode {
    /// Refuse an unfinished run; reuse a finished one of the same plan and function.
    Fresh,
    /// Continue the run there (same plan and function required).
    Resume,
    /// Discard whatever is there.
    Force,
}

/// What was queried and who the players are; `function` is the fingerprint stores are checked
/// against.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The driver command, a model and input fingerprint, or a name such as `"demo"`.
    pub function: String,
    /// Names of the players, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub players: Option<Vec<String>>,
    /// What the value measures, in words (e.g. the log-probability of the greedy answer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scored: Option<String>,
    /// The model queried, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The text explained and where its players lie in it, for text inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<InputText>,
}

impl RunInfo {
    /// A run of `function` with unnamed players.
    pub fn new(function: impl Into<String>) -> Self {
        RunInfo { function: function.into(), players: None, scored: None, model: None, input: None }
    }

    /// The description in run directory `dir` (its `run.json`), if there is a readable one.
    pub fn load(dir: &Path) -> Option<Self> {
        serde_json::from_str(&std::fs::read_to_string(dir.join("run.json")).ok()?).ok()
    }

    /// The same, with player names.
    pub fn with_players(mut self, names: Vec<String>) -> Self {
        self.players = Some(names);
        self
    }
}

/// A text input and its players' places in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputText {
    /// The whole text given to the model (fixed prefix and suffix included).
    pub text: String,
    /// Per player, in mask order: the byte range `[start, end)` of `text` it covers, or `None`
    /// for players that are not text (attention heads).
    pub spans: Vec<Option<[usize; 2]>>,
}

/// The files a run writes in its directory besides its sample stores.
pub const RUN_FILES: [&str; 7] =
    ["design.json", "run.json", "values.txt", "result.json", "interactions.csv", "shapiq.json", "report.html"];

/// An open run directory.
pub struct RunDir {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError::Io { path: path.to_path_buf(), source }
}

fn output_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError::Output { path: path.to_path_buf(), source }
}

impl RunDir {
    /// Opens `dir` for (a shard of) `plan` queried through `info.function` in batches of
    /// `batch_size`; returns the store, holding whatever batches are already done.
    pub fn open(
        dir: &Path,
        plan: &Plan,
        info: &RunInfo,
        batch_size: usize,
        shard: Shard,
        mode: StartMode,
        sync_every: usize,
    ) -> Result<(Self, Store), RunDirError> {
        if batch_size == 0 {
            return Err(RunDirError::ZeroBatch);
        }
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let run = RunDir { dir: dir.to_path_buf() };
        run.refuse_foreign_files()?;
        let path = run.store_path(shard);
        let header = StoreHeader {
            format: STORE_FORMAT.into(),
            plan: plan.to_file(),
            function: info.function.clone(),
            total_masks: plan.total_masks(),
            batch_size,
            shard,
        };
        run.refuse_other_runs(&header, &path)?;
        match mode {
            StartMode::Force => {
                for file in [path.clone(), run.result_path(), run.values_path()] {
                    let _ = std::fs::remove_file(file);
                }
            }
            StartMode::Resume if !path.exists() => return Err(RunDirError::NothingToResume(run.dir.clone())),
            _ => {}
        }
        let store = Store::open_or_create(&path, header, sync_every)?;
        let owned = store.header().owned_batches().count();
        let done = owned - store.missing().len();
        if mode == StartMode::Fresh && done > 0 && done < owned {
            return Err(RunDirError::Unfinished { dir: run.dir.clone(), done, total: owned });
        }
        plan.save(&run.design_path()).map_err(io_err(&run.design_path()))?;
        run.write_json(&run.dir.join("run.json"), info)?;
        Ok((run, store))
    }

    /// Refuses a directory that holds some of [`RUN_FILES`] but neither a run description nor a
    /// sample store: a run would overwrite files it did not write.
    fn refuse_foreign_files(&self) -> Result<(), RunDirError> {
        if !self.store_paths()?.is_empty() || self.info().is_some() {
            return Ok(());
        }
        let clashes: Vec<&str> = RUN_FILES.into_iter().filter(|f| self.dir.join(f).exists()).collect();
        if clashes.is_empty() {
            return Ok(());
        }
        Err(RunDirError::Foreign { dir: self.dir.clone(), files: clashes.join(", ") })
    }

    /// Where a store in `dir` began `plan` before spex probed the extreme masks, that store's
    /// plan: `plan` without its probes. Resumed with it, the run continues as it began instead
    /// of being refused as another design. `None` otherwise, and in `mode` [`StartMode::Force`].
    pub fn plan_begun_without_probes(dir: &Path, plan: &Plan, mode: StartMode) -> Option<Plan> {
        if mode == StartMode::Force || plan.probes().is_empty() {
            return None;
        }
        let unprobed = PlanFile { probes: Vec::new(), ..plan.to_file() };
        let run = RunDir { dir: dir.to_path_buf() };
        let began = run
            .store_paths()
            .ok()?
            .into_iter()
            .any(|path| Store::read_header(&path).is_ok_and(|header| header.plan == unprobed));
        began.then(|| Plan::from_file(&unprobed).ok()).flatten()
    }

    /// The sample stores in the directory (every `*.store`), sorted.
    fn store_paths(&self) -> Result<Vec<PathBuf>, RunDirError> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io_err(&self.dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "store"))
            .collect();
        paths.sort();
        Ok(paths)
    }

    /// Refuses to start beside a store of another run (a shard started with other options):
    /// the two could never be merged, and `design.json` would describe only one of them. Other
    /// stores are only read, since their shards may be running; one whose header cannot be read
    /// yet (being created) is passed over.
    fn refuse_other_runs(&self, header: &StoreHeader, own: &Path) -> Result<(), RunDirError> {
        for path in self.store_paths()?.into_iter().filter(|p| p != own) {
            let Ok(other) = Store::read_header(&path) else { continue };
            if let Some(what) = header.run_difference(&other) {
                return Err(RunDirError::OtherRun { dir: self.dir.clone(), other: path, what });
            }
        }
        Ok(())
    }

    /// The shard stores of this directory, for `spex merge`: they must together hold every batch
    /// of one run. They are only read: a shard may still be running.
    pub fn open_shards(dir: &Path) -> Result<(Self, Vec<Store>), RunDirError> {
        let run = RunDir { dir: dir.to_path_buf() };
        let paths = run.store_paths()?;
        if paths.is_empty() {
            return Err(RunDirError::Merge(format!("{} holds no sample stores", dir.display())));
        }
        let stores = paths.iter().map(|p| Store::read(p)).collect::<Result<Vec<_>, _>>()?;
        let first = stores[0].header();
        for s in &stores[1..] {
            if let Some(what) = first.run_difference(s.header()) {
                return Err(RunDirError::Merge(format!(
                    "{} and {} belong to different runs (their {what} differs)",
                    stores[0].path().display(),
                    s.path().display()
                )));
            }
        }
        Ok((run, stores))
    }

    /// The run's description (`run.json`).
    pub fn info(&self) -> Option<RunInfo> {
        RunInfo::load(&self.dir)
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), RunDirError> {
        let text = serde_json::to_string_pretty(value).expect("serialises") + "\n";
        std::fs::write(path, text).map_err(io_err(path))
    }

    /// Writes a report file `name` of the finished run in the directory.
    pub fn write_file(&self, name: &str, contents: &str) -> Result<PathBuf, RunDirError> {
        debug_assert!(RUN_FILES.contains(&name), "{name} is missing from RUN_FILES");
        let path = self.dir.join(name);
        std::fs::write(&path, contents).map_err(output_err(&path))?;
        Ok(path)
    }

    /// Writes `values.txt`: every value of the run, one per line, full precision.
    pub fn write_values(&self, values: &[f64]) -> Result<(), RunDirError> {
        let text: String = values.iter().map(|v| format!("{v:?}\n")).collect();
        std::fs::write(self.values_path(), text).map_err(output_err(&self.values_path()))
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store of `shard`.
    pub fn store_path(&self, shard: Shard) -> PathBuf {
        if shard == Shard::ALL {
            self.dir.join("samples.store")
        } else {
            self.dir.join(format!("samples.shard-{}-of-{}.store", shard.index, shard.count))
        }
    }

    /// `design.json`.
    pub fn design_path(&self) -> PathBuf {
        self.dir.join("design.json")
    }

    /// `values.txt`.
    pub fn values_path(&self) -> PathBuf {
        self.dir.join("values.txt")
    }

    /// `result.json`.
    pub fn result_path(&self) -> PathBuf {
        self.dir.join("result.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{Method, PlanSpec};

    fn plan(seed: u64) -> Plan {
        Plan::new(PlanSpec { budget: 600, holdout: 10, seed, ..PlanSpec::new(8) }).unwrap()
    }

    fn info(f: &str) -> RunInfo {
        RunInfo::new(f)
    }

    fn open(dir: &Path, p: &Plan, f: &str, mode: StartMode) -> Result<(RunDir, Store), RunDirError> {
        RunDir::open(dir, p, &info(f), 100, Shard::ALL, mode, 1)
    }

    #[test]
    fn unfinished_runs_are_protected_and_resumable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let (_, mut store) = open(&dir, &plan(0), "f", StartMode::Fresh).unwrap();
        store.append(0, &[1.0; 100]).unwrap();
        drop(store);
        let err = open(&dir, &plan(0), "f", StartMode::Fresh).err().unwrap();
        assert!(matches!(err, RunDirError::Unfinished { done: 1, .. }), "{err}");
        let (_, store) = open(&dir, &plan(0), "f", StartMode::Resume).unwrap();
        assert_eq!(store.batches().len(), 1);
        drop(store);
        assert!(open(&dir, &plan(1), "f", StartMode::Resume).err().unwrap().to_string().contains("design"));
        assert!(open(&dir, &plan(0), "g", StartMode::Resume).err().unwrap().to_string().contains("value function"));
        let (_, store) = open(&dir, &plan(1), "g", StartMode::Force).unwrap();
        assert!(store.batches().is_empty());
        assert!(matches!(
            open(&tmp.path().join("none"), &plan(0), "f", StartMode::Resume),
            Err(RunDirError::NothingToResume(_))
        ));
        let zero = RunDir::open(&tmp.path().join("zero"), &plan(0), &info("f"), 0, Shard::ALL, StartMode::Fresh, 1);
        assert!(matches!(zero, Err(RunDirError::ZeroBatch)));
        assert!(!tmp.path().join("zero").exists());
    }

    #[test]
    fn a_run_begun_before_probes_continues_without_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let probed =
            Plan::new(PlanSpec { method: Method::Uniform, budget: 600, holdout: 10, ..PlanSpec::new(40) }).unwrap();
        assert_eq!(probed.probes().len(), 2);
        let began = Plan::from_file(&PlanFile { probes: Vec::new(), ..probed.to_file() }).unwrap();
        assert!(RunDir::plan_begun_without_probes(&dir, &probed, StartMode::Resume).is_none(), "no run there");
        drop(open(&dir, &began, "f", StartMode::Fresh).unwrap());
        let continued = RunDir::plan_begun_without_probes(&dir, &probed, StartMode::Resume).unwrap();
        assert_eq!((continued.to_file(), continued.total_masks()), (began.to_file(), 610));
        assert!(open(&dir, &continued, "f", StartMode::Resume).is_ok());
        // Starting over plans afresh; another design is not taken for this one.
        assert!(RunDir::plan_begun_without_probes(&dir, &probed, StartMode::Force).is_none());
        let other = Plan::new(PlanSpec { seed: 1, ..probed.spec().clone() }).unwrap();
        assert!(RunDir::plan_begun_without_probes(&dir, &other, StartMode::Resume).is_none());
    }

    #[test]
    fn files_of_a_directory_without_a_run_are_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("mine");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "kept").unwrap();
        // Files a run does not write are no obstacle.
        drop(open(&dir, &plan(0), "f", StartMode::Fresh).unwrap());
        let other = tmp.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::fs::write(other.join("result.json"), "my own").unwrap();
        std::fs::write(other.join("report.html"), "my own").unwrap();
        for mode in [StartMode::Fresh, StartMode::Force] {
            let err = open(&other, &plan(0), "f", mode).err().unwrap();
            assert!(matches!(&err, RunDirError::Foreign { files, .. } if files == "result.json, report.html"), "{err}");
        }
        assert_eq!(std::fs::read_to_string(other.join("result.json")).unwrap(), "my own");
        assert_eq!(std::fs::read_dir(&other).unwrap().count(), 2, "nothing was written");
        // The run's own directory, finished or not, opens as before.
        assert!(open(&dir, &plan(0), "f", StartMode::Force).is_ok());
        assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "kept");
    }
}
