/* SPDX-License-Identifier: MIT */
/* The STOMP stream framer on arbitrary bytes in arbitrary pieces, against
 * the parser. Input layout: bytes 0..3 seed the piece sizes, the rest is
 * the stream. Checks:
 *   - every scan consumes at least one byte and no more than offered, and
 *     stops only at a frame end or the end of the piece;
 *   - the ends are the same whether the stream comes in one piece or in
 *     random small pieces;
 *   - until the parser refuses the stream, each frame the parser completes
 *     ends exactly where the framer says one ends, and the framer finds no
 *     end the parser does not. */
#include <string.h>

#include "fuzz.h"
#include "stompgate/stomp_codec.h"
#include "stompgate/stomp_stream.h"

#define MAX_ENDS 256

static uint32_t rng_next(uint32_t *s) {
  uint32_t x = *s ? *s : 0x9e3779b9u;
  x ^= x << 13, x ^= x >> 17, x ^= x << 5;
  return *s = x;
}

/* The framer's ends, in pieces of at most maxpiece bytes (0: one piece). */
static size_t framer_ends(const uint8_t *data, size_t len, uint32_t seed, size_t maxpiece,
                          size_t *ends) {
  sg_stomp_stream_t st;
  sg_stomp_stream_init(&st);
  size_t off = 0, k = 0;
  while (off < len && k < MAX_ENDS) {
    size_t piece = len - off;
    if (maxpiece && piece > 1) {
      size_t r = 1 + rng_next(&seed) % maxpiece;
      if (r < piece) piece = r;
    }
    /* An exact-size copy of the piece, so reads past it are caught. */
    char *chunk = malloc(piece);
    FZ_CHECK(chunk != NULL);
    memcpy(chunk, data + off, piece);
    size_t pos = 0;
    while (pos < piece && k < MAX_ENDS) {
      int end = -1;
      size_t used = sg_stomp_stream_scan(&st, chunk + pos, piece - pos, &end);
      FZ_CHECK(used > 0 && used <= piece - pos);
      FZ_CHECK(end == 0 || end == 1);
      pos += used;
      if (end) ends[k++] = off + pos;
      else FZ_CHECK(pos == piece);
    }
    free(chunk);
    off += piece;
  }
  return k;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  uint32_t seed;
  memcpy(&seed, data, 4);
  const uint8_t *s = data + 4;
  size_t n = size - 4;

  static size_t whole[MAX_ENDS], pieces[MAX_ENDS];
  size_t kw = framer_ends(s, n, seed, 0, whole);
  size_t kp = framer_ends(s, n, seed, 1 + (seed >> 24) % 16, pieces);
  FZ_CHECK(kw == kp);
  FZ_CHECK(memcmp(whole, pieces, kw * sizeof(size_t)) == 0);

  /* Limits so wide that only malformed input stops the parser. */
  sg_stomp_limits_t lim = {1u << 30, 1u << 20, 1u << 30};
  sg_stomp_parser_t p;
  sg_stomp_parser_init(&p, &lim);
  size_t off = 0, k = 0;
  int failed = 0;
  while (off < n && k < MAX_ENDS) {
    size_t used = 0;
    sg_stomp_frame_t *f = NULL;
    int r = sg_stomp_parser_execute(&p, (const char *)s + off, n - off, &used, &f);
    if (r < 0) {
      failed = 1;
      break;
    }
    off += used;
    if (r == 0) break;
    sg_stomp_frame_free(f);
    FZ_CHECK(k < kw && off == whole[k]);
    k++;
  }
  /* A parser that took the whole input without error found every end the
   * framer found. */
  if (!failed && kw < MAX_ENDS) FZ_CHECK(k == kw);
  sg_stomp_parser_free(&p);
  return 0;
}
