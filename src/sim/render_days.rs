//! The multi-day report as a table, an SVG chart of daily net per policy
//! and an HTML page.

use super::days::*;
use super::render::{colour, eur, nice_step, roi_text};
use crate::html::escape;
use std::fmt::Write as _;

const MONEY_NOTE: &str = "Money in EUR, in expectation under the true purchase probabilities: vouchers = offered; cost = expected face value redeemed; net = expected incremental margin over none (margin rate x extra revenue) minus cost; ROI = incremental margin / cost.";

fn night_text(d: &DayReport) -> String {
    match d.model.replaced {
        Some(true) => "replaced the model".into(),
        Some(false) => "kept the model".into(),
        None => "(last day, no retraining)".into(),
    }
}

fn policy_rows(out: &mut String, policies: &[DayPolicy]) {
    let _ = writeln!(
        out,
        "  {:<19}{:>9}{:>10}{:>10}{:>7}",
        "policy", "vouchers", "cost", "net", "ROI"
    );
    for p in policies {
        let _ = writeln!(
            out,
            "  {:<19}{:>9}{:>10}{:>10}{:>7}",
            p.policy,
            p.vouchers,
            eur(p.cost_eur * 100.0),
            eur(p.net_eur * 100.0),
            roi_text(p.roi)
        );
    }
}

/// The readable table: one block per day, the total, and net by day.
pub fn render_days_table(r: &DaysReport) -> String {
    let s = &r.setup;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "nudge simulate: {} day{}, world {}, seed {}, {} sessions/h, budget {} EUR/day, blanket {} EUR, holdout {:.0} %, time zone {}",
        r.days.len(),
        if r.days.len() == 1 { "" } else { "s" },
        r.world,
        s.seed,
        s.sessions_per_hour,
        eur(s.budget_eur as f64 * 100.0),
        eur(s.blanket_voucher_cents as f64),
        s.holdout_share * 100.0,
        s.timezone
    );
    let _ = writeln!(out, "{MONEY_NOTE}");
    for d in &r.days {
        let _ = writeln!(
            out,
            "\nday {}: {} sessions; nudge served model {}; learning spend {} of {} EUR; greedy vouchers {}; that night: {}",
            d.day,
            d.sessions,
            d.model.version,
            eur(d.learning_spend_eur * 100.0),
            eur(d.learning_budget_eur * 100.0),
            d.nudge_greedy_vouchers,
            night_text(d)
        );
        policy_rows(&mut out, &d.policies);
    }
    let _ = writeln!(
        out,
        "\ntotal over {} day{}",
        r.days.len(),
        if r.days.len() == 1 { "" } else { "s" }
    );
    policy_rows(&mut out, &r.total.policies);
    let _ = writeln!(out, "\nnet by day (EUR)");
    let _ = write!(out, "  {:<19}", "policy");
    for d in &r.days {
        let _ = write!(out, "{:>9}", format!("day {}", d.day));
    }
    let _ = writeln!(out, "{:>10}", "total");
    for t in &r.total.policies {
        let _ = write!(out, "  {:<19}", t.policy);
        for d in &r.days {
            let net = d
                .policies
                .iter()
                .find(|p| p.policy == t.policy)
                .map_or(0.0, |p| p.net_eur);
            let _ = write!(out, "{:>9}", eur(net * 100.0));
        }
        let _ = writeln!(out, "{:>10}", eur(t.net_eur * 100.0));
    }
    out
}

/// Daily net (EUR) of one policy.
fn series(r: &DaysReport, name: &str) -> Vec<f64> {
    r.days
        .iter()
        .map(|d| {
            d.policies
                .iter()
                .find(|p| p.policy == name)
                .map_or(0.0, |p| p.net_eur)
        })
        .collect()
}

/// A self-contained SVG line chart: expected net incremental margin (EUR)
/// per day, one line (with a dot per day) per policy.
pub fn render_days_svg(r: &DaysReport) -> String {
    let (w, h) = (820.0, 480.0);
    let (left, right, top, bottom) = (90.0, 190.0, 50.0, 60.0);
    let (pw, ph) = (w - left - right, h - top - bottom);
    let names: Vec<&str> = r.total.policies.iter().map(|p| p.policy.as_str()).collect();
    let all: Vec<Vec<f64>> = names.iter().map(|n| series(r, n)).collect();
    let (mut lo, mut hi) = all
        .iter()
        .flatten()
        .fold((0.0f64, 0.0f64), |(a, b), v| (a.min(*v), b.max(*v)));
    if hi - lo < 1.0 {
        hi += 1.0;
        lo -= 1.0;
    }
    let step = nice_step(hi - lo, 6.0);
    let (lo, hi) = ((lo / step).floor() * step, (hi / step).ceil() * step);
    let n = r.days.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            left + pw / 2.0
        } else {
            left + pw * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: f64| top + ph * (hi - v) / (hi - lo);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">"
    );
    let _ = writeln!(
        s,
        "<rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n<text x=\"{left}\" y=\"28\" font-size=\"15\">Expected net incremental margin per day (EUR), budget {} EUR/day</text>",
        escape(&eur(r.setup.budget_eur as f64 * 100.0))
    );
    let mut v = lo;
    while v <= hi + step / 2.0 {
        let yy = y(v);
        let stroke = if v.abs() < step / 2.0 { "#444" } else { "#ddd" };
        let _ = writeln!(
            s,
            "<line x1=\"{left}\" y1=\"{yy:.1}\" x2=\"{:.1}\" y2=\"{yy:.1}\" stroke=\"{stroke}\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left + pw,
            left - 8.0,
            yy + 4.0,
            escape(&eur(v * 100.0))
        );
        v += step;
    }
    for (i, d) in r.days.iter().enumerate() {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">day {}</text>",
            x(i),
            top + ph + 20.0,
            d.day
        );
    }
    for (k, (name, vals)) in names.iter().zip(&all).enumerate() {
        let c = colour(name);
        let points: Vec<String> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            points.join(" ")
        );
        for (i, v) in vals.iter().enumerate() {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>",
                x(i),
                y(*v)
            );
        }
        let ly = top + 10.0 + 20.0 * k as f64;
        let lx = left + pw + 20.0;
        let _ = writeln!(
            s,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{:.1}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"2\"/>\n<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            escape(name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn money_cells(p: &DayPolicy) -> String {
    format!(
        "<td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
        p.vouchers,
        escape(&eur(p.cost_eur * 100.0)),
        escape(&eur(p.net_eur * 100.0)),
        escape(&roi_text(p.roi))
    )
}

/// An HTML page: the setup, the chart inline, the totals, the nights and
/// one table per day.
pub fn render_days_html(r: &DaysReport) -> String {
    let s = &r.setup;
    let mut b = String::new();
    let _ = writeln!(
        b,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>nudge simulate: {} days</title>\n<style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin:0.5em 0 1.5em}}th,td{{border:1px solid #ccc;padding:0.25em 0.6em}}td{{text-align:right}}td:first-child{{text-align:left}}</style>\n</head>\n<body>",
        r.days.len()
    );
    let _ = writeln!(
        b,
        "<h1>nudge simulate: {} days</h1>\n<p>World {}, seed {}, {} sessions/h, daily budget {} EUR, blanket voucher {} EUR, holdout {:.0} %, time zone {}.</p>\n<p>{}</p>",
        r.days.len(),
        escape(&r.world),
        s.seed,
        s.sessions_per_hour,
        escape(&eur(s.budget_eur as f64 * 100.0)),
        escape(&eur(s.blanket_voucher_cents as f64)),
        s.holdout_share * 100.0,
        escape(&s.timezone),
        escape(MONEY_NOTE)
    );
    b.push_str(&render_days_svg(r));
    let _ = writeln!(
        b,
        "<h2>Total</h2>\n<table>\n<tr><th>policy</th><th>vouchers</th><th>cost</th><th>net</th><th>ROI</th></tr>"
    );
    for p in &r.total.policies {
        let _ = writeln!(
            b,
            "<tr><td>{}</td>{}</tr>",
            escape(&p.policy),
            money_cells(p)
        );
    }
    b.push_str("</table>\n");
    let _ = writeln!(
        b,
        "<h2>nudge by day</h2>\n<table>\n<tr><th>day</th><th>sessions</th><th>model served</th><th>greedy vouchers</th><th>learning spend (EUR)</th><th>learning budget (EUR)</th><th>that night</th></tr>"
    );
    for d in &r.days {
        let _ = writeln!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            d.day,
            d.sessions,
            escape(&d.model.version),
            d.nudge_greedy_vouchers,
            escape(&eur(d.learning_spend_eur * 100.0)),
            escape(&eur(d.learning_budget_eur * 100.0)),
            escape(&night_text(d))
        );
    }
    b.push_str("</table>\n");
    for d in &r.days {
        let _ = writeln!(
            b,
            "<h2>Day {}</h2>\n<table>\n<tr><th>policy</th><th>vouchers</th><th>cost</th><th>net</th><th>ROI</th></tr>",
            d.day
        );
        for p in &d.policies {
            let _ = writeln!(
                b,
                "<tr><td>{}</td>{}</tr>",
                escape(&p.policy),
                money_cells(p)
            );
        }
        b.push_str("</table>\n");
    }
    b.push_str("</body>\n</html>\n");
    b
}
