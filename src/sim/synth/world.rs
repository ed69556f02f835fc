//! Response worlds: how strongly a voucher works and how much of the
//! visitor's price sensitivity the shop can see.
//!
//! Every world shares the visitors, their walks and their purchases without a
//! voucher; a world sets only two things:
//!
//! - **Visibility** `r`: the walk is driven by the *visible* price
//!   consciousness `w = sigmoid(2 l_v)` with `l_v = a + 0.9 z_v` (`a` from
//!   the context, `z_v ~ Normal(0, 1)`), which shows in coupon-field focus,
//!   price sorting, comparing products of one price band, revisiting a
//!   product, cart removals, exit intent, more product pages and a slower
//!   checkout. The true sensitivity
//!   that drives the voucher response is
//!   `s = sigmoid(M + r (l_v - M) + sqrt(1 - r^2) D z_h)` with a hidden
//!   `z_h ~ Normal(0, 1)`, `M` and `D` the mean and standard deviation of
//!   `l_v` over the context mix ([`VISIBLE_MEAN`], [`VISIBLE_SD`]). So the
//!   logit of `s` has the same distribution in every world and correlates
//!   with `r` with what the shop can see (context included).
//! - **Response**: a voucher of `v` EUR adds
//!   `lift = k s^g (1 - exp(-v / (c B)))` to the purchase log-odds (basket
//!   budget `B`): monotone and concave in `v` (diminishing returns), relative
//!   to the basket, and concentrated on the most sensitive visitors
//!   (`g > 1`).
//!
//! [`measure`] gives a world's figures on generated sessions: per voucher
//! tier the incremental share of treated buyers, the mean lift, the share of
//! incremental conversions held by the top 20 % of visitors by true effect,
//! and the share of visitors for whom the voucher pays.

use super::{state_at, Generator, GeneratorConfig, VOUCHER_TIERS_CENTS};
use crate::domain::features::{self, F};
use crate::domain::logistic::{logit, sigmoid};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;

/// Mean of the visible sensitivity logit `l_v` over the context mix (exact:
/// the context shifts averaged over sources and returning visitors).
pub const VISIBLE_MEAN: f64 = 0.0372;
/// Standard deviation of `l_v`: `sqrt(0.9^2 + 0.2564)` (individual noise and
/// the context shifts' variance).
pub const VISIBLE_SD: f64 = 1.0327;
/// Margin rate for the break-even figures of [`measure`].
pub const MEASURE_MARGIN: f64 = 0.3;

/// A world: the voucher response and how visible the sensitivity behind it
/// is. The names are the command-line values.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum ResponseWorld {
    /// Calibrated to published randomised voucher and e-mail experiments;
    /// sensitivity mostly visible in the page signals.
    #[default]
    Calibrated,
    /// The calibrated response, sensitivity barely visible in the signals.
    Faint,
    /// Sensitivity invisible and a tiny response: almost no voucher pays.
    Invisible,
    /// Large responses, sensitivity mostly visible.
    Generous,
}

/// The numbers of one world (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct WorldParams {
    /// `r`: correlation of the true sensitivity logit with the visible one.
    pub visibility: f64,
    /// `k`: log-odds at full saturation for `s = 1`.
    pub k: f64,
    /// `g`: concentration exponent on `s`.
    pub g: f64,
    /// `c`: basket share; the response saturates around `v = c B`.
    pub c: f64,
}

impl ResponseWorld {
    /// Every world, in documentation order.
    pub const ALL: [ResponseWorld; 4] = [
        ResponseWorld::Calibrated,
        ResponseWorld::Faint,
        ResponseWorld::Invisible,
        ResponseWorld::Generous,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            ResponseWorld::Calibrated => "calibrated",
            ResponseWorld::Faint => "faint",
            ResponseWorld::Invisible => "invisible",
            ResponseWorld::Generous => "generous",
        }
    }

    pub fn params(self) -> WorldParams {
        match self {
            ResponseWorld::Calibrated => WorldParams {
                visibility: 0.8,
                k: 8.5,
                g: 2.0,
                c: 0.125,
            },
            ResponseWorld::Faint => WorldParams {
                visibility: 0.25,
                ..ResponseWorld::Calibrated.params()
            },
            ResponseWorld::Invisible => WorldParams {
                visibility: 0.0,
                k: 0.5,
                ..ResponseWorld::Calibrated.params()
            },
            ResponseWorld::Generous => WorldParams {
                visibility: 0.8,
                k: 24.0,
                g: 2.0,
                c: 0.25,
            },
        }
    }

    /// True price sensitivity `s` in (0, 1) from the visible logit `l_v`
    /// and the hidden normal draw `z_h`.
    pub fn sensitivity(self, visible_logit: f64, hidden: f64) -> f64 {
        let r = self.params().visibility;
        sigmoid(
            VISIBLE_MEAN
                + r * (visible_logit - VISIBLE_MEAN)
                + (1.0 - r * r).max(0.0).sqrt() * VISIBLE_SD * hidden,
        )
    }

    /// Additive purchase log-odds of a `voucher_cents` voucher for a visitor
    /// with sensitivity `s` and basket budget `basket_eur`.
    pub fn lift(self, voucher_cents: i64, s: f64, basket_eur: f64) -> f64 {
        if voucher_cents <= 0 {
            return 0.0;
        }
        let p = self.params();
        let v = voucher_cents as f64 / 100.0;
        p.k * s.clamp(0.0, 1.0).powf(p.g) * (1.0 - (-v / (p.c * basket_eur.max(1.0))).exp())
    }
}

impl std::fmt::Display for ResponseWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One voucher tier in one world (see [`measure`]).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct TierFigures {
    pub voucher_cents: i64,
    /// Among buyers when every visitor gets the voucher, the expected share
    /// who would not have bought without it:
    /// `sum (p_v - p_0) / sum p_v`.
    pub incremental_share: f64,
    /// Mean log-odds lift over all visitors.
    pub mean_lift: f64,
    /// Mean purchase-probability uplift `p_v - p_0` over all visitors.
    pub mean_uplift: f64,
    /// Share of the incremental conversions held by the 20 % of visitors
    /// with the largest true uplift.
    pub top20_share: f64,
    /// Expected net value per 1,000 visitors, EUR, when every visitor gets
    /// the voucher: `ENV = p_v (m V - v) - p_0 m V` summed, at margin
    /// [`MEASURE_MARGIN`] on each visitor's order value `V`.
    pub everyone_net_per_1000: f64,
    /// The same when only the visitors with `ENV > 0` get it (perfect
    /// targeting, no budget limit).
    pub targeted_net_per_1000: f64,
    /// Share of visitors with `ENV > 0`.
    pub pays_share: f64,
}

/// A world's figures on `sessions` generated visitors.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WorldFigures {
    pub world: ResponseWorld,
    pub params: WorldParams,
    pub sessions: usize,
    /// Conversion without a voucher.
    pub conversion: f64,
    /// How much of the true sensitivity the shop can see: over the sessions
    /// that view a product (the ones a voucher rule can price), R^2 of the
    /// least-squares fit of `logit(s)` on every session feature at the
    /// session's end (`ln(1 + x)` for counts and amounts, as the trainer
    /// scales them).
    pub visible_r2: f64,
    /// The same fit on the comparison and price signals alone (coupon-field
    /// focus, price sorts, cart removes, exit intent, product revisits,
    /// similar products viewed).
    pub signals_r2: f64,
    pub tiers: Vec<TierFigures>,
}

/// The price and comparison signals of [`WorldFigures::signals_r2`].
const SIGNALS: [F; 6] = [
    F::coupon_field_focus,
    F::price_sort,
    F::cart_removes,
    F::exit_intent,
    F::product_revisits,
    F::similar_products_viewed,
];

/// R^2 of the least-squares fit of `y` on the columns of `x` plus an
/// intercept (centred normal equations with a tiny ridge for constant
/// columns, solved by Gaussian elimination).
pub fn r_squared(x: &[Vec<f64>], y: &[f64]) -> f64 {
    let n = y.len();
    let k = x.first().map_or(0, Vec::len);
    if n <= k + 1 {
        return 0.0;
    }
    let nf = n as f64;
    let my = y.iter().sum::<f64>() / nf;
    let mut mx = vec![0.0; k];
    for row in x {
        for (m, v) in mx.iter_mut().zip(row) {
            *m += v / nf;
        }
    }
    let centred = |row: &[f64]| -> Vec<f64> { row.iter().zip(&mx).map(|(v, m)| v - m).collect() };
    // Rows of [X'X | X'y], centred.
    let mut a = vec![vec![0.0; k + 1]; k];
    for (row, yi) in x.iter().zip(y) {
        let row = centred(row);
        for (ar, ri) in a.iter_mut().zip(&row) {
            for (v, rj) in ar.iter_mut().zip(&row) {
                *v += ri * rj;
            }
            ar[k] += ri * (yi - my);
        }
    }
    for (r, ar) in a.iter_mut().enumerate() {
        ar[r] += 1e-9 * nf;
    }
    for col in 0..k {
        let piv = (col..k)
            .max_by(|p, q| a[*p][col].abs().total_cmp(&a[*q][col].abs()))
            .unwrap_or(col);
        a.swap(col, piv);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot = &top[col];
        for ar in rest {
            let f = ar[col] / pivot[col];
            for (v, p) in ar[col..].iter_mut().zip(&pivot[col..]) {
                *v -= f * p;
            }
        }
    }
    let mut beta = vec![0.0; k];
    for r in (0..k).rev() {
        let known: f64 = a[r][r + 1..k]
            .iter()
            .zip(&beta[r + 1..])
            .map(|(c, b)| c * b)
            .sum();
        beta[r] = (a[r][k] - known) / a[r][r];
    }
    let (mut ss_res, mut ss_tot) = (0.0, 0.0);
    for (row, yi) in x.iter().zip(y) {
        let fit: f64 = centred(row).iter().zip(&beta).map(|(v, b)| v * b).sum();
        ss_res += (yi - my - fit).powi(2);
        ss_tot += (yi - my).powi(2);
    }
    if ss_tot > 0.0 {
        1.0 - ss_res / ss_tot
    } else {
        0.0
    }
}

/// Measures `world` on `sessions` visitors generated with `seed`, in
/// expectation under the true probabilities (no purchase-draw noise).
pub fn measure(world: ResponseWorld, seed: u64, sessions: usize) -> WorldFigures {
    let gen = Generator::new(GeneratorConfig {
        seed,
        world,
        ..GeneratorConfig::default()
    });
    let mut p0 = Vec::with_capacity(sessions);
    let mut value_eur = Vec::with_capacity(sessions);
    let mut sens = Vec::with_capacity(sessions);
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(sessions);
    let mut signal_rows: Vec<Vec<f64>> = Vec::with_capacity(sessions);
    let mut truths = Vec::with_capacity(sessions);
    for s in gen.take(sessions) {
        let state = state_at(&s, usize::MAX);
        let last_ms = s.events.last().map_or(0, |e| e.at_ms);
        let f = features::compute(&state, last_ms);
        if f.get(F::product_views) > 0.0 {
            let scaled: Vec<f64> = features::FEATURES
                .iter()
                .zip(f.0.iter())
                .map(|(d, v)| match d.scale {
                    features::Scale::Log => v.max(0.0).ln_1p(),
                    _ => *v,
                })
                .collect();
            signal_rows.push(SIGNALS.iter().map(|k| scaled[*k as usize]).collect());
            rows.push(scaled);
            sens.push(logit(s.truth.price_sensitivity.clamp(1e-12, 1.0 - 1e-12)));
        }
        let v = match state.intent_value_cents() {
            c if c > 0 => c as f64 / 100.0,
            _ => s.truth.basket_eur,
        };
        value_eur.push(v);
        p0.push(s.truth.p_buy(0));
        truths.push(s.truth);
    }
    let n = truths.len().max(1) as f64;
    let tiers = VOUCHER_TIERS_CENTS
        .iter()
        .map(|&cents| {
            let pv: Vec<f64> = truths.iter().map(|t| t.p_buy(cents)).collect();
            let mut up: Vec<f64> = pv.iter().zip(&p0).map(|(a, b)| a - b).collect();
            let total_up: f64 = up.iter().sum();
            let total_pv: f64 = pv.iter().sum();
            let env: Vec<f64> = pv
                .iter()
                .zip(&p0)
                .zip(&value_eur)
                .map(|((pv, p0), v)| {
                    let mv = MEASURE_MARGIN * v;
                    pv * (mv - cents as f64 / 100.0) - p0 * mv
                })
                .collect();
            let per_1000 = 1_000.0 / n;
            up.sort_by(|a, b| b.total_cmp(a));
            let top = up.len() / 5;
            TierFigures {
                voucher_cents: cents,
                incremental_share: if total_pv > 0.0 {
                    total_up / total_pv
                } else {
                    0.0
                },
                mean_lift: truths.iter().map(|t| t.lift(cents)).sum::<f64>() / n,
                mean_uplift: total_up / n,
                top20_share: if total_up > 0.0 {
                    up[..top].iter().sum::<f64>() / total_up
                } else {
                    0.0
                },
                everyone_net_per_1000: env.iter().sum::<f64>() * per_1000,
                targeted_net_per_1000: env.iter().map(|e| e.max(0.0)).sum::<f64>() * per_1000,
                pays_share: env.iter().filter(|e| **e > 0.0).count() as f64 / n,
            }
        })
        .collect();
    WorldFigures {
        world,
        params: world.params(),
        sessions: truths.len(),
        conversion: p0.iter().sum::<f64>() / n,
        visible_r2: r_squared(&rows, &sens),
        signals_r2: r_squared(&signal_rows, &sens),
        tiers,
    }
}

/// The figures as two Markdown tables, as in the README: the worlds (with
/// how much of sensitivity shows), then each world's voucher tiers.
pub fn figures_table(all: &[WorldFigures]) -> String {
    let mut out = String::from(
        "| world | visibility r | k | g | c | R^2 of logit s on all features | R^2 on price and comparison signals | conversion without voucher |\n|---|---|---|---|---|---|---|---|\n",
    );
    for w in all {
        let p = w.params;
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {:.2} | {:.3} | {:.1} % |",
            w.world,
            p.visibility,
            p.k,
            p.g,
            p.c,
            w.visible_r2,
            w.signals_r2,
            w.conversion * 100.0
        );
    }
    out.push_str(
        "\n| world | tier | incremental share | mean lift (log-odds) | mean uplift (pp) | top 20 % share | net per 1,000 visitors, everyone | net per 1,000, where it pays | pays for |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for w in all {
        for t in &w.tiers {
            let _ = writeln!(
                out,
                "| {} | {} EUR | {:.2} | {:.2} | {:.1} | {:.2} | {:.0} | {:.0} | {:.0} % |",
                w.world,
                t.voucher_cents / 100,
                t.incremental_share,
                t.mean_lift,
                t.mean_uplift * 100.0,
                t.top20_share,
                t.everyone_net_per_1000,
                t.targeted_net_per_1000,
                t.pays_share * 100.0,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_squared_of_an_exact_and_of_an_unrelated_fit() {
        let x: Vec<Vec<f64>> = (0..50)
            .map(|i| vec![i as f64, (i * i % 7) as f64, 1.0])
            .collect();
        let exact: Vec<f64> = x.iter().map(|r| 2.0 * r[0] - r[1] + 3.0).collect();
        assert!((r_squared(&x, &exact) - 1.0).abs() < 1e-9);
        let half: Vec<f64> = x
            .iter()
            .enumerate()
            .map(|(i, r)| r[0] + if i % 2 == 0 { 10.0 } else { -10.0 })
            .collect();
        let r2 = r_squared(&x, &half);
        assert!(r2 > 0.0 && r2 < 1.0, "{r2}");
        assert_eq!(r_squared(&x[..2], &exact[..2]), 0.0);
    }

    #[test]
    fn names_round_trip_and_calibrated_is_the_default() {
        assert_eq!(ResponseWorld::default(), ResponseWorld::Calibrated);
        for w in ResponseWorld::ALL {
            let json = serde_json::to_string(&w).unwrap();
            assert_eq!(json, format!("\"{}\"", w.name()));
            assert_eq!(serde_json::from_str::<ResponseWorld>(&json).unwrap(), w);
            let parsed = <ResponseWorld as clap::ValueEnum>::from_str(w.name(), false).unwrap();
            assert_eq!(parsed, w);
        }
    }

    #[test]
    fn lift_is_monotone_concave_and_zero_without_a_voucher() {
        for w in ResponseWorld::ALL {
            for s in [0.1, 0.5, 0.9] {
                for b in [20.0, 80.0, 400.0] {
                    assert_eq!(w.lift(0, s, b), 0.0);
                    assert_eq!(w.lift(-100, s, b), 0.0);
                    let l: Vec<f64> = [500, 1_000, 1_500, 2_000]
                        .iter()
                        .map(|&c| w.lift(c, s, b))
                        .collect();
                    assert!(l.windows(2).all(|x| x[0] < x[1]), "{w} {s} {b} {l:?}");
                    // Equal steps of 5 EUR add less and less.
                    assert!(l[1] - l[0] < l[0] && l[2] - l[1] < l[1] - l[0]);
                    assert!(l[3] - l[2] < l[2] - l[1]);
                }
                assert!(w.lift(1_000, s, 80.0) < w.lift(1_000, (s + 0.05).min(1.0), 80.0));
            }
        }
    }

    #[test]
    fn visibility_sets_how_much_of_sensitivity_the_visible_logit_carries() {
        // Same hidden draw, a visible logit one standard deviation higher:
        // in a visible world sensitivity rises, in the invisible one it does
        // not move.
        let lo = VISIBLE_MEAN;
        let hi = VISIBLE_MEAN + VISIBLE_SD;
        let inv = ResponseWorld::Invisible;
        assert_eq!(inv.sensitivity(lo, 0.3), inv.sensitivity(hi, 0.3));
        let cal = ResponseWorld::Calibrated;
        let faint = ResponseWorld::Faint;
        let gain = |w: ResponseWorld| w.sensitivity(hi, 0.0) - w.sensitivity(lo, 0.0);
        assert!(gain(cal) > gain(faint) && gain(faint) > 0.0);
        assert!(
            ResponseWorld::ALL
                .iter()
                .all(|w| (0.0..1.0).contains(&w.sensitivity(3.0, -2.0))),
            "s stays in (0, 1)"
        );
        let ps = |w: ResponseWorld| w.params();
        assert!(ps(ResponseWorld::Calibrated).visibility > ps(ResponseWorld::Faint).visibility);
        assert_eq!(ps(ResponseWorld::Invisible).visibility, 0.0);
        assert!(ps(ResponseWorld::Generous).k > ps(ResponseWorld::Calibrated).k);
    }

    /// The figures of every world at seed 42 on 20,000 sessions (printed as
    /// the README table with `--nocapture`), and what they must show.
    #[test]
    fn worlds_match_their_descriptions() {
        let all: Vec<WorldFigures> = ResponseWorld::ALL
            .iter()
            .map(|&w| measure(w, 42, 20_000))
            .collect();
        println!("{}", figures_table(&all));
        let get = |w: ResponseWorld| all.iter().find(|f| f.world == w).unwrap();
        let tier = |w: ResponseWorld, cents: i64| {
            *get(w)
                .tiers
                .iter()
                .find(|t| t.voucher_cents == cents)
                .unwrap()
        };
        for f in &all {
            // A larger voucher never lifts less, with diminishing returns
            // per euro (in log-odds; in probability too where the response
            // is calibrated).
            for t in f.tiers.windows(2) {
                assert!(t[0].incremental_share < t[1].incremental_share, "{f:?}");
                assert!(t[0].mean_uplift < t[1].mean_uplift, "{f:?}");
                let per_eur = |x: &TierFigures| x.mean_lift / x.voucher_cents as f64;
                assert!(per_eur(&t[0]) > per_eur(&t[1]), "{f:?}");
                if f.world == ResponseWorld::Calibrated {
                    let per_eur = |x: &TierFigures| x.mean_uplift / x.voucher_cents as f64;
                    assert!(per_eur(&t[0]) > per_eur(&t[1]), "{f:?}");
                }
            }
            // Every world shares the visitors and their behaviour without
            // a voucher.
            assert!((f.conversion - all[0].conversion).abs() < 0.01, "{f:?}");
        }
        let cal10 = tier(ResponseWorld::Calibrated, 1_000);
        assert!(
            (0.35..=0.65).contains(&cal10.incremental_share),
            "{cal10:?}"
        );
        assert!(cal10.top20_share >= 0.6, "{cal10:?}");
        // Break-even: 5 and 10 EUR pay given to everyone, 20 EUR only to
        // the right visitors.
        let cal = |cents| tier(ResponseWorld::Calibrated, cents);
        assert!(cal(500).everyone_net_per_1000 > 0.0, "{:?}", cal(500));
        assert!(cal(1_000).everyone_net_per_1000 > 0.0, "{cal10:?}");
        assert!(cal(2_000).everyone_net_per_1000 < 0.0, "{:?}", cal(2_000));
        assert!(cal(2_000).pays_share < cal(1_000).pays_share);
        for cents in VOUCHER_TIERS_CENTS {
            let inv = tier(ResponseWorld::Invisible, cents);
            assert!(inv.incremental_share < 0.06, "{inv:?}");
            assert!(inv.pays_share < 0.02, "{inv:?}");
            assert!(inv.everyone_net_per_1000 < 0.0, "{inv:?}");
            assert!(inv.targeted_net_per_1000 < 0.01 * cal(cents).targeted_net_per_1000);
            assert!(
                tier(ResponseWorld::Generous, cents).incremental_share
                    > cal(cents).incremental_share + 0.1
            );
            // Faint has the calibrated response; only what shows differs.
            let faint = tier(ResponseWorld::Faint, cents);
            assert!((faint.incremental_share - cal(cents).incremental_share).abs() < 0.05);
        }
        // What the shop sees of sensitivity orders the worlds.
        let r2 = |w| get(w).visible_r2;
        assert!(r2(ResponseWorld::Calibrated) > r2(ResponseWorld::Faint) + 0.1);
        assert!(r2(ResponseWorld::Faint) > r2(ResponseWorld::Invisible));
        assert!(r2(ResponseWorld::Invisible) < 0.01);
        assert!((r2(ResponseWorld::Generous) - r2(ResponseWorld::Calibrated)).abs() < 0.02);
        let signals = |w| get(w).signals_r2;
        assert!(signals(ResponseWorld::Calibrated) > 2.0 * signals(ResponseWorld::Faint));
    }
}
