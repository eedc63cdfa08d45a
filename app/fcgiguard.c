/* fcgiguard: a strict reading of the FastCGI records of a request head, done
 * on bytes the worker has peeked at, before libfcgi 2.4.2 parses them.
 *
 * Why: libfcgi trusts its peer. Its FCGI_GET_VALUES handler formats the
 * answer into a 64-byte stack buffer without a bound (four known names smash
 * the stack: the worker dies on SIGABRT) and pads the answer with stack bytes;
 * every other management record leaks an allocation; a parameter length of
 * 0x7fffffff makes it allocate 2 GiB and then block reading. It also reads a
 * head as slowly as the peer sends it. So a request reaches libfcgi only once
 * its whole head is here and has passed the rules below; management records
 * before a request are answered by us (fcgiguard_mgmt_reply).
 *
 * Record layout (FastCGI 1.0 §3.3): version, type, requestId (2), contentLength
 * (2), paddingLength, reserved, then content and padding. */
#include "fcgiguard.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "router.h"

#define HDR                    8
#define FCGI_VERSION_1         1
#define FCGI_BEGIN_REQUEST     1
#define FCGI_END_REQUEST       3
#define FCGI_PARAMS            4
#define FCGI_STDIN             5
#define FCGI_STDOUT            6
#define FCGI_GET_VALUES        9
#define FCGI_GET_VALUES_RESULT 10
#define FCGI_UNKNOWN_TYPE      11
#define FCGI_RESPONDER         1
#define FCGI_KEEP_CONN         1

struct rec {
	unsigned version, type, id, clen, plen;
};

static void get_rec(const unsigned char *p, struct rec *r)
{
	r->version = p[0];
	r->type = p[1];
	r->id = (unsigned)p[2] << 8 | p[3];
	r->clen = (unsigned)p[4] << 8 | p[5];
	r->plen = p[6];
}

/* ---- FCGI_PARAMS: name-value pairs, read as a stream across records ---- */

enum pair_phase { NAME_LEN, VALUE_LEN, NAME, VALUE };

struct pairs {
	enum pair_phase phase;
	unsigned char lenbuf[4];
	unsigned lenpos;
	uint32_t name_len, value_len, left;
	char name[24]; /* enough to recognise the URI parameters */
	size_t name_got;
	bool too_long; /* this pair alone is longer than a head may be */
	int status;    /* 414 or 431: one pair is longer than a head may be */
};

/* A parameter holding the request URI or a part of it: too long means 414. */
static bool is_uri_param(const struct pairs *p)
{
	static const char *const names[] = { "REQUEST_URI", "DOCUMENT_URI",
					     "PATH_INFO",   "QUERY_STRING",
					     "SCRIPT_NAME", "PATH_TRANSLATED",
					     NULL };

	for (size_t i = 0; names[i] != NULL; i++)
		if (p->name_got == strlen(names[i]) && memcmp(p->name, names[i], p->name_got) == 0)
			return true;
	return false;
}

static void got_length(struct pairs *p, uint32_t n)
{
	p->lenpos = 0;
	if (p->phase == NAME_LEN) {
		p->name_len = n;
		p->phase = VALUE_LEN;
		return;
	}
	p->value_len = n;
	p->too_long = (uint64_t)p->name_len + n > FCGIGUARD_HEAD_MAX;
	p->name_got = 0;
	p->left = p->name_len;
	p->phase = NAME;
	if (p->name_len > sizeof p->name && p->too_long)
		p->status = 431; /* no URI parameter has a name that long */
}

static void name_done(struct pairs *p)
{
	p->phase = VALUE;
	p->left = p->value_len;
	if (p->too_long)
		p->status = is_uri_param(p) ? 414 : 431;
}

/* Feed n bytes of FCGI_PARAMS content; stops early once status is set. */
static void pairs_feed(struct pairs *p, const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n && p->status == 0) {
		if (p->phase == NAME_LEN || p->phase == VALUE_LEN) {
			unsigned char c = s[i++];

			if (p->lenpos == 0 && !(c & 0x80)) {
				got_length(p, c);
			} else {
				p->lenbuf[p->lenpos++] = c;
				if (p->lenpos == 4)
					got_length(p, (uint32_t)(p->lenbuf[0] & 0x7f) << 24 |
							  (uint32_t)p->lenbuf[1] << 16 |
							  (uint32_t)p->lenbuf[2] << 8 |
							  p->lenbuf[3]);
			}
		} else {
			size_t k = n - i < p->left ? n - i : p->left;

			if (p->phase == NAME && p->name_got < sizeof p->name) {
				size_t room = sizeof p->name - p->name_got;
				size_t take = k < room ? k : room;

				memcpy(p->name + p->name_got, s + i, take);
				p->name_got += take;
			}
			i += k;
			p->left -= (uint32_t)k;
		}
		if (p->phase == NAME && p->left == 0)
			name_done(p);
		if (p->phase == VALUE && p->left == 0 && p->status == 0)
			p->phase = NAME_LEN;
	}
}

/* ---- refusal reasons, for counting ---- */

static const struct {
	const char *text, *label;
} reasons[FCGIGUARD_REASONS] = {
	{ "request head larger than 64 KiB", "head_too_large" },
	{ "management record larger than 64 KiB", "management_too_large" },
	{ "unsupported FastCGI version", "bad_version" },
	{ "management record inside a request", "management_in_request" },
	{ "repeated or malformed BEGIN_REQUEST", "repeated_begin_request" },
	{ "record before the end of FCGI_PARAMS", "record_before_params_end" },
	{ "empty record for another request id", "empty_record_other_id" },
	{ "request parameters too large", "params_too_large" },
	{ "malformed FCGI_PARAMS", "malformed_params" },
	{ "first record is not BEGIN_REQUEST", "no_begin_request" },
	{ "malformed BEGIN_REQUEST", "malformed_begin_request" },
	{ "role other than RESPONDER", "bad_role" },
	{ FCGIGUARD_WHY_BAD_MGMT, "malformed_management" },
	{ FCGIGUARD_WHY_HEAD_TIMEOUT, "head_timeout" },
	{ FCGIGUARD_WHY_ROOM_FULL, "waitroom_full" },
	{ "", "other" },
};

int fcgiguard_reason_index(const char *reason)
{
	for (int i = 0; reason && i < FCGIGUARD_REASONS - 1; i++)
		if (strcmp(reason, reasons[i].text) == 0)
			return i;
	return FCGIGUARD_REASONS - 1;
}

const char *fcgiguard_reason_label(int index)
{
	if (index < 0 || index >= FCGIGUARD_REASONS)
		index = FCGIGUARD_REASONS - 1;
	return reasons[index].label;
}

/* ---- the head ---- */

static void verdict(struct fcgiguard_result *r, enum fcgiguard_verdict v, const char *reason)
{
	r->verdict = v;
	r->reason = reason;
}

static void error(struct fcgiguard_result *r, int status, const char *reason)
{
	verdict(r, FCGIGUARD_ERROR, reason);
	r->status = status;
}

/* More bytes are needed; unless the buffer is already as large as a head may
 * be (the caller cannot show us more than that). */
static void need_more(struct fcgiguard_result *r, size_t len)
{
	if (len < FCGIGUARD_HEAD_MAX)
		verdict(r, FCGIGUARD_INCOMPLETE, NULL);
	else
		error(r, 431, "request head larger than 64 KiB");
}

/* After the empty FCGI_PARAMS record at off: is the request's whole input
 * here (its end, else 0), FCGI_STDIN records up to the empty one and nothing else, so that
 * libfcgi can read it to its end without waiting or meeting another record
 * type? libfcgi forgets the padding of the empty FCGI_PARAMS record (it
 * would read it as the next header), so that must be unpadded. */
static size_t stdin_end(const unsigned char *buf, size_t len, size_t off, unsigned id)
{
	struct rec h;

	get_rec(buf + off, &h);
	if (h.plen != 0)
		return 0;
	for (off += HDR; off + HDR <= len; off += HDR + h.clen + h.plen) {
		get_rec(buf + off, &h);
		if (h.version != FCGI_VERSION_1 || h.id != id || h.type != FCGI_STDIN ||
		    off + HDR + h.clen + h.plen > len)
			return 0;
		if (h.clen == 0)
			return off + HDR + h.plen;
	}
	return 0;
}

/* A management record (request id 0) as the first record. */
static void check_mgmt(const struct rec *h, size_t len, struct fcgiguard_result *r)
{
	size_t total = HDR + h->clen + h->plen;

	if (total > FCGIGUARD_HEAD_MAX)
		verdict(r, FCGIGUARD_REJECT, "management record larger than 64 KiB");
	else if (total > len)
		verdict(r, FCGIGUARD_INCOMPLETE, NULL);
	else {
		verdict(r, FCGIGUARD_MGMT, NULL);
		r->mgmt_len = total;
	}
}

/* Why libfcgi must not see record h inside a request head; NULL if it may. */
static const char *bad_record(const struct rec *h, unsigned id)
{
	if (h->version != FCGI_VERSION_1)
		return "unsupported FastCGI version";
	if (h->id == 0)
		return "management record inside a request";
	/* libfcgi answers another request id's BEGIN_REQUEST with
	 * FCGI_CANT_MPX_CONN and skips that id's records. */
	if (h->type == FCGI_BEGIN_REQUEST && (h->id == id || h->clen != 8))
		return "repeated or malformed BEGIN_REQUEST";
	if (h->id == id && h->type != FCGI_PARAMS)
		return "record before the end of FCGI_PARAMS";
	/* libfcgi's skip flag outlives an empty record of another id: it would
	 * drop the content of our next record. */
	if (h->id != id && h->clen == 0)
		return "empty record for another request id";
	return NULL;
}

/* Our request's FCGI_PARAMS record at off (its content possibly still
 * partial): true when the verdict is reached. */
static bool params_record(const unsigned char *buf, size_t len, size_t off, const struct rec *h,
			  struct pairs *p, struct fcgiguard_result *r)
{
	size_t avail = len - off - HDR < h->clen ? len - off - HDR : h->clen;

	pairs_feed(p, buf + off + HDR, avail);
	if (p->status != 0) {
		error(r, p->status, "request parameters too large");
		return true;
	}
	if (h->clen != 0)
		return false;
	if (p->phase != NAME_LEN || p->lenpos != 0) {
		error(r, 400, "malformed FCGI_PARAMS");
		return true;
	}
	verdict(r, FCGIGUARD_COMPLETE, NULL);
	r->input_len = stdin_end(buf, len, off, r->request_id);
	r->stdin_done = r->input_len > 0;
	return true;
}

/* Records after BEGIN_REQUEST up to the empty FCGI_PARAMS record. */
static void check_params(const unsigned char *buf, size_t len, size_t off,
			 struct fcgiguard_result *r)
{
	struct pairs p = { .phase = NAME_LEN };
	struct rec h;
	const char *bad;

	for (;;) {
		if (off + HDR > len) {
			need_more(r, len);
			return;
		}
		get_rec(buf + off, &h);
		size_t end = off + HDR + h.clen + h.plen;
		if ((bad = bad_record(&h, r->request_id)) != NULL) {
			verdict(r, FCGIGUARD_REJECT, bad);
			return;
		}
		if (h.id == r->request_id && params_record(buf, len, off, &h, &p, r))
			return;
		if (end > len) {
			need_more(r, len);
			return;
		}
		off = end;
	}
}

void fcgiguard_check(const unsigned char *buf, size_t len, struct fcgiguard_result *r)
{
	struct rec h;

	memset(r, 0, sizeof *r);
	/* Never judge by bytes past the limit: the caller peeks at most that
	 * many, and a verdict must not depend on how many more were there. */
	if (len > FCGIGUARD_HEAD_MAX)
		len = FCGIGUARD_HEAD_MAX;
	r->seen = len;
	if (len > 0 && buf[0] != FCGI_VERSION_1) {
		verdict(r, FCGIGUARD_REJECT, "unsupported FastCGI version");
		return;
	}
	if (len < HDR) {
		verdict(r, FCGIGUARD_INCOMPLETE, NULL);
		return;
	}
	get_rec(buf, &h);
	if (h.id == 0 && h.type != FCGI_BEGIN_REQUEST) {
		check_mgmt(&h, len, r);
		return;
	}
	if (h.type != FCGI_BEGIN_REQUEST) {
		verdict(r, FCGIGUARD_REJECT, "first record is not BEGIN_REQUEST");
		return;
	}
	/* libfcgi does not skip a BEGIN_REQUEST's padding: it would read the
	 * padding as the next record. Nobody pads an 8-byte body. */
	if (h.id == 0 || h.clen != 8 || h.plen != 0) {
		verdict(r, FCGIGUARD_REJECT, "malformed BEGIN_REQUEST");
		return;
	}
	if (len < HDR + 8u) {
		verdict(r, FCGIGUARD_INCOMPLETE, NULL);
		return;
	}
	r->request_id = h.id;
	r->keep_conn = (buf[HDR + 2] & FCGI_KEEP_CONN) != 0;
	if (((unsigned)buf[HDR] << 8 | buf[HDR + 1]) != FCGI_RESPONDER) {
		verdict(r, FCGIGUARD_BAD_ROLE, "role other than RESPONDER");
		return;
	}
	check_params(buf, len, HDR + 8u, r);
}

/* ---- replies ---- */

/* Header of a record with content length n, padded to 8 bytes (zeros). */
static size_t put_header(unsigned char *out, unsigned type, unsigned id, size_t n)
{
	size_t pad = (8 - n % 8) % 8;

	out[0] = FCGI_VERSION_1;
	out[1] = (unsigned char)type;
	out[2] = (unsigned char)(id >> 8);
	out[3] = (unsigned char)id;
	out[4] = (unsigned char)(n >> 8);
	out[5] = (unsigned char)n;
	out[6] = (unsigned char)pad;
	out[7] = 0;
	memset(out + HDR + n, 0, pad);
	return HDR + n + pad;
}

/* One name-value pair of a management record at *i; false at the end or
 * when malformed (then *i stays put). */
static bool next_pair(const unsigned char *s, size_t n, size_t *i, const unsigned char **name,
		      size_t *name_len, size_t *value_len)
{
	size_t lens[2], j = *i;

	for (int k = 0; k < 2; k++) {
		if (j >= n)
			return false;
		if (!(s[j] & 0x80)) {
			lens[k] = s[j++];
		} else {
			if (n - j < 4)
				return false;
			lens[k] = (size_t)(s[j] & 0x7f) << 24 | (size_t)s[j + 1] << 16 |
				  (size_t)s[j + 2] << 8 | s[j + 3];
			j += 4;
		}
	}
	if (lens[0] > n - j || lens[1] > n - j - lens[0])
		return false;
	*name = s + j;
	*name_len = lens[0];
	*value_len = lens[1];
	*i = j + lens[0] + lens[1];
	return true;
}

size_t fcgiguard_mgmt_reply(const unsigned char *rec, size_t len, long max_conns,
			    unsigned char *out)
{
	static const char *const names[] = { "FCGI_MAX_CONNS", "FCGI_MAX_REQS", "FCGI_MPXS_CONNS" };
	struct rec h;
	bool asked[3] = { false, false, false };
	size_t i = 0, o = HDR, name_len, value_len;
	const unsigned char *name;

	if (len < HDR)
		return 0;
	get_rec(rec, &h);
	if (len < HDR + h.clen + h.plen)
		return 0;
	if (h.type != FCGI_GET_VALUES) {
		memset(out + HDR, 0, 8);
		out[HDR] = (unsigned char)h.type;
		return put_header(out, FCGI_UNKNOWN_TYPE, 0, 8);
	}
	while (next_pair(rec + HDR, h.clen, &i, &name, &name_len, &value_len))
		for (int k = 0; k < 3; k++)
			if (name_len == strlen(names[k]) && memcmp(name, names[k], name_len) == 0)
				asked[k] = true; /* each answered once, however often asked */
	if (i != h.clen)
		return 0;
	for (int k = 0; k < 3; k++) {
		char value[24];
		int vlen;

		if (!asked[k])
			continue;
		vlen = snprintf(value, sizeof value, "%ld", k == 2 ? 0 : max_conns);
		out[o++] = (unsigned char)strlen(names[k]);
		out[o++] = (unsigned char)vlen;
		memcpy(out + o, names[k], strlen(names[k]));
		o += strlen(names[k]);
		memcpy(out + o, value, (size_t)vlen);
		o += (size_t)vlen;
	}
	return put_header(out, FCGI_GET_VALUES_RESULT, 0, o - HDR);
}

size_t fcgiguard_end_request(unsigned request_id, int protocol_status, unsigned char *out)
{
	memset(out + HDR, 0, 8);
	out[HDR + 4] = (unsigned char)protocol_status; /* appStatus 0 */
	return put_header(out, FCGI_END_REQUEST, request_id, 8);
}

size_t fcgiguard_error_reply(unsigned request_id, int status, const char *msg, unsigned char *out)
{
	char body[128], text[FCGIGUARD_REPLY_MAX - 64];
	int blen = snprintf(body, sizeof body, "{\"error\":\"%s\"}", msg);
	int n = snprintf(text, sizeof text,
			 "Status: %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
			 "Cache-Control: no-store\r\n\r\n%s",
			 status, router_reason_phrase(status), blen, body);
	size_t o;

	if (blen < 0 || (size_t)blen >= sizeof body || n < 0 || (size_t)n >= sizeof text)
		return 0;
	memcpy(out + HDR, text, (size_t)n);
	o = put_header(out, FCGI_STDOUT, request_id, (size_t)n);
	o += put_header(out + o, FCGI_STDOUT, request_id, 0);
	return o + fcgiguard_end_request(request_id, 0, out + o);
}
