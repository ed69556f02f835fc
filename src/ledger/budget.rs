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

use chrono::{Datelike, TimeZone};
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
