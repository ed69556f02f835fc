//! The simulation report as a table, an SVG chart and an HTML page.

use super::*;

pub(crate) fn eur(cents: f64) -> String {
    let v = cents / 100.0;
    let neg = v < 0.0;
    let whole = v.abs().round() as i64;
    let s = whole.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if neg && whole != 0 {
        format!("-{out}")
    } else {
        out
    }
}

pub(crate) fn roi_text(r: Option<f64>) -> String {
    r.map_or_else(|| "n/a".into(), |r| format!("{r:.2}"))
}

/// The readable table: one block per budget, then the sweep of net
/// incremental margin.
pub fn render_table(r: &SimReport) -> String {
    let mut out = String::new();
    let t = &r.traffic;
    let _ = writeln!(
        out,
        "nudge simulate: seed {}, world {}, {} sessions ({} /h for {} h from local midnight, {}), {} decision moments",
        r.seed, r.world, t.sessions, r.sessions_per_hour, r.hours, r.timezone, t.decision_moments
    );
    let _ = writeln!(
        out,
        "model {}; margin {:.0} %, tiers {}, min intent {} EUR, min order {} EUR; holdout {:.0} %, exploration {:.0} %, offers on priors {}, pacing {}",
        r.model_version,
        r.margin_rate * 100.0,
        r.tiers
            .iter()
            .map(|(a, l)| format!("{}/{l:.2}", a / 100))
            .collect::<Vec<_>>()
            .join(" "),
        r.min_intent_cents / 100,
        r.min_order_cents / 100,
        r.holdout_share * 100.0,
        r.explore_share * 100.0,
        if r.offer_on_priors { "yes" } else { "no" },
        if r.pacing_enabled { "on" } else { "off" }
    );
    let _ = writeln!(
        out,
        "traffic: {} sessions with intent >= {} EUR, {} of them hesitant at such a moment; {} conversions and {} EUR revenue without vouchers",
        t.sessions_high_intent,
        r.min_intent_cents / 100,
        t.sessions_hesitant_high_intent,
        t.conversions_without_vouchers,
        eur(t.revenue_without_vouchers_cents as f64)
    );
    let _ = writeln!(
        out,
        "eligible (hesitant, intent >= {} EUR): mean model p {:.3} vs true p0 {:.3}; true mean lift {} (prior {}); {:.0} % have a tier with true ENV > 0",
        r.min_intent_cents / 100,
        t.eligible_mean_model_p,
        t.eligible_mean_true_p0,
        t.eligible_true_mean_lift
            .iter()
            .map(|(a, l)| format!("{}/{l:.2}", a / 100))
            .collect::<Vec<_>>()
            .join(" "),
        r.tiers
            .iter()
            .map(|(a, l)| format!("{}/{l:.2}", a / 100))
            .collect::<Vec<_>>()
            .join(" "),
        t.eligible_share_true_env_positive * 100.0
    );
    let _ = writeln!(
        out,
        "heat-tier bands (model probability): {}",
        r.heat_tier_bands
            .iter()
            .map(|b| format!(
                "[{:.3}, {:.3}) -> {} EUR",
                b.from,
                b.to,
                b.voucher_cents / 100
            ))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "money in EUR; incr. margin M = margin x extra revenue (gross of vouchers), net = M - cost, ROI = M / cost; E[net] under the true probabilities"
    );
    for run in &r.runs {
        let binding = run.oracle_mu.iter().any(|mu| *mu > 0.0)
            && run
                .policy(BLANKET)
                .is_some_and(|b| b.refused_for_budget > 0);
        let _ = writeln!(
            out,
            "\nbudget {} EUR/day{}",
            eur(run.budget_eur as f64 * 100.0),
            if binding { " (binding)" } else { "" }
        );
        let _ = writeln!(
            out,
            "  {:<17}{:>9}{:>9}{:>10}{:>10}{:>7}{:>12}{:>11}{:>11}{:>11}{:>7}{:>10}",
            "policy",
            "vouchers",
            "redeemed",
            "used",
            "cost",
            "conv",
            "revenue",
            "incr. M",
            "net incr.",
            "E[net]",
            "ROI",
            "out at h"
        );
        for p in &run.policies {
            let _ = writeln!(
                out,
                "  {:<17}{:>9}{:>9}{:>10}{:>10}{:>7}{:>12}{:>11}{:>11}{:>11}{:>7}{:>10}",
                p.policy,
                p.vouchers_offered,
                p.vouchers_redeemed,
                eur(p.budget_used_cents as f64),
                eur(p.cost_cents as f64),
                p.conversions,
                eur(p.revenue_cents as f64),
                eur(p.incremental_margin_cents),
                eur(p.net_incremental_margin_cents),
                eur(p.expected.net_incremental_margin_cents),
                roi_text(p.roi),
                p.budget_exhausted_at_hour
                    .map_or_else(|| "-".into(), |h| format!("{h:.1}"))
            );
        }
    }
    let names = policy_names(r);
    let _ = writeln!(out, "\nsweep: net incremental margin (EUR) by daily budget");
    let _ = write!(out, "  {:<17}", "policy");
    for run in &r.runs {
        let _ = write!(
            out,
            "{:>12}",
            format!("{} EUR", eur(run.budget_eur as f64 * 100.0))
        );
    }
    out.push('\n');
    for name in &names {
        let _ = write!(out, "  {name:<17}");
        for run in &r.runs {
            let v = run
                .policy(name)
                .map_or_else(|| "-".into(), |p| eur(p.net_incremental_margin_cents));
            let _ = write!(out, "{v:>12}");
        }
        out.push('\n');
    }
    out
}

pub(crate) fn policy_names(r: &SimReport) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for run in &r.runs {
        for p in &run.policies {
            if !names.contains(&p.policy) {
                names.push(p.policy.clone());
            }
        }
    }
    names
}

pub(crate) fn colour(name: &str) -> &'static str {
    match name {
        NONE => "#7f7f7f",
        BLANKET => "#d62728",
        HEAT_TIER => "#ff7f0e",
        NUDGE => "#1f77b4",
        NUDGE_NO_HOLDOUT => "#17becf",
        NUDGE_EXIT_INTENT => "#bcbd22",
        ORACLE => "#2ca02c",
        ORACLE_IN_RULE => "#98df8a",
        _ => "#9467bd",
    }
}

/// A "nice" tick step for a range.
pub(crate) fn nice_step(range: f64, ticks: f64) -> f64 {
    let raw = (range / ticks).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let f = raw / mag;
    let nice = if f <= 1.0 {
        1.0
    } else if f <= 2.0 {
        2.0
    } else if f <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * mag
}

/// A self-contained SVG line chart: net incremental margin (EUR) against the
/// daily budget (EUR, log scale when the budgets span 4x or more), one line
/// per policy.
pub fn render_svg(r: &SimReport) -> String {
    let (w, h) = (820.0, 480.0);
    let (left, right, top, bottom) = (90.0, 190.0, 50.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let budgets: Vec<f64> = r.runs.iter().map(|x| x.budget_eur as f64).collect();
    let (bmin, bmax) = budgets
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(*v), b.max(*v))
        });
    let log = bmax / bmin >= 4.0;
    let xf = |b: f64| -> f64 {
        if bmax <= bmin {
            return left + pw / 2.0;
        }
        let t = if log {
            (b.ln() - bmin.ln()) / (bmax.ln() - bmin.ln())
        } else {
            (b - bmin) / (bmax - bmin)
        };
        left + t * pw
    };
    let names = policy_names(r);
    let values: Vec<f64> = r
        .runs
        .iter()
        .flat_map(|run| {
            run.policies
                .iter()
                .map(|p| p.net_incremental_margin_cents / 100.0)
        })
        .collect();
    let vmin = values.iter().copied().fold(0.0f64, f64::min);
    let vmax = values.iter().copied().fold(0.0f64, f64::max);
    let step = nice_step((vmax - vmin).max(1.0), 6.0);
    let ylo = (vmin / step).floor() * step;
    let yhi = ((vmax / step).ceil() * step).max(ylo + step);
    let yf = |v: f64| top + ph - (v - ylo) / (yhi - ylo) * ph;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" text-anchor="middle" font-size="15">Net incremental margin vs daily budget (seed {}, {} sessions)</text>"#,
        left + pw / 2.0,
        r.seed,
        r.traffic.sessions
    );
    // Y grid and labels.
    let mut y = ylo;
    while y <= yhi + step * 0.01 {
        let py = yf(y);
        let _ = writeln!(
            s,
            r##"<line x1="{left}" y1="{py:.1}" x2="{:.1}" y2="{py:.1}" stroke="{}" stroke-width="1"/>"##,
            left + pw,
            if y.abs() < step * 1e-6 {
                "#444"
            } else {
                "#e5e5e5"
            }
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 8.0,
            py + 4.0,
            crate::html::escape(&eur(y * 100.0))
        );
        y += step;
    }
    // X ticks at the budgets.
    for b in &budgets {
        let px = xf(*b);
        let _ = writeln!(
            s,
            r##"<line x1="{px:.1}" y1="{top}" x2="{px:.1}" y2="{:.1}" stroke="#f0f0f0"/>"##,
            top + ph
        );
        let _ = writeln!(
            s,
            r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            top + ph + 18.0,
            crate::html::escape(&eur(b * 100.0))
        );
    }
    let _ = writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#444"/>"##
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">daily budget (EUR{})</text>"#,
        left + pw / 2.0,
        h - 18.0,
        if log { ", log scale" } else { "" }
    );
    let _ = writeln!(
        s,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">net incremental margin (EUR over the run)</text>"#,
        top + ph / 2.0
    );
    for (i, name) in names.iter().enumerate() {
        let c = colour(name);
        let pts: Vec<(f64, f64)> = r
            .runs
            .iter()
            .filter_map(|run| {
                run.policy(name).map(|p| {
                    (
                        xf(run.budget_eur as f64),
                        yf(p.net_incremental_margin_cents / 100.0),
                    )
                })
            })
            .collect();
        let dash = if name == ORACLE || name == ORACLE_IN_RULE || name == NUDGE_NO_HOLDOUT {
            r#" stroke-dasharray="6 4""#
        } else {
            ""
        };
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{c}" stroke-width="2.5"{dash} points="{}"/>"#,
            pts.iter()
                .map(|(x, y)| format!("{x:.1},{y:.1}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for (x, y) in &pts {
            let _ = writeln!(s, r#"<circle cx="{x:.1}" cy="{y:.1}" r="3.5" fill="{c}"/>"#);
        }
        let ly = top + 10.0 + 22.0 * i as f64;
        let lx = left + pw + 20.0;
        let _ = writeln!(
            s,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="2.5"{dash}/>"#,
            lx + 28.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 36.0,
            ly + 4.0,
            crate::html::escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// An HTML page with the chart inline and the table.
pub fn render_html(r: &SimReport) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>nudge simulate (seed {})</title>\n<style>body{{font-family:sans-serif;margin:2em}}pre{{font-size:12px}}</style>\n</head>\n<body>\n<h1>nudge simulate</h1>\n{}\n<pre>{}</pre>\n<ul>\n{}</ul>\n</body>\n</html>\n",
        r.seed,
        render_svg(r),
        crate::html::escape(&render_table(r)),
        r.definitions
            .iter()
            .map(|d| format!("<li>{}</li>\n", crate::html::escape(d)))
            .collect::<String>()
    )
}
