/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_PROXY_PROTO_H
#define STOMPGATE_PROXY_PROTO_H

/* The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and
 * 2) that a load balancer sends before the client's bytes, naming the
 * client's address. No I/O: fed the bytes read so far, again with more. */

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* A version 1 header is one line of at most 107 bytes, CRLF included. */
#define SG_PROXY_V1_MAX 107
/* Longest version 2 address and TLV block accepted; the format allows
 * 65535, and balancers send a few hundred bytes at most. */
#define SG_PROXY_V2_MAX_BLOCK 1024

typedef struct sg_proxy_info {
  int version;        /* 1 or 2 */
  /* No client address: a v1 UNKNOWN line, a v2 LOCAL command (the
   * balancer's own health check), or a v2 family other than TCP over IPv4
   * or IPv6. The connection's own address then stands. */
  int local;
  struct sockaddr_storage src; /* the client (AF_INET or AF_INET6) unless local */
  struct sockaddr_storage dst; /* the address the client connected to */
  size_t header_len;  /* bytes of the header; the client's bytes follow */
  /* On SG_ERR_INVALID, why the bytes are not a header: "no_header" (no
   * v1 or v2 signature), "too_long" (a v1 line past SG_PROXY_V1_MAX, a v2
   * block past SG_PROXY_V2_MAX_BLOCK), "bad_length" (a v2 length that does
   * not fit its addresses or TLVs) or "malformed". Static text. */
  const char *why;
} sg_proxy_info_t;

/* Parses a PROXY header at the start of buf[0..len). Returns
 *   SG_ERR_AGAIN while the bytes so far can still begin a header (read
 *     more and call again with all of them);
 *   0 with *info filled once the header is complete (bytes after it are
 *     not looked at);
 *   SG_ERR_INVALID as soon as the bytes cannot be one: no v1 or v2
 *     signature, a v1 line longer than SG_PROXY_V1_MAX or with a bad
 *     protocol, address or port, a v2 version other than 2, an unknown
 *     command, family or transport, a block shorter than its addresses or
 *     longer than SG_PROXY_V2_MAX_BLOCK, or TLVs that overrun the block.
 * Borrows buf for the call. */
int sg_proxy_parse(const uint8_t *buf, size_t len, sg_proxy_info_t *info);

/* An address block: an IPv4 or IPv6 address and a prefix length. */
typedef struct sg_cidr {
  int family;        /* AF_INET or AF_INET6 */
  unsigned bits;     /* 0..32 or 0..128 */
  uint8_t addr[16];  /* network order, bits past the prefix zero */
} sg_cidr_t;

/* Parses "192.0.2.0/24", "2001:db8::/32", or a lone address (all its
 * bits). Bits past the prefix are cleared. 0 or SG_ERR_INVALID. */
int sg_cidr_parse(const char *s, sg_cidr_t *out);
/* Whether sa (AF_INET or AF_INET6; an IPv4-mapped IPv6 address counts as
 * the IPv4 one) lies in any of the n blocks. */
int sg_cidr_match(const sg_cidr_t *c, size_t n, const struct sockaddr *sa);

/* The client a chain of HTTP proxies reports: an X-Forwarded-For value
 * ("client, proxy1, proxy2"; rfc7239 = 0) or a Forwarded one
 * ("for=client;proto=https, for=proxy1"; rfc7239 = 1). Walks from the
 * right, the entry the nearest proxy added, past the addresses that lie in
 * trusted[0..n), and gives the first other one (the leftmost when all are
 * trusted). Entries may carry a port ("192.0.2.1:8080",
 * "[2001:db8::1]:8080"; Forwarded values may be quoted). Returns 0 with
 * *out set (port 0 when none was given), or SG_ERR_INVALID when the entry
 * reached is not an IP address (empty, "unknown", an obfuscated name) or
 * the value is malformed. Borrows v for the call. */
int sg_forwarded_client(const char *v, size_t len, int rfc7239, const sg_cidr_t *trusted,
                        size_t n, struct sockaddr_storage *out);

#endif
