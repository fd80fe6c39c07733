/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include "stompgate/err.h"
#include "stompgate/proxy_proto.h"

static int parse(const void *b, size_t n, sg_proxy_info_t *info) {
  return sg_proxy_parse(b, n, info);
}

static void src_is(const sg_proxy_info_t *info, const char *addr, int port) {
  char buf[INET6_ADDRSTRLEN];
  if (info->src.ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)&info->src;
    inet_ntop(AF_INET, &a->sin_addr, buf, sizeof(buf));
    assert_int_equal(ntohs(a->sin_port), port);
  } else {
    assert_int_equal(info->src.ss_family, AF_INET6);
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)&info->src;
    inet_ntop(AF_INET6, &a->sin6_addr, buf, sizeof(buf));
    assert_int_equal(ntohs(a->sin6_port), port);
  }
  assert_string_equal(buf, addr);
}

/* Every proper prefix asks for more; the whole parses; bytes after the
 * header are left alone. */
static void whole_and_split(const void *h, size_t n, sg_proxy_info_t *info) {
  for (size_t k = 0; k < n; k++) assert_int_equal(parse(h, k, info), SG_ERR_AGAIN);
  uint8_t more[2048];
  memcpy(more, h, n);
  memcpy(more + n, "GET / HTTP/1.1\r\n", 16);
  assert_int_equal(parse(more, n + 16, info), 0);
  assert_int_equal(info->header_len, n);
}

static void v1_lines(void **state) {
  (void)state;
  sg_proxy_info_t info;
  const char *l = "PROXY TCP4 192.0.2.7 198.51.100.1 56324 15674\r\n";
  whole_and_split(l, strlen(l), &info);
  assert_int_equal(info.version, 1);
  assert_int_equal(info.local, 0);
  src_is(&info, "192.0.2.7", 56324);
  l = "PROXY TCP6 2001:db8::7 2001:db8::1 65535 0\r\n";
  whole_and_split(l, strlen(l), &info);
  src_is(&info, "2001:db8::7", 65535);
  l = "PROXY UNKNOWN\r\n";
  whole_and_split(l, strlen(l), &info);
  assert_int_equal(info.local, 1);
  l = "PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n";
  whole_and_split(l, strlen(l), &info);
  assert_int_equal(info.local, 1);
  /* The longest line the format allows. */
  char longest[SG_PROXY_V1_MAX + 1];
  snprintf(longest, sizeof(longest), "PROXY UNKNOWN %0*d\r\n", SG_PROXY_V1_MAX - 16, 0);
  assert_int_equal(strlen(longest), SG_PROXY_V1_MAX);
  whole_and_split(longest, SG_PROXY_V1_MAX, &info);
}

static void v1_refused(void **state) {
  (void)state;
  static const char *bad[] = {
      "GET / HTTP/1.1\r\n",
      "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",          /* no CR */
      "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
      "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",        /* two spaces */
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
      "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n",
      "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",             /* IPv6 under TCP4 */
      "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",
      "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
      "PROXY UNKNOWNX\r\n",
      "PROXY \x01",
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    sg_proxy_info_t info;
    if (parse(bad[i], strlen(bad[i]), &info) != SG_ERR_INVALID) fail_msg("accepted: %s", bad[i]);
  }
  /* Too long: no line end within 107 bytes. */
  char big[300];
  memset(big, '1', sizeof(big));
  memcpy(big, "PROXY UNKNOWN ", 14);
  sg_proxy_info_t info;
  assert_int_equal(parse(big, SG_PROXY_V1_MAX - 1, &info), SG_ERR_AGAIN);
  assert_int_equal(parse(big, SG_PROXY_V1_MAX, &info), SG_ERR_INVALID);
  assert_int_equal(parse(big, sizeof(big), &info), SG_ERR_INVALID);
}

static size_t v2(uint8_t *b, uint8_t ver_cmd, uint8_t fam, const void *block, uint16_t n) {
  static const uint8_t sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                  0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
  memcpy(b, sig, 12);
  b[12] = ver_cmd;
  b[13] = fam;
  b[14] = (uint8_t)(n >> 8);
  b[15] = (uint8_t)n;
  memcpy(b + 16, block, n);
  return 16u + n;
}

static void v2_headers(void **state) {
  (void)state;
  uint8_t b[1100], blk[1100];
  sg_proxy_info_t info;
  /* TCP over IPv4 with a TLV (PP2_TYPE_AUTHORITY). */
  memcpy(blk, "\xc0\x00\x02\x07\xc6\x33\x64\x01\xdc\x04\x3d\x2a", 12);
  memcpy(blk + 12, "\x02\x00\x03" "a.b", 6);
  size_t n = v2(b, 0x21, 0x11, blk, 18);
  whole_and_split(b, n, &info);
  assert_int_equal(info.version, 2);
  assert_int_equal(info.local, 0);
  src_is(&info, "192.0.2.7", 56324);
  /* TCP over IPv6. */
  memset(blk, 0, 36);
  blk[0] = 0x20, blk[1] = 0x01, blk[2] = 0x0d, blk[3] = 0xb8, blk[15] = 7;
  blk[32] = 0x01, blk[33] = 0xbb;
  n = v2(b, 0x21, 0x21, blk, 36);
  whole_and_split(b, n, &info);
  src_is(&info, "2001:db8::7", 443);
  /* LOCAL (a health check), UNIX, UNSPEC, UDP: no client address. */
  n = v2(b, 0x20, 0x00, blk, 0);
  whole_and_split(b, n, &info);
  assert_int_equal(info.local, 1);
  memset(blk, 0, 216);
  n = v2(b, 0x21, 0x31, blk, 216);
  whole_and_split(b, n, &info);
  assert_int_equal(info.local, 1);
  n = v2(b, 0x21, 0x12, blk, 12);
  whole_and_split(b, n, &info);
  assert_int_equal(info.local, 1);
  /* The largest block accepted. */
  memset(blk, 0, sizeof(blk));
  blk[12] = 0x04, blk[13] = (SG_PROXY_V2_MAX_BLOCK - 15) >> 8, blk[14] = (SG_PROXY_V2_MAX_BLOCK - 15) & 0xff;
  n = v2(b, 0x21, 0x11, blk, SG_PROXY_V2_MAX_BLOCK);
  whole_and_split(b, n, &info);
}

static void v2_refused(void **state) {
  (void)state;
  uint8_t b[1200], blk[1200];
  memset(blk, 0, sizeof(blk));
  sg_proxy_info_t info;
  size_t n = v2(b, 0x11, 0x11, blk, 12); /* version 1 */
  assert_int_equal(parse(b, 13, &info), SG_ERR_INVALID);
  assert_int_equal(parse(b, n, &info), SG_ERR_INVALID);
  n = v2(b, 0x22, 0x11, blk, 12); /* command 2 */
  assert_int_equal(parse(b, n, &info), SG_ERR_INVALID);
  n = v2(b, 0x21, 0x41, blk, 12); /* family 4 */
  assert_int_equal(parse(b, n, &info), SG_ERR_INVALID);
  n = v2(b, 0x21, 0x13, blk, 12); /* transport 3 */
  assert_int_equal(parse(b, n, &info), SG_ERR_INVALID);
  /* A length shorter than the addresses, decided before they arrive. */
  n = v2(b, 0x21, 0x11, blk, 11);
  assert_int_equal(parse(b, 16, &info), SG_ERR_INVALID);
  n = v2(b, 0x21, 0x21, blk, 35);
  assert_int_equal(parse(b, n, &info), SG_ERR_INVALID);
  /* A length over the bound, refused from the fixed part alone. */
  n = v2(b, 0x21, 0x11, blk, SG_PROXY_V2_MAX_BLOCK + 1);
  assert_int_equal(parse(b, 16, &info), SG_ERR_INVALID);
  /* TLVs that overrun the block, or a stray byte after them. */
  blk[12] = 0x04, blk[13] = 0x00, blk[14] = 0x05;
  n = v2(b, 0x21, 0x11, blk, 12 + 3 + 4);
  assert_int_equal(parse(b, n, &info), SG_ERR_INVALID);
  n = v2(b, 0x21, 0x11, blk, 12 + 2);
  assert_int_equal(parse(b, n, &info), SG_ERR_INVALID);
  /* A signature that goes wrong part way. */
  n = v2(b, 0x21, 0x11, blk, 12);
  b[7] = 'q';
  assert_int_equal(parse(b, 8, &info), SG_ERR_INVALID);
  assert_int_equal(parse(b, 7, &info), SG_ERR_AGAIN);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(v1_lines), cmocka_unit_test(v1_refused),
      cmocka_unit_test(v2_headers), cmocka_unit_test(v2_refused),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
