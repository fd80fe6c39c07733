/* SPDX-License-Identifier: MIT */
#include "log.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include "stompgate/buf.h"
#include "stompgate/utf8.h"

static int log_level = SG_LOG_INFO;
static int log_json;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

int sg_log_level_parse(const char *s) {
  for (int i = 0; i < 4; i++)
    if (strcmp(s, level_names[i]) == 0) return i;
  return -1;
}

void sg_log_set_level(int level) { log_level = level; }

int sg_log_enabled(int level) { return level <= log_level; }

int sg_log_format_parse(const char *s) {
  if (strcmp(s, "text") == 0) return 0;
  if (strcmp(s, "json") == 0) return 1;
  return -1;
}

void sg_log_set_format(int json) { log_json = json; }

/* ISO 8601 UTC with milliseconds (24 characters for years 1000-9999). */
static void timestamp(char out[64]) {
  struct timeval tv;
  struct tm tm;
  gettimeofday(&tv, NULL);
  gmtime_r(&tv.tv_sec, &tm);
  snprintf(out, 64, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
           tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(tv.tv_usec / 1000));
}

/* Appends s as a JSON string, quotes included. Control characters become
 * escapes; so do the bytes >= 0x80 of a string that is not valid UTF-8
 * (log messages quote client input), each as the code point of its value,
 * so that every line stays valid JSON. */
static void json_str(sg_buf_t *b, const char *s) {
  if (s == NULL) s = "";
  int utf8 = sg_utf8_valid(s, strlen(s));
  sg_buf_appendz(b, "\"");
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char e[8];
    if (*p == '"' || *p == '\\') {
      e[0] = '\\';
      e[1] = (char)*p;
      sg_buf_append(b, e, 2);
    } else if (*p == '\n') {
      sg_buf_appendz(b, "\\n");
    } else if (*p == '\r') {
      sg_buf_appendz(b, "\\r");
    } else if (*p == '\t') {
      sg_buf_appendz(b, "\\t");
    } else if (*p < 0x20 || *p == 0x7f || (*p >= 0x80 && !utf8)) {
      snprintf(e, sizeof(e), "\\u%04x", *p);
      sg_buf_appendz(b, e);
    } else {
      sg_buf_append(b, (const char *)p, 1);
    }
  }
  sg_buf_appendz(b, "\"");
}

static void json_start(sg_buf_t *b, int level, const char *msg) {
  char ts[64];
  timestamp(ts);
  sg_buf_printf(b, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, level_names[level]);
  json_str(b, msg);
}

/* One write per line keeps lines whole when several threads log. */
static void emit(const char *line, size_t len) { fwrite(line, 1, len, stderr); }

static void vlog(int level, const sg_log_access_t *a, const char *fmt, va_list ap) {
  char msg[1024];
  int m = vsnprintf(msg, sizeof(msg), fmt, ap);
  if (m < 0) msg[0] = '\0';
  sg_buf_t b;
  sg_buf_init(&b);
  if (log_json) {
    json_start(&b, level, msg);
    if (a) {
      sg_buf_appendz(&b, ",\"event\":\"session_closed\",\"client\":");
      json_str(&b, a->client);
      sg_buf_appendz(&b, ",\"user\":");
      json_str(&b, a->user);
      sg_buf_appendz(&b, ",\"vhost\":");
      json_str(&b, a->vhost);
      sg_buf_printf(&b,
                    ",\"session\":%" PRIu64 ",\"duration_s\":%.3f,\"frames_in\":%" PRIu64
                    ",\"frames_out\":%" PRIu64 ",\"bytes_in\":%" PRIu64
                    ",\"bytes_out\":%" PRIu64 ",\"reason\":",
                    a->session, a->duration_s, a->frames_in, a->frames_out, a->bytes_in,
                    a->bytes_out);
      json_str(&b, a->reason);
    }
    sg_buf_appendz(&b, "}\n");
  } else {
    char ts[64];
    timestamp(ts);
    sg_buf_printf(&b, "%s %-5s %s", ts, level_names[level], msg);
    if (a)
      sg_buf_printf(&b,
                    " (user=%s vhost=%s duration_s=%.3f frames_in=%" PRIu64
                    " frames_out=%" PRIu64 " bytes_in=%" PRIu64 " bytes_out=%" PRIu64 ")",
                    a->user && *a->user ? a->user : "-", a->vhost && *a->vhost ? a->vhost : "-",
                    a->duration_s, a->frames_in, a->frames_out, a->bytes_in, a->bytes_out);
    sg_buf_appendz(&b, "\n");
  }
  if (b.base) emit(b.base, b.len);
  sg_buf_free(&b);
}

void sg_log(int level, const char *fmt, ...) {
  if (level > log_level) return;
  va_list ap;
  va_start(ap, fmt);
  vlog(level, NULL, fmt, ap);
  va_end(ap);
}

static void access_line(int level, const sg_log_access_t *a, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void access_line(int level, const sg_log_access_t *a, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vlog(level, a, fmt, ap);
  va_end(ap);
}

void sg_log_access(int level, const sg_log_access_t *a) {
  if (level > log_level) return;
  access_line(level, a, "session-%" PRIu64 " closed (%s): %s", a->session,
              a->client ? a->client : "", a->reason ? a->reason : "closed");
}
