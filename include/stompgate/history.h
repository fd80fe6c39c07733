/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_HISTORY_H
#define STOMPGATE_HISTORY_H

/* Topics with history (--history PATTERN[:RETENTION]): a RabbitMQ stream
 * bound to amq.topic with PATTERN keeps every message published under it
 * for RETENTION, so a subscription can be resumed from a stream offset
 * after a reconnect. No I/O: parsing, naming and which pattern covers a
 * subscription's key. */

#include <stddef.h>
#include <stdint.h>

/* The stream of a pattern is this prefix followed by the pattern. */
#define SG_HISTORY_QUEUE_PREFIX "stompgate.history."
/* A pattern's stream name must fit AMQP's short string. */
#define SG_HISTORY_PATTERN_MAX (255 - (sizeof(SG_HISTORY_QUEUE_PREFIX) - 1))
/* At most this many patterns. */
#define SG_HISTORY_MAX 64
/* Retention when the setting names none. */
#define SG_HISTORY_RETENTION_DEFAULT "1D"

typedef struct sg_history {
  char *pattern;   /* topic binding key on amq.topic, e.g. "chat.#" */
  char *retention; /* RabbitMQ's x-max-age, e.g. "1h" */
  char *queue;     /* SG_HISTORY_QUEUE_PREFIX + pattern */
} sg_history_t;

/* 1 when s[0..n) is a retention RabbitMQ takes as x-max-age: a positive
 * number followed by one unit of Y, M, D, h, m or s. */
int sg_history_retention_valid(const char *s, size_t n);

/* Parses "PATTERN[:RETENTION]". The last ':' splits off a retention only
 * when what follows it is one (topic keys may hold ':'). 0, or
 * SG_ERR_INVALID with *why saying what is wrong, or SG_ERR_NOMEM. */
int sg_history_parse(const char *spec, sg_history_t *h, const char **why);
void sg_history_free(sg_history_t *h);

/* The first of v[0..n) whose pattern covers the topic binding key key
 * (every routing key key matches, its pattern matches too), or NULL. */
const sg_history_t *sg_history_find(const sg_history_t *v, size_t n, const char *key);

#endif
