//! TEMPORARY stand-in until the auth branch lands (same API).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Client,
    Viewer,
    Operator,
}
#[derive(Clone, Debug, Default)]
pub struct Tokens;
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("unknown token")]
    Unknown,
    #[error("token {name:?} may not do this (needs {needed:?})")]
    Forbidden { needed: Role, name: String },
}
impl Tokens {
    pub fn is_empty(&self) -> bool {
        true
    }
    pub fn authorize(&self, _h: Option<&str>, _needed: Role) -> Result<Caller, AuthError> {
        Ok(Caller {
            name: "local".into(),
            role: Role::Operator,
        })
    }
}
