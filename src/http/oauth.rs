//! The OAuth 2.0 endpoints: introspection (RFC 7662), revocation
//! (RFC 7009), the authorization server metadata (RFC 8414) and the
//! authorization endpoint it must name, which refuses.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::StatusCode,
    response::Response,
};
use serde_json::{Value, json};

use super::{
    Face, Form, auth, failure, invalid, json, oauth_error, overloaded, read_form, refused,
};
use crate::{
    authority::{Check, Target, Validated},
    clients::{Caller, Role},
    door::Presented,
    grant::{Grant, RevokeReason},
    grpc::Served,
    input::InvalidInput,
    store::Store,
    token::Token,
};

/// Every refusal, whatever its hidden reason: the same bytes.
const INACTIVE: &str = r#"{"active":false}"#;

/// RFC 7662: a non-consuming FULL Validate for the calling client, so its
/// audience rules apply to the caller. The answer names the grant's issuer
/// as `client_id`, its audience as `aud` and its id as `jti`.
pub async fn introspect<S: Store>(State(face): State<Arc<Face<S>>>, request: Request) -> Response {
    let (caller, form) = match authenticated(&face, "introspect", Role::Validate, request).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let Some(_permits) = face.door.permits(&caller.id) else {
        return served(overloaded(), caller);
    };
    let response = match token_field(&form)
        .and_then(|token| Check::new(token.to_owned(), Vec::new(), String::new(), false))
    {
        Err(err) => invalid(err),
        Ok(check) => match face.authority.validate(&caller, check).await {
            Ok(Validated::Valid(grant)) => {
                json(StatusCode::OK, active(&grant, &face.issuer).to_string())
            }
            Ok(Validated::Denied(_)) => json(StatusCode::OK, INACTIVE),
            Err(err) => failure(err),
        },
    };
    served(response, caller)
}

/// RFC 7009: revokes the token's grant (reason MANUAL) if the caller may,
/// and answers 200 whether or not there was a live grant to revoke.
pub async fn revoke<S: Store>(State(face): State<Arc<Face<S>>>, request: Request) -> Response {
    let (caller, form) = match authenticated(&face, "revoke", Role::Revoke, request).await {
        Ok(admitted) => admitted,
        Err(response) => return response,
    };
    let Some(_permits) = face.door.permits(&caller.id) else {
        return served(overloaded(), caller);
    };
    let response = match token_field(&form).and_then(|token| {
        crate::input::token("token", token)?;
        Ok(Token::parse(token).ok())
    }) {
        Err(err) => invalid(err),
        // Not a Tessera token: nothing to revoke (RFC 7009 2.2).
        Ok(None) => json(StatusCode::OK, ""),
        Ok(Some(token)) => {
            match face
                .authority
                .revoke(&caller, Target::Token(token), RevokeReason::Manual)
                .await
            {
                Ok(_) => json(StatusCode::OK, ""),
                Err(err) => failure(err),
            }
        }
    };
    served(response, caller)
}

/// The authorization endpoint the metadata must name: the MCP SDKs'
/// metadata schemas require `authorization_endpoint` (RFC 8414 itself does
/// not, when no grant type uses it), and their clients stop at discovery
/// without one. Tessera has no authorization flow — tokens are minted over
/// its API by a client with the `mint` role, for audiences that client
/// names — so this endpoint exists and refuses every request, never
/// redirecting (there is no registered redirect URI to send anyone to,
/// RFC 6749 4.1.2.1), and the metadata lists no `response_types_supported`.
pub async fn authorize() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        "unsupported_response_type",
        Some(
            "Tessera has no authorization flow (response_types_supported is empty): \
             tokens are minted through its API by a client with the mint role",
        ),
    )
}

/// RFC 8414: where the endpoints are and how clients authenticate to them.
/// Every endpoint named exists; without sign-in, [`authorize`] only
/// refuses. With sign-in, what the MCP authorization spec and the SDKs'
/// discovery read: the code flow with PKCE S256, public clients (`none`),
/// client ID metadata documents and registration, as switched on.
pub async fn metadata<S: Store>(State(face): State<Arc<Face<S>>>) -> Response {
    let base = face.issuer.trim_end_matches('/');
    let methods = ["client_secret_basic", "client_secret_post"];
    let mut body = json!({
        "issuer": face.issuer,
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "token_endpoint": format!("{base}/oauth2/token"),
        "token_endpoint_auth_methods_supported": methods,
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "introspection_endpoint_auth_methods_supported": methods,
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "revocation_endpoint_auth_methods_supported": methods,
        // Without sign-in, tokens are issued over the gRPC API, not by flows.
        "response_types_supported": [],
        "grant_types_supported": [super::exchange::TOKEN_EXCHANGE],
    });
    if let Some(signin) = &face.signin {
        let fields = body.as_object_mut().expect("an object");
        fields.insert(
            "token_endpoint_auth_methods_supported".into(),
            json!(["none", "client_secret_basic", "client_secret_post"]),
        );
        fields.insert("response_types_supported".into(), json!(["code"]));
        fields.insert("response_modes_supported".into(), json!(["query"]));
        fields.insert(
            "grant_types_supported".into(),
            json!([
                super::grants::AUTHORIZATION_CODE,
                super::grants::REFRESH_TOKEN,
                super::exchange::TOKEN_EXCHANGE
            ]),
        );
        fields.insert("code_challenge_methods_supported".into(), json!(["S256"]));
        fields.insert(
            "authorization_response_iss_parameter_supported".into(),
            json!(true),
        );
        fields.insert(
            "client_id_metadata_document_supported".into(),
            json!(signin.registry.cimd()),
        );
        if signin.registry.registration() {
            fields.insert(
                "registration_endpoint".into(),
                json!(format!("{base}/oauth2/register")),
            );
        }
        fields.insert(
            "scopes_supported".into(),
            json!(signin.resources.get().all_scopes()),
        );
    }
    let mut response = json(StatusCode::OK, body.to_string());
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("max-age=300"),
    );
    response
}

/// Where RFC 8414 puts the metadata of `issuer`: the well-known prefix,
/// then the issuer's path, if any.
pub fn metadata_path(issuer: &str) -> String {
    let path = issuer
        .split_once("://")
        .and_then(|(_, rest)| rest.find('/').map(|at| &rest[at..]))
        .unwrap_or("")
        .trim_end_matches('/');
    format!("/.well-known/oauth-authorization-server{path}")
}

/// The caller, admitted with `role`, and its form. Credentials in the
/// headers are checked before the body is read; form credentials after,
/// and only whole: a `client_secret` without its `client_id` is refused
/// before any key is looked at.
pub(super) async fn authenticated<S: Store>(
    face: &Face<S>,
    method: &'static str,
    role: Role,
    request: Request,
) -> Result<(Arc<Caller>, Form), Response> {
    let read = auth::from_headers(request.headers());
    let early = admit_headers(face, method, role, &read)?;
    let form = read_form(&face.door, request).await?;
    admit_form(face, method, role, read, early, form)
}

/// [`authenticated`] for a form already read (the token endpoint reads
/// the form first to learn which grant, and so which kind of client).
pub(super) fn authenticated_form<S: Store>(
    face: &Face<S>,
    method: &'static str,
    role: Role,
    headers: &axum::http::HeaderMap,
    form: Form,
) -> Result<(Arc<Caller>, Form), Response> {
    let read = auth::from_headers(headers);
    let early = admit_headers(face, method, role, &read)?;
    admit_form(face, method, role, read, early, form)
}

fn admit_headers<S: Store>(
    face: &Face<S>,
    method: &'static str,
    role: Role,
    read: &auth::FromHeaders,
) -> Result<Option<Arc<Caller>>, Response> {
    match read.scheme {
        auth::Scheme::None => Ok(None),
        scheme => face
            .door
            .admit(
                "http",
                method,
                Presented {
                    key: read.key.as_ref().map(Option::as_deref).map_err(|e| *e),
                    client_id: read.client_id.as_deref(),
                },
                Some(role),
            )
            .map(Some)
            .map_err(|err| refused(err, scheme)),
    }
}

fn admit_form<S: Store>(
    face: &Face<S>,
    method: &'static str,
    role: Role,
    read: auth::FromHeaders,
    early: Option<Arc<Caller>>,
    form: Form,
) -> Result<(Arc<Caller>, Form), Response> {
    let admit = |key: Result<Option<&str>, &'static str>, client_id: Option<&str>, scheme| {
        face.door
            .admit("http", method, Presented { key, client_id }, Some(role))
            .map_err(|err| refused(err, scheme))
    };
    let (id, secret) = (form.get("client_id"), form.get("client_secret"));
    let caller = match early {
        Some(_) if secret.is_some() => {
            let err = InvalidInput::new(
                "client_secret",
                "must not be sent with an Authorization header: use one client authentication method",
            );
            return Err(invalid(err));
        }
        // A client_id beside header credentials must name the same client.
        Some(caller) => match id {
            Some(id) if id != caller.id => admit(
                read.key.as_ref().map(Option::as_deref).map_err(|e| *e),
                Some(id),
                read.scheme,
            )?,
            _ => caller,
        },
        // RFC 6749 2.3.1: client_secret_post sends the id with the secret.
        // Without it the request lacks a parameter, which RFC 6749 5.2
        // names `invalid_request` (400); `invalid_client` (401) is for
        // credentials that were complete and failed.
        None if secret.is_some() && id.is_none_or(str::is_empty) => {
            let err = InvalidInput::new(
                "client_id",
                "is required with client_secret (RFC 6749 2.3.1): send both, or the key \
                 alone as `Authorization: Bearer`",
            );
            return Err(invalid(err));
        }
        None => admit(Ok(secret), id, auth::Scheme::Post)?,
    };
    Ok((caller, form))
}

fn token_field(form: &Form) -> Result<&str, InvalidInput> {
    form.get("token")
        .filter(|token| !token.is_empty())
        .ok_or_else(|| InvalidInput::new("token", "is required"))
}

pub(super) fn served(mut response: Response, caller: Arc<Caller>) -> Response {
    response.extensions_mut().insert(Served(caller));
    response
}

/// An active token's introspection answer (RFC 7662 2.2), with Tessera's
/// own fields beside the standard ones.
fn active(grant: &Grant, issuer: &str) -> Value {
    let mut answer = json!({
        "active": true,
        "scope": grant.scopes.join(" "),
        "client_id": grant.issued_by,
        "token_type": "Bearer",
        "exp": grant.expires_at.div_euclid(1_000_000),
        "iat": grant.issued_at.div_euclid(1_000_000),
        "iss": issuer,
        "jti": grant.grant_id,
        "max_uses": grant.max_uses,
        "use_count": grant.use_count,
        "labels": grant.labels,
    });
    let fields = answer.as_object_mut().expect("an object");
    if !grant.subject.is_empty() {
        fields.insert("sub".into(), grant.subject.clone().into());
    }
    // An empty audience means any client with the role: no `aud` to name.
    if !grant.audience.is_empty() {
        fields.insert("aud".into(), grant.audience.clone().into());
    }
    if !grant.run_id.is_empty() {
        fields.insert("run_id".into(), grant.run_id.clone().into());
    }
    answer
}
