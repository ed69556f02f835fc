//! The ops status page the admin server answers at `GET /`: the live model,
//! the model history with a rollback, each campaign's budget, pacing and
//! controls, and the recent changes.
//!
//! Rendered on the server with maud (templates checked at compile time,
//! text escaped by default) into one self-contained document: no build
//! step, no network beyond the admin server itself, one inline `<style>`
//! and one inline `<script>` whose hashes [`PAGE_CSP`] pins. Campaign ids,
//! reasons and actors come from users: they only ever land in element text
//! and quoted attributes, which maud escapes, and never in the script.
//! Changes go to the admin API (`PATCH /api/v1/campaigns/{id}`,
//! `POST /api/v1/models/rollback`) from the
//! script with `fetch`, same origin, as JSON with the operator token in a
//! header; the token stays in the tab's `sessionStorage`.

pub mod models;

use maud::{html, Markup, PreEscaped, DOCTYPE};
pub use models::{ModelRow, ModelsView};
use std::fmt::Write as _;

/// The inline script: reads campaign ids from the cards' `data-campaign`
/// attributes, so its bytes are the same on every page.
const SCRIPT: &str = include_str!("page/page.js");
/// The inline style sheet.
const STYLE: &str = include_str!("page/page.css");

/// The Content-Security-Policy the page works under. The script and the
/// style sheet are allowed by their SHA-256 hashes (no `'unsafe-inline'`):
/// nothing user-controlled can run even if escaping failed somewhere. The
/// page has no `style` attributes (they would need `'unsafe-hashes'`),
/// fetches only its own origin, loads no images, fonts or frames and posts
/// no forms. A unit test recomputes both hashes from the assets.
pub const PAGE_CSP: &str = "default-src 'none'; \
script-src 'sha256-+CbHHZ7WcT/lV97zV15CY24KrFvka4zplUx1DeZYchM='; \
style-src 'sha256-UxKjpbzFFTr732InRtVqj+KhHTUbQySk8OZUaXQ7hvU='; \
connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Everything the page shows, gathered by the admin server.
#[derive(Debug, Clone)]
pub struct StatusView {
    /// When the page was rendered, e.g. "2026-12-02 10:15:03 UTC".
    pub generated_at: String,
    /// The budget days' time zone, e.g. "Europe/Berlin".
    pub timezone: String,
    pub model_version: String,
    /// Label and value, e.g. ("AUC (held out)", "0.912"); may be empty.
    pub model_metrics: Vec<(String, String)>,
    /// False when no operator tokens are configured: the page asks for none.
    pub auth_required: bool,
    pub models: ModelsView,
    pub campaigns: Vec<CampaignView>,
    /// Newest first, at most 20.
    pub audit: Vec<AuditView>,
}

/// One campaign's settings and today's budget.
#[derive(Debug, Clone)]
pub struct CampaignView {
    pub id: String,
    pub paused: bool,
    /// E.g. "from 2026-12-24 00:00 UTC to 2026-12-27 00:00 UTC"; None: always on.
    pub schedule: Option<String>,
    pub in_schedule: bool,
    pub daily_cap_cents: i64,
    pub total_cap_cents: Option<i64>,
    /// Today's open offers.
    pub reserved_cents: i64,
    /// Today's redeemed discounts.
    pub captured_cents: i64,
    /// What can still be reserved today.
    pub remaining_cents: i64,
    pub learning_cap_cents: i64,
    /// Today, reserved + captured.
    pub learning_spent_cents: i64,
    pub tiers_cents: Vec<i64>,
    pub min_intent_cents: i64,
    pub holdout_share: f64,
    pub explore_share: f64,
    /// Share of the budget day elapsed, 0..1.
    pub day_fraction: f64,
    /// (day fraction, target share of the cap spent), 0..1 each, ascending.
    pub pacing_curve: Vec<(f64, f64)>,
    /// The pacing controller's shadow price.
    pub lambda: f64,
    /// The last 7 budget days (YYYY-MM-DD, reserved + captured cents),
    /// oldest first, today last.
    pub last_days: Vec<(String, i64)>,
}

/// One entry of the audit trail.
#[derive(Debug, Clone)]
pub struct AuditView {
    pub at: String,
    pub actor: String,
    pub campaign: String,
    pub changes: String,
    pub reason: String,
}

/// Cents as euros with two decimals and thousands separators:
/// `eur(123456)` is "€1,234.56", `eur(-5)` is "-€0.05".
pub fn eur(cents: i64) -> String {
    // unsigned_abs: i64::MIN has no positive i64.
    let abs = cents.unsigned_abs();
    let digits = (abs / 100).to_string();
    let mut out = String::with_capacity(digits.len() + 8);
    if cents < 0 {
        out.push('-');
    }
    out.push('€');
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    let _ = write!(out, ".{:02}", abs % 100);
    out
}

/// The cap as typed into the cap field: plain decimal euros, no separators.
fn eur_input(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    format!("{sign}{}.{:02}", abs / 100, abs % 100)
}

/// A share as a percentage: whole numbers when whole, else one decimal.
fn pct(share: f64) -> String {
    let p = finite(share) * 100.0;
    if (p - p.round()).abs() < 0.05 {
        format!("{:.0}%", p)
    } else {
        format!("{:.1}%", p)
    }
}

fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

fn unit(x: f64) -> f64 {
    finite(x).clamp(0.0, 1.0)
}

/// `part / whole` as a share, 0 when there is no whole.
fn share(part: i64, whole: i64) -> f64 {
    if whole <= 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// The pacing target at day fraction `x`, linear between the curve's points.
fn target_at(curve: &[(f64, f64)], x: f64) -> Option<f64> {
    let first = curve.first()?;
    if x <= first.0 {
        return Some(first.1);
    }
    for w in curve.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x <= x1 {
            let t = if x1 > x0 { (x - x0) / (x1 - x0) } else { 1.0 };
            return Some(y0 + t * (y1 - y0));
        }
    }
    curve.last().map(|p| p.1)
}

/// The campaign's state, as its badge shows it.
fn state(c: &CampaignView) -> (&'static str, &'static str) {
    if c.paused {
        ("paused", "paused")
    } else if !c.in_schedule {
        ("outside", "outside schedule")
    } else {
        ("active", "active")
    }
}

/// Renders the whole page.
pub fn render(view: &StatusView) -> String {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { "nudge status" }
                style { (PreEscaped(STYLE)) }
            }
            body data-auth-required=(if view.auth_required { "true" } else { "false" }) {
                header.top {
                    div.top-inner {
                        h1 { "nudge status" }
                        div.sub {
                            "Generated " (view.generated_at) " · budget days in " (view.timezone)
                        }
                        div.model id="model" {
                            span.chip { span { "Model " } b id="model-version" { (view.model_version) } }
                            @for (label, value) in &view.model_metrics {
                                span.chip { span { (label) " " } b { (value) } }
                            }
                        }
                    }
                }
                main {
                    (token_panel(view.auth_required))
                    h2 { "Models" }
                    (models::panel(&view.models))
                    h2 { "Campaigns" }
                    @if view.campaigns.is_empty() {
                        p.panel.empty { "No campaigns are configured." }
                    }
                    div.cards {
                        @for (i, c) in view.campaigns.iter().enumerate() {
                            (card(i, c))
                        }
                    }
                    h2 { "Recent changes" }
                    (audit_table(&view.audit))
                    footer {
                        "Amounts in EUR. Spent = reserved (open offers) + captured (redeemed). \
                         The page does not refresh by itself."
                    }
                }
                script { (PreEscaped(SCRIPT)) }
            }
        }
    };
    markup.into_string()
}

fn token_panel(auth_required: bool) -> Markup {
    html! {
        section.panel id="auth" aria-label="Operator token" {
            @if auth_required {
                label for="token" { "Operator token" }
                input type="password" id="token" name="token" autocomplete="off" spellcheck="false";
                button type="button" id="use-token" name="use_token" { "Use token" }
                button.secondary type="button" id="forget-token" name="forget_token" { "Forget token" }
                span.token-state id="token-state" role="status" { "No token set" }
                span.note { "Kept in this tab only (session storage), sent as a bearer header with each change." }
            } @else {
                span.note id="token-state" {
                    "No operator tokens are configured: changes need no token."
                }
            }
        }
    }
}

fn card(i: usize, c: &CampaignView) -> Markup {
    let (class, label) = state(c);
    let spent = c.reserved_cents.saturating_add(c.captured_cents);
    html! {
        article.card data-campaign=(c.id) data-state=(class) id={ "campaign-" (i) } {
            div.card-head {
                h3 { (c.id) }
                span class={ "badge " (class) } data-badge=(class) { (label) }
            }
            p.schedule {
                @match &c.schedule {
                    Some(s) => { "Scheduled " (s) }
                    None => { "Always on" }
                }
            }
            dl.figures {
                div { dt { "Daily cap" } dd data-field="daily_cap" { (eur(c.daily_cap_cents)) } }
                div {
                    dt { "Spent today" }
                    dd data-field="spent" {
                        (eur(spent))
                        small.detail { (eur(c.reserved_cents)) " reserved + " (eur(c.captured_cents)) " captured" }
                    }
                }
                div { dt { "Remaining today" } dd data-field="remaining" { (eur(c.remaining_cents)) } }
                div {
                    dt { "Learning spend" }
                    dd data-field="learning" {
                        (eur(c.learning_spent_cents)) " " small { "of " (eur(c.learning_cap_cents)) }
                    }
                }
                div {
                    dt { "Lifetime cap" }
                    dd data-field="total_cap" {
                        @match c.total_cap_cents {
                            Some(t) => { (eur(t)) }
                            None => { small { "none" } }
                        }
                    }
                }
                div {
                    dt { "Tiers" }
                    dd data-field="tiers" {
                        @if c.tiers_cents.is_empty() { small { "none" } }
                        @for (k, t) in c.tiers_cents.iter().enumerate() {
                            @if k > 0 { " · " }
                            (eur(*t))
                        }
                    }
                }
                div { dt { "Min intent" } dd data-field="min_intent" { (eur(c.min_intent_cents)) } }
                div {
                    dt { "Holdout / explore" }
                    dd data-field="shares" { (pct(c.holdout_share)) " / " (pct(c.explore_share)) }
                }
                div { dt { "Pacing λ" } dd data-field="lambda" { (format!("{:.3}", finite(c.lambda))) } }
            }
            (spend_bar(c, spent))
            div.charts {
                figure {
                    figcaption { "Pacing today" span.keys { span.key.target { "target" } span.key.spent { "spent" } } }
                    (pacing_chart(i, c, spent))
                }
                figure {
                    figcaption { "Spend, last 7 days" span.keys { span.key.cap { "today's cap" } } }
                    (days_chart(i, c))
                }
            }
            div.controls {
                div.control data-action="pause" role="group" aria-label="Pause or resume" {
                    label.grow for={ "c" (i) "-pause-reason" } {
                        "Reason"
                        input type="text" id={ "c" (i) "-pause-reason" } name="reason" required
                            maxlength="500" placeholder="why pause or resume";
                    }
                    button type="button" name="toggle" id={ "c" (i) "-toggle" }
                        class=(if c.paused { "" } else { "danger" })
                        data-paused=(if c.paused { "true" } else { "false" }) {
                        @if c.paused { "Resume" } @else { "Pause" }
                    }
                }
                div.control data-action="cap" role="group" aria-label="Daily cap" {
                    label for={ "c" (i) "-cap" } {
                        "Daily cap (EUR)"
                        input type="number" id={ "c" (i) "-cap" } name="daily_cap_eur" min="0" step="0.01"
                            inputmode="decimal" value=(eur_input(c.daily_cap_cents));
                    }
                    label.grow for={ "c" (i) "-cap-reason" } {
                        "Reason"
                        input type="text" id={ "c" (i) "-cap-reason" } name="reason" required
                            maxlength="500" placeholder="why change the cap";
                    }
                    button type="button" name="set_cap" id={ "c" (i) "-set-cap" } { "Set cap" }
                }
                div.alert role="alert" id={ "c" (i) "-error" } {}
            }
        }
    }
}

/// Today's spend against the cap: reserved and captured stacked.
fn spend_bar(c: &CampaignView, spent: i64) -> Markup {
    let captured = unit(share(c.captured_cents, c.daily_cap_cents)) * 100.0;
    let reserved = (unit(share(spent, c.daily_cap_cents)) * 100.0 - captured).max(0.0);
    html! {
        div.bar-head {
            span { (pct(unit(share(spent, c.daily_cap_cents)))) " of the daily cap spent" }
            span.keys { span.key.captured { "captured" } span.key.reserved { "reserved" } }
        }
        svg.bar viewBox="0 0 100 4" preserveAspectRatio="none" role="img" {
            title { (eur(spent)) " of " (eur(c.daily_cap_cents)) " spent today" }
            rect x="0" y="0" width="100" height="4" rx="1" fill="#e8ebf0" {}
            rect x="0" y="0" width=(format!("{captured:.2}")) height="4" fill="#2459d6" {}
            rect x=(format!("{captured:.2}")) y="0" width=(format!("{reserved:.2}")) height="4" fill="#8fb0f5" {}
        }
    }
}

// Chart geometry: the plot area inside a 280 × 180 view box.
const X0: f64 = 38.0;
const X1: f64 = 272.0;
const Y0: f64 = 12.0;
const Y1: f64 = 150.0;

fn px(f: f64) -> f64 {
    X0 + unit(f) * (X1 - X0)
}

fn py(s: f64) -> f64 {
    Y1 - unit(s) * (Y1 - Y0)
}

fn n(v: f64) -> String {
    format!("{v:.1}")
}

/// The pacing target curve, the "now" line and today's spend as a point.
fn pacing_chart(i: usize, c: &CampaignView, spent: i64) -> Markup {
    let points = c
        .pacing_curve
        .iter()
        .map(|&(x, y)| format!("{},{}", n(px(x)), n(py(y))))
        .collect::<Vec<_>>()
        .join(" ");
    let now = unit(c.day_fraction);
    let spent_share = unit(share(spent, c.daily_cap_cents));
    let target = target_at(&c.pacing_curve, now);
    let title_id = format!("c{i}-pacing-title");
    let title = match target {
        Some(t) => format!(
            "Pacing of {}: {} of the day elapsed, target {} of the daily cap spent, {} spent",
            c.id,
            pct(now),
            pct(t),
            pct(spent_share)
        ),
        None => format!(
            "Pacing of {}: {} of the day elapsed, {} of the daily cap spent",
            c.id,
            pct(now),
            pct(spent_share)
        ),
    };
    html! {
        svg.pacing viewBox="0 0 280 180" role="img" aria-labelledby=(title_id) data-chart="pacing" {
            title id=(title_id) { (title) }
            @for k in 0..=4 {
                @let y = py(k as f64 / 4.0);
                line x1=(n(X0)) x2=(n(X1)) y1=(n(y)) y2=(n(y)) stroke="#eceef2" {}
            }
            @for k in [0.0, 0.5, 1.0] {
                text x=(n(X0 - 4.0)) y=(n(py(k) + 3.0)) text-anchor="end" { (pct(k)) }
            }
            line x1=(n(X0)) x2=(n(X0)) y1=(n(Y0)) y2=(n(Y1)) stroke="#c9ced6" {}
            line x1=(n(X0)) x2=(n(X1)) y1=(n(Y1)) y2=(n(Y1)) stroke="#c9ced6" {}
            text x=(n(X0)) y="166" text-anchor="start" { "day start" }
            text x=(n(px(0.5))) y="166" text-anchor="middle" { "50% of day" }
            text x=(n(X1)) y="166" text-anchor="end" { "day end" }
            @if !points.is_empty() {
                polyline.target points=(points) fill="none" stroke="#8a94a6" stroke-width="2"
                    stroke-dasharray="5 3" {}
            }
            line.now x1=(n(px(now))) x2=(n(px(now))) y1=(n(Y0)) y2=(n(Y1)) stroke="#2459d6"
                stroke-width="1" stroke-dasharray="2 2" {}
            text x=(n(px(now).clamp(X0 + 14.0, X1 - 14.0))) y="9" text-anchor="middle" fill="#2459d6" { "now" }
            circle.spent cx=(n(px(now))) cy=(n(py(spent_share))) r="5" fill="#2459d6"
                stroke="#fff" stroke-width="2" {}
        }
    }
}

/// Spend per budget day as bars, today's cap as a dashed line.
fn days_chart(i: usize, c: &CampaignView) -> Markup {
    let max = c
        .last_days
        .iter()
        .map(|d| d.1)
        .chain([c.daily_cap_cents, 1])
        .max()
        .unwrap_or(1);
    let slots = c.last_days.len().max(7) as f64;
    let slot = (X1 - X0) / slots;
    let bar = (slot * 0.6).min(28.0);
    let y_of = |cents: i64| Y1 - share(cents.max(0), max).min(1.0) * (Y1 - Y0 - 10.0);
    let cap_y = y_of(c.daily_cap_cents);
    let title_id = format!("c{i}-days-title");
    let listed = c
        .last_days
        .iter()
        .map(|(d, v)| format!("{d} {}", eur(*v)))
        .collect::<Vec<_>>()
        .join(", ");
    let last = c.last_days.len().saturating_sub(1);
    html! {
        svg.days viewBox="0 0 280 180" role="img" aria-labelledby=(title_id) data-chart="days" {
            title id=(title_id) { "Spend per day of " (c.id) ": " (listed) }
            line x1=(n(X0)) x2=(n(X1)) y1=(n(Y1)) y2=(n(Y1)) stroke="#c9ced6" {}
            @if c.daily_cap_cents > 0 {
                line x1=(n(X0)) x2=(n(X1)) y1=(n(cap_y)) y2=(n(cap_y)) stroke="#b42318"
                    stroke-width="1" stroke-dasharray="4 3" {}
                text x=(n(X0 - 4.0)) y=(n(cap_y + 3.0)) text-anchor="end" fill="#b42318" { "cap" }
            }
            @for (k, (day, cents)) in c.last_days.iter().enumerate() {
                @let cx = X0 + slot * (k as f64 + 0.5);
                @let top = y_of(*cents);
                rect x=(n(cx - bar / 2.0)) y=(n(top)) width=(n(bar)) height=(n((Y1 - top).max(0.0)))
                    rx="2" fill=(if k == last { "#2459d6" } else { "#9db5ea" }) {
                    title { (day) ": " (eur(*cents)) }
                }
                // The day of the month: the title has the full date.
                text x=(n(cx)) y="166" text-anchor="middle" {
                    (day.get(8..).map(|d| d.trim_start_matches('0')).unwrap_or(day))
                }
                text x=(n(cx)) y=(n(top - 4.0)) text-anchor="middle" { (short_eur(*cents)) }
            }
        }
    }
}

/// Whole euros for chart labels, where space is short.
fn short_eur(cents: i64) -> String {
    let e = eur(cents);
    e.split('.').next().unwrap_or(&e).to_owned()
}

fn audit_table(audit: &[AuditView]) -> Markup {
    html! {
        div.panel.table-wrap id="audit" {
            @if audit.is_empty() {
                p.empty { "No changes recorded yet." }
            } @else {
                table {
                    thead { tr { th { "When" } th { "Who" } th { "Campaign" } th { "Change" } th { "Reason" } } }
                    tbody {
                        @for a in audit {
                            tr {
                                td.when { (a.at) }
                                td { (a.actor) }
                                td.mono { (a.campaign) }
                                td.mono { (a.changes) }
                                td { (a.reason) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = r#"<b>x</b>"'<script>alert(1)</script>"#;

    fn campaign(id: &str, paused: bool) -> CampaignView {
        CampaignView {
            id: id.to_owned(),
            paused,
            schedule: None,
            in_schedule: true,
            daily_cap_cents: 50_000,
            total_cap_cents: Some(1_000_000),
            reserved_cents: 4_000,
            captured_cents: 16_000,
            remaining_cents: 30_000,
            learning_cap_cents: 5_000,
            learning_spent_cents: 1_200,
            tiers_cents: vec![500, 1_000],
            min_intent_cents: 2_000,
            holdout_share: 0.1,
            explore_share: 0.025,
            day_fraction: 0.43,
            pacing_curve: vec![(0.0, 0.0), (0.5, 0.4), (1.0, 1.0)],
            lambda: 0.12,
            last_days: (0..7)
                .map(|d| (format!("2026-11-{:02}", 26 + d), 30_000 + d * 1_000))
                .collect(),
        }
    }

    fn view(campaigns: Vec<CampaignView>, audit: Vec<AuditView>) -> StatusView {
        StatusView {
            generated_at: "2026-12-02 10:15:03 UTC".into(),
            timezone: "Europe/Berlin".into(),
            model_version: "m-2026-11-30".into(),
            model_metrics: vec![("AUC (held out)".into(), "0.912".into())],
            auth_required: true,
            models: ModelsView::default(),
            campaigns,
            audit,
        }
    }

    #[test]
    fn eur_formats_cents_with_two_decimals() {
        assert_eq!(eur(0), "€0.00");
        assert_eq!(eur(5), "€0.05");
        assert_eq!(eur(1_234), "€12.34");
        assert_eq!(eur(100_000), "€1,000.00");
        assert_eq!(eur(123_456_789), "€1,234,567.89");
        assert_eq!(eur(-5), "-€0.05");
        assert_eq!(eur(-123_456), "-€1,234.56");
        assert_eq!(eur(i64::MIN), "-€92,233,720,368,547,758.08");
        assert_eq!(eur(i64::MAX), "€92,233,720,368,547,758.07");
        assert_eq!(eur_input(1_234), "12.34");
        assert_eq!(eur_input(-7), "-0.07");
    }

    #[test]
    fn hostile_ids_and_reasons_are_escaped() {
        let audit = AuditView {
            at: "2026-12-02 10:00:00 UTC".into(),
            actor: "ops<img src=x onerror=alert(1)>".into(),
            campaign: HOSTILE.into(),
            changes: "daily_cap_cents 50000 -> 1".into(),
            reason: "</td><script>alert(2)</script>".into(),
        };
        let page = render(&view(vec![campaign(HOSTILE, false)], vec![audit]));
        assert!(!page.contains("<b>x</b>"), "{page}");
        assert!(!page.contains("<img"), "{page}");
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;b&gt;x&lt;/b&gt;&quot;'"));
        assert!(page.contains(r#"data-campaign="&lt;b&gt;x&lt;/b&gt;&quot;'&lt;script&gt;"#));
        assert!(page.contains("&lt;/td&gt;&lt;script&gt;alert(2)&lt;/script&gt;"));
        // The only script is the page's own.
        assert_eq!(page.matches("<script").count(), 1);
        assert!(!page.contains("style=\""), "style attributes break the CSP");
    }

    #[test]
    fn every_card_has_its_charts() {
        let page = render(&view(
            vec![campaign("winter", false), campaign("spring", true)],
            vec![],
        ));
        assert_eq!(page.matches("data-campaign=").count(), 2);
        assert_eq!(page.matches(r#"data-chart="pacing""#).count(), 2);
        assert_eq!(page.matches(r#"data-chart="days""#).count(), 2);
        assert!(page.contains("<title id=\"c0-pacing-title\">Pacing of winter: 43% of the day elapsed, target 34.4% of the daily cap spent, 40% spent</title>"), "{page}");
        assert!(page.contains(r#"<meta name="viewport""#));
        assert!(page.contains("No changes recorded yet."));
        // Today's spend: reserved + captured against the cap.
        assert!(page.contains("€200.00"));
    }

    #[test]
    fn badges_show_the_state() {
        let mut outside = campaign("summer", false);
        outside.in_schedule = false;
        outside.schedule = Some("from 2026-06-01 00:00 UTC to 2026-06-30 00:00 UTC".into());
        let page = render(&view(
            vec![campaign("winter", false), campaign("spring", true), outside],
            vec![],
        ));
        assert!(page.contains(r#"data-badge="active">active<"#));
        assert!(page.contains(r#"data-badge="paused">paused<"#));
        assert!(page.contains(r#"data-badge="outside">outside schedule<"#));
        assert!(page.contains(r#"data-paused="true">Resume<"#));
        assert!(page.contains(r#"data-paused="false">Pause<"#));
        assert!(page.contains("Scheduled from 2026-06-01"));
    }

    #[test]
    fn without_tokens_the_page_asks_for_none() {
        let mut v = view(vec![campaign("winter", false)], vec![]);
        v.auth_required = false;
        let page = render(&v);
        assert!(!page.contains(r#"type="password""#));
        assert!(page.contains(r#"data-auth-required="false""#));
    }

    #[test]
    fn extreme_numbers_render_without_panicking() {
        let mut c = campaign("edge", false);
        c.reserved_cents = i64::MAX;
        c.captured_cents = i64::MAX;
        c.daily_cap_cents = 0;
        c.day_fraction = f64::NAN;
        c.lambda = f64::INFINITY;
        c.pacing_curve = vec![(f64::NAN, 2.0), (0.5, -1.0)];
        c.last_days = vec![("?".into(), i64::MIN), ("2026-12-02".into(), i64::MAX)];
        let page = render(&view(vec![c], vec![]));
        assert!(page.contains(r#"data-campaign="edge""#));
        assert!(!page.contains("NaN") && !page.contains("inf"), "{page}");
    }

    #[test]
    fn the_pacing_target_is_interpolated() {
        let curve = [(0.0, 0.0), (0.5, 0.4), (1.0, 1.0)];
        assert_eq!(target_at(&curve, 0.25), Some(0.2));
        assert_eq!(target_at(&curve, 0.75), Some(0.7));
        assert_eq!(target_at(&curve, 1.0), Some(1.0));
        assert_eq!(target_at(&[], 0.5), None);
    }

    /// Standard base64 with padding, for the CSP hash sources.
    fn base64(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for k in 0..4 {
                if k <= chunk.len() {
                    out.push(A[((v >> (18 - 6 * k)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    #[test]
    fn the_csp_pins_the_inline_assets() {
        use sha2::{Digest, Sha256};
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b"a"), "YQ==");
        for (name, asset) in [("script", SCRIPT), ("style", STYLE)] {
            let source = format!("'sha256-{}'", base64(&Sha256::digest(asset.as_bytes())));
            assert!(
                PAGE_CSP.contains(&format!("{name}-src {source};")),
                "PAGE_CSP needs {name}-src {source}"
            );
        }
        let page = render(&view(vec![campaign("winter", false)], vec![]));
        assert!(page.contains(&format!("<script>{SCRIPT}</script>")));
        assert!(page.contains(&format!("<style>{STYLE}</style>")));
    }
}
