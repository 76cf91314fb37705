/**
 * Before a person is involved: with sign-in off (Tessera as before issue 20),
 * each SDK client meets the 401 at its MCP server, reads the server's
 * protected-resource metadata (RFC 9728), finds Tessera in it and reads
 * Tessera's metadata (RFC 8414) — and then stops without sending anyone to a
 * browser, since that Tessera offers neither registration nor metadata
 * documents. This proves the harness's wiring (example servers, SDK clients,
 * Tessera) whatever the state of the sign-in endpoints.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { pythonClient } from './python_client.mjs';
import { typescriptSignIn } from './typescript_client.mjs';
import { freePort, startWorld } from './world.mjs';

let world;
const person = () => assert.fail('the browser was called without sign-in');

before(async () => {
  world = await startWorld({ signin: false, name: 'discovery' });
});

after(async () => {
  await world?.stop();
});

function assertDiscovered(visited, mcp) {
  const { origin } = new URL(mcp);
  const expected = [
    `POST ${mcp} 401`,
    `GET ${origin}/.well-known/oauth-protected-resource/mcp 200`,
    `GET ${world.tessera}/.well-known/oauth-authorization-server 200`,
  ];
  const seen = visited.filter((line) => expected.includes(line));
  assert.deepEqual(seen.slice(0, 3), expected, `the SDK's requests:\n${visited.join('\n')}`);
}

test('the Python SDK client goes from the 401 to Tessera\'s metadata, then stops', async () => {
  const outcome = await pythonClient({ mcp: world.mcp.python, callbackPort: await freePort(), name: 'discovery', person });
  assert.notEqual(outcome.code, 0);
  assert.equal(outcome.authorizationUrl, null);
  // No registration endpoint: the SDK falls back to /register at the MCP server, which has none.
  assert.match(outcome.stderr, /OAuthRegistrationError: Registration failed: 404/);
  assertDiscovered(outcome.visited, world.mcp.python);
});

test('the TypeScript SDK client goes from the 401 to Tessera\'s metadata, then stops', async () => {
  const visited = [];
  await assert.rejects(typescriptSignIn({
    mcp: world.mcp.typescript, callbackPort: await freePort(), name: 'discovery', person, visited,
  }), /does not support dynamic client registration/);
  assertDiscovered(visited, world.mcp.typescript);
});
