/* SPDX-License-Identifier: MIT */
#ifndef SG_LOG_H
#define SG_LOG_H

enum sg_log_level { SG_LOG_ERROR = 0, SG_LOG_WARN, SG_LOG_INFO, SG_LOG_DEBUG };

/* Parses "error", "warn", "info" or "debug"; -1 when unknown. */
int sg_log_level_parse(const char *s);
void sg_log_set_level(int level);
int sg_log_enabled(int level);
/* Writes one line to stderr: time, level, message. */
void sg_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sg_log_error(...) sg_log(SG_LOG_ERROR, __VA_ARGS__)
#define sg_log_warn(...) sg_log(SG_LOG_WARN, __VA_ARGS__)
#define sg_log_info(...) \
  do { if (sg_log_enabled(SG_LOG_INFO)) sg_log(SG_LOG_INFO, __VA_ARGS__); } while (0)
#define sg_log_debug(...) \
  do { if (sg_log_enabled(SG_LOG_DEBUG)) sg_log(SG_LOG_DEBUG, __VA_ARGS__); } while (0)

#endif
