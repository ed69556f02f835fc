//! Uplift on a CSV experiment (e.g. Hillstrom) read through an uplift spec,
//! so the learners can be checked on public data against scikit-uplift.

use super::alpha::{choose_alpha, AlphaCv};
use super::arms::{fit_with_learner, split, ArmRows};
use super::evaluation::{evaluate, logits, Evaluation};
use super::options::{check_opts, UpliftOptions};
use crate::spec::{self, Spec, Table, Values};
use crate::tabular::Encoder;
use anyhow::{bail, Context as _, Result};
use nudge::domain::logistic::sigmoid;
use nudge::domain::model::Term;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Format tag of an uplift spec.
pub const UPLIFT_SPEC_FORMAT: &str = "nudge-uplift-spec/1";

/// The `[experiment]` table of an uplift spec.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// Column holding the assigned arm.
    pub treatment: String,
    /// Its value for the control arm.
    pub control: String,
    /// Its values for the treatment arms (every other value is an error).
    pub treatments: Vec<String>,
    /// Binary outcome columns; the first is the default `--outcome`.
    pub outcomes: Vec<String>,
    #[serde(default = "default_positive")]
    pub positive: Vec<String>,
    #[serde(default = "default_negative")]
    pub negative: Vec<String>,
}

fn default_positive() -> Vec<String> {
    vec!["1".into()]
}

fn default_negative() -> Vec<String> {
    vec!["0".into()]
}

/// An uplift spec: `format = "nudge-uplift-spec/1"`, an `[experiment]`
/// table and `[columns.*]` exactly as in a `nudge-spec/1` feature spec.
#[derive(Clone, Debug)]
pub struct UpliftSpec {
    pub experiment: ExperimentSpec,
    /// The rest of the file (`[columns]`), checked by [`Spec::parse`].
    columns: toml::Table,
}

impl UpliftSpec {
    pub fn parse(text: &str, origin: &str) -> Result<UpliftSpec> {
        let mut t: toml::Table = toml::from_str(text)
            .with_context(|| format!("uplift spec {origin} is not valid TOML"))?;
        let format = t.remove("format");
        if format.as_ref().and_then(|v| v.as_str()) != Some(UPLIFT_SPEC_FORMAT) {
            bail!(
                "uplift spec {origin}: format {format:?}, this build reads {UPLIFT_SPEC_FORMAT:?}"
            );
        }
        let experiment: ExperimentSpec = t
            .remove("experiment")
            .with_context(|| format!("uplift spec {origin}: missing [experiment]"))?
            .try_into()
            .with_context(|| format!("uplift spec {origin}: [experiment]"))?;
        let columns = match t.remove("columns") {
            Some(toml::Value::Table(c)) => c,
            _ => bail!("uplift spec {origin}: missing [columns]"),
        };
        if let Some(k) = t.keys().next() {
            bail!("uplift spec {origin}: unknown key {k:?}");
        }
        let e = &experiment;
        if e.treatments.is_empty() || e.outcomes.is_empty() {
            bail!("uplift spec {origin}: experiment.treatments and experiment.outcomes must not be empty");
        }
        if e.treatments.contains(&e.control) {
            bail!(
                "uplift spec {origin}: {:?} is both control and treatment",
                e.control
            );
        }
        for c in std::iter::once(&e.treatment).chain(&e.outcomes) {
            if columns.contains_key(c) {
                bail!("uplift spec {origin}: column {c:?} is the treatment or an outcome; it must not be listed in [columns]");
            }
        }
        let s = UpliftSpec {
            experiment,
            columns,
        };
        // Validate the columns once through the feature-spec parser.
        s.feature_spec(&s.experiment.outcomes[0], origin)?;
        Ok(s)
    }

    pub fn load(path: &Path) -> Result<(UpliftSpec, Vec<u8>)> {
        let bytes =
            std::fs::read(path).with_context(|| format!("read uplift spec {}", path.display()))?;
        let text = std::str::from_utf8(&bytes)
            .with_context(|| format!("uplift spec {} is not UTF-8", path.display()))?;
        Ok((UpliftSpec::parse(text, &path.display().to_string())?, bytes))
    }

    /// The `nudge-spec/1` feature spec reading `outcome` as the label, the
    /// treatment column as a categorical and the other outcomes as ignored.
    pub fn feature_spec(&self, outcome: &str, origin: &str) -> Result<Spec> {
        let e = &self.experiment;
        if !e.outcomes.iter().any(|o| o == outcome) {
            bail!(
                "outcome {outcome:?} is not one of the spec's outcomes {:?}",
                e.outcomes
            );
        }
        let mut columns = self.columns.clone();
        let mut kind = |name: &str, k: &str| {
            let mut c = toml::Table::new();
            c.insert("kind".into(), toml::Value::String(k.into()));
            columns.insert(name.into(), toml::Value::Table(c));
        };
        kind(&e.treatment, "categorical");
        for o in e.outcomes.iter().filter(|o| *o != outcome) {
            kind(o, "ignore");
        }
        let mut label = toml::Table::new();
        label.insert("column".into(), outcome.into());
        label.insert("positive".into(), e.positive.clone().into());
        label.insert("negative".into(), e.negative.clone().into());
        let mut t = toml::Table::new();
        t.insert("format".into(), spec::SPEC_FORMAT.into());
        t.insert("label".into(), toml::Value::Table(label));
        t.insert("columns".into(), toml::Value::Table(columns));
        Spec::parse(&t.to_string(), origin)
    }
}

/// A CSV experiment: the feature table (without the treatment column) and
/// the arm of every row (0 = control, `i` = `treatments[i - 1]`).
#[derive(Clone, Debug)]
pub struct CsvExperiment {
    pub table: Table,
    pub arm: Vec<usize>,
    pub names: Vec<String>,
    pub outcome: String,
}

/// Reads CSV bytes through an uplift spec for `outcome`.
pub fn read_experiment(bytes: &[u8], s: &UpliftSpec, outcome: &str) -> Result<CsvExperiment> {
    let fs = s.feature_spec(outcome, "uplift spec")?;
    let mut table = spec::read_csv(bytes, &fs, true)?;
    let e = &s.experiment;
    let pos = table
        .columns
        .iter()
        .position(|c| c.name == e.treatment)
        .context("treatment column missing after reading")?;
    let col = table.columns.remove(pos);
    let Values::Categorical(values) = col.values else {
        bail!("treatment column {:?} is not categorical", e.treatment);
    };
    let names: Vec<String> = std::iter::once(e.control.clone())
        .chain(e.treatments.iter().cloned())
        .collect();
    let arm = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            names.iter().position(|n| n == v).with_context(|| {
                format!(
                    "CSV line {}, column {:?}: {v:?} is neither the control {:?} nor a treatment {:?}",
                    table.lines[i], e.treatment, e.control, e.treatments
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CsvExperiment {
        table,
        arm,
        names,
        outcome: outcome.to_owned(),
    })
}

/// Result of a CSV uplift fit.
#[derive(Clone, Debug)]
pub struct CsvUplift {
    pub evaluation: Evaluation,
    /// Per arm: intercept and terms (client-feature names, as served).
    pub arms: Vec<(String, f64, Vec<Term>)>,
    pub held: Vec<bool>,
    /// Per row, per arm: `p_a(x)`.
    pub p: Vec<Vec<f64>>,
    pub dropped_columns: Vec<String>,
    /// The penalty of the fit (chosen by CV when a grid was given).
    pub alpha: f64,
    pub alpha_cv: Vec<AlphaCv>,
}

/// Fits and evaluates a CSV experiment.
pub fn fit_csv(e: &CsvExperiment, opts: &UpliftOptions) -> Result<CsvUplift> {
    check_opts(opts)?;
    let y = &e.table.y;
    let held = split(&e.arm, y, opts.holdout, opts.seed);
    let train: Vec<usize> = (0..y.len()).filter(|&i| !held[i]).collect();
    let held_rows: Vec<usize> = (0..y.len()).filter(|&i| held[i]).collect();
    let enc = Encoder::learn(&e.table, &train);
    if enc.features.is_empty() {
        bail!("no usable feature: every column is constant or ignored");
    }
    let all: Vec<usize> = (0..y.len()).collect();
    let x = enc.design(&e.table, &all);
    let arm_rows = ArmRows::new(&x, &e.arm, y, &e.names);
    let (chosen, alpha_cv) = choose_alpha(&arm_rows, &train, opts)?;
    let opts = &chosen;
    let fits = fit_with_learner(&arm_rows, &train, opts)?;
    let evaluation = evaluate(&arm_rows, &held_rows, &fits, None);
    let p = logits(&arm_rows, &fits, &all)
        .into_iter()
        .map(|z| z.into_iter().map(sigmoid).collect())
        .collect();
    let arms = fits
        .iter()
        .map(|f| {
            (
                f.name.clone(),
                f.model.intercept,
                enc.terms(&e.table.columns, &f.model.coefs),
            )
        })
        .collect();
    Ok(CsvUplift {
        evaluation,
        arms,
        held,
        p,
        dropped_columns: enc.dropped,
        alpha: opts.alpha,
        alpha_cv,
    })
}
