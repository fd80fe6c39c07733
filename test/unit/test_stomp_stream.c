/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "stompgate/stomp_codec.h"
#include "stompgate/stomp_stream.h"

#define MAX_ENDS 32

/* Feeds s[0..n) in pieces of step bytes; records the offset just past
 * each frame end. Returns the number of ends. */
static size_t ends_of(const char *s, size_t n, size_t step, size_t *ends) {
  sg_stomp_stream_t st;
  sg_stomp_stream_init(&st);
  size_t off = 0, k = 0;
  while (off < n) {
    size_t piece = n - off < step ? n - off : step, pos = 0;
    while (pos < piece) {
      int end = 0;
      size_t used = sg_stomp_stream_scan(&st, s + off + pos, piece - pos, &end);
      assert_true(used > 0 && used <= piece - pos);
      pos += used;
      if (end) {
        assert_true(k < MAX_ENDS);
        ends[k++] = off + pos;
      } else {
        assert_int_equal(pos, piece);
      }
    }
    off += piece;
  }
  assert_int_equal(st.frames, k);
  return k;
}

/* The ends the parser finds, for comparison. */
static size_t parser_ends(const char *s, size_t n, size_t *ends) {
  sg_stomp_limits_t lim = {1 << 20, 64, 4096};
  sg_stomp_parser_t p;
  sg_stomp_parser_init(&p, &lim);
  size_t off = 0, k = 0;
  while (off < n) {
    size_t used = 0;
    sg_stomp_frame_t *f = NULL;
    int r = sg_stomp_parser_execute(&p, s + off, n - off, &used, &f);
    assert_true(r >= 0);
    off += used;
    if (r == 1) {
      sg_stomp_frame_free(f);
      ends[k++] = off;
    } else if (used == 0) {
      break;
    }
  }
  sg_stomp_parser_free(&p);
  return k;
}

/* Every split gives the same ends, and they are the parser's. */
static void check(const char *s, size_t n, size_t want) {
  size_t whole[MAX_ENDS], pieces[MAX_ENDS], parsed[MAX_ENDS];
  size_t k = ends_of(s, n, n ? n : 1, whole);
  assert_int_equal(k, want);
  for (size_t step = 1; step <= 9; step++) {
    assert_int_equal(ends_of(s, n, step, pieces), k);
    assert_memory_equal(whole, pieces, k * sizeof(size_t));
  }
  assert_int_equal(parser_ends(s, n, parsed), k);
  assert_memory_equal(whole, parsed, k * sizeof(size_t));
}

#define CHECK(lit, want) check(lit, sizeof(lit) - 1, want)

static void one_frame(void **state) {
  (void)state;
  size_t e[MAX_ENDS];
  static const char f[] = "SEND\ndestination:/queue/a\n\nhello\0";
  assert_int_equal(ends_of(f, sizeof(f) - 1, 64, e), 1);
  assert_int_equal(e[0], sizeof(f) - 1);
  CHECK("SEND\ndestination:/queue/a\n\nhello\0", 1);
}

static void several_in_one_read(void **state) {
  (void)state;
  CHECK("CONNECT\naccept-version:1.2\n\n\0SUBSCRIBE\nid:1\ndestination:/topic/x\n\n\0"
        "SEND\ndestination:/topic/x\n\nbody\0DISCONNECT\nreceipt:r\n\n\0",
        4);
}

static void heartbeats_between(void **state) {
  (void)state;
  CHECK("\n\r\n\nSEND\ndestination:/q\n\nx\0\n\n\r\nSEND\ndestination:/q\n\ny\0\n", 2);
  /* EOLs alone end no frame; they go with the frame after them. */
  CHECK("\n\n\r\n\n", 0);
  size_t e[MAX_ENDS];
  static const char f[] = "\n\nSEND\n\n\0";
  assert_int_equal(ends_of(f, sizeof(f) - 1, 100, e), 1);
  assert_int_equal(e[0], sizeof(f) - 1);
}

static void content_length_body(void **state) {
  (void)state;
  /* NULs inside a body framed by content-length. */
  static const char f[] = "SEND\ndestination:/q\ncontent-length:5\n\na\0b\0c\0SEND\n\nz\0";
  check(f, sizeof(f) - 1, 2);
  /* content-length after other headers, with CRLF lines. */
  static const char g[] = "SEND\r\nx-a:1\r\ncontent-length:3\r\n\r\n\0\0\0\0";
  check(g, sizeof(g) - 1, 1);
  /* An empty body by length. */
  CHECK("SEND\ncontent-length:0\n\n\0", 1);
  /* Only the first content-length counts. */
  static const char h[] = "SEND\ncontent-length:2\ncontent-length:9\n\nab\0";
  check(h, sizeof(h) - 1, 1);
}

static void not_content_length(void **state) {
  (void)state;
  /* Other case, a prefix of the name, the name in a value or on the
   * command line: the body ends at the NUL. */
  CHECK("SEND\nContent-Length:9\n\nab\0", 1);
  CHECK("SEND\nx-content-length:9\n\nab\0", 1);
  CHECK("SEND\nx:content-length:9\n\nab\0", 1);
  CHECK("content-length:9\n\nab\0", 1);
  /* content-length text in a body is body. */
  CHECK("SEND\n\ncontent-length:9\n\n\0", 1);
}

static void partial_frame(void **state) {
  (void)state;
  size_t e[MAX_ENDS];
  static const char f[] = "SEND\ndestination:/q\ncontent-length:10\n\nabc";
  assert_int_equal(ends_of(f, sizeof(f) - 1, 4, e), 0);
  static const char g[] = "SEND\ndestination:/q\n\nno NUL yet";
  assert_int_equal(ends_of(g, sizeof(g) - 1, 3, e), 0);
}

static void stops_at_each_end(void **state) {
  (void)state;
  sg_stomp_stream_t st;
  sg_stomp_stream_init(&st);
  static const char f[] = "A\n\n\0B\n\n\0\nC\n\n";
  int end = 0;
  size_t n = sg_stomp_stream_scan(&st, f, sizeof(f) - 1, &end);
  assert_int_equal(n, 4);
  assert_int_equal(end, 1);
  n = sg_stomp_stream_scan(&st, f + 4, sizeof(f) - 1 - 4, &end);
  assert_int_equal(n, 4);
  assert_int_equal(end, 1);
  n = sg_stomp_stream_scan(&st, f + 8, sizeof(f) - 1 - 8, &end);
  assert_int_equal(n, sizeof(f) - 1 - 8);
  assert_int_equal(end, 0);
  assert_int_equal(st.frames, 2);
}

static void huge_content_length(void **state) {
  (void)state;
  /* Nineteen digits still frame (the parser refuses such a frame by its
   * size); the framer keeps counting without overflow. */
  sg_stomp_stream_t st;
  sg_stomp_stream_init(&st);
  static const char f[] = "SEND\ncontent-length:9999999999999999999\n\nabc";
  int end = 1;
  assert_int_equal(sg_stomp_stream_scan(&st, f, sizeof(f) - 1, &end), sizeof(f) - 1);
  assert_int_equal(end, 0);
  /* Twenty digits are not a length: the NUL ends the body. */
  sg_stomp_stream_init(&st);
  static const char g[] = "SEND\ncontent-length:99999999999999999999\n\nab\0";
  assert_int_equal(sg_stomp_stream_scan(&st, g, sizeof(g) - 1, &end), sizeof(g) - 1);
  assert_int_equal(end, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(one_frame),
      cmocka_unit_test(several_in_one_read),
      cmocka_unit_test(heartbeats_between),
      cmocka_unit_test(content_length_body),
      cmocka_unit_test(not_content_length),
      cmocka_unit_test(partial_frame),
      cmocka_unit_test(stops_at_each_end),
      cmocka_unit_test(huge_content_length),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
