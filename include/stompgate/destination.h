/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_DESTINATION_H
#define STOMPGATE_DESTINATION_H

/* STOMP destination strings <-> AMQP exchange / routing key / queue, with
 * the same forms and rules as RabbitMQ's STOMP plugin. No I/O. */

#include <stddef.h>
#include "stompgate/buf.h"

typedef enum sg_dest_kind {
  SG_DEST_EXCHANGE = 1, /* /exchange/X[/K]: name = X, key = K ("" if absent) */
  SG_DEST_QUEUE,        /* /queue/N: name = N */
  SG_DEST_AMQ_QUEUE,    /* /amq/queue/N: name = N */
  SG_DEST_TOPIC,        /* /topic/K: name = K (exchange amq.topic) */
  SG_DEST_TEMP_QUEUE,   /* /temp-queue/T: name = T */
  SG_DEST_REPLY_QUEUE,  /* /reply-queue/Q: name = Q (may contain '/') */
} sg_dest_kind_t;

typedef struct sg_dest {
  sg_dest_kind_t kind;
  char *name; /* NUL-terminated, %2F already turned into '/' */
  size_t name_len;
  char *key;  /* NUL-terminated, never NULL after a successful parse */
  size_t key_len;
} sg_dest_t;

/* Parses s[0..len). On success fills *d (owns its strings; release with
 * sg_dest_free) and returns 0. Returns SG_ERR_BAD_DESTINATION for an
 * unknown prefix or a malformed name (empty, or an extra '/' segment where
 * the form allows none), SG_ERR_NOMEM on allocation failure; *d is then
 * left empty and need not be freed. */
int sg_dest_parse(const char *s, size_t len, sg_dest_t *d);
void sg_dest_free(sg_dest_t *d);

/* Where a SEND to d is published: exchange and routing key (borrowed from d
 * or static). For SG_DEST_TEMP_QUEUE the caller substitutes the real queue,
 * so this returns SG_ERR_BAD_DESTINATION for it. */
int sg_dest_publish_target(const sg_dest_t *d, const char **exchange,
                           const char **routing_key);

/* Appends the destination header value for a message delivered from
 * exchange with routing key: "" -> /queue/RK, amq.topic -> /topic/RK,
 * X with empty RK -> /exchange/X, else /exchange/X/RK. '/' and '%' and bytes
 * outside 0x20..0x7f are written as %XX (upper-case hex), as RabbitMQ does.
 * Returns 0 or SG_ERR_NOMEM. */
int sg_dest_format(sg_buf_t *out, const char *exchange, size_t exchange_len,
                   const char *routing_key, size_t routing_key_len);

#endif
