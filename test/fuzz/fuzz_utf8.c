/* SPDX-License-Identifier: MIT */
/* sg_utf8_valid (which takes ASCII eight bytes at a time) against a plain
 * decoder written from the RFC 3629 table of well-formed sequences. */
#include <string.h>

#include "fuzz.h"
#include "stompgate/utf8.h"

/* RFC 3629 section 4, one sequence at a time. */
static int reference_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t c = s[i];
    uint8_t lo = 0x80, hi = 0xbf;
    size_t more;
    if (c <= 0x7f) more = 0;
    else if (c >= 0xc2 && c <= 0xdf) more = 1;
    else if (c == 0xe0) more = 2, lo = 0xa0;
    else if (c >= 0xe1 && c <= 0xec) more = 2;
    else if (c == 0xed) more = 2, hi = 0x9f;
    else if (c >= 0xee && c <= 0xef) more = 2;
    else if (c == 0xf0) more = 3, lo = 0x90;
    else if (c >= 0xf1 && c <= 0xf3) more = 3;
    else if (c == 0xf4) more = 3, hi = 0x8f;
    else return 0;
    if (n - i - 1 < more) return 0;
    for (size_t k = 1; k <= more; k++) {
      uint8_t t = s[i + k];
      /* Only the second byte has the narrowed range. */
      uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xbf;
      if (t < l || t > h) return 0;
    }
    i += more + 1;
  }
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  FZ_CHECK(sg_utf8_valid(data, size) == reference_valid(data, size));
  /* Every suffix start exercises other alignments of the 8-byte loop. */
  for (size_t off = 1; off < 8 && off < size; off++)
    FZ_CHECK(sg_utf8_valid(data + off, size - off) == reference_valid(data + off, size - off));
  /* Prefixes cut sequences short. */
  for (size_t cut = 1; cut < 4 && cut < size; cut++)
    FZ_CHECK(sg_utf8_valid(data, size - cut) == reference_valid(data, size - cut));
  return 0;
}
