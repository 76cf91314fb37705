/**
 * Signing in from an MCP client, end to end, with software nobody here wrote:
 * the official Python and TypeScript SDK clients, `oidc-provider` as the
 * company's identity provider, Debian's Chromium as the person. Each flow goes
 * from a 401 at an example MCP server through discovery, a client ID metadata
 * document (or registration), the provider's login, Tessera's consent page and
 * the code exchange, to a tool call that succeeds.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';

import {
  OAuthError, OAuthErrorCode, discoverAuthorizationServerMetadata, refreshAuthorization,
} from '@modelcontextprotocol/client';

import { openBrowser } from './browser.mjs';
import { ACCOUNT } from './provider.mjs';
import { pythonClient } from './python_client.mjs';
import { typescriptSignIn } from './typescript_client.mjs';
import { cimd, freePort, startWorld } from './world.mjs';

const NAMES = { python: 'Tessera e2e (Python SDK)', typescript: 'Tessera e2e (TypeScript SDK)' };
let world, browser, ports;

before(async () => {
  ports = { python: await freePort(), typescript: await freePort(), negative: await freePort() };
  const callback = (port) => `http://127.0.0.1:${port}/callback`;
  world = await startWorld({
    documents: {
      '/clients/python.json': cimd(NAMES.python, callback(ports.python)),
      '/clients/typescript.json': cimd(NAMES.typescript, callback(ports.typescript)),
      // One client per negative case, so that no case finds a consent another one left.
      '/clients/refused.json': cimd('Refused client', callback(ports.negative)),
      '/clients/forged-state.json': cimd('Forged state client', callback(ports.negative)),
      '/clients/forged-csrf.json': cimd('Forged CSRF client', callback(ports.negative)),
      // A document that names another client than the URL it is served at.
      '/clients/liar.json': (url) => ({ ...cimd('Liar client', callback(ports.negative))(url), client_id: `${url}.other` }),
    },
  });
  browser = await openBrowser();
});

after(async () => {
  await browser?.close();
  await world?.stop();
});

const arrivedAt = (port) => (url) => url.host === `127.0.0.1:${port}` && url.pathname === '/callback';
/** Where a flow keeps its consent page; none there before it (an old run's must not pass for it). */
function screenshot(name) {
  const path = join(world.artifacts, `consent-${name}.png`);
  rmSync(path, { force: true });
  return path;
}

const pythonSignIn = ({ clientMetadataUrl, decision = 'approve', shot }) => pythonClient({
  mcp: world.mcp.python, callbackPort: ports.python, clientMetadataUrl, name: NAMES.python,
  person: (url) => browser.signIn(url, { arrived: arrivedAt(ports.python), decision, screenshot: shot }),
});

function assertAuthorizationRequest(url, { clientId, resource }) {
  assert.equal(url.origin + url.pathname, `${world.tessera}/oauth2/authorize`);
  assert.equal(url.searchParams.get('response_type'), 'code');
  assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
  assert.equal(url.searchParams.get('resource'), resource);
  if (clientId) assert.equal(url.searchParams.get('client_id'), clientId);
}

function assertConsentShown(seen, { name, resource, shot }) {
  assert.ok(seen.consent, `no consent page; the browser ended at ${seen.finalUrl} with: ${seen.text}`);
  assert.equal(seen.consent.clientName, name);
  assert.ok(seen.consent.text.includes(name), 'the client name is in the page text');
  assert.equal(seen.consent.resource, resource);
  assert.ok(seen.consent.scopes.length > 0, 'the consent page lists the scopes asked');
  assert.ok(existsSync(shot), `no screenshot at ${shot}`);
  assert.deepEqual([...readFileSync(shot).subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  console.log(`consent page screenshot: ${shot}`);
}

test('the Python SDK client signs in with its client ID metadata document and calls a tool', async () => {
  const clientId = `${world.cimdHost.base}/clients/python.json`;
  const shot = screenshot('python');
  const outcome = await pythonSignIn({ clientMetadataUrl: clientId, shot });
  assert.equal(outcome.code, 0, `python client failed: ${outcome.stderr}`);
  assertAuthorizationRequest(outcome.authorizationUrl, { clientId, resource: world.mcp.python });
  assert.equal(outcome.seen.loginPages, 1);
  assertConsentShown(outcome.seen, { name: NAMES.python, resource: world.mcp.python, shot });
  assert.equal(outcome.seen.finalUrl.searchParams.get('iss'), world.tessera);
  assert.deepEqual(outcome.last.tools, ['purge_index', 'search']);
  assert.equal(outcome.last.result, "3 results for 'tessera'");
  assert.ok(world.cimdHost.fetches['/clients/python.json'] >= 1, 'Tessera fetched the document');
});

test('the TypeScript SDK client signs in with its client ID metadata document and calls a tool', async () => {
  const clientId = `${world.cimdHost.base}/clients/typescript.json`;
  const shot = screenshot('typescript');
  const outcome = await typescriptSignIn({
    mcp: world.mcp.typescript, callbackPort: ports.typescript, clientMetadataUrl: clientId, name: NAMES.typescript,
    person: (url) => browser.signIn(url, { arrived: arrivedAt(ports.typescript), screenshot: shot }),
  });
  assertAuthorizationRequest(outcome.authorizationUrl, { clientId, resource: world.mcp.typescript });
  assertConsentShown(outcome.seen, { name: NAMES.typescript, resource: world.mcp.typescript, shot });
  assert.equal(outcome.params.get('iss'), world.tessera);
  assert.equal(outcome.clientId, clientId);
  assert.equal(outcome.result, "3 results for 'tessera'");
  assertTokensNotLogged(outcome.tokens);
  // The grant: the provider's account is its subject, the MCP server its audience.
  const claims = await introspect(outcome.tokens.access_token, 'typescript');
  assert.equal(claims.active, true);
  assert.equal(claims.sub, ACCOUNT.sub);
  assert.ok(claims.aud.includes(world.mcp.typescript), `aud ${claims.aud}`);
});

test('the TypeScript SDK client registers dynamically when it has no metadata document', async () => {
  const name = 'Tessera e2e (TypeScript SDK, registered)';
  const shot = screenshot('typescript-registered');
  const outcome = await typescriptSignIn({
    mcp: world.mcp.typescript, callbackPort: ports.typescript, name,
    person: (url) => browser.signIn(url, { arrived: arrivedAt(ports.typescript), screenshot: shot }),
  });
  assert.ok(!outcome.clientId.startsWith('https://'), `a registered client id, not a URL: ${outcome.clientId}`);
  assertAuthorizationRequest(outcome.authorizationUrl, { clientId: outcome.clientId, resource: world.mcp.typescript });
  assertConsentShown(outcome.seen, { name, resource: world.mcp.typescript, shot });
  assert.equal(outcome.result, "3 results for 'tessera'");
  assertTokensNotLogged(outcome.tokens);
});

test('a consent given once is remembered: the next sign-in of that client skips the page', async () => {
  const clientId = `${world.cimdHost.base}/clients/typescript.json`;
  const outcome = await typescriptSignIn({
    mcp: world.mcp.typescript, callbackPort: ports.typescript, clientMetadataUrl: clientId, name: NAMES.typescript,
    person: (url) => browser.signIn(url, { arrived: arrivedAt(ports.typescript) }),
  });
  assert.equal(outcome.seen.loginPages, 1, 'the provider still asks who is there');
  assert.equal(outcome.seen.consent, null, 'no consent page the second time');
  assert.equal(outcome.result, "3 results for 'tessera'");
});

test("the SDK's refresh rotates the refresh token; the rotated one used again revokes the whole family", async () => {
  const clientId = `${world.cimdHost.base}/clients/typescript.json`;
  const signedIn = await typescriptSignIn({
    mcp: world.mcp.typescript, callbackPort: ports.typescript, clientMetadataUrl: clientId, name: NAMES.typescript,
    person: (url) => browser.signIn(url, { arrived: arrivedAt(ports.typescript) }),
  });
  const first = signedIn.tokens;
  assert.ok(first.refresh_token, 'a refresh token for a client that asked for the refresh_token grant');
  const metadata = await discoverAuthorizationServerMetadata(world.tessera);
  const refresh = (refreshToken) => refreshAuthorization(world.tessera, {
    metadata, clientInformation: { client_id: clientId }, refreshToken, resource: new URL(world.mcp.typescript),
  });
  const second = await refresh(first.refresh_token);
  assert.notEqual(second.refresh_token, first.refresh_token, 'rotated');
  assert.equal((await introspect(second.access_token, 'typescript')).active, true);

  const invalidGrant = (error) => error instanceof OAuthError && error.code === OAuthErrorCode.InvalidGrant;
  await assert.rejects(refresh(first.refresh_token), invalidGrant);
  for (const token of [first.access_token, second.access_token]) {
    assert.equal((await introspect(token, 'typescript')).active, false, 'the family is revoked');
  }
  await assert.rejects(refresh(second.refresh_token), invalidGrant);
});

test('consent refused: the client gets access_denied with its state and the issuer, and no token', async () => {
  const clientId = `${world.cimdHost.base}/clients/refused.json`;
  const outcome = await typescriptSignIn({
    mcp: world.mcp.typescript, callbackPort: ports.negative, clientMetadataUrl: clientId, name: 'Refused client',
    person: (url) => browser.signIn(url, { arrived: arrivedAt(ports.negative), decision: 'deny' }),
  });
  assert.equal(outcome.seen.consent.clientName, 'Refused client');
  assert.equal(outcome.error, 'access_denied');
  assert.equal(outcome.params.get('iss'), world.tessera);
  assert.equal(outcome.params.get('code'), null);
});

test("a forged state at Tessera's callback from the provider is refused on a page, never sent to the client",
  async () => {
    // The provider's redirect back to Tessera carries the right code with another state.
    world.provider.rewriteRedirects((location) => {
      const to = new URL(location, world.provider.issuer);
      if (to.origin !== world.tessera || to.pathname !== '/oauth2/callback') return location;
      to.searchParams.set('state', `forged-${to.searchParams.get('state')}`);
      return to.href;
    });
    const clientId = `${world.cimdHost.base}/clients/forged-state.json`;
    try {
      const outcome = await typescriptSignIn({
        mcp: world.mcp.typescript, callbackPort: ports.negative, clientMetadataUrl: clientId,
        name: 'Forged state client',
        person: (url) => browser.signIn(url, { arrived: arrivedAt(ports.negative) }),
      });
      assert.equal(outcome.seen.loginPages, 1);
      assert.equal(outcome.seen.arrived, false, `the browser reached the client: ${outcome.seen.finalUrl}`);
      assert.equal(outcome.seen.finalUrl.origin + outcome.seen.finalUrl.pathname, `${world.tessera}/oauth2/callback`);
      assert.equal(outcome.seen.status, 400);
      assert.equal(outcome.seen.consent, null);
    } finally {
      world.provider.rewriteRedirects(null);
    }
  });

test('a consent form posted with a forged CSRF token is refused and nothing reaches the client', async () => {
  const clientId = `${world.cimdHost.base}/clients/forged-csrf.json`;
  const outcome = await typescriptSignIn({
    mcp: world.mcp.typescript, callbackPort: ports.negative, clientMetadataUrl: clientId, name: 'Forged CSRF client',
    person: (url) => browser.signIn(url, {
      arrived: arrivedAt(ports.negative),
      beforeConsent: (page) => page.locator('#consent input[name=csrf]').evaluate((input) => { input.value = 'forged'; }),
    }),
  });
  assert.equal(outcome.seen.consent?.clientName, 'Forged CSRF client');
  assert.equal(outcome.seen.arrived, false, `the browser reached the client: ${outcome.seen.finalUrl}`);
  assert.equal(outcome.seen.finalUrl.origin, world.tessera);
  assert.ok(outcome.seen.status >= 400 && outcome.seen.status < 500, `status ${outcome.seen.status}`);
});

/** An authorization request made by hand, as a browser would send it, with a valid PKCE challenge. */
function handMade(overrides) {
  const url = new URL(`${world.tessera}/oauth2/authorize`);
  const params = {
    response_type: 'code', client_id: `${world.cimdHost.base}/clients/refused.json`,
    redirect_uri: `http://127.0.0.1:${ports.negative}/callback`, state: 'hand-made-state',
    code_challenge: createHash('sha256').update('a'.repeat(64)).digest('base64url'), code_challenge_method: 'S256',
    resource: world.mcp.typescript, ...overrides,
  };
  for (const [name, value] of Object.entries(params)) if (value !== undefined) url.searchParams.set(name, value);
  return url.href;
}

/** Refused on Tessera's own page: no sign-in, no consent, no redirect anywhere. */
async function assertRefusedOnPage(authorizationUrl) {
  const seen = await browser.signIn(authorizationUrl, { arrived: (u) => u.origin !== world.tessera });
  assert.equal(seen.arrived, false, `the browser left Tessera for ${seen.finalUrl}`);
  assert.equal(seen.status, 400);
  assert.equal(seen.loginPages, 0);
  assert.equal(seen.consent, null);
}

test('a redirect URI the client did not register is refused on a page, never redirected to', async () => {
  await assertRefusedOnPage(handMade({ redirect_uri: `http://127.0.0.1:${ports.negative}/elsewhere` }));
});

test("a metadata document whose client_id is not its own URL is refused on a page", async () => {
  await assertRefusedOnPage(handMade({ client_id: `${world.cimdHost.base}/clients/liar.json` }));
  assert.ok(world.cimdHost.fetches['/clients/liar.json'] >= 1, 'Tessera fetched it');
});

test('the pages reached nothing beyond loopback', () => {
  assert.deepEqual(browser.offLoopback, []);
});

/** RFC 7662 at Tessera, as the MCP server the token is for. */
async function introspect(token, server) {
  const basic = Buffer.from(`mcp-${server}:${world.keys[`mcp-${server}`]}`).toString('base64');
  const response = await fetch(`${world.tessera}/oauth2/introspect`, {
    method: 'POST', headers: { authorization: `Basic ${basic}` }, body: new URLSearchParams({ token }),
  });
  assert.equal(response.status, 200);
  return response.json();
}

/** Neither the access token nor the refresh token appears in Tessera's log. */
function assertTokensNotLogged(tokens) {
  const log = readFileSync(world.tesseraLog, 'utf8');
  assert.ok(tokens?.access_token, 'the client holds an access token');
  assert.ok(!log.includes(tokens.access_token), "the access token is in Tessera's log");
  if (tokens.refresh_token) assert.ok(!log.includes(tokens.refresh_token), "the refresh token is in Tessera's log");
}
