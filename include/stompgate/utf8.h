/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_UTF8_H
#define STOMPGATE_UTF8_H

#include <stddef.h>
#include <stdint.h>

/* Returns 1 when s[0..len) is well-formed UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), else 0. */
int sg_utf8_valid(const void *s, size_t len);

/* Decodes the sequence at s[0..n), n >= 1: returns its length (1 to 4) and
 * stores its code point in *cp, or returns 0 when it is not well-formed
 * (by the same rules) or is cut short. */
size_t sg_utf8_decode(const uint8_t *s, size_t n, uint32_t *cp);

#endif
