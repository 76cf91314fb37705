/**
 * The upstream OpenID Connect provider: npm's `oidc-provider` (pinned in
 * package-lock.json), on loopback, with one test account and one client, Tessera.
 *
 * Its login page is our own (a few lines below) rather than the package's
 * `devInteractions`: that one accepts any password and its page loads a web
 * font from the internet, and the machine reaches no address but loopback.
 * Ours checks the account's password, so a wrong one is refused like at a
 * company's provider. The provider asks no consent of its own for Tessera (a
 * company's own application), so the only consent page in a flow is Tessera's.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, realpathSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

import { exportJWK, generateKeyPair } from 'jose';
import Provider from 'oidc-provider';

/** The test account: the `sub` Tessera's grants get as their subject. */
export const ACCOUNT = Object.freeze({
  login: 'alice',
  password: 'correct horse battery staple',
  sub: 'alice-0001',
  email: 'alice@example.test',
});

const page = (title, body) =>
  `<!doctype html><html><head><meta charset="utf-8"><title>${title}</title></head>` +
  `<body><h1>${title}</h1>${body}</body></html>`;

const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginForm(uid, error = '') {
  return page(
    'Example IdP: sign in',
    (error ? `<p id="login-error" role="alert">${escape(error)}</p>` : '') +
      `<form method="post" action="/interaction/${escape(uid)}/login" id="login">` +
      '<label>User <input id="username" name="login" autocomplete="username" required></label>' +
      '<label>Password <input id="password" name="password" type="password" required></label>' +
      '<button id="sign-in" type="submit">Sign in</button></form>',
  );
}

async function formBody(req, limit = 8192) {
  let body = '';
  for await (const chunk of req) {
    body += chunk;
    if (body.length > limit) throw new Error('form too large');
  }
  return new URLSearchParams(body);
}

/**
 * Starts the provider on 127.0.0.1 (`port`, or an ephemeral one) with a client for Tessera
 * whose redirect URI is `tessera`'s `/oauth2/callback` (the sign-in contract).
 * Returns its issuer and a `close()`.
 */
export async function startProvider({ tesseraIssuer, clientId, clientSecret, port = 0 }) {
  const http = createServer();
  await new Promise((done) => http.listen(port, '127.0.0.1', done));
  const issuer = `http://127.0.0.1:${http.address().port}`;

  // A fresh signing key per run: the provider's JWKS is what Tessera must verify against.
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const signing = { ...(await exportJWK(privateKey)), kid: `test-${Date.now()}`, alg: 'RS256', use: 'sig' };

  const provider = new Provider(issuer, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      redirect_uris: [`${tesseraIssuer}/oauth2/callback`],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    }],
    jwks: { keys: [signing] },
    cookies: { keys: [randomBytes(32).toString('hex')] },
    pkce: { required: () => true },
    // Short, explicit lifetimes: a test run is minutes long.
    ttl: { Interaction: 600, Session: 600, Grant: 600, AccessToken: 600, IdToken: 600, AuthorizationCode: 60 },
    claims: { openid: ['sub'], email: ['email'] },
    features: { devInteractions: { enabled: false } },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: (_ctx, sub) =>
      sub === ACCOUNT.sub ? { accountId: sub, claims: () => ({ sub, email: ACCOUNT.email }) } : undefined,
  });
  provider.on('server_error', (_ctx, error) => console.error('provider server_error:', error));

  const oidc = provider.callback();
  let rewrite = null;
  http.on('request', async (req, res) => {
    if (rewrite) {
      const set = res.setHeader.bind(res);
      res.setHeader = (name, value) => set(name, name.toLowerCase() === 'location' ? rewrite(value) : value);
    }
    const path = new URL(req.url, issuer).pathname;
    const match = /^\/interaction\/([\w-]+)(\/login)?$/.exec(path);
    if (!match) return oidc(req, res);
    try {
      const details = await provider.interactionDetails(req, res);
      if (match[2] && req.method === 'POST') {
        const form = await formBody(req);
        if (form.get('login') !== ACCOUNT.login || form.get('password') !== ACCOUNT.password) {
          res.writeHead(401, { 'content-type': 'text/html; charset=utf-8' });
          return res.end(loginForm(details.uid, 'Unknown user or wrong password.'));
        }
        return await provider.interactionFinished(req, res, { login: { accountId: ACCOUNT.sub } });
      }
      if (details.prompt.name === 'login') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        return res.end(loginForm(details.uid));
      }
      // consent: Tessera is the company's own application; grant what it asked.
      const grant = new provider.Grant({ accountId: details.session.accountId, clientId: details.params.client_id });
      if (details.prompt.details.missingOIDCScope) grant.addOIDCScope(details.prompt.details.missingOIDCScope.join(' '));
      if (details.prompt.details.missingOIDCClaims) grant.addOIDCClaims(details.prompt.details.missingOIDCClaims);
      return await provider.interactionFinished(req, res, { consent: { grantId: await grant.save() } });
    } catch (error) {
      res.writeHead(400, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page('Example IdP: error', `<p>${escape(error.message)}</p>`));
    }
  });

  return {
    issuer,
    /**
     * `fn(location)` rewrites every redirect the provider sends until it is set to null:
     * the negative tests' stand-in for an attacker who hands the browser a crafted URL.
     */
    rewriteRedirects: (fn) => { rewrite = fn; },
    close: () => new Promise((done) => { http.closeAllConnections(); http.close(done); }),
  };
}

/**
 * To try sign-in by hand (README, "Signing in from an MCP client"):
 *   node tests/signin/provider.mjs --tessera http://127.0.0.1:50051 [--port 9000]
 * starts the provider and prints the flags that point Tessera at it.
 */
if (process.argv[1] && realpathSync(process.argv[1]) === import.meta.filename) {
  const { values } = parseArgs({ options: { tessera: { type: 'string' }, port: { type: 'string', default: '9000' } } });
  if (!values.tessera) throw new Error('--tessera <Tessera issuer URL> is required');
  const dir = mkdtempSync(join(tmpdir(), 'tessera-idp-'));
  const client = { clientId: 'tessera', clientSecret: randomBytes(24).toString('base64url') };
  writeFileSync(join(dir, 'client-id'), `${client.clientId}\n`);
  writeFileSync(join(dir, 'client-secret'), `${client.clientSecret}\n`, { mode: 0o600 });
  const { issuer } = await startProvider({ tesseraIssuer: values.tessera, port: Number(values.port), ...client });
  console.log(`provider at ${issuer}; sign in as ${ACCOUNT.login} / ${ACCOUNT.password}`);
  console.log(`tessera serve --issuer ${values.tessera} --oidc-issuer ${issuer} ` +
    `--oidc-client-id-file ${dir}/client-id --oidc-client-secret-file ${dir}/client-secret ...`);
}
