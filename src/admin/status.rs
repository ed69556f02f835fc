//! The status page's data: what `GET /` shows, gathered from the engine,
//! the model history, the ledger and the audit trail, then rendered by
//! [`super::page`].

use super::api::Api;
use super::page::{AuditView, CampaignView, ModelRow, ModelsView, StatusView};
use crate::auth::Role;
use crate::campaigns::rfc3339;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Points of the pacing curve drawn on the page.
const CURVE_POINTS: usize = 49;

/// Days of spend history on the page.
const HISTORY_DAYS: i64 = 7;

/// Audit entries on the page.
const AUDIT_ROWS: usize = 20;

fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// A page reloaded while the history is down logs once per interval.
static HISTORY_DOWN: crate::throttle::LogThrottle =
    crate::throttle::LogThrottle::new(std::time::Duration::from_secs(60));

/// The model history as `GET /api/v1/models` has it, and what a rollback
/// would serve: the history's own choice (the newest earlier entry still
/// in service), so the button is offered exactly when the API would act.
async fn models(api: &Api) -> ModelsView {
    let history = match api.models.history().await {
        Ok(h) => h,
        Err(e) => {
            if let Some(count) = HISTORY_DOWN.hit() {
                tracing::warn!(count, error = %e, "status page: model history unavailable");
            }
            return ModelsView {
                error: Some(e.to_string()),
                ..ModelsView::default()
            };
        }
    };
    let rollback_to = crate::models::live_of(&history)
        .and_then(|live| crate::models::earlier_of(&history, live.seq))
        .map(|e| e.version.clone());
    let live_seq = api.models.live_seq();
    let entries: Vec<ModelRow> = history
        .into_iter()
        .map(|e| ModelRow {
            serving: Some(e.seq) == live_seq,
            rolled_back: e
                .rolled_back
                .map(|r| format!("{} by {}: {}", when(r.at_ms), r.by, r.reason)),
            seq: e.seq,
            version: e.version,
            published_at: when(e.published_at_ms),
            published_by: e.published_by,
            reason: e.reason,
            sha256: e.sha256,
        })
        .collect();
    ModelsView {
        entries,
        rollback_to,
        error: None,
    }
}

/// Everything the page shows, now.
pub async fn gather(api: &Api) -> StatusView {
    let engine = &api.engine;
    let now_ms = engine.now_ms();
    let day_fraction = engine.budgets.day_fraction(now_ms);
    let today = engine.budgets.day_of(now_ms);
    let to = chrono::NaiveDate::parse_from_str(&today, "%Y-%m-%d").ok();
    let from = to.map(|t| t - chrono::Duration::days(HISTORY_DAYS - 1));
    let mut campaigns = Vec::new();
    for s in api.campaigns.list() {
        let snapshot = engine.ledger.snapshot(&s.id, now_ms).await.ok();
        let (pacing_curve, lambda) = match engine.campaign(&s.id) {
            Ok(c) => (
                (0..CURVE_POINTS)
                    .map(|i| {
                        let x = i as f64 / (CURVE_POINTS - 1) as f64;
                        (
                            x,
                            crate::domain::pacing::target_fraction(c.pacer.config(), x),
                        )
                    })
                    .collect(),
                c.pacer.lambda(),
            ),
            Err(_) => (Vec::new(), 0.0),
        };
        let mut last_days = Vec::new();
        if let (Some(from), Some(to)) = (from, to) {
            let spent = engine
                .ledger
                .spend_by_day(&s.id, &from.to_string(), &to.to_string())
                .await
                .unwrap_or_default();
            let mut d = from;
            while d <= to {
                let day = d.to_string();
                let cents = spent
                    .iter()
                    .find(|x| x.day == day)
                    .map_or(0, |x| x.reserved_cents + x.captured_cents);
                last_days.push((day, cents));
                d += chrono::Duration::days(1);
            }
        }
        let schedule = match (s.starts_at_ms, s.ends_at_ms) {
            (None, None) => None,
            (Some(a), None) => Some(format!("from {}", when(a))),
            (None, Some(b)) => Some(format!("until {}", when(b))),
            (Some(a), Some(b)) => Some(format!("from {} to {}", when(a), when(b))),
        };
        let snap = snapshot.as_ref();
        campaigns.push(CampaignView {
            id: s.id.clone(),
            paused: s.paused,
            schedule,
            in_schedule: s.in_schedule(now_ms),
            daily_cap_cents: s.daily_cap_cents,
            total_cap_cents: s.total_cap_cents,
            reserved_cents: snap.map_or(0, |b| b.reserved_cents),
            captured_cents: snap.map_or(0, |b| b.captured_cents),
            remaining_cents: snap.map_or(0, |b| b.remaining_cents),
            learning_cap_cents: s.learning_cap_cents,
            learning_spent_cents: snap
                .map_or(0, |b| b.learning_reserved_cents + b.learning_captured_cents),
            tiers_cents: s.tiers_cents.clone(),
            min_intent_cents: s.min_intent_cents,
            holdout_share: s.holdout_share,
            explore_share: s.explore_share,
            day_fraction,
            pacing_curve,
            lambda,
            last_days,
        });
    }
    let audit = api
        .campaigns
        .audit(None, AUDIT_ROWS, None)
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|e| AuditView {
            at: when(e.at_ms),
            actor: e.actor,
            campaign: e.campaign,
            changes: e.changes,
            reason: e.reason,
        })
        .collect();
    StatusView {
        generated_at: rfc3339(now_ms).replace('T', " ").replace('Z', " UTC"),
        timezone: engine.budgets.timezone.name().to_owned(),
        model_version: engine.model().version().to_owned(),
        model_metrics: engine.model().quality().to_vec(),
        auth_required: !api.tokens.is_empty(),
        models: models(api).await,
        campaigns,
        audit,
    }
}

/// The sign-in page's script: with a token in the tab's `sessionStorage`
/// (the key the status page uses), fetch the page with it and show it.
const SIGN_IN_SCRIPT: &str = r#"(function () {
  var KEY = "nudge.operator_token";
  var error = document.getElementById("login-error");
  function load(t) {
    return fetch(location.pathname, { headers: { Authorization: "Bearer " + t }, cache: "no-store" })
      .then(function (r) {
        if (!r.ok) {
          error.textContent = r.status === 403 ? "This token may not read the status page." : "Unknown token.";
          return false;
        }
        return r.text().then(function (html) {
          document.open();
          document.write(html);
          document.close();
          return true;
        });
      })
      .catch(function () { error.textContent = "The admin server did not answer."; return false; });
  }
  var saved = sessionStorage.getItem(KEY);
  if (saved) { load(saved); }
  document.getElementById("use-token").addEventListener("click", function () {
    var t = document.getElementById("token").value.trim();
    if (!t) { error.textContent = "Enter a token."; return; }
    sessionStorage.setItem(KEY, t);
    load(t).then(function (ok) { if (!ok) { sessionStorage.removeItem(KEY); } });
  });
})();"#;

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The sign-in page's policy: the status page's, with the sign-in script's
/// hash added (the page it writes in keeps this document's policy).
fn sign_in_csp() -> &'static str {
    static CSP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CSP.get_or_init(|| {
        use sha2::Digest;
        let hash = base64(&sha2::Sha256::digest(SIGN_IN_SCRIPT.as_bytes()));
        super::page::PAGE_CSP.replacen("script-src ", &format!("script-src 'sha256-{hash}' "), 1)
    })
}

fn sign_in_page() -> String {
    format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>nudge: sign in</title></head><body>\
         <h1>nudge</h1><p>The status page needs a viewer or operator token.</p>\
         <label for=\"token\">Token</label> \
         <input type=\"password\" id=\"token\" name=\"token\" autocomplete=\"off\"> \
         <button type=\"button\" id=\"use-token\">Use token</button>\
         <p id=\"login-error\" role=\"alert\"></p>\
         <p>The token stays in this tab only.</p>\
         <script>{SIGN_IN_SCRIPT}</script></body></html>"
    )
}

/// `GET /`: the status page. With tokens configured, a request without a
/// viewer token gets a sign-in page whose script asks for one, keeps it in
/// the tab and fetches the page with it (a browser cannot send a bearer
/// header on a plain navigation).
pub async fn page(State(api): State<Api>, headers: HeaderMap) -> Response {
    let header_value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let common = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ];
    if let Err(e) = api.tokens.authorize(header_value, Role::Viewer) {
        let status = match e {
            crate::auth::AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        return (
            status,
            common,
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CONTENT_SECURITY_POLICY, sign_in_csp()),
            ],
            sign_in_page(),
        )
            .into_response();
    }
    let view = gather(&api).await;
    (
        StatusCode::OK,
        common,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CONTENT_SECURITY_POLICY, super::page::PAGE_CSP),
        ],
        super::page::render(&view),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"foobar"), "Zm9vYmFy");
    }
}
