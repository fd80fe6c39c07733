/* SPDX-License-Identifier: MIT */
#include "stompgate/user_dest.h"

#include <string.h>

#include "stompgate/err.h"

/* A routing key longer than this is refused by AMQP (a short string). */
#define MAX_KEY 255

int sg_user_dest_is(const char *dst) {
  return strncmp(dst, SG_USER_PREFIX, sizeof(SG_USER_PREFIX) - 1) == 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Appends s[0..n) with %XX decoded (when decode) and then every byte
 * outside [A-Za-z0-9_-] written as %XX. */
static int append_word(sg_buf_t *b, const char *s, size_t n, int decode) {
  static const char hex[] = "0123456789ABCDEF";
  if (n == 0) return SG_ERR_BAD_DESTINATION;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (decode && c == '%') {
      int h, l;
      if (i + 2 >= n || (h = hexval(s[i + 1])) < 0 || (l = hexval(s[i + 2])) < 0)
        return SG_ERR_BAD_DESTINATION;
      c = (unsigned char)(h * 16 + l);
      i += 2;
    }
    int plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '-';
    char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
    if (sg_buf_append(b, plain ? (const char *)&c : esc, plain ? 1 : 3) != 0) return SG_ERR_NOMEM;
  }
  return 0;
}

static int finish(sg_buf_t *key, size_t start, int r) {
  if (r == 0 && key->len - start > MAX_KEY) r = SG_ERR_BAD_DESTINATION;
  if (r != 0) {
    key->len = start;
    if (key->base) key->base[start] = '\0';
  }
  return r;
}

static int build(sg_buf_t *key, const char *user, size_t ulen, int udecode, const char *q,
                 size_t qlen) {
  size_t start = key->len;
  int r = sg_buf_appendz(key, "user.");
  if (r == 0) r = append_word(key, user, ulen, udecode);
  if (r == 0) r = sg_buf_append(key, ".", 1);
  if (r == 0) r = append_word(key, q, qlen, 1);
  return finish(key, start, r);
}

int sg_user_dest_subscribe_key(sg_buf_t *key, const char *user, const char *dst) {
  static const char form[] = SG_USER_PREFIX "queue/";
  if (strncmp(dst, form, sizeof(form) - 1) != 0) return SG_ERR_BAD_DESTINATION;
  const char *x = dst + sizeof(form) - 1;
  return build(key, user, strlen(user), 0, x, strlen(x));
}

int sg_user_dest_send_key(sg_buf_t *key, const char *dst) {
  if (!sg_user_dest_is(dst)) return SG_ERR_BAD_DESTINATION;
  const char *u = dst + sizeof(SG_USER_PREFIX) - 1;
  const char *slash = strchr(u, '/');
  if (slash == NULL || strncmp(slash, "/queue/", 7) != 0) return SG_ERR_BAD_DESTINATION;
  const char *x = slash + 7;
  return build(key, u, (size_t)(slash - u), 1, x, strlen(x));
}
