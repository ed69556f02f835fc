//! A decision as the request hands it to the writer: the same fields as
//! [`DecisionRecord`], in a form that is cheap to build. The features are
//! the scored array (named by [`FEATURES`]) rather than a map of owned
//! names, and the segment and reason are static names, so building one
//! allocates only the strings the decision owns anyway (and the writer
//! thread, which frees it, frees few). The writer thread writes it as
//! exactly the JSON line the [`DecisionRecord`] would be (same fields, same
//! order, same skipped empties), so readers see no difference; the feature
//! names are quoted once for the process, not once per line.

use crate::decision_log::{DecisionRecord, LOG_FORMAT_VERSION};
use crate::domain::features::{Features, FEATURES, N_FEATURES};
use serde::Serialize;
use std::sync::OnceLock;

/// See the module docs; every field is the [`DecisionRecord`] field of the
/// same name.
#[derive(Clone, Debug, PartialEq)]
pub struct DecisionEntry {
    pub at_ms: i64,
    pub session_id: String,
    pub visitor_id: Option<String>,
    pub campaign: String,
    pub model_version: String,
    pub features: Features,
    /// Sorted by name, names unique (as the record's map holds them).
    pub client_features: Vec<(String, f64)>,
    /// Sorted by name, names unique.
    pub client_categorical: Vec<(String, String)>,
    pub probability: f64,
    pub segment: &'static str,
    pub intent_value_cents: i64,
    pub eligible: bool,
    pub policy_tier_cents: i64,
    pub action_cents: i64,
    pub propensity: f64,
    pub holdout: bool,
    pub explored: bool,
    pub learning: bool,
    pub lambda: f64,
    pub reason: &'static str,
    pub voucher_code: Option<String>,
    pub last_exit_intent_ms: Option<i64>,
}

/// Feature indices in name order: the order the record's map (keyed by
/// name) writes them in.
fn by_name() -> &'static [usize; N_FEATURES] {
    static ORDER: OnceLock<[usize; N_FEATURES]> = OnceLock::new();
    ORDER.get_or_init(|| {
        let mut order: [usize; N_FEATURES] = std::array::from_fn(|i| i);
        order.sort_by_key(|i| FEATURES[*i].name);
        order
    })
}

impl DecisionEntry {
    /// The record this entry is written as (readers, tests).
    pub fn to_record(&self) -> DecisionRecord {
        DecisionRecord {
            v: LOG_FORMAT_VERSION,
            at_ms: self.at_ms,
            session_id: self.session_id.clone(),
            visitor_id: self.visitor_id.clone(),
            campaign: self.campaign.clone(),
            model_version: self.model_version.clone(),
            features: FEATURES
                .iter()
                .zip(self.features.0.iter())
                .map(|(f, v)| (f.name.to_owned(), *v))
                .collect(),
            client_features: self.client_features.iter().cloned().collect(),
            client_categorical: self.client_categorical.iter().cloned().collect(),
            probability: self.probability,
            segment: self.segment.to_owned(),
            intent_value_cents: self.intent_value_cents,
            eligible: self.eligible,
            policy_tier_cents: self.policy_tier_cents,
            action_cents: self.action_cents,
            propensity: self.propensity,
            holdout: self.holdout,
            explored: self.explored,
            learning: self.learning,
            lambda: self.lambda,
            reason: self.reason.to_owned(),
            voucher_code: self.voucher_code.clone(),
            last_exit_intent_ms: self.last_exit_intent_ms,
        }
    }
}

/// `"name":` of every feature, in name order, with the index it names:
/// the names are fixed, so they are quoted once, not for every line.
fn feature_keys() -> &'static [(usize, Vec<u8>); N_FEATURES] {
    static KEYS: OnceLock<[(usize, Vec<u8>); N_FEATURES]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let order = by_name();
        std::array::from_fn(|k| {
            let i = order[k];
            let mut key = serde_json::to_vec(FEATURES[i].name).unwrap_or_default();
            key.push(b':');
            (i, key)
        })
    })
}

/// A value as serde_json writes it (strings escaped, floats shortest
/// round-trip, non-finite as `null`).
fn value<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> serde_json::Result<()> {
    serde_json::to_writer(&mut *out, v)
}

fn field<T: Serialize + ?Sized>(out: &mut Vec<u8>, key: &str, v: &T) -> serde_json::Result<()> {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
    value(out, v)
}

fn pairs<V: Serialize>(
    out: &mut Vec<u8>,
    key: &str,
    pairs: &[(String, V)],
) -> serde_json::Result<()> {
    out.push(b',');
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":{");
    for (n, (k, v)) in pairs.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        value(out, k)?;
        out.push(b':');
        value(out, v)?;
    }
    out.push(b'}');
    Ok(())
}

impl DecisionEntry {
    /// Appends the JSON of `LogRecord::Decision(self.to_record())`, byte
    /// for byte as serde_json writes it (the tag first, then the record's
    /// fields in order, empties skipped where the record skips them),
    /// without building the record. No newline.
    pub fn write_json(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        out.extend_from_slice(b"{\"type\":\"decision\"");
        field(out, "v", &LOG_FORMAT_VERSION)?;
        field(out, "at_ms", &self.at_ms)?;
        field(out, "session_id", &self.session_id)?;
        if let Some(v) = &self.visitor_id {
            field(out, "visitor_id", v)?;
        }
        field(out, "campaign", &self.campaign)?;
        field(out, "model_version", &self.model_version)?;
        out.extend_from_slice(b",\"features\":{");
        for (n, (i, key)) in feature_keys().iter().enumerate() {
            if n > 0 {
                out.push(b',');
            }
            out.extend_from_slice(key);
            value(out, &self.features.0[*i])?;
        }
        out.push(b'}');
        if !self.client_features.is_empty() {
            pairs(out, "client_features", &self.client_features)?;
        }
        if !self.client_categorical.is_empty() {
            pairs(out, "client_categorical", &self.client_categorical)?;
        }
        field(out, "probability", &self.probability)?;
        field(out, "segment", self.segment)?;
        field(out, "intent_value_cents", &self.intent_value_cents)?;
        field(out, "eligible", &self.eligible)?;
        field(out, "policy_tier_cents", &self.policy_tier_cents)?;
        field(out, "action_cents", &self.action_cents)?;
        field(out, "propensity", &self.propensity)?;
        field(out, "holdout", &self.holdout)?;
        field(out, "explored", &self.explored)?;
        field(out, "learning", &self.learning)?;
        field(out, "lambda", &self.lambda)?;
        field(out, "reason", self.reason)?;
        if let Some(v) = &self.voucher_code {
            field(out, "voucher_code", v)?;
        }
        if let Some(v) = &self.last_exit_intent_ms {
            field(out, "last_exit_intent_ms", v)?;
        }
        out.push(b'}');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::LogRecord;

    fn entry() -> DecisionEntry {
        DecisionEntry {
            at_ms: 1_795_341_600_123,
            session_id: "s-1".into(),
            visitor_id: None,
            campaign: "default".into(),
            model_version: "m-7".into(),
            features: Features(std::array::from_fn(|i| i as f64 * 0.37 - 1.5)),
            client_features: Vec::new(),
            client_categorical: Vec::new(),
            probability: 0.4213,
            segment: "hesitant",
            intent_value_cents: 12_345,
            eligible: true,
            policy_tier_cents: 500,
            action_cents: 0,
            propensity: 0.9,
            holdout: false,
            explored: false,
            learning: false,
            lambda: 0.0,
            reason: "roi_not_positive",
            voucher_code: None,
            last_exit_intent_ms: Some(0),
        }
    }

    fn same_line(e: &DecisionEntry) {
        let mut line = Vec::new();
        e.write_json(&mut line).unwrap();
        let line = String::from_utf8(line).unwrap();
        let record = serde_json::to_string(&LogRecord::Decision(e.to_record())).unwrap();
        assert_eq!(line, record);
        let back: LogRecord = serde_json::from_str(&line).unwrap();
        assert_eq!(back, LogRecord::Decision(e.to_record()));
    }

    #[test]
    fn an_entry_is_written_as_its_record() {
        same_line(&entry());
        let mut e = entry();
        e.visitor_id = Some("v-9".into());
        e.client_features = vec![("a".into(), 1.5), ("b\"q".into(), -2.0)];
        e.client_categorical = vec![("country".into(), "FR".into())];
        e.voucher_code = Some("CODE-1".into());
        e.last_exit_intent_ms = None;
        e.reason = "offered";
        e.action_cents = 500;
        e.learning = true;
        same_line(&e);
    }
}
