/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_WWW_H
#define STOMPGATE_WWW_H

/* The optional static file root (--www): maps a request path to a file
 * name under the root, refusing anything that could leave it. No I/O. */

#include <stddef.h>

#include "stompgate/buf.h"

/* Appends to out the file name, relative to the root, that the URL path
 * path[0..len) (query already removed) names: percent-escapes decoded, a
 * trailing '/' served as "index.html". Returns 0, or SG_ERR_INVALID for a
 * path that does not start with '/', contains NUL, '\\', a bad escape, an
 * empty, "." or ".." segment, or a segment starting with '.' (hidden
 * files), or is longer than 1024 bytes; SG_ERR_NOMEM. out is unchanged on
 * failure. */
int sg_www_resolve(const char *path, size_t len, sg_buf_t *out);

/* The Content-Type for a file name, from its extension. Static string. */
const char *sg_www_content_type(const char *name);

#endif
