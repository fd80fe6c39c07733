/* SPDX-License-Identifier: MIT */
#ifndef SG_POOL_H
#define SG_POOL_H

/* Shared relay mode, per worker: a small pool of AMQP connections under the
 * gateway's own credentials that sessions open channels on, and the check
 * of CONNECT credentials against RabbitMQ (a login with them, remembered
 * for a short while). Used from the worker's loop thread only. */

#include <stdint.h>
#include <uv.h>

#include "broker.h"
#include "config.h"

#define SG_POOL_MAX_CONNS 64

typedef struct sg_pool {
  uv_loop_t *loop;
  const sg_config_t *cfg;
  char *vhost;              /* the connections' virtual host (owned) */
  int worker;
  sg_amqp_conn_t *conns[SG_POOL_MAX_CONNS];
  size_t nconns;
  uint64_t conns_opened;
  sg_amqp_t *waiting;       /* channels waiting for a connection to open */
  sg_amqp_t *waiting_consumers;
  unsigned closing : 1;
} sg_pool_t;

/* A pool for vhost (NULL: --broker's). 0 or a negative error. */
int sg_pool_init(sg_pool_t *p, uv_loop_t *loop, const sg_config_t *cfg, int worker,
                 const char *vhost);
/* Closes every connection; their channels are told they are lost. */
void sg_pool_close(sg_pool_t *p);

/* Opens a channel for a on the least loaded open connection, starting a new
 * connection when all are full or none is open. cbs->on_open_cb reports the
 * result, possibly before this returns. 0 or a negative error. */
int sg_pool_open_channel(sg_pool_t *p, sg_amqp_t *a, const sg_amqp_cbs_t *cbs);
/* The same for a channel that only consumes (the fan-out's): it goes on a
 * connection of its own that never publishes, so a broker resource alarm,
 * which blocks publishing connections, never stalls deliveries. */
int sg_pool_open_consumer_channel(sg_pool_t *p, sg_amqp_t *a, const sg_amqp_cbs_t *cbs);

/* A pending credential check. The owner may drop interest with
 * sg_auth_cancel before done_cb runs; done_cb never runs after that. */
typedef struct sg_auth_req sg_auth_req_t;
typedef void (*sg_auth_cb)(void *owner, int status, const char *message);

/* Checks user/password on vhost against the broker: status 0 when a login
 * with them succeeds, else the broker's refusal (403, 530) or another
 * failure. Remembered for --auth-cache-ttl; done_cb may run before this
 * returns when the answer is remembered (then *req is NULL). Copies its
 * arguments. 0 or SG_ERR_NOMEM. */
int sg_auth_check(sg_pool_t *p, const char *user, const char *password, const char *vhost,
                  sg_auth_cb done_cb, void *owner, sg_auth_req_t **req);
void sg_auth_cancel(sg_auth_req_t *req);

#endif
