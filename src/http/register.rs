//! RFC 7591 dynamic client registration at `POST /oauth2/register`: the
//! fallback for clients without a client ID metadata document. Open (the
//! MCP clients register without an initial access token); what a client
//! registers only lets it ask a person for consent.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    response::Response,
};
use http_body_util::{BodyExt, Limited};
use serde_json::{Value, json};

use super::{Face, json as json_response};
use crate::{
    signin::{self, clients::Metadata},
    store::Store,
};

/// Largest registration request read.
const MAX_REGISTRATION: usize = 16 * 1024;

pub async fn register<S: Store>(State(face): State<Arc<Face<S>>>, request: Request) -> Response {
    let Some(signin) = face.signin.as_ref().filter(|s| s.registry.registration()) else {
        return super::fallback(request).await;
    };
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|ct| ct.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return refusal(
            "invalid_client_metadata",
            "Content-Type must be application/json",
        );
    }
    let timeout = face.door.admission().body_timeout;
    let body = Limited::new(request.into_body(), MAX_REGISTRATION).collect();
    let bytes = match tokio::time::timeout(timeout, body).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return refusal(
                "invalid_client_metadata",
                &format!("the request body must be at most {MAX_REGISTRATION} bytes"),
            );
        }
        Err(_) => {
            return refusal(
                "invalid_client_metadata",
                &format!("request body not received within {timeout:?}"),
            );
        }
    };
    let Ok(Value::Object(fields)) = serde_json::from_slice::<Value>(&bytes) else {
        return refusal("invalid_client_metadata", "the body must be a JSON object");
    };
    let metadata = match Metadata::from_json(&fields) {
        Ok(metadata) => metadata,
        Err(why) if why.starts_with("redirect_uris") => {
            return refusal("invalid_redirect_uri", &why);
        }
        Err(why) => return refusal("invalid_client_metadata", &why),
    };
    let method = match metadata.auth_method.as_deref() {
        // RFC 7591 2: client_secret_basic when not said.
        None => "client_secret_basic",
        Some(method @ ("none" | "client_secret_basic" | "client_secret_post")) => method,
        Some(_) => {
            return refusal(
                "invalid_client_metadata",
                "token_endpoint_auth_method: must be none, client_secret_basic or client_secret_post",
            );
        }
    };
    let grant_types = metadata
        .grant_types
        .unwrap_or_else(|| vec!["authorization_code".into()]);
    if grant_types
        .iter()
        .any(|g| g != "authorization_code" && g != "refresh_token")
    {
        return refusal(
            "invalid_client_metadata",
            "grant_types: only authorization_code and refresh_token",
        );
    }
    let response_types = metadata
        .response_types
        .unwrap_or_else(|| vec!["code".into()]);
    if response_types.iter().any(|r| r != "code") {
        return refusal("invalid_client_metadata", "response_types: only code");
    }
    let client_id = format!(
        "dcr_{}",
        &signin::digest_hex(&signin::random_secret())[..32]
    );
    let secret = (method != "none").then(signin::random_secret);
    let now = signin::now_us();
    let mut answer = json!({
        "client_id": client_id,
        "client_id_issued_at": now / 1_000_000,
        "redirect_uris": metadata.redirect_uris,
        "token_endpoint_auth_method": method,
        "grant_types": grant_types,
        "response_types": response_types,
    });
    if let Some(name) = &metadata.name {
        answer["client_name"] = json!(name);
    }
    let stored = answer.to_string();
    let hash = secret.as_deref().map(signin::clients::secret_hash);
    if let Err(err) =
        signin::store::insert_client(signin.db(), &client_id, hash.as_deref(), &stored, now).await
    {
        tracing::warn!(error = %err, "storing a registered client failed");
        return super::oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            None,
        );
    }
    if let Some(secret) = secret {
        answer["client_secret"] = json!(secret);
        answer["client_secret_expires_at"] = json!(0);
    }
    json_response(StatusCode::CREATED, answer.to_string())
}

/// RFC 7591 3.2.2.
fn refusal(error: &str, description: &str) -> Response {
    super::oauth_error(StatusCode::BAD_REQUEST, error, Some(description))
}
