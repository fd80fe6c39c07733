// SPDX-License-Identifier: MIT
// Runs last: in a sanitizer build, every gateway the other cases started
// wrote its AddressSanitizer, LeakSanitizer and UBSan reports under
// SG_SAN_DIR; any report at all fails the suite.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

const sanitize = process.env.SG_SANITIZE ?? 'none';
const dir = process.env.SG_SAN_DIR;

test('no sanitizer reports from any gateway run', { skip: sanitize === 'none' || !dir ? 'not a sanitizer build' : false }, () => {
  const reports = fs.readdirSync(dir).map((f) => {
    const text = fs.readFileSync(path.join(dir, f), 'utf8');
    return `${f}:\n${text.slice(0, 4000)}`;
  });
  assert.deepEqual(reports, [], reports.join('\n'));
});
