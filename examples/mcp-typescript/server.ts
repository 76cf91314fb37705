/**
 * An MCP server (official TypeScript SDK v2) whose bearer tokens are Tessera's.
 *
 * The SDK's `requireBearerAuth` asks an `OAuthTokenVerifier` who a bearer is;
 * this one asks Tessera's RFC 7662 endpoint, authenticated as this server's
 * own Tessera client, and takes `AuthInfo.resource` from the `aud` entry that
 * is this server's resource URI (RFC 8707), which the SDK's `expectedResource`
 * then checks. Each tool needs a scope of its own (`tool:*` grants them all),
 * checked by the SDK before the call runs (403 insufficient_scope).
 *
 *     TESSERA_URL=http://127.0.0.1:50051 TESSERA_CLIENT_ID=mcp-server \
 *     TESSERA_CLIENT_KEY=tsk_... PORT=3000 npx tsx server.ts
 */
import { discoverAuthorizationServerMetadata } from '@modelcontextprotocol/client';
import {
  createMcpExpressApp,
  getOAuthProtectedResourceMetadataUrl,
  mcpAuthMetadataRouter,
  requireBearerAuth,
} from '@modelcontextprotocol/express';
import { NodeStreamableHTTPServerTransport } from '@modelcontextprotocol/node';
import {
  type AuthInfo,
  McpServer,
  OAuthError,
  OAuthErrorCode,
  type OAuthTokenVerifier,
  type ScopeChallengeHandler,
} from '@modelcontextprotocol/server';
import { realpathSync } from 'node:fs';

import * as z from 'zod';

/** Tessera's rule: exactly, or by a family (`tool:*` grants `tool:admin`). */
export const granted = (scopes: string[], needed: string) =>
  scopes.some((s) => s === needed || (s.endsWith(':*') && needed.startsWith(s.slice(0, -1))));

/** The canonical form Tessera keeps resource URIs in: no fragment, no trailing slash. */
export function canonical(uri: string | URL): string {
  const url = new URL(uri);
  url.hash = '';
  url.pathname = url.pathname.replace(/\/+$/, '') || '/';
  return url.href;
}

/** `OAuthTokenVerifier`: RFC 7662 introspection at Tessera, as client `clientId`. */
export class TesseraVerifier implements OAuthTokenVerifier {
  readonly #basic: string;
  readonly #resource: string;

  constructor(readonly tessera: string, clientId: string, clientKey: string, resource: URL) {
    this.#basic = 'Basic ' + Buffer.from(`${clientId}:${clientKey}`).toString('base64');
    this.#resource = canonical(resource);
  }

  async verifyAccessToken(token: string): Promise<AuthInfo> {
    const response = await fetch(new URL('/oauth2/introspect', this.tessera), {
      method: 'POST',
      headers: { authorization: this.#basic },
      body: new URLSearchParams({ token }),
    });
    // A bad client key or Tessera down is a 500 here, not the bearer's 401.
    if (!response.ok) throw new Error(`Tessera introspection answered ${response.status}`);
    const { active, aud = [], scope = '', client_id, exp, sub, ...claims } = await response.json();
    // Tessera answers {"active":false} to every refusal: revoked, expired, not for this client.
    if (!active) throw new OAuthError(OAuthErrorCode.InvalidToken, 'Token is not active');
    const mine = (aud as string[]).find((a) => a.includes('://') && canonical(a) === this.#resource);
    return {
      token,
      clientId: client_id, // the client that minted it
      scopes: scope.split(' ').filter(Boolean),
      expiresAt: exp,
      resource: mine ? new URL(mine) : undefined, // none: `expectedResource` refuses (401)
      extra: { subject: sub, ...claims }, // iss, jti (grant id), run_id, labels, iat, use counts
    };
  }
}

/** A tool's scope, as the SDK's per-tool `scopeChallenge` (403 with the RFC 6750 challenge). */
const needs = (scope: string): ScopeChallengeHandler => ({ authInfo }) =>
  authInfo && !granted(authInfo.scopes, scope) ? { scopes: [scope] } : undefined;

function tools(): McpServer {
  const server = new McpServer({ name: 'tessera-example', version: '1.0.0' });
  server.registerTool(
    'search',
    { description: 'Search the index.', inputSchema: z.object({ query: z.string() }), scopeChallenge: needs('tool:search') },
    async ({ query }) => ({ content: [{ type: 'text', text: `3 results for '${query}'` }] }),
  );
  server.registerTool(
    'purge_index',
    { description: 'Empty the index.', scopeChallenge: needs('tool:admin') },
    async () => ({ content: [{ type: 'text', text: 'index purged' }] }),
  );
  return server;
}

export async function buildApp(tessera: string, clientId: string, clientKey: string, resource: URL) {
  // The SDK's own discovery reads and validates Tessera's RFC 8414 metadata.
  const oauthMetadata = await discoverAuthorizationServerMetadata(tessera);
  if (!oauthMetadata) throw new Error(`no RFC 8414 metadata at ${tessera}`);
  const app = createMcpExpressApp({ host: resource.hostname });
  app.use(mcpAuthMetadataRouter({ oauthMetadata, resourceServerUrl: resource, scopesSupported: ['tool:search', 'tool:admin'] }));
  const auth = requireBearerAuth({
    verifier: new TesseraVerifier(tessera, clientId, clientKey, resource),
    expectedResource: resource,
    resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(resource),
  });
  app.all(resource.pathname, auth, async (req, res) => {
    // Stateless: a server and a transport per request.
    const transport = new NodeStreamableHTTPServerTransport({ sessionIdGenerator: undefined });
    await tools().connect(transport);
    await transport.handleRequest(req, res, req.body);
  });
  return app;
}

if (process.argv[1] && import.meta.filename === realpathSync(process.argv[1])) {
  const env = (name: string) => process.env[name] ?? (() => { throw new Error(`${name} is not set`); })();
  const port = Number(process.env.PORT ?? 3000);
  const resource = new URL(process.env.MCP_PUBLIC_URL ?? `http://127.0.0.1:${port}/mcp`);
  const app = await buildApp(env('TESSERA_URL'), env('TESSERA_CLIENT_ID'), env('TESSERA_CLIENT_KEY'), resource);
  app.listen(port, '127.0.0.1');
}
