// SPDX-License-Identifier: MIT
// Runs last: no gateway of the fault cases wrote a sanitizer report.
import '../e2e/zz-sanitizers.test.mjs';
