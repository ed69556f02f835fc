//! The evaluation report: one self-contained HTML page (inline SVG plots
//! rendered in Rust with plotters' SVG backend, no scripts, no external
//! files or fonts) and `metrics.json`, written atomically into a directory.
//!
//! Plots (each an `<svg>` inside `<figure id="...">`):
//! - `roc`: the ROC curve with the chance diagonal;
//! - `calibration`: mean predicted probability vs observed rate per decile;
//! - `histogram`: score histograms by class (each normalised to its class
//!   size, so the minority class stays visible);
//! - `coefficients`: the model terms' coefficients as horizontal bars,
//!   largest |coefficient| at the top, the intercept as a caption (as a bar
//!   it would only set the scale);
//!
//! followed by the coefficient table, the metrics, the calibration table and
//! the confusion tables at the segment thresholds.

use crate::eval::Evaluation;
use crate::metrics;
use crate::output::write_atomic;
use anyhow::{Context as _, Result};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::path::Path;

/// The figure ids the page always holds.
pub const PLOTS: [&str; 4] = ["roc", "calibration", "histogram", "coefficients"];

const W: u32 = 520;
const H: u32 = 400;

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plot: {e:?}")
}

fn roc_svg(p: &[f64], y: &[bool], auc: Option<f64>) -> Result<String> {
    let pts = metrics::roc_curve(p, y);
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let title = match auc {
            Some(a) => format!("ROC curve (AUC {a:.4})"),
            None => "ROC curve".into(),
        };
        let mut c = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("false positive rate")
            .y_desc("true positive rate")
            .draw()
            .map_err(err)?;
        c.draw_series(LineSeries::new(
            [(0.0, 0.0), (1.0, 1.0)],
            &RGBColor(170, 170, 170),
        ))
        .map_err(err)?;
        c.draw_series(LineSeries::new(pts, BLUE.stroke_width(2)))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(s)
}

fn calibration_svg(e: &Evaluation) -> Result<String> {
    let hi = e
        .calibration
        .iter()
        .map(|b| b.mean_predicted.max(b.observed_rate))
        .fold(0.05f64, f64::max)
        .min(1.0)
        * 1.05;
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut c = ChartBuilder::on(&root)
            .caption("Calibration (deciles)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..hi, 0f64..hi)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("mean predicted probability")
            .y_desc("observed rate")
            .draw()
            .map_err(err)?;
        c.draw_series(LineSeries::new(
            [(0.0, 0.0), (hi, hi)],
            &RGBColor(170, 170, 170),
        ))
        .map_err(err)?;
        let pts: Vec<(f64, f64)> = e
            .calibration
            .iter()
            .map(|b| (b.mean_predicted, b.observed_rate))
            .collect();
        c.draw_series(LineSeries::new(pts.clone(), RED.stroke_width(2)))
            .map_err(err)?;
        c.draw_series(pts.into_iter().map(|p| Circle::new(p, 4, RED.filled())))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(s)
}

fn histogram_svg(p: &[f64], y: &[bool]) -> Result<String> {
    const BINS: usize = 20;
    let mut h = [[0f64; BINS]; 2];
    let n = [
        y.iter().filter(|v| !**v).count().max(1) as f64,
        y.iter().filter(|v| **v).count().max(1) as f64,
    ];
    for (&pi, &yi) in p.iter().zip(y) {
        let b = ((pi * BINS as f64) as usize).min(BINS - 1);
        h[usize::from(yi)][b] += 1.0 / n[usize::from(yi)];
    }
    let top = h.iter().flatten().fold(0.01f64, |a, &b| a.max(b)) * 1.1;
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let mut c = ChartBuilder::on(&root)
            .caption("Scores by class (share of class)", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(44)
            .build_cartesian_2d(0f64..1f64, 0f64..top)
            .map_err(err)?;
        c.configure_mesh()
            .x_desc("predicted probability")
            .y_desc("share of the class")
            .draw()
            .map_err(err)?;
        let w = 1.0 / BINS as f64;
        for (cls, color, label) in [
            (0usize, RGBColor(70, 110, 200), "not converted"),
            (1, RGBColor(220, 90, 40), "converted"),
        ] {
            let style = color.mix(0.45).filled();
            c.draw_series((0..BINS).map(|b| {
                let x0 = b as f64 * w;
                Rectangle::new([(x0, 0.0), (x0 + w, h[cls][b])], style)
            }))
            .map_err(err)?
            .label(label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(s)
}

/// The intercept's name in [`coefficients`].
pub const INTERCEPT: &str = "(intercept)";

/// The bars of the coefficient chart: every term but the intercept (a
/// constant would only set the scale), largest |coefficient| first; ties
/// in [`natural_cmp`] order of the names. Terms are on the transformed
/// scale (one standard deviation for standardised features, the indicator
/// for a category level), so their sizes compare.
pub fn chart_order(coefs: &[(String, f64)]) -> Vec<(String, f64)> {
    let mut bars: Vec<(String, f64)> = coefs
        .iter()
        .filter(|(n, _)| n != INTERCEPT)
        .cloned()
        .collect();
    bars.sort_by(|(na, a), (nb, b)| {
        b.abs()
            .total_cmp(&a.abs())
            .then_with(|| natural_cmp(na, nb))
    });
    bars
}

/// Orders names with their digit runs compared as numbers, so category
/// levels read `TrafficType=1, 2, ..., 10` rather than `1, 10, 11, 2`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut digit = None;
        for (i, ch) in s.char_indices() {
            let d = ch.is_ascii_digit();
            if digit.is_some_and(|prev| prev != d) {
                out.push((digit == Some(true), &s[start..i]));
                start = i;
            }
            digit = Some(d);
        }
        if start < s.len() {
            out.push((digit == Some(true), &s[start..]));
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for ((da, xa), (db, xb)) in ca.iter().zip(&cb) {
        let o = if *da && *db {
            let (ta, tb) = (xa.trim_start_matches('0'), xb.trim_start_matches('0'));
            ta.len().cmp(&tb.len()).then_with(|| ta.cmp(tb))
        } else {
            xa.cmp(xb)
        };
        if o.is_ne() {
            return o;
        }
    }
    ca.len().cmp(&cb.len()).then_with(|| a.cmp(b))
}

/// The coefficient table's order: the intercept first, then the terms in
/// model order except that the levels of one category read in
/// [`natural_cmp`] order.
fn table_order(coefs: &[(String, f64)]) -> Vec<(String, f64)> {
    let feature = |n: &str| {
        n.split_once('=')
            .map_or(n.to_owned(), |(f, _)| f.to_owned())
    };
    let mut first_seen: Vec<String> = Vec::new();
    for (n, _) in coefs {
        let f = feature(n);
        if !first_seen.contains(&f) {
            first_seen.push(f);
        }
    }
    let mut out = coefs.to_vec();
    out.sort_by(|(a, _), (b, _)| {
        let rank = |n: &str| {
            if n == INTERCEPT {
                0
            } else {
                1 + first_seen
                    .iter()
                    .position(|f| *f == feature(n))
                    .unwrap_or(0)
            }
        };
        rank(a).cmp(&rank(b)).then_with(|| natural_cmp(a, b))
    });
    out
}

fn coefficients_svg(coefs: &[(String, f64)]) -> Result<String> {
    let bars = chart_order(coefs);
    let n = bars.len().max(1);
    let lim = bars.iter().fold(0.1f64, |a, (_, c)| a.max(c.abs())) * 1.1;
    let height = (60 + 16 * n as u32).max(200);
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (W + 120, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        // plotters counts segments upwards: the largest bar goes last so it
        // is drawn at the top.
        let names: Vec<String> = bars.iter().rev().map(|(n, _)| n.clone()).collect();
        let mut c = ChartBuilder::on(&root)
            .caption(
                "Coefficients by size (log-odds per unit of the transformed term)",
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(30)
            .y_label_area_size(200)
            // One segment per term, so every bar gets its name as a label.
            .build_cartesian_2d(-lim..lim, (0..n).into_segmented())
            .map_err(err)?;
        c.configure_mesh()
            .disable_y_mesh()
            .y_labels(n)
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(err)?;
        c.draw_series(bars.iter().rev().enumerate().map(|(i, (_, v))| {
            let color = if *v >= 0.0 {
                RGBColor(220, 90, 40)
            } else {
                RGBColor(70, 110, 200)
            };
            Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (*v, SegmentValue::Exact(i + 1)),
                ],
                color.filled(),
            )
        }))
        .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(s)
}

fn opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

/// Inputs of a report.
pub struct ReportInput<'a> {
    pub title: &'a str,
    /// One line about the model and data (escaped).
    pub subtitle: &'a str,
    pub p: &'a [f64],
    pub y: &'a [bool],
    pub evaluation: &'a Evaluation,
    /// `(term name, coefficient)` in model order; the intercept first.
    pub coefficients: &'a [(String, f64)],
    /// Extra sections (already HTML), e.g. cross-validation.
    pub extra_html: &'a str,
}

/// Renders the page.
pub fn render_html(r: &ReportInput) -> Result<String> {
    let e = r.evaluation;
    let plots = [
        ("roc", roc_svg(r.p, r.y, e.roc_auc)?),
        ("calibration", calibration_svg(e)?),
        ("histogram", histogram_svg(r.p, r.y)?),
        ("coefficients", coefficients_svg(r.coefficients)?),
    ];
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>\
         body{{font-family:sans-serif;margin:24px;max-width:1200px}}\
         table{{border-collapse:collapse;margin:8px 0 20px}}td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}\
         th{{background:#f3f3f3}}td.l{{text-align:left}}figure{{display:inline-block;margin:8px;vertical-align:top}}\
         </style></head><body>\n<h1>{t}</h1>\n<p>{st}</p>\n",
        t = nudge::html::escape(r.title),
        st = nudge::html::escape(r.subtitle)
    );
    let _ = write!(
        h,
        "<h2>Metrics</h2>\n<table><tr><th>rows</th><th>positives</th><th>base rate</th><th>mean p</th>\
         <th>ROC-AUC</th><th>PR-AUC</th><th>log-loss</th><th>Brier</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.4}</td></tr></table>\n",
        e.rows,
        e.positives,
        e.base_rate,
        e.mean_predicted,
        opt(e.roc_auc),
        opt(e.pr_auc),
        e.log_loss,
        e.brier
    );
    for (id, svg) in &plots {
        let caption = match (*id, r.coefficients.iter().find(|(n, _)| n == INTERCEPT)) {
            ("coefficients", Some((_, b))) => {
                format!("<figcaption>intercept {b:.4} (not drawn)</figcaption>")
            }
            _ => String::new(),
        };
        let _ = writeln!(h, "<figure id=\"{id}\">{}{caption}</figure>", svg.trim());
    }
    let _ = write!(
        h,
        "<h2>Segments and confusion at the thresholds</h2>\n<p>hot: p &gt;= {:.4}; cold: p &lt; {:.4}</p>\n\
         <table><tr><th class=\"l\">segment</th><th>rows</th><th>share</th><th>converted</th><th>conversion</th></tr>",
        e.thresholds.hot_at_or_above, e.thresholds.cold_below
    );
    for (name, c) in [
        ("hot", e.segments.hot),
        ("hesitant", e.segments.hesitant),
        ("cold", e.segments.cold),
    ] {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{name}</td><td>{}</td><td>{:.4}</td><td>{}</td><td>{}</td></tr>",
            c.rows,
            c.share,
            c.converted,
            opt(c.conversion)
        );
    }
    h.push_str("</table>\n");
    for (title, c, note) in [
        (
            "predicted positive = hot",
            e.confusion_hot,
            format!("precision {}", opt(e.hot_precision)),
        ),
        (
            "predicted negative = cold",
            e.confusion_cold,
            format!("NPV {}", opt(e.cold_npv)),
        ),
    ] {
        let _ = writeln!(
            h,
            "<table><tr><th class=\"l\">{title}</th><th>predicted +</th><th>predicted -</th></tr>\
             <tr><td class=\"l\">converted</td><td>{}</td><td>{}</td></tr>\
             <tr><td class=\"l\">not converted</td><td>{}</td><td>{}</td></tr>\
             <tr><td class=\"l\" colspan=\"3\">{note}</td></tr></table>",
            c.tp, c.fn_, c.fp, c.tn
        );
    }
    h.push_str("<h2>Calibration (deciles)</h2>\n<table><tr><th>rows</th><th>p min</th><th>p max</th><th>mean p</th><th>observed</th></tr>");
    for b in &e.calibration {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td><td>{:.4}</td></tr>",
            b.rows, b.p_min, b.p_max, b.mean_predicted, b.observed_rate
        );
    }
    h.push_str("</table>\n<h2>Coefficients</h2>\n<table id=\"coefficient-table\"><tr><th class=\"l\">term</th><th>coefficient</th></tr>");
    for (n, c) in &table_order(r.coefficients) {
        let _ = write!(
            h,
            "<tr><td class=\"l\">{}</td><td>{c:.6}</td></tr>",
            nudge::html::escape(n)
        );
    }
    h.push_str("</table>\n");
    h.push_str(r.extra_html);
    h.push_str("</body></html>\n");
    Ok(h)
}

/// Renders everything first, then writes `index.html` and `metrics.json`
/// into `dir`, each atomically.
pub fn write_report(dir: &Path, r: &ReportInput, metrics: &serde_json::Value) -> Result<()> {
    let html = render_html(r)?;
    write_rendered(dir, &html, metrics)
}

/// Writes an already rendered `index.html` and `metrics.json` into `dir`,
/// each atomically (for callers that render before writing anything else).
pub fn write_rendered(dir: &Path, html: &str, metrics: &serde_json::Value) -> Result<()> {
    let mut json = serde_json::to_vec_pretty(metrics)?;
    json.push(b'\n');
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    write_atomic(&dir.join("metrics.json"), &json)?;
    write_atomic(&dir.join("index.html"), html.as_bytes())?;
    Ok(())
}

/// The coefficient list of a model file (intercept first).
pub fn coefficients(model: &nudge::domain::model::ModelFile) -> Vec<(String, f64)> {
    let mut v = vec![(INTERCEPT.to_string(), model.intercept)];
    v.extend(model.terms.iter().map(|t| {
        (
            match &t.category {
                Some(c) => format!("{}={c}", t.feature),
                None => t.feature.clone(),
            },
            t.coef,
        )
    }));
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge::domain::policy::SegmentThresholds;

    #[test]
    fn page_holds_four_inline_svg_plots_and_the_coefficient_table() {
        let p: Vec<f64> = (0..200).map(|i| (i as f64 + 0.5) / 200.0).collect();
        let y: Vec<bool> = (0..200).map(|i| (i * 7919) % 200 < i).collect();
        let t = SegmentThresholds {
            hot_at_or_above: 0.8,
            cold_below: 0.2,
        };
        let e = crate::eval::evaluate(&p, &y, t);
        let coefs = vec![("(intercept)".to_string(), -1.0), ("a<b".to_string(), 0.5)];
        let html = render_html(&ReportInput {
            title: "t",
            subtitle: "s",
            p: &p,
            y: &y,
            evaluation: &e,
            coefficients: &coefs,
            extra_html: "",
        })
        .unwrap();
        for id in PLOTS {
            let at = html
                .find(&format!("<figure id=\"{id}\"><svg"))
                .unwrap_or_else(|| panic!("{id}"));
            assert!(html[at..].contains("</svg>"));
        }
        assert_eq!(html.matches("<svg").count(), 4);
        assert!(html.contains("a&lt;b"));
        assert!(!html.contains("<script") && !html.contains("src=\""));
    }

    #[test]
    fn coefficient_bars_go_by_size_without_the_intercept() {
        let coefs: Vec<(String, f64)> = [
            (INTERCEPT, -9.0),
            ("TrafficType=1", 0.1),
            ("TrafficType=10", -0.7),
            ("TrafficType=2", 0.1),
            ("PageValues", 1.5),
        ]
        .iter()
        .map(|(n, c)| (n.to_string(), *c))
        .collect();
        let names: Vec<String> = chart_order(&coefs).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "PageValues",
                "TrafficType=10",
                "TrafficType=1",
                "TrafficType=2"
            ]
        );
        let table: Vec<String> = table_order(&coefs).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            table,
            [
                INTERCEPT,
                "TrafficType=1",
                "TrafficType=2",
                "TrafficType=10",
                "PageValues"
            ]
        );
        let svg = coefficients_svg(&coefs).unwrap();
        assert!(!svg.contains(INTERCEPT), "the intercept is no bar");
        // The largest bar is labelled above the smaller ones.
        let label_y = |name: &str| -> f64 {
            let texts = svg.split("<text").skip(1);
            let tag = texts
                .map(|t| t.split("</text>").next().unwrap_or_default())
                .find(|t| {
                    t.split_once('>')
                        .is_some_and(|(_, body)| body.trim() == name)
                })
                .unwrap_or_else(|| panic!("no label {name}"));
            let y = tag.split(" y=\"").nth(1).unwrap();
            y[..y.find('"').unwrap()].parse().unwrap()
        };
        assert!(label_y("PageValues") < label_y("TrafficType=10"));
        assert!(label_y("TrafficType=10") < label_y("TrafficType=2"));
        assert!(natural_cmp("a9", "a10").is_lt() && natural_cmp("a10", "a10").is_eq());
        let p = [0.2, 0.8];
        let y = [false, true];
        let e = crate::eval::evaluate(
            &p,
            &y,
            SegmentThresholds {
                hot_at_or_above: 0.5,
                cold_below: 0.3,
            },
        );
        let html = render_html(&ReportInput {
            title: "t",
            subtitle: "s",
            p: &p,
            y: &y,
            evaluation: &e,
            coefficients: &coefs,
            extra_html: "",
        })
        .unwrap();
        assert!(html.contains("<figcaption>intercept -9.0000 (not drawn)</figcaption>"));
    }
}
