/**
 * Everything a sign-in needs, on loopback: the upstream provider, a CA and an
 * https host for client ID metadata documents (the SDKs accept only `https://`
 * client ids), Tessera (target/debug/tessera or $TESSERA_BIN, on SQLite) with
 * sign-in on, and the two example MCP servers (examples/mcp-python and
 * examples/mcp-typescript) protected by it. Flags and paths follow
 * docs/signin-contract.md.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttps } from 'node:https';
import { createServer as createNet } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { startProvider } from './provider.mjs';

export const HERE = import.meta.dirname;
export const REPO = resolve(HERE, '../..');

/** What the resources file offers each MCP server (the example servers' tools). */
export const SCOPES = ['tool:search', 'tool:admin'];

export async function freePort() {
  const server = createNet();
  await new Promise((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address();
  await new Promise((done) => server.close(done));
  return port;
}

/** Waits until `url` answers 200; fails as soon as `child` exits. */
async function ready(url, child, what, log) {
  let exited = false;
  const gone = new Promise((_, fail) =>
    child.once('exit', (code) => {
      exited = true;
      fail(new Error(`${what} exited with ${code}; see ${log}:\n${readFileSync(log, 'utf8').slice(-2000)}`));
    }));
  const up = (async () => {
    while (!exited && !(await fetch(url).then((r) => r.ok, () => false))) {
      await new Promise((wake) => setTimeout(wake, 100));
    }
  })();
  await Promise.race([up, gone]);
}

function launch(command, args, env, log, cwd = REPO) {
  const out = openSync(log, 'w');
  return spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', out, out] });
}

/** A CA and a certificate for 127.0.0.1 that it signed, made with the openssl CLI. */
function certificates(dir) {
  const openssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=tessera-e2e-ca',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  openssl('req', ...ec, '-keyout', 'host.key', '-out', 'host.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(join(dir, 'host.ext'), 'subjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n' +
    'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  openssl('x509', '-req', '-in', 'host.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'host.pem', '-days', '2', '-extfile', 'host.ext');
  return { ca: join(dir, 'ca.pem'), cert: readFileSync(join(dir, 'host.pem')), key: readFileSync(join(dir, 'host.key')) };
}

/**
 * The https host of client ID metadata documents: `documents` maps a path to a
 * function of the document's own URL returning the JSON to serve. Counts fetches.
 */
async function startCimdHost(tls, documents) {
  const fetches = {};
  const server = createHttps({ cert: tls.cert, key: tls.key }, (req, res) => {
    const path = new URL(req.url, 'https://127.0.0.1').pathname;
    const make = documents[path];
    fetches[path] = (fetches[path] ?? 0) + 1;
    if (!make) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'max-age=60' });
    res.end(JSON.stringify(make(`${base}${path}`)));
  });
  await new Promise((done) => server.listen(0, '127.0.0.1', done));
  const base = `https://127.0.0.1:${server.address().port}`;
  return { base, fetches, close: () => { server.closeAllConnections(); server.close(); } };
}

/** A public client's metadata document (the MCP authorization spec's example, for loopback). */
export const cimd = (name, redirectUri) => (url) => ({
  client_id: url,
  client_name: name,
  client_uri: 'https://example.test/',
  redirect_uris: [redirectUri],
  grant_types: ['authorization_code', 'refresh_token'],
  response_types: ['code'],
  token_endpoint_auth_method: 'none',
});

/**
 * Starts the world. `documents` are the CIMD host's documents (path -> maker);
 * `signin: false` starts Tessera without sign-in (as before issue 20);
 * `tesseraArgs` are extra flags for `tessera serve`; `name` prefixes the logs kept.
 */
export async function startWorld({ documents = {}, tesseraArgs = [], signin = true, name = 'signin' } = {}) {
  const binary = process.env.TESSERA_BIN ?? join(REPO, 'target/debug/tessera');
  const tmp = mkdtempSync(join(tmpdir(), 'tessera-signin-'));
  const artifacts = process.env.SIGNIN_ARTIFACTS ?? join(REPO, 'target/signin-e2e');
  mkdirSync(artifacts, { recursive: true });
  const stops = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s();
    rmSync(tmp, { recursive: true, force: true });
  };
  try {
    const tls = certificates(tmp);
    const cimdHost = await startCimdHost(tls, documents);
    stops.push(cimdHost.close);

    const [tesseraPort, pyPort, tsPort] = [await freePort(), await freePort(), await freePort()];
    const tessera = `http://127.0.0.1:${tesseraPort}`;
    const mcp = { python: `http://127.0.0.1:${pyPort}/mcp`, typescript: `http://127.0.0.1:${tsPort}/mcp` };

    const oidcClient = { clientId: 'tessera', clientSecret: `secret-${crypto.randomUUID()}` };
    const provider = await startProvider({ tesseraIssuer: tessera, ...oidcClient });
    stops.push(provider.close);
    writeFileSync(join(tmp, 'oidc-client-id'), `${oidcClient.clientId}\n`);
    writeFileSync(join(tmp, 'oidc-client-secret'), `${oidcClient.clientSecret}\n`);

    // The MCP servers are Tessera clients that introspect the tokens made for their resource.
    const clients = join(tmp, 'clients.toml');
    const keys = {};
    for (const [id, resource] of [['mcp-python', mcp.python], ['mcp-typescript', mcp.typescript]]) {
      const made = spawnSync(binary, ['client-key', id, 'validate', '--resource', resource], { encoding: 'utf8' });
      if (made.status !== 0) throw new Error(`tessera client-key: ${made.stderr}`);
      appendFileSync(clients, made.stdout);
      keys[id] = made.stderr.split(/\s+/).find((word) => word.startsWith('tsk_'));
    }
    const resources = join(tmp, 'resources.toml');
    writeFileSync(resources, [['Python knowledge base', mcp.python], ['TypeScript knowledge base', mcp.typescript]]
      .map(([name, uri]) => `[[resource]]\nuri = "${uri}"\nname = "${name}"\n` +
        `scopes = ${JSON.stringify(SCOPES)}\ndefault_scopes = ["tool:search"]\n`).join('\n'));

    const tesseraLog = join(artifacts, `${name}-tessera.log`);
    const signinFlags = !signin ? [] : ['--oidc-issuer', provider.issuer,
      '--oidc-client-id-file', join(tmp, 'oidc-client-id'), '--oidc-client-secret-file', join(tmp, 'oidc-client-secret'),
      '--signin-resources', resources, '--cimd-allow-private', '--cimd-ca-file', tls.ca];
    const child = launch(binary, ['serve', '--listen', `127.0.0.1:${tesseraPort}`, '--issuer', tessera,
      '--database-url', `sqlite://${join(tmp, 't.db')}`, '--clients', clients, ...signinFlags, ...tesseraArgs],
      {}, tesseraLog);
    stops.push(() => stopChild(child));
    await ready(`${tessera}/readyz`, child, 'tessera', tesseraLog);

    const python = join(REPO, 'examples/mcp-python/.venv/bin/python');
    const pyLog = join(artifacts, `${name}-mcp-python.log`);
    const py = launch(python, [join(REPO, 'examples/mcp-python/server.py'), '--port', String(pyPort)], {
      TESSERA_URL: tessera, TESSERA_CLIENT_ID: 'mcp-python', TESSERA_CLIENT_KEY: keys['mcp-python'],
    }, pyLog);
    stops.push(() => stopChild(py));
    const tsLog = join(artifacts, `${name}-mcp-typescript.log`);
    const ts = launch(process.execPath, ['--import', 'tsx', join(REPO, 'examples/mcp-typescript/server.ts')], {
      TESSERA_URL: tessera, TESSERA_CLIENT_ID: 'mcp-typescript', TESSERA_CLIENT_KEY: keys['mcp-typescript'],
      PORT: String(tsPort),
    }, tsLog, join(REPO, 'examples/mcp-typescript')); // where `tsx` and the SDK are installed
    stops.push(() => stopChild(ts));
    await ready(`http://127.0.0.1:${pyPort}/.well-known/oauth-protected-resource/mcp`, py, 'mcp-python', pyLog);
    await ready(`http://127.0.0.1:${tsPort}/.well-known/oauth-protected-resource/mcp`, ts, 'mcp-typescript', tsLog);

    return { tessera, provider, mcp, keys, cimdHost, artifacts, tesseraLog, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((done) => child.once('exit', done));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}
