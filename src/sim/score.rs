//! Scoring a policy run: realised and expected money against none.

use super::*;

/// Outcomes and metrics of a set of offers.
pub(crate) fn evaluate(
    w: &World,
    name: &str,
    o: &Offers,
    m: f64,
    tiers: &[i64],
    none: Option<&PolicyResult>,
) -> PolicyResult {
    let mut r = PolicyResult {
        policy: name.to_owned(),
        refused_for_budget: o.refused_for_budget,
        budget_exhausted_at_hour: o
            .exhausted_at_ms
            .map(|t| (t - w.start_ms) as f64 / MS_PER_HOUR as f64),
        reasons: o.reasons.clone(),
        by_tier: tiers.iter().map(|&a| (a, 0, 0)).collect(),
        ..PolicyResult::default()
    };
    let mut e = Expected::default();
    for (visit, &offered) in w.visits.iter().zip(&o.amount) {
        let t = &visit.s.truth;
        // An unredeemable voucher does nothing.
        let effective = if offered > 0 && visit.redeemable {
            offered
        } else {
            0
        };
        let converts = t.converts_with(effective);
        if offered > 0 {
            r.vouchers_offered += 1;
            r.budget_used_cents += offered;
        }
        let redeemed = converts && effective > 0;
        if converts {
            r.conversions += 1;
            r.revenue_cents += visit.order_value_cents;
        }
        if redeemed {
            r.vouchers_redeemed += 1;
            r.cost_cents += effective;
        }
        if let Some(row) = r.by_tier.iter_mut().find(|x| x.0 == offered) {
            row.1 += 1;
            row.2 += u64::from(redeemed);
        } else if offered > 0 {
            r.by_tier.push((offered, 1, u64::from(redeemed)));
        }
        if effective > 0 {
            let (p0, pv) = (t.p_buy(0), t.p_buy(effective));
            let margin = m * visit.order_value_cents as f64;
            e.incremental_conversions += pv - p0;
            e.incremental_margin_cents += (pv - p0) * margin;
            e.cost_cents += pv * effective as f64;
        }
    }
    e.net_incremental_margin_cents = e.incremental_margin_cents - e.cost_cents;
    e.roi = (e.cost_cents > 0.0).then(|| e.incremental_margin_cents / e.cost_cents);
    r.expected = e;
    r.margin_cents = m * r.revenue_cents as f64 - r.cost_cents as f64;
    let (base_conv, base_rev) = none.map_or((r.conversions, r.revenue_cents), |n| {
        (n.conversions, n.revenue_cents)
    });
    r.incremental_conversions = r.conversions as i64 - base_conv as i64;
    r.incremental_revenue_cents = r.revenue_cents - base_rev;
    r.incremental_margin_cents = m * r.incremental_revenue_cents as f64;
    r.net_incremental_margin_cents = r.incremental_margin_cents - r.cost_cents as f64;
    r.roi = (r.cost_cents > 0).then(|| r.incremental_margin_cents / r.cost_cents as f64);
    r
}
