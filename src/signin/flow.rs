//! The browser's part of a flow: `/oauth2/authorize`, the provider's
//! callback, and consent. Until the client and its redirect URI are known
//! good, errors are shown, never redirected (RFC 6749 4.1.2.1); after,
//! they go back to the client with `state` and `iss` (RFC 9207).

use std::sync::Arc;

use super::{
    CODE_TTL, FLOW_TTL, Signin, derive, digest_hex, micros, now_us, random_secret,
    store::{self, Code, Flow},
};
use crate::{resource, store::Store};

/// `/oauth2/authorize`'s query, as given.
#[derive(Default)]
pub struct Authorize {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub state: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub scope: Option<String>,
    pub resource: Vec<String>,
}

/// Where a browser goes next.
#[derive(Debug)]
pub enum Step {
    /// Show this error page (400): nothing verified to redirect to.
    Show(String),
    /// Back to the client's redirect URI, with these parameters.
    Client { redirect: String },
    /// To the provider's login, with the flow's cookie set.
    Login {
        url: String,
        cookie_name: String,
        cookie_value: String,
    },
    /// To the consent page of this flow.
    Consent { flow_id: String },
}

pub enum CallbackOutcome {
    Code(String),
    Error(String),
}

/// Longest `state` kept and given back.
const MAX_STATE: usize = 512;
/// Longest `scope` read.
const MAX_SCOPE_PARAM: usize = 2048;

/// The cookie that binds a flow to the browser that began it.
pub fn cookie_name(flow_id: &str) -> String {
    format!("tessera_flow_{flow_id}")
}

impl<S: Store> Signin<S> {
    /// `/oauth2/authorize`.
    pub async fn authorize(&self, request: Authorize) -> Step {
        let client_id = request.client_id.as_deref().unwrap_or("");
        let client = match self.registry.resolve(&self.db, client_id).await {
            Ok(client) => client,
            Err(err) => return Step::Show(err.to_string()),
        };
        let redirect_uri = match request.redirect_uri {
            Some(uri) if client.redirect_uris.contains(&uri) => uri,
            Some(_) => {
                return Step::Show(
                    "redirect_uri: is not one of the client's registered redirect URIs (compared \
                     exactly)"
                        .into(),
                );
            }
            // RFC 6749 3.1.2.3: may be left out when only one is registered.
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => {
                return Step::Show(
                    "redirect_uri: is required (the client registered several)".into(),
                );
            }
        };
        if request.state.as_ref().is_some_and(|s| s.len() > MAX_STATE) {
            // Too long to send back: not sent back.
            return Step::Show(format!("state: must be at most {MAX_STATE} bytes"));
        }
        let state = request.state.clone();
        let fail = |error: &str, description: &str| Step::Client {
            redirect: self.client_redirect(
                &redirect_uri,
                state.as_deref(),
                &[("error", error), ("error_description", description)],
            ),
        };
        if request.response_type.as_deref() != Some("code") {
            return fail(
                "unsupported_response_type",
                "response_type: only code is supported",
            );
        }
        let Some(challenge) = request.code_challenge.filter(|c| !c.is_empty()) else {
            return fail(
                "invalid_request",
                "code_challenge: is required (PKCE with S256)",
            );
        };
        if request.code_challenge_method.as_deref() != Some("S256") {
            return fail("invalid_request", "code_challenge_method: must be S256");
        }
        if challenge.len() != 43 || !challenge.bytes().all(is_base64url) {
            return fail(
                "invalid_request",
                "code_challenge: must be a base64url SHA-256 (43 characters)",
            );
        }
        let resource = match request.resource.as_slice() {
            [] => return fail("invalid_request", "resource: is required (RFC 8707)"),
            [one] => one,
            _ => return fail("invalid_target", "resource: give exactly one"),
        };
        let Ok(uri) = resource::canonical(resource) else {
            return fail("invalid_target", "resource: must be an absolute https URI");
        };
        let resources = self.resources.get();
        let Some(offered) = resources.get(&uri) else {
            return fail(
                "invalid_target",
                "resource: is not a resource this server issues tokens for",
            );
        };
        let scopes = match scopes(
            request.scope.as_deref(),
            &offered.scopes,
            &offered.default_scopes,
        ) {
            Ok(scopes) => scopes,
            Err(why) => return fail("invalid_scope", why),
        };
        let flow_id = random_secret();
        let binding = random_secret();
        let now = now_us();
        let flow = Flow {
            flow_id: flow_id.clone(),
            binding_hash: digest_hex(&binding),
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.clone(),
            state: state.clone(),
            code_challenge: challenge,
            resource: uri,
            scopes,
            subject: None,
            expires_at: now + micros(FLOW_TTL),
        };
        if let Err(err) = store::insert_flow(&self.db, &flow, now).await {
            tracing::warn!(error = %err, "storing a sign-in flow failed");
            return fail(
                "temporarily_unavailable",
                "the server could not store the flow; retry",
            );
        }
        let verifier = derive("pkce", &binding, &flow_id);
        let nonce = derive("nonce", &binding, &flow_id);
        match self
            .upstream
            .login_url(&flow_id, &nonce, &super::s256(&verifier))
            .await
        {
            Ok(url) => Step::Login {
                url,
                cookie_name: cookie_name(&flow_id),
                cookie_value: binding,
            },
            Err(err) => fail("temporarily_unavailable", &err.to_string()),
        }
    }

    /// The flow `flow_id` names, if this browser holds its cookie.
    pub(super) async fn bound_flow(
        &self,
        flow_id: &str,
        cookie: Option<&str>,
    ) -> Result<Flow, Step> {
        let forged = || {
            Step::Show(
                "this sign-in is unknown, expired, finished, or was begun in another browser \
                 (state)"
                    .into(),
            )
        };
        if flow_id.is_empty() || flow_id.len() > 64 {
            return Err(forged());
        }
        let flow = match store::flow(&self.db, flow_id, now_us()).await {
            Ok(Some(flow)) => flow,
            Ok(None) => return Err(forged()),
            Err(err) => {
                tracing::warn!(error = %err, "reading a sign-in flow failed");
                return Err(Step::Show(
                    "the server could not read the sign-in; retry".into(),
                ));
            }
        };
        match cookie {
            Some(value) if digest_hex(value) == flow.binding_hash => Ok(flow),
            _ => Err(forged()),
        }
    }

    /// The provider's redirect back: `state` is the flow id.
    pub async fn callback(
        &self,
        state: &str,
        cookie: Option<&str>,
        outcome: CallbackOutcome,
    ) -> Step {
        let flow = match self.bound_flow(state, cookie).await {
            Ok(flow) => flow,
            Err(step) => return step,
        };
        let cookie = cookie.unwrap_or_default();
        if flow.subject.is_some() {
            return Step::Show("this sign-in was already completed".into());
        }
        let code = match outcome {
            CallbackOutcome::Code(code) if !code.is_empty() && code.len() <= 2048 => code,
            CallbackOutcome::Code(_) => return Step::Show("code: missing or too long".into()),
            CallbackOutcome::Error(_) => {
                // The person (or the provider) said no: the client hears
                // access_denied, whatever the provider's reason.
                let _ = store::take_flow(&self.db, &flow.flow_id).await;
                return self.refused(&flow);
            }
        };
        let verifier = derive("pkce", cookie, &flow.flow_id);
        let nonce = derive("nonce", cookie, &flow.flow_id);
        let subject = match self.upstream.subject(&code, &verifier, &nonce).await {
            Ok(subject) => subject,
            Err(err) => return Step::Show(format!("sign-in failed: {err}")),
        };
        match store::set_subject(&self.db, &flow.flow_id, &subject).await {
            Ok(true) => {}
            Ok(false) => return Step::Show("this sign-in was already completed".into()),
            Err(err) => {
                tracing::warn!(error = %err, "recording a sign-in failed");
                return Step::Show("the server could not record the sign-in; retry".into());
            }
        }
        let remembered = store::consent(
            &self.db,
            &subject,
            &flow.client_id,
            &flow.resource,
            now_us(),
        )
        .await
        .ok()
        .flatten();
        match remembered {
            Some(granted) if flow.scopes.iter().all(|s| granted.contains(s)) => {
                let flow = Flow {
                    subject: Some(subject),
                    ..flow
                };
                self.finish(flow).await
            }
            _ => Step::Consent {
                flow_id: flow.flow_id,
            },
        }
    }

    /// Ends the flow with a code for the client.
    pub(super) async fn finish(&self, flow: Flow) -> Step {
        match store::take_flow(&self.db, &flow.flow_id).await {
            Ok(true) => {}
            Ok(false) => return Step::Show("this sign-in was already completed".into()),
            Err(err) => {
                tracing::warn!(error = %err, "ending a sign-in flow failed");
                return Step::Show("the server could not finish the sign-in; retry".into());
            }
        }
        let code = random_secret();
        let now = now_us();
        let row = Code {
            client_id: flow.client_id.clone(),
            redirect_uri: flow.redirect_uri.clone(),
            code_challenge: flow.code_challenge.clone(),
            resource: flow.resource.clone(),
            scopes: flow.scopes.clone(),
            subject: flow.subject.clone().unwrap_or_default(),
            family: format!("signin-{}", &digest_hex(&random_secret())[..32]),
            expires_at: now + micros(CODE_TTL),
        };
        if let Err(err) = store::insert_code(&self.db, &digest_hex(&code), &row, now).await {
            tracing::warn!(error = %err, "storing an authorization code failed");
            return Step::Client {
                redirect: self.client_redirect(
                    &flow.redirect_uri,
                    flow.state.as_deref(),
                    &[("error", "temporarily_unavailable")],
                ),
            };
        }
        Step::Client {
            redirect: self.client_redirect(
                &flow.redirect_uri,
                flow.state.as_deref(),
                &[("code", &code)],
            ),
        }
    }

    pub(super) fn refused(&self, flow: &Flow) -> Step {
        Step::Client {
            redirect: self.client_redirect(
                &flow.redirect_uri,
                flow.state.as_deref(),
                &[
                    ("error", "access_denied"),
                    ("error_description", "the person did not grant access"),
                ],
            ),
        }
    }

    /// The registered redirect URI with `params`, `state` and `iss` added
    /// to its query (RFC 6749 4.1.2, RFC 9207 2).
    fn client_redirect(
        &self,
        redirect_uri: &str,
        state: Option<&str>,
        params: &[(&str, &str)],
    ) -> String {
        let Ok(mut url) = url::Url::parse(redirect_uri) else {
            return redirect_uri.to_owned();
        };
        {
            let mut query = url.query_pairs_mut();
            for (name, value) in params {
                query.append_pair(name, value);
            }
            if let Some(state) = state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", &self.issuer);
        }
        url.into()
    }

    pub(super) fn authority(&self) -> &Arc<crate::authority::Authority<S>> {
        &self.authority
    }
}

/// The scopes to grant: those asked, each offered; or the defaults.
fn scopes(
    asked: Option<&str>,
    offered: &[String],
    defaults: &[String],
) -> Result<Vec<String>, &'static str> {
    let asked = asked.unwrap_or("");
    if asked.len() > MAX_SCOPE_PARAM {
        return Err("scope: too long");
    }
    let mut scopes: Vec<String> = Vec::new();
    for scope in asked.split(' ').filter(|s| !s.is_empty()) {
        // OIDC's and the SDKs' own additions are not resource scopes.
        if scope == "offline_access" {
            continue;
        }
        if !offered.iter().any(|o| o == scope) {
            return Err("scope: asks for a scope the resource does not offer");
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    if scopes.is_empty() {
        scopes = defaults.to_vec();
    }
    Ok(scopes)
}

fn is_base64url(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'
}

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_asked_must_be_offered_and_default_otherwise() {
        let offered = vec!["a".to_owned(), "b".to_owned()];
        let defaults = vec!["a".to_owned()];
        assert_eq!(scopes(None, &offered, &defaults).unwrap(), ["a"]);
        assert_eq!(
            scopes(Some("b a b"), &offered, &defaults).unwrap(),
            ["b", "a"]
        );
        assert_eq!(
            scopes(Some("offline_access"), &offered, &defaults).unwrap(),
            ["a"]
        );
        assert!(scopes(Some("c"), &offered, &defaults).is_err());
    }
}
