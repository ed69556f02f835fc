//! The model file: a versioned JSON logistic model, validated once at load
//! into a [`Model`] whose scoring is a dot product and a sigmoid.
//!
//! Format (`format = "nudge-model/1"`), see README "Model file":
//! - `version`: free text shown in every decision (`model_version`);
//! - `input`: `"session"` (terms name features of the session feature table)
//!   or `"client"` (terms name keys of Decide's `features` map);
//! - `terms`: `{feature, transforms: [...], coef}`, transforms applied in
//!   order: `clip {lo, hi}`, `log1p`, `standardise {mean, std}`,
//!   `one_hot {value}` (1 when the value equals `value`, else 0);
//! - `intercept`, `segments {hot_at_or_above, cold_below}`;
//! - `training`: lineage and metrics (free-form for the service, kept so a
//!   model file explains itself);
//! - `uplift` (optional): the learned voucher response, see [`uplift`].
//!
//! Why validate at load: a request must never discover a NaN coefficient or
//! an unknown feature. After [`ModelFile::compile`] every term points at a
//! feature index or a client key and every number is finite.

use crate::domain::features::{self, Features};
use crate::domain::logistic::sigmoid;
use crate::domain::policy::SegmentThresholds;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub mod uplift;

use uplift::CompiledUplift;
pub use uplift::{
    monotone_in_amount, voucher_share, Covariance, LiftEstimates, UpliftArm, UpliftFile,
    DEFAULT_LOWER_BOUND_Z, MAX_COVARIANCE_DIM, VOUCHER_SHARE,
};

/// The one format tag this build reads.
pub const FORMAT: &str = "nudge-model/1";

/// How many top contributions a decision reports.
pub const TOP_SIGNALS: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// Terms name session features (computed from events).
    Session,
    /// Terms name keys of the request's `features` map.
    Client,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Transform {
    Clip { lo: f64, hi: f64 },
    Log1p,
    Standardise { mean: f64, std: f64 },
    OneHot { value: f64 },
}

impl Transform {
    fn apply(&self, x: f64) -> f64 {
        match *self {
            Transform::Clip { lo, hi } => x.clamp(lo, hi),
            // log1p is only defined above -1; inputs below it are clamped so a
            // stray client value cannot produce NaN.
            Transform::Log1p => x.max(0.0).ln_1p(),
            Transform::Standardise { mean, std } => (x - mean) / std,
            Transform::OneHot { value } => {
                if x == value {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Term {
    pub feature: String,
    /// Client models only: the term is the one-hot indicator
    /// `categorical_features[feature] == category` (then transforms apply to
    /// that 0/1 value). A value the model never saw matches no term of its
    /// feature, i.e. it scores as the reference level.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default)]
    pub transforms: Vec<Transform>,
    /// Uplift arms only: `Some("voucher_share")` multiplies the transformed
    /// value by the voucher's share of the intent value (an interaction of
    /// the feature with the voucher, see [`uplift`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<String>,
    pub coef: f64,
}

/// The on-disk model file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    pub format: String,
    pub version: String,
    pub input: Input,
    pub terms: Vec<Term>,
    pub intercept: f64,
    pub segments: SegmentThresholds,
    /// Lineage and metrics; not interpreted by the service.
    #[serde(default)]
    pub training: serde_json::Value,
    /// Learned voucher response (optional; without it the config priors
    /// are used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplift: Option<UpliftFile>,
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read model file {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("model file {path} is not valid JSON for {FORMAT}: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    #[error("model file has format {0:?}; this build reads {FORMAT:?}")]
    Format(String),
    #[error("model term {index}: unknown session feature {name:?}")]
    UnknownFeature { index: usize, name: String },
    #[error("model: {what} is not finite")]
    NotFinite { what: String },
    #[error("model: {0}")]
    Invalid(String),
}

/// Where a compiled term reads its raw value.
#[derive(Clone, Debug)]
enum Source {
    Session(usize),
    Client(String),
    Category {
        key: String,
        value: String,
    },
    /// Uplift arms only: the voucher's share of the intent value.
    VoucherShare,
}

/// Client-side features sent with a Decide (for `input = "client"` models).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientFeatures {
    /// Numeric features (`features` in the request), finite.
    pub numeric: HashMap<String, f64>,
    /// Categorical features (`categorical_features`), e.g. `Month = "Feb"`.
    pub categorical: HashMap<String, String>,
}

#[derive(Clone, Debug)]
struct CompiledTerm {
    name: String,
    source: Source,
    transforms: Vec<Transform>,
    /// Multiply the transformed value by the voucher share.
    times_share: bool,
    coef: f64,
}

/// A validated model, ready to score.
#[derive(Clone, Debug)]
pub struct Model {
    version: String,
    input: Input,
    terms: Vec<CompiledTerm>,
    intercept: f64,
    segments: SegmentThresholds,
    /// Client models: the numeric and categorical keys the model reads.
    numeric_keys: std::collections::BTreeSet<String>,
    categorical_keys: std::collections::BTreeSet<String>,
    uplift: CompiledUplift,
    /// Held-out quality figures the trainer recorded (for ops pages).
    quality: Vec<(String, String)>,
}

/// The held-out figures of a model file's `training.metrics.holdout`, as
/// labelled text (empty when the file has none).
fn quality_of(training: &serde_json::Value) -> Vec<(String, String)> {
    let h = &training["metrics"]["holdout"];
    let mut out = Vec::new();
    for (key, label, digits) in [
        ("roc_auc", "ROC AUC (held out)", 4),
        ("log_loss", "log loss (held out)", 4),
        ("brier", "Brier score (held out)", 4),
        ("sessions", "held-out sessions", 0),
    ] {
        if let Some(v) = h[key].as_f64() {
            out.push((label.to_owned(), format!("{v:.digits$}")));
        }
    }
    if let Some(d) = training["created_at"].as_str() {
        out.push(("trained".to_owned(), d.to_owned()));
    }
    out
}

/// Why a request could not be scored (caller mistakes only). `field` is the
/// request path, e.g. `features[PageValues]`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    #[error("{field}: required by model {model}")]
    Missing { field: String, model: String },
    #[error("{field}: not a feature of model {model} (it reads: {expected})")]
    Unknown {
        field: String,
        model: String,
        expected: String,
    },
    #[error("{field}: transformed value is not finite")]
    NotFinite { field: String },
}

impl ScoreError {
    /// The request field the error is about.
    pub fn field(&self) -> &str {
        match self {
            ScoreError::Missing { field, .. }
            | ScoreError::Unknown { field, .. }
            | ScoreError::NotFinite { field } => field,
        }
    }
}

/// One scored decision moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    pub probability: f64,
    pub logit: f64,
    /// `(term index, log-odds contribution)`, largest |contribution| first;
    /// unused entries have index `usize::MAX`.
    pub top: [(usize, f64); TOP_SIGNALS],
}

fn finite(what: impl FnOnce() -> String, v: f64) -> Result<(), ModelError> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(ModelError::NotFinite { what: what() })
    }
}

impl ModelFile {
    pub fn load(path: &std::path::Path) -> Result<ModelFile, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })?;
        ModelFile::parse(&text, &path.display().to_string())
    }

    /// Parses a model file's text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<ModelFile, ModelError> {
        serde_json::from_str(text).map_err(|source| ModelError::Parse {
            path: origin.to_owned(),
            source,
        })
    }

    /// Validates everything a request could trip on.
    pub fn compile(&self) -> Result<Model, ModelError> {
        if self.format != FORMAT {
            return Err(ModelError::Format(self.format.clone()));
        }
        if self.version.trim().is_empty() {
            return Err(ModelError::Invalid("version is empty".into()));
        }
        finite(|| "intercept".into(), self.intercept)?;
        let SegmentThresholds {
            hot_at_or_above,
            cold_below,
        } = self.segments;
        finite(|| "segments.hot_at_or_above".into(), hot_at_or_above)?;
        finite(|| "segments.cold_below".into(), cold_below)?;
        if !(0.0..=1.0).contains(&cold_below)
            || !(0.0..=1.0).contains(&hot_at_or_above)
            || cold_below > hot_at_or_above
        {
            return Err(ModelError::Invalid(format!(
                "segments need 0 <= cold_below ({cold_below}) <= hot_at_or_above ({hot_at_or_above}) <= 1"
            )));
        }
        let terms = compile_terms(self.input, &self.terms, "terms", false)?;
        let uplift = match &self.uplift {
            None => CompiledUplift::default(),
            Some(u) => u.compile(self.input)?,
        };
        let mut numeric_keys = std::collections::BTreeSet::new();
        let mut categorical_keys = std::collections::BTreeSet::new();
        for t in terms
            .iter()
            .chain(uplift.arms.iter().flat_map(|a| a.terms.iter()))
        {
            match &t.source {
                Source::Client(k) => {
                    numeric_keys.insert(k.clone());
                }
                Source::Category { key, .. } => {
                    categorical_keys.insert(key.clone());
                }
                Source::Session(_) | Source::VoucherShare => {}
            }
        }
        if let Some(k) = numeric_keys.intersection(&categorical_keys).next() {
            return Err(ModelError::Invalid(format!(
                "feature {k:?} is used both as numeric and as categorical"
            )));
        }
        Ok(Model {
            version: self.version.clone(),
            input: self.input,
            terms,
            intercept: self.intercept,
            segments: self.segments,
            numeric_keys,
            categorical_keys,
            uplift,
            quality: quality_of(&self.training),
        })
    }
}

/// Validates and resolves a list of terms (`prefix` names them in errors).
/// `uplift`: the terms of an uplift arm, which may read the pseudo-input
/// [`VOUCHER_SHARE`] and be multiplied by it (`times`).
fn compile_terms(
    input: Input,
    list: &[Term],
    prefix: &str,
    uplift: bool,
) -> Result<Vec<CompiledTerm>, ModelError> {
    let mut terms = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        finite(|| format!("{prefix}[{i}].coef"), t.coef)?;
        for (j, tr) in t.transforms.iter().enumerate() {
            let what = || format!("{prefix}[{i}].transforms[{j}]");
            match *tr {
                Transform::Clip { lo, hi } => {
                    finite(what, lo)?;
                    finite(what, hi)?;
                    if lo > hi {
                        return Err(ModelError::Invalid(format!(
                            "{prefix}[{i}].transforms[{j}]: clip lo > hi"
                        )));
                    }
                }
                Transform::Standardise { mean, std } => {
                    finite(what, mean)?;
                    finite(what, std)?;
                    if std <= 0.0 {
                        return Err(ModelError::Invalid(format!(
                            "{prefix}[{i}].transforms[{j}]: std must be > 0"
                        )));
                    }
                }
                Transform::OneHot { value } => finite(what, value)?,
                Transform::Log1p => {}
            }
        }
        if t.category.is_some() && input != Input::Client {
            return Err(ModelError::Invalid(format!(
                "{prefix}[{i}]: `category` needs input = \"client\""
            )));
        }
        let times_share = match t.times.as_deref() {
            None => false,
            Some(VOUCHER_SHARE) if uplift => true,
            Some(other) => {
                return Err(ModelError::Invalid(format!(
                    "{prefix}[{i}]: `times` {other:?} is not allowed here (only {VOUCHER_SHARE:?}, in uplift arms)"
                )))
            }
        };
        let pseudo = uplift && t.feature == VOUCHER_SHARE;
        if pseudo && (t.category.is_some() || times_share) {
            return Err(ModelError::Invalid(format!(
                "{prefix}[{i}]: {VOUCHER_SHARE:?} takes neither `category` nor `times`"
            )));
        }
        let source = match input {
            _ if pseudo => Source::VoucherShare,
            Input::Session => match features::index_of(&t.feature) {
                Some(idx) => Source::Session(idx),
                None => {
                    return Err(ModelError::UnknownFeature {
                        index: i,
                        name: t.feature.clone(),
                    })
                }
            },
            Input::Client => {
                if t.feature.is_empty() {
                    return Err(ModelError::Invalid(format!(
                        "{prefix}[{i}].feature is empty"
                    )));
                }
                match &t.category {
                    Some(value) => Source::Category {
                        key: t.feature.clone(),
                        value: value.clone(),
                    },
                    None => Source::Client(t.feature.clone()),
                }
            }
        };
        terms.push(CompiledTerm {
            name: match &t.category {
                Some(c) => format!("{}={c}", t.feature),
                None => t.feature.clone(),
            },
            source,
            transforms: t.transforms.clone(),
            times_share,
            coef: t.coef,
        });
    }
    Ok(terms)
}

/// Applies a term's transforms in order: the one definition shared by
/// serving and the trainer.
pub fn apply_transforms(transforms: &[Transform], x: f64) -> f64 {
    transforms.iter().fold(x, |x, t| t.apply(x))
}

impl CompiledTerm {
    /// The term's input value: its transforms applied to the raw value,
    /// times the voucher share when the term says so. `share` is the
    /// voucher's share of the intent value (uplift arms; 0 elsewhere).
    fn value(
        &self,
        session: &Features,
        client: &ClientFeatures,
        share: f64,
        model: &str,
    ) -> Result<f64, ScoreError> {
        let raw = raw_value(self, session, client, share, model)?;
        let v = apply_transforms(&self.transforms, raw);
        Ok(if self.times_share { v * share } else { v })
    }
}

fn raw_value(
    t: &CompiledTerm,
    session: &Features,
    client: &ClientFeatures,
    share: f64,
    model: &str,
) -> Result<f64, ScoreError> {
    Ok(match &t.source {
        Source::Session(idx) => session.0[*idx],
        Source::VoucherShare => share,
        Source::Client(key) => match client.numeric.get(key) {
            Some(v) => *v,
            None => {
                return Err(ScoreError::Missing {
                    field: format!("features[{key}]"),
                    model: model.to_owned(),
                })
            }
        },
        Source::Category { key, value } => match client.categorical.get(key) {
            Some(v) if v == value => 1.0,
            Some(_) => 0.0,
            None => {
                return Err(ScoreError::Missing {
                    field: format!("categorical_features[{key}]"),
                    model: model.to_owned(),
                })
            }
        },
    })
}

impl CompiledTerm {
    /// The request field this term reads (for errors).
    fn field(&self) -> String {
        match &self.source {
            Source::Session(_) | Source::VoucherShare => self.name.clone(),
            Source::Client(k) => format!("features[{k}]"),
            Source::Category { key, .. } => format!("categorical_features[{key}]"),
        }
    }
}

impl Model {
    pub fn load(path: &std::path::Path) -> Result<Model, ModelError> {
        ModelFile::load(path)?.compile()
    }

    /// Held-out quality figures from the model file, labelled.
    pub fn quality(&self) -> &[(String, String)] {
        &self.quality
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn input(&self) -> Input {
        self.input
    }

    pub fn segments(&self) -> SegmentThresholds {
        self.segments
    }

    /// Name of term `i` (for reporting [`Score::top`]).
    pub fn term_name(&self, i: usize) -> Option<&str> {
        self.terms.get(i).map(|t| t.name.as_str())
    }

    /// Numeric client feature keys the model reads (empty for session models).
    pub fn numeric_features(&self) -> impl Iterator<Item = &str> {
        self.numeric_keys.iter().map(String::as_str)
    }

    /// Categorical client feature keys the model reads.
    pub fn categorical_features(&self) -> impl Iterator<Item = &str> {
        self.categorical_keys.iter().map(String::as_str)
    }

    /// For client models: every key the request sends must be one the model
    /// reads (a typo or a model/client mismatch is an error, not a silently
    /// ignored value), and every key the model reads must be sent. Session
    /// models ignore client features.
    pub fn check_client(&self, client: &ClientFeatures) -> Result<(), ScoreError> {
        if self.input == Input::Session {
            return Ok(());
        }
        let expected = || {
            let mut v: Vec<String> = self.numeric_keys.iter().cloned().collect();
            v.extend(
                self.categorical_keys
                    .iter()
                    .map(|k| format!("{k} (categorical)")),
            );
            v.join(", ")
        };
        let unknown =
            |sent: Vec<&String>, known: &std::collections::BTreeSet<String>, map: &str| {
                let mut sent = sent;
                sent.sort();
                match sent.into_iter().find(|k| !known.contains(*k)) {
                    Some(k) => Err(ScoreError::Unknown {
                        field: format!("{map}[{k}]"),
                        model: self.version.clone(),
                        expected: expected(),
                    }),
                    None => Ok(()),
                }
            };
        unknown(
            client.numeric.keys().collect(),
            &self.numeric_keys,
            "features",
        )?;
        unknown(
            client.categorical.keys().collect(),
            &self.categorical_keys,
            "categorical_features",
        )?;
        let missing = |known: &std::collections::BTreeSet<String>,
                       has: &dyn Fn(&String) -> bool,
                       map: &str| {
            match known.iter().find(|k| !has(k)) {
                Some(k) => Err(ScoreError::Missing {
                    field: format!("{map}[{k}]"),
                    model: self.version.clone(),
                }),
                None => Ok(()),
            }
        };
        missing(
            &self.numeric_keys,
            &|k| client.numeric.contains_key(k),
            "features",
        )?;
        missing(
            &self.categorical_keys,
            &|k| client.categorical.contains_key(k),
            "categorical_features",
        )?;
        Ok(())
    }

    /// Scores one decision moment: a dot product over the terms and a
    /// sigmoid. Allocation-free.
    pub fn score(&self, session: &Features, client: &ClientFeatures) -> Result<Score, ScoreError> {
        let mut z = self.intercept;
        let mut top = [(usize::MAX, 0.0f64); TOP_SIGNALS];
        for (i, t) in self.terms.iter().enumerate() {
            let c = t.coef * t.value(session, client, 0.0, &self.version)?;
            if !c.is_finite() {
                return Err(ScoreError::NotFinite { field: t.field() });
            }
            z += c;
            // Keep the TOP_SIGNALS largest |c| in a tiny insertion-sorted array.
            if top[TOP_SIGNALS - 1].0 == usize::MAX || c.abs() > top[TOP_SIGNALS - 1].1.abs() {
                let mut k = TOP_SIGNALS - 1;
                top[k] = (i, c);
                while k > 0 && (top[k - 1].0 == usize::MAX || top[k].1.abs() > top[k - 1].1.abs()) {
                    top.swap(k, k - 1);
                    k -= 1;
                }
            }
        }
        Ok(Score {
            probability: sigmoid(z),
            logit: z,
            top,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::features::{compute, F};
    use crate::domain::session::SessionState;

    fn file(terms: Vec<Term>) -> ModelFile {
        ModelFile {
            format: FORMAT.into(),
            version: "t1".into(),
            input: Input::Session,
            terms,
            intercept: -1.0,
            segments: SegmentThresholds {
                hot_at_or_above: 0.6,
                cold_below: 0.1,
            },
            training: serde_json::Value::Null,
            uplift: None,
        }
    }

    fn term(name: &str, coef: f64) -> Term {
        Term {
            feature: name.into(),
            category: None,
            transforms: vec![Transform::Log1p],
            times: None,
            coef,
        }
    }

    #[test]
    fn rejects_unknown_feature_nan_and_bad_thresholds() {
        assert!(matches!(
            file(vec![term("nope", 1.0)]).compile(),
            Err(ModelError::UnknownFeature { .. })
        ));
        assert!(matches!(
            file(vec![term("page_views", f64::NAN)]).compile(),
            Err(ModelError::NotFinite { .. })
        ));
        let mut f = file(vec![]);
        f.segments.cold_below = 0.9;
        assert!(f.compile().is_err());
        let mut f = file(vec![Term {
            feature: "page_views".into(),
            category: None,
            transforms: vec![Transform::Standardise {
                mean: 0.0,
                std: 0.0,
            }],
            times: None,
            coef: 1.0,
        }]);
        assert!(f.compile().is_err());
        f.format = "other/9".into();
        assert!(matches!(f.compile(), Err(ModelError::Format(_))));
    }

    #[test]
    fn score_is_dot_product_and_sigmoid_with_top_contributions() {
        let m = file(vec![
            term("page_views", 0.1),
            term("cart_items", 2.0),
            term("exit_intent", -0.5),
            term("searches", 0.01),
        ])
        .compile()
        .unwrap();
        let mut s = SessionState::default();
        s.page_views[0] = 3;
        s.cart_items = 1;
        s.signals[1] = 1;
        s.searches = 1;
        let f = compute(&s, 0);
        let sc = m.score(&f, &ClientFeatures::default()).unwrap();
        let z = -1.0 + 0.1 * f.get(F::page_views).ln_1p() + 2.0 * 1f64.ln_1p() - 0.5 * 1f64.ln_1p()
            + 0.01 * 1f64.ln_1p();
        assert!((sc.logit - z).abs() < 1e-12);
        assert!((sc.probability - sigmoid(z)).abs() < 1e-12);
        assert_eq!(sc.top.map(|t| t.0), [1, 2, 0], "ordered by |contribution|");
    }

    #[test]
    fn client_model_needs_its_features_and_rejects_others() {
        let mut f = file(vec![
            term("PageValues", 1.0),
            Term {
                feature: "Month".into(),
                category: Some("Nov".into()),
                transforms: vec![],
                times: None,
                coef: 0.5,
            },
        ]);
        f.input = Input::Client;
        let m = f.compile().unwrap();
        let feats = compute(&SessionState::default(), 0);
        let mut c = ClientFeatures::default();
        let missing = m.check_client(&c).unwrap_err();
        assert_eq!(missing.field(), "features[PageValues]");
        c.numeric.insert("PageValues".into(), 3.0);
        assert_eq!(
            m.check_client(&c).unwrap_err().field(),
            "categorical_features[Month]"
        );
        c.categorical.insert("Month".into(), "Nov".into());
        m.check_client(&c).unwrap();
        let nov = m.score(&feats, &c).unwrap();
        assert!((nov.logit - (-1.0 + 3f64.ln_1p() + 0.5)).abs() < 1e-12);
        // An unseen category scores as the reference level.
        c.categorical.insert("Month".into(), "Smarch".into());
        let unseen = m.score(&feats, &c).unwrap();
        assert!((unseen.logit - (-1.0 + 3f64.ln_1p())).abs() < 1e-12);
        // A key the model does not read is a mismatch, named.
        c.numeric.insert("PageValue".into(), 1.0);
        let e = m.check_client(&c).unwrap_err();
        assert_eq!(e.field(), "features[PageValue]");
        assert!(e.to_string().contains("PageValues"), "{e}");
    }

    #[test]
    fn category_terms_need_a_client_model() {
        let f = file(vec![Term {
            feature: "page_views".into(),
            category: Some("x".into()),
            transforms: vec![],
            times: None,
            coef: 1.0,
        }]);
        assert!(f.compile().is_err());
    }
}
