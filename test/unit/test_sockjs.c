/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "stompgate/err.h"
#include "stompgate/sockjs.h"

static sg_sockjs_route_t route(const char *path) {
  sg_sockjs_route_t r;
  assert_int_equal(sg_sockjs_route("/stomp", path, strlen(path), &r), 0);
  return r;
}

static void slice_is(sg_http_slice_t s, const char *want) {
  assert_int_equal(s.len, strlen(want));
  assert_memory_equal(s.p, want, s.len);
}

static void routing(void **state) {
  (void)state;
  assert_int_equal(route("/ws").kind, SG_SOCKJS_NONE);
  assert_int_equal(route("/stompx").kind, SG_SOCKJS_NONE);
  assert_int_equal(route("/sto").kind, SG_SOCKJS_NONE);
  assert_int_equal(route("/stomp").kind, SG_SOCKJS_ROOT);
  assert_int_equal(route("/stomp/").kind, SG_SOCKJS_ROOT);
  assert_int_equal(route("/stomp/info").kind, SG_SOCKJS_INFO);
  assert_int_equal(route("/stomp/websocket").kind, SG_SOCKJS_RAW_WS);
  assert_int_equal(route("/stomp/iframe.html").kind, SG_SOCKJS_NOT_FOUND);
  assert_int_equal(route("/stomp/info/x").kind, SG_SOCKJS_NOT_FOUND);

  sg_sockjs_route_t r = route("/stomp/123/abc-def/xhr_streaming");
  assert_int_equal(r.kind, SG_SOCKJS_SESSION);
  assert_int_equal(r.transport, SG_SOCKJS_T_XHR_STREAMING);
  slice_is(r.server, "123");
  slice_is(r.session, "abc-def");
  assert_int_equal(route("/stomp/1/s/xhr").transport, SG_SOCKJS_T_XHR);
  assert_int_equal(route("/stomp/1/s/xhr_send").transport, SG_SOCKJS_T_XHR_SEND);
  assert_int_equal(route("/stomp/1/s/websocket").transport, SG_SOCKJS_T_WEBSOCKET);
  r = route("/stomp/1/s/eventsource");
  assert_int_equal(r.kind, SG_SOCKJS_SESSION);
  assert_int_equal(r.transport, SG_SOCKJS_T_UNKNOWN);
  /* Ids with dots, empty ids, extra segments and overlong ids go nowhere. */
  assert_int_equal(route("/stomp/1/s.x/xhr").kind, SG_SOCKJS_NOT_FOUND);
  assert_int_equal(route("/stomp//s/xhr").kind, SG_SOCKJS_NOT_FOUND);
  assert_int_equal(route("/stomp/1//xhr").kind, SG_SOCKJS_NOT_FOUND);
  assert_int_equal(route("/stomp/1/s/xhr/more").kind, SG_SOCKJS_NOT_FOUND);
  char long_id[200];
  snprintf(long_id, sizeof(long_id), "/stomp/1/%0*d/xhr", SG_SOCKJS_ID_MAX + 1, 7);
  assert_int_equal(route(long_id).kind, SG_SOCKJS_NOT_FOUND);
  snprintf(long_id, sizeof(long_id), "/stomp/1/%0*d/xhr", SG_SOCKJS_ID_MAX, 7);
  assert_int_equal(route(long_id).kind, SG_SOCKJS_SESSION);
}

static void quote_is(const char *in, size_t len, const char *want) {
  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_sockjs_quote(&b, in, len), 0);
  assert_string_equal(b.base, want);
  sg_buf_free(&b);
}
#define QUOTE(lit, want) quote_is(lit, sizeof(lit) - 1, want)

static void encoding(void **state) {
  (void)state;
  QUOTE("", "\"\"");
  QUOTE("plain text", "\"plain text\"");
  QUOTE("q\"b\\", "\"q\\\"b\\\\\"");
  /* A STOMP frame: newlines and the NUL that ends it. */
  QUOTE("SEND\ndestination:/queue/a\n\nhi\0", "\"SEND\\ndestination:/queue/a\\n\\nhi\\u0000\"");
  QUOTE("\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\"");
  /* Characters SockJS wants escaped: U+0085, U+00AD, U+2028, U+2029,
   * U+200C, U+FEFF, U+FFFF. */
  QUOTE("\xc2\x85\xc2\xad", "\"\\u0085\\u00ad\"");
  QUOTE("\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\x8c", "\"\\u2028\\u2029\\u200c\"");
  QUOTE("\xef\xbb\xbf\xef\xbf\xbf", "\"\\ufeff\\uffff\"");
  /* Ordinary non-ASCII text stays as UTF-8. */
  QUOTE("caf\xc3\xa9 \xf0\x9f\x98\x80", "\"caf\xc3\xa9 \xf0\x9f\x98\x80\"");
  /* Bytes that are not UTF-8 are escaped one by one. */
  QUOTE("a\xff\xc3", "\"a\\u00ff\\u00c3\"");
  QUOTE("\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\""); /* a surrogate in UTF-8 */

  sg_buf_t b;
  sg_buf_init(&b);
  assert_int_equal(sg_sockjs_frame_message(&b, "x\0", 2), 0);
  assert_string_equal(b.base, "a[\"x\\u0000\"]");
  sg_buf_reset(&b);
  assert_int_equal(sg_sockjs_frame_close(&b, 3000, "Go away!"), 0);
  assert_string_equal(b.base, "c[3000,\"Go away!\"]");
  sg_buf_free(&b);
}

static int decode(const char *json, sg_buf_t *out) {
  sg_buf_reset(out);
  return sg_sockjs_decode(json, strlen(json), out);
}

static void next_is(const sg_buf_t *d, size_t *off, const char *want, size_t wl) {
  const char *p;
  size_t n;
  assert_int_equal(sg_sockjs_next(d, off, &p, &n), 1);
  assert_int_equal(n, wl);
  assert_memory_equal(p, want, wl);
}

static void decoding(void **state) {
  (void)state;
  sg_buf_t d;
  sg_buf_init(&d);
  size_t off = 0;
  const char *p;
  size_t n;
  assert_int_equal(decode("[]", &d), 0);
  assert_int_equal(sg_sockjs_next(&d, &off, &p, &n), 0);
  assert_int_equal(decode(" [ \"a\" , \"\\u0000\\n\\\"\\\\\\/\\b\\f\\r\\t\" ] \n", &d), 2);
  off = 0;
  next_is(&d, &off, "a", 1);
  next_is(&d, &off, "\0\n\"\\/\b\f\r\t", 9);
  assert_int_equal(sg_sockjs_next(&d, &off, &p, &n), 0);
  /* Surrogate pairs, lone surrogates, raw UTF-8. */
  assert_int_equal(decode("[\"\\ud83d\\ude00|\\ud83d|\\ude00|\\u00e9|\xc3\xa9\"]", &d), 1);
  off = 0;
  next_is(&d, &off, "\xf0\x9f\x98\x80|\xef\xbf\xbd|\xef\xbf\xbd|\xc3\xa9|\xc3\xa9", 18);
  /* Broken JSON. */
  const char *bad[] = {"",       "[",         "[\"a\"",   "[\"a\",]", "[1]",  "{}",
                       "\"a\"",  "[\"a\"]x",  "[\"\\x\"]", "[\"\\u12\"]", "[\"a\" \"b\"]",
                       "[\"\t\"]", "[,]", "null"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(decode(bad[i], &d), SG_ERR_INVALID);
  /* What the encoder writes, the decoder reads back. */
  const char frame[] = "MESSAGE\nx:\"y\"\n\n\xe2\x80\xa8 caf\xc3\xa9\0";
  sg_buf_t q;
  sg_buf_init(&q);
  sg_buf_append(&q, "[", 1);
  sg_sockjs_quote(&q, frame, sizeof(frame) - 1);
  sg_buf_append(&q, "]", 1);
  assert_int_equal(decode(q.base, &d), 1);
  off = 0;
  next_is(&d, &off, frame, sizeof(frame) - 1);
  sg_buf_free(&q);
  sg_buf_free(&d);
}

static void http(void **state) {
  (void)state;
  const char head[] = "POST /stomp/1/a/xhr_send HTTP/1.1\r\nHost: x\r\ncontent-length:  12 \r\n"
                      "Origin: http://app.example\r\n\r\n";
  sg_http_slice_t v;
  assert_int_equal(sg_sockjs_header(head, sizeof(head) - 1, "Content-Length", &v), 1);
  slice_is(v, "12");
  assert_int_equal(sg_sockjs_header(head, sizeof(head) - 1, "Transfer-Encoding", &v), 0);
  assert_int_equal(sg_sockjs_header(head, sizeof(head) - 1, "Host", &v), 1);
  slice_is(v, "x");

  sg_buf_t b;
  sg_buf_init(&b);
  sg_http_slice_t origin = {"http://app.example", 18}, none = {0};
  assert_int_equal(sg_sockjs_info(&b, origin, 42), 0);
  assert_non_null(strstr(b.base, "HTTP/1.1 200 OK\r\n"));
  assert_non_null(strstr(b.base, "Access-Control-Allow-Origin: http://app.example\r\n"));
  assert_non_null(strstr(b.base, "Access-Control-Allow-Credentials: true\r\n"));
  assert_non_null(strstr(b.base, "Cache-Control: no-store"));
  assert_non_null(strstr(b.base, "\r\n\r\n{\"websocket\":true,\"origins\":[\"*:*\"],"
                                 "\"cookie_needed\":false,\"entropy\":42}"));
  sg_buf_reset(&b);
  sg_http_slice_t acrh = {"content-type", 12};
  assert_int_equal(sg_sockjs_preflight(&b, none, acrh, "OPTIONS, POST"), 0);
  assert_non_null(strstr(b.base, "HTTP/1.1 204 No Content\r\n"));
  assert_non_null(strstr(b.base, "Access-Control-Allow-Origin: *\r\n"));
  assert_non_null(strstr(b.base, "Access-Control-Allow-Headers: content-type\r\n"));
  assert_non_null(strstr(b.base, "Access-Control-Allow-Methods: OPTIONS, POST\r\n"));
  assert_non_null(strstr(b.base, "Access-Control-Max-Age: 31536000\r\n"));
  /* An Origin with a line break is not echoed into the response. */
  sg_buf_reset(&b);
  sg_http_slice_t evil = {"a\r\nSet-Cookie: x", 16};
  assert_int_equal(sg_sockjs_response(&b, 404, evil, "text/plain", "x", 1), 0);
  assert_null(strstr(b.base, "Set-Cookie"));
  assert_non_null(strstr(b.base, "Content-Length: 1\r\n"));
  /* Extra header lines go with the others, before the blank line and the
   * body. */
  sg_buf_reset(&b);
  assert_int_equal(sg_sockjs_response_extra(&b, 405, none, "text/plain", "Allow: OPTIONS, GET\r\n",
                                            "no\n", 3),
                   0);
  const char *allow = strstr(b.base, "\r\nAllow: OPTIONS, GET\r\n");
  const char *blank = strstr(b.base, "\r\n\r\n");
  assert_non_null(allow);
  assert_non_null(blank);
  assert_true(allow < blank);
  assert_string_equal(blank, "\r\n\r\nno\n");
  assert_int_equal(b.len, strlen(b.base));
  sg_buf_free(&b);
}

static long dechunk(const char *in, size_t max, sg_buf_t *out) {
  sg_buf_reset(out);
  return sg_sockjs_dechunk(in, strlen(in), max, out);
}

static void chunked(void **state) {
  (void)state;
  sg_buf_t b;
  sg_buf_init(&b);
  const char body[] = "5\r\n[\"ab\"\r\n3;ext=1\r\n, \"\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT";
  assert_int_equal(dechunk(body, 100, &b), (long)strlen(body) - 4);
  assert_string_equal(b.base, "[\"ab\", \"0123456789");
  assert_int_equal(dechunk("2\nab\n0\n\n", 100, &b), 8); /* bare LF */
  assert_string_equal(b.base, "ab");
  /* Cut anywhere: wait for more. */
  for (size_t n = 0; n < strlen(body) - 4; n++) {
    sg_buf_reset(&b);
    assert_int_equal(sg_sockjs_dechunk(body, n, 100, &b), SG_ERR_AGAIN);
  }
  assert_int_equal(dechunk(body, 10, &b), SG_ERR_FRAME_TOO_LARGE);
  assert_int_equal(dechunk("zz\r\n", 100, &b), SG_ERR_INVALID);
  assert_int_equal(dechunk("\r\n", 100, &b), SG_ERR_INVALID);
  assert_int_equal(dechunk("2\r\nabc\r\n", 100, &b), SG_ERR_INVALID);
  assert_int_equal(dechunk("123456789\r\n", 100, &b), SG_ERR_INVALID);
  sg_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(routing),
      cmocka_unit_test(encoding),
      cmocka_unit_test(decoding),
      cmocka_unit_test(http),
      cmocka_unit_test(chunked),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
