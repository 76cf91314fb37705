//! ```sh
//! cargo run --release &                              # Tessera, dev mode, 127.0.0.1:50051
//! cargo run -p tessera-mcp-example                   # this MCP server, 127.0.0.1:8000
//! curl -si -X POST http://127.0.0.1:8000/mcp         # 401, WWW-Authenticate: Bearer resource_metadata="…"
//! curl -s http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp
//! ```
//!
//! `TESSERA_URL`, `TESSERA_KEY`, `TESSERA_CA` say how to reach Tessera;
//! `MCP_LISTEN` where to listen (`127.0.0.1:8000`), `MCP_RESOURCE` the URL
//! clients use (`http://<MCP_LISTEN>/mcp`).

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listen = std::env::var("MCP_LISTEN").unwrap_or_else(|_| "127.0.0.1:8000".to_owned());
    let resource = std::env::var("MCP_RESOURCE").unwrap_or_else(|_| format!("http://{listen}/mcp"));
    let tessera = tessera_client::Client::from_env().await?;
    let app = tessera_mcp_example::app(tessera, &resource)?;
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("MCP server for {resource}, guarded by Tessera");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
