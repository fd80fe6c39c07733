/* SPDX-License-Identifier: MIT */
#include "stompgate/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stompgate/err.h"

void sg_buf_init(sg_buf_t *b) { b->base = NULL, b->len = 0, b->cap = 0; }

void sg_buf_free(sg_buf_t *b) {
  free(b->base);
  sg_buf_init(b);
}

void sg_buf_reset(sg_buf_t *b) {
  b->len = 0;
  if (b->base) b->base[0] = '\0';
}

int sg_buf_reserve(sg_buf_t *b, size_t extra) {
  if (b->cap > b->len + extra) return 0;
  size_t need = b->len + extra + 1;
  size_t cap = b->cap ? b->cap : 64;
  while (cap < need) {
    if (cap > ((size_t)-1) / 2) return SG_ERR_NOMEM;
    cap *= 2;
  }
  char *n = realloc(b->base, cap);
  if (n == NULL) return SG_ERR_NOMEM;
  b->base = n;
  b->cap = cap;
  return 0;
}

int sg_buf_append(sg_buf_t *b, const void *data, size_t len) {
  if (sg_buf_reserve(b, len) != 0) return SG_ERR_NOMEM;
  if (len) memcpy(b->base + b->len, data, len);
  b->len += len;
  b->base[b->len] = '\0';
  return 0;
}

int sg_buf_appendz(sg_buf_t *b, const char *s) { return sg_buf_append(b, s, strlen(s)); }

int sg_buf_printf(sg_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || sg_buf_reserve(b, (size_t)n) != 0) return SG_ERR_NOMEM;
  va_start(ap, fmt);
  vsnprintf(b->base + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

void sg_buf_consume(sg_buf_t *b, size_t n) {
  if (n >= b->len) {
    sg_buf_reset(b);
    return;
  }
  memmove(b->base, b->base + n, b->len - n);
  b->len -= n;
  b->base[b->len] = '\0';
}
