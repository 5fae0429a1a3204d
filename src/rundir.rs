//! A run directory keeps an explanation's work on disk as it happens, so that nothing is lost
//! when a run stops early:
//!
//! * `design.json`: the plan (see [`crate::plan`]); `spex decode --design` reads it;
//! * `run.json`: what was queried (the driver command, or the built-in demo);
//! * `values.txt`: one value per evaluated mask, appended and synced after every batch;
//! * `result.json`: the decoded result (see [`crate::report`]), written at the end.
//!
//! A directory holding an unfinished run is never overwritten by accident: continue it with
//! resume, or start over explicitly. A finished run of the same plan and function is reused.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::io::{self, FormatError, ValuesAppender};
use crate::plan::{Plan, PlanFile};
use crate::report::ResultFile;

/// Why a run directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunDirError {
    /// An unfinished run is there and neither resume nor a fresh start was asked for.
    #[error(
        "{dir} holds an unfinished run ({done} of {total} values); continue it with --resume, or pass \
         --force to discard it and start over"
    )]
    Unfinished {
        /// The directory.
        dir: PathBuf,
        /// Values stored.
        done: usize,
        /// Values the run needs.
        total: usize,
    },
    /// The run there used another design or function.
    #[error("{dir} holds a run with a different {what}; use another --out directory, or --force to replace it")]
    Different {
        /// The directory.
        dir: PathBuf,
        /// What differs.
        what: &'static str,
    },
    /// The values file is unreadable or holds more values than the plan has masks.
    #[error(transparent)]
    Format(#[from] FormatError),
    /// Resume was asked for but there is nothing to resume.
    #[error("--resume: {0} holds no run to resume")]
    NothingToResume(PathBuf),
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

/// What was queried, stored so that a resumed run cannot silently mix two functions.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The driver command, or a name such as `"demo"`.
    pub function: String,
}

/// An open run directory.
pub struct RunDir {
    dir: PathBuf,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RunDirError + '_ {
    move |source| RunDirError::Io { path: path.to_path_buf(), source }
}

impl RunDir {
    /// Opens `dir` for `plan` queried through `function`; returns the values already stored (in
    /// mask order) that the run can keep.
    pub fn open(dir: &Path, plan: &Plan, function: &str, mode: StartMode) -> Result<(Self, Vec<f64>), RunDirError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let run = RunDir { dir: dir.to_path_buf() };
        let total = plan.budget_used() + plan.holdout().len();
        let info = RunInfo { function: function.to_string() };
        let exists = run.design_path().exists();
        let stored = if exists && mode != StartMode::Force { run.check_same(plan, &info)? } else { Vec::new() };
        if stored.len() > total {
            return Err(RunDirError::Different { dir: run.dir.clone(), what: "number of values" });
        }
        match mode {
            StartMode::Resume if !exists => return Err(RunDirError::NothingToResume(run.dir.clone())),
            StartMode::Fresh if exists && stored.len() < total && !stored.is_empty() => {
                return Err(RunDirError::Unfinished { dir: run.dir.clone(), done: stored.len(), total });
            }
            _ => {}
        }
        run.write_json(&run.design_path(), &plan.to_file())?;
        run.write_json(&run.dir.join("run.json"), &info)?;
        let _ = std::fs::remove_file(run.result_path());
        ValuesAppender::open(&run.values_path(), Some(stored.len()))?;
        Ok((run, stored))
    }

    /// The stored values if the run there has the same plan and function, else an error.
    fn check_same(&self, plan: &Plan, info: &RunInfo) -> Result<Vec<f64>, RunDirError> {
        let different = |what| RunDirError::Different { dir: self.dir.clone(), what };
        let file: Option<PlanFile> = read_json(&self.design_path());
        if file.as_ref() != Some(&plan.to_file()) {
            return Err(different("design (n, method, budget, seed, degree or hold-out size)"));
        }
        if read_json::<RunInfo>(&self.dir.join("run.json")).as_ref() != Some(info) {
            return Err(different("value function"));
        }
        Ok(io::read_values_for_resume(&self.values_path())?)
    }

    fn write_json<T: Serialize>(&self, path: &Path, value: &T) -> Result<(), RunDirError> {
        let text = serde_json::to_string_pretty(value).expect("serialises") + "\n";
        std::fs::write(path, text).map_err(io_err(path))
    }

    /// Appends values as they arrive.
    pub fn appender(&self) -> Result<ValuesAppender, RunDirError> {
        Ok(ValuesAppender::open(&self.values_path(), None)?)
    }

    /// Writes `result.json`.
    pub fn write_result(&self, result: &ResultFile) -> Result<(), RunDirError> {
        self.write_json(&self.result_path(), result)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
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

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::PlanSpec;

    fn plan(seed: u64) -> Plan {
        Plan::new(PlanSpec { budget: 600, holdout: 10, seed, ..PlanSpec::new(8) }).unwrap()
    }

    #[test]
    fn unfinished_runs_are_protected_and_resumable() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let (run, stored) = RunDir::open(&dir, &plan(0), "f", StartMode::Fresh).unwrap();
        assert!(stored.is_empty());
        run.appender().unwrap().append(&[1.0, 2.0]).unwrap();
        let err = RunDir::open(&dir, &plan(0), "f", StartMode::Fresh).err().unwrap();
        assert!(matches!(err, RunDirError::Unfinished { done: 2, .. }), "{err}");
        let (_, stored) = RunDir::open(&dir, &plan(0), "f", StartMode::Resume).unwrap();
        assert_eq!(stored, vec![1.0, 2.0]);
        assert!(matches!(RunDir::open(&dir, &plan(1), "f", StartMode::Resume), Err(RunDirError::Different { .. })));
        assert!(matches!(RunDir::open(&dir, &plan(0), "g", StartMode::Resume), Err(RunDirError::Different { .. })));
        let (_, stored) = RunDir::open(&dir, &plan(1), "g", StartMode::Force).unwrap();
        assert!(stored.is_empty());
        assert!(matches!(
            RunDir::open(&tmp.path().join("none"), &plan(0), "f", StartMode::Resume),
            Err(RunDirError::NothingToResume(_))
        ));
    }
}
