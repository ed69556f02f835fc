//! Diagnostics of the simulated world (ignored tests, run by hand): which of
//! nudge's inputs limit it, and what any policy could reach.
//! `NUDGE_DIAG_WORLD` picks the generator's response world (default
//! calibrated).

use super::*;

/// The default simulation in the world named by `NUDGE_DIAG_WORLD`.
fn diag_args() -> SimulateArgs {
    let world = std::env::var("NUDGE_DIAG_WORLD").map_or(ResponseWorld::Calibrated, |w| {
        <ResponseWorld as clap::ValueEnum>::from_str(&w, true).expect("a world name")
    });
    SimulateArgs {
        world,
        ..SimulateArgs::default()
    }
}

/// True mean log-odds lift per tier over the visitors nudge may treat, at
/// their first eligible moment (hesitant, intent >= 99 EUR): what a
/// constant lift per tier learned without bias would be.
fn eligible_mean_lift(w: &World, tiers: &[i64; 3]) -> [f64; 3] {
    let mut seen = vec![false; w.visits.len()];
    let (mut sum, mut n) = ([0.0; 3], 0.0);
    for mo in &w.moments {
        let vi = mo.visit as usize;
        if seen[vi] || mo.intent_cents < 9_900 || mo.segment != Segment::Hesitant {
            continue;
        }
        seen[vi] = true;
        n += 1.0;
        for (s, t) in sum.iter_mut().zip(tiers) {
            *s += w.visits[vi].s.truth.lift(*t);
        }
    }
    sum.map(|s| s / f64::max(n, 1.0))
}

/// Diagnostic (not a check): the ENV rule at the first eligible moment,
/// no budget, with the model's or the true p0 and the prior, true-mean
/// or each visitor's true lift, in expectation. Shows which of nudge's
/// inputs limit it. `cargo test --lib sim::diag -- --ignored
/// --nocapture`.
#[test]
#[ignore]
fn rule_variants() {
    let args = diag_args();
    let settings = Settings::default();
    // NUDGE_DIAG_MODEL: another model file (e.g. one retrained by the
    // closed loop); its p0, and its learned lifts in the last variants.
    let model = Model::load(&std::env::var("NUDGE_DIAG_MODEL").map_or_else(
        |_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json"),
        PathBuf::from,
    ))
    .unwrap();
    let policy_tiers = settings.policy.tiers.clone();
    let learned = |v: &Visit, mo: &Moment, i: usize| -> f64 {
        let f = crate::sim::synth::replay(
            &v.s,
            &crate::sim::synth::DecisionPoint {
                after_events: mo.after_events as usize,
                at_ms: mo.at_ms,
            },
        );
        let l = model
            .lifts(
                &f,
                &ClientFeatures::default(),
                mo.intent_cents,
                &policy_tiers,
            )
            .unwrap()[i];
        if l.is_nan() {
            policy_tiers[i].lift
        } else {
            l
        }
    };
    let w = build_world(&args, &settings, &model).unwrap();
    let m = 0.3;
    let tiers = [500i64, 1_000, 2_000];
    let mean = eligible_mean_lift(&w, &tiers);
    println!("true mean lift of the eligible: {mean:.2?}");
    let prior = [0.25, 0.45, 0.70];
    type Lift<'a> = Box<dyn Fn(&Visit, &Moment, usize) -> f64 + 'a>;
    type P0<'a> = Box<dyn Fn(&Visit, &Moment) -> f64 + 'a>;
    let variants: Vec<(&str, P0, Lift, bool)> = vec![
        (
            "model p0, prior lift",
            Box::new(|_: &Visit, mo: &Moment| mo.p),
            Box::new(|_: &Visit, _: &Moment, i: usize| prior[i]),
            true,
        ),
        (
            "model p0, mean lift",
            Box::new(|_: &Visit, mo: &Moment| mo.p),
            Box::new(|_: &Visit, _: &Moment, i: usize| mean[i]),
            true,
        ),
        (
            "model p0, true lift",
            Box::new(|_: &Visit, mo: &Moment| mo.p),
            Box::new(|v: &Visit, _: &Moment, i: usize| v.s.truth.lift(tiers[i])),
            true,
        ),
        (
            "model p0, model lift",
            Box::new(|_: &Visit, mo: &Moment| mo.p),
            Box::new(learned),
            true,
        ),
        (
            "true p0, mean lift",
            Box::new(|v: &Visit, _: &Moment| v.s.truth.p_buy(0)),
            Box::new(|_: &Visit, _: &Moment, i: usize| mean[i]),
            true,
        ),
        (
            "true p0, true lift",
            Box::new(|v: &Visit, _: &Moment| v.s.truth.p_buy(0)),
            Box::new(|v: &Visit, _: &Moment, i: usize| v.s.truth.lift(tiers[i])),
            true,
        ),
        (
            "true p0, true lift, any segment",
            Box::new(|v: &Visit, _: &Moment| v.s.truth.p_buy(0)),
            Box::new(|v: &Visit, _: &Moment, i: usize| v.s.truth.lift(tiers[i])),
            false,
        ),
    ];
    let exit_or_last = |visit: &Visit, mo: &Moment| {
        let n = mo.after_events as usize;
        n == visit.s.events.len()
            || matches!(
                visit.s.events[n - 1].kind,
                crate::domain::session::EventKind::Interaction {
                    signal: crate::domain::session::Signal::ExitIntent
                }
            )
    };
    for timing in ["first", "exit-or-last", "exit-only"] {
        println!("-- timing {timing}");
        for (name, p0f, liftf, hes_only) in &variants {
            let name = *name;
            let hes_only = *hes_only;
            let mut o = Offers::new(w.visits.len());
            let mut done = vec![false; w.visits.len()];
            for mo in &w.moments {
                let vi = mo.visit as usize;
                if done[vi]
                    || mo.intent_cents < 9_900
                    || (hes_only && mo.segment != Segment::Hesitant)
                {
                    continue;
                }
                let visit = &w.visits[vi];
                match timing {
                    "exit-or-last" if !exit_or_last(visit, mo) => continue,
                    "exit-only"
                        if !exit_or_last(visit, mo)
                            || mo.after_events as usize == visit.s.events.len()
                                && !matches!(
                                    visit.s.events[mo.after_events as usize - 1].kind,
                                    crate::domain::session::EventKind::Interaction {
                                        signal: crate::domain::session::Signal::ExitIntent
                                    }
                                ) =>
                    {
                        continue
                    }
                    _ => {}
                }
                let p0 = p0f(visit, mo).clamp(1e-6, 1.0 - 1e-6);
                let mv = m * mo.intent_cents as f64;
                let best = (0..3)
                    .map(|i| {
                        let pv = crate::domain::logistic::sigmoid(
                            crate::domain::logistic::logit(p0) + liftf(visit, mo, i),
                        );
                        (pv * (mv - tiers[i] as f64) - p0 * mv, tiers[i])
                    })
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .unwrap();
                if best.0 > 0.0 {
                    o.amount[vi] = best.1;
                    done[vi] = true;
                }
            }
            let r = evaluate(&w, name, &o, m, &tiers, None);
            println!(
            "{name:<34} vouchers {:>6} used {:>8} E[M] {:>8.0} E[cost] {:>8.0} E[net] {:>8.0} E[roi] {:.2}",
            r.vouchers_offered,
            r.budget_used_cents / 100,
            r.expected.incremental_margin_cents / 100.0,
            r.expected.cost_cents / 100.0,
            r.expected.net_incremental_margin_cents / 100.0,
            r.expected.roi.unwrap_or(0.0)
        );
        }
    }
    let (o, _) = run_oracle(&w, &tiers, m, i64::MAX / 4, None);
    let r = evaluate(&w, "oracle", &o, m, &tiers, None);
    println!(
        "oracle unconstrained: vouchers {} used {} E[net] {:.0} E[roi] {:.2}",
        r.vouchers_offered,
        r.budget_used_cents / 100,
        r.expected.net_incremental_margin_cents / 100.0,
        r.expected.roi.unwrap_or(0.0)
    );
}

/// How much of the per-visitor voucher response a lift that is linear in
/// the served features could capture with unlimited data: regress each
/// tier's true lift on the features (log1p for counts, as the model's
/// transforms) at in-rule exit-intent-or-last moments by least squares,
/// then run the exit-or-last rule with the model's p0 and the fitted
/// lifts. An upper bound for a learner of that form. Then the same
/// knowledge under a face-value cap against the oracle with that cap: how
/// much of `oracle-same-spend` a model of the signals could reach.
#[test]
#[ignore]
#[allow(clippy::needless_range_loop)] // Gaussian elimination reads best by index.
fn lift_predictability() {
    let args = diag_args();
    let settings = Settings::default();
    let model =
        Model::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json"))
            .unwrap();
    let w = build_world(&args, &settings, &model).unwrap();
    let m = 0.3;
    let tiers = [500i64, 1_000, 2_000];
    let mean = eligible_mean_lift(&w, &tiers);
    let feats = |v: &Visit, mo: &Moment| -> Vec<f64> {
        let f = crate::sim::synth::replay(
            &v.s,
            &crate::sim::synth::DecisionPoint {
                after_events: mo.after_events as usize,
                at_ms: mo.at_ms,
            },
        );
        let mut x = vec![1.0];
        for (d, val) in crate::domain::features::FEATURES.iter().zip(f.0.iter()) {
            x.push(match d.scale {
                crate::domain::features::Scale::Log => val.max(0.0).ln_1p(),
                _ => *val,
            });
        }
        // The response's own shape: tier / intent value.
        let intent = f.get(crate::domain::features::F::intent_value_eur).max(1.0);
        x.push(1.0 / intent);
        x
    };
    let exit_or_last = |visit: &Visit, mo: &Moment| {
        let n = mo.after_events as usize;
        n == visit.s.events.len()
            || matches!(
                visit.s.events[n - 1].kind,
                crate::domain::session::EventKind::Interaction {
                    signal: crate::domain::session::Signal::ExitIntent
                }
            )
    };
    // In-rule moments at exit intent or the last event.
    let mut rows: Vec<(usize, usize, Vec<f64>)> = Vec::new();
    for (k, mo) in w.moments.iter().enumerate() {
        let v = &w.visits[mo.visit as usize];
        if mo.intent_cents >= 9_900 && mo.segment == Segment::Hesitant && exit_or_last(v, mo) {
            rows.push((k, mo.visit as usize, feats(v, mo)));
        }
    }
    let d = rows[0].2.len();
    // Ridge-stabilised normal equations, solved by Gaussian elimination.
    let solve = |y: &dyn Fn(usize) -> f64| -> Vec<f64> {
        let mut a = vec![vec![0.0; d + 1]; d];
        for (_, vi, x) in &rows {
            let t = y(*vi);
            for i in 0..d {
                for j in 0..d {
                    a[i][j] += x[i] * x[j];
                }
                a[i][d] += x[i] * t;
            }
        }
        for (i, row) in a.iter_mut().enumerate() {
            row[i] += 1e-6;
        }
        for c in 0..d {
            let p = (c..d)
                .max_by(|&i, &j| a[i][c].abs().total_cmp(&a[j][c].abs()))
                .unwrap();
            a.swap(c, p);
            let piv = a[c][c];
            if piv.abs() < 1e-12 {
                continue;
            }
            for j in c..=d {
                a[c][j] /= piv;
            }
            for i in 0..d {
                if i != c {
                    let f = a[i][c];
                    if f != 0.0 {
                        for j in c..=d {
                            a[i][j] -= f * a[c][j];
                        }
                    }
                }
            }
        }
        a.iter().map(|r| r[d]).collect()
    };
    let mut betas = Vec::new();
    for &t in &tiers {
        let truth = |vi: usize| w.visits[vi].s.truth.lift(t);
        let b = solve(&truth);
        let (mut ss, mut st, mut mean) = (0.0, 0.0, 0.0);
        for (_, vi, _) in &rows {
            mean += truth(*vi);
        }
        mean /= rows.len() as f64;
        for (_, vi, x) in &rows {
            let pred: f64 = b.iter().zip(x).map(|(a, b)| a * b).sum();
            ss += (truth(*vi) - pred).powi(2);
            st += (truth(*vi) - mean).powi(2);
        }
        println!(
            "tier {t}: {} rows, mean true lift {mean:.3}, R^2 of a linear lift {:.2}",
            rows.len(),
            1.0 - ss / st
        );
        betas.push(b);
    }
    for (name, lift) in [
        ("fitted linear lift", 0usize),
        ("true lift", 1),
        ("mean lift", 2),
    ] {
        let mut o = Offers::new(w.visits.len());
        let mut done = vec![false; w.visits.len()];
        for (k, vi, x) in &rows {
            if done[*vi] {
                continue;
            }
            let mo = &w.moments[*k];
            let p0 = mo.p.clamp(1e-6, 1.0 - 1e-6);
            let mv = m * mo.intent_cents as f64;
            let best = (0..3)
                .map(|i| {
                    let l = match lift {
                        0 => betas[i].iter().zip(x).map(|(a, b)| a * b).sum(),
                        1 => w.visits[*vi].s.truth.lift(tiers[i]),
                        _ => mean[i],
                    };
                    let pv =
                        crate::domain::logistic::sigmoid(crate::domain::logistic::logit(p0) + l);
                    (pv * (mv - tiers[i] as f64) - p0 * mv, tiers[i])
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap();
            if best.0 > 0.0 {
                o.amount[*vi] = best.1;
                done[*vi] = true;
            }
        }
        let r = evaluate(&w, name, &o, m, &tiers, None);
        println!(
            "model p0, {name:<20} vouchers {:>6} E[net] {:>8.0} E[roi] {:.2}",
            r.vouchers_offered,
            r.expected.net_incremental_margin_cents / 100.0,
            r.expected.roi.unwrap_or(0.0)
        );
    }
    // Under a face-value cap: the best a policy can do that knows the
    // response only as far as the signals carry it (the fitted lift above,
    // learned from unlimited data, and the model's p0), spending its cap
    // on the visitors with the highest predicted net per euro of face
    // value, against the oracle with the same cap (`oracle-same-spend` of
    // `nudge simulate --days`). `NUDGE_DIAG_SPEND_EUR`: caps, default
    // 100,500,1000.
    let caps: Vec<i64> = std::env::var("NUDGE_DIAG_SPEND_EUR")
        .unwrap_or_else(|_| "100,500,1000".into())
        .split(',')
        .map(|c| c.trim().parse::<i64>().expect("EUR") * 100)
        .collect();
    for lift in [0usize, 1] {
        // Per visit, its best tier by predicted net value and that value.
        let mut cands: Vec<(f64, usize, i64)> = Vec::new();
        let mut done = vec![false; w.visits.len()];
        for (k, vi, x) in &rows {
            if done[*vi] {
                continue;
            }
            done[*vi] = true;
            let mo = &w.moments[*k];
            let p0 = mo.p.clamp(1e-6, 1.0 - 1e-6);
            let mv = m * mo.intent_cents as f64;
            let (env, t) = (0..3)
                .map(|i| {
                    let l = if lift == 0 {
                        betas[i].iter().zip(x).map(|(a, b)| a * b).sum()
                    } else {
                        w.visits[*vi].s.truth.lift(tiers[i])
                    };
                    let pv =
                        crate::domain::logistic::sigmoid(crate::domain::logistic::logit(p0) + l);
                    (
                        (pv * (mv - tiers[i] as f64) - p0 * mv) / tiers[i] as f64,
                        tiers[i],
                    )
                })
                .max_by(|a, b| a.0.total_cmp(&b.0))
                .unwrap();
            if env > 0.0 {
                cands.push((env, *vi, t));
            }
        }
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        for &cap in &caps {
            let mut o = Offers::new(w.visits.len());
            let mut face = 0;
            for &(_, vi, t) in &cands {
                if face + t <= cap {
                    o.amount[vi] = t;
                    face += t;
                }
            }
            let name = if lift == 0 {
                "fitted lift"
            } else {
                "true lift"
            };
            let r = evaluate(&w, name, &o, m, &tiers, None);
            let (or, _) = run_oracle(&w, &tiers, m, cap, None);
            let or = evaluate(&w, "oracle", &or, m, &tiers, None);
            println!(
                "face cap {:>5} EUR: model p0 + {name:<11} vouchers {:>4} E[net] {:>7.0}; oracle vouchers {:>4} E[net] {:>7.0}; share {:.0} %",
                cap / 100,
                r.vouchers_offered,
                r.expected.net_incremental_margin_cents / 100.0,
                or.vouchers_offered,
                or.expected.net_incremental_margin_cents / 100.0,
                100.0 * r.expected.net_incremental_margin_cents
                    / or.expected.net_incremental_margin_cents
            );
        }
    }
}

/// Whether the four simulate bars can hold together for a policy with
/// perfect knowledge: the best expected net under the day's face-value
/// cap *and* an expected redemption cost of at most half blanket's,
/// against 80 % of the (face-value capped) oracle's expected net.
/// `NUDGE_DIAG_HOURS` (default 24) and `NUDGE_DIAG_BUDGET_EUR` (1000).
#[test]
#[ignore]
fn bars_feasibility() {
    let env_f = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let args = SimulateArgs {
        hours: env_f("NUDGE_DIAG_HOURS", 24.0),
        ..diag_args()
    };
    let settings = Settings::default();
    let model =
        Model::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default.json"))
            .unwrap();
    let w = build_world(&args, &settings, &model).unwrap();
    let m = 0.3;
    let tiers = [500i64, 1_000, 2_000];
    let cap = (env_f("NUDGE_DIAG_BUDGET_EUR", 1_000.0) * 100.0) as i64;
    let blanket = first_come(&w, cap, 500, |mo| {
        (mo.intent_cents >= 9_900).then_some(1_000)
    });
    let b = evaluate(&w, "blanket", &blanket, m, &tiers, None);
    let (o, _) = run_oracle(&w, &tiers, m, cap, None);
    let o = evaluate(&w, "oracle", &o, m, &tiers, None);
    let cost_cap = 0.5 * b.expected.cost_cents;
    let ecost = |v: &Visit, a: i64| {
        if v.redeemable {
            v.s.truth.p_buy(a) * a as f64
        } else {
            0.0
        }
    };
    // Per visit, per tier: (face, E[cost], ENV).
    type Options = Vec<(i64, f64, f64)>;
    let cands: Vec<(usize, Options)> = w
        .visits
        .iter()
        .enumerate()
        .filter(|(_, v)| v.redeemable)
        .filter_map(|(i, v)| {
            let opts: Vec<_> = tiers
                .iter()
                .map(|&a| (a, ecost(v, a), true_env(v, a, m)))
                .filter(|x| x.2 > 0.0)
                .collect();
            (!opts.is_empty()).then_some((i, opts))
        })
        .collect();
    let pick = |mc: f64, mf: f64| {
        let mut face = vec![0i64; w.days];
        let (mut cost, mut net) = (0.0, 0.0);
        for (i, opts) in &cands {
            if let Some(best) = opts
                .iter()
                .map(|&(a, c, e)| (e - mc * c - mf * a as f64, a, c, e))
                .filter(|x| x.0 > 0.0)
                .max_by(|x, y| x.0.total_cmp(&y.0))
            {
                face[w.visits[*i].day] += best.1;
                cost += best.2;
                net += best.3;
            }
        }
        (face.into_iter().max().unwrap_or(0), cost, net)
    };
    let mut best: Option<(f64, f64, f64, f64)> = None;
    for k in 0..40 {
        let mf = if k == 0 { 0.0 } else { 1e-3 * 1.3f64.powi(k) };
        let (mut lo, mut hi) = (0.0f64, 1e3f64);
        for _ in 0..60 {
            let mid = 0.5 * (lo + hi);
            if pick(mid, mf).1 > cost_cap {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (face, cost, net) = pick(hi, mf);
        if face <= cap && cost <= cost_cap && best.is_none_or(|b| net > b.0) {
            best = Some((net, cost, hi, mf));
        }
    }
    let (net, cost, _, _) = best.unwrap();
    let roi = (net + cost) / cost;
    println!(
        "budget {} EUR/day over {} h: blanket E[cost] {:.0} E[net] {:.0} E[roi] {:.2}; oracle E[cost] {:.0} E[net] {:.0} E[roi] {:.2}",
        cap / 100,
        args.hours,
        b.expected.cost_cents / 100.0,
        b.expected.net_incremental_margin_cents / 100.0,
        b.expected.roi.unwrap_or(0.0),
        o.expected.cost_cents / 100.0,
        o.expected.net_incremental_margin_cents / 100.0,
        o.expected.roi.unwrap_or(0.0),
    );
    println!(
        "perfect knowledge with E[cost] <= 50 % of blanket's ({:.0}): E[net] {:.0} = {:.0} % of the oracle's, E[roi] {:.2} = {:.1} x blanket's",
        cost_cap / 100.0,
        net / 100.0,
        100.0 * net / o.expected.net_incremental_margin_cents,
        roi,
        roi / b.expected.roi.unwrap_or(f64::NAN)
    );
}
