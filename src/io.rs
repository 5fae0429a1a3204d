//! Plain-text exchange formats: a masks file holds one mask per line as a string of '0'/'1', a
//! values file one number per line. Lines starting with `#` are comments and blank lines are
//! skipped in both. Every error names the file and the 1-based line.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::mask::{Mask, MaskBatch, MaskError, MaskSlice};

/// Why a masks or values file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A masks line is not a valid mask or has the wrong width.
    #[error("{path}:{line}: {source}")]
    Mask {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        source: MaskError,
    },
    /// A values line is not a number.
    #[error("{path}:{line}: {text:?} is not a number")]
    NotANumber {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The line's text.
        text: String,
    },
    /// A values line is NaN or infinite.
    #[error("{path}:{line}: value {value} is not finite; every value must be a finite number")]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The value.
        value: f64,
    },
    /// The file has no data lines.
    #[error("{path}: no data lines (only comments or blank lines)")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> FormatError + '_ {
    move |source| FormatError::Io { path: path.to_path_buf(), source }
}

/// The data lines of a text file with their 1-based line numbers.
fn data_lines(path: &Path) -> Result<Vec<(usize, String)>, FormatError> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut reader = BufReader::new(file);
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut number = 0;
    loop {
        buf.clear();
        if reader.read_line(&mut buf).map_err(io_error(path))? == 0 {
            break;
        }
        number += 1;
        let text = buf.trim();
        if !text.is_empty() && !text.starts_with('#') {
            out.push((number, text.to_string()));
        }
    }
    Ok(out)
}

/// Reads a masks file. All masks must have the same number of players: `n` when given, else
/// that of the first mask.
pub fn read_masks(path: &Path, n: Option<usize>) -> Result<MaskBatch, FormatError> {
    let lines = data_lines(path)?;
    let mut batch: Option<MaskBatch> = n.map(MaskBatch::new);
    for (line, text) in lines {
        let err = |source| FormatError::Mask { path: path.to_path_buf(), line, source };
        let mask = Mask::parse(&text).map_err(err)?;
        batch.get_or_insert_with(|| MaskBatch::new(mask.n())).push(mask.as_ref()).map_err(err)?;
    }
    batch.filter(|b| !b.is_empty()).ok_or_else(|| FormatError::Empty { path: path.to_path_buf() })
}

/// Writes a masks file: `header` lines as `#` comments, then one mask per line.
pub fn write_masks(path: &Path, header: &[String], masks: &[MaskSlice<'_>]) -> Result<(), FormatError> {
    let file = File::create(path).map_err(io_error(path))?;
    let mut w = BufWriter::new(file);
    let write = |w: &mut BufWriter<File>| -> std::io::Result<()> {
        for line in header {
            writeln!(w, "# {line}")?;
        }
        for part in masks {
            for m in part.iter() {
                writeln!(w, "{m}")?;
            }
        }
        w.flush()
    };
    write(&mut w).map_err(io_error(path))
}

/// Reads a values file (every data line one finite number).
pub fn read_values(path: &Path) -> Result<Vec<f64>, FormatError> {
    parse_values(path, data_lines(path)?)
}

fn parse_values(path: &Path, lines: Vec<(usize, String)>) -> Result<Vec<f64>, FormatError> {
    lines
        .into_iter()
        .map(|(line, text)| {
            let value: f64 = text.parse().map_err(|_| FormatError::NotANumber {
                path: path.to_path_buf(),
                line,
                text: text.clone(),
            })?;
            if value.is_finite() {
                Ok(value)
            } else {
                Err(FormatError::NonFinite { path: path.to_path_buf(), line, value })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.txt");
        std::fs::write(&p, "# header\n0101\n\n0111\n011\n").unwrap();
        let err = read_masks(&p, None).unwrap_err().to_string();
        assert!(err.ends_with("m.txt:5: mask has 3 players, expected 4"), "{err}");
        let err = read_masks(&p, Some(3)).unwrap_err().to_string();
        assert!(err.ends_with("m.txt:2: mask has 4 players, expected 3"), "{err}");
        std::fs::write(&p, "0101\n01a1\n").unwrap();
        assert!(read_masks(&p, None).unwrap_err().to_string().contains(":2: invalid character 'a'"));
        std::fs::write(&p, "# only\n").unwrap();
        assert!(matches!(read_masks(&p, Some(4)), Err(FormatError::Empty { .. })));
    }

    #[test]
    fn values_errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.txt");
        std::fs::write(&p, "1.5\n# c\n-2e3\nNaN\n").unwrap();
        assert!(read_values(&p).unwrap_err().to_string().contains("v.txt:4: value NaN is not finite"));
        std::fs::write(&p, "1\nabc\n").unwrap();
        assert!(read_values(&p).unwrap_err().to_string().contains(":2: \"abc\" is not a number"));
        std::fs::write(&p, "1\n2\n3").unwrap();
        assert_eq!(read_values(&p).unwrap(), vec![1.0, 2.0, 3.0]);
    }
}
