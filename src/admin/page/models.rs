//! The status page's model history: every kept model, newest first, the
//! one this process serves marked, and the control that rolls the live
//! model back (`POST /api/v1/models/rollback`). Versions, names and
//! reasons come from whoever published: they land in element text and
//! quoted attributes only.

use maud::{html, Markup};

/// The model history as the page shows it.
#[derive(Debug, Clone, Default)]
pub struct ModelsView {
    /// Newest first.
    pub entries: Vec<ModelRow>,
    /// The version a rollback would serve again; None when there is no
    /// earlier model in service (the button is then disabled).
    pub rollback_to: Option<String>,
    /// Why the history is missing: it did not answer.
    pub error: Option<String>,
}

/// One entry of the model history.
#[derive(Debug, Clone)]
pub struct ModelRow {
    pub seq: u64,
    pub version: String,
    /// E.g. "2026-12-02 10:15 UTC".
    pub published_at: String,
    /// A token's name, `file`, `cli` or `config`.
    pub published_by: String,
    pub reason: String,
    /// SHA-256 of the model file (hex).
    pub sha256: String,
    /// Served by this process now.
    pub serving: bool,
    /// E.g. "2026-12-02 11:00 UTC by ops: conversion dropped", once a
    /// rollback took it out of service.
    pub rolled_back: Option<String>,
}

/// The model history, newest first, and the rollback control. Versions,
/// names and reasons come from whoever published: element text and
/// quoted attributes only, escaped by maud.
pub(super) fn panel(m: &ModelsView) -> Markup {
    html! {
        section.panel.models id="models" aria-label="Model history" {
            @if let Some(e) = &m.error {
                p.empty { "The model history did not answer: " (e) }
            } @else if m.entries.is_empty() {
                p.empty { "No model published to the history yet." }
            } @else {
                div.table-wrap {
                    table {
                        thead {
                            tr { th { "Version" } th { "Published" } th { "By" } th { "Reason" } th { "SHA-256" } th { "State" } }
                        }
                        tbody {
                            @for e in &m.entries {
                                tr data-model=(e.version) data-seq=(e.seq)
                                    data-serving=(if e.serving { "true" } else { "false" })
                                    aria-current=[e.serving.then_some("true")] {
                                    td.mono { (e.version) }
                                    td.when { (e.published_at) }
                                    td { (e.published_by) }
                                    td { (e.reason) }
                                    td.mono title=(e.sha256) { (e.sha256.get(..12).unwrap_or(&e.sha256)) }
                                    td {
                                        @if e.serving {
                                            span.badge.active data-badge="serving" { "serving" }
                                        }
                                        @if let Some(r) = &e.rolled_back {
                                            span.badge.paused data-badge="rolled-back" { "rolled back" }
                                            small.detail { (r) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.control data-action="rollback" role="group" aria-label="Roll back the model" {
                label.grow for="rollback-reason" {
                    "Reason"
                    input type="text" id="rollback-reason" name="reason" required maxlength="500"
                        placeholder="why roll back" disabled[m.rollback_to.is_none()];
                }
                button.danger type="button" id="rollback" name="rollback"
                    disabled[m.rollback_to.is_none()] {
                    "Roll back to the previous model"
                }
            }
            p.note id="rollback-note" {
                @match (&m.rollback_to, &m.error) {
                    (Some(v), _) => {
                        "Takes the live model out of service on every replica and serves " code { (v) } " again."
                    }
                    (None, Some(_)) => { "Rolling back needs the model history, which did not answer." }
                    (None, None) => {
                        "Nothing to roll back to: the history holds no earlier model in service."
                    }
                }
            }
            div.notice role="status" id="models-result" {}
            div.alert role="alert" id="models-error" {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = r#"<b>x</b>"'<script>alert(1)</script>"#;

    fn model(seq: u64, version: &str, serving: bool) -> ModelRow {
        ModelRow {
            seq,
            version: version.to_owned(),
            published_at: format!("2026-12-0{seq} 09:00 UTC"),
            published_by: "cli".into(),
            reason: "nightly retrain".into(),
            sha256: format!("{seq}a{}", "0".repeat(62)),
            serving,
            rolled_back: None,
        }
    }

    #[test]
    fn the_history_lists_models_newest_first_and_marks_the_served_one() {
        let mut gone = model(3, HOSTILE, false);
        gone.rolled_back = Some(format!("2026-12-03 11:00 UTC by ops: {HOSTILE}"));
        gone.reason = HOSTILE.into();
        let html = panel(&ModelsView {
            entries: vec![gone, model(2, "m-2", true), model(1, "m-1", false)],
            rollback_to: Some("m-1".into()),
            error: None,
        })
        .into_string();
        let rows: Vec<usize> = ["data-seq=\"3\"", "data-seq=\"2\"", "data-seq=\"1\""]
            .iter()
            .map(|m| html.find(m).unwrap())
            .collect();
        assert!(rows.windows(2).all(|w| w[0] < w[1]), "newest first: {html}");
        assert_eq!(html.matches(r#"data-serving="true""#).count(), 1);
        assert!(html
            .contains(r#"data-model="m-2" data-seq="2" data-serving="true" aria-current="true">"#));
        assert!(html.contains(r#"data-badge="serving">serving<"#));
        assert!(html.contains(r#"data-badge="rolled-back">rolled back<"#));
        // The short SHA shown, the full one in its title.
        let sha = format!("2a{}", "0".repeat(62));
        assert!(html.contains(&format!(r#"title="{sha}">{}<"#, &sha[..12])));
        // Hostile text escaped, in text and attributes alike.
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<b>x"), "{html}");
        assert!(html.contains(r#"data-model="&lt;b&gt;x&lt;/b&gt;&quot;'&lt;script&gt;"#));
        assert!(html.contains("by ops: &lt;b&gt;x&lt;/b&gt;"));
        // The button is live and the note names what comes back.
        assert!(
            html.contains(r#"id="rollback" name="rollback">Roll back to the previous model<"#),
            "{html}"
        );
        assert!(html.contains("serves <code>m-1</code> again"));
        assert!(!html.contains("disabled"), "{html}");
    }

    #[test]
    fn a_single_model_cannot_be_rolled_back() {
        let html = panel(&ModelsView {
            entries: vec![model(1, "m-1", true)],
            rollback_to: None,
            error: None,
        })
        .into_string();
        assert_eq!(html.matches("data-model=").count(), 1);
        assert!(html.contains(r#"data-serving="true""#));
        assert!(
            html.contains(r#"id="rollback" name="rollback" disabled>"#),
            "{html}"
        );
        assert!(html.contains(r#"placeholder="why roll back" disabled>"#));
        assert!(html.contains("Nothing to roll back to"));

        let html = panel(&ModelsView {
            error: Some("redis: connection refused".into()),
            ..ModelsView::default()
        })
        .into_string();
        assert!(html.contains("The model history did not answer: redis: connection refused"));
        assert!(html.contains(r#"name="rollback" disabled>"#));
        assert!(html.contains("needs the model history"));
    }
}
