// SPDX-License-Identifier: MIT
// Runs every conformance case against one Web-STOMP endpoint.
//
//   node test/conformance/runner.mjs --url ws://127.0.0.1:15674/ws --amqp 5672
//   node test/conformance/runner.mjs --url tcp://127.0.0.1:61613 --amqp 5672
//        [--impl NAME] [--json FILE] [--tap] [--only REGEX]
//        [--max-tx-frames N] [--max-transactions N]
//
// A tcp:// URL runs the raw-frame cases over STOMP on TCP and skips the
// ones that need WebSocket. --tap prints TAP (for meson); otherwise one
// line per case. --json writes
// {impl, results: [{id, clause, ok, error, ms}]}. Exits 1 if a case failed.
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import cases from './cases.mjs';
import { Ctx, Skip } from './lib.mjs';

const { values: o } = parseArgs({
  options: {
    url: { type: 'string' }, amqp: { type: 'string' }, impl: { type: 'string', default: 'endpoint' },
    json: { type: 'string' }, tap: { type: 'boolean', default: false }, only: { type: 'string' },
    'max-tx-frames': { type: 'string' }, 'max-transactions': { type: 'string' },
    timeout: { type: 'string', default: '20000' },
  },
});
if (!o.url || !o.amqp) {
  console.error('usage: runner.mjs --url WS_URL --amqp PORT [--impl NAME] [--json FILE] [--tap]');
  process.exit(2);
}
const caps = {};
if (o['max-tx-frames']) caps.maxTxFrames = +o['max-tx-frames'];
if (o['max-transactions']) caps.maxTransactions = +o['max-transactions'];

// A case that leaves a promise rejected or a socket erroring must not take
// the runner down with it.
process.on('unhandledRejection', () => {});
process.on('uncaughtException', (e) => { if (!o.tap) console.error('uncaught:', e?.message); });

const selected = o.only ? cases.filter((c) => new RegExp(o.only).test(c.id)) : cases;
const results = [];
if (o.tap) console.log(`TAP version 13\n1..${selected.length}`);
let n = 0;
for (const c of selected) {
  n++;
  const ctx = new Ctx({ url: o.url, amqpPort: +o.amqp, impl: o.impl, caps });
  const t0 = Date.now();
  let error = null;
  let skip = null;
  let timer;
  try {
    await Promise.race([
      c.run(ctx),
      new Promise((_, rej) => { timer = setTimeout(() => rej(new Error('case timed out')), +o.timeout); }),
    ]);
  } catch (e) {
    if (e instanceof Skip) {
      skip = e.message;
    } else {
      error = (e?.message ?? String(e)).split('\n')[0];
      if (e?.code === 'ERR_ASSERTION' && e.generatedMessage) {
        error += ` actual ${JSON.stringify(e.actual)}, expected ${JSON.stringify(e.expected)}`;
      }
      error = error.slice(0, 300);
    }
  } finally {
    clearTimeout(timer);
    await ctx.cleanup();
  }
  const ms = Date.now() - t0;
  if (skip !== null) {
    results.push({ id: c.id, clause: c.clause, ok: true, skipped: skip, error: null, ms });
    if (o.tap) console.log(`ok ${n} - ${c.id} # SKIP ${skip}`);
    else console.log(`skip ${o.impl} ${c.id}: ${skip}`);
    continue;
  }
  results.push({ id: c.id, clause: c.clause, ok: error === null, error, ms });
  if (o.tap) {
    console.log(`${error ? 'not ok' : 'ok'} ${n} - ${c.id}`);
    if (error) console.log(`  ---\n  message: ${JSON.stringify(error)}\n  clause: ${JSON.stringify(c.clause)}\n  ...`);
  } else {
    console.log(`${error ? 'FAIL' : 'pass'} ${o.impl} ${c.id} (${ms} ms)${error ? ': ' + error : ''}`);
  }
}
if (o.json) writeFileSync(o.json, JSON.stringify({ impl: o.impl, results }, null, 1));
const failed = results.filter((r) => !r.ok).length;
const skipped = results.filter((r) => r.skipped).length;
if (!o.tap) console.log(`${o.impl}: ${results.length - failed - skipped}/${results.length - skipped} passed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed ? 1 : 0);
