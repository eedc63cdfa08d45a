/* Unit tests of fcgiguard: which FastCGI input reaches libfcgi, and the
 * records we answer ourselves. Inputs are built record by record below. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "fcgiguard.h"

#define BUF (2 * FCGIGUARD_HEAD_MAX)

struct msg {
	unsigned char b[BUF];
	size_t n;
};

static void rec(struct msg *m, unsigned type, unsigned id, const void *content, size_t clen,
		unsigned plen)
{
	unsigned char *p = m->b + m->n;

	p[0] = 1;
	p[1] = (unsigned char)type;
	p[2] = (unsigned char)(id >> 8);
	p[3] = (unsigned char)id;
	p[4] = (unsigned char)(clen >> 8);
	p[5] = (unsigned char)clen;
	p[6] = (unsigned char)plen;
	p[7] = 0;
	if (clen)
		memcpy(p + 8, content, clen);
	memset(p + 8 + clen, 0, plen);
	m->n += 8 + clen + plen;
}

static void begin(struct msg *m, unsigned id, unsigned role, unsigned flags)
{
	unsigned char body[8] = { (unsigned char)(role >> 8), (unsigned char)role,
				  (unsigned char)flags };

	rec(m, 1, id, body, 8, 0);
}

static size_t put_len(unsigned char *p, size_t n)
{
	if (n < 128) {
		p[0] = (unsigned char)n;
		return 1;
	}
	p[0] = (unsigned char)(0x80 | n >> 24);
	p[1] = (unsigned char)(n >> 16);
	p[2] = (unsigned char)(n >> 8);
	p[3] = (unsigned char)n;
	return 4;
}

/* One name-value pair into out; returns its length. */
static size_t pair(unsigned char *out, const char *name, const char *value)
{
	size_t o = put_len(out, strlen(name));

	o += put_len(out + o, strlen(value));
	memcpy(out + o, name, strlen(name));
	o += strlen(name);
	memcpy(out + o, value, strlen(value));
	return o + strlen(value);
}

/* A whole request as nginx sends it: BEGIN, PARAMS, empty PARAMS, empty STDIN. */
static void nginx_request(struct msg *m, unsigned flags)
{
	unsigned char p[512];
	size_t n = pair(p, "REQUEST_METHOD", "GET");

	n += pair(p + n, "REQUEST_URI", "/health");
	n += pair(p + n, "PATH_INFO", "");
	begin(m, 1, 1, flags);
	rec(m, 4, 1, p, n, (unsigned)((8 - n % 8) % 8));
	rec(m, 4, 1, NULL, 0, 0);
	rec(m, 5, 1, NULL, 0, 0);
}

static struct fcgiguard_result check(const struct msg *m)
{
	struct fcgiguard_result r;

	fcgiguard_check(m->b, m->n, &r);
	return r;
}

static void test_nginx_request_is_complete(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	struct fcgiguard_result r;

	(void)state;
	nginx_request(m, 0);
	r = check(m);
	assert_int_equal(r.verdict, FCGIGUARD_COMPLETE);
	assert_int_equal(r.request_id, 1);
	assert_false(r.keep_conn);
	assert_true(r.stdin_done);
	assert_int_equal(r.input_len, m->n); /* nothing after the request: close at once */
	m->n = 0;
	nginx_request(m, 1);
	r = check(m);
	assert_int_equal(r.verdict, FCGIGUARD_COMPLETE);
	assert_true(r.keep_conn);
	free(m);
}

/* However the bytes arrive, a head is only judged once it is all here. */
static void test_every_prefix_is_incomplete(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	struct fcgiguard_result r;
	size_t whole;

	(void)state;
	nginx_request(m, 0);
	whole = m->n - 8; /* without the empty STDIN record */
	for (size_t k = 0; k < whole; k++) {
		fcgiguard_check(m->b, k, &r);
		assert_int_equal(r.verdict, FCGIGUARD_INCOMPLETE);
	}
	fcgiguard_check(m->b, whole, &r);
	assert_int_equal(r.verdict, FCGIGUARD_COMPLETE);
	assert_false(r.stdin_done);
	free(m);
}

static void test_not_fastcgi_is_rejected(void **state)
{
	static const char *const inputs[] = { "GET / HTTP/1.1\r\n\r\n", "\x02\x01\x00\x01",
					      "\x00" };
	struct fcgiguard_result r;

	(void)state;
	for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++) {
		fcgiguard_check((const unsigned char *)inputs[i], strlen(inputs[i]) + (i == 2), &r);
		assert_int_equal(r.verdict, FCGIGUARD_REJECT);
		assert_non_null(r.reason);
	}
}

static void test_malformed_heads_are_rejected(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	unsigned char p[64];
	size_t n = pair(p, "A", "b");

	(void)state;
	/* a record type other than BEGIN_REQUEST first */
	rec(m, 4, 1, p, n, 0);
	assert_int_equal(check(m).verdict, FCGIGUARD_REJECT);
	/* a padded BEGIN_REQUEST: libfcgi would read its padding as a header */
	m->n = 0;
	rec(m, 1, 1, "\0\1\0\0\0\0\0\0", 8, 8);
	assert_int_equal(check(m).verdict, FCGIGUARD_REJECT);
	/* FCGI_STDIN before the end of FCGI_PARAMS */
	m->n = 0;
	begin(m, 1, 1, 0);
	rec(m, 5, 1, "x", 1, 7);
	assert_int_equal(check(m).verdict, FCGIGUARD_REJECT);
	/* a management record inside a request (libfcgi would answer it) */
	m->n = 0;
	begin(m, 1, 1, 0);
	rec(m, 9, 0, p, n, 0);
	assert_int_equal(check(m).verdict, FCGIGUARD_REJECT);
	/* an empty record of another request id (libfcgi then skips ours) */
	m->n = 0;
	begin(m, 1, 1, 0);
	rec(m, 4, 2, NULL, 0, 0);
	assert_int_equal(check(m).verdict, FCGIGUARD_REJECT);
	/* the same request id begun twice */
	m->n = 0;
	begin(m, 1, 1, 0);
	begin(m, 1, 1, 0);
	assert_int_equal(check(m).verdict, FCGIGUARD_REJECT);
	free(m);
}

/* Another request on a busy connection: libfcgi answers FCGI_CANT_MPX_CONN. */
static void test_second_request_id_is_passed_on(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	unsigned char p[64];
	size_t n = pair(p, "REQUEST_URI", "/health");

	(void)state;
	begin(m, 1, 1, 0);
	rec(m, 4, 1, p, n, (unsigned)((8 - n % 8) % 8));
	begin(m, 2, 1, 0);
	rec(m, 4, 2, p, n, 0);
	rec(m, 4, 1, NULL, 0, 0);
	assert_int_equal(check(m).verdict, FCGIGUARD_COMPLETE);
	free(m);
}

static void test_pairs_must_fill_params_exactly(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	unsigned char p[64];
	size_t n = pair(p, "REQUEST_URI", "/health");
	struct fcgiguard_result r;

	(void)state;
	begin(m, 1, 1, 0);
	rec(m, 4, 1, p, n - 2, 0); /* the value is cut short */
	rec(m, 4, 1, NULL, 0, 0);
	r = check(m);
	assert_int_equal(r.verdict, FCGIGUARD_ERROR);
	assert_int_equal(r.status, 400);
	free(m);
}

/* CVE-2025-23016 territory: a length near 2^31 made libfcgi overflow (and,
 * patched, still allocate 2 GiB and wait for the bytes). */
static void test_huge_name_length_is_431(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	static const unsigned char p[] = { 0xff, 0xff, 0xff, 0xff, 0x01, 'A', 'A', 'A' };
	struct fcgiguard_result r;

	(void)state;
	begin(m, 1, 1, 0);
	rec(m, 4, 1, p, sizeof p, 0);
	r = check(m);
	assert_int_equal(r.verdict, FCGIGUARD_ERROR);
	assert_int_equal(r.status, 431);
	free(m);
}

static void test_long_uri_is_414(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	unsigned char p[64];
	size_t n = put_len(p, 11);
	struct fcgiguard_result r;

	(void)state;
	n += put_len(p + n, 1 << 20);
	memcpy(p + n, "REQUEST_URI", 11);
	n += 11;
	begin(m, 1, 1, 0);
	rec(m, 4, 1, p, n, 0); /* the value itself never needs to arrive */
	r = check(m);
	assert_int_equal(r.verdict, FCGIGUARD_ERROR);
	assert_int_equal(r.status, 414);
	free(m);
}

/* Thousands of small parameters: fine up to the head limit, 431 beyond. */
static void test_many_params(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	unsigned char *p = malloc(BUF);
	size_t n = 0;
	struct fcgiguard_result r;
	char name[32];
	int i;

	(void)state;
	begin(m, 1, 1, 0);
	for (i = 0; i < 2000; i++) {
		snprintf(name, sizeof name, "HTTP_X_%d", i);
		n += pair(p + n, name, "v");
	}
	for (size_t off = 0; off < n; off += 65528)
		rec(m, 4, 1, p + off, n - off < 65528 ? n - off : 65528, 0);
	rec(m, 4, 1, NULL, 0, 0);
	assert_int_equal(check(m).verdict, FCGIGUARD_COMPLETE);
	m->n = 0;
	n = 0;
	begin(m, 1, 1, 0);
	for (i = 0; n < 70000; i++) {
		snprintf(name, sizeof name, "HTTP_X_%d", i);
		n += pair(p + n, name, "v");
	}
	for (size_t off = 0; off < n; off += 65528)
		rec(m, 4, 1, p + off, n - off < 65528 ? n - off : 65528, 0);
	r = check(m);
	assert_int_equal(r.verdict, FCGIGUARD_ERROR);
	assert_int_equal(r.status, 431);
	free(p);
	free(m);
}

static void test_other_roles_are_refused(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	unsigned char out[FCGIGUARD_REPLY_MAX];
	size_t n;

	(void)state;
	begin(m, 7, 2 /* AUTHORIZER */, 0);
	assert_int_equal(check(m).verdict, FCGIGUARD_BAD_ROLE);
	n = fcgiguard_end_request(7, 3, out);
	assert_int_equal(n, 16);
	assert_int_equal(out[1], 3); /* FCGI_END_REQUEST */
	assert_int_equal(out[3], 7);
	assert_int_equal(out[12], 3); /* FCGI_UNKNOWN_ROLE */
	free(m);
}

/* A record whose input we may read through libfcgi to its end, and one we
 * may not (a management record among the FCGI_STDIN records). */
static void test_stdin_done_only_for_plain_stdin(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	unsigned char p[64];
	size_t n = pair(p, "REQUEST_URI", "/health");

	(void)state;
	begin(m, 1, 1, 0);
	rec(m, 4, 1, p, n, 0);
	rec(m, 4, 1, NULL, 0, 0);
	rec(m, 5, 1, "body", 4, 4);
	rec(m, 5, 1, NULL, 0, 0);
	assert_true(check(m).stdin_done);
	m->n -= 8;
	rec(m, 9, 0, p, n, 0);
	rec(m, 5, 1, NULL, 0, 0);
	assert_int_equal(check(m).verdict, FCGIGUARD_COMPLETE);
	assert_false(check(m).stdin_done);
	free(m);
}

static void test_get_values_answered(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	unsigned char p[128], out[FCGIGUARD_REPLY_MAX];
	size_t n = pair(p, "FCGI_MAX_CONNS", ""), len;
	struct fcgiguard_result r;

	(void)state;
	n += pair(p + n, "FCGI_MPXS_CONNS", "");
	n += pair(p + n, "SOMETHING_ELSE", "");
	rec(m, 9, 0, p, n, (unsigned)((8 - n % 8) % 8));
	nginx_request(m, 0);
	r = check(m);
	assert_int_equal(r.verdict, FCGIGUARD_MGMT);
	assert_int_equal(r.mgmt_len, 8 + n + (8 - n % 8) % 8);
	len = fcgiguard_mgmt_reply(m->b, r.mgmt_len, 8, out);
	assert_int_equal(out[1], 10); /* FCGI_GET_VALUES_RESULT */
	assert_int_equal(len % 8, 0);
	assert_int_equal(out[4] << 8 | out[5], 2 + 14 + 1 + 2 + 15 + 1);
	assert_memory_equal(out + 8,
			    "\x0e\x01"
			    "FCGI_MAX_CONNS8",
			    17);
	assert_memory_equal(out + 25,
			    "\x0f\x01"
			    "FCGI_MPXS_CONNS0",
			    18);
	for (size_t i = 8 + 35; i < len; i++)
		assert_int_equal(out[i], 0); /* padding is zeros, not stack bytes */
	free(m);
}

/* Regression: libfcgi formats its FCGI_GET_VALUES answer into a 64-byte stack
 * buffer, one entry per name asked; four names smashed its stack and the
 * worker died of SIGABRT. Ours answers each name once. */
static void test_get_values_many_names_bounded_reply(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	unsigned char p[2048], out[FCGIGUARD_REPLY_MAX];
	size_t n = 0;
	struct fcgiguard_result r;

	(void)state;
	for (int i = 0; i < 100; i++)
		n += pair(p + n, i % 2 ? "FCGI_MAX_CONNS" : "FCGI_MAX_REQS", "");
	rec(m, 9, 0, p, n, (unsigned)((8 - n % 8) % 8));
	r = check(m);
	assert_int_equal(r.verdict, FCGIGUARD_MGMT);
	assert_in_range(fcgiguard_mgmt_reply(m->b, r.mgmt_len, 4, out), 16, 64);
	free(m);
}

static void test_other_management_records(void **state)
{
	struct msg *m = calloc(1, sizeof *m);
	unsigned char out[FCGIGUARD_REPLY_MAX];
	struct fcgiguard_result r;

	(void)state;
	rec(m, 42, 0, "abc", 3, 5);
	r = check(m);
	assert_int_equal(r.verdict, FCGIGUARD_MGMT);
	assert_int_equal(fcgiguard_mgmt_reply(m->b, r.mgmt_len, 4, out), 16);
	assert_int_equal(out[1], 11); /* FCGI_UNKNOWN_TYPE */
	assert_int_equal(out[8], 42);
	/* a GET_VALUES whose pairs overrun it gets no answer: the caller closes */
	m->n = 0;
	rec(m, 9, 0,
	    "\x0e\x05"
	    "FCGI",
	    6, 2);
	r = check(m);
	assert_int_equal(r.verdict, FCGIGUARD_MGMT);
	assert_int_equal(fcgiguard_mgmt_reply(m->b, r.mgmt_len, 4, out), 0);
	free(m);
}

static void test_error_reply_is_a_whole_response(void **state)
{
	unsigned char out[FCGIGUARD_REPLY_MAX];
	size_t n = fcgiguard_error_reply(3, 414, "too long", out), off = 0;
	int records = 0;

	(void)state;
	assert_true(n > 0 && n <= sizeof out);
	while (off < n) {
		size_t clen = (size_t)out[off + 4] << 8 | out[off + 5];

		assert_int_equal(out[off], 1);
		assert_int_equal(out[off + 3], 3);
		assert_int_equal((8 + clen + out[off + 6]) % 8, 0);
		off += 8 + clen + out[off + 6];
		records++;
	}
	assert_int_equal(off, n);
	assert_int_equal(records, 3); /* STDOUT, empty STDOUT, END_REQUEST */
	assert_memory_equal(out + 8, "Status: 414 URI Too Long\r\n", 26);
	assert_non_null(memmem(out, n, "Cache-Control: no-store", 23));
	assert_non_null(memmem(out, n, "{\"error\":\"too long\"}", 20));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nginx_request_is_complete),
		cmocka_unit_test(test_every_prefix_is_incomplete),
		cmocka_unit_test(test_not_fastcgi_is_rejected),
		cmocka_unit_test(test_malformed_heads_are_rejected),
		cmocka_unit_test(test_second_request_id_is_passed_on),
		cmocka_unit_test(test_pairs_must_fill_params_exactly),
		cmocka_unit_test(test_huge_name_length_is_431),
		cmocka_unit_test(test_long_uri_is_414),
		cmocka_unit_test(test_many_params),
		cmocka_unit_test(test_other_roles_are_refused),
		cmocka_unit_test(test_stdin_done_only_for_plain_stdin),
		cmocka_unit_test(test_get_values_answered),
		cmocka_unit_test(test_get_values_many_names_bounded_reply),
		cmocka_unit_test(test_other_management_records),
		cmocka_unit_test(test_error_reply_is_a_whole_response),
	};
	return cmocka_run_group_tests_name("fcgiguard", tests, NULL, NULL);
}
