/* SPDX-License-Identifier: MIT */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "config.h"

static char *write_file(const char *text) {
  static char path[64];
  snprintf(path, sizeof(path), "/tmp/sg-test-config-XXXXXX");
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  return path;
}

static int load(sg_config_t *cfg, char **argv, char **envp) {
  int argc = 0;
  while (argv[argc]) argc++;
  return sg_config_load(cfg, argc, argv, envp);
}

static void precedence(void **state) {
  (void)state;
  char *file = write_file("[stompgate]\nmax-sessions = 10\nsession-rate = 5\nws-path = /f\n"
                          "allowed-origin = https://a.example, https://b.example\n");
  char cf[sizeof("STOMPGATE_CONFIG=") + 64]; /* file is write_file's path[64] */
  snprintf(cf, sizeof(cf), "STOMPGATE_CONFIG=%s", file);
  char *envp[] = {cf, "STOMPGATE_MAX_SESSIONS=20", "STOMPGATE_WS_PATH=/e", "STOMPGATE_BIN=x", NULL};
  char *argv[] = {"stompgate", "--ws-path", "/flag", NULL};
  sg_config_t cfg;
  assert_int_equal(load(&cfg, argv, envp), 0);
  assert_int_equal(cfg.max_sessions, 20);  /* env over file */
  assert_int_equal(cfg.session_rate, 5);   /* file over default */
  assert_int_equal(cfg.session_burst, 5);  /* defaults to the rate */
  assert_string_equal(cfg.ws_path, "/flag"); /* flag over env */
  assert_int_equal(cfg.allowed_origins.n, 2);
  assert_int_equal(cfg.nbrokers, 1);
  sg_config_free(&cfg);
  unlink(file);
}

static void broker_list(void **state) {
  (void)state;
  char *envp[] = {"STOMPGATE_BROKER=amqp://u:p@h1:1/v,amqp://u:p@h2:2/v", NULL};
  char *argv[] = {"stompgate", NULL};
  sg_config_t cfg;
  assert_int_equal(load(&cfg, argv, envp), 0);
  assert_int_equal(cfg.nbrokers, 2);
  assert_string_equal(cfg.brokers[1].host, "h2");
  assert_string_equal(cfg.broker.host, "h1");
  assert_string_equal(cfg.broker.vhost, "v");
  sg_config_free(&cfg);
  /* Flags replace the environment's list. */
  char *argv2[] = {"stompgate", "--broker", "amqps://u:p@h3:3/v", NULL};
  assert_int_equal(load(&cfg, argv2, envp), 0);
  assert_int_equal(cfg.nbrokers, 1);
  assert_int_equal(cfg.broker.tls, 1);
  sg_config_free(&cfg);
  char *argv3[] = {"stompgate", "--broker", "amqp://u:p@h1/", "--broker", "amqps://u:p@h2/", NULL};
  char *none[] = {NULL};
  assert_int_equal(load(&cfg, argv3, none), 2); /* mixed schemes */
  sg_config_free(&cfg);
}

static void invalid(void **state) {
  (void)state;
  char *none[] = {NULL};
  sg_config_t cfg;
  char *a1[] = {"stompgate", "--max-frame-size", "1", NULL};
  assert_int_equal(load(&cfg, a1, none), 2);
  sg_config_free(&cfg);
  char *e1[] = {"STOMPGATE_SESSION_RATE=fast", NULL};
  char *a0[] = {"stompgate", NULL};
  assert_int_equal(load(&cfg, a0, e1), 2);
  sg_config_free(&cfg);
  char *file = write_file("nonsense = 1\n");
  char *a2[] = {"stompgate", "--config", file, NULL};
  assert_int_equal(load(&cfg, a2, none), 2);
  sg_config_free(&cfg);
  unlink(file);
  char *a3[] = {"stompgate", "--tls-key", "/etc/hostname", NULL};
  assert_int_equal(load(&cfg, a3, none), 2);
  sg_config_free(&cfg);
}

static void log_format(void **state) {
  (void)state;
  char *none[] = {NULL};
  sg_config_t cfg;
  char *a0[] = {"stompgate", NULL};
  assert_int_equal(load(&cfg, a0, none), 0);
  assert_int_equal(cfg.log_json, 0); /* text by default */
  sg_config_free(&cfg);
  char *a1[] = {"stompgate", "--log-format", "json", NULL};
  assert_int_equal(load(&cfg, a1, none), 0);
  assert_int_equal(cfg.log_json, 1);
  sg_config_free(&cfg);
  char *e1[] = {"STOMPGATE_LOG_FORMAT=text", NULL};
  assert_int_equal(load(&cfg, a0, e1), 0);
  assert_int_equal(cfg.log_json, 0);
  sg_config_free(&cfg);
  char *a2[] = {"stompgate", "--log-format", "xml", NULL};
  assert_int_equal(load(&cfg, a2, none), 2);
  sg_config_free(&cfg);
}

static void sockjs(void **state) {
  (void)state;
  char *none[] = {NULL};
  sg_config_t cfg;
  char *a0[] = {"stompgate", NULL};
  assert_int_equal(load(&cfg, a0, none), 0);
  assert_int_equal(cfg.sockjs, 1);
  assert_string_equal(cfg.sockjs_prefix, "/stomp");
  assert_int_equal(cfg.sockjs_disconnect_ms, 5000);
  assert_int_equal(cfg.sockjs_response_limit, 131072);
  sg_config_free(&cfg);
  char *e1[] = {"STOMPGATE_SOCKJS=off", "STOMPGATE_SOCKJS_PREFIX=/sock", NULL};
  assert_int_equal(load(&cfg, a0, e1), 0);
  assert_int_equal(cfg.sockjs, 0);
  assert_string_equal(cfg.sockjs_prefix, "/sock");
  sg_config_free(&cfg);
  /* The WebSocket endpoint may not lie under the prefix, unless SockJS is off. */
  char *a1[] = {"stompgate", "--ws-path", "/stomp/ws", NULL};
  assert_int_equal(load(&cfg, a1, none), 2);
  sg_config_free(&cfg);
  char *a2[] = {"stompgate", "--ws-path", "/stomp", NULL};
  assert_int_equal(load(&cfg, a2, none), 2);
  sg_config_free(&cfg);
  char *a3[] = {"stompgate", "--ws-path", "/stomp", "--sockjs", "off", NULL};
  assert_int_equal(load(&cfg, a3, none), 0);
  sg_config_free(&cfg);
  char *a4[] = {"stompgate", "--ws-path", "/stompx", NULL};
  assert_int_equal(load(&cfg, a4, none), 0);
  sg_config_free(&cfg);
  const char *bad[] = {"stomp", "/", "/stomp/", "/a.b"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    char *a5[] = {"stompgate", "--sockjs-prefix", (char *)bad[i], NULL};
    assert_int_equal(load(&cfg, a5, none), 2);
    sg_config_free(&cfg);
  }
}

static void proxies(void **state) {
  (void)state;
  char *none[] = {NULL};
  sg_config_t cfg;
  char *file = write_file("proxy-protocol = true\ntrusted-proxy = 10.0.0.0/8, fd00::/8\n"
                          "session-rate-per-address = 3\n");
  char cf[sizeof("--config=") + 64];
  snprintf(cf, sizeof(cf), "--config=%s", file);
  char *a1[] = {"stompgate", cf, NULL};
  assert_int_equal(load(&cfg, a1, none), 0);
  assert_int_equal(cfg.proxy_protocol, 1);
  assert_int_equal(cfg.ntrusted_proxies, 2);
  assert_int_equal(cfg.trusted_proxies[1].family, AF_INET6);
  assert_int_equal(cfg.session_rate_per_address, 3);
  sg_config_free(&cfg);
  /* Flags replace the file's list, and repeat. */
  char *a2[] = {"stompgate", cf, "--trusted-proxy", "127.0.0.1/32", "--trusted-proxy", "::1",
                NULL};
  assert_int_equal(load(&cfg, a2, none), 0);
  assert_int_equal(cfg.ntrusted_proxies, 2);
  assert_int_equal(cfg.trusted_proxies[0].bits, 32);
  assert_int_equal(cfg.trusted_proxies[1].bits, 128);
  sg_config_free(&cfg);
  /* The bare flag; and it needs somebody to trust. */
  char *a3[] = {"stompgate", "--proxy-protocol", "--trusted-proxy", "10.0.0.0/8", NULL};
  assert_int_equal(load(&cfg, a3, none), 0);
  assert_int_equal(cfg.proxy_protocol, 1);
  sg_config_free(&cfg);
  char *a4[] = {"stompgate", "--proxy-protocol", NULL};
  assert_int_equal(load(&cfg, a4, none), 2);
  sg_config_free(&cfg);
  char *a5[] = {"stompgate", "--trusted-proxy", "10.0.0.0/40", NULL};
  assert_int_equal(load(&cfg, a5, none), 2);
  sg_config_free(&cfg);
  char *a6[] = {"stompgate", "--trusted-proxy", "lb.example", NULL};
  assert_int_equal(load(&cfg, a6, none), 2);
  sg_config_free(&cfg);
  char *e1[] = {"STOMPGATE_PROXY_PROTOCOL=maybe", NULL};
  char *a7[] = {"stompgate", NULL};
  assert_int_equal(load(&cfg, a7, e1), 2);
  sg_config_free(&cfg);
  unlink(file);
}

static void stomp_listen(void **state) {
  (void)state;
  sg_config_t cfg;
  char *none[] = {"stompgate", NULL};
  char *noenv[] = {NULL};
  assert_int_equal(load(&cfg, none, noenv), 0);
  assert_null(cfg.stomp_listen_host); /* off by default */
  assert_int_equal(cfg.stomp_tls, 0);
  sg_config_free(&cfg);

  char *file = write_file("stomp-listen = [::1]:61613\nstomp-tls = false\n");
  char cf[sizeof("STOMPGATE_CONFIG=") + 64];
  snprintf(cf, sizeof(cf), "STOMPGATE_CONFIG=%s", file);
  char *envp[] = {cf, NULL};
  assert_int_equal(load(&cfg, none, envp), 0);
  assert_string_equal(cfg.stomp_listen_host, "::1");
  assert_int_equal(cfg.stomp_listen_port, 61613);
  sg_config_free(&cfg);
  /* A flag turns it off again. */
  char *off[] = {"stompgate", "--stomp-listen", "off", NULL};
  assert_int_equal(load(&cfg, off, envp), 0);
  assert_null(cfg.stomp_listen_host);
  sg_config_free(&cfg);
  unlink(file);

  /* stomp-tls needs the TLS files; the port must not be listen's. */
  char *tls[] = {"stompgate", "--stomp-listen", "127.0.0.1:61613", "--stomp-tls", NULL};
  assert_int_equal(load(&cfg, tls, noenv), 2);
  sg_config_free(&cfg);
  char *same[] = {"stompgate", "--listen", "127.0.0.1:7000", "--stomp-listen", "0.0.0.0:7000",
                  NULL};
  assert_int_equal(load(&cfg, same, noenv), 2);
  sg_config_free(&cfg);
  char *bad[] = {"stompgate", "--stomp-listen", "61613", NULL};
  assert_int_equal(load(&cfg, bad, noenv), 2);
  sg_config_free(&cfg);
}

static void events(void **state) {
  (void)state;
  sg_config_t cfg;
  char *noenv[] = {NULL};
  char *none[] = {"stompgate", NULL};
  assert_int_equal(load(&cfg, none, noenv), 0);
  assert_null(cfg.events_exchange); /* off by default */
  assert_int_equal(cfg.events_buffer, 10000);
  char pid[32];
  snprintf(pid, sizeof(pid), ":%ld", (long)getpid());
  size_t n = strlen(cfg.instance_id), k = strlen(pid);
  assert_true(n > k && strcmp(cfg.instance_id + n - k, pid) == 0); /* HOSTNAME:PID */
  sg_config_free(&cfg);

  char *env[] = {"STOMPGATE_EVENTS_EXCHANGE=ev", "STOMPGATE_INSTANCE_ID=gw-1", NULL};
  char *buf[] = {"stompgate", "--events-buffer", "5", NULL};
  assert_int_equal(load(&cfg, buf, env), 0);
  assert_string_equal(cfg.events_exchange, "ev");
  assert_string_equal(cfg.instance_id, "gw-1");
  assert_int_equal(cfg.events_buffer, 5);
  sg_config_free(&cfg);

  char *amq[] = {"stompgate", "--events-exchange", "amq.topic", NULL};
  assert_int_equal(load(&cfg, amq, noenv), 2);
  sg_config_free(&cfg);
  char *zero[] = {"stompgate", "--events-buffer", "0", NULL};
  assert_int_equal(load(&cfg, zero, noenv), 2);
  sg_config_free(&cfg);
}

/* Turning one exchange off leaves every other setting's string alone. */
static void exchanges(void **state) {
  (void)state;
  sg_config_t cfg;
  char *noenv[] = {NULL};
  char *none[] = {"stompgate", NULL};
  assert_int_equal(load(&cfg, none, noenv), 0);
  assert_string_equal(cfg.exact_exchange_prefix, "stompgate.exact.");
  sg_config_free(&cfg);

  char *off[] = {"stompgate", "--events-exchange", "ev", "--instance-id", "gw",
                 "--user-exchange", "", "--exact-key-exchange", "", NULL};
  assert_int_equal(load(&cfg, off, noenv), 0);
  assert_null(cfg.user_exchange);
  assert_null(cfg.exact_exchange_prefix);
  assert_string_equal(cfg.events_exchange, "ev");
  assert_string_equal(cfg.instance_id, "gw");
  sg_config_free(&cfg);

  char *amq[] = {"stompgate", "--exact-key-exchange", "amq.x.", NULL};
  assert_int_equal(load(&cfg, amq, noenv), 2);
  sg_config_free(&cfg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(events),
      cmocka_unit_test(exchanges),
      cmocka_unit_test(precedence),
      cmocka_unit_test(broker_list),
      cmocka_unit_test(invalid),
      cmocka_unit_test(log_format),
      cmocka_unit_test(sockjs),
      cmocka_unit_test(proxies),
      cmocka_unit_test(stomp_listen),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
