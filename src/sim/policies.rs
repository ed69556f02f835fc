//! The policies compared on the same visitors: blanket, heat-tier, nudge
//! through the real engine, and the hindsight oracle.

use super::*;

/// Offers of one policy: per visit, the amount offered (0 = none), plus
/// bookkeeping for the report.
pub(crate) struct Offers {
    pub(crate) amount: Vec<i64>,
    pub(crate) refused_for_budget: u64,
    pub(crate) exhausted_at_ms: Option<i64>,
    pub(crate) reasons: BTreeMap<String, u64>,
    /// nudge only: face value of the exploration vouchers offered (paid
    /// from the learning budget), per day of the world.
    pub(crate) learning_cents: Vec<i64>,
    /// nudge only: the learning budget of each day.
    pub(crate) learning_cap_cents: i64,
    /// nudge only: vouchers given by the greedy rule (not explored).
    pub(crate) greedy: u64,
}

impl Offers {
    pub(crate) fn new(n: usize) -> Self {
        Offers {
            amount: vec![0; n],
            refused_for_budget: 0,
            exhausted_at_ms: None,
            reasons: BTreeMap::new(),
            learning_cents: Vec::new(),
            learning_cap_cents: 0,
            greedy: 0,
        }
    }
}

/// First come, first served under the daily budget: at a session's first
/// qualifying moment, offer `rule(moment)` if it fits.
pub(crate) fn first_come(
    w: &World,
    cap_cents: i64,
    smallest_tier: i64,
    rule: impl Fn(&Moment) -> Option<i64>,
) -> Offers {
    let mut o = Offers::new(w.visits.len());
    let mut decided = vec![false; w.visits.len()];
    let mut spent = vec![0i64; w.days];
    for m in &w.moments {
        let v = m.visit as usize;
        if decided[v] {
            continue;
        }
        let Some(amount) = rule(m) else { continue };
        decided[v] = true;
        if spent[m.day] + amount <= cap_cents {
            spent[m.day] += amount;
            o.amount[v] = amount;
            if o.exhausted_at_ms.is_none() && cap_cents - spent[m.day] < smallest_tier {
                o.exhausted_at_ms = Some(m.at_ms);
            }
        } else {
            o.refused_for_budget += 1;
        }
    }
    o
}

/// Blanket: `voucher_cents` to every visitor with intent >= `min_intent`,
/// first come first served under `cap_cents`.
pub(crate) fn blanket(
    w: &World,
    cap_cents: i64,
    smallest_tier: i64,
    min_intent: i64,
    voucher_cents: i64,
) -> Offers {
    first_come(w, cap_cents, smallest_tier, |mo| {
        (mo.intent_cents >= min_intent).then_some(voucher_cents)
    })
}

/// Heat-tier: the voucher of the score band a hesitant visitor with intent
/// >= `min_intent` falls in, first come first served under `cap_cents`.
pub(crate) fn heat_tier(
    w: &World,
    cap_cents: i64,
    smallest_tier: i64,
    min_intent: i64,
    bands: &[HeatBand],
) -> Offers {
    first_come(w, cap_cents, smallest_tier, |mo| {
        if mo.intent_cents < min_intent || mo.segment != Segment::Hesitant {
            return None;
        }
        bands
            .iter()
            .find(|b| mo.p >= b.from && mo.p < b.to)
            .map(|b| b.voucher_cents)
            .filter(|v| *v > 0)
    })
}

pub(crate) fn heat_bands(model: &Model, tiers: &[i64]) -> Vec<HeatBand> {
    let t = model.segments();
    let (lo, hi) = (t.cold_below, t.hot_at_or_above);
    let w = (hi - lo) / 3.0;
    // Largest voucher for the coldest third.
    let pick = |i: usize| tiers.get(i).copied().unwrap_or(0);
    vec![
        HeatBand {
            from: lo,
            to: lo + w,
            voucher_cents: pick(2),
        },
        HeatBand {
            from: lo + w,
            to: lo + 2.0 * w,
            voucher_cents: pick(1),
        },
        HeatBand {
            from: lo + 2.0 * w,
            to: hi,
            voucher_cents: pick(0),
        },
    ]
}

/// The real engine over every moment.
pub(crate) async fn run_nudge(
    w: &World,
    settings: &Settings,
    model: &Model,
    cap_cents: i64,
    smallest_tier: i64,
    log_dir: Option<&std::path::Path>,
) -> Result<Offers, SimError> {
    use tracing::instrument::WithSubscriber;
    let mut settings = settings.clone();
    let campaign = settings.default_campaign.clone();
    // The configured campaign's learning share, at this run's cap.
    let learning_share = settings
        .budgets
        .campaigns
        .get(&campaign)
        .filter(|b| b.daily_cap_cents > 0)
        .map_or(DEFAULT_LEARNING_SHARE, |b| {
            b.learning_cap_cents as f64 / b.daily_cap_cents as f64
        });
    let budget = CampaignBudget::with_learning_share(cap_cents, None, learning_share);
    let learning_cap_cents = budget.learning_cap_cents;
    settings.budgets.campaigns = HashMap::from([(campaign.clone(), budget)]);
    let clock = Arc::new(ManualClock::new(w.start_ms));
    let mut engine: Engine = crate::app::memory_engine(&settings, model.clone(), clock.clone());
    if let Some(dir) = log_dir {
        engine.log = crate::decision_log::writer::DecisionLog::start(
            &crate::decision_log::writer::LogSettings {
                dir: dir.to_owned(),
                rotate_bytes: 64 * 1024 * 1024,
                // Never drop: the simulation waits for nobody.
                queue: 1 << 20,
                // A simulated run keeps every file it writes.
                retention: None,
                disk_full: Default::default(),
            },
            clock.clone(),
        )
        .map_err(|e| format!("decision log {}: {e}", dir.display()))?;
    }
    let mut o = Offers::new(w.visits.len());
    o.learning_cents = vec![0; w.days];
    o.learning_cap_cents = learning_cap_cents;
    let mut sent = vec![0usize; w.visits.len()];
    let mut spent = vec![0i64; w.days];
    let mut next_tick = w.start_ms;
    for m in &w.moments {
        // The pacing ticker: every simulated minute up to this moment.
        while next_tick <= m.at_ms {
            clock.set(next_tick);
            engine.update_pacing().await;
            next_tick += MS_PER_MINUTE;
        }
        clock.set(m.at_ms);
        let v = m.visit as usize;
        let visit = &w.visits[v];
        let upto = m.after_events as usize;
        let input = DecideInput {
            session_id: visit.s.session_id.clone(),
            visitor_id: Some(visit.s.visitor_id.clone()),
            context: (sent[v] == 0).then_some(visit.s.context),
            events: visit.s.events[sent[v]..upto].to_vec(),
            client: ClientFeatures::default(),
            intent_value_cents: None,
            campaign: String::new(),
        };
        sent[v] = upto;
        // The engine logs every offer at info level: silence it here.
        let d = engine
            .decide(input)
            .with_subscriber(tracing::subscriber::NoSubscriber::default())
            .await
            .map_err(|e| format!("decide: {e}"))?;
        *o.reasons.entry(d.reason.as_str().to_owned()).or_default() += 1;
        match d.reason {
            engine::Reason::Offered => {
                let amount = d.offer.as_ref().map_or(0, |x| x.amount_cents);
                if o.amount[v] == 0 {
                    o.amount[v] = amount;
                    spent[m.day] += amount;
                    if d.explored {
                        o.learning_cents[m.day] += amount;
                    } else {
                        o.greedy += 1;
                    }
                    if o.exhausted_at_ms.is_none() && cap_cents - spent[m.day] < smallest_tier {
                        o.exhausted_at_ms = Some(m.at_ms);
                    }
                }
            }
            engine::Reason::BudgetExhausted | engine::Reason::LearningBudgetExhausted => {
                o.refused_for_budget += 1
            }
            _ => {}
        }
    }
    if log_dir.is_some() {
        // Each session's label, under the voucher it was offered (common
        // random numbers), recorded at the end of the run as the web tier
        // would (RecordOutcome), which logs it.
        for (visit, &offered) in w.visits.iter().zip(&o.amount) {
            let effective = if offered > 0 && visit.redeemable {
                offered
            } else {
                0
            };
            let converted = visit.s.truth.converts_with(effective);
            engine
                .record_outcome(crate::engine::OutcomeInput {
                    session_id: visit.s.session_id.clone(),
                    converted,
                    order_value_cents: if converted {
                        visit.order_value_cents
                    } else {
                        0
                    },
                })
                .await
                .map_err(|e| format!("record outcome: {e}"))?;
        }
        engine.log.flush().await;
        if engine.log.dropped() > 0 {
            return Err(format!("decision log dropped {} records", engine.log.dropped()).into());
        }
    }
    // Cross-check with the ledger: what it authorised today.
    let snap = engine
        .ledger
        .snapshot(&campaign, clock_now(&clock))
        .await
        .map_err(|e| format!("ledger: {e}"))?;
    let last_day = w.days.saturating_sub(1);
    if snap.reserved_cents + snap.captured_cents != spent.get(last_day).copied().unwrap_or(0) {
        return Err(format!(
            "ledger disagrees: reserved {} + captured {} vs offered {}",
            snap.reserved_cents,
            snap.captured_cents,
            spent.get(last_day).copied().unwrap_or(0)
        )
        .into());
    }
    Ok(o)
}

pub(crate) fn clock_now(c: &ManualClock) -> i64 {
    use crate::clock::Clock;
    c.now_ms()
}

/// True expected net value of offering `v` to a visit (0 when unredeemable).
pub(crate) fn true_env(visit: &Visit, v: i64, m: f64) -> f64 {
    if v <= 0 || !visit.redeemable {
        return 0.0;
    }
    let t = &visit.s.truth;
    let margin = m * visit.order_value_cents as f64;
    let (p0, pv) = (t.p_buy(0), t.p_buy(v));
    pv * (margin - v as f64) - p0 * margin
}

/// The hindsight oracle; returns the offers and the per-day shadow price.
/// `only`: the visits it may offer to (None: every visit).
pub(crate) fn run_oracle(
    w: &World,
    tiers: &[i64],
    m: f64,
    cap_cents: i64,
    only: Option<&[bool]>,
) -> (Offers, Vec<f64>) {
    let mut o = Offers::new(w.visits.len());
    let mut mus = Vec::with_capacity(w.days);
    for day in 0..w.days {
        // Candidates: (visit, [(amount, ENV)]) with some ENV > 0.
        let cands: Vec<(usize, Vec<(i64, f64)>)> = w
            .visits
            .iter()
            .enumerate()
            .filter(|(i, v)| v.day == day && v.redeemable && only.is_none_or(|o| o[*i]))
            .filter_map(|(i, v)| {
                let opts: Vec<(i64, f64)> = tiers
                    .iter()
                    .map(|&a| (a, true_env(v, a, m)))
                    .filter(|(a, e)| *e > 0.0 && *a <= cap_cents)
                    .collect();
                (!opts.is_empty()).then_some((i, opts))
            })
            .collect();
        let choose = |mu: f64, opts: &[(i64, f64)]| -> Option<(i64, f64)> {
            opts.iter()
                .copied()
                .filter(|(a, e)| e - mu * *a as f64 > 0.0)
                .max_by(|x, y| {
                    (x.1 - mu * x.0 as f64)
                        .total_cmp(&(y.1 - mu * y.0 as f64))
                        .then(y.0.cmp(&x.0))
                })
        };
        let spend = |mu: f64| -> i64 {
            cands
                .iter()
                .filter_map(|(_, opts)| choose(mu, opts))
                .map(|(a, _)| a)
                .sum()
        };
        let (mut lo, mut hi) = (0.0f64, 0.0f64);
        if spend(0.0) > cap_cents {
            hi = 1.0;
            while spend(hi) > cap_cents && hi < 1e9 {
                lo = hi;
                hi *= 2.0;
            }
            for _ in 0..60 {
                let mid = 0.5 * (lo + hi);
                if spend(mid) > cap_cents {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
        }
        mus.push(hi);
        let mut pick: Vec<Option<(i64, f64)>> = cands.iter().map(|(_, o)| choose(hi, o)).collect();
        let mut used: i64 = pick.iter().flatten().map(|(a, _)| a).sum();
        // Fill the leftover: the moves (new offer or upgrade) with the best
        // extra value per extra euro, while they fit.
        let mut moves: Vec<(f64, usize, i64, f64)> = Vec::new();
        for (k, (_, opts)) in cands.iter().enumerate() {
            let (a0, e0) = pick[k].unwrap_or((0, 0.0));
            for &(a, e) in opts {
                if a > a0 && e > e0 {
                    moves.push(((e - e0) / (a - a0) as f64, k, a, e));
                }
            }
        }
        moves.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        for (_, k, a, e) in moves {
            let (a0, e0) = pick[k].unwrap_or((0, 0.0));
            if a > a0 && e > e0 && used - a0 + a <= cap_cents {
                used += a - a0;
                pick[k] = Some((a, e));
            }
        }
        for (k, (i, _)) in cands.iter().enumerate() {
            if let Some((a, _)) = pick[k] {
                o.amount[*i] = a;
            }
        }
    }
    (o, mus)
}
