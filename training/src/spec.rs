//! CSV input: a feature spec (TOML) that maps the columns of a CSV file to
//! model features, and the strict CSV reader that applies it.
//!
//! # Spec format (`nudge-spec/1`)
//!
//! ```toml
//! format = "nudge-spec/1"
//!
//! [label]
//! column = "Revenue"
//! positive = ["TRUE", "true", "1"]    # values meaning "converted"
//! negative = ["FALSE", "false", "0"]  # values meaning "not converted"
//!
//! [columns.PageValues]
//! kind = "numeric"
//! transforms = ["log1p", "standardise"]
//!
//! [columns.ExitRates]
//! kind = "numeric"
//! transforms = [{ clip_quantile = { lo = 0.0, hi = 0.999 } }, "standardise"]
//!
//! [columns.Weekend]
//! kind = "boolean"                    # TRUE/FALSE/true/false/True/False/1/0
//!
//! [columns.Month]
//! kind = "categorical"                # one-hot, one term per level
//! min_count = 1                       # optional: fold rarer levels
//!
//! [columns.Notes]
//! kind = "ignore"
//! ```
//!
//! - Every CSV column must appear in the spec (the label under `[label]`,
//!   the others under `[columns]`, `kind = "ignore"` to skip one), and
//!   every spec column must exist in the CSV: a typo is an error naming the
//!   column, never a silently dropped feature. Unknown keys are errors.
//! - `numeric`: the cell must parse as a finite number (`NaN`, `inf` and
//!   empty cells are errors naming the line and column). `transforms` are
//!   applied in order; their parameters are learned on the training rows
//!   only: `log1p` (`ln(1 + max(x, 0))`, as the service does), `standardise`
//!   (mean and population standard deviation), `clip = { lo, hi }` (fixed
//!   bounds), `clip_quantile = { lo, hi }` (bounds at those training
//!   quantiles). A column that is constant on the training rows after its
//!   transforms is dropped (and listed in the lineage).
//! - `boolean`: `TRUE`/`True`/`true`/`1` -> 1, `FALSE`/`False`/`false`/`0`
//!   -> 0, anything else is an error. Served as a numeric feature 0/1 in
//!   Decide's `features` map. `transforms` are allowed as for numeric
//!   columns (default none: the raw 0/1).
//! - `categorical`: the cell is a string (integer codes such as `Browser =
//!   2` are strings too). One-hot: one model term per level seen in the
//!   training rows at least `min_count` times (default 1), with the
//!   indicator unstandardised. **Unseen categories**: a level the model has
//!   no term for (never seen, or folded because it was rarer than
//!   `min_count`) scores as the reference level, all indicators 0 -- which
//!   is exactly what the service does for a `categorical_features` value it
//!   does not know, so training and serving agree. Served through Decide's
//!   `categorical_features` map.
//! - `ignore`: read and ignored (the cell is not parsed).
//! - The label cell must be one of `positive` or `negative` (exact match
//!   after trimming); both classes must occur.
//!
//! Cells are trimmed of surrounding whitespace. Line numbers in errors are
//! 1-based lines of the file (the header is line 1).

use anyhow::{bail, Context as _, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The one spec format tag this build reads.
pub const SPEC_FORMAT: &str = "nudge-spec/1";

/// A feature spec (see the module docs).
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub format: String,
    pub label: LabelSpec,
    pub columns: BTreeMap<String, ColumnSpec>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelSpec {
    pub column: String,
    pub positive: Vec<String>,
    pub negative: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum ColumnSpec {
    Numeric {
        #[serde(default)]
        transforms: Vec<TransformSpec>,
    },
    Boolean {
        #[serde(default)]
        transforms: Vec<TransformSpec>,
    },
    Categorical {
        #[serde(default = "one")]
        min_count: usize,
    },
    /// Read and ignored (written `kind = "ignore"`).
    Ignore {},
}

fn one() -> usize {
    1
}

/// A transform step of a numeric or boolean column; parameters are learned
/// on the training rows.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum TransformSpec {
    Log1p,
    Standardise,
    Clip { lo: f64, hi: f64 },
    ClipQuantile { lo: f64, hi: f64 },
}

impl Spec {
    /// Parses and checks a spec (TOML text). `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Spec> {
        let spec: Spec =
            toml::from_str(text).with_context(|| format!("spec {origin} is not valid"))?;
        if spec.format != SPEC_FORMAT {
            bail!(
                "spec {origin}: format {:?}, this build reads {SPEC_FORMAT:?}",
                spec.format
            );
        }
        if spec.label.positive.is_empty() || spec.label.negative.is_empty() {
            bail!("spec {origin}: label.positive and label.negative must not be empty");
        }
        if let Some(v) = spec
            .label
            .positive
            .iter()
            .find(|v| spec.label.negative.contains(v))
        {
            bail!("spec {origin}: label value {v:?} is both positive and negative");
        }
        if spec.columns.contains_key(&spec.label.column) {
            bail!(
                "spec {origin}: column {:?} is the label; it must not be listed in [columns]",
                spec.label.column
            );
        }
        for (name, c) in &spec.columns {
            match c {
                ColumnSpec::Numeric { transforms } | ColumnSpec::Boolean { transforms } => {
                    for t in transforms {
                        match *t {
                            TransformSpec::Clip { lo, hi }
                                if !(lo.is_finite() && hi.is_finite() && lo <= hi) =>
                            {
                                bail!("spec {origin}: column {name:?}: clip needs finite lo <= hi");
                            }
                            TransformSpec::ClipQuantile { lo, hi }
                                if !(0.0 <= lo && lo <= hi && hi <= 1.0) =>
                            {
                                bail!("spec {origin}: column {name:?}: clip_quantile needs 0 <= lo <= hi <= 1");
                            }
                            _ => {}
                        }
                    }
                }
                ColumnSpec::Categorical { min_count } => {
                    if *min_count == 0 {
                        bail!("spec {origin}: column {name:?}: min_count must be >= 1");
                    }
                }
                ColumnSpec::Ignore {} => {}
            }
        }
        Ok(spec)
    }

    pub fn load(path: &Path) -> Result<(Spec, Vec<u8>)> {
        let bytes = std::fs::read(path).with_context(|| format!("read spec {}", path.display()))?;
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("spec {} is not UTF-8", path.display()))?;
        Ok((Spec::parse(text, &path.display().to_string())?, bytes))
    }
}

/// The values of one used column.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    /// Numeric or boolean (0/1) values.
    Numeric(Vec<f64>),
    Categorical(Vec<String>),
}

/// One column kept for modelling.
#[derive(Clone, Debug, PartialEq)]
pub struct Column {
    pub name: String,
    pub spec: ColumnSpec,
    pub values: Values,
}

/// A CSV file read through a spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// Used columns (not `ignore`), in CSV order.
    pub columns: Vec<Column>,
    pub y: Vec<bool>,
    /// 1-based file line of each row.
    pub lines: Vec<u64>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.y.len()
    }

    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The client features of row `i` as Decide would carry them.
    pub fn client_features(&self, i: usize) -> nudge::domain::model::ClientFeatures {
        let mut c = nudge::domain::model::ClientFeatures::default();
        for col in &self.columns {
            match &col.values {
                Values::Numeric(v) => {
                    c.numeric.insert(col.name.clone(), v[i]);
                }
                Values::Categorical(v) => {
                    c.categorical.insert(col.name.clone(), v[i].clone());
                }
            }
        }
        c
    }
}

/// Parses a boolean cell.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "TRUE" | "True" | "true" | "1" => Some(true),
        "FALSE" | "False" | "false" | "0" => Some(false),
        _ => None,
    }
}

/// Reads CSV bytes through `spec`. Errors name the line and the column.
/// `require_both_classes`: fail when the label has a single class (for
/// fitting; scoring a one-class file is allowed).
pub fn read_csv(bytes: &[u8], spec: &Spec, require_both_classes: bool) -> Result<Table> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(bytes);
    let header: Vec<String> = rdr
        .headers()
        .context("CSV header (line 1)")?
        .iter()
        .map(str::to_owned)
        .collect();
    let mut seen = std::collections::HashSet::new();
    for h in &header {
        if !seen.insert(h) {
            bail!("CSV header (line 1): column {h:?} appears twice");
        }
    }
    for name in spec.columns.keys() {
        if !header.contains(name) {
            bail!("spec column {name:?} is not a column of the CSV (header: {header:?})");
        }
    }
    let label_idx = header
        .iter()
        .position(|h| *h == spec.label.column)
        .with_context(|| {
            format!(
                "spec label column {:?} is not a column of the CSV (header: {header:?})",
                spec.label.column
            )
        })?;
    for h in &header {
        if *h != spec.label.column && !spec.columns.contains_key(h) {
            bail!("CSV column {h:?} is not in the spec (add `[columns.{h}] kind = \"ignore\"` to skip it)");
        }
    }
    let mut used: Vec<(usize, Column)> = header
        .iter()
        .enumerate()
        .filter_map(|(i, h)| {
            let spec = spec.columns.get(h)?.clone();
            let values = match spec {
                ColumnSpec::Ignore {} => return None,
                ColumnSpec::Categorical { .. } => Values::Categorical(Vec::new()),
                _ => Values::Numeric(Vec::new()),
            };
            Some((
                i,
                Column {
                    name: h.clone(),
                    spec,
                    values,
                },
            ))
        })
        .collect();
    let mut y = Vec::new();
    let mut lines = Vec::new();
    let mut record = csv::StringRecord::new();
    loop {
        let more = rdr.read_record(&mut record).map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            anyhow::anyhow!("CSV line {line}: {e}")
        })?;
        if !more {
            break;
        }
        let line = record.position().map(|p| p.line()).unwrap_or(0);
        if record.len() != header.len() {
            bail!(
                "CSV line {line}: {} fields, the header has {}",
                record.len(),
                header.len()
            );
        }
        let label = &record[label_idx];
        let yi = if spec.label.positive.iter().any(|v| v == label) {
            true
        } else if spec.label.negative.iter().any(|v| v == label) {
            false
        } else {
            bail!(
                "CSV line {line}, column {:?}: label {label:?} is neither positive {:?} nor negative {:?}",
                spec.label.column,
                spec.label.positive,
                spec.label.negative
            );
        };
        for (i, col) in used.iter_mut() {
            let cell = &record[*i];
            match (&col.spec, &mut col.values) {
                (ColumnSpec::Numeric { .. }, Values::Numeric(v)) => {
                    let x: f64 = cell.parse().map_err(|_| {
                        anyhow::anyhow!(
                            "CSV line {line}, column {:?}: {cell:?} is not a number",
                            col.name
                        )
                    })?;
                    if !x.is_finite() {
                        bail!(
                            "CSV line {line}, column {:?}: {cell:?} is not a finite number",
                            col.name
                        );
                    }
                    v.push(x);
                }
                (ColumnSpec::Boolean { .. }, Values::Numeric(v)) => {
                    let b = parse_bool(cell).with_context(|| {
                        format!(
                            "CSV line {line}, column {:?}: {cell:?} is not a boolean (TRUE/FALSE/true/false/1/0)",
                            col.name
                        )
                    })?;
                    v.push(if b { 1.0 } else { 0.0 });
                }
                (ColumnSpec::Categorical { .. }, Values::Categorical(v)) => {
                    if cell.is_empty() {
                        bail!("CSV line {line}, column {:?}: empty category", col.name);
                    }
                    v.push(cell.to_owned());
                }
                _ => unreachable!("values match the column kind"),
            }
        }
        y.push(yi);
        lines.push(line);
    }
    if y.is_empty() {
        bail!("CSV has no data rows");
    }
    if require_both_classes && (y.iter().all(|v| *v) || !y.iter().any(|v| *v)) {
        bail!(
            "label column {:?} has a single class ({} rows, all {}): cannot fit",
            spec.label.column,
            y.len(),
            if y[0] { "positive" } else { "negative" }
        );
    }
    Ok(Table {
        columns: used.into_iter().map(|(_, c)| c).collect(),
        y,
        lines,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
format = "nudge-spec/1"
[label]
column = "y"
positive = ["TRUE", "1"]
negative = ["FALSE", "0"]
[columns.a]
kind = "numeric"
transforms = ["log1p", { clip = { lo = 0, hi = 5 } }, { clip_quantile = { lo = 0.0, hi = 0.99 } }, "standardise"]
[columns.b]
kind = "boolean"
[columns.c]
kind = "categorical"
[columns.d]
kind = "ignore"
"#;

    fn spec() -> Spec {
        Spec::parse(SPEC, "test").unwrap()
    }

    fn err(csv: &str) -> String {
        format!("{:#}", read_csv(csv.as_bytes(), &spec(), true).unwrap_err())
    }

    #[test]
    fn reads_all_kinds() {
        let t = read_csv(
            b"a,b,c,d,y\n1.5,TRUE,x,zz,1\n2, false ,7,,FALSE\n",
            &spec(),
            true,
        )
        .unwrap();
        assert_eq!(t.y, vec![true, false]);
        assert_eq!(t.lines, vec![2, 3]);
        assert_eq!(t.columns.len(), 3);
        assert_eq!(t.columns[0].values, Values::Numeric(vec![1.5, 2.0]));
        assert_eq!(t.columns[1].values, Values::Numeric(vec![1.0, 0.0]));
        assert_eq!(
            t.columns[2].values,
            Values::Categorical(vec!["x".into(), "7".into()])
        );
        let c = t.client_features(1);
        assert_eq!(c.numeric["b"], 0.0);
        assert_eq!(c.categorical["c"], "7");
    }

    #[test]
    fn malformed_rows_name_the_line_and_column() {
        let e = err("a,b,c,d,y\n1,TRUE,x,z,1\n1,TRUE,x,1\n");
        assert!(e.contains("line 3") && e.contains("4 fields"), "{e}");
        let e = err("a,b,c,d,y\n1,TRUE,x,z,1\nabc,TRUE,x,z,0\n");
        assert!(
            e.contains("line 3") && e.contains("\"a\"") && e.contains("not a number"),
            "{e}"
        );
        let e = err("a,b,c,d,y\n1,TRUE,x,z,1\nNaN,TRUE,x,z,0\n");
        assert!(
            e.contains("line 3") && e.contains("not a finite number"),
            "{e}"
        );
        let e = err("a,b,c,d,y\n1,yes,x,z,1\n");
        assert!(
            e.contains("line 2") && e.contains("\"b\"") && e.contains("boolean"),
            "{e}"
        );
        let e = err("a,b,c,d,y\n1,TRUE,x,z,maybe\n");
        assert!(e.contains("line 2") && e.contains("\"y\""), "{e}");
        let e = err("a,b,c,d,y\n1,TRUE,x,z,1\n2,TRUE,x,z,TRUE\n");
        assert!(e.contains("single class"), "{e}");
        let e = err("a,b,c,y\n1,TRUE,x,1\n");
        assert!(e.contains("spec column \"d\""), "{e}");
        let e = err("a,b,c,d,e,y\n1,TRUE,x,z,1,1\n");
        assert!(e.contains("CSV column \"e\""), "{e}");
        let e = err("a,b,c,d,y\n");
        assert!(e.contains("no data rows"), "{e}");
    }

    #[test]
    fn spec_errors() {
        let bad = SPEC.replace("kind = \"ignore\"", "kind = \"ignore\"\nextra = 1");
        assert!(Spec::parse(&bad, "t").is_err());
        let bad = SPEC.replace("\"log1p\",", "\"sqrt\",");
        assert!(Spec::parse(&bad, "t").is_err());
        let bad = SPEC.replace("nudge-spec/1", "nudge-spec/9");
        assert!(format!("{:#}", Spec::parse(&bad, "t").unwrap_err()).contains("format"));
        let bad = SPEC.replace("hi = 5", "hi = -5");
        assert!(Spec::parse(&bad, "t").is_err());
        let bad = SPEC.replace("[columns.d]", "[columns.y]");
        assert!(Spec::parse(&bad, "t").is_err());
    }

    #[test]
    fn booleans() {
        for (s, v) in [
            ("TRUE", true),
            ("true", true),
            ("1", true),
            ("False", false),
            ("0", false),
        ] {
            assert_eq!(parse_bool(s), Some(v));
        }
        assert_eq!(parse_bool("yes"), None);
    }
}
