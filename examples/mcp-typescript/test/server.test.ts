/**
 * The SDK's own client against server.ts, with tokens Tessera minted over gRPC.
 *
 * `search` needs `tool:search`, `purge_index` needs `tool:admin`. The SDK's
 * client turns an HTTP refusal into an error, so every HTTP answer is also
 * recorded (the transport's `fetch`) to check the status and the
 * `WWW-Authenticate` challenge.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  Client,
  discoverAuthorizationServerMetadata,
  discoverOAuthServerInfo,
  StreamableHTTPClientTransport,
} from '@modelcontextprotocol/client';

import { TesseraVerifier, canonical, granted } from '../server.ts';
import { type World, start } from './support.ts';

let world: World;
before(async () => {
  world = await start();
});
after(() => world?.stop());

/** A connected SDK client bearing `token`; `answers` records every HTTP answer. */
async function connect(token: string, answers: Response[] = []): Promise<Client> {
  const transport = new StreamableHTTPClientTransport(world.mcp, {
    authProvider: { token: async () => token },
    fetch: async (url, init) => {
      const answer = await fetch(url, init);
      answers.push(answer.clone());
      return answer;
    },
  });
  const client = new Client({ name: 'test', version: '1.0.0' });
  await client.connect(transport);
  return client;
}

async function text(result: Promise<any>): Promise<string> {
  const { isError, content } = await result;
  assert.ok(!isError, JSON.stringify(content));
  return content[0].text;
}

/** The `WWW-Authenticate` of the refusals among `answers`, all of them `status`. */
function challenge(answers: Response[], status: number): string {
  const refusals = answers.filter((a) => a.status === 401 || a.status === 403);
  assert.ok(refusals.length > 0, 'no refusal recorded');
  assert.deepEqual([...new Set(refusals.map((a) => a.status))], [status]);
  return refusals.at(-1)!.headers.get('www-authenticate') ?? '';
}

const metadataUrl = () => `resource_metadata="http://127.0.0.1:${world.mcp.port}/.well-known/oauth-protected-resource/mcp"`;

/** A connection with `token` is refused from its first request: 401 with `resource_metadata`. */
async function refused(token: string) {
  const answers: Response[] = [];
  await assert.rejects(connect(token, answers));
  const header = challenge(answers, 401);
  assert.match(header, /error="invalid_token"/);
  assert.ok(header.includes(metadataUrl()), header);
}

test('a valid token lists and calls the tool', async () => {
  const client = await connect(await world.authority.mint(['tool:search'], 'run-1'));
  const tools = (await client.listTools()).tools.map((t) => t.name);
  assert.deepEqual(tools.sort(), ['purge_index', 'search']);
  assert.equal(await text(client.callTool({ name: 'search', arguments: { query: 'tessera' } })), "3 results for 'tessera'");
  await client.close();
});

test("a token without the tool's scope gets 403 insufficient_scope; a family grants it", async () => {
  const answers: Response[] = [];
  const client = await connect(await world.authority.mint(['tool:search'], 'run-1'), answers);
  await assert.rejects(client.callTool({ name: 'purge_index', arguments: {} }));
  const header = challenge(answers, 403);
  assert.match(header, /^Bearer error="insufficient_scope"/);
  assert.match(header, /scope="tool:admin"/);
  assert.ok(header.includes(metadataUrl()), header);
  // The same client still does what the token allows.
  assert.equal(await text(client.callTool({ name: 'search', arguments: { query: 'q' } })), "3 results for 'q'");
  await client.close();

  const admin = await connect(await world.authority.mint(['tool:*'], 'run-1'));
  assert.equal(await text(admin.callTool({ name: 'purge_index', arguments: {} })), 'index purged');
  await admin.close();
});

test('a revoked token gets 401', async () => {
  const token = await world.authority.mint(['tool:search'], 'run-2');
  const answers: Response[] = [];
  const client = await connect(token, answers);
  assert.equal(await text(client.callTool({ name: 'search', arguments: { query: 'q' } })), "3 results for 'q'");
  assert.equal(await world.authority.revoke({ token }), 1);
  await assert.rejects(client.callTool({ name: 'search', arguments: { query: 'q' } }));
  assert.match(challenge(answers, 401), /error="invalid_token"/);
  await client.close();
  await refused(token);
});

test("revoking the run gets 401 for its tokens, not another run's", async () => {
  const [first, second] = [await world.authority.mint(['tool:search'], 'run-3'), await world.authority.mint(['tool:search'], 'run-3')];
  const other = await world.authority.mint(['tool:search'], 'run-4');
  assert.equal(await world.authority.revoke({ runId: 'run-3' }, 'REVOKE_REASON_RUN_ENDED'), 2);
  await refused(first);
  await refused(second);
  const client = await connect(other);
  assert.equal(await text(client.callTool({ name: 'search', arguments: { query: 'q' } })), "3 results for 'q'");
  await client.close();
});

test('an expired token gets 401', async () => {
  const token = await world.authority.mint(['tool:search'], 'run-5', { ttl: 1 });
  // Wait for the event (Tessera calls it inactive), not for a guessed time.
  const verifier = new TesseraVerifier(world.tessera, 'mcp-server', world.keys['mcp-server'], world.mcp);
  while (await verifier.verifyAccessToken(token).then(() => true, () => false)) {
    await new Promise((wake) => setTimeout(wake, 100));
  }
  await refused(token);
});

test('a token for another resource, or for anyone, gets 401', async () => {
  await refused(await world.authority.mint(['tool:search'], 'run-6', { audience: ['https://other.example.com/mcp'] }));
  // Tessera does not show a token for anyone to a client that declares a resource.
  await refused(await world.authority.mint(['tool:search'], 'run-6', { audience: [] }));
  // A token naming the server's client id is active at Tessera, but it names no
  // resource: the SDK's `expectedResource` check refuses it.
  await refused(await world.authority.mint(['tool:search'], 'run-6', { audience: ['mcp-server'] }));
  // The URI in another spelling is the same resource.
  const spelt = `HTTP://127.0.0.1:${world.mcp.port}/mcp/`;
  const client = await connect(await world.authority.mint(['tool:search'], 'run-6', { audience: [spelt] }));
  assert.equal(await text(client.callTool({ name: 'search', arguments: { query: 'q' } })), "3 results for 'q'");
  await client.close();
});

test("the SDK's discovery accepts Tessera's metadata, from the server's 401 onwards", async () => {
  const info = await discoverOAuthServerInfo(world.mcp);
  assert.equal(info.authorizationServerUrl, world.tessera);
  assert.equal(info.resourceMetadata?.resource, world.mcp.href);
  const metadata = info.authorizationServerMetadata!;
  assert.equal(metadata.issuer, world.tessera);
  assert.equal(metadata.token_endpoint, `${world.tessera}/oauth2/token`);
  assert.ok('introspection_endpoint' in metadata);
  assert.equal(metadata.introspection_endpoint, `${world.tessera}/oauth2/introspect`);
  // The authorization endpoint the schema requires exists, and refuses: Tessera
  // has no authorization flow (and says so: no response types).
  assert.deepEqual(metadata.response_types_supported, []);
  const authorize = await fetch(`${metadata.authorization_endpoint}?response_type=code&client_id=x`, { redirect: 'manual' });
  assert.equal(authorize.status, 400);
  assert.equal((await authorize.json()).error, 'unsupported_response_type');
  assert.deepEqual(await discoverAuthorizationServerMetadata(world.tessera), metadata);
});

test('the verifier maps introspection onto AuthInfo', async () => {
  const token = await world.authority.mint(['tool:search', 'connector:*'], 'run-7');
  const verifier = new TesseraVerifier(world.tessera, 'mcp-server', world.keys['mcp-server'], world.mcp);
  const info = await verifier.verifyAccessToken(token);
  assert.equal(info.token, token);
  assert.deepEqual(info.scopes, ['tool:search', 'connector:*']);
  assert.equal(info.clientId, 'orchestrator');
  assert.equal(info.resource?.href, world.mcp.href);
  assert.ok(info.expiresAt! - Date.now() / 1000 > 290);
  assert.equal(info.extra?.subject, 'user-42');
  assert.equal(info.extra?.run_id, 'run-7');
  assert.match(String(info.extra?.jti), /^grt_/);
  await assert.rejects(verifier.verifyAccessToken(token.slice(0, -1) + 'x'), /not active/);
  const wrongKey = new TesseraVerifier(world.tessera, 'mcp-server', 'tsk_wrong', world.mcp);
  await assert.rejects(wrongKey.verifyAccessToken(token), /answered 401/);
});

test('scopes and resource URIs as Tessera reads them', () => {
  assert.ok(granted(['tool:*'], 'tool:admin') && granted(['tool:search'], 'tool:search'));
  assert.ok(!granted(['tool:search'], 'tool:admin') && !granted(['tool:*'], 'toolx:a') && !granted(['*'], 'tool:a'));
  assert.equal(canonical('HTTPS://MCP.Example.com:443/mcp/#x'), 'https://mcp.example.com/mcp');
  assert.equal(canonical('https://mcp.example.com'), 'https://mcp.example.com/');
});
