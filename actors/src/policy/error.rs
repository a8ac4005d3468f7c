use std::sync::Arc;

/// What a policy call can end in, besides success.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The policy file could not be loaded (syntax error, bad registration). Names file and line.
    #[error("policy {0}")]
    Load(String),
    /// The handler called `kumo.reject(code, text)`.
    #[error("rejected by policy: {code} {text}")]
    Rejected { code: u16, text: String },
    /// Any other Lua error; the text carries the file and line.
    #[error("policy error: {0}")]
    Lua(String),
    #[error("policy actor has stopped")]
    Stopped,
}

/// The typed error `kumo.reject` raises, recognised when it comes back out of Lua.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {text}")]
pub struct Rejection {
    pub code: u16,
    pub text: String,
}

impl PolicyError {
    /// Classify an mlua error: a `kumo.reject` anywhere in the cause chain wins.
    pub fn from_lua(e: &mlua::Error) -> PolicyError {
        if let Some(r) = find_rejection(e) {
            return PolicyError::Rejected { code: r.code, text: r.text.clone() };
        }
        PolicyError::Lua(describe(e))
    }
}

fn find_rejection(e: &mlua::Error) -> Option<&Rejection> {
    match e {
        mlua::Error::ExternalError(inner) => inner.downcast_ref::<Rejection>(),
        mlua::Error::CallbackError { cause, .. } => find_rejection(cause),
        mlua::Error::WithContext { cause, .. } => find_rejection(cause),
        _ => None,
    }
}

/// The error's own message, without mlua's traceback, which repeats it at length.
fn describe(e: &mlua::Error) -> String {
    match e {
        mlua::Error::CallbackError { cause, .. } => describe(cause),
        mlua::Error::WithContext { context, cause } => format!("{context}: {}", describe(cause)),
        mlua::Error::RuntimeError(m) | mlua::Error::SyntaxError { message: m, .. } => m.clone(),
        mlua::Error::ExternalError(inner) => inner.to_string(),
        other => other.to_string(),
    }
}

pub(crate) fn rejection(code: u16, text: String) -> mlua::Error {
    mlua::Error::ExternalError(Arc::new(Rejection { code, text }))
}
