/* SPDX-License-Identifier: MIT */
#ifndef STOMPGATE_ERR_H
#define STOMPGATE_ERR_H

/* Every fallible function returns 0 (or a non-negative count) on success
 * and a negative value on failure: either a libuv/errno code passed through
 * unchanged (UV_E*, > -1000) or one of these. */
enum sg_err {
  SG_OK = 0,
  SG_ERR_NOMEM = -1001,
  SG_ERR_AGAIN = -1002,          /* need more input; not a failure */
  SG_ERR_INVALID = -1003,        /* invalid argument or value */
  SG_ERR_FRAME_TOO_LARGE = -1010,
  SG_ERR_TOO_MANY_HEADERS = -1011,
  SG_ERR_HEADER_TOO_LONG = -1012,
  SG_ERR_BAD_ESCAPE = -1013,
  SG_ERR_BAD_CONTENT_LENGTH = -1014,
  SG_ERR_MALFORMED_FRAME = -1015,
  SG_ERR_BAD_DESTINATION = -1020,
  SG_ERR_HTTP = -1030,           /* request refused; see the HTTP status */
};

/* Returns a static, human-readable description of err. */
const char *sg_strerror(int err);

#endif
