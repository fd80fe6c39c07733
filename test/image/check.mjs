// SPDX-License-Identifier: MIT
// Used by build.sh: a STOMP round trip and the admin endpoint against a
// gateway started from the image. Exits non-zero on failure.
import assert from 'node:assert/strict';
import { connected, subscribe, receipt, waitFor, uniq } from '../e2e/lib/harness.mjs';
import { httpGet } from '../e2e/lib/ops.mjs';

const [url, adminPort] = process.argv.slice(2);
const c = await connected(url);
const q = `/queue/${uniq('image')}`;
const msgs = await subscribe(c, q);
const rid = uniq('r');
c.publish({ destination: q, body: 'from the image', headers: { receipt: rid } });
await receipt(c, rid);
await waitFor(() => msgs.length === 1);
assert.equal(msgs[0].body, 'from the image');
await c.deactivate();
assert.equal((await httpGet(+adminPort, '/healthz')).status, 200);
await waitFor(() => true);
let ready;
for (let i = 0; i < 50; i++) {
  ready = await httpGet(+adminPort, '/readyz');
  if (ready.status === 200) break;
  await new Promise((r) => setTimeout(r, 100));
}
assert.equal(ready.status, 200, ready.body);
console.log('round trip and readiness ok');
process.exit(0);
