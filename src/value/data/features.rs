//! Labelled feature matrices: from a numeric CSV file, or from any matrix (e.g. frozen text
//! embeddings) passed in directly.
//!
//! A CSV file holds one example per line: numeric feature columns, one label column (any text;
//! the classes are its distinct values) and optionally an id column. Blank lines and lines
//! starting with `#` are skipped. Fields are separated by commas and trimmed; a field in double
//! quotes may hold commas and doubled quotes (RFC 4180, as pandas and spreadsheets write them).
//! Every error names the file, the line (1-based, as an editor shows it) and, where there is
//! one, the column.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// Why a feature matrix could not be read or built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FeatureError {
    /// The file could not be read.
    #[error("{source_name}: cannot read: {message}")]
    Read {
        /// The file.
        source_name: String,
        /// The I/O error.
        message: String,
    },
    /// No data rows (the file is empty, or holds only a header, comments or blank lines).
    #[error("{source_name}: no data rows")]
    Empty {
        /// The file.
        source_name: String,
    },
    /// A row has a different number of fields than the first line.
    #[error("{source_name} line {line}: {found} fields, but the first line has {expected}")]
    Ragged {
        /// The file.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// Fields on that line.
        found: usize,
        /// Fields on the first line.
        expected: usize,
    },
    /// A feature value is not a finite number.
    #[error("{source_name} line {line}, column {column}{name}: {value:?} is not a finite number", name = column_name(.name))]
    NotNumeric {
        /// The file.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// 1-based column number.
        column: usize,
        /// The column's header name, when there is a header.
        name: Option<String>,
        /// The offending field.
        value: String,
    },
    /// A label field is empty.
    #[error("{source_name} line {line}, column {column}: empty label")]
    EmptyLabel {
        /// The file.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// 1-based column number.
        column: usize,
    },
    /// A column given by name or number does not exist.
    #[error("{source_name}: no column {column} ({what}); the file has {available}")]
    NoSuchColumn {
        /// The file.
        source_name: String,
        /// The column as given.
        column: String,
        /// What it was meant to be (label or id column).
        what: &'static str,
        /// The columns there are.
        available: String,
    },
    /// A column given by name is named twice in the header.
    #[error(
        "{source_name}: the header names two columns {column} ({what}), at 0-based positions {} and {}; \
         give the position instead (@{} or @{})",
        positions.0,
        positions.1,
        positions.0,
        positions.1
    )]
    AmbiguousColumn {
        /// The file.
        source_name: String,
        /// The column as given.
        column: String,
        /// What it was meant to be (label or id column).
        what: &'static str,
        /// The first two columns of that name.
        positions: (usize, usize),
    },
    /// A column given by a bare number that the header gives as the name of another column:
    /// position and name disagree.
    #[error(
        "{source_name}: {column} ({what}) is the header name of the column at 0-based position {named_at}, \
         not of position {position}; give @{named_at} or @{position}"
    )]
    NumberNamesOther {
        /// The file.
        source_name: String,
        /// The column as given.
        column: String,
        /// What it was meant to be (label or id column).
        what: &'static str,
        /// The column the header gives that name.
        named_at: usize,
        /// The column at that 0-based position.
        position: usize,
    },
    /// The first line may be a header of numeric names or a data row, and nothing tells which.
    #[error(
        "{source_name}: line 1 may be a header or data: its fields are numbers but its label {label:?} \
         is on no other line, while every other class repeats; set the header mode to yes or no (--header)"
    )]
    AmbiguousHeader {
        /// The file.
        source_name: String,
        /// The first line's label field.
        label: String,
    },
    /// Label and id are the same column, or no column is left for features.
    #[error("{source_name}: {message}")]
    Columns {
        /// The file.
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// A matrix passed in directly is inconsistent.
    #[error("{0}")]
    Shape(String),
    /// A line of an examples file is not a valid example.
    #[error("{source_name} line {line}: {message}")]
    BadLine {
        /// The file.
        source_name: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The encoder failed to embed a text.
    #[error("embedding {what}: {message}")]
    Embedding {
        /// Which text.
        what: String,
        /// The encoder's error.
        message: String,
    },
}

fn column_name(name: &Option<String>) -> String {
    name.as_ref().map(|n| format!(" ({n:?})")).unwrap_or_default()
}

/// Whether the first line of a CSV file is a header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HeaderMode {
    /// A header when the label or id column is given by name, when no field of the first line
    /// parses as a number, or when the label or id column holds text there and numbers on every
    /// later line (numeric names such as pandas writes: `0,1,label`). A first line of numbers
    /// whose text label is on no other line, while every other class repeats, is refused as
    /// ambiguous rather than guessed.
    #[default]
    Auto,
    /// The first line is a header.
    Present,
    /// There is no header; every line is data.
    Absent,
}

impl FromStr for HeaderMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(HeaderMode::Auto),
            "yes" | "true" | "present" => Ok(HeaderMode::Present),
            "no" | "false" | "absent" => Ok(HeaderMode::Absent),
            other => Err(format!("unknown header mode {other:?}; expected auto, yes or no")),
        }
    }
}

/// A column of a CSV file: by header name, or by 0-based position.
///
/// Parsed from text: `last` (or `-1`) is the last column, `@N` the 0-based position `N`, and
/// anything else a header name; a bare number names no header column but reads as a position
/// (`3` is column 3 in a file of numbered columns such as pandas writes). Where the header gives
/// a bare number to a different column (`--id 0` over `id,0,1,label`), the file is refused
/// rather than either column guessed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// A header name (or, when no header column has it, a 0-based position written as a number).
    Name(String),
    /// 0-based position (`@N`).
    Index(usize),
    /// The last column.
    Last,
}

impl FromStr for Column {
    type Err = String;
    /// See [`Column`].
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.is_empty() {
            return Err("empty column name".into());
        }
        if let Some(position) = s.strip_prefix('@') {
            return position
                .parse()
                .map(Column::Index)
                .map_err(|_| format!("{s:?}: after @ a 0-based column position is expected (a header name has no @)"));
        }
        Ok(match s {
            "last" | "-1" => Column::Last,
            _ => Column::Name(s.to_string()),
        })
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::Name(s) => write!(f, "{s:?}"),
            Column::Index(i) => write!(f, "@{i}"),
            Column::Last => f.write_str("last"),
        }
    }
}

/// The ids of an examples file so far, by line: ids name the players, so a repeated one is an
/// error naming both lines.
#[derive(Default)]
pub(crate) struct UniqueIds(std::collections::HashMap<String, usize>);

impl UniqueIds {
    /// Records `id` of 1-based `line`; an error if an earlier line has it.
    pub(crate) fn check(&mut self, id: &str, line: usize, source_name: &str) -> Result<(), FeatureError> {
        match self.0.insert(id.to_string(), line) {
            Some(first) => Err(FeatureError::BadLine {
                source_name: source_name.to_string(),
                line,
                message: format!("id {id:?} is already that of line {first}; ids name the examples and must be unique"),
            }),
            None => Ok(()),
        }
    }
}

/// How to read a CSV file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CsvOptions {
    /// Header handling.
    pub header: HeaderMode,
    /// The label column (default: the last).
    pub label: Column,
    /// An id column naming the examples (default: none; examples are named by their 0-based row).
    pub id: Option<Column>,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions { header: HeaderMode::Auto, label: Column::Last, id: None }
    }
}

/// A labelled feature matrix: `rows × dim` numbers, one class per row, one id per row.
///
/// Build it from a CSV file ([`Features::from_csv`]), from text ([`Features::parse_csv`]), or
/// from any matrix with [`Features::new`] / [`Features::from_labels`] — e.g. sentence embeddings
/// computed once by a frozen encoder, so that probes are trained on subsets of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Features {
    /// Row-major values, `rows × dim`.
    pub x: Vec<f64>,
    /// Features per row.
    pub dim: usize,
    /// Class of each row, an index into `classes`.
    pub y: Vec<usize>,
    /// Id of each row (shown as the player's name).
    pub ids: Vec<String>,
    /// Class names, in index order.
    pub classes: Vec<String>,
    /// Names of the feature columns, from a CSV header (`None` without one).
    pub feature_names: Option<Vec<String>>,
}

impl Features {
    /// A matrix with class indices. Checks that the sizes agree, every value is finite and every
    /// class index names a class.
    pub fn new(
        x: Vec<f64>,
        dim: usize,
        y: Vec<usize>,
        ids: Vec<String>,
        classes: Vec<String>,
    ) -> Result<Self, FeatureError> {
        let rows = y.len();
        if dim == 0 {
            return Err(FeatureError::Shape("features need at least one column".into()));
        }
        if x.len() != rows * dim {
            return Err(FeatureError::Shape(format!("{} values do not make {rows} rows of {dim} features", x.len())));
        }
        if ids.len() != rows {
            return Err(FeatureError::Shape(format!("{} ids for {rows} rows", ids.len())));
        }
        if let Some(i) = x.iter().position(|v| !v.is_finite()) {
            return Err(FeatureError::Shape(format!("row {}, feature {}: {} is not finite", i / dim, i % dim, x[i])));
        }
        if let Some(row) = y.iter().position(|&c| c >= classes.len()) {
            return Err(FeatureError::Shape(format!(
                "row {row}: class {} but there are {} classes",
                y[row],
                classes.len()
            )));
        }
        Ok(Features { x, dim, y, ids, classes, feature_names: None })
    }

    /// A matrix with one label (any text) per row; the classes are the distinct labels, sorted
    /// numerically when every label is a number and as text otherwise. `ids` default to the
    /// 0-based row numbers.
    pub fn from_labels<S: AsRef<str>>(
        x: Vec<f64>,
        dim: usize,
        labels: &[S],
        ids: Option<Vec<String>>,
    ) -> Result<Self, FeatureError> {
        let classes = class_names(labels.iter().map(AsRef::as_ref));
        let y = labels.iter().map(|l| classes.iter().position(|c| c == l.as_ref()).expect("listed")).collect();
        let ids = ids.unwrap_or_else(|| (0..labels.len()).map(|i| i.to_string()).collect());
        Features::new(x, dim, y, ids, classes)
    }

    /// Reads a CSV file (see the module documentation).
    pub fn from_csv(path: &Path, options: &CsvOptions) -> Result<Self, FeatureError> {
        Features::read_csv(path, options, None)
    }

    /// Reads a CSV file of `train`'s columns (a test file): in [`HeaderMode::Auto`], a first line
    /// naming `train`'s feature columns is a header, even where its fields are all numbers.
    pub fn from_csv_like(path: &Path, options: &CsvOptions, train: &Features) -> Result<Self, FeatureError> {
        Features::read_csv(path, options, train.feature_names.as_deref())
    }

    fn read_csv(path: &Path, options: &CsvOptions, known: Option<&[String]>) -> Result<Self, FeatureError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| FeatureError::Read { source_name: source_name.clone(), message: e.to_string() })?;
        Features::parse_csv_with(&text, options, &source_name, known)
    }

    /// Parses CSV text; `source_name` names it in errors.
    pub fn parse_csv(text: &str, options: &CsvOptions, source_name: &str) -> Result<Self, FeatureError> {
        Features::parse_csv_with(text, options, source_name, None)
    }

    /// [`parse_csv`](Self::parse_csv), where a first line naming the feature columns `known` is
    /// a header.
    fn parse_csv_with(
        text: &str,
        options: &CsvOptions,
        source_name: &str,
        known: Option<&[String]>,
    ) -> Result<Self, FeatureError> {
        let src = || source_name.to_string();
        let records = csv_records(text, source_name)?;
        let Some((_, first)) = records.first() else {
            return Err(FeatureError::Empty { source_name: src() });
        };
        let first: Vec<&str> = first.iter().collect();
        let width = first.len();
        let header = match options.header {
            HeaderMode::Present => true,
            HeaderMode::Absent => false,
            HeaderMode::Auto => auto_header(&records, options, source_name, known)?,
        };
        let names: Option<Vec<String>> = header.then(|| first.iter().map(|s| s.to_string()).collect());
        let label = resolve_column(&options.label, names.as_deref(), width, source_name, "label column")?;
        let id = match &options.id {
            Some(c) => Some(resolve_column(c, names.as_deref(), width, source_name, "id column")?),
            None => None,
        };
        if id == Some(label) {
            return Err(FeatureError::Columns {
                source_name: src(),
                message: format!("the id and label columns are the same (column {})", label + 1),
            });
        }
        let feature_columns = feature_columns(width, label, id);
        if feature_columns.is_empty() {
            return Err(FeatureError::Columns {
                source_name: src(),
                message: format!("{width} columns and none is left for features"),
            });
        }
        let (mut x, mut labels, mut ids, mut seen) = (Vec::new(), Vec::new(), Vec::new(), UniqueIds::default());
        for (line, record) in &records[header as usize..] {
            let (line, fields): (usize, Vec<&str>) = (*line, record.iter().collect());
            if fields.len() != width {
                return Err(FeatureError::Ragged { source_name: src(), line, found: fields.len(), expected: width });
            }
            for &c in &feature_columns {
                let value = parse_number(fields[c]).ok_or_else(|| FeatureError::NotNumeric {
                    source_name: src(),
                    line,
                    column: c + 1,
                    name: names.as_ref().map(|n| n[c].clone()),
                    value: fields[c].to_string(),
                })?;
                x.push(value);
            }
            if fields[label].is_empty() {
                return Err(FeatureError::EmptyLabel { source_name: src(), line, column: label + 1 });
            }
            labels.push(fields[label].to_string());
            ids.push(match id {
                Some(c) => {
                    seen.check(fields[c], line, &src())?;
                    fields[c].to_string()
                }
                None => ids.len().to_string(),
            });
        }
        if labels.is_empty() {
            return Err(FeatureError::Empty { source_name: src() });
        }
        let mut features = Features::from_labels(x, feature_columns.len(), &labels, Some(ids))?;
        features.feature_names = names.map(|n| feature_columns.iter().map(|&c| n[c].clone()).collect());
        Ok(features)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.y.len()
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }

    /// Name of row `i`'s class.
    pub fn label(&self, i: usize) -> &str {
        &self.classes[self.y[i]]
    }
}

/// Whether the first of `rows` is a header, for [`HeaderMode::Auto`] (see there); a first line
/// naming the feature columns `known` (the training file's) is one.
fn auto_header(
    records: &[(usize, csv::StringRecord)],
    options: &CsvOptions,
    source_name: &str,
    known: Option<&[String]>,
) -> Result<bool, FeatureError> {
    let (first, rest): (Vec<&str>, _) = (records[0].1.iter().collect(), &records[1..]);
    let named = |c: Option<&Column>| matches!(c, Some(Column::Name(n)) if n.parse::<usize>().is_err());
    let number = |f: &str| parse_number(f).is_some();
    if named(Some(&options.label)) || named(options.id.as_ref()) || !first.iter().any(|f| number(f)) {
        return Ok(true);
    }
    let label = resolve_column(&options.label, None, first.len(), source_name, "label column")?;
    let id = options.id.as_ref().map(|c| resolve_column(c, None, first.len(), source_name, "id column")).transpose()?;
    // Only label and id: a text feature on line 1 is more likely a bad value than a name.
    let text_over_numbers =
        |c: usize| !number(first[c]) && !rest.is_empty() && rest.iter().all(|(_, r)| r.get(c).is_some_and(number));
    let features = feature_columns(first.len(), label, id);
    let names_known =
        known.is_some_and(|k| k.len() == features.len() && features.iter().zip(k).all(|(&c, n)| first[c] == n));
    if names_known || text_over_numbers(label) || id.is_some_and(text_over_numbers) {
        return Ok(true);
    }
    let mut classes: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (_, r) in rest {
        *classes.entry(r.get(label).unwrap_or_default()).or_default() += 1;
    }
    let features_are_numbers = features.iter().all(|&c| number(first[c]));
    let lone_first_class = !number(first[label]) && !classes.contains_key(first[label]);
    if features_are_numbers && lone_first_class && !classes.is_empty() && classes.values().all(|&k| k >= 2) {
        return Err(FeatureError::AmbiguousHeader {
            source_name: source_name.to_string(),
            label: first[label].to_string(),
        });
    }
    Ok(false)
}

/// The columns of `width` that are neither the label nor the id.
fn feature_columns(width: usize, label: usize, id: Option<usize>) -> Vec<usize> {
    (0..width).filter(|&c| c != label && Some(c) != id).collect()
}

/// Distinct labels, numerically sorted when all are numbers, else as text.
fn class_names<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let distinct: BTreeSet<&str> = labels.collect();
    let mut names: Vec<String> = distinct.into_iter().map(str::to_string).collect();
    if names.iter().all(|n| parse_number(n).is_some()) {
        names.sort_by(|a, b| parse_number(a).unwrap().total_cmp(&parse_number(b).unwrap()));
    }
    names
}

/// The records of CSV text with their 1-based line numbers, fields trimmed; quoted fields may
/// hold commas (RFC 4180, as pandas writes them). Blank lines and lines starting with `#` are
/// skipped.
fn csv_records(text: &str, source_name: &str) -> Result<Vec<(usize, csv::StringRecord)>, FeatureError> {
    // Comment lines become blank ones, so that line numbers stay those of the file (the csv
    // crate's own comments must start in the first column; ours may be indented).
    let text: Vec<&str> = text.split('\n').map(|l| if l.trim_start().starts_with('#') { "" } else { l }).collect();
    let text = text.join("\n");
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true) // ragged lines get this module's own error
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut records = Vec::new();
    for record in reader.records() {
        let record =
            record.map_err(|e| FeatureError::Read { source_name: source_name.to_string(), message: e.to_string() })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if !record.iter().all(str::is_empty) {
            records.push((line, record));
        }
    }
    Ok(records)
}

fn parse_number(field: &str) -> Option<f64> {
    field.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn resolve_column(
    column: &Column,
    names: Option<&[String]>,
    width: usize,
    source_name: &str,
    what: &'static str,
) -> Result<usize, FeatureError> {
    let named: Vec<usize> = match (column, names) {
        (Column::Name(name), Some(n)) => (0..n.len()).filter(|&i| n[i] == *name).collect(),
        _ => Vec::new(),
    };
    if let [first, second, ..] = named[..] {
        // Taking the first silently could make a feature of the intended label.
        return Err(FeatureError::AmbiguousColumn {
            source_name: source_name.to_string(),
            column: column.to_string(),
            what,
            positions: (first, second),
        });
    }
    let position = |name: &str| name.parse::<usize>().ok().filter(|&i| i < width);
    if let (Column::Name(name), [named_at]) = (column, &named[..]) {
        if let Some(position) = position(name).filter(|p| p != named_at) {
            return Err(FeatureError::NumberNamesOther {
                source_name: source_name.to_string(),
                column: column.to_string(),
                what,
                named_at: *named_at,
                position,
            });
        }
    }
    let found = match column {
        Column::Last => Some(width - 1),
        Column::Index(i) => Some(*i).filter(|&i| i < width),
        Column::Name(name) => named.first().copied().or_else(|| position(name)),
    };
    found.ok_or_else(|| FeatureError::NoSuchColumn {
        source_name: source_name.to_string(),
        column: column.to_string(),
        what,
        available: match names {
            Some(n) => format!(
                "columns {} (0-based positions 0..{})",
                n.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", "),
                width - 1
            ),
            None => format!("{width} columns (0-based positions 0..{}) and no header", width - 1),
        },
    })
}

/// Per-feature standardisation: subtract the mean and divide by the standard deviation, both
/// measured on the training examples (all of them, whatever subset a mask later selects). A
/// constant feature is only centred.
#[derive(Clone, Debug, PartialEq)]
pub struct Standardizer {
    /// Mean of each feature.
    pub mean: Vec<f64>,
    /// Divisor of each feature (the population standard deviation, or 1 for a constant feature).
    pub scale: Vec<f64>,
}

impl Standardizer {
    /// Fits the means and scales of `features`.
    pub fn fit(features: &Features) -> Self {
        let (d, rows) = (features.dim, features.rows().max(1) as f64);
        let mut mean = vec![0.0; d];
        for i in 0..features.rows() {
            for (m, v) in mean.iter_mut().zip(features.row(i)) {
                *m += v / rows;
            }
        }
        let mut var = vec![0.0; d];
        for i in 0..features.rows() {
            for ((s, v), m) in var.iter_mut().zip(features.row(i)).zip(&mean) {
                *s += (v - m) * (v - m) / rows;
            }
        }
        let scale = var.iter().map(|v| if *v > 1e-24 { v.sqrt() } else { 1.0 }).collect();
        Standardizer { mean, scale }
    }

    /// Standardises one row in place.
    pub fn apply_row(&self, row: &mut [f64]) {
        for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.scale) {
            *v = (*v - m) / s;
        }
    }

    /// A standardised copy of `features`.
    pub fn apply(&self, features: &Features) -> Features {
        let mut out = features.clone();
        for row in out.x.chunks_exact_mut(out.dim) {
            self.apply_row(row);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Features, FeatureError> {
        Features::parse_csv(text, &CsvOptions::default(), "t.csv")
    }

    #[test]
    fn header_auto_labels_and_ids() {
        let f = parse("a,b,label\n1,2,cat\n# comment\n\n3,4.5,dog\r\n5,6,cat\n").unwrap();
        assert_eq!((f.rows(), f.dim), (3, 2));
        assert_eq!(f.feature_names, Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(f.x, vec![1.0, 2.0, 3.0, 4.5, 5.0, 6.0]);
        assert_eq!(f.classes, vec!["cat", "dog"]);
        assert_eq!(f.y, vec![0, 1, 0]);
        assert_eq!(f.ids, vec!["0", "1", "2"]);
        // No header: the first line is data; numeric labels sort numerically.
        let f = parse("1,2,10\n3,4,9\n5,6,10\n").unwrap();
        assert_eq!(f.rows(), 3);
        assert_eq!(f.classes, vec!["9", "10"]);
        // Label and id by name, label first.
        let opts = CsvOptions {
            label: Column::Name("y".into()),
            id: Some(Column::Name("name".into())),
            header: HeaderMode::Auto,
        };
        let f = Features::parse_csv("y,name,x\n0,ann,1\n1,bob,2\n", &opts, "t.csv").unwrap();
        assert_eq!(
            (f.ids.clone(), f.x.clone(), f.y.clone()),
            (vec!["ann".into(), "bob".into()], vec![1.0, 2.0], vec![0, 1])
        );
        assert_eq!(f.label(1), "1");
        // Quoted fields hold commas and quotes.
        let opts = CsvOptions { id: Some(Column::Name("name".into())), ..CsvOptions::default() };
        let f =
            Features::parse_csv("name,x,label\n\"Smith, J\",1,\"yes, \"\"sure\"\"\"\n\"Doe\", 2 ,no\n", &opts, "t.csv")
                .unwrap();
        assert_eq!((f.ids.clone(), f.x.clone()), (vec!["Smith, J".into(), "Doe".into()], vec![1.0, 2.0]));
        assert_eq!(f.classes, vec!["no", "yes, \"sure\""]);
    }

    #[test]
    fn headers_of_numeric_names_are_recognised_or_refused() {
        let with = |header| CsvOptions { header, ..CsvOptions::default() };
        let rows = |text: &str, header| Features::parse_csv(text, &with(header), "t.csv").map(|f| f.rows());
        // Text over numeric labels (or ids) marks a header.
        let f = parse("0,1,label\n0.5,0.2,1\n0.1,0.3,0\n").unwrap();
        assert_eq!((f.rows(), f.feature_names.clone()), (2, Some(vec!["0".to_string(), "1".to_string()])));
        let ids = CsvOptions { id: Some(Column::Index(0)), ..CsvOptions::default() };
        let f = Features::parse_csv("id,0,1,y\n7,0.5,0.2,a\n8,0.1,0.3,b\n", &ids, "t.csv").unwrap();
        assert_eq!(f.ids, vec!["7", "8"]);
        // A bare number the header gives to another column is refused; @N is a position.
        let id = |c: &str| CsvOptions { id: Some(c.parse().unwrap()), ..CsvOptions::default() };
        let text = "id,0,1,y\n7,0.5,0.2,1\n8,0.1,0.3,0\n";
        let e = Features::parse_csv(text, &id("0"), "t.csv").unwrap_err();
        let expected = FeatureError::NumberNamesOther {
            source_name: "t.csv".into(),
            column: "\"0\"".into(),
            what: "id column",
            named_at: 1,
            position: 0,
        };
        assert_eq!(e, expected);
        assert!(e.to_string().ends_with("give @1 or @0"), "{e}");
        assert_eq!(Features::parse_csv(text, &id("@0"), "t.csv").unwrap().ids, vec!["7", "8"]);
        assert_eq!(Features::parse_csv(text, &id("@1"), "t.csv").unwrap().ids, vec!["0.5", "0.1"]);
        // Numbered columns as pandas writes them: name and position agree.
        let f = Features::parse_csv("0,1,2,y\n7,0.5,0.2,1\n8,0.1,0.3,0\n", &id("0"), "t.csv").unwrap();
        assert_eq!((f.ids, f.feature_names), (vec!["7".into(), "8".into()], Some(vec!["1".into(), "2".into()])));
        // A label given by name needs a header.
        let named = CsvOptions { label: Column::Name("y".into()), ..CsvOptions::default() };
        assert_eq!(Features::parse_csv("0,y,1\n0.5,pos,1\n0.1,neg,2\n", &named, "t.csv").unwrap().rows(), 2);
        // Numbers with a text label found nowhere else, while every class repeats: refused.
        let text = "0,1,label\n0.5,0.2,pos\n0.1,0.3,neg\n0.2,0.2,pos\n0.3,0.1,neg\n";
        let e = rows(text, HeaderMode::Auto).unwrap_err();
        assert_eq!(e, FeatureError::AmbiguousHeader { source_name: "t.csv".into(), label: "label".into() });
        assert!(e.to_string().contains("(--header)"), "{e}");
        assert_eq!((rows(text, HeaderMode::Present), rows(text, HeaderMode::Absent)), (Ok(4), Ok(5)));
        // Data stays data: lone classes everywhere, a repeated first class, a bad first value.
        assert_eq!(rows("1,2,a\n3,4,b\n5,6,c\n", HeaderMode::Auto), Ok(3));
        assert_eq!(rows("1,2,pos\n3,4,neg\n5,6,pos\n7,8,neg\n", HeaderMode::Auto), Ok(4));
        assert!(matches!(parse("1,NA,0\n2,3,1\n").unwrap_err(), FeatureError::NotNumeric { line: 1, column: 2, .. }));
        // A test file's first line naming the training file's features is its header.
        let train = parse("0,1,label\n0.5,0.2,1\n0.1,0.3,0\n").unwrap();
        let known = train.feature_names.as_deref();
        let test = |text| Features::parse_csv_with(text, &CsvOptions::default(), "test.csv", known).unwrap().rows();
        assert_eq!((test("0,1,label\n0.5,0.2,pos\n"), test("0,2,label\n0.5,0.2,pos\n")), (1, 2));
    }

    #[test]
    fn bad_input_names_line_and_column() {
        let e = parse("a,b,label\n1,2,0\n1,2\n").unwrap_err();
        assert_eq!(e.to_string(), "t.csv line 3: 2 fields, but the first line has 3");
        let e = parse("a,b,label\n1,2,0\n1,x,1\n").unwrap_err();
        assert_eq!(e.to_string(), "t.csv line 3, column 2 (\"b\"): \"x\" is not a finite number");
        let e = parse("1,2,0\n1,nan,1\n").unwrap_err();
        assert_eq!(e.to_string(), "t.csv line 2, column 2: \"nan\" is not a finite number");
        assert_eq!(parse("").unwrap_err(), FeatureError::Empty { source_name: "t.csv".into() });
        assert_eq!(parse("# only\n\n").unwrap_err(), FeatureError::Empty { source_name: "t.csv".into() });
        assert_eq!(parse("a,b,c\n").unwrap_err(), FeatureError::Empty { source_name: "t.csv".into() });
        assert!(matches!(parse("1,,0\n").unwrap_err(), FeatureError::NotNumeric { line: 1, column: 2, .. }));
        assert!(matches!(parse("1,2,\n").unwrap_err(), FeatureError::EmptyLabel { line: 1, column: 3, .. }));
        assert!(matches!(parse("label\n0\n").unwrap_err(), FeatureError::Columns { .. }));
        let opts = CsvOptions { label: Column::Name("nope".into()), ..CsvOptions::default() };
        let e = Features::parse_csv("a,b\n1,2\n", &opts, "t.csv").unwrap_err();
        assert!(e.to_string().contains("no column \"nope\" (label column)"), "{e}");
        assert!(e.to_string().contains("columns \"a\", \"b\" (0-based positions 0..1)"), "{e}");
        // A name the header gives twice could make a feature of the label.
        let opts = CsvOptions { label: Column::Name("y".into()), ..CsvOptions::default() };
        let e = Features::parse_csv("x,y,y\n1,a,2\n2,b,3\n", &opts, "t.csv").unwrap_err();
        assert!(e.to_string().contains("names two columns \"y\" (label column), at 0-based positions 1 and 2; give the position instead (@1 or @2)"), "{e}");
        let ids = CsvOptions { id: Some(Column::Name("name".into())), ..CsvOptions::default() };
        let e = Features::parse_csv("name,x,y\nann,1,0\nbob,2,1\nann,3,1\n", &ids, "t.csv").unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.csv line 4: id \"ann\" is already that of line 2; ids name the examples and must be unique"
        );
    }

    #[test]
    fn columns_parse_from_text() {
        let parse = |s: &str| s.parse::<Column>();
        assert_eq!(
            (parse("last"), parse("-1"), parse(" @2 ")),
            (Ok(Column::Last), Ok(Column::Last), Ok(Column::Index(2)))
        );
        assert_eq!((parse("3"), parse("y")), (Ok(Column::Name("3".into())), Ok(Column::Name("y".into()))));
        assert!(parse("@x").unwrap_err().contains("0-based column position"));
        assert!(parse("").is_err());
        let opts = CsvOptions { label: Column::Index(5), ..CsvOptions::default() };
        let e = Features::parse_csv("1,2,0\n", &opts, "t.csv").unwrap_err();
        assert!(e.to_string().contains("no column @5 (label column)"), "{e}");
    }

    #[test]
    fn standardizer_centres_and_scales() {
        let f = Features::from_labels(vec![1.0, 5.0, 3.0, 5.0], 2, &["a", "b"], None).unwrap();
        let s = Standardizer::fit(&f);
        assert_eq!(s.mean, vec![2.0, 5.0]);
        assert_eq!(s.scale, vec![1.0, 1.0]);
        assert_eq!(s.apply(&f).x, vec![-1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn direct_matrices_are_checked() {
        assert!(Features::new(vec![1.0; 5], 2, vec![0, 1], vec!["a".into(), "b".into()], vec!["x".into(); 2]).is_err());
        assert!(Features::new(vec![1.0; 4], 2, vec![0, 2], vec!["a".into(), "b".into()], vec!["x".into(); 2]).is_err());
        assert!(
            Features::new(vec![f64::NAN; 2], 1, vec![0, 1], vec!["a".into(), "b".into()], vec!["x".into(); 2]).is_err()
        );
    }
}
