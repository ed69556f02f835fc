//! Campaign settings that change while the service runs: caps, the pause
//! switch, tiers, the intent floor, holdout and exploration shares and a
//! schedule, with the audit trail of who changed what.
//!
//! The config file seeds each campaign. Changes made at run time (the admin
//! API) are validated here like the config, stored durably beside the
//! ledger ([`store`]: SQLite by default, Redis with the Redis ledger, in
//! memory with the memory ledger) and survive restarts. The config's seed
//! wins again only when the config file itself changes for that campaign
//! (so editing the TOML and restarting still does what it says).
//!
//! Decide reads one [`Catalog`] snapshot per request: a change swaps the
//! whole snapshot (arc-swap), so an in-flight decision finishes on the
//! settings it started with and no lock is taken on the request path.
//! Caps reach the ledger first ([`crate::ledger::Ledger::set_budget`]), so
//! a cap lowered under load is enforced by the ledger's atomic step itself.

pub mod store;

use crate::domain::experiment::Experiment;
use crate::domain::pacing::{Pacer, PacingConfig};
use crate::domain::policy::{Policy, Tier};
use crate::ledger::{Budgets, CampaignBudget};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;

/// Largest cap accepted, in cents (ten billion euros): keeps every sum of
/// caps and spend far from `i64` overflow.
pub const MAX_CAP_CENTS: i64 = 1_000_000_000_000;

/// Longest accepted change reason.
pub const MAX_REASON_CHARS: usize = 500;

/// A campaign's settings as in force: validated, and what the admin API
/// answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSettings {
    pub id: String,
    pub daily_cap_cents: i64,
    pub total_cap_cents: Option<i64>,
    /// Part of the daily cap exploration vouchers may use.
    pub learning_cap_cents: i64,
    /// No new vouchers while paused (reason `PAUSED`); offers already given
    /// stay redeemable.
    pub paused: bool,
    /// The voucher amounts this campaign may offer: configured tiers
    /// (`policy.tiers`), in their configured order.
    pub tiers_cents: Vec<i64>,
    pub min_intent_cents: i64,
    pub holdout_share: f64,
    /// The exploration share once the model has learned the voucher
    /// response (the cold-start share stays `experiment.cold_explore_share`).
    pub explore_share: f64,
    /// Vouchers only from this instant (ms since the epoch), if set.
    pub starts_at_ms: Option<i64>,
    /// Vouchers only before this instant, if set.
    pub ends_at_ms: Option<i64>,
    /// Bumped by every change; orders changes across replicas.
    pub revision: u64,
    pub updated_ms: i64,
}

impl CampaignSettings {
    /// Whether vouchers may be given at `now_ms` by the schedule.
    pub fn in_schedule(&self, now_ms: i64) -> bool {
        self.starts_at_ms.is_none_or(|s| now_ms >= s) && self.ends_at_ms.is_none_or(|e| now_ms < e)
    }

    pub fn budget(&self) -> CampaignBudget {
        CampaignBudget {
            daily_cap_cents: self.daily_cap_cents,
            total_cap_cents: self.total_cap_cents,
            learning_cap_cents: self.learning_cap_cents,
        }
    }

    /// What the config file says about a campaign, before any change.
    pub fn seed(id: &str, budget: &CampaignBudget, base: &Base, overrides: &Overrides) -> Self {
        CampaignSettings {
            id: id.to_owned(),
            daily_cap_cents: budget.daily_cap_cents,
            total_cap_cents: budget.total_cap_cents,
            learning_cap_cents: budget.learning_cap_cents,
            paused: overrides.paused.unwrap_or(false),
            tiers_cents: overrides
                .tiers_cents
                .clone()
                .unwrap_or_else(|| base.policy.tiers.iter().map(|t| t.amount_cents).collect()),
            min_intent_cents: overrides
                .min_intent_cents
                .unwrap_or(base.policy.min_intent_cents),
            holdout_share: overrides
                .holdout_share
                .unwrap_or(base.experiment.holdout_share),
            explore_share: overrides
                .explore_share
                .unwrap_or(base.experiment.explore_share),
            starts_at_ms: overrides.starts_at_ms,
            ends_at_ms: overrides.ends_at_ms,
            revision: 0,
            updated_ms: 0,
        }
    }

    /// The fields a change may touch, as they differ from `other`: the
    /// audit trail's "what changed" in one line (`paused: false -> true`).
    pub fn diff(&self, before: Option<&CampaignSettings>) -> String {
        let now = self.fields();
        let Some(before) = before else {
            return "created".to_owned();
        };
        let was = before.fields();
        let parts: Vec<String> = now
            .iter()
            .zip(was.iter())
            .filter(|(n, w)| n.1 != w.1)
            .map(|(n, w)| format!("{}: {} -> {}", n.0, w.1, n.1))
            .collect();
        if parts.is_empty() {
            "no change".to_owned()
        } else {
            parts.join(", ")
        }
    }

    /// Whether every field a change may touch equals `other`'s (revision
    /// and time aside).
    pub fn same_values(&self, other: &CampaignSettings) -> bool {
        self.fields() == other.fields()
    }

    fn fields(&self) -> [(&'static str, String); 10] {
        let opt = |v: Option<i64>| v.map_or("none".to_owned(), |v| v.to_string());
        let at = |v: Option<i64>| v.map_or("none".to_owned(), rfc3339);
        [
            ("daily_cap_cents", self.daily_cap_cents.to_string()),
            ("total_cap_cents", opt(self.total_cap_cents)),
            ("learning_cap_cents", self.learning_cap_cents.to_string()),
            ("paused", self.paused.to_string()),
            ("tiers_cents", format!("{:?}", self.tiers_cents)),
            ("min_intent_cents", self.min_intent_cents.to_string()),
            ("holdout_share", self.holdout_share.to_string()),
            ("explore_share", self.explore_share.to_string()),
            ("starts_at", at(self.starts_at_ms)),
            ("ends_at", at(self.ends_at_ms)),
        ]
    }
}

/// Per-campaign settings the config file may give beyond the caps
/// (`[[budget.campaigns]]`); unset ones follow `[policy]` and
/// `[experiment]`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overrides {
    pub paused: Option<bool>,
    pub tiers_cents: Option<Vec<i64>>,
    pub min_intent_cents: Option<i64>,
    pub holdout_share: Option<f64>,
    pub explore_share: Option<f64>,
    pub starts_at_ms: Option<i64>,
    pub ends_at_ms: Option<i64>,
}

/// What validation and the engine's per-campaign views start from: the
/// config's policy (its tiers with their priors) and experiment.
#[derive(Clone, Debug)]
pub struct Base {
    pub policy: Policy,
    pub experiment: Experiment,
    pub learning_share: f64,
    pub pacing: PacingConfig,
    pub timezone: chrono_tz::Tz,
    pub default_campaign: String,
}

/// A change as the admin API receives it: every field optional, unknown
/// fields refused.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignPatch {
    pub daily_cap_cents: Option<i64>,
    /// `null` removes the lifetime cap.
    #[serde(default, deserialize_with = "double_option")]
    pub total_cap_cents: Option<Option<i64>>,
    pub learning_cap_cents: Option<i64>,
    pub paused: Option<bool>,
    /// Voucher amounts in cents, each a configured tier.
    pub tiers: Option<Vec<i64>>,
    pub min_intent_cents: Option<i64>,
    pub holdout_share: Option<f64>,
    pub explore_share: Option<f64>,
    /// RFC 3339 (`2026-12-24T00:00:00Z`); `null` removes it.
    #[serde(default, deserialize_with = "double_option")]
    pub starts_at: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    pub ends_at: Option<Option<String>>,
    /// Why: kept in the audit trail.
    pub reason: Option<String>,
}

/// A new campaign as the admin API receives it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCampaign {
    pub id: String,
    pub daily_cap_cents: i64,
    #[serde(flatten)]
    pub rest: CampaignPatch,
}

/// Distinguishes a field sent as `null` (`Some(None)`) from one not sent.
fn double_option<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    /// A caller mistake, naming the field.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("unknown campaign {0:?}")]
    NotFound(String),
    #[error("campaign {0:?} already exists")]
    Exists(String),
    /// Changed by someone else meanwhile, too often to retry.
    #[error("campaign {0:?} changed concurrently; try again")]
    Conflict(String),
    /// The settings store failed: nothing was changed.
    #[error("settings store unavailable: {0}")]
    Unavailable(String),
}

fn invalid(field: &'static str, message: impl Into<String>) -> CampaignError {
    CampaignError::Invalid {
        field,
        message: message.into(),
    }
}

/// A campaign id: 1..=64 printable ASCII without `/` (it is a URL path
/// segment of the admin API).
pub fn validate_id(id: &str) -> Result<(), CampaignError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic() && b != b'/') {
        return Err(invalid(
            "id",
            format!("{id:?} must be 1..=64 printable ASCII characters without '/'"),
        ));
    }
    Ok(())
}

/// Parses an RFC 3339 instant into ms since the epoch.
pub fn parse_instant(field: &'static str, text: &str) -> Result<i64, CampaignError> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| invalid(field, format!("{text:?} is not an RFC 3339 time ({e})")))
}

/// An instant as RFC 3339 in UTC.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

impl CampaignPatch {
    /// `current` with this change applied, validated as a whole; the
    /// revision is bumped and `updated_ms` set.
    pub fn apply(
        &self,
        current: &CampaignSettings,
        base: &Base,
        now_ms: i64,
    ) -> Result<CampaignSettings, CampaignError> {
        let mut s = current.clone();
        if let Some(v) = self.daily_cap_cents {
            s.daily_cap_cents = v;
            if self.learning_cap_cents.is_none() {
                // The learning budget follows the daily cap by the
                // configured share unless it is given.
                s.learning_cap_cents =
                    CampaignBudget::with_learning_share(v, None, base.learning_share)
                        .learning_cap_cents;
            }
        }
        if let Some(v) = self.total_cap_cents {
            s.total_cap_cents = v;
        }
        if let Some(v) = self.learning_cap_cents {
            s.learning_cap_cents = v;
        }
        if let Some(v) = self.paused {
            s.paused = v;
        }
        if let Some(v) = &self.tiers {
            s.tiers_cents = v.clone();
        }
        if let Some(v) = self.min_intent_cents {
            s.min_intent_cents = v;
        }
        if let Some(v) = self.holdout_share {
            s.holdout_share = v;
        }
        if let Some(v) = self.explore_share {
            s.explore_share = v;
        }
        if let Some(v) = &self.starts_at {
            s.starts_at_ms = v
                .as_deref()
                .map(|t| parse_instant("starts_at", t))
                .transpose()?;
        }
        if let Some(v) = &self.ends_at {
            s.ends_at_ms = v
                .as_deref()
                .map(|t| parse_instant("ends_at", t))
                .transpose()?;
        }
        validate_reason(self.reason.as_deref())?;
        s.revision = current.revision + 1;
        s.updated_ms = now_ms;
        validate(&s, base)?;
        Ok(s)
    }
}

impl NewCampaign {
    /// The new campaign's settings: the config's policy and experiment
    /// where the request is silent, the learning share of the daily cap.
    pub fn settings(&self, base: &Base, now_ms: i64) -> Result<CampaignSettings, CampaignError> {
        validate_id(&self.id)?;
        let budget = CampaignBudget::with_learning_share(
            self.daily_cap_cents.max(0),
            None,
            base.learning_share,
        );
        let seed = CampaignSettings::seed(&self.id, &budget, base, &Overrides::default());
        let patch = CampaignPatch {
            daily_cap_cents: Some(self.daily_cap_cents),
            ..self.rest.clone()
        };
        let mut s = patch.apply(&seed, base, now_ms)?;
        s.revision = 1;
        Ok(s)
    }
}

fn validate_reason(reason: Option<&str>) -> Result<(), CampaignError> {
    if let Some(r) = reason {
        if r.chars().count() > MAX_REASON_CHARS {
            return Err(invalid(
                "reason",
                format!("at most {MAX_REASON_CHARS} characters"),
            ));
        }
        if r.chars().any(|c| c.is_control()) {
            return Err(invalid("reason", "no control characters"));
        }
    }
    Ok(())
}

/// The rules every campaign's settings obey, from the config or a change.
pub fn validate(s: &CampaignSettings, base: &Base) -> Result<(), CampaignError> {
    validate_id(&s.id)?;
    if !(0..=MAX_CAP_CENTS).contains(&s.daily_cap_cents) {
        return Err(invalid(
            "daily_cap_cents",
            format!("{} must be in 0..={MAX_CAP_CENTS}", s.daily_cap_cents),
        ));
    }
    if let Some(t) = s.total_cap_cents {
        if !(0..=MAX_CAP_CENTS).contains(&t) {
            return Err(invalid(
                "total_cap_cents",
                format!("{t} must be in 0..={MAX_CAP_CENTS}"),
            ));
        }
    }
    if !(0..=s.daily_cap_cents).contains(&s.learning_cap_cents) {
        return Err(invalid(
            "learning_cap_cents",
            format!(
                "{} must be in 0..={} (the daily cap)",
                s.learning_cap_cents, s.daily_cap_cents
            ),
        ));
    }
    if s.tiers_cents.is_empty() {
        return Err(invalid("tiers", "need at least one tier"));
    }
    let configured: Vec<i64> = base.policy.tiers.iter().map(|t| t.amount_cents).collect();
    for (i, a) in s.tiers_cents.iter().enumerate() {
        if !configured.contains(a) {
            return Err(invalid(
                "tiers",
                format!(
                    "{a} is not a configured tier (policy.tiers: {})",
                    configured
                        .iter()
                        .map(i64::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        if s.tiers_cents[..i].contains(a) {
            return Err(invalid("tiers", format!("{a} appears twice")));
        }
    }
    if !(0..=MAX_CAP_CENTS).contains(&s.min_intent_cents) {
        return Err(invalid(
            "min_intent_cents",
            format!("{} must be in 0..={MAX_CAP_CENTS}", s.min_intent_cents),
        ));
    }
    if !(0.0..1.0).contains(&s.holdout_share) {
        return Err(invalid("holdout_share", "must be in [0, 1)"));
    }
    if !(0.0..=1.0).contains(&s.explore_share) {
        return Err(invalid("explore_share", "must be in [0, 1]"));
    }
    if let (Some(a), Some(b)) = (s.starts_at_ms, s.ends_at_ms) {
        if a >= b {
            return Err(invalid("ends_at", "must be after starts_at"));
        }
    }
    Ok(())
}

/// One campaign as Decide uses it: its settings and the policy and
/// experiment they imply, with its pacer (kept across changes).
pub struct Campaign {
    pub settings: CampaignSettings,
    pub policy: Policy,
    pub experiment: Experiment,
    pub pacer: Arc<Pacer>,
    /// The budget day whose run-out was last announced.
    exhausted_day: std::sync::Mutex<String>,
}

impl Campaign {
    /// A reservation found the day's budget spent: announced once per
    /// campaign and budget day (a log line and a counter), not once per
    /// refused decision.
    pub fn note_exhausted(&self, day: &str, remaining_cents: i64) {
        let mut seen = self.exhausted_day.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == day {
            return;
        }
        day.clone_into(&mut seen);
        drop(seen);
        metrics::counter!("nudge_budget_exhausted_total", "campaign" => self.settings.id.clone())
            .increment(1);
        tracing::warn!(campaign = %self.settings.id, day, remaining_cents, daily_cap_cents = self.settings.daily_cap_cents, "campaign budget exhausted: no new vouchers until more budget is available");
    }

    fn new(settings: CampaignSettings, base: &Base, pacer: Arc<Pacer>) -> Self {
        // Tiers keep the config's order and prior lifts.
        let tiers: Vec<Tier> = base
            .policy
            .tiers
            .iter()
            .filter(|t| settings.tiers_cents.contains(&t.amount_cents))
            .copied()
            .collect();
        let policy = Policy {
            min_intent_cents: settings.min_intent_cents,
            tiers,
            ..base.policy.clone()
        };
        let experiment = Experiment {
            holdout_share: settings.holdout_share,
            explore_share: settings.explore_share,
            ..base.experiment.clone()
        };
        Campaign {
            settings,
            policy,
            experiment,
            pacer,
            exhausted_day: std::sync::Mutex::new(String::new()),
        }
    }
}

/// Every campaign in force: the snapshot Decide reads once per request.
pub struct Catalog {
    pub campaigns: HashMap<String, Arc<Campaign>>,
    pub default_campaign: String,
    /// The budgets as the ledger knows them (time zone, caps).
    pub budgets: Budgets,
}

impl Catalog {
    /// The config's campaigns, before the settings store is read.
    pub fn from_config(
        budgets: &Budgets,
        base: &Base,
        overrides: &std::collections::BTreeMap<String, Overrides>,
    ) -> Self {
        let settings = budgets
            .campaigns
            .iter()
            .map(|(id, b)| {
                let o = overrides.get(id).cloned().unwrap_or_default();
                CampaignSettings::seed(id, b, base, &o)
            })
            .collect();
        Catalog::build(settings, base, None)
    }

    /// A catalog of `settings`, pacers carried over from `previous` for
    /// campaigns it already had.
    pub fn build(settings: Vec<CampaignSettings>, base: &Base, previous: Option<&Catalog>) -> Self {
        let mut campaigns = HashMap::with_capacity(settings.len());
        let mut budgets = Budgets {
            timezone: base.timezone,
            campaigns: HashMap::with_capacity(settings.len()),
        };
        for s in settings {
            let pacer = previous
                .and_then(|p| p.campaigns.get(&s.id))
                .map(|c| Arc::clone(&c.pacer))
                .unwrap_or_else(|| Arc::new(Pacer::new(base.pacing.clone())));
            budgets.campaigns.insert(s.id.clone(), s.budget());
            campaigns.insert(s.id.clone(), Arc::new(Campaign::new(s, base, pacer)));
        }
        Catalog {
            campaigns,
            default_campaign: base.default_campaign.clone(),
            budgets,
        }
    }

    /// The campaigns' settings, by id.
    pub fn settings(&self) -> Vec<CampaignSettings> {
        let mut all: Vec<CampaignSettings> = self
            .campaigns
            .values()
            .map(|c| c.settings.clone())
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Base {
        let tier = |amount_cents, lift| Tier { amount_cents, lift };
        Base {
            policy: Policy {
                min_intent_cents: 9_900,
                margin_rate: 0.3,
                tiers: vec![tier(500, 0.25), tier(1_000, 0.45), tier(2_000, 0.7)],
                trigger: Default::default(),
                offer_on_priors: false,
            },
            experiment: Experiment::default(),
            learning_share: 0.1,
            pacing: PacingConfig::default(),
            timezone: chrono_tz::UTC,
            default_campaign: "default".into(),
        }
    }

    fn current() -> CampaignSettings {
        CampaignSettings::seed(
            "default",
            &CampaignBudget::with_learning_share(100_000, None, 0.1),
            &base(),
            &Overrides::default(),
        )
    }

    fn patch(json: &str) -> CampaignPatch {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_patch_changes_only_what_it_names_and_bumps_the_revision() {
        let c = current();
        let s = patch(r#"{"paused": true, "reason": "stock-out"}"#)
            .apply(&c, &base(), 5)
            .unwrap();
        assert!(s.paused);
        assert_eq!(s.daily_cap_cents, c.daily_cap_cents);
        assert_eq!(s.revision, c.revision + 1);
        assert_eq!(s.diff(Some(&c)), "paused: false -> true");
    }

    #[test]
    fn a_new_daily_cap_moves_the_learning_cap_by_the_share_unless_given() {
        let c = current();
        let s = patch(r#"{"daily_cap_cents": 5000}"#)
            .apply(&c, &base(), 0)
            .unwrap();
        assert_eq!(s.learning_cap_cents, 500);
        let s = patch(r#"{"daily_cap_cents": 5000, "learning_cap_cents": 0}"#)
            .apply(&c, &base(), 0)
            .unwrap();
        assert_eq!(s.learning_cap_cents, 0);
    }

    #[test]
    fn bad_changes_name_the_field() {
        let c = current();
        let field = |json: &str| match patch(json).apply(&c, &base(), 0) {
            Err(CampaignError::Invalid { field, .. }) => field,
            other => panic!("{json}: {other:?}"),
        };
        assert_eq!(field(r#"{"daily_cap_cents": -1}"#), "daily_cap_cents");
        assert_eq!(field(r#"{"tiers": [700]}"#), "tiers");
        assert_eq!(field(r#"{"tiers": []}"#), "tiers");
        assert_eq!(field(r#"{"tiers": [500, 500]}"#), "tiers");
        assert_eq!(field(r#"{"holdout_share": 1.0}"#), "holdout_share");
        assert_eq!(field(r#"{"explore_share": -0.1}"#), "explore_share");
        assert_eq!(
            field(r#"{"learning_cap_cents": 100001}"#),
            "learning_cap_cents"
        );
        assert_eq!(field(r#"{"starts_at": "tomorrow"}"#), "starts_at");
        assert_eq!(
            field(r#"{"starts_at": "2026-12-02T00:00:00Z", "ends_at": "2026-12-01T00:00:00Z"}"#),
            "ends_at"
        );
        assert!(serde_json::from_str::<CampaignPatch>(r#"{"dailycap": 1}"#).is_err());
    }

    #[test]
    fn null_removes_the_lifetime_cap_and_the_schedule() {
        let mut c = current();
        c.total_cap_cents = Some(1);
        c.ends_at_ms = Some(10);
        let s = patch(r#"{"total_cap_cents": null, "ends_at": null}"#)
            .apply(&c, &base(), 0)
            .unwrap();
        assert_eq!(s.total_cap_cents, None);
        assert_eq!(s.ends_at_ms, None);
    }

    #[test]
    fn the_schedule_is_half_open() {
        let mut c = current();
        c.starts_at_ms = Some(100);
        c.ends_at_ms = Some(200);
        assert!(!c.in_schedule(99));
        assert!(c.in_schedule(100));
        assert!(!c.in_schedule(200));
    }

    #[test]
    fn a_campaign_policy_keeps_the_configured_order_and_priors() {
        let b = base();
        let mut s = current();
        s.tiers_cents = vec![2_000, 500];
        let cat = Catalog::build(vec![s], &b, None);
        let c = &cat.campaigns["default"];
        let amounts: Vec<i64> = c.policy.tiers.iter().map(|t| t.amount_cents).collect();
        assert_eq!(amounts, vec![500, 2_000]);
        assert_eq!(c.policy.tiers[0].lift, b.policy.tiers[0].lift);
    }
}
