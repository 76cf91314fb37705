/**
 * An MCP client on the official TypeScript SDK (`@modelcontextprotocol/client`,
 * the version examples/mcp-typescript pins), signing in with an
 * `OAuthClientProvider` of its own, the way the SDK's docs build one: the
 * transport meets the 401, the SDK discovers (RFC 9728, then RFC 8414), uses the
 * client ID metadata document's URL as `client_id` or registers (RFC 7591),
 * makes the PKCE pair and calls `redirectToAuthorization`; the browser signs in
 * and lands on the loopback callback; `finishAuth` exchanges the code (checking
 * `iss`, RFC 9207); a new connection calls a tool.
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import { Client, StreamableHTTPClientTransport, UnauthorizedError } from '@modelcontextprotocol/client';

/** Everything in memory: one sign-in per provider. */
class MemoryProvider {
  #tokens;
  #client;
  #verifier;
  #discovery;
  constructor({ redirectUrl, name, clientMetadataUrl, onRedirect }) {
    this.redirectUrl = redirectUrl;
    this.clientMetadataUrl = clientMetadataUrl;
    this.sentState = randomBytes(24).toString('base64url');
    this.onRedirect = onRedirect;
    this.clientMetadata = {
      client_name: name,
      redirect_uris: [redirectUrl],
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      token_endpoint_auth_method: 'none',
    };
  }
  state() { return this.sentState; }
  clientInformation() { return this.#client; }
  saveClientInformation(info) { this.#client = info; }
  tokens() { return this.#tokens; }
  saveTokens(tokens) { this.#tokens = tokens; }
  redirectToAuthorization(url) { this.onRedirect(url); }
  saveCodeVerifier(verifier) { this.#verifier = verifier; }
  codeVerifier() { return this.#verifier; }
  // Kept so that `finishAuth` checks the callback against the server it discovered (SEP-2352).
  saveDiscoveryState(state) { this.#discovery = state; }
  discoveryState() { return this.#discovery; }
}

/** The loopback redirect URI: resolves with the first callback's query. */
async function loopbackCallback(port) {
  let arrived;
  const query = new Promise((done) => { arrived = done; });
  const server = createServer((req, res) => {
    const url = new URL(req.url, `http://127.0.0.1:${port}`);
    res.writeHead(200, { 'content-type': 'text/html' }).end('<p id="done">You can close this window.</p>');
    if (url.pathname === '/callback') arrived(url.searchParams);
  });
  await new Promise((done) => server.listen(port, '127.0.0.1', done));
  return { query, close: () => { server.closeAllConnections(); server.close(); } };
}

/**
 * Signs in to the MCP server at `mcp` and calls `search`. `person(url)` is the browser:
 * it gets the authorization URL and returns what the browser saw (`arrived`: it reached the callback).
 * Returns the tool list, the tool's answer, and what the flow showed on the way; each
 * request the SDK made before the browser is appended to `visited`.
 */
export async function typescriptSignIn({ mcp, callbackPort, clientMetadataUrl, name, person, visited = [] }) {
  const redirectUrl = `http://127.0.0.1:${callbackPort}/callback`;
  let authorizationUrl;
  const provider = new MemoryProvider({
    redirectUrl, name, clientMetadataUrl, onRedirect: (url) => { authorizationUrl = url; },
  });
  const callback = await loopbackCallback(callbackPort);
  try {
    // Every request the SDK makes on the way (method, URL, status): the discovery it did.
    const fetch = async (url, init) => {
      const response = await globalThis.fetch(url, init);
      visited.push(`${init?.method ?? 'GET'} ${url} ${response.status}`);
      return response;
    };
    const first = new StreamableHTTPClientTransport(new URL(mcp), { authProvider: provider, fetch });
    const unauthorized = await new Client({ name, version: '1.0.0' }).connect(first).then(
      () => null, (error) => error);
    if (!authorizationUrl) throw unauthorized ?? new Error('connected without a token');
    if (!(unauthorized instanceof UnauthorizedError)) throw unauthorized;
    const seen = await person(authorizationUrl.href);
    if (!seen.arrived) return { authorizationUrl, seen }; // refused before the client's callback
    const params = await callback.query;
    if (params.get('state') !== provider.sentState) throw new Error('the callback state is not the one sent');
    if (params.get('error')) return { authorizationUrl, seen, params, error: params.get('error') };
    await first.finishAuth(params); // the code exchange; `iss` checked against the metadata
    const client = new Client({ name, version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(mcp), { authProvider: provider }));
    try {
      const tools = (await client.listTools()).tools.map((t) => t.name).sort();
      const result = await client.callTool({ name: 'search', arguments: { query: 'tessera' } });
      return {
        authorizationUrl, seen, params, tools, result: result.content[0].text,
        clientId: provider.clientInformation().client_id, tokens: provider.tokens(),
      };
    } finally {
      await client.close();
    }
  } finally {
    callback.close();
  }
}
