/* SPDX-License-Identifier: MIT */
#include "stompgate/utf8.h"

#include <stdint.h>
#include <string.h>

int sg_utf8_valid(const void *data, size_t len) {
  const uint8_t *s = data, *end = s + len;
  while (s < end) {
    /* ASCII runs are the common case: take them eight bytes at a time. */
    while (end - s >= 8) {
      uint64_t w;
      memcpy(&w, s, 8);
      if (w & 0x8080808080808080ull) break;
      s += 8;
    }
    if (s >= end) break;
    uint8_t c = *s;
    if (c < 0x80) {
      s++;
      continue;
    }
    size_t n;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) n = 1, cp = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) n = 2, cp = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) n = 3, cp = c & 0x07, min = 0x10000;
    else return 0;
    if ((size_t)(end - s) <= n) return 0;
    for (size_t i = 1; i <= n; i++) {
      if ((s[i] & 0xc0) != 0x80) return 0;
      cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    s += n + 1;
  }
  return 1;
}
