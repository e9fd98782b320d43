//! The vault API's error envelope:
//! `{"type": "error", "error": {"type": "...", "message": "..."}}` with the
//! matching HTTP status. Messages name what is wrong and what to send
//! instead; they never hold a secret value (problems never do, see
//! [`crate::model::Problem`]).

use http::StatusCode;
use serde_json::{json, Value};

use crate::model::{Problem, Problems};
use crate::store::EditError;

/// Why an admin request failed; each variant is one status and error type.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400 `invalid_request_error`: the request is malformed or would make
    /// the config invalid.
    #[error("{0}")]
    Invalid(String),
    /// 401 `authentication_error`: no token, or not the admin token.
    #[error("missing or wrong admin token; send the contents of --admin-token-file as `x-api-key: TOKEN` or `Authorization: Bearer TOKEN`")]
    Unauthenticated,
    /// 404 `not_found_error`.
    #[error("{0}")]
    NotFound(String),
    /// 409 `invalid_request_error`: the request conflicts with what is
    /// stored (a vault's second credential for one MCP server), as the
    /// vault API answers. The envelope keeps `invalid_request_error`: the
    /// SDKs' published error types (`ErrorType` in anthropic 2.14) have no
    /// conflict type, and they raise their `ConflictError` from the status.
    #[error("{0}")]
    Conflict(String),
    /// 405 `invalid_request_error`: the path exists, the method does not.
    #[error("{method} is not allowed on {path}; see the admin API's endpoints in the README")]
    MethodNotAllowed {
        /// The method sent.
        method: String,
        /// The path.
        path: String,
    },
    /// 413 `request_too_large`.
    #[error("the request body is larger than {limit} bytes; send a smaller body")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// 500 `api_error`: keyhole could not do what it should have.
    #[error("{0}")]
    Internal(String),
}

// === impl ApiError ===

impl ApiError {
    /// A 404 for a vault id.
    pub fn no_vault(id: &str) -> ApiError {
        ApiError::NotFound(format!(
            "no vault with id {id:?}; list the vaults with GET /v1/vaults"
        ))
    }

    /// A 404 for a credential id in a vault.
    pub fn no_credential(vault_id: &str, id: &str) -> ApiError {
        ApiError::NotFound(format!(
            "no credential with id {id:?} in vault {vault_id:?}; list them with GET /v1/vaults/{vault_id}/credentials"
        ))
    }

    /// A 400 listing every problem with its JSON path.
    pub fn problems(problems: &Problems) -> ApiError {
        let n = problems.len();
        let head = if n == 1 {
            "the request has 1 problem".to_owned()
        } else {
            format!("the request has {n} problems")
        };
        ApiError::Invalid(format!("{head}:\n{problems}"))
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The envelope's `error.type`.
    pub fn error_type(&self) -> &'static str {
        match self {
            ApiError::Invalid(_) | ApiError::Conflict(_) | ApiError::MethodNotAllowed { .. } => {
                "invalid_request_error"
            }
            ApiError::Unauthenticated => "authentication_error",
            ApiError::NotFound(_) => "not_found_error",
            ApiError::TooLarge { .. } => "request_too_large",
            ApiError::Internal(_) => "api_error",
        }
    }

    /// The envelope.
    pub fn body(&self) -> Value {
        json!({
            "type": "error",
            "error": {"type": self.error_type(), "message": self.to_string()},
        })
    }
}

impl From<Problems> for ApiError {
    fn from(p: Problems) -> Self {
        ApiError::problems(&p)
    }
}

/// Turns a refused store edit into the API's error. Whole-file problems
/// about the edited credential (`credentials[index]...`) are given paths
/// relative to the request body, as the API reports them.
pub fn from_edit(e: EditError<ApiError>, index: Option<usize>) -> ApiError {
    match e {
        EditError::Refused(e) => e,
        EditError::Invalid(problems) => ApiError::problems(&relative(problems, index)),
        EditError::NotApplied(reason) => {
            ApiError::Invalid(format!("the change cannot be applied: {reason}"))
        }
        EditError::Write(e) => ApiError::Internal(format!(
            "cannot write the config file, so nothing changed: {e}"
        )),
    }
}

/// Rewrites `credentials[index].x` to `x` (and `credentials[index]` to the
/// body as a whole); other paths stay as they are, naming the file.
pub fn relative(problems: Problems, index: Option<usize>) -> Problems {
    let Some(index) = index else {
        return problems;
    };
    let prefix = format!("credentials[{index}]");
    let mut out = Problems::new();
    for Problem { path, message } in problems.iter().cloned() {
        let path = match path.strip_prefix(&prefix) {
            Some("") => String::new(),
            Some(rest) => match rest.strip_prefix('.') {
                Some(field) => field.to_owned(),
                None => path,
            },
            None => path,
        };
        out.push(path, message);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_and_statuses() {
        let e = ApiError::no_vault("vlt_x");
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        let body = e.body();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "not_found_error");
        assert!(body["error"]["message"].as_str().unwrap().contains("vlt_x"));
        assert_eq!(
            ApiError::Unauthenticated.error_type(),
            "authentication_error"
        );
        assert_eq!(
            ApiError::TooLarge { limit: 1 }.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let conflict = ApiError::Conflict("taken".into());
        assert_eq!(conflict.status(), StatusCode::CONFLICT);
        assert_eq!(conflict.body()["error"]["type"], "invalid_request_error");
    }

    #[test]
    fn paths_become_relative_to_the_body() {
        let mut p = Problems::new();
        p.push("credentials[3].auth.networking.allowed_hosts[0]", "a");
        p.push("credentials[3]", "b");
        p.push("credentials[30].id", "c");
        p.push("egress", "d");
        let out = relative(p, Some(3));
        let paths: Vec<&str> = out.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "auth.networking.allowed_hosts[0]",
                "",
                "credentials[30].id",
                "egress"
            ]
        );
        let message = ApiError::problems(&out).to_string();
        assert!(message.starts_with("the request has 4 problems:\n"));
        assert!(message.contains("auth.networking.allowed_hosts[0]: a"));
    }
}
