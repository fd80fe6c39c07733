/* SPDX-License-Identifier: MIT */
#include "stompgate/utf8.h"

#include <stdint.h>
#include <string.h>

size_t sg_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp) {
  uint8_t c = s[0];
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t need;
  uint32_t v, min;
  if (c >= 0xc2 && c <= 0xdf) need = 2, v = c & 0x1f, min = 0x80;
  else if (c >= 0xe0 && c <= 0xef) need = 3, v = c & 0x0f, min = 0x800;
  else if (c >= 0xf0 && c <= 0xf4) need = 4, v = c & 0x07, min = 0x10000;
  else return 0;
  if (n < need) return 0;
  for (size_t i = 1; i < need; i++) {
    if ((s[i] & 0xc0) != 0x80) return 0;
    v = (v << 6) | (s[i] & 0x3f);
  }
  if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
  *cp = v;
  return need;
}

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
    uint32_t cp;
    size_t n = sg_utf8_decode(s, (size_t)(end - s), &cp);
    if (n == 0) return 0;
    s += n;
  }
  return 1;
}
