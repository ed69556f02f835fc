//! Campaign budgets and the budget day: the one budget rule every ledger
//! applies, and the local day (in the configured time zone) spend is booked on.

use chrono::{Datelike, TimeZone};
use std::collections::HashMap;

/// A campaign's budget, validated by the config.
#[derive(Clone, Debug, PartialEq)]
pub struct CampaignBudget {
    pub daily_cap_cents: i64,
    /// Lifetime cap across days, if any.
    pub total_cap_cents: Option<i64>,
}

impl CampaignBudget {
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
}

/// All campaigns and the time zone their days are counted in.
#[derive(Clone, Debug, PartialEq)]
pub struct Budgets {
    pub timezone: chrono_tz::Tz,
    pub campaigns: HashMap<String, CampaignBudget>,
}

impl Budgets {
    /// One campaign named `default` with a daily cap, days in UTC.
    pub fn single(daily_cap_cents: i64) -> Self {
        Budgets {
            timezone: chrono_tz::UTC,
            campaigns: HashMap::from([(
                DEFAULT_CAMPAIGN.to_owned(),
                CampaignBudget {
                    daily_cap_cents,
                    total_cap_cents: None,
                },
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
