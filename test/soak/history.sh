#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# History soak (see history.mjs), through run.sh: a private RabbitMQ, the
# driver for each relay mode in turn, and everything stopped by PID.
#   HISTORY_SOAK_SECONDS=30 (publishing time per mode)
#   HISTORY_SOAK_MODES=per-session,shared   HISTORY_SOAK_RATE=200 (messages/s)
#   HISTORY_SOAK_CLIENTS=8   HISTORY_SOAK_SEGMENT_SIZE=4096
#   HISTORY_SOAK_PLANT=gap|dup (a fault planted in one client's count: the
#   run must then fail)
exec "$(dirname "$0")/run.sh" test/soak/history.mjs
