/* libFuzzer target: fcgiguard_check on arbitrary bytes, and libfcgi on the
 * heads it lets through.
 *
 * Oracles, besides ASan/UBSan/LSan:
 * - a verdict is final: any prefix of the input is either INCOMPLETE or gets
 *   the same verdict (a connection is judged on a prefix of its bytes);
 * - COMPLETE means libfcgi (the real one, over a socketpair whose other end is
 *   already shut) reads the head without needing another byte, and finds
 *   exactly the parameters a simple reference parser finds;
 * - the replies we build are well-framed records. */
#include <errno.h>
#include <fcgiapp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fcgiguard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Reference: the PARAMS content of the first request, concatenated. */
static size_t params_of(const uint8_t *b, size_t len, uint8_t *out)
{
	unsigned id = (unsigned)b[2] << 8 | b[3];
	size_t off = 16 + b[6], o = 0;

	while (off + 8 <= len) {
		unsigned rid = (unsigned)b[off + 2] << 8 | b[off + 3];
		size_t clen = (size_t)b[off + 4] << 8 | b[off + 5];

		if (rid == id && b[off + 1] == 4) {
			if (clen == 0)
				return o;
			memcpy(out + o, b + off + 8, clen);
			o += clen;
		}
		off += 8 + clen + b[off + 6];
	}
	abort(); /* COMPLETE without an empty FCGI_PARAMS record */
}

/* Number of well-formed pairs in s, or abort if it is not exactly pairs. */
static size_t count_pairs(const uint8_t *s, size_t n)
{
	size_t i = 0, count = 0;

	while (i < n) {
		size_t len[2];

		for (int k = 0; k < 2; k++) {
			if (i >= n)
				abort();
			if (s[i] & 0x80) {
				if (n - i < 4)
					abort();
				len[k] = (size_t)(s[i] & 0x7f) << 24 | (size_t)s[i + 1] << 16 |
					 (size_t)s[i + 2] << 8 | s[i + 3];
				i += 4;
			} else {
				len[k] = s[i++];
			}
		}
		if (len[0] + len[1] > n - i)
			abort();
		i += len[0] + len[1];
		count++;
	}
	return count;
}

static void check_with_libfcgi(const uint8_t *data, size_t size, bool stdin_done)
{
	static uint8_t params[FCGIGUARD_HEAD_MAX];
	static int initialised;
	FCGX_Request req;
	int sv[2];
	size_t n = 0;

	if (!initialised) {
		if (FCGX_Init() != 0)
			abort();
		initialised = 1;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		abort();
	if (write(sv[1], data, size) != (ssize_t)size)
		abort();
	shutdown(sv[1], SHUT_WR); /* any read past what we wrote gets EOF */
	FCGX_InitRequest(&req, -1, 0);
	req.ipcFd = sv[0];
	req.keepConnection = 1;
	FCGX_Detach(&req);
	if (FCGX_Accept_r(&req) != 0)
		abort(); /* libfcgi wanted more, or refused what we passed */
	while (req.envp[n] != NULL)
		n++;
	/* libfcgi adds FCGI_ROLE=RESPONDER in front of the peer's pairs */
	if (n != 1 + count_pairs(params, params_of(data, size, params)))
		abort();
	if (stdin_done) {
		char body[4096];

		while (FCGX_GetStr(body, sizeof body, req.in) > 0)
			;
		if (!FCGX_HasSeenEOF(req.in) || FCGX_GetError(req.in) != 0)
			abort(); /* stdin_done promises the whole input is readable */
	}
	FCGX_Finish_r(&req);
	FCGX_Free(&req, 1);
	close(sv[1]);
}

static void check_reply(const uint8_t *out, size_t n)
{
	size_t off = 0;

	if (n == 0 || n > FCGIGUARD_REPLY_MAX)
		abort();
	while (off < n) {
		size_t clen = (size_t)out[off + 4] << 8 | out[off + 5];

		if (out[off] != 1 || off + 8 + clen + out[off + 6] > n ||
		    (8 + clen + out[off + 6]) % 8 != 0)
			abort();
		off += 8 + clen + out[off + 6];
	}
}

static void check_prefix(const uint8_t *data, size_t k, const struct fcgiguard_result *full)
{
	struct fcgiguard_result r;

	fcgiguard_check(data, k, &r);
	if (r.verdict == FCGIGUARD_INCOMPLETE)
		return;
	if (r.verdict != full->verdict || r.status != full->status)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fcgiguard_result r;
	uint8_t out[FCGIGUARD_REPLY_MAX];

	if (size > FCGIGUARD_HEAD_MAX + 1024)
		return 0;
	fcgiguard_check(data, size, &r);
	if (r.verdict == FCGIGUARD_REJECT || r.verdict == FCGIGUARD_ERROR ||
	    r.verdict == FCGIGUARD_BAD_ROLE) {
		if (r.reason == NULL)
			abort();
	}
	if (r.verdict == FCGIGUARD_ERROR && r.status != 400 && r.status != 414 && r.status != 431)
		abort();
	if (size > 0) {
		check_prefix(data, size - 1, &r);
		check_prefix(data, data[size - 1] % size, &r);
	}
	switch (r.verdict) {
	case FCGIGUARD_COMPLETE:
		if (r.stdin_done != (r.input_len > 0) || r.input_len > r.seen || r.seen > size)
			abort();
		check_with_libfcgi(data, size, r.stdin_done);
		check_reply(out, fcgiguard_error_reply(r.request_id, 431, "too large", out));
		break;
	case FCGIGUARD_MGMT:
		if (r.mgmt_len > size)
			abort();
		{
			size_t n = fcgiguard_mgmt_reply(data, r.mgmt_len, 1024, out);
			if (n != 0)
				check_reply(out, n);
		}
		break;
	case FCGIGUARD_BAD_ROLE:
		check_reply(out, fcgiguard_end_request(r.request_id, 3, out));
		break;
	default: break;
	}
	return 0;
}
