//! The browser's endpoints of sign-in: `/oauth2/authorize`, the upstream
//! provider's `/oauth2/callback`, and the consent page. HTML is built here
//! from escaped text only; the rules are in [`crate::signin`].

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::Response,
};

use super::{Face, read_form};
use crate::{
    signin::{Authorize, CallbackOutcome, ConsentView, Decision, Signin, Step, flow_cookie_name},
    store::Store,
};

/// Longest query string read.
const MAX_QUERY: usize = 8 * 1024;

fn signin<S>(face: &Face<S>) -> Option<&Arc<Signin<S>>> {
    face.signin.as_ref()
}

/// `GET /oauth2/authorize` with sign-in on.
pub async fn authorize<S: Store>(State(face): State<Arc<Face<S>>>, request: Request) -> Response {
    let Some(signin) = signin(&face) else {
        return super::oauth::authorize().await;
    };
    let query = match query(request.uri().query()) {
        Ok(query) => query,
        Err(why) => return page(StatusCode::BAD_REQUEST, "Sign-in refused", &why),
    };
    let one = |name: &str| {
        query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let request = Authorize {
        response_type: one("response_type"),
        client_id: one("client_id"),
        redirect_uri: one("redirect_uri"),
        state: one("state"),
        code_challenge: one("code_challenge"),
        code_challenge_method: one("code_challenge_method"),
        scope: one("scope"),
        resource: query
            .iter()
            .filter(|(key, _)| key == "resource")
            .map(|(_, value)| value.clone())
            .collect(),
    };
    respond(signin, signin.authorize(request).await)
}

/// `GET /oauth2/callback`: the provider sends the browser back.
pub async fn callback<S: Store>(State(face): State<Arc<Face<S>>>, request: Request) -> Response {
    let Some(signin) = signin(&face) else {
        return super::fallback(request).await;
    };
    let query = match query(request.uri().query()) {
        Ok(query) => query,
        Err(why) => return page(StatusCode::BAD_REQUEST, "Sign-in refused", &why),
    };
    let get = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let state = get("state").unwrap_or_default();
    let cookie = cookie(request.headers(), &flow_cookie_name(&state));
    let outcome = match (get("code"), get("error")) {
        (_, Some(error)) => CallbackOutcome::Error(error),
        (Some(code), None) => CallbackOutcome::Code(code),
        (None, None) => CallbackOutcome::Code(String::new()),
    };
    respond(
        signin,
        signin.callback(&state, cookie.as_deref(), outcome).await,
    )
}

/// `GET /oauth2/consent?flow=…`: the page.
pub async fn consent_page<S: Store>(
    State(face): State<Arc<Face<S>>>,
    request: Request,
) -> Response {
    let Some(signin) = signin(&face) else {
        return super::fallback(request).await;
    };
    let query = match query(request.uri().query()) {
        Ok(query) => query,
        Err(why) => return page(StatusCode::BAD_REQUEST, "Sign-in refused", &why),
    };
    let flow = query
        .iter()
        .find(|(k, _)| k == "flow")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let cookie = cookie(request.headers(), &flow_cookie_name(&flow));
    match signin.consent_view(&flow, cookie.as_deref()).await {
        Ok(view) => consent_html(&view),
        Err(step) => respond(signin, step),
    }
}

/// `POST /oauth2/consent`: approve or deny.
pub async fn consent_answer<S: Store>(
    State(face): State<Arc<Face<S>>>,
    request: Request,
) -> Response {
    let Some(signin) = signin(&face) else {
        return super::fallback(request).await;
    };
    let headers = request.headers().clone();
    let form = match read_form(&face.door, request).await {
        Ok(form) => form,
        Err(response) => return response,
    };
    let flow = form.get("flow").unwrap_or_default();
    let csrf = form.get("csrf").unwrap_or_default();
    let decision = match form.get("decision") {
        Some("approve") => Decision::Approve,
        Some("deny") => Decision::Deny,
        _ => {
            return page(
                StatusCode::BAD_REQUEST,
                "Sign-in refused",
                "decision: must be approve or deny",
            );
        }
    };
    let cookie = cookie(&headers, &flow_cookie_name(flow));
    respond(
        signin,
        signin.decide(flow, csrf, cookie.as_deref(), decision).await,
    )
}

fn respond<S>(signin: &Signin<S>, step: Step) -> Response {
    match step {
        Step::Show(why) => page(StatusCode::BAD_REQUEST, "Sign-in refused", &why),
        Step::Client { redirect } => redirect_to(&redirect),
        // Relative: the browser stays on the origin its cookie is for.
        Step::Consent { flow_id } => redirect_to(&format!("/oauth2/consent?flow={flow_id}")),
        Step::Login {
            url,
            cookie_name,
            cookie_value,
        } => {
            let mut response = redirect_to(&url);
            let secure = if signin.issuer.starts_with("https://") {
                "; Secure"
            } else {
                ""
            };
            let max_age = crate::signin::FLOW_TTL.as_secs();
            let cookie = format!(
                "{cookie_name}={cookie_value}; Path=/oauth2; Max-Age={max_age}; HttpOnly; \
                 SameSite=Lax{secure}"
            );
            if let Ok(value) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
    }
}

/// 303 See Other: the browser follows with GET, whatever it sent.
fn redirect_to(location: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    match HeaderValue::from_str(location) {
        Ok(value) => {
            response.headers_mut().insert(header::LOCATION, value);
            no_store(response)
        }
        Err(_) => page(
            StatusCode::BAD_REQUEST,
            "Sign-in refused",
            "redirect_uri: not a valid URI",
        ),
    }
}

fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// The query's pairs; a parameter given twice is refused (RFC 6749 3.1),
/// but for `resource` (RFC 8707 2).
fn query(raw: Option<&str>) -> Result<Vec<(String, String)>, String> {
    let raw = raw.unwrap_or("");
    if raw.len() > MAX_QUERY {
        return Err(format!("the query must be at most {MAX_QUERY} bytes"));
    }
    let mut pairs: Vec<(String, String)> = Vec::new();
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        if key != "resource" && pairs.iter().any(|(seen, _)| *seen == key) {
            let known = [
                "response_type",
                "client_id",
                "redirect_uri",
                "state",
                "code_challenge",
                "code_challenge_method",
                "scope",
                "code",
                "error",
                "flow",
            ];
            let name = if known.contains(&&*key) {
                &*key
            } else {
                "a parameter"
            };
            return Err(format!("{name}: is given more than once"));
        }
        pairs.push((key.into_owned(), value.into_owned()));
    }
    Ok(pairs)
}

/// The value of cookie `name`, if the request carries it.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Text made safe for HTML content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTML page: no script, no framing, not cached.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    no_store(response)
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:36rem;margin:3rem auto;\
                     padding:0 1rem;line-height:1.5}button{font-size:1rem;padding:.5rem 1.5rem;\
                     margin-right:1rem}code{word-break:break-all}";

fn page(status: StatusCode, title: &str, message: &str) -> Response {
    html(
        status,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\
             <style>{STYLE}</style></head><body><h1>{t}</h1><p id=\"error\">{m}</p></body></html>",
            t = escape(title),
            m = escape(message),
        ),
    )
}

fn consent_html(view: &ConsentView) -> Response {
    let name = view.client_name.as_deref().unwrap_or(&view.client_id);
    let scopes: String = if view.scopes.is_empty() {
        "<li class=\"scope\"><em>no scopes</em></li>".to_owned()
    } else {
        view.scopes
            .iter()
            .map(|s| format!("<li class=\"scope\"><code>{}</code></li>", escape(s)))
            .collect()
    };
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Allow access?</title><style>{STYLE}</style></head><body>\
             <h1>Allow access?</h1>\
             <p><strong><span id=\"client-name\">{name}</span></strong> \
             (<code id=\"client-id\">{client_id}</code>) asks to act for you at \
             <strong id=\"resource-name\">{resource_name}</strong> \
             (<code id=\"resource\">{resource}</code>) with:</p>\
             <ul id=\"scopes\">{scopes}</ul>\
             <form method=\"post\" action=\"/oauth2/consent\" id=\"consent\">\
             <input type=\"hidden\" name=\"flow\" value=\"{flow}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" name=\"decision\" value=\"approve\" id=\"approve\">Allow</button>\
             <button type=\"submit\" name=\"decision\" value=\"deny\" id=\"deny\">Deny</button>\
             </form></body></html>",
            name = escape(name),
            client_id = escape(&view.client_id),
            resource_name = escape(&view.resource_name),
            resource = escape(&view.resource),
            flow = escape(&view.flow_id),
            csrf = escape(&view.csrf),
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_names_stays_text() {
        assert_eq!(
            escape(r#"<script>alert("x")</script>&'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"
        );
    }

    #[test]
    fn repeated_parameters_are_refused_but_resource() {
        assert!(
            query(Some("state=a&state=b"))
                .unwrap_err()
                .starts_with("state:")
        );
        assert_eq!(query(Some("resource=a&resource=b")).unwrap().len(), 2);
        assert!(query(Some(&"a".repeat(MAX_QUERY + 1))).is_err());
    }
}
