/* SPDX-License-Identifier: MIT */
#ifndef SG_ADMISSION_H
#define SG_ADMISSION_H

/* Whether a parsed WebSocket upgrade request may become a session: the
 * shutdown state, the session cap, the new-session rates (per client
 * address and for the process) and the allowed Origins, checked before
 * the 101 so a refusal is a plain HTTP answer a load balancer or browser
 * understands. */

#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "stompgate/http_upgrade.h"

typedef struct sg_admit_refusal {
  int status;         /* HTTP status */
  const char *reason; /* static text */
  const char *extra;  /* static extra header lines, CRLF-ended, or NULL */
} sg_admit_refusal_t;

/* Returns 0 to accept, or 1 with *out set to the refusal. peer is the
 * client's "address:port" (the one a trusted proxy forwarded), for the
 * per-address rate, or NULL; open is the number of sessions already
 * upgraded; now_ms a monotonic clock. A request that passes takes one
 * token from the address's bucket and one from the process's. */
int sg_admit(const sg_config_t *cfg, const sg_http_request_t *req, const char *peer, size_t open,
             uint64_t now_ms, sg_admit_refusal_t *out);

/* Set once shutdown begins: every later upgrade gets 503. */
void sg_admit_set_draining(int draining);
int sg_admit_draining(void);

#endif
