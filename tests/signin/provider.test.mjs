/**
 * The harness's own footing, without Tessera: the provider's login page in
 * Chromium, then the code flow Tessera runs against it (PKCE, nonce, the ID
 * token verified against the provider's JWKS). When a sign-in through Tessera
 * fails, this says whether the provider and the browser work at all.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';

import { createRemoteJWKSet, jwtVerify } from 'jose';

import { openBrowser } from './browser.mjs';
import { ACCOUNT, startProvider } from './provider.mjs';

let provider, browser, callback, relyingParty;
const client = { clientId: 'tessera', clientSecret: randomBytes(16).toString('hex') };

before(async () => {
  // A stand-in for Tessera's /oauth2/callback: it only answers, the test reads the URL.
  callback = createServer((_req, res) => res.end('callback'));
  await new Promise((done) => callback.listen(0, '127.0.0.1', done));
  relyingParty = `http://127.0.0.1:${callback.address().port}`;
  provider = await startProvider({ tesseraIssuer: relyingParty, ...client });
  browser = await openBrowser();
});

after(async () => {
  await browser?.close();
  await provider?.close();
  callback?.close();
});

const b64url = (bytes) => Buffer.from(bytes).toString('base64url');

async function authorize(account) {
  const discovery = await (await fetch(`${provider.issuer}/.well-known/openid-configuration`)).json();
  const verifier = b64url(randomBytes(32));
  const [state, nonce] = [b64url(randomBytes(16)), b64url(randomBytes(16))];
  const url = new URL(discovery.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code', client_id: client.clientId, redirect_uri: `${relyingParty}/oauth2/callback`,
    scope: 'openid', state, nonce, code_challenge_method: 'S256',
    code_challenge: b64url(createHash('sha256').update(verifier).digest()),
  }).toString();
  const seen = await browser.signIn(url.href, { account, arrived: (u) => u.origin === relyingParty });
  return { discovery, seen, verifier, state, nonce };
}

test('the test account signs in at the provider, and the ID token verifies against its JWKS', async () => {
  const { discovery, seen, verifier, state, nonce } = await authorize(ACCOUNT);
  assert.equal(seen.loginPages, 1);
  assert.equal(seen.finalUrl.pathname, '/oauth2/callback');
  assert.equal(seen.finalUrl.searchParams.get('state'), state);
  const tokens = await fetch(discovery.token_endpoint, {
    method: 'POST',
    headers: { authorization: 'Basic ' + Buffer.from(`${client.clientId}:${client.clientSecret}`).toString('base64') },
    body: new URLSearchParams({
      grant_type: 'authorization_code', code: seen.finalUrl.searchParams.get('code'),
      redirect_uri: `${relyingParty}/oauth2/callback`, code_verifier: verifier,
    }),
  });
  assert.equal(tokens.status, 200, await tokens.clone().text());
  const { id_token } = await tokens.json();
  const { payload } = await jwtVerify(id_token, createRemoteJWKSet(new URL(discovery.jwks_uri)), {
    issuer: provider.issuer, audience: client.clientId,
  });
  assert.equal(payload.sub, ACCOUNT.sub);
  assert.equal(payload.nonce, nonce);
  assert.deepEqual(browser.offLoopback, []);
});

test('a wrong password is refused at the provider and nothing reaches the callback', async () => {
  const { seen } = await authorize({ ...ACCOUNT, password: 'wrong' });
  assert.equal(seen.finalUrl.origin, provider.issuer);
  assert.equal(seen.status, 401);
  assert.match(seen.text, /wrong password/);
});
