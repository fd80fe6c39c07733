/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_APP_DEST_H
#define STOMPGATE_APP_DEST_H

/* Application destinations (Spring's "/app" flow): a SEND to PREFIX/a/b is
 * handed to back-end services by publishing it to the application exchange
 * with routing key "a.b"; their replies come back through AMQP reply_to and
 * are matched to the request by correlation id. No I/O. */

#include <stddef.h>
#include <stdint.h>

#include "stompgate/buf.h"

/* Returns the index of the first prefix that dst falls under (dst equals
 * the prefix or continues it with '/'), or -1. A prefix given with a
 * trailing '/' matches the same way as without it. */
int sg_app_match(const char *const *prefixes, size_t nprefixes, const char *dst);

/* Appends the routing key for dst, which falls under prefix: the rest of the
 * path with each '/' turned into '.', and "%2F" kept as a literal '/'
 * inside a segment. Returns 0, SG_ERR_BAD_DESTINATION when the rest is
 * empty, has an empty segment or is longer than 255 bytes, or
 * SG_ERR_NOMEM. */
int sg_app_routing_key(sg_buf_t *out, const char *prefix, const char *dst);

/* The last requests a session sent to application destinations, so that a
 * reply can be given the destination its request went to. A fixed ring:
 * the oldest request is forgotten once cap newer ones were sent. */
typedef struct sg_app_corr {
  char **ids;          /* correlation ids, owned */
  char **dests;        /* the /app destinations, owned */
  size_t cap, next, len;
} sg_app_corr_t;

/* 0 or SG_ERR_NOMEM. */
int sg_app_corr_init(sg_app_corr_t *c, size_t cap);
void sg_app_corr_free(sg_app_corr_t *c);
/* Remembers (id, dest), copying both. 0 or SG_ERR_NOMEM. */
int sg_app_corr_add(sg_app_corr_t *c, const char *id, const char *dest);
/* The destination of the newest request with correlation id id[0..len), or
 * NULL. Borrowed until the next add or free. */
const char *sg_app_corr_find(const sg_app_corr_t *c, const char *id, size_t len);

#endif
