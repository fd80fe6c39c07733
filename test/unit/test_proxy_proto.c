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

/* The reasons a refusal gives, for logs and metrics. */
static void reasons(void **state) {
  (void)state;
  sg_proxy_info_t info;
  assert_int_equal(parse("GET / HTTP/1.1\r\n", 16, &info), SG_ERR_INVALID);
  assert_string_equal(info.why, "no_header");
  char line[200];
  memset(line, 'x', sizeof(line));
  memcpy(line, "PROXY TCP4 ", 11);
  assert_int_equal(parse(line, sizeof(line), &info), SG_ERR_INVALID);
  assert_string_equal(info.why, "too_long");
  assert_int_equal(parse("PROXY TCP5 a b 1 2\r\n", 20, &info), SG_ERR_INVALID);
  assert_string_equal(info.why, "malformed");
  uint8_t b[1200], blk[1200];
  memset(blk, 0, sizeof(blk));
  v2(b, 0x21, 0x11, blk, 11);
  assert_int_equal(parse(b, 16, &info), SG_ERR_INVALID);
  assert_string_equal(info.why, "bad_length");
  v2(b, 0x21, 0x11, blk, SG_PROXY_V2_MAX_BLOCK + 1);
  assert_int_equal(parse(b, 16, &info), SG_ERR_INVALID);
  assert_string_equal(info.why, "too_long");
}

static struct sockaddr_storage sa(const char *addr) {
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof(ss));
  if (strchr(addr, ':')) {
    ss.ss_family = AF_INET6;
    assert_int_equal(inet_pton(AF_INET6, addr, &((struct sockaddr_in6 *)&ss)->sin6_addr), 1);
  } else {
    ss.ss_family = AF_INET;
    assert_int_equal(inet_pton(AF_INET, addr, &((struct sockaddr_in *)&ss)->sin_addr), 1);
  }
  return ss;
}

static int in(const char *cidr, const char *addr) {
  sg_cidr_t c;
  assert_int_equal(sg_cidr_parse(cidr, &c), 0);
  struct sockaddr_storage ss = sa(addr);
  return sg_cidr_match(&c, 1, (struct sockaddr *)&ss);
}

static void cidrs(void **state) {
  (void)state;
  assert_true(in("10.0.0.0/8", "10.200.3.4"));
  assert_false(in("10.0.0.0/8", "11.0.0.1"));
  assert_true(in("127.0.0.1/32", "127.0.0.1"));
  assert_false(in("127.0.0.1/32", "127.0.0.2"));
  assert_true(in("127.0.0.1", "127.0.0.1"));
  assert_true(in("192.168.1.77/26", "192.168.1.64")); /* host bits are cleared */
  assert_false(in("192.168.1.77/26", "192.168.1.128"));
  assert_true(in("172.16.0.0/12", "172.31.255.255"));
  assert_false(in("172.16.0.0/12", "172.32.0.0"));
  assert_true(in("0.0.0.0/0", "203.0.113.9"));
  assert_true(in("2001:db8::/32", "2001:db8:ffff::1"));
  assert_false(in("2001:db8::/32", "2001:db9::1"));
  assert_true(in("::1/128", "::1"));
  assert_false(in("::/0", "127.0.0.1")); /* families do not mix ... */
  assert_true(in("127.0.0.0/8", "::ffff:127.0.0.1")); /* ... but a mapped address is IPv4 */
  assert_false(in("10.0.0.0/8", "::ffff:11.0.0.1"));
  sg_cidr_t c;
  const char *bad[] = {"", "10.0.0.0/33", "::/129", "10.0.0/8", "10.0.0.0/", "10.0.0.0/08",
                       "10.0.0.0/-1", "host.example", "/8", "10.0.0.0/8/8"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
    assert_int_equal(sg_cidr_parse(bad[i], &c), SG_ERR_INVALID);
  /* Any of several. */
  sg_cidr_t two[2];
  assert_int_equal(sg_cidr_parse("10.0.0.0/8", &two[0]), 0);
  assert_int_equal(sg_cidr_parse("fd00::/8", &two[1]), 0);
  struct sockaddr_storage ss = sa("fd12::5");
  assert_true(sg_cidr_match(two, 2, (struct sockaddr *)&ss));
  ss = sa("192.0.2.1");
  assert_false(sg_cidr_match(two, 2, (struct sockaddr *)&ss));
  assert_false(sg_cidr_match(two, 0, (struct sockaddr *)&ss));
}

static void client_is(const char *v, int rfc7239, const char *addr, int port) {
  sg_cidr_t t[2];
  assert_int_equal(sg_cidr_parse("10.0.0.0/8", &t[0]), 0);
  assert_int_equal(sg_cidr_parse("fd00::/8", &t[1]), 0);
  struct sockaddr_storage ss;
  assert_int_equal(sg_forwarded_client(v, strlen(v), rfc7239, t, 2, &ss), 0);
  sg_proxy_info_t info;
  info.src = ss;
  src_is(&info, addr, port);
}

static void forwarded_refused(const char *v, int rfc7239) {
  sg_cidr_t t;
  assert_int_equal(sg_cidr_parse("10.0.0.0/8", &t), 0);
  struct sockaddr_storage ss;
  assert_int_equal(sg_forwarded_client(v, strlen(v), rfc7239, &t, 1, &ss), SG_ERR_INVALID);
}

static void forwarded(void **state) {
  (void)state;
  client_is("192.0.2.7", 0, "192.0.2.7", 0);
  client_is(" 192.0.2.7 ", 0, "192.0.2.7", 0);
  /* From the right, past the trusted proxies. */
  client_is("198.51.100.1, 192.0.2.7, 10.1.1.1,10.2.2.2", 0, "192.0.2.7", 0);
  client_is("10.1.1.1, 10.2.2.2", 0, "10.1.1.1", 0); /* all trusted: the leftmost */
  client_is("192.0.2.7:4711", 0, "192.0.2.7", 4711);
  client_is("2001:db8::1", 0, "2001:db8::1", 0);
  client_is("[2001:db8::1]:4711, fd00::9", 0, "2001:db8::1", 4711);
  client_is("[2001:db8::1]", 0, "2001:db8::1", 0);
  /* RFC 7239: for= among other parameters, quoted, any case. */
  client_is("for=192.0.2.60;proto=http;by=203.0.113.43", 1, "192.0.2.60", 0);
  client_is("for=192.0.2.43, for=\"[2001:db8:cafe::17]:4711\"", 1, "2001:db8:cafe::17", 4711);
  client_is("proto=https;For=192.0.2.43, by=10.0.0.1, for=10.9.9.9", 1, "192.0.2.43", 0);
  /* The entry reached is not an address: refused. A forged one further
   * left does not matter once an untrusted address is reached. */
  forwarded_refused("", 0);
  forwarded_refused(" , ", 0);
  forwarded_refused("unknown", 0);
  forwarded_refused("192.0.2.7, unknown", 0);
  forwarded_refused("192.0.2.7:99999", 0);
  forwarded_refused("[2001:db8::1", 0);
  forwarded_refused("300.1.1.1", 0);
  forwarded_refused("for=_hidden", 1);
  forwarded_refused("for=unknown", 1);
  forwarded_refused("proto=https", 1);
  client_is("garbage, 192.0.2.7", 0, "192.0.2.7", 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(v1_lines), cmocka_unit_test(v1_refused),
      cmocka_unit_test(v2_headers), cmocka_unit_test(v2_refused),
      cmocka_unit_test(reasons),    cmocka_unit_test(cidrs),
      cmocka_unit_test(forwarded),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
