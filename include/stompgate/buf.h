/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_BUF_H
#define STOMPGATE_BUF_H

#include <stddef.h>

/* A growable byte buffer. base is always NUL-terminated past len when
 * cap > 0, so text built in it can be used as a C string. */
typedef struct sg_buf {
  char *base;
  size_t len;
  size_t cap;
} sg_buf_t;

void sg_buf_init(sg_buf_t *b);
void sg_buf_free(sg_buf_t *b);
/* Ensures room for extra more bytes (plus the terminator). 0 or SG_ERR_NOMEM. */
int sg_buf_reserve(sg_buf_t *b, size_t extra);
/* Copies len bytes of data to the end. 0 or SG_ERR_NOMEM. */
int sg_buf_append(sg_buf_t *b, const void *data, size_t len);
int sg_buf_appendz(sg_buf_t *b, const char *s);
int sg_buf_printf(sg_buf_t *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Drops the first n bytes (n <= len). */
void sg_buf_consume(sg_buf_t *b, size_t n);
void sg_buf_reset(sg_buf_t *b);

#endif
