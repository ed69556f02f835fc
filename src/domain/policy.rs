//! The decision rule: segment from the probability, and which voucher (if
//! any) pays. Pure functions, no I/O.
//!
//! For a hesitant visitor with intent value `V >= min_intent`, each tier `v`
//! moves the purchase probability from `p0` to
//! `p_v = sigmoid(logit(p0) + lift_v)`. The expected net value of offering
//! `v` against offering nothing is
//!
//! ```text
//! ENV(v) = p_v * (m*V - v) - p0 * m*V
//! ```
//!
//! with `m` the gross margin rate: with the voucher we earn the margin minus
//! the voucher on every purchase (`p_v`), without it we earn the full margin
//! on the purchases that would have happened anyway (`p0`). The voucher is
//! only paid when redeemed, which happens only with a purchase. We take the
//! argmax over the tiers and offer it only when it is strictly positive.
//!
//! Pacing adds a shadow price `lambda >= 0` on the expected voucher cost
//! `p_v * v`: tiers are ranked by `ENV(v) - lambda * p_v * v` and offered
//! only when that is > 0. With `lambda = 0` this is the plain rule; a larger
//! `lambda` keeps only the offers that earn the most per euro of budget.
//!
//! **No greedy offer on a prior.** A tier's lift is *learned* when the model
//! file carries an uplift arm for its amount; otherwise it is the config's
//! prior, and priors are optimistic (randomised studies find that only
//! 35-65 % of the buyers who got a voucher were moved by it). Unless
//! `Policy::offer_on_priors` is set, the rule ranks learned tiers only; a
//! visitor for whom only unlearned tiers would pay gets
//! [`Verdict::NotLearned`], and exploration (with its learning budget) is
//! what may still offer.

use crate::domain::logistic::{logit, sigmoid};
use serde::{Deserialize, Serialize};

/// Probability cut-offs for the segments: hot at or above `hot_at_or_above`,
/// cold below `cold_below`, hesitant in between.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentThresholds {
    pub hot_at_or_above: f64,
    pub cold_below: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Hot,
    Hesitant,
    Cold,
}

/// Hot at or above `hot_at_or_above`, cold below `cold_below`, else hesitant.
pub fn segment(p: f64, t: SegmentThresholds) -> Segment {
    if p >= t.hot_at_or_above {
        Segment::Hot
    } else if p < t.cold_below {
        Segment::Cold
    } else {
        Segment::Hesitant
    }
}

/// A voucher tier with its (prior or learned) log-odds lift.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tier {
    pub amount_cents: i64,
    pub lift: f64,
}

/// Validated policy parameters (see `config::PolicyConfig`).
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub min_intent_cents: i64,
    pub margin_rate: f64,
    /// Non-empty, amounts positive and distinct, lifts finite.
    pub tiers: Vec<Tier>,
    /// When a voucher may be offered at all.
    pub trigger: OfferTrigger,
    /// Whether tiers whose response was never learned (no uplift arm in the
    /// model file) may be offered greedily on their prior lift. Default
    /// false: only learned tiers are ranked.
    pub offer_on_priors: bool,
}

/// When in a session a voucher may be offered.
///
/// A voucher's value depends on how the session ends: early in a visit the
/// model's `p0` averages over futures that end in checkout (the voucher is
/// paid for nothing) and futures that end in a bounce. At an exit-intent
/// signal the visitor is about to leave and `p0` is close to what it will
/// be. In `nudge simulate` (closed-loop model, no budget) offering only at
/// exit intent moved the expected net value of the rule from -1,417 to
/// -141 EUR/day (README "Simulating policies").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OfferTrigger {
    /// At any decision (the default).
    #[default]
    Any,
    /// Only when an exit-intent signal is at most `window_ms` old at the
    /// decision time. Other decisions answer `AwaitingTrigger`: not
    /// eligible, so neither holdout nor exploration is drawn there and the
    /// randomised rows describe the moments the rule acts on.
    ExitIntent { window_ms: i64 },
}

impl OfferTrigger {
    /// Whether an offer may be made at `now_ms` given the time of the
    /// session's latest exit-intent signal (0: none).
    pub fn fired(self, last_exit_intent_ms: i64, now_ms: i64) -> bool {
        match self {
            OfferTrigger::Any => true,
            OfferTrigger::ExitIntent { window_ms } => {
                last_exit_intent_ms > 0
                    && now_ms >= last_exit_intent_ms
                    && now_ms - last_exit_intent_ms <= window_ms
            }
        }
    }
}

impl Policy {
    /// The action index of a voucher amount as the experiment numbers
    /// actions: 0 = no voucher, `i` = `tiers[i - 1]`. An amount that is not
    /// a configured tier counts as no voucher.
    pub fn action_index(&self, amount_cents: i64) -> usize {
        self.tiers
            .iter()
            .position(|t| t.amount_cents == amount_cents)
            .map_or(0, |i| i + 1)
    }

    /// The tiers' amounts, smallest first.
    pub fn amounts_ascending(&self) -> Vec<i64> {
        let mut a: Vec<i64> = self.tiers.iter().map(|t| t.amount_cents).collect();
        a.sort_unstable();
        a
    }
}

/// What the rule concluded before any budget is consulted.
// The Offer variant is larger on purpose: a fixed array keeps the decision
// path allocation-free, and a Verdict lives on the stack for one request.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Verdict {
    NotHesitant,
    IntentTooLow,
    /// Hesitant with enough intent, but the policy's [`OfferTrigger`] has
    /// not fired at this decision.
    AwaitingTrigger,
    /// Best tier's ENV is not > 0; carries the best ENV in cents.
    RoiNotPositive {
        best_net_value_cents: i64,
    },
    /// Some tier has ENV > 0, but none beats the pacing shadow price.
    Paced {
        best_net_value_cents: i64,
    },
    /// Only tiers whose response was never learned would pay, on their
    /// prior lift, and the policy does not offer on priors; carries the
    /// best prior ENV in cents.
    NotLearned {
        best_prior_net_value_cents: i64,
    },
    /// Offer: tiers with positive (paced) value, best first (so a budget that cannot
    /// afford the best may still afford the next).
    Offer {
        ranked: [Option<Candidate>; MAX_TIERS],
    },
}

/// Upper bound on configured tiers (keeps [`Verdict`] allocation-free).
pub const MAX_TIERS: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub amount_cents: i64,
    /// ENV(v), rounded to cents.
    pub net_value_cents: i64,
    pub p_with_voucher: f64,
    /// ENV(v) - lambda * p_v * v (what the ranking uses).
    pub paced_value: f64,
}

/// Expected net value in (fractional) cents of offering `tier` against none.
pub fn expected_net_value(p0: f64, intent_cents: i64, margin_rate: f64, tier: Tier) -> (f64, f64) {
    let margin = margin_rate * intent_cents as f64;
    let pv = sigmoid(logit(p0) + tier.lift);
    (pv * (margin - tier.amount_cents as f64) - p0 * margin, pv)
}

/// The voucher rule with the configured (prior) lifts only: every tier is
/// unlearned. `p0` is the model's probability without a voucher, `lambda`
/// the pacing shadow price (0 when unpaced).
pub fn choose(p0: f64, seg: Segment, intent_cents: i64, policy: &Policy, lambda: f64) -> Verdict {
    choose_with_lifts(p0, seg, intent_cents, policy, lambda, None)
}

/// The largest of two optional values.
fn max_of(a: Option<f64>, b: f64) -> Option<f64> {
    Some(a.map_or(b, |a| a.max(b)))
}

fn to_cents(x: f64) -> i64 {
    if x.is_finite() {
        x.round() as i64
    } else {
        0
    }
}

/// The voucher rule with per-session lifts: `lifts[i]`, when finite,
/// replaces the prior lift of `policy.tiers[i]` (learned voucher response);
/// a tier without one is unlearned and ranked only when
/// `policy.offer_on_priors` (module docs).
pub fn choose_with_lifts(
    p0: f64,
    seg: Segment,
    intent_cents: i64,
    policy: &Policy,
    lambda: f64,
    lifts: Option<&[f64; MAX_TIERS]>,
) -> Verdict {
    if seg != Segment::Hesitant {
        return Verdict::NotHesitant;
    }
    if intent_cents < policy.min_intent_cents {
        return Verdict::IntentTooLow;
    }
    let lambda = if lambda.is_finite() {
        lambda.max(0.0)
    } else {
        0.0
    };
    let mut ranked: [Option<Candidate>; MAX_TIERS] = [None; MAX_TIERS];
    // Best ENV over the tiers the rule may rank, and over the others.
    let mut best: Option<f64> = None;
    let mut best_unranked: Option<f64> = None;
    let mut n = 0;
    for (i, tier) in policy.tiers.iter().take(MAX_TIERS).enumerate() {
        let learned = lifts.map(|l| l[i]).filter(|l| l.is_finite());
        let tier = Tier {
            lift: learned.unwrap_or(tier.lift),
            ..*tier
        };
        let (env, pv) = expected_net_value(p0, intent_cents, policy.margin_rate, tier);
        if learned.is_none() && !policy.offer_on_priors {
            best_unranked = max_of(best_unranked, env);
            continue;
        }
        best = max_of(best, env);
        let paced_value = env - lambda * pv * tier.amount_cents as f64;
        if env > 0.0 && paced_value > 0.0 {
            ranked[n] = Some(Candidate {
                amount_cents: tier.amount_cents,
                net_value_cents: env.round() as i64,
                p_with_voucher: pv,
                paced_value,
            });
            n += 1;
        }
    }
    if n == 0 {
        return match (best, best_unranked) {
            (Some(b), _) if b > 0.0 => Verdict::Paced {
                best_net_value_cents: to_cents(b),
            },
            (_, Some(u)) if u > 0.0 => Verdict::NotLearned {
                best_prior_net_value_cents: to_cents(u),
            },
            (b, u) => Verdict::RoiNotPositive {
                best_net_value_cents: to_cents(match (b, u) {
                    (Some(b), Some(u)) => b.max(u),
                    (Some(x), None) | (None, Some(x)) => x,
                    (None, None) => 0.0,
                }),
            },
        };
    }
    ranked[..n].sort_by(|a, b| {
        let (a, b) = (a.expect("filled"), b.expect("filled"));
        b.paced_value
            .total_cmp(&a.paced_value)
            .then(a.amount_cents.cmp(&b.amount_cents))
    });
    Verdict::Offer { ranked }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> Policy {
        Policy {
            min_intent_cents: 9_900,
            margin_rate: 0.30,
            tiers: vec![
                Tier {
                    amount_cents: 500,
                    lift: 0.25,
                },
                Tier {
                    amount_cents: 1_000,
                    lift: 0.45,
                },
                Tier {
                    amount_cents: 2_000,
                    lift: 0.70,
                },
            ],
            trigger: OfferTrigger::Any,
            offer_on_priors: true,
        }
    }

    const T: SegmentThresholds = SegmentThresholds {
        hot_at_or_above: 0.6,
        cold_below: 0.1,
    };

    #[test]
    fn segments_follow_thresholds() {
        assert_eq!(segment(0.6, T), Segment::Hot);
        assert_eq!(segment(0.0999, T), Segment::Cold);
        assert_eq!(segment(0.1, T), Segment::Hesitant);
    }

    #[test]
    fn exit_intent_trigger_fires_only_inside_its_window() {
        let t = OfferTrigger::ExitIntent { window_ms: 10_000 };
        assert!(!t.fired(0, 50_000), "no exit intent yet");
        assert!(t.fired(45_000, 50_000));
        assert!(t.fired(40_000, 50_000), "window is inclusive");
        assert!(!t.fired(39_999, 50_000));
        assert!(!t.fired(60_000, 50_000), "a signal from the future");
        assert!(OfferTrigger::Any.fired(0, 50_000));
    }

    #[test]
    fn only_hesitant_with_enough_intent_is_eligible() {
        assert_eq!(
            choose(0.3, Segment::Hot, 50_000, &policy(), 0.0),
            Verdict::NotHesitant
        );
        assert_eq!(
            choose(0.3, Segment::Cold, 50_000, &policy(), 0.0),
            Verdict::NotHesitant
        );
        assert_eq!(
            choose(0.3, Segment::Hesitant, 9_899, &policy(), 0.0),
            Verdict::IntentTooLow
        );
    }

    #[test]
    fn env_matches_hand_computation() {
        // V = 150 EUR, m = 0.3 -> margin 4500 cents; p0 = 0.3, 10 EUR lift 0.45.
        let (env, pv) = expected_net_value(
            0.3,
            15_000,
            0.3,
            Tier {
                amount_cents: 1_000,
                lift: 0.45,
            },
        );
        let z = (0.3f64 / 0.7).ln() + 0.45;
        let want_pv = 1.0 / (1.0 + (-z).exp());
        assert!((pv - want_pv).abs() < 1e-12);
        assert!((env - (want_pv * 3_500.0 - 0.3 * 4_500.0)).abs() < 1e-9);
    }

    #[test]
    fn picks_argmax_and_ranks_positive_tiers() {
        match choose(0.3, Segment::Hesitant, 15_000, &policy(), 0.0) {
            Verdict::Offer { ranked } => {
                let r: Vec<_> = ranked.iter().flatten().collect();
                assert!(!r.is_empty());
                assert!(r
                    .windows(2)
                    .all(|w| w[0].net_value_cents >= w[1].net_value_cents));
                // The best is the true argmax over all tiers.
                let best = policy()
                    .tiers
                    .iter()
                    .map(|t| expected_net_value(0.3, 15_000, 0.3, *t).0)
                    .fold(f64::NEG_INFINITY, f64::max);
                assert_eq!(r[0].net_value_cents, best.round() as i64);
            }
            v => panic!("expected an offer, got {v:?}"),
        }
    }

    #[test]
    fn no_offer_when_the_voucher_costs_more_than_it_earns() {
        // Tiny lifts: the voucher mostly subsidises purchases that happen anyway.
        let mut p = policy();
        for t in &mut p.tiers {
            t.lift = 0.01;
        }
        assert!(matches!(
            choose(0.5, Segment::Hesitant, 20_000, &p, 0.0),
            Verdict::RoiNotPositive { best_net_value_cents } if best_net_value_cents < 0
        ));
    }

    #[test]
    fn pacing_keeps_only_the_offers_worth_their_cost() {
        let unpaced = choose(0.3, Segment::Hesitant, 15_000, &policy(), 0.0);
        assert!(matches!(unpaced, Verdict::Offer { .. }));
        // A high shadow price on budget makes the small margins not worth it.
        assert!(matches!(
            choose(0.3, Segment::Hesitant, 15_000, &policy(), 5.0),
            Verdict::Paced { best_net_value_cents } if best_net_value_cents > 0
        ));
        // Ranking by paced value can prefer a cheaper tier.
        let cheap = Policy {
            tiers: vec![
                Tier {
                    amount_cents: 500,
                    lift: 0.30,
                },
                Tier {
                    amount_cents: 2_000,
                    lift: 1.00,
                },
            ],
            ..policy()
        };
        let first = |v: Verdict| match v {
            Verdict::Offer { ranked } => ranked[0].unwrap().amount_cents,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            first(choose(0.3, Segment::Hesitant, 30_000, &cheap, 0.0)),
            2_000
        );
        assert_eq!(
            first(choose(0.3, Segment::Hesitant, 30_000, &cheap, 1.0)),
            500
        );
    }

    #[test]
    fn no_greedy_offer_on_a_prior_by_default() {
        let cold = Policy {
            offer_on_priors: false,
            ..policy()
        };
        // The priors would pay (see picks_argmax_and_ranks_positive_tiers).
        let want = match choose(0.3, Segment::Hesitant, 15_000, &policy(), 0.0) {
            Verdict::Offer { ranked } => ranked[0].unwrap().net_value_cents,
            v => panic!("{v:?}"),
        };
        assert_eq!(
            choose(0.3, Segment::Hesitant, 15_000, &cold, 0.0),
            Verdict::NotLearned {
                best_prior_net_value_cents: want
            }
        );
        // Not eligible stays not eligible; priors that do not pay stay
        // "ROI not positive".
        assert_eq!(
            choose(0.3, Segment::Hot, 15_000, &cold, 0.0),
            Verdict::NotHesitant
        );
        assert!(matches!(
            choose(0.3, Segment::Hesitant, 9_900, &cold, 0.0),
            Verdict::RoiNotPositive { best_net_value_cents } if best_net_value_cents < 0
        ));
        // Explicit NaN lifts are unlearned too.
        let none_learned = [f64::NAN; MAX_TIERS];
        assert!(matches!(
            choose_with_lifts(
                0.3,
                Segment::Hesitant,
                15_000,
                &cold,
                0.0,
                Some(&none_learned)
            ),
            Verdict::NotLearned { .. }
        ));
    }

    #[test]
    fn a_mixed_model_ranks_only_its_learned_tiers() {
        let cold = Policy {
            offer_on_priors: false,
            ..policy()
        };
        // Only 20 EUR learned, with a lift that pays at V = 300 EUR.
        let mut lifts = [f64::NAN; MAX_TIERS];
        lifts[2] = 0.9;
        match choose_with_lifts(0.3, Segment::Hesitant, 30_000, &cold, 0.0, Some(&lifts)) {
            Verdict::Offer { ranked } => {
                let r: Vec<i64> = ranked.iter().flatten().map(|c| c.amount_cents).collect();
                assert_eq!(r, vec![2_000]);
            }
            v => panic!("{v:?}"),
        }
        // Learned 20 EUR does not pay here, the unlearned priors would.
        lifts[2] = 0.0;
        assert!(matches!(
            choose_with_lifts(0.3, Segment::Hesitant, 15_000, &cold, 0.0, Some(&lifts)),
            Verdict::NotLearned { best_prior_net_value_cents } if best_prior_net_value_cents > 0
        ));
        // Opting in ranks the priors beside the learned tier again.
        assert!(matches!(
            choose_with_lifts(0.3, Segment::Hesitant, 15_000, &policy(), 0.0, Some(&lifts)),
            Verdict::Offer { .. }
        ));
    }

    proptest! {
        /// Whatever the lifts, the rule never ranks an unlearned tier unless
        /// the policy opts in, and it answers NotLearned exactly when an
        /// unlearned tier would pay and no learned one does.
        #[test]
        fn unlearned_tiers_are_never_offered_greedily(
            p0 in 0.01f64..0.99, intent in 9_900i64..200_000,
            learned in proptest::collection::vec(proptest::option::of(-1.0f64..2.0), 3),
            lambda in 0.0f64..2.0,
        ) {
            let cold = Policy { offer_on_priors: false, ..policy() };
            let mut lifts = [f64::NAN; MAX_TIERS];
            for (i, l) in learned.iter().enumerate() {
                lifts[i] = l.unwrap_or(f64::NAN);
            }
            let v = choose_with_lifts(p0, Segment::Hesitant, intent, &cold, lambda, Some(&lifts));
            let env = |i: usize, lift: f64| {
                expected_net_value(p0, intent, 0.3, Tier { lift, ..cold.tiers[i] }).0
            };
            let learned_pays = (0..3).any(|i| learned[i].is_some_and(|l| env(i, l) > 0.0));
            let prior_pays = (0..3).any(|i| learned[i].is_none() && env(i, cold.tiers[i].lift) > 0.0);
            match v {
                Verdict::Offer { ranked } => {
                    for c in ranked.iter().flatten() {
                        let i = cold.tiers.iter().position(|t| t.amount_cents == c.amount_cents).unwrap();
                        prop_assert!(learned[i].is_some(), "unlearned tier {} ranked", c.amount_cents);
                    }
                }
                Verdict::NotLearned { best_prior_net_value_cents } => {
                    prop_assert!(!learned_pays && prior_pays);
                    prop_assert!(best_prior_net_value_cents >= 0);
                }
                Verdict::Paced { .. } => prop_assert!(learned_pays),
                Verdict::RoiNotPositive { .. } => prop_assert!(!learned_pays && !prior_pays),
                other => prop_assert!(false, "{other:?}"),
            }
        }

        #[test]
        fn offers_always_have_positive_env_and_a_configured_amount(
            p0 in 0.0f64..=1.0, intent in 0i64..10_000_000,
        ) {
            let pol = policy();
            if let Verdict::Offer { ranked } = choose(p0, Segment::Hesitant, intent, &pol, 0.0) {
                for c in ranked.iter().flatten() {
                    prop_assert!(c.net_value_cents >= 0);
                    prop_assert!(pol.tiers.iter().any(|t| t.amount_cents == c.amount_cents));
                    prop_assert!((0.0..=1.0).contains(&c.p_with_voucher));
                }
            }
        }
    }
}
