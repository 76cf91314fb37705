//! What a browser meets: the metadata clients discover, `/oauth2/authorize`
//! refusing before and after the client is verified, the provider's
//! callback with a forged `state`, and the consent page.

use super::{REDIRECT, Signin, location, param, shown};
use crate::{
    both_backends,
    support::{Backend, MCP_RESOURCE},
};

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn authorize_url(client_id: &str, extra: &[(&str, &str)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.extend_pairs([
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("state", "xyz"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]);
    query.extend_pairs(extra);
    format!("/oauth2/authorize?{}", query.finish())
}

async fn metadata_names_the_code_flow(backend: Backend) {
    let signin = Signin::spawn(backend).await;
    let reply = signin
        .get("/.well-known/oauth-authorization-server", None)
        .await;
    let meta = reply.json();
    let base = format!("http://{}", signin.app.addr);
    assert_eq!(meta["issuer"], base);
    assert_eq!(
        meta["authorization_endpoint"],
        format!("{base}/oauth2/authorize")
    );
    assert_eq!(
        meta["registration_endpoint"],
        format!("{base}/oauth2/register")
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        meta["response_types_supported"],
        serde_json::json!(["code"])
    );
    assert_eq!(meta["client_id_metadata_document_supported"], true);
    assert_eq!(meta["authorization_response_iss_parameter_supported"], true);
    let methods = meta["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(methods.contains(&"none".into()));
    let grants = meta["grant_types_supported"].as_array().unwrap();
    assert!(
        grants.contains(&"authorization_code".into()) && grants.contains(&"refresh_token".into())
    );
    assert_eq!(
        meta["scopes_supported"],
        serde_json::json!(["docs:read", "docs:write"])
    );

    // Switched off: no registration endpoint, no CIMD, and registering is 404.
    let off = Signin::spawn_with(backend, |c| {
        c.no_registration = true;
        c.no_cimd = true;
    })
    .await;
    let meta = off
        .get("/.well-known/oauth-authorization-server", None)
        .await
        .json();
    assert!(meta.get("registration_endpoint").is_none());
    assert_eq!(meta["client_id_metadata_document_supported"], false);
}

async fn unverified_redirects_are_never_followed(backend: Backend) {
    let signin = Signin::spawn(backend).await;
    let client = signin.register("none").await;
    let id = client["client_id"].as_str().unwrap();
    // Not the registered redirect URI (not even by a trailing slash).
    for other in [
        "http://127.0.0.1:33333/callback/",
        "https://evil.example/cb",
    ] {
        let url = authorize_url(id, &[("resource", MCP_RESOURCE)]).replace(
            &form_urlencoded::byte_serialize(REDIRECT.as_bytes()).collect::<String>(),
            &form_urlencoded::byte_serialize(other.as_bytes()).collect::<String>(),
        );
        shown(
            &signin.get(&url, None).await,
            "redirect_uri: is not one of the client",
        );
    }
    // An unknown client: shown, whatever redirect URI it names.
    let reply = signin
        .get(
            &authorize_url("dcr_unknown", &[("resource", MCP_RESOURCE)]),
            None,
        )
        .await;
    shown(&reply, "client_id: not a registered client");
    // A parameter given twice.
    let twice = format!(
        "{}&state=again",
        authorize_url(id, &[("resource", MCP_RESOURCE)])
    );
    shown(
        &signin.get(&twice, None).await,
        "state: is given more than once",
    );
}

async fn verified_clients_hear_their_errors_with_state_and_iss(backend: Backend) {
    let signin = Signin::spawn(backend).await;
    let client = signin.register("none").await;
    let id = client["client_id"].as_str().unwrap();
    let iss = format!("http://{}", signin.app.addr);
    for (extra, error, why) in [
        (
            vec![],
            "invalid_request",
            "resource: is required (RFC 8707)",
        ),
        (
            vec![("resource", "https://other.example.com/mcp")],
            "invalid_target",
            "resource: is not a resource this server issues tokens for",
        ),
        (
            vec![("resource", "not a uri")],
            "invalid_target",
            "resource: must be an absolute https URI",
        ),
        (
            vec![("resource", MCP_RESOURCE), ("scope", "docs:admin")],
            "invalid_scope",
            "scope: asks for a scope the resource does not offer",
        ),
    ] {
        let reply = signin.get(&authorize_url(id, &extra), None).await;
        let (base, pairs) = location(&reply);
        assert_eq!(base, REDIRECT);
        assert_eq!(param(&pairs, "error"), Some(error), "{why}");
        assert_eq!(param(&pairs, "error_description"), Some(why));
        assert_eq!(param(&pairs, "state"), Some("xyz"));
        assert_eq!(param(&pairs, "iss"), Some(iss.as_str()));
    }
    // PKCE is required, and only S256.
    let plain = authorize_url(id, &[("resource", MCP_RESOURCE)])
        .replace("code_challenge_method=S256", "code_challenge_method=plain");
    let (_, pairs) = location(&signin.get(&plain, None).await);
    assert_eq!(
        param(&pairs, "error_description"),
        Some("code_challenge_method: must be S256")
    );
    let none = authorize_url(id, &[("resource", MCP_RESOURCE)]).replace(CHALLENGE, "");
    let (_, pairs) = location(&signin.get(&none, None).await);
    assert_eq!(
        param(&pairs, "error_description"),
        Some("code_challenge: is required (PKCE with S256)")
    );
}

async fn a_forged_state_is_refused_on_tesseras_page(backend: Backend) {
    let signin = Signin::spawn(backend).await;
    let client = signin.register("none").await;
    let id = client["client_id"].as_str().unwrap();
    let (flow, cookie) = signin.signed_in(id, "alice", CHALLENGE).await;
    let why = "this sign-in is unknown, expired, finished, or was begun in another browser";
    // A state no flow has.
    let reply = signin
        .get("/oauth2/callback?code=c&state=forged", Some(&cookie))
        .await;
    shown(&reply, why);
    // A real flow's state from a browser without its cookie, or another's.
    let path = format!("/oauth2/callback?code=c&state={flow}");
    shown(&signin.get(&path, None).await, why);
    let (_, other_cookie) = signin.signed_in(id, "mallory", CHALLENGE).await;
    let stolen = format!(
        "{}={}",
        tessera::signin::flow_cookie_name(&flow),
        other_cookie.split('=').nth(1).unwrap()
    );
    shown(&signin.get(&path, Some(&stolen)).await, why);
    // The consent page of a flow is the same refusal without its cookie.
    shown(
        &signin
            .get(&format!("/oauth2/consent?flow={flow}"), None)
            .await,
        why,
    );
}

/// The consent page's hidden CSRF field.
fn csrf(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..page[at..].find('"').unwrap() + at].to_owned()
}

async fn consent_refused_and_given(backend: Backend) {
    let signin = Signin::spawn(backend).await;
    let client = signin.register("none").await;
    let id = client["client_id"].as_str().unwrap();
    let (flow, cookie) = signin.signed_in(id, "alice", CHALLENGE).await;
    let page = signin
        .get(&format!("/oauth2/consent?flow={flow}"), Some(&cookie))
        .await;
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    // The client's name is text, never markup.
    assert!(html.contains("Editor &lt;b&gt;&amp;&lt;/b&gt;"), "{html}");
    assert!(!html.contains("<b>&</b>"));
    assert!(html.contains(MCP_RESOURCE) && html.contains("docs:read"));
    assert!(page.header("content-security-policy")[0].contains("frame-ancestors 'none'"));
    let token = csrf(&html);

    // A forged form (wrong csrf) is refused on Tessera's page.
    let post = |csrf: String, decision: &'static str, cookie: String, flow: String| {
        let signin = &signin;
        async move {
            let mut request = crate::support::http::form(
                "/oauth2/consent",
                crate::support::http::Auth::None,
                &[("flow", &flow), ("csrf", &csrf), ("decision", decision)],
            );
            request
                .headers_mut()
                .insert(http::header::COOKIE, cookie.parse().unwrap());
            crate::support::http::send(
                signin.app.http_addr,
                None,
                crate::support::http::Version::H1,
                request,
            )
            .await
        }
    };
    let forged = post("A".repeat(43), "approve", cookie.clone(), flow.clone()).await;
    shown(&forged, "csrf: the form is not the one this server showed");

    // Refused: the client hears access_denied, with its state and iss.
    let denied = post(token.clone(), "deny", cookie.clone(), flow.clone()).await;
    let (base, pairs) = location(&denied);
    assert_eq!(base, REDIRECT);
    assert_eq!(param(&pairs, "error"), Some("access_denied"));
    assert_eq!(param(&pairs, "state"), Some("st-1"));
    assert!(param(&pairs, "code").is_none());
    // The flow is over: answering again changes nothing.
    let again = post(token, "approve", cookie, flow).await;
    assert_eq!(again.status, 400);

    // Given: a code comes back, and the consent is remembered.
    let (flow, cookie) = signin.signed_in(id, "alice", CHALLENGE).await;
    let html = signin
        .get(&format!("/oauth2/consent?flow={flow}"), Some(&cookie))
        .await
        .text();
    let given = post(csrf(&html), "approve", cookie, flow).await;
    let (_, pairs) = location(&given);
    assert!(param(&pairs, "code").is_some_and(|c| c.len() == 43));
    assert_eq!(
        param(&pairs, "iss"),
        Some(format!("http://{}", signin.app.addr).as_str())
    );
    let remembered = tessera::signin::store::consent(
        &signin.db,
        "alice",
        id,
        MCP_RESOURCE,
        tessera::signin::now_us(),
    )
    .await
    .unwrap();
    assert_eq!(remembered, Some(vec!["docs:read".to_owned()]));
}

both_backends!(
    metadata_names_the_code_flow,
    unverified_redirects_are_never_followed,
    verified_clients_hear_their_errors_with_state_and_iss,
    a_forged_state_is_refused_on_tesseras_page,
    consent_refused_and_given,
);
