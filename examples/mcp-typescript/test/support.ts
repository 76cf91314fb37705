/**
 * Fixtures: a Tessera (target/debug/tessera, or $TESSERA_BIN) on SQLite with an
 * `orchestrator` (mint, revoke) and the MCP server's own client `mcp-server`
 * (validate; its resource is the server's URL), the example server as a child
 * process, and Mint and Revoke over gRPC with stubs loaded from the repository's proto.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

const HERE = resolve(import.meta.dirname, '..');
const REPO = resolve(HERE, '../..');

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  await new Promise((done) => server.close(done));
  return port;
}

/** Waits until `url` answers 200; fails as soon as `child` exits. */
async function ready(url: string, child: ChildProcess, what: string, log: string) {
  let exited = false;
  const gone = new Promise<never>((_, fail) =>
    child.once('exit', (code) => {
      exited = true;
      fail(new Error(`${what} exited with ${code}; see ${log}`));
    }),
  );
  const up = (async () => {
    while (!exited && !(await fetch(url).then((r) => r.ok, () => false))) {
      await new Promise((wake) => setTimeout(wake, 100));
    }
  })();
  await Promise.race([up, gone]);
}

function launch(command: string, args: string[], env: NodeJS.ProcessEnv, log: string): ChildProcess {
  const out = openSync(log, 'w');
  return spawn(command, args, { env: { ...process.env, ...env }, stdio: ['ignore', out, out] });
}

export interface World {
  tessera: string;
  /** The example server's URL: its endpoint and its resource URI. */
  mcp: URL;
  authority: Authority;
  keys: Record<string, string>;
  stop(): void;
}

export async function start(): Promise<World> {
  const binary = process.env.TESSERA_BIN ?? join(REPO, 'target/debug/tessera');
  const tmp = mkdtempSync(join(tmpdir(), 'tessera-mcp-ts-'));
  const [tesseraPort, mcpPort] = [await freePort(), await freePort()];
  const mcp = new URL(`http://127.0.0.1:${mcpPort}/mcp`);
  const clients = join(tmp, 'clients.toml');
  const keys: Record<string, string> = {};
  for (const [client, ...args] of [
    ['orchestrator', 'mint', 'revoke'],
    ['mcp-server', 'validate', '--resource', mcp.href],
  ]) {
    const made = spawnSync(binary, ['client-key', client, ...args], { encoding: 'utf8' });
    if (made.status !== 0) throw new Error(`tessera client-key: ${made.stderr}`);
    appendFileSync(clients, made.stdout);
    keys[client] = made.stderr.split(/\s+/).find((word) => word.startsWith('tsk_'))!;
  }
  const tessera = `http://127.0.0.1:${tesseraPort}`;
  const tesseraLog = join(tmp, 'tessera.log');
  const children = [
    launch(binary, ['serve', '--listen', `127.0.0.1:${tesseraPort}`, '--database-url',
      `sqlite://${join(tmp, 't.db')}`, '--clients', clients], {}, tesseraLog),
  ];
  const stop = () => {
    children.forEach((child) => child.kill());
    rmSync(tmp, { recursive: true, force: true });
  };
  try {
    await ready(`${tessera}/readyz`, children[0], 'tessera', tesseraLog);
    const serverLog = join(tmp, 'server.log');
    children.push(launch(process.execPath, ['--import', 'tsx', join(HERE, 'server.ts')], {
      TESSERA_URL: tessera, TESSERA_CLIENT_ID: 'mcp-server', TESSERA_CLIENT_KEY: keys['mcp-server'],
      PORT: String(mcpPort),
    }, serverLog));
    await ready(`http://127.0.0.1:${mcpPort}/.well-known/oauth-protected-resource/mcp`, children[1], 'server.ts', serverLog);
  } catch (error) {
    stop();
    throw error;
  }
  const authority = new Authority(`127.0.0.1:${tesseraPort}`, keys.orchestrator, mcp.href);
  return { tessera, mcp, authority, keys, stop: () => { authority.close(); stop(); } };
}

type Call = (request: object, metadata: grpc.Metadata, done: (err: Error | null, reply: any) => void) => void;

/** Mint and Revoke as the orchestrator. */
export class Authority {
  readonly #stub: grpc.Client & Record<string, Call>;
  readonly #metadata = new grpc.Metadata();

  constructor(address: string, key: string, readonly resource: string) {
    const definition = protoLoader.loadSync(join(REPO, 'proto/tessera/v1/authority.proto'), {
      includeDirs: [join(REPO, 'proto')],
      defaults: true,
    });
    const tessera = grpc.loadPackageDefinition(definition).tessera as any;
    this.#stub = new tessera.v1.TokenAuthority(address, grpc.credentials.createInsecure());
    this.#metadata.set('authorization', `Bearer ${key}`);
  }

  #call(method: string, request: object): Promise<any> {
    return new Promise((done, fail) =>
      this.#stub[method](request, this.#metadata, (err, reply) => (err ? fail(err) : done(reply))),
    );
  }

  /** A token for this server's resource URI unless `audience` says otherwise. */
  async mint(scopes: string[], runId: string, { audience = [this.resource], ttl = 300 } = {}): Promise<string> {
    const request = { subject: 'user-42', audience, runId, scopes, ttl: { seconds: ttl } };
    return (await this.#call('Mint', request)).token;
  }

  async revoke(target: { token?: string; runId?: string }, reason = 'REVOKE_REASON_MANUAL'): Promise<number> {
    return Number((await this.#call('Revoke', { ...target, reason })).revoked);
  }

  close() {
    this.#stub.close();
  }
}
