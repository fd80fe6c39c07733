/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "stompgate/err.h"
#include "stompgate/pmdeflate.h"

static const sg_pmd_limits_t lim = {15, 10};

static int negotiate(const char *offer, sg_pmd_params_t *p) {
  return sg_pmd_negotiate(offer, strlen(offer), &lim, p);
}

static void expect(const char *offer, const char *response, int sbits, int cbits, int fresh) {
  sg_pmd_params_t p;
  if (response == NULL) {
    if (negotiate(offer, &p) != 0) fail_msg("accepted %s as %s", offer, p.response);
    return;
  }
  if (negotiate(offer, &p) != 1) fail_msg("declined %s", offer);
  assert_string_equal(p.response, response);
  assert_int_equal(p.server_window_bits, sbits);
  assert_int_equal(p.client_window_bits, cbits);
  assert_int_equal(p.client_no_context_takeover, fresh);
}

#define PMD "permessage-deflate; server_no_context_takeover"

static void plain_offers(void **state) {
  (void)state;
  expect("permessage-deflate", PMD, 15, 15, 0);
  /* What Chromium and Firefox send. */
  expect("permessage-deflate; client_max_window_bits", PMD "; client_max_window_bits=10", 15, 10,
         0);
  /* What ws sends with perMessageDeflate: true. */
  expect("permessage-deflate; client_max_window_bits", PMD "; client_max_window_bits=10", 15, 10,
         0);
  expect("PerMessage-Deflate", PMD, 15, 15, 0);
  expect("permessage-deflate ;\tserver_no_context_takeover ; client_no_context_takeover",
         PMD "; client_no_context_takeover", 15, 15, 1);
  expect("permessage-deflate; server_max_window_bits=12", PMD "; server_max_window_bits=12", 12,
         15, 0);
  expect("permessage-deflate; server_max_window_bits=\"11\"; client_max_window_bits=\"9\"",
         PMD "; server_max_window_bits=11; client_max_window_bits=9", 11, 9, 0);
  expect("permessage-deflate; client_max_window_bits=\"1\\2\"", PMD "; client_max_window_bits=10",
         15, 10, 0);
  expect("permessage-deflate; client_max_window_bits=15", PMD "; client_max_window_bits=10", 15,
         10, 0);
  /* 8 is answered as asked; inflating with 512 bytes is safe. */
  expect("permessage-deflate; client_max_window_bits=8", PMD "; client_max_window_bits=8", 15, 9,
         0);
}

static void declined_offers(void **state) {
  (void)state;
  expect("", NULL, 0, 0, 0);
  expect("x-webkit-deflate-frame", NULL, 0, 0, 0);
  expect("permessage-deflate; server_max_window_bits=8", NULL, 0, 0, 0);
  expect("permessage-deflate; server_max_window_bits", NULL, 0, 0, 0);
  expect("permessage-deflate; server_max_window_bits=16", NULL, 0, 0, 0);
  expect("permessage-deflate; server_max_window_bits=7", NULL, 0, 0, 0);
  expect("permessage-deflate; server_max_window_bits=010", NULL, 0, 0, 0);
  expect("permessage-deflate; server_max_window_bits=abc", NULL, 0, 0, 0);
  expect("permessage-deflate; server_max_window_bits=\"\"", NULL, 0, 0, 0);
  expect("permessage-deflate; client_max_window_bits=99999999999999999999", NULL, 0, 0, 0);
  expect("permessage-deflate; client_no_context_takeover=1", NULL, 0, 0, 0);
  expect("permessage-deflate; server_no_context_takeover; server_no_context_takeover", NULL, 0, 0,
         0);
  expect("permessage-deflate; client_max_window_bits; client_max_window_bits=9", NULL, 0, 0, 0);
  expect("permessage-deflate; mystery", NULL, 0, 0, 0);
  expect("permessage-deflate; mystery=1", NULL, 0, 0, 0);
  expect("permessage-deflate;", NULL, 0, 0, 0);
  expect("permessage-deflate; =1", NULL, 0, 0, 0);
  expect("permessage-deflate x", NULL, 0, 0, 0);
  expect("permessage-deflate; client_max_window_bits=\"10", NULL, 0, 0, 0);
}

/* Several offers: the first that can be honoured wins. */
static void several_offers(void **state) {
  (void)state;
  expect("permessage-deflate; server_max_window_bits=8, permessage-deflate", PMD, 15, 15, 0);
  expect("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits=12",
         PMD "; client_max_window_bits=10", 15, 10, 0);
  expect("permessage-deflate; mystery=\"a, b\", permessage-deflate; client_no_context_takeover",
         PMD "; client_no_context_takeover", 15, 15, 1);
  expect(",, permessage-deflate; server_max_window_bits=10,permessage-deflate",
         PMD "; server_max_window_bits=10", 10, 15, 0);
  expect("permessage-deflate; broken=\"x\\\", y\", permessage-deflate", PMD, 15, 15, 0);
  /* Both acceptable: the first. */
  expect("permessage-deflate; server_max_window_bits=9, permessage-deflate",
         PMD "; server_max_window_bits=9", 9, 15, 0);
}

static void smaller_limits(void **state) {
  (void)state;
  sg_pmd_limits_t small = {10, 9};
  sg_pmd_params_t p;
  assert_int_equal(sg_pmd_negotiate("permessage-deflate", 18, &small, &p), 1);
  assert_string_equal(p.response, PMD "; server_max_window_bits=10");
  assert_int_equal(p.server_window_bits, 10);
  const char *o = "permessage-deflate; server_max_window_bits=12; client_max_window_bits";
  assert_int_equal(sg_pmd_negotiate(o, strlen(o), &small, &p), 1);
  assert_string_equal(p.response, PMD "; server_max_window_bits=10; client_max_window_bits=9");
}

/* What a client's zlib inflater makes of a payload (the trailer added). */
static size_t client_inflate(const sg_buf_t *payload, int bits, unsigned char *out, size_t cap) {
  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  assert_int_equal(inflateInit2(&zs, -bits), Z_OK);
  unsigned char *in = malloc(payload->len + 4);
  memcpy(in, payload->base, payload->len);
  memcpy(in + payload->len, "\x00\x00\xff\xff", 4);
  zs.next_in = in;
  zs.avail_in = (uInt)payload->len + 4;
  zs.next_out = out;
  zs.avail_out = (uInt)cap;
  int r = inflate(&zs, Z_SYNC_FLUSH);
  assert_true(r == Z_OK || r == Z_BUF_ERROR);
  size_t n = cap - zs.avail_out;
  inflateEnd(&zs);
  free(in);
  return n;
}

static char *json_body(size_t n) {
  char *s = malloc(n + 1);
  size_t k = 0;
  for (int i = 0; k < n; i++)
    k += (size_t)snprintf(s + k, n + 1 - k, "{\"id\":%d,\"price\":%d.%02d,\"sym\":\"S%03d\"},",
                          i, i * 7 % 1000, i % 100, i % 37);
  return s;
}

static void round_trip_each_window(void **state) {
  (void)state;
  sg_pmd_encoder_t *e = sg_pmd_encoder_new(6, 0);
  sg_pmd_inflater_t *inf = sg_pmd_inflater_new(15);
  char *body = json_body(5000);
  static unsigned char back[8192];
  for (int bits = 9; bits <= 15; bits++) {
    sg_buf_t out, in;
    sg_buf_init(&out);
    sg_buf_init(&in);
    assert_int_equal(sg_pmd_encode(e, bits, body, 5000, &out), 0);
    assert_true(out.len < 2500);
    assert_int_equal(client_inflate(&out, bits, back, sizeof(back)), 5000);
    assert_memory_equal(back, body, 5000);
    assert_int_equal(sg_pmd_inflate(inf, out.base, out.len, 5000, 1, &in), 0);
    assert_int_equal(in.len, 5000);
    assert_memory_equal(in.base, body, 5000);
    sg_buf_free(&out);
    sg_buf_free(&in);
  }
  sg_buf_t out;
  sg_buf_init(&out);
  assert_int_equal(sg_pmd_encode(e, 8, body, 10, &out), SG_ERR_INVALID);
  assert_int_equal(sg_pmd_encode(e, 16, body, 10, &out), SG_ERR_INVALID);
  sg_buf_free(&out);
  assert_null(sg_pmd_inflater_new(8));
  free(body);
  sg_pmd_inflater_free(inf);
  sg_pmd_encoder_free(e);
}

/* Frames that share a long tail: it is compressed once, and each frame
 * still inflates, alone and from a fresh inflater, to itself. */
static void fan_out_shares_the_tail(void **state) {
  (void)state;
  sg_pmd_encoder_t *e = sg_pmd_encoder_new(6, 1024);
  char *body = json_body(4800);
  size_t whole = 0;
  static unsigned char back[8192];
  for (int i = 0; i < 50; i++) {
    char frame[6000];
    int h = snprintf(frame, sizeof(frame),
                     "MESSAGE\nsubscription:sub-%d\nmessage-id:T_sub-%d@@session-%d@@7\n"
                     "destination:/topic/prices\ncontent-type:application/json\n\n", i, i, i * 31);
    memcpy(frame + h, body, 4800);
    size_t n = (size_t)h + 4800;
    sg_buf_t out;
    sg_buf_init(&out);
    assert_int_equal(sg_pmd_encode(e, 15, frame, n, &out), 0);
    if (i == 0) whole = out.len;
    assert_int_equal(client_inflate(&out, 15, back, sizeof(back)), n);
    assert_memory_equal(back, frame, n);
    /* The shared form costs the head's own block: a few dozen bytes. */
    assert_true(out.len < whole + 96);
    sg_buf_free(&out);
  }
  sg_pmd_stats_t st;
  sg_pmd_encoder_stats(e, &st);
  assert_int_equal(st.messages, 50);
  assert_int_equal(st.shared, 49);
  /* A frame with another tail is compressed whole again. */
  sg_buf_t out;
  sg_buf_init(&out);
  body[4000] = '#';
  assert_int_equal(sg_pmd_encode(e, 15, body, 4800, &out), 0);
  sg_pmd_encoder_stats(e, &st);
  assert_int_equal(st.shared, 49);
  /* Another window size does not reuse a tail made for 15. */
  assert_int_equal(sg_pmd_encode(e, 10, body, 4800, &out), 0);
  sg_pmd_encoder_stats(e, &st);
  assert_int_equal(st.shared, 49);
  sg_buf_free(&out);
  free(body);
  sg_pmd_encoder_free(e);
}

/* A client that keeps its context across messages. */
static void client_context_takeover(void **state) {
  (void)state;
  z_stream zs;
  memset(&zs, 0, sizeof(zs));
  assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, -10, 8, Z_DEFAULT_STRATEGY), Z_OK);
  sg_pmd_inflater_t *inf = sg_pmd_inflater_new(10);
  const char *msg = "SEND\ndestination:/topic/a.b.c\ncontent-type:text/plain\n\nhello hello\n";
  size_t first = 0;
  for (int i = 0; i < 3; i++) {
    unsigned char c[512];
    zs.next_in = (Bytef *)(uintptr_t)msg;
    zs.avail_in = (uInt)strlen(msg) + 1;
    zs.next_out = c;
    zs.avail_out = sizeof(c);
    assert_int_equal(deflate(&zs, Z_SYNC_FLUSH), Z_OK);
    size_t n = sizeof(c) - zs.avail_out - 4;
    if (i == 0) first = n;
    else assert_true(n < first / 2); /* it does refer back */
    sg_buf_t in;
    sg_buf_init(&in);
    assert_int_equal(sg_pmd_inflate(inf, c, n, 4096, 0, &in), 0);
    assert_int_equal(in.len, strlen(msg) + 1);
    assert_memory_equal(in.base, msg, in.len);
    sg_buf_free(&in);
  }
  /* Its state is about 7 KB and a 1 KB window. */
  size_t mem = sg_pmd_inflater_memory(inf);
  print_message("# inflater, window 2^10, after use: %zu bytes\n", mem);
  assert_true(mem < (1u << 10) + 9000);
  deflateEnd(&zs);
  sg_pmd_inflater_free(inf);
}

static void bomb_stops_at_max(void **state) {
  (void)state;
  /* 64 MiB of zeros deflate to about 64 KB. */
  size_t big = 64u << 20;
  char *zeros = calloc(1, big);
  sg_pmd_encoder_t *e = sg_pmd_encoder_new(9, 0);
  sg_buf_t bomb, out;
  sg_buf_init(&bomb);
  sg_buf_init(&out);
  assert_int_equal(sg_pmd_encode(e, 15, zeros, big, &bomb), 0);
  assert_true(bomb.len < 100000);
  sg_pmd_inflater_t *inf = sg_pmd_inflater_new(15);
  size_t max = 1u << 20;
  assert_int_equal(sg_pmd_inflate(inf, bomb.base, bomb.len, max, 1, &out), SG_ERR_FRAME_TOO_LARGE);
  assert_true(out.len > max);
  /* The buffer doubles as it grows: never past twice the limit. */
  assert_true(out.cap <= 2 * (max + 16384 + 1));
  /* Exactly max is allowed; the inflater starts afresh. */
  sg_buf_reset(&bomb);
  sg_buf_reset(&out);
  assert_int_equal(sg_pmd_encode(e, 15, zeros, max, &bomb), 0);
  assert_int_equal(sg_pmd_inflate(inf, bomb.base, bomb.len, max, 1, &out), 0);
  assert_int_equal(out.len, max);
  sg_buf_free(&bomb);
  sg_buf_free(&out);
  sg_pmd_inflater_free(inf);
  sg_pmd_encoder_free(e);
  free(zeros);
}

static void not_deflate_data(void **state) {
  (void)state;
  sg_pmd_inflater_t *inf = sg_pmd_inflater_new(15);
  sg_buf_t out;
  sg_buf_init(&out);
  /* BTYPE 11 is reserved. */
  assert_int_equal(sg_pmd_inflate(inf, "\xff\xff\xff", 3, 4096, 1, &out), SG_ERR_INVALID);
  /* A stored block whose length and its complement disagree. */
  sg_buf_reset(&out);
  assert_int_equal(sg_pmd_inflate(inf, "\x00\x05\x00\x00\x00", 5, 4096, 1, &out), SG_ERR_INVALID);
  /* The empty message, as RFC 7692 section 7.2.3.6 writes it, and a
   * message with a final block. */
  sg_buf_reset(&out);
  assert_int_equal(sg_pmd_inflate(inf, "\x00", 1, 4096, 1, &out), 0);
  assert_int_equal(out.len, 0);
  sg_buf_reset(&out);
  assert_int_equal(sg_pmd_inflate(inf, "\xf2\x48\xcd\xc9\xc9\x07\x00", 7, 4096, 1, &out), 0);
  assert_int_equal(out.len, 5);
  assert_memory_equal(out.base, "Hello", 5);
  sg_buf_reset(&out);
  assert_int_equal(sg_pmd_inflate(inf, "\xf3\x48\xcd\xc9\xc9\x07\x00", 7, 4096, 0, &out), 0);
  assert_memory_equal(out.base, "Hello", 5);
  sg_buf_free(&out);
  sg_pmd_inflater_free(inf);
}

static void memory_figures(void **state) {
  (void)state;
  sg_pmd_inflater_t *inf = sg_pmd_inflater_new(15);
  size_t fresh = sg_pmd_inflater_memory(inf);
  print_message("# inflater before its first message: %zu bytes\n", fresh);
  assert_true(fresh < 8192);
  sg_pmd_inflater_free(inf);
  sg_pmd_encoder_t *e = sg_pmd_encoder_new(6, 1024);
  sg_buf_t out;
  sg_buf_init(&out);
  assert_int_equal(sg_pmd_encode(e, 15, "hello hello hello", 17, &out), 0);
  print_message("# encoder with a 2^15 window: %zu bytes\n", sg_pmd_encoder_memory(e));
  sg_buf_free(&out);
  sg_pmd_encoder_free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(plain_offers),          cmocka_unit_test(declined_offers),
      cmocka_unit_test(several_offers),        cmocka_unit_test(smaller_limits),
      cmocka_unit_test(round_trip_each_window), cmocka_unit_test(fan_out_shares_the_tail),
      cmocka_unit_test(client_context_takeover), cmocka_unit_test(bomb_stops_at_max),
      cmocka_unit_test(not_deflate_data),      cmocka_unit_test(memory_figures),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
