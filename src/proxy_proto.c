/* SPDX-License-Identifier: MIT */
#include "stompgate/proxy_proto.h"

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "stompgate/err.h"

static const uint8_t v2_sig[12] = {0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d,
                                   0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a};
static const char v1_sig[] = "PROXY ";

/* Bytes that cannot be a header; why names the cause for logs and metric
 * labels. */
static int refuse(sg_proxy_info_t *info, const char *why) {
  info->why = why;
  return SG_ERR_INVALID;
}

/* A port: 0..65535 in decimal, no leading zero. -1 otherwise. */
static long port(const char *s, size_t n) {
  if (n == 0 || n > 5 || (n > 1 && s[0] == '0')) return -1;
  long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v <= 65535 ? v : -1;
}

/* The address in s[0..n) of family af into ss, with port p. 0 or -1. */
static int address(int af, const char *s, size_t n, long p, struct sockaddr_storage *ss) {
  char tmp[INET6_ADDRSTRLEN];
  if (n == 0 || n >= sizeof(tmp) || p < 0) return -1;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  memset(ss, 0, sizeof(*ss));
  if (af == AF_INET) {
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)p);
    return inet_pton(AF_INET, tmp, &a->sin_addr) == 1 ? 0 : -1;
  }
  struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
  a->sin6_family = AF_INET6;
  a->sin6_port = htons((uint16_t)p);
  return inet_pton(AF_INET6, tmp, &a->sin6_addr) == 1 ? 0 : -1;
}

/* "PROXY TCP4 SRC DST SPORT DPORT\r\n", "PROXY TCP6 ...", or
 * "PROXY UNKNOWN[ anything]\r\n": fields separated by one space. */
static int parse_v1(const uint8_t *buf, size_t len, sg_proxy_info_t *info) {
  const char *s = (const char *)buf;
  size_t n = len < SG_PROXY_V1_MAX ? len : SG_PROXY_V1_MAX;
  const char *lf = memchr(s, '\n', n);
  if (lf == NULL) {
    /* Only printable ASCII before the line end, and no line longer than
     * the format allows. */
    for (size_t i = sizeof(v1_sig) - 1; i < n; i++)
      if ((s[i] < 0x20 || s[i] > 0x7e) && !(s[i] == '\r' && i == len - 1))
        return refuse(info, "malformed");
    return len >= SG_PROXY_V1_MAX ? refuse(info, "too_long") : SG_ERR_AGAIN;
  }
  size_t line = (size_t)(lf - s);
  if (line < sizeof(v1_sig) || s[line - 1] != '\r') return refuse(info, "malformed");
  const char *p = s + sizeof(v1_sig) - 1, *end = s + line - 1;
  for (const char *c = p; c < end; c++)
    if (*c < 0x20 || *c > 0x7e) return refuse(info, "malformed");
  memset(info, 0, sizeof(*info));
  info->version = 1;
  info->header_len = line + 1;
  if ((size_t)(end - p) >= 7 && memcmp(p, "UNKNOWN", 7) == 0 && (end - p == 7 || p[7] == ' ')) {
    info->local = 1;
    return 0;
  }
  int af;
  if ((size_t)(end - p) > 5 && memcmp(p, "TCP4 ", 5) == 0) af = AF_INET;
  else if ((size_t)(end - p) > 5 && memcmp(p, "TCP6 ", 5) == 0) af = AF_INET6;
  else return refuse(info, "malformed");
  p += 5;
  const char *f[4];
  size_t fl[4];
  for (int i = 0; i < 4; i++) {
    const char *sp = i < 3 ? memchr(p, ' ', (size_t)(end - p)) : end;
    if (sp == NULL) return refuse(info, "malformed");
    f[i] = p;
    fl[i] = (size_t)(sp - p);
    if (fl[i] == 0) return refuse(info, "malformed");
    p = sp + (i < 3);
  }
  if (memchr(f[3], ' ', fl[3]) != NULL) return refuse(info, "malformed");
  if (address(af, f[0], fl[0], port(f[2], fl[2]), &info->src) != 0 ||
      address(af, f[1], fl[1], port(f[3], fl[3]), &info->dst) != 0)
    return refuse(info, "malformed");
  return 0;
}

static int parse_v2(const uint8_t *buf, size_t len, sg_proxy_info_t *info) {
  if (len < 16) {
    /* What has come of the fixed part must already make sense. */
    if (len > 12 && (buf[12] >> 4) != 2) return refuse(info, "malformed");
    return SG_ERR_AGAIN;
  }
  uint8_t ver = buf[12] >> 4, cmd = buf[12] & 0x0f, fam = buf[13] >> 4, proto = buf[13] & 0x0f;
  size_t block = ((size_t)buf[14] << 8) | buf[15];
  if (ver != 2 || cmd > 1 || fam > 3 || proto > 2) return refuse(info, "malformed");
  if (block > SG_PROXY_V2_MAX_BLOCK) return refuse(info, "too_long");
  static const size_t addr_len[4] = {0, 12, 36, 216};
  if (block < addr_len[fam]) return refuse(info, "bad_length");
  if (len < 16 + block) return SG_ERR_AGAIN;
  /* TLVs fill the rest of the block exactly: type, 16-bit length, value. */
  const uint8_t *t = buf + 16 + addr_len[fam], *e = buf + 16 + block;
  while (t < e) {
    if (e - t < 3) return refuse(info, "bad_length");
    size_t tl = ((size_t)t[1] << 8) | t[2];
    if ((size_t)(e - t - 3) < tl) return refuse(info, "bad_length");
    t += 3 + tl;
  }
  memset(info, 0, sizeof(*info));
  info->version = 2;
  info->header_len = 16 + block;
  /* LOCAL: the balancer speaking for itself. UNSPEC and UNIX carry no IP
   * address, and a datagram transport is not this connection's. */
  if (cmd == 0 || fam == 0 || fam == 3 || proto != 1) {
    info->local = 1;
    return 0;
  }
  const uint8_t *a = buf + 16;
  if (fam == 1) {
    struct sockaddr_in *s = (struct sockaddr_in *)&info->src, *d = (struct sockaddr_in *)&info->dst;
    s->sin_family = d->sin_family = AF_INET;
    memcpy(&s->sin_addr, a, 4);
    memcpy(&d->sin_addr, a + 4, 4);
    memcpy(&s->sin_port, a + 8, 2);
    memcpy(&d->sin_port, a + 10, 2);
  } else {
    struct sockaddr_in6 *s = (struct sockaddr_in6 *)&info->src,
                        *d = (struct sockaddr_in6 *)&info->dst;
    s->sin6_family = d->sin6_family = AF_INET6;
    memcpy(&s->sin6_addr, a, 16);
    memcpy(&d->sin6_addr, a + 16, 16);
    memcpy(&s->sin6_port, a + 32, 2);
    memcpy(&d->sin6_port, a + 34, 2);
  }
  return 0;
}

int sg_proxy_parse(const uint8_t *buf, size_t len, sg_proxy_info_t *info) {
  if (len == 0) return SG_ERR_AGAIN;
  /* The signatures decide at their first differing byte. */
  if (buf[0] == v2_sig[0]) {
    size_t n = len < sizeof(v2_sig) ? len : sizeof(v2_sig);
    if (memcmp(buf, v2_sig, n) != 0) return refuse(info, "no_header");
    return len < sizeof(v2_sig) ? SG_ERR_AGAIN : parse_v2(buf, len, info);
  }
  size_t n = len < sizeof(v1_sig) - 1 ? len : sizeof(v1_sig) - 1;
  if (memcmp(buf, v1_sig, n) != 0) return refuse(info, "no_header");
  return len < sizeof(v1_sig) - 1 ? SG_ERR_AGAIN : parse_v1(buf, len, info);
}

int sg_cidr_parse(const char *s, sg_cidr_t *out) {
  char tmp[INET6_ADDRSTRLEN + 4];
  const char *slash = strchr(s, '/');
  size_t n = slash ? (size_t)(slash - s) : strlen(s);
  if (n == 0 || n >= sizeof(tmp)) return SG_ERR_INVALID;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  memset(out, 0, sizeof(*out));
  unsigned max;
  if (inet_pton(AF_INET, tmp, out->addr) == 1) {
    out->family = AF_INET;
    max = 32;
  } else if (inet_pton(AF_INET6, tmp, out->addr) == 1) {
    out->family = AF_INET6;
    max = 128;
  } else {
    return SG_ERR_INVALID;
  }
  out->bits = max;
  if (slash) {
    long b = port(slash + 1, strlen(slash + 1));
    if (b < 0 || (unsigned long)b > max) return SG_ERR_INVALID;
    out->bits = (unsigned)b;
  }
  for (unsigned i = out->bits; i < max; i++) out->addr[i / 8] &= (uint8_t)~(0x80u >> (i % 8));
  return 0;
}

int sg_cidr_match(const sg_cidr_t *c, size_t n, const struct sockaddr *sa) {
  static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  const uint8_t *a;
  int family = sa->sa_family;
  if (family == AF_INET) {
    a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
  } else if (family == AF_INET6) {
    a = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    if (memcmp(a, mapped, sizeof(mapped)) == 0) {
      a += sizeof(mapped);
      family = AF_INET;
    }
  } else {
    return 0;
  }
  for (size_t i = 0; i < n; i++) {
    if (c[i].family != family) continue;
    unsigned whole = c[i].bits / 8, rest = c[i].bits % 8;
    if (memcmp(a, c[i].addr, whole) != 0) continue;
    if (rest && ((a[whole] ^ c[i].addr[whole]) & (uint8_t)(0xff00u >> rest)) != 0) continue;
    return 1;
  }
  return 0;
}

static int ows(char c) { return c == ' ' || c == '\t'; }

/* One forwarded node: "192.0.2.1", "192.0.2.1:80", "2001:db8::1",
 * "[2001:db8::1]", "[2001:db8::1]:80". 0 or -1. */
static int node(const char *s, size_t n, struct sockaddr_storage *out) {
  if (n > 0 && s[0] == '[') {
    const char *rb = memchr(s, ']', n);
    if (rb == NULL) return -1;
    size_t rest = n - (size_t)(rb + 1 - s);
    long p = 0;
    if (rest > 0 && (rb[1] != ':' || (p = port(rb + 2, rest - 1)) < 0)) return -1;
    return address(AF_INET6, s + 1, (size_t)(rb - s - 1), p, out);
  }
  const char *colon = memchr(s, ':', n);
  if (colon != NULL && memchr(colon + 1, ':', n - (size_t)(colon + 1 - s)) != NULL)
    return address(AF_INET6, s, n, 0, out);
  if (colon != NULL) {
    long p = port(colon + 1, n - (size_t)(colon + 1 - s));
    return address(AF_INET, s, (size_t)(colon - s), p, out);
  }
  return address(AF_INET, s, n, 0, out);
}

/* The for= parameter of one Forwarded element, unquoted; NULL if none. */
static const char *forwarded_for(const char *s, size_t n, size_t *out_len) {
  const char *e = s + n;
  while (s < e) {
    const char *semi = memchr(s, ';', (size_t)(e - s));
    const char *pe = semi ? semi : e;
    while (s < pe && ows(*s)) s++;
    if (pe - s >= 4 && strncasecmp(s, "for=", 4) == 0) {
      const char *v = s + 4, *ve = pe;
      while (ve > v && ows(ve[-1])) ve--;
      if (ve - v >= 2 && v[0] == '"' && ve[-1] == '"') v++, ve--;
      *out_len = (size_t)(ve - v);
      return v;
    }
    s = semi ? semi + 1 : e;
  }
  return NULL;
}

int sg_forwarded_client(const char *v, size_t len, int rfc7239, const sg_cidr_t *trusted,
                        size_t n, struct sockaddr_storage *out) {
  const char *end = v + len;
  int found = 0;
  while (end > v) {
    /* The entry after the last comma still left. */
    const char *s = end;
    while (s > v && s[-1] != ',') s--;
    const char *ee = end;
    end = s > v ? s - 1 : v;
    while (s < ee && ows(*s)) s++;
    while (ee > s && ows(ee[-1])) ee--;
    size_t el = (size_t)(ee - s);
    if (rfc7239) {
      s = forwarded_for(s, el, &el);
      if (s == NULL) continue; /* an element that names no client */
    }
    if (el == 0 || node(s, el, out) != 0) return SG_ERR_INVALID;
    found = 1;
    if (!sg_cidr_match(trusted, n, (const struct sockaddr *)out)) return 0;
  }
  return found ? 0 : SG_ERR_INVALID;
}
