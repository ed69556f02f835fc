//! Budget pacing: a feedback-controlled shadow price `lambda >= 0` on the
//! expected voucher cost, so that the day's budget follows a target curve
//! instead of running out at noon.
//!
//! # What is controlled
//!
//! The voucher rule ([`crate::domain::policy::choose`]) ranks tiers by
//! `ENV(v) - lambda * p_v * v` and offers only when that is > 0. `lambda` is
//! "net value required per cent of expected voucher cost": at 0 every
//! ROI-positive offer is made, as `lambda` grows only the offers that earn
//! the most per euro of budget survive. The spend rate is therefore a
//! decreasing function of `lambda`, and the [`Pacer`] moves `lambda` so that
//! cumulative spend tracks the target curve.
//!
//! # Target curve
//!
//! 24 hourly weights over the *local* day ([`PacingConfig::hourly_weights`],
//! all equal by default = spend evenly). [`target_fraction`] is their
//! piecewise-linear integral, normalised: the share of the daily budget that
//! should be spent by a given fraction of the day (0 at midnight, 1 at the
//! next midnight, monotone). A weight of 0 means "spend nothing in this
//! hour".
//!
//! # Controller: PI on the cumulative spend error, in log-lambda space
//!
//! The error is measured in shares of the daily budget:
//!
//! ```text
//! e(t) = spent(t) / cap - target_fraction(t)      (> 0: ahead of the curve)
//! ```
//!
//! The controller state is `u >= 0` with `lambda = lambda_knee * (exp(u) - 1)`:
//!
//! ```text
//! I   <- clamp(I + ki * e * dt, 0, u_max)          (integral, anti-windup by clamping)
//! u    = clamp(I + kp * e, 0, u_max)
//! lambda = lambda_knee * (exp(u) - 1)              (u_max: lambda = max_lambda)
//! ```
//!
//! with `dt` the elapsed *day fraction* since the previous update (not the
//! number of calls), capped at [`PacingConfig::max_step`].
//!
//! Why this shape:
//! - **The error is cumulative spend vs. the curve**, which is exactly what
//!   ops and finance watch; a proportional term on
//!   a cumulative error is an integral term on the spend *rate*, so `kp`
//!   removes rate errors and `ki` removes the remaining position offset (a
//!   pure P controller would settle ahead of the curve by `u*/kp`).
//!   Linearised around the operating point (`spend rate = g(u)`,
//!   `G = -dg/du` in budget shares per day) the loop is
//!   `e'' + G kp e' + G ki e = 0`: stable for every positive gain, with
//!   natural frequency `sqrt(G ki)` and damping `kp sqrt(G) / (2 sqrt(ki))`.
//!   The defaults (`kp = 80`, `ki = 1600`) are critically damped for an
//!   elasticity `G` about 1 and settle within about an hour.
//! - **Log space** (multiplicative updates): the useful `lambda` spans
//!   orders of magnitude (0.05 on a quiet day, 5 when demand is ten times
//!   the budget), and the spend rate responds to *relative* changes of
//!   `lambda`, so the same gains work at every level. The `exp(u) - 1` map
//!   is linear near 0 (below `lambda_knee`), so `lambda` reaches exactly 0
//!   when underspending — unpaced is a reachable state, not an asymptote.
//! - **Anti-windup**: the integral is clamped to the reachable range
//!   `[0, u_max]`, so after a long underspend (night, demand below the
//!   curve) `lambda` is 0 and starts rising as soon as spend is ahead again,
//!   instead of first unwinding a large negative integral.
//! - **Independent of call frequency**: the integral uses elapsed day
//!   fraction, updates closer together than
//!   [`PacingConfig::min_update_interval`] (default one minute of the day)
//!   return the current `lambda` unchanged, and a long gap between calls
//!   integrates at most [`PacingConfig::max_step`] (default five minutes),
//!   so a sparse caller slows the controller down rather than making it
//!   overshoot. Calling every decision or every few seconds gives the same
//!   trajectory.
//!
//! A look-ahead rule ("spread the remaining budget over the remaining
//! curve") was considered: it never tries to catch up, so an early overspend
//! stays a deviation from the curve for the rest of the day. The PI form
//! returns to the curve.
//!
//! # Day boundaries
//!
//! [`Pacer::new_day`] starts a new day: today's spend error starts at 0 and
//! the integral starts from **yesterday's time-weighted mean integral state**
//! (scaled by [`PacingConfig::warm_start`], default 1). Demand is similar
//! day to day, so a warm start avoids the cold-start burst at midnight (with
//! `lambda = 0` the first hour spends at the full unpaced rate). The mean
//! over the day rather than the final value, because the end of the day is
//! the least representative moment: once the cap is hit spend stops while
//! the curve keeps rising, so the final value can be wound up (or, with a
//! curve that ends early, wound down). A call to [`Pacer::update`] whose
//! `day_fraction` is more than half a day *earlier* than the previous one is
//! taken as a missed midnight and starts a new day too; slightly earlier
//! (racing callers) is ignored.
//!
//! # Wiring (engine)
//!
//! - `day_fraction = (now - local midnight) / (next local midnight - local
//!   midnight)`, so 23- and 25-hour DST days still run 0..1 monotonically.
//! - `spent_cents` is everything committed today (reserved + captured, not
//!   voided), `cap_cents` today's cap.
//! - Call [`Pacer::update`] from a ticker every few seconds or after every
//!   decision; read [`Pacer::lambda`] on the decision path and pass it to
//!   [`crate::domain::policy::choose`]; log it in the decision record.
//! - Call [`Pacer::new_day`] when the ledger's day rolls over.
//!
//! # Restarts
//!
//! [`Pacer::save`] / [`Pacer::restore`] carry the controller state over a
//! restart (the server keeps `<data_dir>/pacing.json` next to the SQLite
//! ledger, written every pacing tick and at shutdown). The same budget day
//! continues where it stopped; a state from an earlier day becomes today's
//! warm start, as at midnight. Without it lambda restarted at 0 and the
//! first hour after a restart spent at the unpaced rate (2-3 % of the day's
//! budget ahead of the curve in simulation).
//!
//! [`Pacer`] is `Sync`: `lambda()` is a lock-free atomic read, `update()`
//! takes a short mutex with `try_lock` (a concurrent caller gets the current
//! value instead of waiting) and there is no `.await` anywhere.

use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, TryLockError};

/// One minute, as a fraction of a day.
pub const MINUTE: f64 = 1.0 / 1_440.0;

/// Pacing settings. Every field has a documented default; validate with
/// [`PacingConfig::validate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PacingConfig {
    /// Pace at all. Default `true`; when `false`, `lambda` is always 0.
    pub enabled: bool,
    /// Target curve: relative spend weight of each local hour 0..24.
    /// Finite, `>= 0`, sum `> 0`. Default all 1 (spend evenly).
    pub hourly_weights: [f64; 24],
    /// Proportional gain: `u` per unit of budget share ahead of the curve.
    /// Default 80 (1 % of the budget ahead multiplies `lambda` by about 2.2).
    pub kp: f64,
    /// Integral gain: `u` per budget share per day. Default 1600.
    pub ki: f64,
    /// Below this `lambda` the map from `u` is linear (so 0 is reachable);
    /// above it multiplicative. Default 0.05.
    pub lambda_knee: f64,
    /// Upper clamp on `lambda`. Default 50 (an offer must earn 50x its
    /// expected voucher cost: effectively "stop").
    pub max_lambda: f64,
    /// Updates closer together than this (day fraction) are skipped.
    /// Default 1/1440 (one minute).
    pub min_update_interval: f64,
    /// Largest `dt` (day fraction) one update integrates. Default 5/1440.
    pub max_step: f64,
    /// Share (0..=1) of yesterday's mean integral state carried into the new
    /// day. Default 1 (full warm start); 0 = every day starts at `lambda = 0`.
    pub warm_start: f64,
}

impl Default for PacingConfig {
    fn default() -> Self {
        PacingConfig {
            enabled: true,
            hourly_weights: [1.0; 24],
            kp: 80.0,
            ki: 1_600.0,
            lambda_knee: 0.05,
            max_lambda: 50.0,
            min_update_interval: MINUTE,
            max_step: 5.0 * MINUTE,
            warm_start: 1.0,
        }
    }
}

impl PacingConfig {
    /// Checks every field; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(h) = self
            .hourly_weights
            .iter()
            .position(|w| !w.is_finite() || *w < 0.0)
        {
            return Err(format!(
                "pacing.hourly_weights[{h}]: must be finite and >= 0, got {}",
                self.hourly_weights[h]
            ));
        }
        let sum: f64 = self.hourly_weights.iter().sum();
        if !(sum > 0.0 && sum.is_finite()) {
            return Err("pacing.hourly_weights: the sum must be > 0".into());
        }
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("pacing.{name}: must be finite and > 0, got {v}"))
            }
        };
        positive("kp", self.kp)?;
        positive("ki", self.ki)?;
        positive("lambda_knee", self.lambda_knee)?;
        positive("max_lambda", self.max_lambda)?;
        if self.max_lambda < self.lambda_knee {
            return Err("pacing.max_lambda: must be >= lambda_knee".into());
        }
        if !(self.min_update_interval.is_finite()
            && (0.0..=1.0 / 24.0).contains(&self.min_update_interval))
        {
            return Err("pacing.min_update_interval: must be in 0..=1/24 (day fraction)".into());
        }
        if !(self.max_step.is_finite()
            && self.max_step > 0.0
            && self.max_step <= 1.0 / 24.0
            && self.max_step >= self.min_update_interval)
        {
            return Err(
                "pacing.max_step: must be in (0, 1/24] and >= min_update_interval (day fraction)"
                    .into(),
            );
        }
        if !(self.warm_start.is_finite() && (0.0..=1.0).contains(&self.warm_start)) {
            return Err("pacing.warm_start: must be in 0..=1".into());
        }
        Ok(())
    }

    /// Largest controller state (`lambda = max_lambda`).
    fn u_max(&self) -> f64 {
        (self.max_lambda / self.lambda_knee).ln_1p()
    }

    fn lambda_of(&self, u: f64) -> f64 {
        let l = self.lambda_knee * u.exp_m1();
        if l.is_finite() {
            l.clamp(0.0, self.max_lambda)
        } else {
            0.0
        }
    }
}

/// Share of the daily budget that should be spent by `day_fraction` (0..=1,
/// clamped; NaN counts as 0) of the local day: the normalised
/// piecewise-linear integral of the hourly weights. 0 at 0, 1 at 1,
/// monotone; the identity for equal weights. Weights that do not validate
/// fall back to the even curve.
pub fn target_fraction(cfg: &PacingConfig, day_fraction: f64) -> f64 {
    let x = if day_fraction.is_nan() {
        0.0
    } else {
        day_fraction.clamp(0.0, 1.0)
    };
    let w = &cfg.hourly_weights;
    let total: f64 = w.iter().sum();
    if !(total > 0.0 && total.is_finite()) || w.iter().any(|v| !v.is_finite() || *v < 0.0) {
        return x;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let hours = x * 24.0;
    let h = (hours.floor() as usize).min(23);
    let done: f64 = w[..h].iter().sum();
    ((done + w[h] * (hours - h as f64)) / total).clamp(0.0, 1.0)
}

/// A read-out of the controller, for status endpoints and logs.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct PacerSnapshot {
    pub enabled: bool,
    pub lambda: f64,
    /// Last spend error `spent/cap - target` (budget share).
    pub error: f64,
    /// Day fraction of the last applied update (None: none yet today).
    pub day_fraction: Option<f64>,
    /// Integral state `I` (log space).
    pub integral: f64,
    /// Updates applied today.
    pub updates_today: u64,
}

/// The controller state of one pacer on one budget day, as saved for a
/// restart.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPacer {
    /// Local budget day (`YYYY-MM-DD`) the state belongs to.
    pub day: String,
    pub integral: f64,
    pub error: f64,
    pub last_t: Option<f64>,
    pub updates: u64,
    pub integral_area: f64,
    pub area_weight: f64,
}

impl SavedPacer {
    fn is_finite(&self) -> bool {
        [
            self.integral,
            self.error,
            self.integral_area,
            self.area_weight,
        ]
        .iter()
        .chain(self.last_t.iter())
        .all(|v| v.is_finite())
    }
}

/// Format tag of [`SavedPacing`].
pub const SAVED_FORMAT: &str = "nudge-pacing/1";

/// Every campaign's [`SavedPacer`]: the file a server keeps for restarts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SavedPacing {
    pub format: String,
    pub campaigns: std::collections::BTreeMap<String, SavedPacer>,
}

#[derive(Clone, Debug)]
struct State {
    integral: f64,
    error: f64,
    last_t: Option<f64>,
    updates: u64,
    /// Time-weighted sum of the integral state over today, and its weight.
    integral_area: f64,
    area_weight: f64,
}

impl State {
    fn fresh(integral: f64) -> Self {
        State {
            integral,
            error: 0.0,
            last_t: None,
            updates: 0,
            integral_area: 0.0,
            area_weight: 0.0,
        }
    }
}

/// The pacing controller. See the module docs.
pub struct Pacer {
    cfg: PacingConfig,
    /// `f64::to_bits` of the current lambda (lock-free reads).
    lambda_bits: AtomicU64,
    state: Mutex<State>,
}

impl Pacer {
    /// A pacer at `lambda = 0`. `cfg` should have passed
    /// [`PacingConfig::validate`]; the arithmetic stays finite either way.
    pub fn new(cfg: PacingConfig) -> Self {
        Pacer {
            cfg,
            lambda_bits: AtomicU64::new(0.0f64.to_bits()),
            state: Mutex::new(State::fresh(0.0)),
        }
    }

    pub fn config(&self) -> &PacingConfig {
        &self.cfg
    }

    /// Current shadow price (0 when disabled). Lock-free.
    pub fn lambda(&self) -> f64 {
        if !self.cfg.enabled {
            return 0.0;
        }
        f64::from_bits(self.lambda_bits.load(Ordering::Relaxed))
    }

    fn set_lambda(&self, l: f64) -> f64 {
        let l = if l.is_finite() { l.max(0.0) } else { 0.0 };
        self.lambda_bits.store(l.to_bits(), Ordering::Relaxed);
        l
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain numbers, always consistent between statements:
        // a panic elsewhere cannot leave it half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Feeds the controller: `day_fraction` of the local day elapsed,
    /// `spent_cents` committed today (reserved + captured), `cap_cents`
    /// today's budget. Returns the (possibly unchanged) lambda. See the
    /// module docs for the rate limiting; non-finite input or `cap_cents <=
    /// 0` changes nothing.
    pub fn update(&self, day_fraction: f64, spent_cents: i64, cap_cents: i64) -> f64 {
        if !self.cfg.enabled {
            return 0.0;
        }
        if !day_fraction.is_finite() || cap_cents <= 0 {
            return self.lambda();
        }
        let mut st = match self.state.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            // Someone else is updating right now: their result is as fresh.
            Err(TryLockError::WouldBlock) => return self.lambda(),
        };
        let t = day_fraction.clamp(0.0, 1.0);
        let dt = match st.last_t {
            Some(last) if t < last - 0.5 => {
                // Midnight passed without new_day(): start one.
                self.roll_day(&mut st);
                0.0
            }
            // (The 1e-12 slack keeps a caller on an exact one-minute grid
            // from being skipped by rounding.)
            Some(last) if t - last + 1e-12 < self.cfg.min_update_interval || t < last => {
                return self.lambda();
            }
            Some(last) => (t - last).min(self.cfg.max_step),
            None => 0.0,
        };
        let cfg = &self.cfg;
        let u_max = cfg.u_max();
        let e = (spent_cents.max(0) as f64 / cap_cents as f64 - target_fraction(cfg, t))
            .clamp(-1.0, 1.0);
        // Time-weighted mean of the integral state, for tomorrow's warm start.
        st.integral_area += st.integral * dt;
        st.area_weight += dt;
        st.integral = (st.integral + cfg.ki * e * dt).clamp(0.0, u_max);
        let u = (st.integral + cfg.kp * e).clamp(0.0, u_max);
        st.error = e;
        st.last_t = Some(t);
        st.updates += 1;
        self.set_lambda(cfg.lambda_of(u))
    }

    fn roll_day(&self, st: &mut State) {
        let mean = if st.area_weight > 0.0 {
            st.integral_area / st.area_weight
        } else {
            st.integral
        };
        let carried = (mean * self.cfg.warm_start).clamp(0.0, self.cfg.u_max());
        *st = State::fresh(carried);
        self.set_lambda(if self.cfg.enabled {
            self.cfg.lambda_of(carried)
        } else {
            0.0
        });
    }

    /// A new day: the spend error restarts at 0 and lambda restarts from
    /// yesterday's time-weighted mean integral state times
    /// [`PacingConfig::warm_start`] (see the module docs for why).
    pub fn new_day(&self) {
        let mut st = self.lock();
        self.roll_day(&mut st);
    }

    /// The state to carry over a restart, tagged with the budget `day`.
    pub fn save(&self, day: &str) -> SavedPacer {
        let st = self.lock();
        SavedPacer {
            day: day.to_owned(),
            integral: st.integral,
            error: st.error,
            last_t: st.last_t,
            updates: st.updates,
            integral_area: st.integral_area,
            area_weight: st.area_weight,
        }
    }

    /// Restores a saved state on budget day `today`: the same day continues
    /// where it stopped (lambda as the last update left it); an earlier day
    /// becomes today's warm start (as [`Pacer::new_day`]). A state from a
    /// later day (the clock went back) or with non-finite numbers is
    /// ignored. Returns whether anything was restored.
    pub fn restore(&self, saved: &SavedPacer, today: &str) -> bool {
        if !saved.is_finite() || saved.day.as_str() > today {
            return false;
        }
        let u_max = self.cfg.u_max();
        let mut st = self.lock();
        *st = State {
            integral: saved.integral.clamp(0.0, u_max),
            error: saved.error.clamp(-1.0, 1.0),
            last_t: saved.last_t.map(|t| t.clamp(0.0, 1.0)),
            updates: saved.updates,
            integral_area: saved.integral_area,
            area_weight: saved.area_weight.max(0.0),
        };
        if saved.day == today {
            let u = (st.integral + self.cfg.kp * st.error).clamp(0.0, u_max);
            self.set_lambda(if self.cfg.enabled {
                self.cfg.lambda_of(u)
            } else {
                0.0
            });
        } else {
            self.roll_day(&mut st);
        }
        true
    }

    pub fn snapshot(&self) -> PacerSnapshot {
        let st = self.lock();
        PacerSnapshot {
            enabled: self.cfg.enabled,
            lambda: self.lambda(),
            error: st.error,
            day_fraction: st.last_t,
            integral: st.integral,
            updates_today: st.updates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    /// A pacer driven ahead of the curve for a while.
    fn driven() -> Pacer {
        let p = Pacer::new(PacingConfig::default());
        for i in 0..60 {
            let t = 0.3 + f64::from(i) / 1440.0;
            p.update(t, ((t + 0.2) * 100_000.0) as i64, 100_000);
        }
        assert!(p.lambda() > 0.0);
        p
    }

    #[test]
    fn a_restored_pacer_continues_the_same_day_where_it_stopped() {
        let p = driven();
        let saved = p.save("2024-01-01");
        let q = Pacer::new(PacingConfig::default());
        assert!(q.restore(&saved, "2024-01-01"));
        assert!(close(q.lambda(), p.lambda()));
        assert_eq!(q.snapshot(), p.snapshot());
        // Both continue identically.
        assert!(close(
            p.update(0.4, 70_000, 100_000),
            q.update(0.4, 70_000, 100_000)
        ));
    }

    #[test]
    fn a_pacer_saved_yesterday_warm_starts_today_and_tomorrow_is_ignored() {
        let p = driven();
        let saved = p.save("2024-01-01");
        p.new_day();
        let q = Pacer::new(PacingConfig::default());
        assert!(q.restore(&saved, "2024-01-02"));
        assert!(close(q.lambda(), p.lambda()), "as at midnight");
        assert_eq!(q.snapshot().updates_today, 0);
        // A state from a later day (the clock went back) or with non-finite
        // numbers changes nothing.
        let r = Pacer::new(PacingConfig::default());
        assert!(!r.restore(&saved, "2023-12-31"));
        let bad = SavedPacer {
            integral: f64::NAN,
            ..saved
        };
        assert!(!r.restore(&bad, "2024-01-01"));
        assert_eq!(r.lambda(), 0.0);
    }

    #[test]
    fn even_curve_is_the_identity() {
        let cfg = PacingConfig::default();
        for i in 0..=1000 {
            let x = f64::from(i) / 1000.0;
            assert!(close(target_fraction(&cfg, x), x), "{x}");
        }
        assert_eq!(target_fraction(&cfg, -1.0), 0.0);
        assert_eq!(target_fraction(&cfg, 2.0), 1.0);
        assert_eq!(target_fraction(&cfg, f64::NAN), 0.0);
    }

    #[test]
    fn custom_weights_shape_the_curve() {
        // Nothing at night (0-6), double weight in the evening (18-24).
        let mut w = [1.0; 24];
        w[..6].iter_mut().for_each(|v| *v = 0.0);
        w[18..].iter_mut().for_each(|v| *v = 2.0);
        let cfg = PacingConfig {
            hourly_weights: w,
            ..PacingConfig::default()
        };
        cfg.validate().unwrap();
        // Total weight 12 + 12 = 24.
        assert_eq!(target_fraction(&cfg, 0.0), 0.0);
        assert!(close(target_fraction(&cfg, 6.0 / 24.0), 0.0));
        assert!(close(target_fraction(&cfg, 6.5 / 24.0), 0.5 / 24.0));
        assert!(close(target_fraction(&cfg, 18.0 / 24.0), 12.0 / 24.0));
        assert!(close(target_fraction(&cfg, 19.0 / 24.0), 14.0 / 24.0));
        assert!(close(target_fraction(&cfg, 1.0), 1.0));
        let mut prev = 0.0;
        for i in 0..=2400 {
            let y = target_fraction(&cfg, f64::from(i) / 2400.0);
            assert!(y >= prev && (0.0..=1.0).contains(&y));
            prev = y;
        }
    }

    #[test]
    fn validate_rejects_bad_settings() {
        assert!(PacingConfig::default().validate().is_ok());
        let bad = |f: fn(&mut PacingConfig)| {
            let mut c = PacingConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(|c| c.hourly_weights[3] = -1.0).contains("hourly_weights[3]"));
        assert!(bad(|c| c.hourly_weights[3] = f64::NAN).contains("hourly_weights[3]"));
        assert!(bad(|c| c.hourly_weights = [0.0; 24]).contains("sum"));
        assert!(bad(|c| c.kp = 0.0).contains("kp"));
        assert!(bad(|c| c.ki = f64::INFINITY).contains("ki"));
        assert!(bad(|c| c.max_lambda = 0.01).contains("max_lambda"));
        assert!(bad(|c| c.min_update_interval = 0.5).contains("min_update_interval"));
        assert!(bad(|c| c.max_step = 0.0).contains("max_step"));
        assert!(bad(|c| c.warm_start = 1.5).contains("warm_start"));
    }

    #[test]
    fn config_reads_from_toml_with_defaults() {
        let c: PacingConfig = toml::from_str("kp = 40.0\nenabled = false").unwrap();
        assert_eq!(
            c,
            PacingConfig {
                kp: 40.0,
                enabled: false,
                ..PacingConfig::default()
            }
        );
        assert!(toml::from_str::<PacingConfig>("kq = 1.0").is_err());
    }

    #[test]
    fn lambda_rises_when_ahead_of_the_curve() {
        let p = Pacer::new(PacingConfig::default());
        assert_eq!(p.lambda(), 0.0);
        let cap = 100_000;
        let mut last = 0.0;
        // 5 % ahead of the curve for an hour, one update a minute.
        for m in 0..60 {
            let t = 0.25 + f64::from(m) * MINUTE;
            let spent = ((t + 0.05) * cap as f64) as i64;
            let l = p.update(t, spent, cap);
            assert!(l >= last, "lambda falls while overspending: {l} < {last}");
            last = l;
        }
        assert!(last > 1.0, "{last}");
        assert!(p.snapshot().error > 0.04);
    }

    #[test]
    fn lambda_decays_to_zero_when_behind() {
        let p = Pacer::new(PacingConfig::default());
        let cap = 100_000;
        for m in 0..60 {
            let t = 0.25 + f64::from(m) * MINUTE;
            p.update(t, ((t + 0.05) * cap as f64) as i64, cap);
        }
        assert!(p.lambda() > 1.0);
        // Now 3 % behind: lambda must go all the way to 0, monotonically.
        let mut last = p.lambda();
        for m in 60..240 {
            let t = 0.25 + f64::from(m) * MINUTE;
            let l = p.update(t, ((t - 0.03) * cap as f64) as i64, cap);
            assert!(l <= last && l >= 0.0);
            last = l;
        }
        assert_eq!(last, 0.0);
        assert_eq!(p.snapshot().integral, 0.0);
    }

    #[test]
    fn disabled_stays_zero() {
        let p = Pacer::new(PacingConfig {
            enabled: false,
            ..PacingConfig::default()
        });
        for m in 0..100 {
            let t = f64::from(m) * MINUTE;
            assert_eq!(p.update(t, 100_000, 100_000), 0.0);
        }
        p.new_day();
        assert_eq!(p.lambda(), 0.0);
    }

    #[test]
    fn updates_are_rate_limited_and_frequency_independent() {
        // Calling every second or every minute gives the same lambda.
        let cap = 100_000;
        let spent = |t: f64| ((t * 1.02 + 0.01) * cap as f64) as i64;
        let fast = Pacer::new(PacingConfig::default());
        let slow = Pacer::new(PacingConfig::default());
        for s in 0..(4 * 3_600) {
            let t = 0.3 + f64::from(s) / 86_400.0;
            fast.update(t, spent(t), cap);
            if s % 60 == 0 {
                slow.update(t, spent(t), cap);
            }
        }
        let (a, b) = (fast.lambda(), slow.lambda());
        assert!(a > 0.0 && (a - b).abs() <= 1e-9 * a.max(1.0), "{a} vs {b}");
        // A second call within the minute changes nothing.
        let last = slow.snapshot().day_fraction.unwrap();
        let l = slow.update(last + 0.5 * MINUTE, 0, cap);
        assert_eq!(l, b);
        // One call after a long gap integrates at most max_step.
        let gap = Pacer::new(PacingConfig::default());
        gap.update(0.1, 0, cap);
        let before = gap.snapshot().integral;
        gap.update(0.6, (0.7 * cap as f64) as i64, cap);
        let cfg = PacingConfig::default();
        let bound = before + cfg.ki * 0.1 * cfg.max_step + 1e-9;
        assert!(gap.snapshot().integral <= bound);
    }

    #[test]
    fn never_negative_nan_or_above_the_clamp() {
        let cfg = PacingConfig::default();
        let p = Pacer::new(cfg.clone());
        let inputs = [
            (0.1, i64::MAX, 1),
            (0.2, -5, 100),
            (f64::NAN, 10, 100),
            (f64::INFINITY, 10, 100),
            (0.3, 10, 0),
            (0.4, 10, -7),
            (0.5, i64::MAX, i64::MAX),
            (1.5, 0, 100),
            (-3.0, 1_000, 100),
        ];
        for _ in 0..50 {
            for (i, &(t, s, c)) in inputs.iter().enumerate() {
                let l = p.update(t + i as f64 * MINUTE, s, c);
                assert!(l.is_finite() && l >= 0.0 && l <= cfg.max_lambda, "{l}");
                assert_eq!(l, p.lambda());
            }
        }
        // Saturated overspend reaches exactly max_lambda, not more.
        let p = Pacer::new(cfg.clone());
        for m in 0..600 {
            p.update(f64::from(m) * MINUTE, 100, 100);
        }
        assert!((p.lambda() - cfg.max_lambda).abs() < 1e-9);
    }

    #[test]
    fn new_day_warm_starts_from_the_day_mean() {
        let cap = 100_000;
        let p = Pacer::new(PacingConfig::default());
        for m in 0..1_440 {
            let t = f64::from(m) * MINUTE;
            p.update(t, ((t + 0.02).min(1.0) * cap as f64) as i64, cap);
        }
        let snap = p.snapshot();
        assert!(snap.integral > 0.0);
        p.new_day();
        let after = p.snapshot();
        assert_eq!(after.day_fraction, None);
        assert_eq!(after.updates_today, 0);
        assert!(after.integral > 0.0 && after.integral <= snap.integral + 1e-12);
        assert!(p.lambda() > 0.0);
        // A cold-start configuration forgets.
        let cold = Pacer::new(PacingConfig {
            warm_start: 0.0,
            ..PacingConfig::default()
        });
        for m in 0..600 {
            let t = f64::from(m) * MINUTE;
            cold.update(t, ((t + 0.02) * cap as f64) as i64, cap);
        }
        assert!(cold.lambda() > 0.0);
        cold.new_day();
        assert_eq!(cold.lambda(), 0.0);
    }

    #[test]
    fn a_missed_midnight_starts_a_new_day_but_racing_callers_do_not() {
        let cap = 100_000;
        let p = Pacer::new(PacingConfig::default());
        for m in 0..1_400 {
            let t = f64::from(m) * MINUTE;
            p.update(t, ((t + 0.02) * cap as f64) as i64, cap);
        }
        let n = p.snapshot().updates_today;
        // A caller whose clock read is a few seconds stale: ignored.
        p.update(1_399.0 * MINUTE - 0.0001, 0, cap);
        assert_eq!(p.snapshot().updates_today, n);
        // Next day's 00:01 without new_day(): a new day.
        p.update(MINUTE, 100, cap);
        assert_eq!(p.snapshot().updates_today, 1);
        assert_eq!(p.snapshot().day_fraction, Some(MINUTE));
    }

    #[test]
    fn pacer_is_shareable_across_threads() {
        fn assert_sync<T: Send + Sync>() {}
        assert_sync::<Pacer>();
        let p = std::sync::Arc::new(Pacer::new(PacingConfig::default()));
        let hs: Vec<_> = (0..4)
            .map(|k| {
                let p = p.clone();
                std::thread::spawn(move || {
                    for m in 0..500 {
                        let t = (f64::from(m) + f64::from(k) * 0.25) * MINUTE;
                        let l = p.update(t, ((t + 0.05) * 1e5) as i64, 100_000);
                        assert!(l.is_finite() && l >= 0.0);
                    }
                })
            })
            .collect();
        hs.into_iter().for_each(|h| h.join().unwrap());
        assert!(p.lambda() > 0.0);
    }
}
