/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_DESTINATION_H
#define STOMPGATE_DESTINATION_H

/* STOMP destination strings <-> AMQP exchange / routing key / queue, with
 * the same forms and rules as RabbitMQ's STOMP plugin. No I/O. */

#include <stddef.h>
#include <stdint.h>
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

/* Queue arguments a SEND or SUBSCRIBE may carry as headers, with the names
 * and types RabbitMQ's STOMP plugin uses: x-message-ttl, x-expires,
 * x-max-length, x-max-length-bytes, x-max-priority are integers;
 * x-dead-letter-exchange, x-dead-letter-routing-key, x-queue-type,
 * x-max-age, x-overflow are strings. */
typedef enum sg_qarg_type { SG_QARG_NONE = 0, SG_QARG_INT, SG_QARG_STR } sg_qarg_type_t;
sg_qarg_type_t sg_dest_queue_arg_type(const char *name);

/* Parses a decimal integer (optional '-', digits only, fits int64).
 * 0 or SG_ERR_INVALID. */
int sg_dest_parse_int(const char *v, int64_t *out);

/* The x-stream-offset header: "first", "last", "next", "offset=N" or
 * "timestamp=T" (seconds since the epoch). */
typedef enum sg_stream_offset_kind {
  SG_STREAM_FIRST = 1, SG_STREAM_LAST, SG_STREAM_NEXT, SG_STREAM_OFFSET, SG_STREAM_TIMESTAMP
} sg_stream_offset_kind_t;
typedef struct sg_stream_offset {
  sg_stream_offset_kind_t kind;
  int64_t value; /* for SG_STREAM_OFFSET and SG_STREAM_TIMESTAMP */
} sg_stream_offset_t;
/* 0 or SG_ERR_INVALID (unknown form, negative offset). */
int sg_dest_parse_stream_offset(const char *v, sg_stream_offset_t *o);

/* The queue of a durable topic subscription with this id and no
 * x-queue-name: "stomp-subscription-" and 32 hex digits of SHA-256(id), so
 * every gateway instance finds the same queue for the same id. out must
 * hold SG_DEST_DURABLE_NAME_SIZE bytes. */
#define SG_DEST_DURABLE_NAME_SIZE 52
void sg_dest_durable_queue_name(const char *id, size_t id_len, char *out);

#endif
