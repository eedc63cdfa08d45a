/* fcgiguard: checks the bytes a FastCGI peer sent before libfcgi parses them,
 * and builds the few records we answer ourselves. Pure: no I/O, no logging. */
#ifndef NEONFCGI_FCGIGUARD_H
#define NEONFCGI_FCGIGUARD_H

#include <stdbool.h>
#include <stddef.h>

/* Largest request head (BEGIN_REQUEST through the empty FCGI_PARAMS record,
 * framing included) we accept: nginx sends a few hundred bytes, and at most
 * its header buffers (4 x 8 KiB by default). */
#define FCGIGUARD_HEAD_MAX 65536
/* Room for any reply built below. */
#define FCGIGUARD_REPLY_MAX 512

enum fcgiguard_verdict {
	FCGIGUARD_COMPLETE,   /* a whole, well-formed request head */
	FCGIGUARD_INCOMPLETE, /* well-formed so far: wait for more bytes */
	FCGIGUARD_MGMT,       /* a management record (FCGI_GET_VALUES…) comes first */
	FCGIGUARD_REJECT,     /* not FastCGI we can parse safely: close */
	FCGIGUARD_ERROR,      /* a framed request we refuse with an HTTP status */
	FCGIGUARD_BAD_ROLE,   /* BEGIN_REQUEST for a role other than RESPONDER */
};

struct fcgiguard_result {
	enum fcgiguard_verdict verdict;
	const char *reason;  /* REJECT, ERROR, BAD_ROLE: static text, never peer bytes */
	int status;          /* ERROR: 400, 414 or 431 */
	unsigned request_id; /* from BEGIN_REQUEST; 0 before it */
	bool keep_conn;      /* BEGIN_REQUEST asked for FCGI_KEEP_CONN */
	bool stdin_done;     /* COMPLETE: all FCGI_STDIN, through its empty record, is here */
	size_t seen;         /* bytes examined */
	size_t input_len;    /* stdin_done: bytes of the whole request, through empty FCGI_STDIN */
	size_t mgmt_len;     /* MGMT: length of that record, padding included */
};

/* Examine the first len bytes a peer sent on a connection (or since the last
 * request on a kept connection). COMPLETE means libfcgi can read the whole
 * head without waiting and without reaching its unsafe paths: management
 * records inside a request, FCGI_GET_VALUES, parameter lengths past the data. */
void fcgiguard_check(const unsigned char *buf, size_t len, struct fcgiguard_result *r);
/* Reasons an input is refused, counted in /metrics by a short label: the
 * texts of fcgiguard_result.reason and the waiting room's own refusals
 * (FCGIGUARD_WHY_*). The last label, "other", takes any other text. */
#define FCGIGUARD_REASONS          16
#define FCGIGUARD_WHY_BAD_MGMT     "malformed management record"
#define FCGIGUARD_WHY_HEAD_TIMEOUT "request head not complete in time"
#define FCGIGUARD_WHY_ROOM_FULL    "too many connections waiting for a request"
int fcgiguard_reason_index(const char *reason);
const char *fcgiguard_reason_label(int index);

/* Our answer to the management record rec (MGMT, mgmt_len bytes):
 * FCGI_GET_VALUES_RESULT (max_conns for FCGI_MAX_CONNS and FCGI_MAX_REQS,
 * 0 for FCGI_MPXS_CONNS) or FCGI_UNKNOWN_TYPE. Returns its length; 0 when rec
 * is malformed. out holds FCGIGUARD_REPLY_MAX bytes. */
size_t fcgiguard_mgmt_reply(const unsigned char *rec, size_t len, long max_conns,
			    unsigned char *out);
/* A whole response to request_id: CGI headers with `status`, a JSON body
 * {"error":msg}, then the empty FCGI_STDOUT and FCGI_END_REQUEST records. */
size_t fcgiguard_error_reply(unsigned request_id, int status, const char *msg, unsigned char *out);
/* FCGI_END_REQUEST with a protocol status (3: FCGI_UNKNOWN_ROLE). */
size_t fcgiguard_end_request(unsigned request_id, int protocol_status, unsigned char *out);

#endif
