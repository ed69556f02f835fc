//! Bearer tokens with roles for the gRPC and admin ports.
//!
//! A token is configured with a name and a role (`[admin] tokens` and the
//! `NUDGE_ADMIN_TOKENS` environment variable, merged). Only SHA-256 digests
//! of the tokens are kept; a presented token is hashed and compared with
//! every configured digest in constant time, so neither the comparison nor
//! the number of tokens checked tells an attacker how close a guess was.
//!
//! With no token configured at all, auth is off: one machine needs no
//! set-up, and both ports listen on loopback by default (the config refuses
//! a non-loopback `admin_listen` without a viewer or operator token).
//!
//! The core ([`Role`], [`Tokens`], [`Caller`], [`AuthError`]) has no
//! transport types; the sections at the end adapt it to axum (the admin
//! API) and say which role each gRPC method needs. The gRPC layer itself
//! lives with the other transport layers, in `app::admission`.

use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Shortest accepted token: guessing must be hopeless.
pub const MIN_TOKEN_BYTES: usize = 16;
/// Longest accepted token name.
pub const MAX_NAME_CHARS: usize = 64;
/// The environment variable whose tokens are merged with `[admin] tokens`.
pub const ENV_TOKENS: &str = "NUDGE_ADMIN_TOKENS";
/// The caller's name when auth is off.
pub const LOCAL_CALLER: &str = "local";

// ---------------------------------------------------------------------------
// Core: roles, tokens, authorization.
// ---------------------------------------------------------------------------

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The shop's web tier: the decision RPCs (Track, Decide, Redeem,
    /// RecordOutcome).
    Client,
    /// Reads: admin API GETs, the status page, gRPC Budget and Report.
    Viewer,
    /// Everything a viewer can, changes through the admin API, and the
    /// decision RPCs.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "client" => Some(Role::Client),
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            _ => None,
        }
    }

    /// Whether a caller with this role may do what needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        match self {
            Role::Operator => true,
            Role::Viewer => needed == Role::Viewer,
            Role::Client => needed == Role::Client,
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who called, once authorized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Why a call is refused. The messages name the caller at most, never the
/// token presented.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token: send `authorization: Bearer <token>`")]
    Missing,
    #[error("unknown token")]
    Unknown,
    #[error("token {name:?} may not do this: it needs the {needed} role")]
    Forbidden { needed: Role, name: String },
}

/// A token as configured, before validation: where it was written (the
/// field errors name), its name, role and value.
#[derive(Clone)]
pub struct TokenSpec {
    /// `admin.tokens[2]` or `NUDGE_ADMIN_TOKENS[0]`.
    pub field: String,
    pub name: String,
    pub role: String,
    pub token: String,
    pub from_env: bool,
}

impl std::fmt::Debug for TokenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSpec")
            .field("field", &self.field)
            .field("name", &self.name)
            .field("role", &self.role)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// A token setting that is wrong; `field` names it, the message never
/// holds the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct TokenConfigError {
    pub field: String,
    pub message: String,
}

fn config_error(field: impl Into<String>, message: impl Into<String>) -> TokenConfigError {
    TokenConfigError {
        field: field.into(),
        message: message.into(),
    }
}

/// The `name:role:token` entries of `NUDGE_ADMIN_TOKENS`, separated by `,`
/// (blank entries are skipped). The token is everything after the second
/// `:`.
pub fn parse_env_tokens(text: &str) -> Result<Vec<TokenSpec>, TokenConfigError> {
    text.split(',')
        .filter(|e| !e.trim().is_empty())
        .enumerate()
        .map(|(i, entry)| {
            let field = format!("{ENV_TOKENS}[{i}]");
            let mut parts = entry.trim().splitn(3, ':');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(name), Some(role), Some(token)) => Ok(TokenSpec {
                    field,
                    name: name.to_owned(),
                    role: role.to_owned(),
                    token: token.to_owned(),
                    from_env: true,
                }),
                _ => Err(config_error(field, "expected name:role:token")),
            }
        })
        .collect()
}

#[derive(Clone)]
struct Entry {
    name: String,
    role: Role,
    digest: [u8; 32],
    from_env: bool,
}

/// The validated tokens (digests only). Empty: auth is off.
#[derive(Clone, Default)]
pub struct Tokens {
    entries: Arc<Vec<Entry>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.entries
                    .iter()
                    .map(|e| format!("{} ({})", e.name, e.role)),
            )
            .finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A configured token as shown to operators: never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub role: Role,
    /// From `NUDGE_ADMIN_TOKENS` rather than the config file.
    pub from_env: bool,
}

impl Tokens {
    /// No token: auth is off.
    pub fn off() -> Tokens {
        Tokens::default()
    }

    /// Validates the tokens of the config file and the environment
    /// together: names of 1 to 64 printable ASCII characters, unique over
    /// both; tokens of at least 16 visible ASCII bytes, unique; a known
    /// role.
    pub fn new(specs: Vec<TokenSpec>) -> Result<Tokens, TokenConfigError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(specs.len());
        let mut fields: Vec<String> = Vec::with_capacity(specs.len());
        for spec in specs {
            let name_ok = (1..=MAX_NAME_CHARS).contains(&spec.name.len())
                && spec.name.chars().all(|c| c == ' ' || c.is_ascii_graphic());
            if !name_ok {
                return Err(config_error(
                    format!("{}.name", spec.field),
                    format!("1 to {MAX_NAME_CHARS} printable ASCII characters"),
                ));
            }
            if let Some(i) = entries.iter().position(|e| e.name == spec.name) {
                return Err(config_error(
                    format!("{}.name", spec.field),
                    format!("{:?} is also the name of {}", spec.name, fields[i]),
                ));
            }
            let role = Role::parse(&spec.role).ok_or_else(|| {
                config_error(
                    format!("{}.role", spec.field),
                    format!(
                        "{:?}: one of \"client\", \"viewer\", \"operator\"",
                        spec.role
                    ),
                )
            })?;
            if spec.token.len() < MIN_TOKEN_BYTES {
                return Err(config_error(
                    format!("{}.token", spec.field),
                    format!("at least {MIN_TOKEN_BYTES} bytes"),
                ));
            }
            if !spec.token.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(config_error(
                    format!("{}.token", spec.field),
                    "visible ASCII characters only (it is sent in an HTTP header)",
                ));
            }
            let d = digest(&spec.token);
            if let Some(i) = entries.iter().position(|e| e.digest == d) {
                return Err(config_error(
                    format!("{}.token", spec.field),
                    format!("the same token as {}", fields[i]),
                ));
            }
            entries.push(Entry {
                name: spec.name,
                role,
                digest: d,
                from_env: spec.from_env,
            });
            fields.push(spec.field);
        }
        Ok(Tokens {
            entries: Arc::new(entries),
        })
    }

    /// No token configured: every call is allowed.
    pub fn is_off(&self) -> bool {
        self.entries.is_empty()
    }

    /// [`Tokens::is_off`]: no token configured.
    pub fn is_empty(&self) -> bool {
        self.is_off()
    }

    /// Some token has exactly this role.
    pub fn has_role(&self, role: Role) -> bool {
        self.entries.iter().any(|e| e.role == role)
    }

    /// The configured tokens without their values, in configured order.
    pub fn list(&self) -> Vec<TokenInfo> {
        self.entries
            .iter()
            .map(|e| TokenInfo {
                name: e.name.clone(),
                role: e.role,
                from_env: e.from_env,
            })
            .collect()
    }

    /// The caller presenting `authorization_header` (`Bearer <token>`, the
    /// scheme in any case), if its role allows what needs `needed`. With
    /// auth off every call is allowed, as [`LOCAL_CALLER`].
    pub fn authorize(
        &self,
        authorization_header: Option<&str>,
        needed: Role,
    ) -> Result<Caller, AuthError> {
        if self.is_off() {
            return Ok(Caller {
                name: LOCAL_CALLER.to_owned(),
                role: Role::Operator,
            });
        }
        let token = authorization_header
            .and_then(bearer_token)
            .ok_or(AuthError::Missing)?;
        let presented = digest(token);
        // Every digest is compared, whatever matched: the time taken does
        // not depend on which token (if any) the presented one is.
        let mut found = subtle::Choice::from(0);
        let mut index = 0u32;
        for (i, e) in self.entries.iter().enumerate() {
            let same = presented.ct_eq(&e.digest);
            index = u32::conditional_select(&index, &(i as u32), same);
            found |= same;
        }
        if !bool::from(found) {
            return Err(AuthError::Unknown);
        }
        let entry = &self.entries[index as usize];
        if entry.role.allows(needed) {
            Ok(Caller {
                name: entry.name.clone(),
                role: entry.role,
            })
        } else {
            Err(AuthError::Forbidden {
                needed,
                name: entry.name.clone(),
            })
        }
    }
}

/// The token of a `Bearer <token>` header value; the scheme in any case.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

// ---------------------------------------------------------------------------
// Admin HTTP (axum).
// ---------------------------------------------------------------------------

/// The caller of an admin API request, if its token's role allows `needed`.
pub fn caller(
    tokens: &Tokens,
    headers: &axum::http::HeaderMap,
    needed: Role,
) -> Result<Caller, AuthError> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or_default());
    tokens.authorize(header, needed)
}

impl axum::response::IntoResponse for AuthError {
    /// 401 with `WWW-Authenticate: Bearer` for a missing or unknown token,
    /// 403 for a known token whose role falls short; a JSON body
    /// `{"error": "..."}` either way.
    fn into_response(self) -> axum::response::Response {
        use axum::http::{header, StatusCode};
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let json = (header::CONTENT_TYPE, "application/json");
        match self {
            AuthError::Missing | AuthError::Unknown => (
                StatusCode::UNAUTHORIZED,
                [json, (header::WWW_AUTHENTICATE, "Bearer")],
                body,
            )
                .into_response(),
            AuthError::Forbidden { .. } => (StatusCode::FORBIDDEN, [json], body).into_response(),
        }
    }
}

// ---------------------------------------------------------------------------
// gRPC: which role each method needs (the tower layer and the status
// mapping are in `app::admission`, with the transport).
// ---------------------------------------------------------------------------

const OFFERS_PREFIX: &str = "/nudge.v1.Offers/";
/// The calls a shop's web tier makes.
const DECISION_METHODS: [&str; 4] = ["Track", "Decide", "Redeem", "RecordOutcome"];
/// Reads.
const VIEWER_METHODS: [&str; 2] = ["Budget", "Report"];

/// The role a gRPC call at `path` needs; `None`: open. Health checks and
/// reflection are always open (orchestrators and tools call them without a
/// token); the decision calls need a client (or operator) token only once
/// some client token is configured, since a shop on one machine or a
/// private network calls them without one; reads need a viewer.
pub fn grpc_needs(tokens: &Tokens, path: &str) -> Option<Role> {
    if tokens.is_off() {
        return None;
    }
    let method = path.strip_prefix(OFFERS_PREFIX)?;
    if DECISION_METHODS.contains(&method) {
        tokens.has_role(Role::Client).then_some(Role::Client)
    } else if VIEWER_METHODS.contains(&method) {
        Some(Role::Viewer)
    } else {
        // A method added later is closed until it is placed above.
        Some(Role::Operator)
    }
}

/// Logs once at start when the gRPC port listens beyond loopback with no
/// token at all: anyone who reaches it may read budgets and reports.
pub fn warn_if_open(listen: std::net::SocketAddr, tokens: &Tokens) {
    if tokens.is_off() && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "grpc listens beyond loopback with no token configured: anyone who reaches it may call every method; set [admin] tokens or {ENV_TOKENS}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(field: &str, name: &str, role: &str, token: &str) -> TokenSpec {
        TokenSpec {
            field: field.into(),
            name: name.into(),
            role: role.into(),
            token: token.into(),
            from_env: false,
        }
    }

    const OPS: &str = "ops-token-0123456789";
    const WEB: &str = "web-token-0123456789";
    const LOOK: &str = "look-token-012345678";

    fn three() -> Tokens {
        Tokens::new(vec![
            spec("admin.tokens[0]", "ops", "operator", OPS),
            spec("admin.tokens[1]", "web", "client", WEB),
            spec("admin.tokens[2]", "look", "viewer", LOOK),
        ])
        .unwrap()
    }

    #[test]
    fn roles_allow_what_they_name() {
        let t = three();
        let bearer = |tok: &str| format!("Bearer {tok}");
        assert_eq!(
            t.authorize(Some(&bearer(OPS)), Role::Viewer).unwrap().name,
            "ops"
        );
        assert_eq!(
            t.authorize(Some(&bearer(OPS)), Role::Client).unwrap().role,
            Role::Operator
        );
        assert_eq!(
            t.authorize(Some(&format!("bEaReR  {LOOK} ")), Role::Viewer)
                .unwrap()
                .name,
            "look"
        );
        assert_eq!(
            t.authorize(Some(&bearer(LOOK)), Role::Operator),
            Err(AuthError::Forbidden {
                needed: Role::Operator,
                name: "look".into()
            })
        );
        assert!(matches!(
            t.authorize(Some(&bearer(WEB)), Role::Viewer),
            Err(AuthError::Forbidden { .. })
        ));
        assert!(t.authorize(Some(&bearer(WEB)), Role::Client).is_ok());
        assert_eq!(t.authorize(None, Role::Client), Err(AuthError::Missing));
        assert_eq!(
            t.authorize(Some(&format!("Basic {OPS}")), Role::Client),
            Err(AuthError::Missing)
        );
        assert_eq!(
            t.authorize(Some("Bearer not-a-configured-token"), Role::Client),
            Err(AuthError::Unknown)
        );
        let off = Tokens::off();
        let local = off.authorize(None, Role::Operator).unwrap();
        assert_eq!(local.name, LOCAL_CALLER);
    }

    #[test]
    fn bad_tokens_name_their_field_and_never_show_the_token() {
        let long = "x".repeat(16);
        for (specs, field) in [
            (
                vec![spec("admin.tokens[0]", "", "viewer", &long)],
                "admin.tokens[0].name",
            ),
            (
                vec![spec("admin.tokens[0]", "a", "root", &long)],
                "admin.tokens[0].role",
            ),
            (
                vec![spec("admin.tokens[0]", "a", "viewer", "short-secret")],
                "admin.tokens[0].token",
            ),
            (
                vec![
                    spec("admin.tokens[0]", "a", "viewer", &long),
                    spec("admin.tokens[1]", "b", "viewer", "y".repeat(16).as_str()),
                    spec("admin.tokens[2]", "c", "viewer", &long),
                ],
                "admin.tokens[2].token",
            ),
            (
                vec![
                    spec("admin.tokens[0]", "a", "viewer", &long),
                    spec(
                        "NUDGE_ADMIN_TOKENS[0]",
                        "a",
                        "client",
                        "z".repeat(16).as_str(),
                    ),
                ],
                "NUDGE_ADMIN_TOKENS[0].name",
            ),
        ] {
            let e = Tokens::new(specs).unwrap_err().to_string();
            assert!(e.starts_with(field), "{field}: {e}");
            assert!(!e.contains("xxxx") && !e.contains("short-secret"), "{e}");
        }
    }

    #[test]
    fn env_tokens_parse_and_keep_colons_in_the_token() {
        let specs =
            parse_env_tokens("ops:operator:a:b:c-0123456789abc, ,web:client:w-0123456789abcdef,")
                .unwrap();
        assert_eq!(specs.len(), 2);
        assert_eq!(specs[0].token, "a:b:c-0123456789abc");
        assert_eq!(specs[1].field, "NUDGE_ADMIN_TOKENS[1]");
        let e = parse_env_tokens("ops-only-a-secret-here").unwrap_err();
        assert_eq!(e.field, "NUDGE_ADMIN_TOKENS[0]");
        assert!(!e.to_string().contains("secret-here"));
        assert!(!format!("{:?}", specs[0]).contains("0123456789"));
    }

    #[test]
    fn admin_refusals_are_401_with_a_challenge_or_403() {
        use axum::response::IntoResponse;
        for e in [AuthError::Missing, AuthError::Unknown] {
            let r = e.into_response();
            assert_eq!(r.status(), 401);
            assert_eq!(r.headers()["www-authenticate"], "Bearer");
            assert_eq!(r.headers()["content-type"], "application/json");
        }
        let r = AuthError::Forbidden {
            needed: Role::Operator,
            name: "dash".into(),
        }
        .into_response();
        assert_eq!(r.status(), 403);
        assert!(r.headers().get("www-authenticate").is_none());
        let t = three();
        let mut headers = axum::http::HeaderMap::new();
        assert_eq!(caller(&t, &headers, Role::Viewer), Err(AuthError::Missing));
        headers.insert("authorization", format!("Bearer {LOOK}").parse().unwrap());
        assert_eq!(caller(&t, &headers, Role::Viewer).unwrap().name, "look");
    }

    #[test]
    fn grpc_paths_need_their_roles() {
        let t = three();
        assert_eq!(
            grpc_needs(&t, "/nudge.v1.Offers/Budget"),
            Some(Role::Viewer)
        );
        assert_eq!(
            grpc_needs(&t, "/nudge.v1.Offers/Decide"),
            Some(Role::Client)
        );
        assert_eq!(grpc_needs(&t, "/grpc.health.v1.Health/Check"), None);
        let no_client = Tokens::new(vec![spec("f", "ops", "operator", OPS)]).unwrap();
        assert_eq!(grpc_needs(&no_client, "/nudge.v1.Offers/Decide"), None);
        assert_eq!(
            grpc_needs(&no_client, "/nudge.v1.Offers/Report"),
            Some(Role::Viewer)
        );
        assert_eq!(grpc_needs(&Tokens::off(), "/nudge.v1.Offers/Budget"), None);
        assert!(!format!("{t:?}").contains("token-0123"));
    }
}
