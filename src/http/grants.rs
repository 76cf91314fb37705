//! `POST /oauth2/token`'s sign-in grants, `authorization_code` and
//! `refresh_token` (RFC 6749 4.1.3 and 6), for the OAuth clients of
//! [`crate::signin`] — not Tessera's keyed clients, which use token
//! exchange beside them.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};
use serde_json::json;

use super::{Form, auth, json, oauth_error};
use crate::{
    signin::{ClientProof, Signin, TokenError},
    store::Store,
};

pub const AUTHORIZATION_CODE: &str = "authorization_code";
pub const REFRESH_TOKEN: &str = "refresh_token";

pub async fn token<S: Store>(signin: &Signin<S>, headers: &HeaderMap, form: Form) -> Response {
    let proof = match proof(headers, &form) {
        Ok(proof) => proof,
        Err(response) => return response,
    };
    let outcome = match form.get("grant_type") {
        Some(AUTHORIZATION_CODE) => {
            signin
                .redeem(
                    proof,
                    form.get("code").unwrap_or_default(),
                    form.get("code_verifier").unwrap_or_default(),
                    form.get("redirect_uri"),
                    form.get("resource"),
                )
                .await
        }
        _ => {
            signin
                .refresh(
                    proof,
                    form.get("refresh_token").unwrap_or_default(),
                    form.get("scope"),
                    form.get("resource"),
                )
                .await
        }
    };
    match outcome {
        Ok(issued) => json(
            StatusCode::OK,
            json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": issued.expires_in,
                "refresh_token": issued.refresh_token,
                "scope": issued.scope,
            })
            .to_string(),
        ),
        Err(err) => refused(err),
    }
}

/// The client's id and secret: Basic, or `client_id` (and
/// `client_secret`) in the form — one way only.
fn proof(headers: &HeaderMap, form: &Form) -> Result<ClientProof, Response> {
    let read = auth::from_headers(headers);
    let invalid = |why: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", Some(why));
    match read.scheme {
        auth::Scheme::Basic => {
            let (Some(id), Ok(Some(secret))) = (read.client_id, read.key) else {
                return Err(refused(TokenError::InvalidClient { basic: true }));
            };
            if form.get("client_secret").is_some() {
                return Err(invalid("client_secret: send it in one place only"));
            }
            if form.get("client_id").is_some_and(|form_id| form_id != id) {
                return Err(invalid(
                    "client_id: differs from the Authorization header's",
                ));
            }
            Ok(ClientProof {
                client_id: id,
                secret: Some((secret, true)),
            })
        }
        auth::Scheme::None => {
            let Some(id) = form.get("client_id").filter(|id| !id.is_empty()) else {
                return Err(invalid("client_id: is required"));
            };
            Ok(ClientProof {
                client_id: id.to_owned(),
                secret: form.get("client_secret").map(|s| (s.to_owned(), false)),
            })
        }
        _ => Err(invalid(
            "Authorization: sign-in grants take HTTP Basic client credentials or none",
        )),
    }
}

fn refused(err: TokenError) -> Response {
    let why = err.to_string();
    match err {
        TokenError::InvalidRequest(_) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", Some(&why))
        }
        TokenError::InvalidClient { basic } => {
            let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", Some(&why));
            if basic {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"tessera\""),
                );
            }
            response
        }
        TokenError::InvalidGrant => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", Some(&why))
        }
        TokenError::InvalidScope(_) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", Some(&why))
        }
        TokenError::InvalidTarget(_) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_target", Some(&why))
        }
        TokenError::Server(err) => super::failure(err),
        TokenError::Database(err) => {
            tracing::warn!(error = %err, "a sign-in grant's database step failed");
            oauth_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                None,
            )
        }
    }
}
