/* SPDX-License-Identifier: MIT */
#include "stompgate/history.h"

#include <stdlib.h>
#include <string.h>

#include "stompgate/err.h"
#include "stompgate/topic_match.h"

int sg_history_retention_valid(const char *s, size_t n) {
  if (n < 2 || n > 20) return 0;
  size_t digits = 0;
  while (digits < n - 1 && s[digits] >= '0' && s[digits] <= '9') digits++;
  if (digits != n - 1 || s[0] == '0') return 0;
  return strchr("YMDhms", s[n - 1]) != NULL && s[n - 1] != '\0';
}

int sg_history_parse(const char *spec, sg_history_t *h, const char **why) {
  memset(h, 0, sizeof(*h));
  size_t len = strlen(spec), plen = len;
  const char *ret = SG_HISTORY_RETENTION_DEFAULT;
  size_t rlen = strlen(ret);
  const char *colon = strrchr(spec, ':');
  if (colon && sg_history_retention_valid(colon + 1, strlen(colon + 1))) {
    plen = (size_t)(colon - spec);
    ret = colon + 1;
    rlen = strlen(ret);
  } else if (colon && colon[1] != '\0' && strchr(colon + 1, '.') == NULL) {
    *why = "a retention such as 30m, 1h, 7D (units Y, M, D, h, m, s)";
    return SG_ERR_INVALID;
  }
  if (plen == 0 || plen > SG_HISTORY_PATTERN_MAX) {
    *why = "a topic pattern of 1 to 237 bytes, such as chat.#";
    return SG_ERR_INVALID;
  }
  h->pattern = strndup(spec, plen);
  h->retention = strndup(ret, rlen);
  h->queue = malloc(sizeof(SG_HISTORY_QUEUE_PREFIX) + plen);
  if (h->pattern == NULL || h->retention == NULL || h->queue == NULL) {
    sg_history_free(h);
    *why = "out of memory";
    return SG_ERR_NOMEM;
  }
  memcpy(h->queue, SG_HISTORY_QUEUE_PREFIX, sizeof(SG_HISTORY_QUEUE_PREFIX) - 1);
  memcpy(h->queue + sizeof(SG_HISTORY_QUEUE_PREFIX) - 1, spec, plen);
  h->queue[sizeof(SG_HISTORY_QUEUE_PREFIX) - 1 + plen] = '\0';
  return 0;
}

void sg_history_free(sg_history_t *h) {
  free(h->pattern);
  free(h->retention);
  free(h->queue);
  memset(h, 0, sizeof(*h));
}

const sg_history_t *sg_history_find(const sg_history_t *v, size_t n, const char *key) {
  size_t kl = strlen(key);
  for (size_t i = 0; i < n; i++)
    if (sg_topic_covers(v[i].pattern, strlen(v[i].pattern), key, kl)) return &v[i];
  return NULL;
}
