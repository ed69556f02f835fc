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
//!   model file explains itself).
//!
//! Why validate at load: a request must never discover a NaN coefficient or
//! an unknown feature. After [`ModelFile::compile`] every term points at a
//! feature index or a client key and every number is finite.

use crate::features::{self, Features};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

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
    #[serde(default)]
    pub transforms: Vec<Transform>,
    pub coef: f64,
}

/// Probability cut-offs for the segments: hot at or above `hot_at_or_above`,
/// cold below `cold_below`, hesitant in between.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentThresholds {
    pub hot_at_or_above: f64,
    pub cold_below: f64,
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
}

#[derive(Clone, Debug)]
struct CompiledTerm {
    name: String,
    source: Source,
    transforms: Vec<Transform>,
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
}

/// Why a request could not be scored (caller mistakes only).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    #[error("features[{0}]: required by model")]
    MissingFeature(String),
    #[error("features[{0}]: transformed value is not finite")]
    NotFinite(String),
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
        serde_json::from_str(&text).map_err(|source| ModelError::Parse {
            path: path.display().to_string(),
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
        let mut terms = Vec::with_capacity(self.terms.len());
        for (i, t) in self.terms.iter().enumerate() {
            finite(|| format!("terms[{i}].coef"), t.coef)?;
            for (j, tr) in t.transforms.iter().enumerate() {
                let what = || format!("terms[{i}].transforms[{j}]");
                match *tr {
                    Transform::Clip { lo, hi } => {
                        finite(what, lo)?;
                        finite(what, hi)?;
                        if lo > hi {
                            return Err(ModelError::Invalid(format!(
                                "terms[{i}].transforms[{j}]: clip lo > hi"
                            )));
                        }
                    }
                    Transform::Standardise { mean, std } => {
                        finite(what, mean)?;
                        finite(what, std)?;
                        if std <= 0.0 {
                            return Err(ModelError::Invalid(format!(
                                "terms[{i}].transforms[{j}]: std must be > 0"
                            )));
                        }
                    }
                    Transform::OneHot { value } => finite(what, value)?,
                    Transform::Log1p => {}
                }
            }
            let source = match self.input {
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
                        return Err(ModelError::Invalid(format!("terms[{i}].feature is empty")));
                    }
                    Source::Client(t.feature.clone())
                }
            };
            terms.push(CompiledTerm {
                name: t.feature.clone(),
                source,
                transforms: t.transforms.clone(),
                coef: t.coef,
            });
        }
        Ok(Model {
            version: self.version.clone(),
            input: self.input,
            terms,
            intercept: self.intercept,
            segments: self.segments,
        })
    }
}

/// The logistic function; total on all of f64 (no NaN for finite input).
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The inverse of [`sigmoid`], with `p` clamped away from 0 and 1.
pub fn logit(p: f64) -> f64 {
    const EPS: f64 = 1e-9;
    let p = p.clamp(EPS, 1.0 - EPS);
    (p / (1.0 - p)).ln()
}

impl Model {
    pub fn load(path: &std::path::Path) -> Result<Model, ModelError> {
        ModelFile::load(path)?.compile()
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

    /// Client feature keys the model needs (empty for session models).
    pub fn client_features(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().filter_map(|t| match &t.source {
            Source::Client(k) => Some(k.as_str()),
            Source::Session(_) => None,
        })
    }

    /// Scores one decision moment: a dot product over the terms and a
    /// sigmoid. Allocation-free.
    pub fn score(
        &self,
        session: &Features,
        client: &HashMap<String, f64>,
    ) -> Result<Score, ScoreError> {
        let mut z = self.intercept;
        let mut top = [(usize::MAX, 0.0f64); TOP_SIGNALS];
        for (i, t) in self.terms.iter().enumerate() {
            let raw = match &t.source {
                Source::Session(idx) => session.0[*idx],
                Source::Client(key) => match client.get(key) {
                    Some(v) => *v,
                    None => return Err(ScoreError::MissingFeature(key.clone())),
                },
            };
            let x = t.transforms.iter().fold(raw, |x, tr| tr.apply(x));
            let c = t.coef * x;
            if !c.is_finite() {
                return Err(ScoreError::NotFinite(t.name.clone()));
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
    use crate::features::{compute, F};
    use crate::session::SessionState;

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
        }
    }

    fn term(name: &str, coef: f64) -> Term {
        Term {
            feature: name.into(),
            transforms: vec![Transform::Log1p],
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
            transforms: vec![Transform::Standardise {
                mean: 0.0,
                std: 0.0,
            }],
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
        let sc = m.score(&f, &HashMap::new()).unwrap();
        let z = -1.0 + 0.1 * f.get(F::page_views).ln_1p() + 2.0 * 1f64.ln_1p() - 0.5 * 1f64.ln_1p()
            + 0.01 * 1f64.ln_1p();
        assert!((sc.logit - z).abs() < 1e-12);
        assert!((sc.probability - sigmoid(z)).abs() < 1e-12);
        assert_eq!(sc.top.map(|t| t.0), [1, 2, 0], "ordered by |contribution|");
    }

    #[test]
    fn client_model_needs_its_features() {
        let mut f = file(vec![term("PageValues", 1.0)]);
        f.input = Input::Client;
        let m = f.compile().unwrap();
        let feats = compute(&SessionState::default(), 0);
        assert_eq!(
            m.score(&feats, &HashMap::new()),
            Err(ScoreError::MissingFeature("PageValues".into()))
        );
        let mut c = HashMap::new();
        c.insert("PageValues".to_string(), 3.0);
        assert!(m.score(&feats, &c).is_ok());
    }
}
