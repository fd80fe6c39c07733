/* SPDX-License-Identifier: MIT */
#include "stompgate/www.h"

#include <string.h>
#include <strings.h>

#include "stompgate/err.h"

#define WWW_PATH_MAX 1024

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int sg_www_resolve(const char *path, size_t len, sg_buf_t *out) {
  char name[WWW_PATH_MAX + 16];
  size_t n = 0, seg_start = 0;
  if (len == 0 || path[0] != '/' || len > WWW_PATH_MAX) return SG_ERR_INVALID;
  /* Decode first, then judge the segments: "%2e%2e" is ".." too. */
  for (size_t i = 1; i < len; i++) {
    char c = path[i];
    if (c == '%') {
      int hi = i + 2 < len ? hexval(path[i + 1]) : -1;
      int lo = i + 2 < len ? hexval(path[i + 2]) : -1;
      if (hi < 0 || lo < 0) return SG_ERR_INVALID;
      c = (char)(hi * 16 + lo);
      i += 2;
      if (c == '/') return SG_ERR_INVALID; /* an escaped separator hides a segment */
    }
    if (c == '\0' || c == '\\') return SG_ERR_INVALID;
    if (c == '/') {
      if (n == seg_start) return SG_ERR_INVALID; /* "//" */
      seg_start = n + 1;
    } else if (n == seg_start && c == '.') {
      return SG_ERR_INVALID; /* ".", "..", ".hidden" */
    }
    name[n++] = c;
  }
  if (n == seg_start) {
    /* The path ends with '/' (or is "/"): its index page. */
    memcpy(name + n, "index.html", 10);
    n += 10;
  }
  return sg_buf_append(out, name, n);
}

const char *sg_www_content_type(const char *name) {
  static const char *const types[][2] = {
      {".html", "text/html; charset=utf-8"}, {".htm", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"}, {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"}, {".json", "application/json"},
      {".map", "application/json"}, {".txt", "text/plain; charset=utf-8"},
      {".svg", "image/svg+xml"}, {".png", "image/png"}, {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"}, {".gif", "image/gif"}, {".ico", "image/x-icon"},
      {".webp", "image/webp"}, {".woff2", "font/woff2"}, {".wasm", "application/wasm"},
  };
  const char *dot = strrchr(name, '.');
  if (dot && strchr(dot, '/') == NULL)
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
      if (strcasecmp(dot, types[i][0]) == 0) return types[i][1];
  return "application/octet-stream";
}
