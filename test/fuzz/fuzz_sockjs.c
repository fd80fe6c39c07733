/* SPDX-License-Identifier: MIT */
/* The SockJS core on arbitrary input: the client-frame decoder, the
 * chunked-body decoder and the router must not crash, and what the
 * encoder writes must decode back to the same bytes. */
#include <string.h>

#include "fuzz.h"
#include "stompgate/err.h"
#include "stompgate/sockjs.h"
#include "stompgate/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  sg_buf_t a, b;
  sg_buf_init(&a);
  sg_buf_init(&b);

  /* Whatever decodes re-encodes to an array that decodes the same. */
  int n = sg_sockjs_decode(in, size, &a);
  FZ_CHECK(n >= 0 || n == SG_ERR_INVALID);
  if (n >= 0) {
    size_t off = 0, m;
    const char *p;
    int count = 0;
    sg_buf_append(&b, "[", 1);
    while (sg_sockjs_next(&a, &off, &p, &m)) {
      if (count++) sg_buf_append(&b, ",", 1);
      FZ_CHECK(sg_sockjs_quote(&b, p, m) == 0);
    }
    FZ_CHECK(count == n);
    sg_buf_append(&b, "]", 1);
    sg_buf_t c;
    sg_buf_init(&c);
    FZ_CHECK(sg_sockjs_decode(b.base, b.len, &c) == n);
    /* Messages that are UTF-8 come back byte for byte. */
    off = 0;
    size_t off2 = 0, m2;
    const char *p2;
    while (sg_sockjs_next(&a, &off, &p, &m)) {
      FZ_CHECK(sg_sockjs_next(&c, &off2, &p2, &m2));
      if (sg_utf8_valid(p, m)) FZ_CHECK(m == m2 && memcmp(p, p2, m) == 0);
    }
    sg_buf_free(&c);
  }

  /* Any bytes quoted are valid JSON for the decoder; UTF-8 comes back. */
  sg_buf_reset(&b);
  sg_buf_append(&b, "[", 1);
  FZ_CHECK(sg_sockjs_quote(&b, in, size) == 0);
  sg_buf_append(&b, "]", 1);
  sg_buf_reset(&a);
  FZ_CHECK(sg_sockjs_decode(b.base, b.len, &a) == 1);
  if (sg_utf8_valid(data, size)) {
    size_t off = 0, m;
    const char *p;
    FZ_CHECK(sg_sockjs_next(&a, &off, &p, &m) && m == size && memcmp(p, in, size) == 0);
  }

  sg_buf_reset(&a);
  long used = sg_sockjs_dechunk(in, size, 1u << 20, &a);
  FZ_CHECK(used == SG_ERR_AGAIN || used == SG_ERR_INVALID || used == SG_ERR_FRAME_TOO_LARGE ||
           (used >= 0 && (size_t)used <= size && a.len <= size));

  sg_sockjs_route_t rt;
  sg_sockjs_route("/stomp", in, size, &rt);
  if (rt.kind == SG_SOCKJS_SESSION) {
    FZ_CHECK(rt.session.len >= 1 && rt.session.len <= SG_SOCKJS_ID_MAX);
    FZ_CHECK(memchr(rt.session.p, '/', rt.session.len) == NULL);
  }
  sg_buf_free(&a);
  sg_buf_free(&b);
  return 0;
}
