// SPDX-License-Identifier: MIT
// Headless Chromium (Debian's package) for the browser cases, driven by
// playwright-core; cases skip themselves when it is not installed.
import fs from 'node:fs';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.SG_CHROMIUM ?? '/usr/bin/chromium';
export const skip = fs.existsSync(CHROMIUM) ? false : `no browser at ${CHROMIUM} (tools/install-deps.sh installs it)`;

// extraArgs are added to the flags every case runs with.
export function launchChromium(extraArgs = []) {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', ...extraArgs],
  });
}
