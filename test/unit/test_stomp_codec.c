/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "stompgate/err.h"
#include "stompgate/stomp_codec.h"

static const sg_stomp_limits_t lim = {65536, 32, 1024};

/* Feeds all of s (n bytes) in pieces of step; returns the first result
 * that is not 0 and the frame through *f. */
static int feed(sg_stomp_parser_t *p, const char *s, size_t n, size_t step, sg_stomp_frame_t **f,
                size_t *used) {
  size_t off = 0;
  *f = NULL;
  while (off < n) {
    size_t take = n - off < step ? n - off : step, c = 0;
    int r = sg_stomp_parser_execute(p, s + off, take, &c, f);
    off += c;
    if (r != 0) {
      if (used) *used = off;
      return r;
    }
  }
  if (used) *used = off;
  return 0;
}

static void simple_send(void **state) {
  (void)state;
  static const char in[] = "SEND\ndestination:/queue/a\nfoo:bar\n\nhello\0";
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  size_t used;
  sg_stomp_parser_init(&p, &lim);
  assert_int_equal(feed(&p, in, sizeof(in) - 1, 1000, &f, &used), 1);
  assert_int_equal(used, sizeof(in) - 1);
  assert_int_equal(f->cmd, SG_STOMP_SEND);
  assert_int_equal(f->nheaders, 2);
  assert_string_equal(sg_stomp_frame_header(f, "destination", NULL), "/queue/a");
  assert_string_equal(sg_stomp_frame_header(f, "foo", NULL), "bar");
  assert_int_equal(f->body_len, 5);
  assert_memory_equal(f->body, "hello", 5);
  sg_stomp_frame_free(f);
  sg_stomp_parser_free(&p);
}

static void byte_by_byte(void **state) {
  (void)state;
  static const char in[] = "MESSAGE\r\na:1\r\nb:2\r\n\r\nbody text\0";
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  sg_stomp_parser_init(&p, &lim);
  assert_int_equal(feed(&p, in, sizeof(in) - 1, 1, &f, NULL), 1);
  assert_int_equal(f->cmd, SG_STOMP_MESSAGE);
  assert_string_equal(sg_stomp_frame_header(f, "a", NULL), "1");
  assert_string_equal(sg_stomp_frame_header(f, "b", NULL), "2");
  assert_string_equal(f->body, "body text");
  sg_stomp_frame_free(f);
  sg_stomp_parser_free(&p);
}

static void content_length_with_nul(void **state) {
  (void)state;
  static const char in[] = "SEND\ncontent-length:5\n\na\0b\0c\0";
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  sg_stomp_parser_init(&p, &lim);
  assert_int_equal(feed(&p, in, sizeof(in) - 1, 3, &f, NULL), 1);
  assert_int_equal(f->body_len, 5);
  assert_memory_equal(f->body, "a\0b\0c", 5);
  assert_true(f->has_content_length);
  sg_stomp_frame_free(f);
  sg_stomp_parser_free(&p);
}

static void several_frames_and_heartbeats(void **state) {
  (void)state;
  static const char in[] = "\n\r\nSEND\n\nA\0\nSEND\n\nB\0SEND\n\nC\0\n";
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  sg_stomp_parser_init(&p, &lim);
  const char *s = in;
  size_t n = sizeof(in) - 1, c;
  const char *bodies[] = {"A", "B", "C"};
  for (int i = 0; i < 3; i++) {
    assert_int_equal(sg_stomp_parser_execute(&p, s, n, &c, &f), 1);
    assert_string_equal(f->body, bodies[i]);
    sg_stomp_frame_free(f);
    s += c;
    n -= c;
  }
  assert_int_equal(sg_stomp_parser_execute(&p, s, n, &c, &f), 0);
  assert_int_equal(c, n);
  assert_int_equal(p.heartbeats, 4);
  sg_stomp_parser_free(&p);
}

static void escapes_by_version(void **state) {
  (void)state;
  static const char in[] = "SEND\nk\\cx:a\\nb\\\\c\\cd\n\n\0";
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  sg_stomp_parser_init(&p, &lim);
  sg_stomp_parser_set_version(&p, 11);
  assert_int_equal(feed(&p, in, sizeof(in) - 1, 100, &f, NULL), 1);
  assert_string_equal(sg_stomp_frame_header(f, "k:x", NULL), "a\nb\\c:d");
  sg_stomp_frame_free(f);
  sg_stomp_parser_set_version(&p, 10);
  assert_int_equal(feed(&p, in, sizeof(in) - 1, 100, &f, NULL), 1);
  assert_string_equal(f->headers[0].name, "k\\cx");
  sg_stomp_frame_free(f);
  sg_stomp_parser_free(&p);
}

static void cr_escape_only_in_12(void **state) {
  (void)state;
  static const char in[] = "SEND\nk:a\\rb\n\n\0";
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  sg_stomp_parser_init(&p, &lim);
  assert_int_equal(feed(&p, in, sizeof(in) - 1, 100, &f, NULL), 1);
  assert_string_equal(sg_stomp_frame_header(f, "k", NULL), "a\rb");
  sg_stomp_frame_free(f);
  sg_stomp_parser_free(&p);
  sg_stomp_parser_init(&p, &lim);
  sg_stomp_parser_set_version(&p, 11);
  assert_int_equal(feed(&p, in, sizeof(in) - 1, 100, &f, NULL), SG_ERR_BAD_ESCAPE);
  sg_stomp_parser_free(&p);
}

static void bad_escape(void **state) {
  (void)state;
  static const char in[] = "SEND\nk:a\\tb\n\n\0";
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  sg_stomp_parser_init(&p, &lim);
  assert_int_equal(feed(&p, in, sizeof(in) - 1, 100, &f, NULL), SG_ERR_BAD_ESCAPE);
  sg_stomp_parser_free(&p);
}

static void connect_not_unescaped(void **state) {
  (void)state;
  static const char in[] = "CONNECT\npasscode:a\\tb\n\n\0";
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  sg_stomp_parser_init(&p, &lim);
  assert_int_equal(feed(&p, in, sizeof(in) - 1, 100, &f, NULL), 1);
  assert_int_equal(f->cmd, SG_STOMP_CONNECT);
  assert_string_equal(sg_stomp_frame_header(f, "passcode", NULL), "a\\tb");
  sg_stomp_frame_free(f);
  sg_stomp_parser_free(&p);
}

static void repeated_header_first_wins(void **state) {
  (void)state;
  static const char in[] = "SEND\nk:1\nk:2\n\n\0";
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  sg_stomp_parser_init(&p, &lim);
  assert_int_equal(feed(&p, in, sizeof(in) - 1, 100, &f, NULL), 1);
  assert_string_equal(sg_stomp_frame_header(f, "k", NULL), "1");
  assert_int_equal(f->nheaders, 2);
  sg_stomp_frame_free(f);
  sg_stomp_parser_free(&p);
}

static void unknown_command(void **state) {
  (void)state;
  static const char in[] = "FOO\n\n\0";
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  sg_stomp_parser_init(&p, &lim);
  assert_int_equal(feed(&p, in, sizeof(in) - 1, 100, &f, NULL), 1);
  assert_int_equal(f->cmd, SG_STOMP_UNKNOWN);
  assert_string_equal(f->command, "FOO");
  sg_stomp_frame_free(f);
  sg_stomp_parser_free(&p);
}

static void expect_error(const char *in, size_t n, size_t step, int err) {
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  sg_stomp_parser_init(&p, &lim);
  assert_int_equal(feed(&p, in, n, step, &f, NULL), err);
  assert_null(f);
  sg_stomp_parser_free(&p);
}

static void errors(void **state) {
  (void)state;
  static const char nocolon[] = "SEND\nnocolon\n\n\0";
  expect_error(nocolon, sizeof(nocolon) - 1, 100, SG_ERR_MALFORMED_FRAME);
  static const char badlen[] = "SEND\ncontent-length:x1\n\n\0";
  expect_error(badlen, sizeof(badlen) - 1, 100, SG_ERR_BAD_CONTENT_LENGTH);
  static const char neglen[] = "SEND\ncontent-length:-1\n\n\0";
  expect_error(neglen, sizeof(neglen) - 1, 100, SG_ERR_BAD_CONTENT_LENGTH);
  static const char nonul[] = "SEND\ncontent-length:2\n\nabc";
  expect_error(nonul, sizeof(nonul) - 1, 100, SG_ERR_MALFORMED_FRAME);
  static const char huge[] = "SEND\ncontent-length:99999999\n\n";
  expect_error(huge, sizeof(huge) - 1, 100, SG_ERR_FRAME_TOO_LARGE);
}

/* Found by fuzzing: a NUL among the command and header lines used to pass,
 * so "destination\0x" read as "destination" by strcmp. */
static void nul_in_head(void **state) {
  (void)state;
  static const char in_cmd[] = "CONNECT\0\0\naccept-version:1.2\n\n\0";
  expect_error(in_cmd, sizeof(in_cmd) - 1, 100, SG_ERR_MALFORMED_FRAME);
  expect_error(in_cmd, sizeof(in_cmd) - 1, 1, SG_ERR_MALFORMED_FRAME);
  static const char in_name[] = "SEND\ndestination\0x:/queue/a\n\n\0";
  expect_error(in_name, sizeof(in_name) - 1, 100, SG_ERR_MALFORMED_FRAME);
  expect_error(in_name, sizeof(in_name) - 1, 3, SG_ERR_MALFORMED_FRAME);
  static const char in_value[] = "SEND\ndestination:/queue/a\0b\n\n\0";
  expect_error(in_value, sizeof(in_value) - 1, 100, SG_ERR_MALFORMED_FRAME);
  /* No newline yet: refused at once, not held until the size limit. */
  static const char partial[] = "SEND\0";
  expect_error(partial, sizeof(partial) - 1, 100, SG_ERR_MALFORMED_FRAME);
}

static void limits(void **state) {
  (void)state;
  sg_buf_t b;
  sg_buf_init(&b);
  sg_buf_appendz(&b, "SEND\n");
  for (int i = 0; i < 40; i++) sg_buf_printf(&b, "h%d:v\n", i);
  sg_buf_append(&b, "\n\0", 2);
  expect_error(b.base, b.len, 7, SG_ERR_TOO_MANY_HEADERS);
  sg_buf_reset(&b);
  sg_buf_appendz(&b, "SEND\nlong:");
  for (int i = 0; i < 2000; i++) sg_buf_append(&b, "x", 1);
  /* Refused while the line is still incomplete. */
  expect_error(b.base, b.len, 64, SG_ERR_HEADER_TOO_LONG);
  sg_buf_reset(&b);
  sg_buf_appendz(&b, "SEND\n\n");
  for (int i = 0; i < 70000; i++) sg_buf_append(&b, "x", 1);
  expect_error(b.base, b.len, 4096, SG_ERR_FRAME_TOO_LARGE);
  sg_buf_free(&b);
}

/* Found by fuzzing: a header line of exactly max_header_size whose CRLF
 * was split between two pieces was refused as too long. */
static void limit_line_split_at_crlf(void **state) {
  (void)state;
  static const sg_stomp_limits_t small = {4096, 8, 16};
  static const char in[] = "SEND\r\nkey:0123456789ab\r\n\r\nbody\0";
  for (size_t step = 1; step <= sizeof(in); step++) {
    sg_stomp_parser_t p;
    sg_stomp_frame_t *f;
    sg_stomp_parser_init(&p, &small);
    assert_int_equal(feed(&p, in, sizeof(in) - 1, step, &f, NULL), 1);
    assert_string_equal(sg_stomp_frame_header(f, "key", NULL), "0123456789ab");
    sg_stomp_frame_free(f);
    sg_stomp_parser_free(&p);
  }
}

static void big_body_in_pieces(void **state) {
  (void)state;
  sg_stomp_limits_t big = {8u << 20, 32, 1024};
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  size_t body = 4u << 20;
  sg_buf_t b;
  sg_buf_init(&b);
  sg_buf_printf(&b, "SEND\ncontent-length:%zu\n\n", body);
  sg_buf_reserve(&b, body + 1);
  memset(b.base + b.len, 'z', body);
  b.len += body;
  sg_buf_append(&b, "\0", 1);
  sg_stomp_parser_init(&p, &big);
  assert_int_equal(feed(&p, b.base, b.len, 4096, &f, NULL), 1);
  assert_int_equal(f->body_len, body);
  sg_stomp_frame_free(f);
  sg_stomp_parser_free(&p);
  sg_buf_free(&b);
}

static void encode_roundtrip(void **state) {
  (void)state;
  sg_buf_t b;
  sg_buf_init(&b);
  sg_stomp_encode_start(&b, SG_STOMP_MESSAGE);
  sg_stomp_encode_headerz(&b, 12, SG_STOMP_MESSAGE, "k:1", "a\nb\r\\c");
  sg_stomp_encode_finish(&b, "x\0y", 3);
  static const char want[] = "MESSAGE\nk\\c1:a\\nb\\r\\\\c\ncontent-length:3\n\nx\0y";
  assert_int_equal(b.len, sizeof(want));
  assert_memory_equal(b.base, want, sizeof(want));
  sg_stomp_parser_t p;
  sg_stomp_frame_t *f;
  sg_stomp_parser_init(&p, &lim);
  assert_int_equal(feed(&p, b.base, b.len, 5, &f, NULL), 1);
  assert_string_equal(sg_stomp_frame_header(f, "k:1", NULL), "a\nb\r\\c");
  assert_int_equal(f->body_len, 3);
  sg_stomp_frame_free(f);
  sg_stomp_parser_free(&p);
  sg_buf_reset(&b);
  sg_stomp_encode_start(&b, SG_STOMP_CONNECTED);
  sg_stomp_encode_headerz(&b, 12, SG_STOMP_CONNECTED, "server", "a:b");
  sg_stomp_encode_finish(&b, NULL, 0);
  assert_memory_equal(b.base, "CONNECTED\nserver:a:b\n\n\0", b.len);
  sg_buf_free(&b);
}

static void cmd_names(void **state) {
  (void)state;
  assert_int_equal(sg_stomp_cmd_from("SUBSCRIBE", 9), SG_STOMP_SUBSCRIBE);
  assert_int_equal(sg_stomp_cmd_from("send", 4), SG_STOMP_UNKNOWN);
  assert_string_equal(sg_stomp_cmd_name(SG_STOMP_RECEIPT), "RECEIPT");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(simple_send),
      cmocka_unit_test(byte_by_byte),
      cmocka_unit_test(content_length_with_nul),
      cmocka_unit_test(several_frames_and_heartbeats),
      cmocka_unit_test(escapes_by_version),
      cmocka_unit_test(cr_escape_only_in_12),
      cmocka_unit_test(bad_escape),
      cmocka_unit_test(connect_not_unescaped),
      cmocka_unit_test(repeated_header_first_wins),
      cmocka_unit_test(unknown_command),
      cmocka_unit_test(errors),
      cmocka_unit_test(nul_in_head),
      cmocka_unit_test(limits),
      cmocka_unit_test(limit_line_split_at_crlf),
      cmocka_unit_test(big_body_in_pieces),
      cmocka_unit_test(encode_roundtrip),
      cmocka_unit_test(cmd_names),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
