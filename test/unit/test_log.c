/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs fn with stderr sent to a file; returns what it wrote (free it). */
static char *capture(void (*fn)(void)) {
  char path[] = "/tmp/sg-test-log-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  fflush(stderr);
  int saved = dup(2);
  assert_true(saved >= 0);
  assert_true(dup2(fd, 2) == 2);
  fn();
  fflush(stderr);
  assert_true(dup2(saved, 2) == 2);
  close(saved);
  off_t n = lseek(fd, 0, SEEK_END);
  char *out = calloc(1, (size_t)n + 1);
  assert_non_null(out);
  assert_int_equal(pread(fd, out, (size_t)n, 0), n);
  close(fd);
  unlink(path);
  return out;
}

static void lines_json(void) {
  sg_log_set_format(1);
  sg_log_info("plain %d", 1);
  sg_log_warn("quote \" backslash \\ newline\n tab\t ctl\x01 utf8 \xc3\xa9");
  sg_log_error("not utf8 \xff\xfe end");
  sg_log_debug("not shown at info");
  sg_log_access_t a = {7, "10.0.0.5:51234", "guest", "/", "ERROR \"x\"", 1.5, 3, 4, 100, 200};
  sg_log_access(SG_LOG_INFO, &a);
  sg_log_set_format(0);
}

static void json_lines(void **state) {
  (void)state;
  sg_log_set_level(SG_LOG_INFO);
  char *out = capture(lines_json);
  const char *want_msg[] = {"plain 1",
                            "quote \" backslash \\ newline\n tab\t ctl\x01 utf8 \xc3\xa9",
                            "not utf8 \xc3\xbf\xc3\xbe end", /* each byte as its code point */
                            "session-7 closed (10.0.0.5:51234): ERROR \"x\""};
  const char *want_level[] = {"info", "warn", "error", "info"};
  int n = 0;
  for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"), n++) {
    assert_true(n < 4);
    cJSON *o = cJSON_Parse(line);
    assert_non_null(o);
    const char *ts = cJSON_GetStringValue(cJSON_GetObjectItem(o, "ts"));
    assert_non_null(ts);
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[23], 'Z');
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "level")), want_level[n]);
    assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "msg")), want_msg[n]);
    if (n == 3) {
      assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "event")), "session_closed");
      assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "client")), "10.0.0.5:51234");
      assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "user")), "guest");
      assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "vhost")), "/");
      assert_string_equal(cJSON_GetStringValue(cJSON_GetObjectItem(o, "reason")), "ERROR \"x\"");
      assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "session")) == 7);
      assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "duration_s")) == 1.5);
      assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "frames_in")) == 3);
      assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "frames_out")) == 4);
      assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "bytes_in")) == 100);
      assert_true(cJSON_GetNumberValue(cJSON_GetObjectItem(o, "bytes_out")) == 200);
    } else {
      assert_null(cJSON_GetObjectItem(o, "event"));
    }
    cJSON_Delete(o);
  }
  assert_int_equal(n, 4);
  free(out);
}

static void lines_text(void) {
  sg_log_info("plain %s", "text");
  sg_log_access_t a = {9, "127.0.0.1:1", "", NULL, "DISCONNECT", 0.25, 1, 2, 3, 4};
  sg_log_access(SG_LOG_INFO, &a);
}

static void text_lines(void **state) {
  (void)state;
  sg_log_set_level(SG_LOG_INFO);
  char *out = capture(lines_text);
  char *nl = strchr(out, '\n');
  assert_non_null(nl);
  *nl = '\0';
  assert_int_equal(strlen(out), 24 + 7 + strlen("plain text"));
  assert_string_equal(out + 24, " info  plain text");
  assert_string_equal(nl + 1 + 24, " info  session-9 closed (127.0.0.1:1): DISCONNECT (user=- vhost=- "
                                   "duration_s=0.250 frames_in=1 frames_out=2 bytes_in=3 "
                                   "bytes_out=4)\n");
  free(out);
}

static void formats(void **state) {
  (void)state;
  assert_int_equal(sg_log_format_parse("text"), 0);
  assert_int_equal(sg_log_format_parse("json"), 1);
  assert_int_equal(sg_log_format_parse("JSON"), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(json_lines),
      cmocka_unit_test(text_lines),
      cmocka_unit_test(formats),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
