//! An MCP server (rmcp's streamable HTTP service, served by axum) whose
//! `/mcp` endpoint only Tessera tokens with scope `mcp` open.
//!
//! [`BearerAuth`] does the work: it answers 401 with
//! `WWW-Authenticate: Bearer resource_metadata="…"` to a call without a
//! token (an MCP client then reads the RFC 9728 document the layer serves,
//! finds Tessera named as the authorization server, and gets a token),
//! refuses every bad token with the same 401, a token without `mcp` with
//! 403 `insufficient_scope`, and hands the tools the token's [`Grant`].

use axum::{Router, routing::get};
use rmcp::{
    handler::server::common::Extension,
    tool, tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use tessera_client::{BearerAuth, Client, Error, Grant};

/// The MCP tools: one, saying whom the token that opened the call is for.
#[derive(Clone, Default)]
pub struct Tools;

#[tool_router(server_handler)]
impl Tools {
    #[tool(description = "Who the Tessera token that opened this call is for, and its grant")]
    fn whoami(&self, Extension(parts): Extension<http::request::Parts>) -> String {
        // rmcp hands tools the HTTP request's parts; BearerAuth put the
        // validated grant in their extensions.
        match parts.extensions.get::<Grant>() {
            Some(grant) => format!("subject {} (grant {})", grant.subject, grant.grant_id),
            None => "no grant".to_owned(),
        }
    }
}

/// The app: `/mcp` behind Tessera tokens with scope `mcp`, `/healthz`
/// open, and the RFC 9728 document at
/// `/.well-known/oauth-protected-resource/mcp` for `resource`
/// (`http://127.0.0.1:8000/mcp`, say: the URL MCP clients use).
pub fn app(tessera: Client, resource: &str) -> Result<Router, Error> {
    let mcp = StreamableHttpService::new(
        || Ok(Tools),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default().with_json_response(true),
    );
    let auth = BearerAuth::new(tessera, resource)?
        .require(["mcp"])
        .public("/healthz")
        .scopes_supported(["mcp"])
        .resource_name("Tessera MCP example");
    Ok(Router::new()
        .nest_service("/mcp", mcp)
        .route("/healthz", get(|| async { "ok" }))
        .layer(auth))
}
