/* SPDX-License-Identifier: MIT */
#ifndef SG_LISTENER_H
#define SG_LISTENER_H

#include <uv.h>

#include "config.h"

typedef struct sg_listener {
  uv_tcp_t tcp;
  const sg_config_t *cfg;
  int open;
} sg_listener_t;

/* Binds and listens on cfg's address; accepted sockets become sessions.
 * 0 or a libuv error. */
int sg_listener_start(sg_listener_t *l, uv_loop_t *loop, const sg_config_t *cfg);
void sg_listener_close(sg_listener_t *l);

#endif
