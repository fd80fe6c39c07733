/* SPDX-License-Identifier: MIT */
#ifndef SG_WWW_SERVE_H
#define SG_WWW_SERVE_H

#include "stompgate/buf.h"
#include "stompgate/http_upgrade.h"

/* Writes into out (empty on entry) the whole HTTP response to a GET or HEAD of req->path under the
 * static root (an absolute path without symlinks, as realpath gives): 200
 * with the file, 301 to "path/" for a directory, 404 for anything missing,
 * outside the root, hidden or not a regular file. Files are read whole with
 * blocking calls: the root is meant for small local pages such as the
 * example app, not as a general web server. Returns the status sent, or
 * SG_ERR_NOMEM. */
int sg_www_respond(const char *root, const sg_http_request_t *req, sg_buf_t *out);

#endif
