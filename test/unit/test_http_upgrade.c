/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "stompgate/err.h"
#include "stompgate/http_upgrade.h"

static const sg_http_upgrade_opts_t opts = {"/ws", 4096};

#define GOOD_HEADERS                        \
  "Host: localhost\r\n"                     \
  "Upgrade: websocket\r\n"                  \
  "Connection: keep-alive, Upgrade\r\n"     \
  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" \
  "Sec-WebSocket-Version: 13\r\n"

static int parse(const char *s, sg_http_request_t *req) {
  return sg_http_upgrade_parse(s, strlen(s), &opts, req);
}

static void accept_rfc_example(void **state) {
  (void)state;
  sg_http_request_t req;
  assert_int_equal(parse("GET /ws?x=1 HTTP/1.1\r\n" GOOD_HEADERS
                         "Sec-WebSocket-Protocol: v10.stomp, v11.stomp\r\n\r\n", &req), 0);
  assert_int_equal(req.status, 101);
  assert_string_equal(req.accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
  assert_int_equal(req.stomp_version, 11);
  assert_int_equal(req.query.len, 3);
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_http_upgrade_accept(&req, NULL, &b), 0);
  assert_non_null(strstr(b.base, "Sec-WebSocket-Protocol: v11.stomp\r\n"));
  assert_non_null(strstr(b.base, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
  sg_buf_free(&b);
}

static void subprotocols(void **state) {
  (void)state;
  sg_http_request_t req;
  assert_int_equal(parse("GET /ws HTTP/1.1\r\n" GOOD_HEADERS
                         "Sec-WebSocket-Protocol: v10.stomp\r\n"
                         "Sec-WebSocket-Protocol: v12.stomp\r\n\r\n", &req), 0);
  assert_int_equal(req.stomp_version, 12);
  assert_int_equal(parse("GET /ws HTTP/1.1\r\n" GOOD_HEADERS "\r\n", &req), 0);
  assert_int_equal(req.status, 101);
  assert_int_equal(req.stomp_version, 0);
}

static void incomplete_and_too_large(void **state) {
  (void)state;
  sg_http_request_t req;
  assert_int_equal(parse("GET /ws HTTP/1.1\r\nHost: x\r\n", &req), SG_ERR_AGAIN);
  char big[5000];
  memset(big, 'a', sizeof(big));
  memcpy(big, "GET /ws HTTP/1.1\r\nX: ", 21);
  assert_int_equal(sg_http_upgrade_parse(big, sizeof(big), &opts, &req), 0);
  assert_int_equal(req.status, 431);
}

static void expect_status(const char *s, int status) {
  sg_http_request_t req;
  assert_int_equal(parse(s, &req), 0);
  assert_int_equal(req.status, status);
  assert_non_null(req.reason);
}

static void refusals(void **state) {
  (void)state;
  expect_status("GET /other HTTP/1.1\r\n" GOOD_HEADERS "\r\n", 404);
  expect_status("POST /ws HTTP/1.1\r\n" GOOD_HEADERS "\r\n", 405);
  expect_status("GET /ws HTTP/1.0\r\n" GOOD_HEADERS "\r\n", 400);
  expect_status("GET /ws\r\n\r\n", 400);
  expect_status("GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", 426);
  expect_status("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                400);
  expect_status("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
                426);
  expect_status("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n",
                400);
  expect_status("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
                400);
  expect_status("GET /ws HTTP/1.1\r\nBad Header\r\n\r\n", 400);
}

static int bearer_of(const char *auth_line, sg_http_slice_t *tok) {
  static char buf[20000];
  sg_http_request_t req;
  sg_http_upgrade_opts_t big = {"/ws", sizeof(buf)};
  snprintf(buf, sizeof(buf), "GET /ws HTTP/1.1\r\n" GOOD_HEADERS "%s\r\n", auth_line);
  assert_int_equal(sg_http_upgrade_parse(buf, strlen(buf), &big, &req), 0);
  assert_int_equal(req.status, 101);
  return sg_http_bearer(&req, tok);
}

static void bearer_tokens(void **state) {
  (void)state;
  sg_http_slice_t t;
  assert_int_equal(bearer_of("Authorization: Bearer abc.DEF-_~+/=\r\n", &t), 1);
  assert_int_equal(t.len, 13);
  assert_memory_equal(t.p, "abc.DEF-_~+/=", 13);
  assert_int_equal(bearer_of("authorization: bearer   x.y.z \r\n", &t), 1);
  assert_int_equal(t.len, 5);
  assert_int_equal(bearer_of("", &t), 0);
  assert_int_equal(bearer_of("Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n", &t), 0);
  assert_int_equal(bearer_of("Authorization: Bearer \r\n", &t), 0); /* trimmed: no token */
  assert_int_equal(bearer_of("Authorization: Bearer a b\r\n", &t), SG_ERR_INVALID);
  assert_int_equal(bearer_of("Authorization: Bearer a\"b\r\n", &t), SG_ERR_INVALID);
  static char line[SG_HTTP_BEARER_MAX + 64];
  int n = snprintf(line, sizeof(line), "Authorization: Bearer ");
  memset(line + n, 'a', SG_HTTP_BEARER_MAX);
  strcpy(line + n + SG_HTTP_BEARER_MAX, "\r\n");
  assert_int_equal(bearer_of(line, &t), 1);
  line[n + SG_HTTP_BEARER_MAX] = 'a';
  strcpy(line + n + SG_HTTP_BEARER_MAX + 1, "\r\n");
  assert_int_equal(bearer_of(line, &t), SG_ERR_INVALID);
}

static void error_response(void **state) {
  (void)state;
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_http_response_error(&b, 426, "Expected a WebSocket upgrade",
                                          "Upgrade: websocket\r\n"), 0);
  assert_true(strncmp(b.base, "HTTP/1.1 426 Upgrade Required\r\n", 31) == 0);
  assert_non_null(strstr(b.base, "Upgrade: websocket\r\n"));
  assert_non_null(strstr(b.base, "Content-Length: 29\r\n"));
  assert_non_null(strstr(b.base, "\r\n\r\nExpected a WebSocket upgrade\n"));
  sg_buf_free(&b);
}

/* Every prefix of a well-formed request waits for more bytes. */
static void prefixes_wait(void **state) {
  (void)state;
  static const char ok[] = "GET /ws?a=%20b HTTP/1.1\r\n" GOOD_HEADERS "\r\n";
  sg_http_request_t req;
  for (size_t n = 0; n < sizeof(ok) - 3; n++)
    assert_int_equal(sg_http_upgrade_parse(ok, n, &opts, &req), SG_ERR_AGAIN);
  static const char lf[] = "GET /ws HTTP/1.1\n";
  for (size_t n = 0; n <= sizeof(lf) - 1; n++)
    assert_int_equal(sg_http_upgrade_parse(lf, n, &opts, &req), SG_ERR_AGAIN);
}

/* A first line that cannot be HTTP is refused at the byte that shows it,
 * not when the head is complete. */
static void not_http_refused_at_once(void **state) {
  (void)state;
  static const char *lines[] = {
      "HELLO WORLD\r\n",        /* no version */
      "\x16\x03\x01\x02\x00",       /* a TLS ClientHello on a plain listener */
      " GET /ws HTTP/1.1",      /* leading space */
      "GET  /ws",               /* empty target */
      "GET /w\x01s",            /* control byte in the target */
      "GET /w\xc3\xa9",          /* raw non-ASCII in the target */
      "GET /ws HTTP/x",
      "GET /ws HTTP/1.x",
      "GET /ws HTTP/11",
      "GET /ws HTTP/1.1 ",      /* more after the version */
      "GET /ws HTTP/1.1\rX",
      "GET /ws http/1.1",
      "G(T /ws HTTP/1.1",
      "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJ", /* a method longer than any */
  };
  for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
    sg_http_request_t req;
    assert_int_equal(parse(lines[i], &req), 0);
    assert_int_equal(req.status, 400);
    assert_string_equal(req.reason, "Malformed request line");
  }
  /* Random bytes with no line end: refused within the first few. */
  unsigned x = 12345;
  char junk[4096];
  for (int round = 0; round < 200; round++) {
    for (size_t i = 0; i < sizeof(junk); i++) {
      x = x * 1103515245u + 12345u;
      junk[i] = (char)(x >> 16);
      if (junk[i] == '\n') junk[i] = 'x';
    }
    sg_http_request_t req;
    size_t n = 1;
    while (n <= sizeof(junk) && sg_http_upgrade_parse(junk, n, &opts, &req) == SG_ERR_AGAIN) n++;
    assert_true(n <= 64);
    assert_int_equal(req.status, 400);
  }
}

/* X-Forwarded-For and Forwarded are kept for the gateway to judge; the
 * last line of each counts. */
static void forwarded_headers(void **state) {
  (void)state;
  sg_http_request_t req;
  assert_int_equal(parse("GET /ws HTTP/1.1\r\n" GOOD_HEADERS
                         "X-Forwarded-For: 192.0.2.1\r\n"
                         "x-forwarded-for:  198.51.100.7, 10.0.0.1 \r\n"
                         "FORWARDED: for=192.0.2.60;proto=http\r\n\r\n", &req), 0);
  assert_int_equal(req.status, 101);
  assert_int_equal(req.forwarded_for.len, strlen("198.51.100.7, 10.0.0.1"));
  assert_memory_equal(req.forwarded_for.p, "198.51.100.7, 10.0.0.1", req.forwarded_for.len);
  assert_int_equal(req.forwarded.len, strlen("for=192.0.2.60;proto=http"));
  assert_memory_equal(req.forwarded.p, "for=192.0.2.60;proto=http", req.forwarded.len);
  assert_int_equal(parse("GET /ws HTTP/1.1\r\n" GOOD_HEADERS "\r\n", &req), 0);
  assert_null(req.forwarded_for.p);
  assert_null(req.forwarded.p);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(accept_rfc_example), cmocka_unit_test(subprotocols),
      cmocka_unit_test(incomplete_and_too_large), cmocka_unit_test(refusals),
      cmocka_unit_test(prefixes_wait), cmocka_unit_test(not_http_refused_at_once),
      cmocka_unit_test(error_response), cmocka_unit_test(bearer_tokens),
      cmocka_unit_test(forwarded_headers),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
