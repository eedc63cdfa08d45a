/* Unit tests of app/log.c: what reaches stderr (captured through a pipe) in
 * json and text mode. JSON lines must parse (jansson), keep ts/level/pid/msg,
 * split the trailing key=value fields, keep quoted values as strings, turn
 * numbers into JSON numbers, and never be cut into invalid JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

/* ---- stderr capture ---- */

static int pipe_fds[2] = { -1, -1 };
static int saved_stderr = -1;

static void capture_start(void)
{
	assert_int_equal(pipe(pipe_fds), 0);
	saved_stderr = dup(STDERR_FILENO);
	assert_true(saved_stderr >= 0);
	assert_true(dup2(pipe_fds[1], STDERR_FILENO) >= 0);
	close(pipe_fds[1]);
}

/* Everything written since capture_start (the lines fit in a pipe). */
static char *capture_end(void)
{
	size_t cap = 1 << 16, len = 0;
	char *out = malloc(cap);
	ssize_t n;

	assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
	close(saved_stderr);
	while ((n = read(pipe_fds[0], out + len, cap - len - 1)) > 0) {
		len += (size_t)n;
		if (cap - len < 2) {
			cap *= 2;
			out = realloc(out, cap);
			assert_non_null(out);
		}
	}
	close(pipe_fds[0]);
	out[len] = '\0';
	return out;
}

/* The single line written by one log call, parsed. */
#define JSON_LINE(obj, ...)                                                                        \
	do {                                                                                       \
		log_init(LOG_LEVEL_DEBUG, LOG_FORMAT_JSON);                                        \
		capture_start();                                                                   \
		__VA_ARGS__;                                                                       \
		char *out_ = capture_end();                                                        \
		obj = parse_one_line(out_);                                                        \
		free(out_);                                                                        \
	} while (0)

static json_t *parse_one_line(const char *out)
{
	json_error_t err;
	size_t len = strlen(out);

	if (len == 0 || out[len - 1] != '\n' || strchr(out, '\n') != out + len - 1)
		fail_msg("not exactly one line: [%.300s]", out);
	json_t *obj = json_loads(out, 0, &err);
	if (!obj)
		fail_msg("not JSON (%s): %.300s", err.text, out);
	assert_true(json_is_object(obj));
	/* The stable keys, with the right types. */
	assert_true(json_is_string(json_object_get(obj, "ts")));
	assert_true(json_is_string(json_object_get(obj, "level")));
	assert_true(json_is_integer(json_object_get(obj, "pid")));
	assert_int_equal(json_integer_value(json_object_get(obj, "pid")), getpid());
	assert_true(json_is_string(json_object_get(obj, "msg")));
	return obj;
}

static const char *str(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_string(v))
		fail_msg("%s is not a string", key);
	return json_string_value(v);
}

static json_int_t integer(json_t *obj, const char *key)
{
	json_t *v = json_object_get(obj, key);

	if (!json_is_integer(v))
		fail_msg("%s is not an integer", key);
	return json_integer_value(v);
}

/* ---- json ---- */

static void test_json_fields_split_and_numbers(void **state)
{
	json_t *o;

	(void)state;
	JSON_LINE(o, log_info("request route=%s status=%d us=%lld", "health_db", 200, 1234LL));
	assert_string_equal(str(o, "level"), "info");
	assert_string_equal(str(o, "msg"), "request");
	assert_string_equal(str(o, "route"), "health_db");
	assert_int_equal(integer(o, "status"), 200);
	assert_int_equal(integer(o, "us"), 1234);
	assert_int_equal(json_object_size(o), 7);
	const char *ts = str(o, "ts");
	assert_int_equal(strlen(ts), strlen("2026-01-01T00:00:00.000Z"));
	assert_true(ts[10] == 'T' && ts[strlen(ts) - 1] == 'Z');
	json_decref(o);
}

static void test_json_number_forms(void **state)
{
	json_t *o;

	(void)state;
	JSON_LINE(o, log_warnx("numbers ms=%.1f frac=2.14 neg=-3 zero=0 mode=0660 ver=1.2.3 big=%s "
			       "dash=- dot=1. exp=1e5 quoted=\"15.10\" word=abc",
			       12.5, "123456789012345678901234"));
	assert_string_equal(str(o, "level"), "warn");
	assert_true(json_is_real(json_object_get(o, "ms")));
	assert_true(json_real_value(json_object_get(o, "ms")) == 12.5);
	assert_true(json_real_value(json_object_get(o, "frac")) == 2.14);
	assert_int_equal(integer(o, "neg"), -3);
	assert_int_equal(integer(o, "zero"), 0);
	/* Not numbers: leading zero (a file mode), versions, odd forms. */
	assert_string_equal(str(o, "mode"), "0660");
	assert_string_equal(str(o, "ver"), "1.2.3");
	assert_string_equal(str(o, "dash"), "-");
	assert_string_equal(str(o, "dot"), "1.");
	assert_string_equal(str(o, "exp"), "1e5");
	/* Quoted: the caller says it is text. */
	assert_string_equal(str(o, "quoted"), "15.10");
	assert_string_equal(str(o, "word"), "abc");
	/* Too long for an integer: still a number. */
	assert_true(json_is_real(json_object_get(o, "big")));
	json_decref(o);
}

/* Reals keep the digits they were written with, not binary noise. */
static void test_json_reals_print_short(void **state)
{
	(void)state;
	log_init(LOG_LEVEL_INFO, LOG_FORMAT_JSON);
	capture_start();
	log_info("timing ms=2.14 other=12.0");
	char *out = capture_end();
	assert_non_null(strstr(out, "\"ms\":2.14,\"other\":12.0}"));
	free(out);
}

static void test_json_quoted_values(void **state)
{
	json_t *o;

	(void)state;
	JSON_LINE(o, log_warnx("db connect failed category=%s reason=\"%s\" empty= last=\"\"",
			       "unreachable", "said \\\"no\\\" twice, then=left"));
	assert_string_equal(str(o, "msg"), "db connect failed");
	assert_string_equal(str(o, "category"), "unreachable");
	assert_string_equal(str(o, "reason"), "said \"no\" twice, then=left");
	assert_string_equal(str(o, "empty"), "");
	assert_string_equal(str(o, "last"), "");
	json_decref(o);
}

static void test_json_reserved_keys_not_overwritten(void **state)
{
	json_t *o;

	(void)state;
	JSON_LINE(o, log_info("worker event ts=yesterday level=fatal pid=1 msg=\"other\" slot=2"));
	assert_string_equal(str(o, "level"), "info");
	assert_string_equal(str(o, "msg"), "worker event");
	assert_true(strcmp(str(o, "ts"), "yesterday") != 0);
	/* Nothing lost: the fields live under field_<name>. */
	assert_int_equal(integer(o, "field_pid"), 1);
	assert_string_equal(str(o, "field_level"), "fatal");
	assert_string_equal(str(o, "field_ts"), "yesterday");
	assert_string_equal(str(o, "field_msg"), "other");
	assert_int_equal(integer(o, "slot"), 2);
	json_decref(o);
}

/* Fields are the trailing run of key=value words: one inside free text stays
 * in the message, and no key ever holds a space. */
static void test_json_fields_only_at_the_end(void **state)
{
	json_t *o;

	(void)state;
	JSON_LINE(o, log_warnx("sslmode=require encrypts but does not authenticate the server; "
			       "use sslmode=verify-full"));
	assert_string_equal(str(o, "msg"),
			    "sslmode=require encrypts but does not authenticate the server; use");
	assert_string_equal(str(o, "sslmode"), "verify-full");
	assert_int_equal(json_object_size(o), 5);
	json_decref(o);

	JSON_LINE(o, log_errorx("reload refused: WORKERS=\"0\": must be between 1 and 256"));
	assert_string_equal(str(o, "msg"),
			    "reload refused: WORKERS=\"0\": must be between 1 and 256");
	assert_int_equal(json_object_size(o), 4);
	json_decref(o);

	JSON_LINE(o, log_info("no fields at all"));
	assert_string_equal(str(o, "msg"), "no fields at all");
	assert_int_equal(json_object_size(o), 4);
	json_decref(o);
}

static void test_json_errno_variant(void **state)
{
	json_t *o;

	(void)state;
	errno = ENOENT;
	JSON_LINE(o, log_warn("accept failed fd=%d", 7));
	assert_string_equal(str(o, "msg"), "accept failed");
	assert_int_equal(integer(o, "fd"), 7);
	assert_string_equal(str(o, "error"), strerror(ENOENT));
	json_decref(o);
}

/* A message that escapes to more than the text buffer (quotes double, control
 * characters grow sixfold) must still be one whole JSON object. */
static void test_json_long_line_stays_valid(void **state)
{
	char big[4000];
	json_t *o;

	(void)state;
	memset(big, '\x01', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	JSON_LINE(o, log_info("%s", big));
	assert_true(strlen(str(o, "msg")) > 3000);
	json_decref(o);
	memset(big, '"', sizeof(big) - 1);
	JSON_LINE(o, log_info("%s tail=1", big));
	json_decref(o);
}

static void test_json_control_and_invalid_utf8(void **state)
{
	json_t *o;

	(void)state;
	JSON_LINE(o, log_info("two\nlines \xff\xfe reason=\"bad \xc3\x28\" ok=\"caf\xc3\xa9\""));
	assert_string_equal(str(o, "msg"), "two\nlines ??");
	assert_string_equal(str(o, "reason"), "bad ?(");
	assert_string_equal(str(o, "ok"), "caf\xc3\xa9");
	json_decref(o);
}

static void test_level_filter(void **state)
{
	(void)state;
	log_init(LOG_LEVEL_WARN, LOG_FORMAT_JSON);
	capture_start();
	log_debug("hidden a=1");
	log_info("hidden b=2");
	log_warnx("shown c=3");
	log_errorx("shown d=4");
	char *out = capture_end();
	assert_null(strstr(out, "hidden"));
	/* Every line of a run is its own object. */
	int lines = 0;
	for (char *save = NULL, *ln = strtok_r(out, "\n", &save); ln;
	     ln = strtok_r(NULL, "\n", &save), lines++) {
		json_t *o = json_loads(ln, 0, NULL);
		assert_non_null(o);
		assert_string_equal(str(o, "msg"), "shown");
		json_decref(o);
	}
	assert_int_equal(lines, 2);
	free(out);
}

/* ---- text ---- */

static char *text_line(const char *msg)
{
	log_init(LOG_LEVEL_DEBUG, LOG_FORMAT_TEXT);
	capture_start();
	log_info("%s", msg);
	return capture_end();
}

static void test_text_format(void **state)
{
	char *out = text_line("request route=health status=200 us=12"), want[64];
	const char *rest = strchr(out, ' ');

	(void)state;
	assert_non_null(rest);
	assert_true(out[10] == 'T' && rest[-1] == 'Z'); /* ts first */
	snprintf(want, sizeof(want), " info request route=health status=200 us=12 pid=%d\n",
		 (int)getpid());
	assert_string_equal(rest, want);
	free(out);
}

static void test_text_control_characters_flattened(void **state)
{
	char *out = text_line("db said reason=\"line one\nline two\r\"");

	(void)state;
	assert_ptr_equal(strchr(out, '\n'), out + strlen(out) - 1);
	assert_null(strchr(out, '\r'));
	assert_non_null(strstr(out, "reason=\"line one line two \" pid="));
	free(out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_fields_split_and_numbers),
		cmocka_unit_test(test_json_number_forms),
		cmocka_unit_test(test_json_reals_print_short),
		cmocka_unit_test(test_json_quoted_values),
		cmocka_unit_test(test_json_reserved_keys_not_overwritten),
		cmocka_unit_test(test_json_fields_only_at_the_end),
		cmocka_unit_test(test_json_errno_variant),
		cmocka_unit_test(test_json_long_line_stays_valid),
		cmocka_unit_test(test_json_control_and_invalid_utf8),
		cmocka_unit_test(test_level_filter),
		cmocka_unit_test(test_text_format),
		cmocka_unit_test(test_text_control_characters_flattened),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
