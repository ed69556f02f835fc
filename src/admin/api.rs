//! The admin JSON API (`/api/v1/`): campaigns read and changed at run
//! time, spend history and the audit trail. Thin handlers over
//! [`CampaignService`] and the ledger; every error is JSON
//! (`{"error": "...", "field": "..."}`) with the status its cause implies.
//!
//! Changes (PATCH, POST) need an operator token (when tokens are
//! configured), a JSON body (`Content-Type: application/json`) and, from a
//! browser, a same-origin request: a page on another site can neither send
//! the bearer token nor pass the origin check, so the status page's forms
//! cannot be driven from elsewhere.

use crate::auth::{AuthError, Role, Tokens};
use crate::campaigns::store::AuditEntry;
use crate::campaigns::{rfc3339, CampaignError, CampaignPatch, CampaignSettings, NewCampaign};
use crate::engine::campaigns::CampaignService;
use crate::engine::models::{ModelService, ModelServiceError};
use crate::engine::Engine;
use crate::ledger::BudgetSnapshot;
use crate::models::{ModelEntry, RegistryError};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;

/// Largest request body the API reads.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Longest spend history one call returns, in days.
pub const MAX_SPEND_DAYS: i64 = 366;

/// Audit entries one call returns at most.
pub const MAX_AUDIT_PAGE: usize = 1_000;

/// What the API handlers share.
#[derive(Clone)]
pub struct Api {
    pub engine: Arc<Engine>,
    pub campaigns: Arc<CampaignService>,
    pub models: Arc<ModelService>,
    pub tokens: Arc<Tokens>,
}

/// An error answer: its status and a JSON body naming the field when a
/// caller's mistake has one.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    field: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            field: None,
        }
    }

    fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: format!("{field}: {}", message.into()),
            field: Some(field),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.field {
            Some(f) => serde_json::json!({ "error": self.message, "field": f }),
            None => serde_json::json!({ "error": self.message }),
        };
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// The one mapping of the campaign layer's errors to HTTP.
impl From<CampaignError> for ApiError {
    fn from(e: CampaignError) -> Self {
        match e {
            CampaignError::Invalid { field, .. } => ApiError {
                status: StatusCode::BAD_REQUEST,
                message: e.to_string(),
                field: Some(field),
            },
            CampaignError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            CampaignError::Exists(_) | CampaignError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            CampaignError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
        }
    }
}

/// The one mapping of the model history's errors to HTTP.
impl From<ModelServiceError> for ApiError {
    fn from(e: ModelServiceError) -> Self {
        let status = match &e {
            ModelServiceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ModelServiceError::Registry(r) => match r {
                RegistryError::Empty | RegistryError::NoEarlier(_) | RegistryError::Conflict(_) => {
                    StatusCode::CONFLICT
                }
                RegistryError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            },
        };
        ApiError::new(status, e.to_string())
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        ModelServiceError::Registry(e).into()
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        let status = match e {
            AuthError::Forbidden { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        };
        ApiError::new(status, e.to_string())
    }
}

fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_string(body) {
        Ok(text) => (status, [(header::CONTENT_TYPE, "application/json")], text).into_response(),
        Err(e) => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// A campaign as the API shows it: its settings, today's spend and its
/// pacing state.
#[derive(Debug, Serialize)]
pub struct CampaignView {
    #[serde(flatten)]
    pub settings: CampaignSettings,
    pub starts_at: Option<String>,
    pub ends_at: Option<String>,
    /// Active now: not paused and within the schedule.
    pub active: bool,
    pub in_schedule: bool,
    /// Today's spend (`None` while the ledger does not answer).
    pub today: Option<BudgetSnapshot>,
    pub pacing: PacingView,
}

#[derive(Debug, Serialize)]
pub struct PacingView {
    pub lambda: f64,
    /// Share of the budget day elapsed.
    pub day_fraction: f64,
    /// Share of the daily cap the pacing curve aims to have spent by now.
    pub target_fraction: f64,
}

impl Api {
    /// The caller, if its token allows `needed` (anyone when no tokens are
    /// configured).
    fn caller(&self, headers: &HeaderMap, needed: Role) -> Result<String, ApiError> {
        let header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(self.tokens.authorize(header, needed)?.name)
    }

    pub async fn view(&self, settings: CampaignSettings) -> CampaignView {
        let now_ms = self.engine.now_ms();
        let today = self.engine.ledger.snapshot(&settings.id, now_ms).await.ok();
        let day_fraction = self.engine.budgets.day_fraction(now_ms);
        let (lambda, target_fraction) = match self.engine.campaign(&settings.id) {
            Ok(c) => (
                c.pacer.lambda(),
                crate::domain::pacing::target_fraction(c.pacer.config(), day_fraction),
            ),
            Err(_) => (0.0, 0.0),
        };
        CampaignView {
            starts_at: settings.starts_at_ms.map(rfc3339),
            ends_at: settings.ends_at_ms.map(rfc3339),
            active: !settings.paused && settings.in_schedule(now_ms),
            in_schedule: settings.in_schedule(now_ms),
            settings,
            today,
            pacing: PacingView {
                lambda,
                day_fraction,
                target_fraction,
            },
        }
    }
}

/// Refuses a change a browser sends from another site, and any change
/// whose body is not JSON (a cross-site HTML form can send neither a JSON
/// content type nor a bearer header).
fn same_origin_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "changes need Content-Type: application/json",
        ));
    }
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if !matches!(site, "same-origin" | "none") {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross-site change refused",
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let origin_host = origin.split("://").nth(1).unwrap_or("");
        if origin_host != host {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "cross-site change refused",
            ));
        }
    }
    Ok(())
}

fn parse_body<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("body: {e}")))
}

async fn list(State(api): State<Api>, headers: HeaderMap) -> Result<Response, ApiError> {
    api.caller(&headers, Role::Viewer)?;
    let mut views = Vec::new();
    for s in api.campaigns.list() {
        views.push(api.view(s).await);
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "campaigns": views }),
    ))
}

async fn get_one(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    api.caller(&headers, Role::Viewer)?;
    let s = api.campaigns.get(&id)?;
    Ok(json(StatusCode::OK, &api.view(s).await))
}

#[derive(Serialize)]
struct Changed {
    campaign: CampaignView,
    audit: AuditView,
}

async fn patch(
    State(api): State<Api>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = api.caller(&headers, Role::Operator)?;
    same_origin_json(&headers)?;
    let patch: CampaignPatch = parse_body(&body)?;
    let (settings, entry) = api.campaigns.patch(&id, &patch, &actor).await?;
    let campaign = api.view(settings).await;
    Ok(json(
        StatusCode::OK,
        &Changed {
            campaign,
            audit: AuditView::from(entry),
        },
    ))
}

async fn create(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = api.caller(&headers, Role::Operator)?;
    same_origin_json(&headers)?;
    let new: NewCampaign = parse_body(&body)?;
    let (settings, entry) = api.campaigns.create(&new, &actor).await?;
    let campaign = api.view(settings).await;
    Ok(json(
        StatusCode::CREATED,
        &Changed {
            campaign,
            audit: AuditView::from(entry),
        },
    ))
}

/// An audit entry as the API shows it (times in RFC 3339 too).
#[derive(Debug, Serialize)]
pub struct AuditView {
    #[serde(flatten)]
    pub entry: AuditEntry,
    pub at: String,
}

impl From<AuditEntry> for AuditView {
    fn from(entry: AuditEntry) -> Self {
        AuditView {
            at: rfc3339(entry.at_ms),
            entry,
        }
    }
}

async fn audit(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    api.caller(&headers, Role::Viewer)?;
    let limit = match q.get("limit") {
        None => 100,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_AUDIT_PAGE).contains(n))
            .ok_or_else(|| ApiError::invalid("limit", format!("must be 1..={MAX_AUDIT_PAGE}")))?,
    };
    let before = q
        .get("before")
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| ApiError::invalid("before", "must be an audit seq"))
        })
        .transpose()?;
    let entries = api
        .campaigns
        .audit(q.get("campaign").map(String::as_str), limit, before)
        .await?;
    let entries: Vec<AuditView> = entries.into_iter().map(AuditView::from).collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "entries": entries }),
    ))
}

fn parse_day(field: &'static str, v: &str) -> Result<chrono::NaiveDate, ApiError> {
    chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(field, format!("{v:?} is not a YYYY-MM-DD day")))
}

async fn spend(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    api.caller(&headers, Role::Viewer)?;
    let today = parse_day("to", &api.engine.budgets.day_of(api.engine.now_ms()))?;
    let to = q
        .get("to")
        .map(|v| parse_day("to", v))
        .transpose()?
        .unwrap_or(today);
    let from = q
        .get("from")
        .map(|v| parse_day("from", v))
        .transpose()?
        .unwrap_or(to - chrono::Duration::days(6));
    if from > to {
        return Err(ApiError::invalid("from", "must not be after to"));
    }
    if (to - from).num_days() >= MAX_SPEND_DAYS {
        return Err(ApiError::invalid(
            "from",
            format!("at most {MAX_SPEND_DAYS} days per call"),
        ));
    }
    let ids: Vec<String> = match q.get("campaign") {
        Some(c) => vec![api.campaigns.get(c)?.id],
        None => api.campaigns.list().into_iter().map(|s| s.id).collect(),
    };
    let (from_s, to_s) = (from.to_string(), to.to_string());
    let mut out = Vec::new();
    for id in ids {
        let days = api
            .engine
            .ledger
            .spend_by_day(&id, &from_s, &to_s)
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        out.push(serde_json::json!({ "campaign": id, "days": days }));
    }
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "from": from_s, "to": to_s, "campaigns": out }),
    ))
}

/// A model history entry as the API shows it (times in RFC 3339 too).
#[derive(Debug, Serialize)]
pub struct ModelView {
    #[serde(flatten)]
    pub entry: ModelEntry,
    pub published_at: String,
    /// Served by this process now.
    pub live: bool,
}

impl ModelView {
    fn new(entry: ModelEntry, live_seq: Option<u64>) -> Self {
        ModelView {
            published_at: rfc3339(entry.published_at_ms),
            live: Some(entry.seq) == live_seq,
            entry,
        }
    }
}

async fn models(State(api): State<Api>, headers: HeaderMap) -> Result<Response, ApiError> {
    api.caller(&headers, Role::Viewer)?;
    let history = api.models.history().await?;
    let live_seq = api.models.live_seq();
    let served = api.engine.model().version().to_owned();
    let entries: Vec<ModelView> = history
        .into_iter()
        .map(|e| ModelView::new(e, live_seq))
        .collect();
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({ "serving": served, "models": entries }),
    ))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    #[serde(default)]
    reason: String,
}

async fn rollback(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let actor = api.caller(&headers, Role::Operator)?;
    same_origin_json(&headers)?;
    let b: RollbackBody = parse_body(&body)?;
    if b.reason.chars().count() > crate::campaigns::MAX_REASON_CHARS {
        return Err(ApiError::invalid(
            "reason",
            format!("at most {} characters", crate::campaigns::MAX_REASON_CHARS),
        ));
    }
    let (live, rolled_back) = api.models.rollback(&actor, &b.reason).await?;
    let seq = Some(live.seq);
    Ok(json(
        StatusCode::OK,
        &serde_json::json!({
            "live": ModelView::new(live, seq),
            "rolled_back": ModelView::new(rolled_back, seq),
        }),
    ))
}

/// The `/api/v1` routes.
pub fn routes(api: Api) -> axum::Router {
    axum::Router::new()
        .route("/api/v1/campaigns", get(list).post(create))
        .route("/api/v1/campaigns/{id}", get(get_one).patch(patch))
        .route("/api/v1/spend", get(spend))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/models", get(models))
        .route("/api/v1/models/rollback", axum::routing::post(rollback))
        .route("/", get(super::status::page))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api)
}
