/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_UTF8_H
#define STOMPGATE_UTF8_H

#include <stddef.h>

/* Returns 1 when s[0..len) is well-formed UTF-8 (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), else 0. */
int sg_utf8_valid(const void *s, size_t len);

#endif
