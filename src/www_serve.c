/* SPDX-License-Identifier: MIT */
#include "www_serve.h"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "stompgate/err.h"
#include "stompgate/www.h"

#define WWW_FILE_MAX (16u << 20)

static int head_only(const sg_http_request_t *req) {
  return req->method.len == 4 && memcmp(req->method.p, "HEAD", 4) == 0;
}

static int not_found(sg_buf_t *out) {
  return sg_http_response_error(out, 404, "Not Found", NULL) ? SG_ERR_NOMEM : 404;
}

int sg_www_respond(const char *root, const sg_http_request_t *req, sg_buf_t *out) {
  sg_buf_t name;
  char real[PATH_MAX];
  int status = 404, fd = -1;
  sg_buf_init(&name);
  if (sg_www_resolve(req->path.p, req->path.len, &name) != 0) goto done;
  sg_buf_t full;
  sg_buf_init(&full);
  int r = sg_buf_printf(&full, "%s/%s", root, name.base);
  /* Symlinks inside the root are followed only while they stay in it. */
  const char *rp = r == 0 ? realpath(full.base, real) : NULL;
  sg_buf_free(&full);
  size_t rl = strlen(root);
  if (rp == NULL || strncmp(real, root, rl) != 0 || real[rl] != '/') goto done;
  fd = open(real, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0) goto done;
  if (S_ISDIR(st.st_mode)) {
    /* A directory named without its trailing '/': send the browser there,
     * so the relative links of its index page resolve. */
    if (sg_buf_printf(out,
                      "HTTP/1.1 301 Moved Permanently\r\nLocation: %.*s/\r\n"
                      "Content-Length: 0\r\nConnection: close\r\n\r\n",
                      (int)req->path.len, req->path.p) != 0)
      status = SG_ERR_NOMEM;
    else
      status = 301;
    goto done;
  }
  if (!S_ISREG(st.st_mode) || st.st_size > (off_t)WWW_FILE_MAX) goto done;
  size_t size = (size_t)st.st_size;
  if (sg_buf_printf(out,
                    "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                    "Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\n"
                    "Connection: close\r\n\r\n",
                    sg_www_content_type(name.base), size) != 0 ||
      sg_buf_reserve(out, size) != 0) {
    status = SG_ERR_NOMEM;
    goto done;
  }
  if (!head_only(req)) {
    size_t got = 0;
    while (got < size) {
      ssize_t n = read(fd, out->base + out->len + got, size - got);
      if (n <= 0) break;
      got += (size_t)n;
    }
    if (got != size) { /* the file changed under us */
      out->len = 0;
      goto done;
    }
    out->len += size;
    out->base[out->len] = '\0';
  }
  status = 200;
done:
  if (fd >= 0) close(fd);
  sg_buf_free(&name);
  if (status == 404) {
    out->len = 0;
    return not_found(out);
  }
  return status;
}
