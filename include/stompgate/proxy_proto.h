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

#endif
