//! Campaign budgets and the budget day: the one budget rule every ledger
//! applies (and its learning-budget companion), and the local day (in the
//! configured time zone) spend is booked on.
//!
//! **Learning budget.** Exploration vouchers (the randomised offers the
//! voucher response is learned from) are paid from a daily learning cap,
//! `learning_cap_cents <= daily_cap_cents`, which they share with every
//! other voucher: a learning reservation must fit both the main remainder
//! ([`CampaignBudget::remaining_cents`]; learning spend is part of the day's
//! and the lifetime's spend) and the learning remainder
//! ([`CampaignBudget::remaining_learning_cents`]).

use super::LedgerError;
use chrono::{Datelike, NaiveDate, TimeZone};
use std::collections::HashMap;

/// A campaign's budget, validated by the config.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignBudget {
    pub daily_cap_cents: i64,
    /// Lifetime cap across days, if any.
    pub total_cap_cents: Option<i64>,
    /// Daily cap of exploration vouchers, in `0..=daily_cap_cents`.
    pub learning_cap_cents: i64,
}

/// Default learning cap: this share of each campaign's daily cap.
pub const DEFAULT_LEARNING_SHARE: f64 = 0.10;

impl CampaignBudget {
    /// A budget whose learning cap is `learning_share` of the daily cap,
    /// rounded down to the cent (fail closed on money) and within
    /// `0..=daily_cap_cents`.
    pub fn with_learning_share(
        daily_cap_cents: i64,
        total_cap_cents: Option<i64>,
        learning_share: f64,
    ) -> Self {
        let share = if learning_share.is_finite() {
            learning_share.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let learning = (daily_cap_cents.max(0) as f64 * share).floor() as i64;
        CampaignBudget {
            daily_cap_cents,
            total_cap_cents,
            learning_cap_cents: learning.clamp(0, daily_cap_cents.max(0)),
        }
    }

    /// The rules the config holds a budget to, for caps that arrive at run
    /// time: no negative cap, and a learning cap within the daily cap.
    pub fn check(&self) -> Result<(), LedgerError> {
        let invalid = |field, message: String| Err(LedgerError::InvalidArgument { field, message });
        if self.daily_cap_cents < 0 {
            return invalid(
                "daily_cap_cents",
                format!("must not be negative, got {}", self.daily_cap_cents),
            );
        }
        if let Some(total) = self.total_cap_cents.filter(|t| *t < 0) {
            return invalid(
                "total_cap_cents",
                format!("must not be negative, got {total}"),
            );
        }
        if !(0..=self.daily_cap_cents).contains(&self.learning_cap_cents) {
            return invalid(
                "learning_cap_cents",
                format!(
                    "must be within 0..={} (the daily cap), got {}",
                    self.daily_cap_cents, self.learning_cap_cents
                ),
            );
        }
        Ok(())
    }

    /// What can still be reserved: the day cap less the day's reserved and
    /// captured cents, bounded by the lifetime cap less the lifetime's,
    /// never below zero. The one budget rule of every ledger.
    pub fn remaining_cents(&self, day_committed: i64, total_committed: i64) -> i64 {
        let mut rem = self.daily_cap_cents - day_committed;
        if let Some(total_cap) = self.total_cap_cents {
            rem = rem.min(total_cap - total_committed);
        }
        rem.max(0)
    }

    /// What a learning (exploration) reservation can still take: the
    /// learning cap less the day's learning reserved and captured cents,
    /// bounded by the main remainder ([`Self::remaining_cents`]), never
    /// below zero. The one learning-budget rule of every ledger.
    pub fn remaining_learning_cents(
        &self,
        day_committed: i64,
        total_committed: i64,
        day_learning_committed: i64,
    ) -> i64 {
        let learning = self.learning_cap_cents - day_learning_committed;
        learning
            .min(self.remaining_cents(day_committed, total_committed))
            .max(0)
    }
}

/// All campaigns and the time zone their days are counted in.
#[derive(Clone, Debug, PartialEq)]
pub struct Budgets {
    pub timezone: chrono_tz::Tz,
    pub campaigns: HashMap<String, CampaignBudget>,
}

impl Budgets {
    /// One campaign named `default` with a daily cap (and the default
    /// learning share of it), days in UTC.
    pub fn single(daily_cap_cents: i64) -> Self {
        Budgets {
            timezone: chrono_tz::UTC,
            campaigns: HashMap::from([(
                DEFAULT_CAMPAIGN.to_owned(),
                CampaignBudget::with_learning_share(daily_cap_cents, None, DEFAULT_LEARNING_SHARE),
            )]),
        }
    }

    /// The local calendar day of `now_ms`, as `YYYY-MM-DD`.
    pub fn day_of(&self, now_ms: i64) -> String {
        let t = self.local(now_ms);
        format!("{:04}-{:02}-{:02}", t.year(), t.month(), t.day())
    }

    /// Share of the local day elapsed at `now_ms`, in [0, 1) (23- and 25-hour
    /// days of a DST change count as whole days).
    pub fn day_fraction(&self, now_ms: i64) -> f64 {
        let t = self.local(now_ms);
        let start = self
            .timezone
            .with_ymd_and_hms(t.year(), t.month(), t.day(), 0, 0, 0)
            .earliest();
        let next = t.date_naive().succ_opt().and_then(|d| {
            self.timezone
                .with_ymd_and_hms(d.year(), d.month(), d.day(), 0, 0, 0)
                .earliest()
        });
        match (start, next) {
            (Some(s), Some(n)) => {
                let len = (n.timestamp_millis() - s.timestamp_millis()) as f64;
                ((now_ms - s.timestamp_millis()) as f64 / len).clamp(0.0, 1.0)
            }
            _ => (now_ms.rem_euclid(MS_PER_DAY)) as f64 / MS_PER_DAY as f64,
        }
    }

    fn local(&self, now_ms: i64) -> chrono::DateTime<chrono_tz::Tz> {
        let utc = chrono::Utc
            .timestamp_millis_opt(now_ms)
            .single()
            .unwrap_or_default();
        utc.with_timezone(&self.timezone)
    }
}

pub const DEFAULT_CAMPAIGN: &str = "default";
pub const MS_PER_DAY: i64 = 86_400_000;

/// A campaign id from outside the config, held to the config's rule: 1..=64
/// printable ASCII characters (it becomes part of storage keys).
pub fn check_campaign_id(campaign: &str) -> Result<(), LedgerError> {
    if campaign.is_empty() || campaign.len() > 64 || !campaign.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(LedgerError::InvalidArgument {
            field: "campaign",
            message: format!("campaign id {campaign:?} must be 1..=64 printable ASCII"),
        });
    }
    Ok(())
}

/// Longest span of a spend history: a year, leap day included.
pub const MAX_HISTORY_DAYS: i64 = 366;

/// The budget days `from_day..=to_day` (`YYYY-MM-DD`), oldest first; a day
/// that is not a calendar date, a range that ends before it starts or one
/// longer than [`MAX_HISTORY_DAYS`] is the caller's mistake.
pub fn day_range(from_day: &str, to_day: &str) -> Result<Vec<String>, LedgerError> {
    let parse = |field: &'static str, s: &str| {
        // `%Y` alone would take `+2026-1-5`; a budget day is always written
        // in full, as `Budgets::day_of` writes it.
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .filter(|d| d.format("%Y-%m-%d").to_string() == s)
            .ok_or_else(|| LedgerError::InvalidArgument {
                field,
                message: format!("{s:?} is not a day written as YYYY-MM-DD"),
            })
    };
    let from = parse("from_day", from_day)?;
    let to = parse("to_day", to_day)?;
    let span = (to - from).num_days();
    if span < 0 {
        return Err(LedgerError::InvalidArgument {
            field: "to_day",
            message: format!("{to_day} is before from_day {from_day}"),
        });
    }
    if span > MAX_HISTORY_DAYS {
        return Err(LedgerError::InvalidArgument {
            field: "to_day",
            message: format!(
                "{to_day} is {span} days after from_day {from_day}; at most {MAX_HISTORY_DAYS}"
            ),
        });
    }
    Ok(from
        .iter_days()
        .take(span as usize + 1)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learning_money_fits_both_remainders() {
        let b = CampaignBudget {
            daily_cap_cents: 10_000,
            total_cap_cents: Some(12_000),
            learning_cap_cents: 1_000,
        };
        assert_eq!(b.remaining_learning_cents(0, 0, 0), 1_000);
        assert_eq!(b.remaining_learning_cents(5_000, 5_000, 600), 400);
        // The main day cap binds first.
        assert_eq!(b.remaining_learning_cents(9_800, 9_800, 0), 200);
        // So does the lifetime cap.
        assert_eq!(b.remaining_learning_cents(0, 11_900, 0), 100);
        // Never below zero, even over a lowered cap.
        assert_eq!(b.remaining_learning_cents(0, 0, 1_500), 0);
    }

    #[test]
    fn day_ranges_are_whole_dates_at_most_a_year_long() {
        assert_eq!(
            day_range("2024-02-28", "2024-03-01").unwrap(),
            ["2024-02-28", "2024-02-29", "2024-03-01"]
        );
        assert_eq!(day_range("2026-01-01", "2026-01-01").unwrap().len(), 1);
        assert_eq!(day_range("2024-01-01", "2025-01-01").unwrap().len(), 367);
        let field = |r: Result<Vec<String>, LedgerError>| match r {
            Err(LedgerError::InvalidArgument { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(field(day_range("2026-02-30", "2026-03-01")), "from_day");
        assert_eq!(field(day_range("2026-1-5", "2026-03-01")), "from_day");
        assert_eq!(field(day_range("2026-01-05", "yesterday")), "to_day");
        assert_eq!(field(day_range("2026-01-05", "2026-01-04")), "to_day");
        assert_eq!(field(day_range("2024-01-01", "2025-01-02")), "to_day");
    }

    #[test]
    fn a_budget_from_outside_the_config_is_checked() {
        let ok = CampaignBudget {
            daily_cap_cents: 1_000,
            total_cap_cents: Some(5_000),
            learning_cap_cents: 1_000,
        };
        assert!(ok.check().is_ok());
        for (bad, name) in [
            (
                CampaignBudget {
                    daily_cap_cents: -1,
                    learning_cap_cents: 0,
                    ..ok.clone()
                },
                "daily_cap_cents",
            ),
            (
                CampaignBudget {
                    total_cap_cents: Some(-5),
                    ..ok.clone()
                },
                "total_cap_cents",
            ),
            (
                CampaignBudget {
                    learning_cap_cents: 1_001,
                    ..ok.clone()
                },
                "learning_cap_cents",
            ),
        ] {
            match bad.check() {
                Err(LedgerError::InvalidArgument { field, .. }) => assert_eq!(field, name),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_share_rounds_down_within_the_daily_cap() {
        let b = CampaignBudget::with_learning_share(100_005, None, 0.10);
        assert_eq!(b.learning_cap_cents, 10_000);
        assert_eq!(
            CampaignBudget::with_learning_share(500, None, 1.0).learning_cap_cents,
            500
        );
        assert_eq!(
            CampaignBudget::with_learning_share(500, None, 0.0).learning_cap_cents,
            0
        );
        assert_eq!(
            Budgets::single(100_000).campaigns[DEFAULT_CAMPAIGN].learning_cap_cents,
            10_000
        );
    }
}
