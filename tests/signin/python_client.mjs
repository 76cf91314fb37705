/**
 * python_client.py as a child process, for the tests: its redirect handler's
 * authorization URL goes to `person` (the browser), its `visited` lines are
 * collected, its last line is the outcome.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

import { HERE, REPO } from './world.mjs';

export async function pythonClient({ mcp, callbackPort, clientMetadataUrl, name, person }) {
  const args = [join(HERE, 'python_client.py'), '--mcp', mcp, '--callback-port', String(callbackPort), '--name', name];
  if (clientMetadataUrl) args.push('--client-metadata-url', clientMetadataUrl);
  const child = spawn(join(REPO, 'examples/mcp-python/.venv/bin/python'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (chunk) => { stderr += chunk; });
  const exited = new Promise((done) => child.once('exit', (code) => done(code)));
  const outcome = { seen: null, authorizationUrl: null, last: null, visited: [] };
  for await (const line of createInterface({ input: child.stdout })) {
    const message = JSON.parse(line);
    if (message.authorize) {
      outcome.authorizationUrl = new URL(message.authorize);
      outcome.seen = await person(message.authorize);
      if (!outcome.seen.arrived) child.kill(); // it would wait for its callback forever
    } else if (message.visited) {
      outcome.visited.push(message.visited);
    } else {
      outcome.last = message;
    }
  }
  outcome.code = await exited;
  outcome.stderr = stderr;
  return outcome;
}
