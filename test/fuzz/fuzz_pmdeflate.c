/* SPDX-License-Identifier: MIT */
/* permessage-deflate: the offer parser on any header value, the inflater on
 * any payload (it must stop at its limit), and the encoder's output, tail
 * sharing included, inflating back to its input. */
#include <string.h>

#include "fuzz.h"
#include "stompgate/err.h"
#include "stompgate/pmdeflate.h"

#define MAX 65536

static void check_negotiation(const uint8_t *data, size_t size) {
  static const sg_pmd_limits_t lims[] = {{15, 10}, {9, 9}, {12, 15}};
  for (size_t i = 0; i < sizeof(lims) / sizeof(lims[0]); i++) {
    sg_pmd_params_t p;
    int r = sg_pmd_negotiate((const char *)data, size, &lims[i], &p);
    FZ_CHECK(r == 0 || r == 1);
    if (r == 0) continue;
    FZ_CHECK(strncmp(p.response, "permessage-deflate; server_no_context_takeover", 46) == 0);
    FZ_CHECK(p.server_window_bits >= 9 && p.server_window_bits <= lims[i].server_max_window_bits);
    FZ_CHECK(p.client_window_bits >= 9 && p.client_window_bits <= 15);
    FZ_CHECK(strlen(p.response) < SG_PMD_RESPONSE_MAX);
    /* The answer, read as an offer, is acceptable and answered the same. */
    sg_pmd_params_t q;
    FZ_CHECK(sg_pmd_negotiate(p.response, strlen(p.response), &lims[i], &q) == 1);
    FZ_CHECK(q.server_window_bits == p.server_window_bits);
  }
}

static void check_inflate(const uint8_t *data, size_t size) {
  sg_pmd_inflater_t *inf = sg_pmd_inflater_new(9 + (int)(size % 7));
  FZ_CHECK(inf != NULL);
  sg_buf_t out;
  sg_buf_init(&out);
  int r = sg_pmd_inflate(inf, data, size, MAX, 1, &out);
  FZ_CHECK(r == 0 || r == SG_ERR_INVALID || r == SG_ERR_FRAME_TOO_LARGE);
  FZ_CHECK(r == SG_ERR_FRAME_TOO_LARGE ? out.len > MAX : out.len <= MAX);
  FZ_CHECK(out.cap <= 2 * (MAX + 16384 + 1));
  sg_buf_free(&out);
  sg_pmd_inflater_free(inf);
}

static void round_trip(sg_pmd_encoder_t *e, sg_pmd_inflater_t *inf, int bits, const void *m,
                       size_t n) {
  sg_buf_t c, back;
  sg_buf_init(&c);
  sg_buf_init(&back);
  FZ_CHECK(sg_pmd_encode(e, bits, m, n, &c) == 0);
  FZ_CHECK(sg_pmd_inflate(inf, c.base, c.len, n, 1, &back) == 0);
  FZ_CHECK(back.len == n && (n == 0 || memcmp(back.base, m, n) == 0));
  sg_buf_free(&c);
  sg_buf_free(&back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  check_negotiation(data, size);
  check_inflate(data, size);
  if (size == 0) return 0;
  /* Three frames: two heads cut from the input before one shared tail. */
  int bits = 9 + data[0] % 7;
  sg_pmd_encoder_t *e = sg_pmd_encoder_new(1 + data[0] % 9, 16);
  sg_pmd_inflater_t *inf = sg_pmd_inflater_new(bits);
  FZ_CHECK(e != NULL && inf != NULL);
  size_t cut = size / 3;
  uint8_t *frame = malloc(size + 1);
  round_trip(e, inf, bits, data, size);
  for (int k = 0; k < 3; k++) {
    memcpy(frame, data, size);
    if (cut > 0) frame[k % cut] ^= (uint8_t)(k + 1);
    round_trip(e, inf, bits, frame, size);
  }
  free(frame);
  sg_pmd_inflater_free(inf);
  sg_pmd_encoder_free(e);
  return 0;
}
