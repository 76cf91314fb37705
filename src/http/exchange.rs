//! RFC 8693 token exchange at `POST /oauth2/token`: Delegate over HTTP. The
//! `subject_token` is the parent; `scope`, `audience` and `resource` narrow it; the
//! answer is a token for a sub-agent that can do no more than the parent.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::Response,
};
use serde_json::json;

use super::{Face, failure, json, oauth, oauth_error, overloaded};
use crate::{
    authority::{DelegateSpec, Error},
    clients::Role,
    input,
    store::Store,
};

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

/// With sign-in on, the form is read first: its `grant_type` says whether
/// the caller is an OAuth client of sign-in or a keyed Tessera client.
pub async fn token<S: Store>(State(face): State<Arc<Face<S>>>, request: Request) -> Response {
    let admitted = match &face.signin {
        None => oauth::authenticated(&face, "token", Role::Mint, request).await,
        Some(signin) => {
            let headers = request.headers().clone();
            let form = match super::read_form(&face.door, request).await {
                Ok(form) => form,
                Err(response) => return response,
            };
            if matches!(
                form.get("grant_type"),
                Some(super::grants::AUTHORIZATION_CODE | super::grants::REFRESH_TOKEN)
            ) {
                return super::grants::token(signin, &headers, form).await;
            }
            oauth::authenticated_form(&face, "token", Role::Mint, &headers, form)
        }
    };
    let (caller, form) = match admitted {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    if form.get("grant_type") != Some(TOKEN_EXCHANGE) {
        let why = match &face.signin {
            None => format!("grant_type: only {TOKEN_EXCHANGE} is supported"),
            Some(_) => {
                format!("grant_type: must be authorization_code, refresh_token or {TOKEN_EXCHANGE}")
            }
        };
        let response = oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            Some(&why),
        );
        return oauth::served(response, caller);
    }
    let spec = match spec(&form) {
        Ok(spec) => spec,
        Err(err) => return oauth::served(refused(Error::Invalid(err)), caller),
    };
    let Some(_permits) = face.door.permits(&caller.id) else {
        return oauth::served(overloaded(), caller);
    };
    let response = match face.authority.delegate(&caller, spec).await {
        Ok((token, grant)) => {
            let expires_in = (grant.expires_at - grant.issued_at).max(0) / 1_000_000;
            let body = json!({
                "access_token": token.into_plaintext(),
                "issued_token_type": ACCESS_TOKEN,
                "token_type": "Bearer",
                "expires_in": expires_in,
                "scope": grant.scopes.join(" "),
            });
            json(StatusCode::OK, body.to_string())
        }
        Err(err) => refused(err),
    };
    oauth::served(response, caller)
}

/// The request's fields as a Delegate, within their limits.
fn spec(form: &super::Form) -> input::Result<DelegateSpec> {
    let subject_token = form
        .get("subject_token")
        .filter(|token| !token.is_empty())
        .ok_or_else(|| input::InvalidInput::new("subject_token", "is required"))?;
    input::token("subject_token", subject_token)?;
    if form.get("subject_token_type") != Some(ACCESS_TOKEN) {
        return Err(input::InvalidInput::new(
            "subject_token_type",
            format!("must be {ACCESS_TOKEN}"),
        ));
    }
    if form
        .get("requested_token_type")
        .is_some_and(|t| t != ACCESS_TOKEN)
    {
        return Err(input::InvalidInput::new(
            "requested_token_type",
            format!("only {ACCESS_TOKEN} is issued"),
        ));
    }
    if form.get("actor_token").is_some() {
        return Err(input::InvalidInput::new("actor_token", "is not supported"));
    }
    let scopes = form
        .get("scope")
        .map(|scope| scope.split(' ').map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(DelegateSpec {
        parent_token: subject_token.to_owned(),
        scopes: input::scopes("scope", scopes)?,
        audience: audience(form)?,
        ttl: None,
        max_uses: 0,
        labels: Default::default(),
        payload: Vec::new(),
    })
}

/// `audience` (client ids or resource URIs) and `resource` (RFC 8707:
/// URIs only) name, together, who may use the token: one list, in which a
/// URI given in both counts once.
fn audience(form: &super::Form) -> input::Result<Vec<String>> {
    let mut audience = input::audience("audience", form.all("audience"))?;
    for uri in input::resources("resource", form.all("resource"))? {
        if !audience.contains(&uri) {
            audience.push(uri);
        }
    }
    if audience.len() > input::MAX_AUDIENCE {
        return Err(input::InvalidInput::new(
            "audience",
            format!(
                "with resource, must have at most {} entries",
                input::MAX_AUDIENCE
            ),
        ));
    }
    Ok(audience)
}

/// RFC 8693 2.2.2: a scope the parent lacks is `invalid_scope`; an
/// audience outside its own, or a `resource` or `audience` entry that is
/// not one (RFC 8707 2), `invalid_target`; the rest as elsewhere.
fn refused(err: Error) -> Response {
    match &err {
        Error::Invalid(invalid) if invalid.field == "scopes" || invalid.field == "scope" => {
            let why = format!("scope: {}", invalid.problem);
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", Some(&why))
        }
        Error::Invalid(invalid) if is_target(&invalid.field) => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_target",
            Some(&invalid.to_string()),
        ),
        _ => failure(err),
    }
}

fn is_target(field: &str) -> bool {
    ["audience", "resource"].iter().any(|name| {
        field
            .strip_prefix(name)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('['))
    })
}
