/* SPDX-License-Identifier: MIT */
#include "stompgate/app_dest.h"

#include <stdlib.h>
#include <string.h>

#include "stompgate/err.h"

#define APP_KEY_MAX 255

/* Length of prefix without a trailing '/'. */
static size_t prefix_len(const char *p) {
  size_t n = strlen(p);
  while (n > 1 && p[n - 1] == '/') n--;
  return n;
}

int sg_app_match(const char *const *prefixes, size_t nprefixes, const char *dst) {
  for (size_t i = 0; i < nprefixes; i++) {
    size_t n = prefix_len(prefixes[i]);
    if (n == 0 || strncmp(dst, prefixes[i], n) != 0) continue;
    if (dst[n] == '\0' || dst[n] == '/') return (int)i;
  }
  return -1;
}

int sg_app_routing_key(sg_buf_t *out, const char *prefix, const char *dst) {
  size_t n = prefix_len(prefix);
  const char *p = dst + n;
  if (*p != '/') return SG_ERR_BAD_DESTINATION;
  p++;
  size_t start = out->len, seg = 0;
  for (; *p; p++) {
    char ch = *p;
    if (ch == '/') {
      if (seg == 0) goto bad; /* "a//b" or a leading '/' */
      ch = '.';
      seg = 0;
    } else if (ch == '%' && p[1] == '2' && (p[2] == 'F' || p[2] == 'f')) {
      ch = '/';
      p += 2;
      seg++;
    } else {
      seg++;
    }
    if (sg_buf_append(out, &ch, 1) != 0) return SG_ERR_NOMEM;
  }
  if (seg == 0 || out->len - start > APP_KEY_MAX) goto bad; /* empty or a trailing '/' */
  return 0;
bad:
  out->len = start;
  if (out->base) out->base[start] = '\0';
  return SG_ERR_BAD_DESTINATION;
}

int sg_app_corr_init(sg_app_corr_t *c, size_t cap) {
  memset(c, 0, sizeof(*c));
  c->ids = calloc(cap, sizeof(*c->ids));
  c->dests = calloc(cap, sizeof(*c->dests));
  if (c->ids == NULL || c->dests == NULL) {
    sg_app_corr_free(c);
    return SG_ERR_NOMEM;
  }
  c->cap = cap;
  return 0;
}

void sg_app_corr_free(sg_app_corr_t *c) {
  for (size_t i = 0; i < c->cap; i++) {
    free(c->ids[i]);
    free(c->dests[i]);
  }
  free(c->ids);
  free(c->dests);
  memset(c, 0, sizeof(*c));
}

int sg_app_corr_add(sg_app_corr_t *c, const char *id, const char *dest) {
  char *i = strdup(id), *d = strdup(dest);
  if (i == NULL || d == NULL) {
    free(i);
    free(d);
    return SG_ERR_NOMEM;
  }
  free(c->ids[c->next]);
  free(c->dests[c->next]);
  c->ids[c->next] = i;
  c->dests[c->next] = d;
  c->next = (c->next + 1) % c->cap;
  if (c->len < c->cap) c->len++;
  return 0;
}

const char *sg_app_corr_find(const sg_app_corr_t *c, const char *id, size_t len) {
  /* Newest first, so a reused id maps to its latest request. */
  for (size_t k = 1; k <= c->len; k++) {
    size_t i = (c->next + c->cap - k) % c->cap;
    if (strlen(c->ids[i]) == len && memcmp(c->ids[i], id, len) == 0) return c->dests[i];
  }
  return NULL;
}
