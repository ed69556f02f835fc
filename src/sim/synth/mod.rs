//! Synthetic sessions: a seeded generator of realistic shop visits with a
//! ground-truth behaviour model.
//!
//! Used by the trainer (`nudge-train`), the server tests and benches, and a
//! simulator that needs to know what a voucher *would* have done. Everything
//! is drawn from one [`ChaCha8Rng`] seeded from [`GeneratorConfig::seed`], so
//! the same seed gives byte-identical sessions on every platform and release
//! of this crate (as long as the numbers below do not change).
//!
//! # Behaviour model
//!
//! **Arrivals.** Sessions arrive as a Poisson process with
//! [`GeneratorConfig::sessions_per_hour`] (default 2,000/h); the first starts
//! at [`GeneratorConfig::start_ms`].
//!
//! **Context.** Device: desktop 45 %, mobile 45 %, tablet 10 %. Traffic
//! source: search 30 %, direct 20 %, ads 20 %, social 14 %, e-mail 8 %,
//! referral 8 %. Returning visitor with a source-dependent probability
//! (e-mail 80 %, direct 50 %, search/referral 30 %, ads/social 20 %; about
//! 35 % overall). A returning visitor has no prior order with probability
//! 30 %, else `1 + Geometric` orders with mean about 3.
//!
//! **Latent variables** (recorded in [`Truth`]):
//! - purchase intent `u ~ Normal(mu, 1)` with `mu = -0.45` plus source
//!   (e-mail +0.5, direct +0.3, search +0.1, referral 0, ads -0.2,
//!   social -0.6), returning +0.3 and `+0.2 ln(1 + prior_orders)`, device
//!   (desktop +0.1, mobile -0.2) and a small evening peak
//!   (`+0.15 cos(2 pi (hour - 20) / 24)`, UTC);
//! - visible price consciousness `w = sigmoid(2 l_v)`, `l_v = a + 0.9 z_v`
//!   with `z_v ~ Normal(0, 1)` and `a = -0.4`, +0.6 for new visitors, -0.2
//!   for returning ones, and social +0.5, ads +0.4, e-mail +0.3, direct
//!   -0.3 (mean about 0.5): what the visitor's walk shows;
//! - price sensitivity `s = sigmoid(M + r (l_v - M) + sqrt(1 - r^2) D z_h)`
//!   in (0, 1), with a hidden `z_h ~ Normal(0, 1)`, `M = 0.0372` and
//!   `D = 1.0327` the mean and standard deviation of `l_v`, and the
//!   world's visibility `r` ([`ResponseWorld`], [`world`]): the logit of
//!   `s` has the distribution of `l_v` in every world and correlation `r`
//!   with it (calibrated 0.8, faint 0.25, invisible 0); mean about 0.5;
//! - basket budget `B ~ LogNormal(ln 80 EUR, 0.6)`, clamped to 5..2,000 EUR.
//!   Viewed products cost about `B * LogNormal(0, 0.45)`, so about 38 % of
//!   the sessions that view a product have an intent value of 99 EUR or
//!   more.
//!
//! **Catalogue.** [`CATALOG_SIZE`] products `p00000..`; product `i` costs
//! `60 EUR * exp(0.55 * logit((i + 0.5) / N))` rounded to `x.99` (a
//! log-logistic price ladder), so the same product always has the same
//! price.
//!
//! **Event stream.** A page-by-page walk driven by `u` and `w` (never by
//! `s` itself):
//! - landing page by source (search/ads/social/referral land mostly on a
//!   product page, direct mostly on home, e-mail on home or a category);
//! - bounce after the first page with `sigmoid(-0.5 - 1.1 u + 0.3 [mobile])`
//!   (about half the sessions), afterwards leave after a page with
//!   `sigmoid(-1.7 - 0.7 u + 0.04 pages - 1.2 (w - 0.5) [product page])`
//!   (price-conscious visitors stay to compare products);
//! - home -> category / search / product; category -> product (price sort
//!   with `0.02 + 0.5 w`); search (12 % zero results) -> product; product ->
//!   more products, cart add with `sigmoid(-1.6 + 0.9 u - 1.2 max(0,
//!   ln(price / B)) - 1.5 [cart > B])`; cart -> checkout step 1 with
//!   `sigmoid(0.3 + 0.9 u - 0.6 w + 0.3 [returning])`; step k -> k + 1
//!   with `sigmoid(1.2 + 0.7 u - 0.5 w - 0.4 [coupon field focused])`,
//!   else back to the cart or gone; step 4 (review and pay) ends the visit;
//! - which product: after the first, back to one already viewed with
//!   `0.05 + 0.4 w`, else a comparison in the last product's price band
//!   (`LogNormal(0, 0.06)` around its price, a catalogue neighbour) with
//!   `0.02 + 0.6 w`, else one priced about
//!   `B (1 - 0.1 w) LogNormal(0, 0.45)` (0.8x after a price sort);
//! - dwell per page `LogNormal(ln(base * exp(0.25 u)), 0.8)` clamped to
//!   2..300 s (base: home 12 s, category 20 s, product 40 s, search 15 s,
//!   cart 25 s, checkout 45 s), 0.3..2.5 s navigation between pages;
//! - interactions on a page: image zoom (product, `0.25 + 0.1 [desktop]`),
//!   reviews (`0.15 + 0.1 w + 0.05 u`), shipping info (`0.06 + 0.1 w`,
//!   more in cart/checkout), coupon-field focus in the cart
//!   (`0.02 + 0.6 w`) and checkout steps 2-3 (`0.3 w`), cart remove in the
//!   cart (`0.03 + 0.2 w`), tab hidden (`0.02 + 0.1 w`), and exit intent:
//!   just before leaving with `0.35 + 0.4 w` (desktop) / `0.1 + 0.4 w`
//!   (mobile, tablet), plus `0.01 + 0.02 w` false alarms per page;
//! - a page view is reported when the page is left (`at_ms` = page start +
//!   dwell, so `dwell_ms` is known), interactions at their own time inside
//!   the page, a search or checkout step when the page opens. Timestamps
//!   never decrease. At most [`MAX_EVENTS`] events per session.
//!
//! **Outcome without voucher.** Purchase (in the visit or within the
//! attribution window) with probability `sigmoid(base_logit)`,
//!
//! ```text
//! base_logit = -4.2 + 0.8 u - 0.5 s + 0.2 [returning]
//!            + 1.8 [cart not empty] + (0, 0.8, 1.5, 2.2, 3.3)[checkout step]
//!            + 0.3 ln(1 + product views) - 0.6 s [cart > 1.3 B]
//!            - 1.5 [nothing was priced]
//! ```
//!
//! (`checkout step` = furthest step reached). With seed 42 (100,000
//! sessions, calibrated) about 50 % of the sessions see one page, 25 % add
//! to the cart, 10.6 % reach checkout (6.6 % step 4) and about 10 %
//! convert: 3 % without checkout, 29 / 45 / 63 / 88 % after reaching step
//! 1 / 2 / 3 / 4. The median order is about 86 EUR.
//!
//! and [`Truth::purchase_uniform`] `< sigmoid(base_logit)` decides it, so a
//! simulator can reuse the same draw for the counterfactual with a voucher.
//! The order value is the cart value, else the most-considered product's
//! price, else `B`.
//!
//! **Voucher response.** A voucher of `v` EUR adds
//! `lift(v) = k s^g (1 - exp(-v / (c B)))` to the purchase log-odds
//! ([`voucher_lift`], [`ResponseWorld::lift`]): price-sensitive visitors
//! respond much more (`g > 1` concentrates the effect), a voucher matters
//! relative to the basket, and each further euro adds less. The calibrated
//! world (`k = 8.5`, `g = 2`, `c = 0.125`) matches published randomised
//! voucher and e-mail experiments: among buyers when everyone gets the
//! voucher, 36 / 50 / 60 % would not have bought without 5 / 10 / 20 EUR
//! (seed 42, 20,000 sessions), and the 20 % of visitors with the largest
//! true uplift hold 77 % of the incremental conversions of 10 EUR. For
//! `s = 0.5`, `B = 80 EUR`, 10 EUR gives +1.34 log-odds, moving a hesitant
//! visitor from 30 % to about 62 %; near 0 or 1 the same lift moves the
//! probability much less. [`world`] gives every world's numbers and
//! measured figures.
//!
//! **Decision points.** The web tier asks Decide after each event from the
//! third on with probability 0.3, always at an exit-intent signal and at the
//! last event; `at_ms` is the event time plus 0.3..4 s, but never later than
//! the next event (a snapshot never sees the future).

mod walk;
pub mod world;

pub use world::ResponseWorld;

use crate::domain::features::{self, Features};
use crate::domain::session::{
    Context, Device, Event, EventKind, PageKind, ProductKey, SessionState, Signal, TrafficSource,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp, StandardNormal};
use serde::{Deserialize, Serialize};
use walk::Walk;

/// Voucher amounts (cents) whose lifts [`Truth::tier_lift`] records.
pub const VOUCHER_TIERS_CENTS: [i64; 3] = [500, 1_000, 2_000];
/// Number of products in the synthetic catalogue.
pub const CATALOG_SIZE: u32 = 5_000;
/// Hard cap on events per generated session.
pub const MAX_EVENTS: usize = 120;

const CATALOG_MEDIAN_EUR: f64 = 60.0;
const CATALOG_SPREAD: f64 = 0.55;
const MS_PER_HOUR: i64 = 3_600_000;
const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;

/// Generator settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeneratorConfig {
    pub seed: u64,
    /// Epoch milliseconds of the first session.
    pub start_ms: i64,
    /// Arrival rate of sessions.
    pub sessions_per_hour: f64,
    /// The voucher response and how visible sensitivity is (absent in old
    /// configs: calibrated).
    #[serde(default)]
    pub world: ResponseWorld,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            seed: 42,
            // 2024-01-01T00:00:00Z
            start_ms: 1_704_067_200_000,
            sessions_per_hour: 2_000.0,
            world: ResponseWorld::Calibrated,
        }
    }
}

/// A moment at which the web tier asks Decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionPoint {
    /// `events[..after_events]` are known at this moment (>= 1).
    pub after_events: usize,
    /// Decision time, epoch ms (>= the time of the last known event).
    pub at_ms: i64,
}

/// Ground truth of one session (for simulators and tests only; the service
/// never sees it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Truth {
    /// Latent purchase intent `u`.
    pub intent: f64,
    /// Price sensitivity `s` in (0, 1).
    pub price_sensitivity: f64,
    /// Basket budget `B`, EUR.
    pub basket_eur: f64,
    /// Purchase log-odds without a voucher, given the whole session.
    pub base_logit: f64,
    /// `(voucher cents, additive log-odds lift)` for [`VOUCHER_TIERS_CENTS`].
    pub tier_lift: Vec<(i64, f64)>,
    /// The uniform draw that decided the outcome:
    /// `outcome.converted == (purchase_uniform < p_buy(0))`. Reuse it for
    /// counterfactuals (common random numbers).
    pub purchase_uniform: f64,
    /// The world whose response [`Truth::lift`] follows for amounts other
    /// than the recorded tiers (absent in old files: calibrated).
    #[serde(default)]
    pub world: ResponseWorld,
}

/// The voucher response of `world`: additive purchase log-odds of a
/// `voucher_cents` voucher for a visitor with price sensitivity `s` and
/// budget `basket_eur` ([`ResponseWorld::lift`]).
pub fn voucher_lift(world: ResponseWorld, voucher_cents: i64, s: f64, basket_eur: f64) -> f64 {
    world.lift(voucher_cents, s, basket_eur)
}

impl Truth {
    /// Lift (log-odds) of a voucher of `voucher_cents` (0 = none): the
    /// recorded tier value for 500/1000/2000, else [`voucher_lift`].
    pub fn lift(&self, voucher_cents: i64) -> f64 {
        if voucher_cents <= 0 {
            return 0.0;
        }
        self.tier_lift
            .iter()
            .find(|(c, _)| *c == voucher_cents)
            .map(|(_, l)| *l)
            .unwrap_or_else(|| {
                voucher_lift(
                    self.world,
                    voucher_cents,
                    self.price_sensitivity,
                    self.basket_eur,
                )
            })
    }

    /// Purchase probability with a voucher of `voucher_cents` (0 = none).
    pub fn p_buy(&self, voucher_cents: i64) -> f64 {
        crate::domain::logistic::sigmoid(self.base_logit + self.lift(voucher_cents))
    }

    /// Whether the visitor buys with a voucher of `voucher_cents`, using the
    /// session's own random draw (so `converts_with(0) == outcome.converted`
    /// and a bigger voucher never turns a buyer into a non-buyer).
    pub fn converts_with(&self, voucher_cents: i64) -> bool {
        self.purchase_uniform < self.p_buy(voucher_cents)
    }
}

/// What happened without a voucher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub converted: bool,
    /// Order value in cents (0 when not converted).
    pub order_value_cents: i64,
}

/// One generated visit.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct GeneratedSession {
    pub session_id: String,
    pub visitor_id: String,
    pub context: Context,
    /// Events in time order (non-decreasing `at_ms`).
    pub events: Vec<Event>,
    /// Moments the web tier asks Decide, in increasing `after_events`.
    pub decision_points: Vec<DecisionPoint>,
    /// Ground truth, for the simulator and tests only.
    pub truth: Truth,
    /// What happened with no voucher.
    pub outcome: Outcome,
}

/// Session state after the first `after_events` events (clamped to the
/// session length).
pub fn state_at(session: &GeneratedSession, after_events: usize) -> SessionState {
    let mut state = SessionState::new(session.context);
    for e in &session.events[..after_events.min(session.events.len())] {
        state.apply(e);
    }
    state
}

/// Features at a decision point, through the one feature path
/// ([`SessionState::apply`] + [`features::compute`]).
pub fn replay(session: &GeneratedSession, point: &DecisionPoint) -> Features {
    features::compute(&state_at(session, point.after_events), point.at_ms)
}

/// Price of catalogue product `idx`, cents (`x.99` EUR).
pub fn catalog_price_cents(idx: u32) -> i64 {
    let q = (f64::from(idx.min(CATALOG_SIZE - 1)) + 0.5) / f64::from(CATALOG_SIZE);
    let eur = CATALOG_MEDIAN_EUR * (CATALOG_SPREAD * (q / (1.0 - q)).ln()).exp();
    (eur.clamp(3.0, 3_000.0).round() as i64) * 100 - 1
}

/// Catalogue product whose price is closest to `eur` (inverse of the ladder).
fn catalog_index_near(eur: f64) -> u32 {
    let q = crate::domain::logistic::sigmoid(
        (eur.max(0.01) / CATALOG_MEDIAN_EUR).ln() / CATALOG_SPREAD,
    );
    ((q * f64::from(CATALOG_SIZE)) as u32).min(CATALOG_SIZE - 1)
}

fn product_key(idx: u32) -> ProductKey {
    ProductKey::of(&format!("p{idx:05}"))
}

fn sigmoid(z: f64) -> f64 {
    crate::domain::logistic::sigmoid(z)
}

/// The seeded session generator. Also an endless [`Iterator`].
pub struct Generator {
    cfg: GeneratorConfig,
    rng: ChaCha8Rng,
    clock_ms: i64,
    seq: u64,
}

impl Generator {
    pub fn new(cfg: GeneratorConfig) -> Self {
        Generator {
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            clock_ms: cfg.start_ms,
            seq: 0,
            cfg,
        }
    }

    pub fn config(&self) -> &GeneratorConfig {
        &self.cfg
    }

    pub fn next_session(&mut self) -> GeneratedSession {
        let start_ms = self.clock_ms;
        let seq = self.seq;
        self.seq += 1;
        let rate_per_ms = self.cfg.sessions_per_hour.max(1e-6) / MS_PER_HOUR as f64;
        let gap: f64 = Exp::new(rate_per_ms)
            .expect("positive rate")
            .sample(&mut self.rng);
        self.clock_ms = start_ms + gap.min(1e12) as i64;
        Walk::new(&mut self.rng, start_ms).session(self.cfg.seed, seq, self.cfg.world)
    }
}

impl Iterator for Generator {
    type Item = GeneratedSession;
    fn next(&mut self) -> Option<GeneratedSession> {
        Some(self.next_session())
    }
}

/// Pick an index by weights (weights need not sum to 1).
fn pick(rng: &mut ChaCha8Rng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Page {
    Home,
    Category,
    Product,
    Search,
    Cart,
    Checkout(u8),
    Other,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(seed: u64, n: usize) -> Vec<GeneratedSession> {
        Generator::new(GeneratorConfig {
            seed,
            ..GeneratorConfig::default()
        })
        .take(n)
        .collect()
    }

    #[test]
    fn same_seed_same_sessions() {
        let a = serde_json::to_string(&sessions(7, 300)).unwrap();
        let b = serde_json::to_string(&sessions(7, 300)).unwrap();
        assert_eq!(a, b);
        let c = serde_json::to_string(&sessions(8, 300)).unwrap();
        assert_ne!(a, c);
    }

    #[test]
    fn worlds_share_the_walks_and_old_configs_parse() {
        let of = |world| -> Vec<GeneratedSession> {
            Generator::new(GeneratorConfig {
                seed: 9,
                world,
                ..GeneratorConfig::default()
            })
            .take(300)
            .collect()
        };
        let cal = of(ResponseWorld::Calibrated);
        for world in [ResponseWorld::Faint, ResponseWorld::Invisible] {
            let other = of(world);
            let mut differs = 0;
            for (a, b) in cal.iter().zip(&other) {
                assert_eq!(a.events, b.events);
                assert_eq!(a.decision_points, b.decision_points);
                assert_eq!(b.truth.world, world);
                differs += usize::from(a.truth.price_sensitivity != b.truth.price_sensitivity);
            }
            assert!(differs > 250, "{world}: sensitivity differs in {differs}");
        }
        let old = r#"{"seed":3,"start_ms":0,"sessions_per_hour":10.0}"#;
        let cfg: GeneratorConfig = serde_json::from_str(old).unwrap();
        assert_eq!(cfg.world, ResponseWorld::Calibrated);
        let mut truth = serde_json::to_value(&cal[0].truth).unwrap();
        truth.as_object_mut().unwrap().remove("world");
        let back: Truth = serde_json::from_value(truth).unwrap();
        assert_eq!(back.world, ResponseWorld::Calibrated);
    }

    #[test]
    fn timestamps_and_decision_points_are_consistent() {
        for s in sessions(1, 2_000) {
            assert!(!s.events.is_empty() && s.events.len() <= MAX_EVENTS);
            assert!(s.events[0].at_ms >= GeneratorConfig::default().start_ms);
            for w in s.events.windows(2) {
                assert!(w[0].at_ms <= w[1].at_ms, "{}", s.session_id);
            }
            assert!(!s.decision_points.is_empty());
            let mut prev = 0;
            for p in &s.decision_points {
                assert!(p.after_events > prev && p.after_events <= s.events.len());
                prev = p.after_events;
                assert!(p.at_ms >= s.events[p.after_events - 1].at_ms);
                if let Some(next) = s.events.get(p.after_events) {
                    assert!(p.at_ms <= next.at_ms, "decision sees no future");
                }
                let f = replay(&s, p);
                assert!(f.0.iter().all(|v| v.is_finite()));
                assert_eq!(f.get(features::F::events) as usize, p.after_events);
            }
            assert_eq!(
                s.decision_points.last().unwrap().after_events,
                s.events.len()
            );
            assert_eq!(s.truth.converts_with(0), s.outcome.converted);
        }
    }

    #[test]
    fn aggregate_stays_bounded() {
        for s in sessions(2, 1_000) {
            let st = state_at(&s, usize::MAX);
            assert_eq!(st.events as usize, s.events.len());
            assert!(st.cart_value_cents >= 0);
            assert!(st.checkout_step_max <= 4);
            assert!(
                st.products.iter().filter(|p| p.views > 0).count()
                    <= crate::domain::session::PRODUCT_SLOTS
            );
            assert!(st.intent_value_cents() < 100_000_000);
            if s.outcome.converted {
                assert!(s.outcome.order_value_cents > 0);
            } else {
                assert_eq!(s.outcome.order_value_cents, 0);
            }
        }
    }

    #[test]
    fn rates_are_plausible() {
        let all = sessions(3, 10_000);
        let n = all.len() as f64;
        let conv = all.iter().filter(|s| s.outcome.converted).count() as f64 / n;
        assert!((0.05..0.20).contains(&conv), "conversion {conv}");
        let bounce = all
            .iter()
            .filter(|s| state_at(s, usize::MAX).page_views_total() <= 2)
            .count() as f64
            / n;
        assert!((0.3..0.7).contains(&bounce), "bounce {bounce}");
        let priced: Vec<i64> = all
            .iter()
            .map(|s| state_at(s, usize::MAX).intent_value_cents())
            .filter(|v| *v > 0)
            .collect();
        let high = priced.iter().filter(|v| **v >= 9_900).count() as f64 / priced.len() as f64;
        assert!(
            (0.25..0.5).contains(&high),
            "intent value >= 99 EUR: {high}"
        );
        let checkout = all
            .iter()
            .filter(|s| state_at(s, usize::MAX).checkout_step_max > 0)
            .count() as f64
            / n;
        assert!(
            (0.04..0.25).contains(&checkout),
            "checkout reached {checkout}"
        );
    }

    #[test]
    fn voucher_lift_is_monotone_and_sized() {
        for world in ResponseWorld::ALL {
            let t = Truth {
                intent: 0.0,
                price_sensitivity: 0.5,
                basket_eur: 80.0,
                base_logit: crate::domain::logistic::logit(0.3),
                tier_lift: VOUCHER_TIERS_CENTS
                    .iter()
                    .map(|&c| (c, voucher_lift(world, c, 0.5, 80.0)))
                    .collect(),
                purchase_uniform: 0.5,
                world,
            };
            assert!(t.p_buy(500) < t.p_buy(1_000) && t.p_buy(1_000) < t.p_buy(2_000));
            assert!(t.p_buy(700) > t.p_buy(500) && t.p_buy(700) < t.p_buy(1_000));
            assert_eq!(t.p_buy(0), t.p_buy(-5));
            assert!((t.p_buy(0) - 0.3).abs() < 1e-12);
        }
        // A median visitor (s = 0.5, B = 80 EUR) at 30 %: 10 EUR moves them
        // by about 40 points in the calibrated world, by about one in the
        // invisible one.
        let d10 = |world| {
            let l = voucher_lift(world, 1_000, 0.5, 80.0);
            crate::domain::logistic::sigmoid(crate::domain::logistic::logit(0.3) + l) - 0.3
        };
        assert!(
            (0.3..0.5).contains(&d10(ResponseWorld::Calibrated)),
            "{}",
            d10(ResponseWorld::Calibrated)
        );
        assert!(d10(ResponseWorld::Invisible) < 0.02);
    }

    #[test]
    fn catalogue_ladder_round_trips() {
        for idx in [10, 500, 2_500, 4_000, 4_990] {
            let eur = catalog_price_cents(idx) as f64 / 100.0;
            let back = catalog_index_near(eur);
            assert!(
                (i64::from(back) - i64::from(idx)).abs() <= 40,
                "{idx} {back}"
            );
        }
        assert!(catalog_price_cents(0) > 0);
    }
}
