/* SPDX-License-Identifier: MIT */
#ifndef SG_ADMIN_H
#define SG_ADMIN_H

/* The admin HTTP endpoint, on its own listener so it can stay private:
 *   GET /healthz  200 "ok" while the process runs its loop;
 *   GET /readyz   200 when the broker probe succeeds and the gateway is
 *                 not draining, else 503 with the reason;
 *   GET /metrics  Prometheus text format.
 * One request per connection (Connection: close); HEAD is answered too. */

#include <uv.h>

#include "config.h"

/* Binds cfg->admin_host:admin_port. 0 or a libuv error. */
int sg_admin_start(uv_loop_t *loop, const sg_config_t *cfg);
/* Stops accepting; requests in progress finish. */
void sg_admin_stop(void);

#endif
