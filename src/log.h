/* SPDX-License-Identifier: MIT */
#ifndef SG_LOG_H
#define SG_LOG_H

#include <stdint.h>

enum sg_log_level { SG_LOG_ERROR = 0, SG_LOG_WARN, SG_LOG_INFO, SG_LOG_DEBUG };

/* Parses "error", "warn", "info" or "debug"; -1 when unknown. */
int sg_log_level_parse(const char *s);
void sg_log_set_level(int level);
int sg_log_enabled(int level);
/* "text" (0) or "json" (1); -1 when unknown. */
int sg_log_format_parse(const char *s);
/* Text lines (the default) or one JSON object per line. */
void sg_log_set_format(int json);
/* Writes one line to stderr: time, level, message. In JSON:
 * {"ts":"...Z","level":"info","msg":"..."}. */
void sg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* A session's close line, the access log. Text: the message, then the
 * fields as key=value; JSON: msg and event "session_closed" with every
 * field by the names below. Strings are borrowed; NULL counts as "". */
typedef struct sg_log_access {
  uint64_t session;
  const char *client, *user, *vhost, *reason;
  double duration_s;
  uint64_t frames_in, frames_out, bytes_in, bytes_out;
} sg_log_access_t;
void sg_log_access(int level, const sg_log_access_t *a);

#define sg_log_error(...) sg_log(SG_LOG_ERROR, __VA_ARGS__)
#define sg_log_warn(...) sg_log(SG_LOG_WARN, __VA_ARGS__)
#define sg_log_info(...) \
  do { if (sg_log_enabled(SG_LOG_INFO)) sg_log(SG_LOG_INFO, __VA_ARGS__); } while (0)
#define sg_log_debug(...) \
  do { if (sg_log_enabled(SG_LOG_DEBUG)) sg_log(SG_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
