/* SPDX-License-Identifier: MIT */
#include "stompgate/err.h"

#include <string.h>

const char *sg_strerror(int err) {
  switch (err) {
  case SG_OK: return "Success";
  case SG_ERR_NOMEM: return "Out of memory";
  case SG_ERR_AGAIN: return "More input needed";
  case SG_ERR_INVALID: return "Invalid value";
  case SG_ERR_FRAME_TOO_LARGE: return "Frame too large";
  case SG_ERR_TOO_MANY_HEADERS: return "Too many headers";
  case SG_ERR_HEADER_TOO_LONG: return "Header too long";
  case SG_ERR_BAD_ESCAPE: return "Invalid header escape";
  case SG_ERR_BAD_CONTENT_LENGTH: return "Invalid content-length";
  case SG_ERR_MALFORMED_FRAME: return "Malformed frame";
  case SG_ERR_BAD_DESTINATION: return "Invalid destination";
  case SG_ERR_HTTP: return "HTTP request refused";
  default:
    if (err < 0 && err > -1000) return strerror(-err);
    return "Unknown error";
  }
}
