/* migplan: the side of migrations that needs no database (DESIGN.md §6):
 * MIGRATIONS_DIR/NNNN_name.sql files named, read, checksummed and checked,
 * then merged with the applied rows into a plan, and the `migrate status`
 * table. Problems go to the caller's list; nothing here logs. */
#ifndef NEONFCGI_MIGPLAN_H
#define NEONFCGI_MIGPLAN_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct problems;

#define MIGPLAN_SHA256_HEX   65 /* 64 hex digits + NUL */
#define MIGPLAN_NO_TX_MARKER "-- neonfcgi:no-transaction"

struct migplan_file {
	int version;
	char *name; /* "0002_users.sql" */
	char *sql;  /* the file's bytes, NUL-terminated (a NUL inside is refused) */
	size_t len;
	char checksum[MIGPLAN_SHA256_HEX]; /* SHA-256 of the raw bytes, as sha256sum prints */
	bool no_transaction;               /* first line is MIGPLAN_NO_TX_MARKER */
};

struct migplan_files {
	struct migplan_file *v;
	size_t n;
};

/* One row of neonfcgi_schema_migrations, a value: it owns no memory. */
struct migplan_applied {
	int version;
	char name[NAME_MAX + 1]; /* a file name; a longer one recorded by hand is cut */
	char checksum[MIGPLAN_SHA256_HEX];
	char applied_at[32]; /* "2026-01-02 03:04:05Z" */
};

struct migplan_applied_list {
	struct migplan_applied *v;
	size_t n;
};

enum migplan_state {
	MIGPLAN_PENDING,      /* file not applied yet: to run */
	MIGPLAN_APPLIED,      /* applied, file unchanged */
	MIGPLAN_CHANGED,      /* applied, the file's checksum differs: refused */
	MIGPLAN_RENAMED,      /* applied under another file name: refused */
	MIGPLAN_MISSING,      /* applied, no file: reported, not fatal (a rolled-back deploy) */
	MIGPLAN_OUT_OF_ORDER, /* not applied, but a later version is: refused */
};

struct migplan_step {
	int version;
	enum migplan_state state;
	const struct migplan_file *file;       /* NULL when MISSING */
	const struct migplan_applied *applied; /* NULL when PENDING / OUT_OF_ORDER */
};

struct migplan {
	struct migplan_step *v;
	size_t n;
};

/* Add one file (name and contents): its version from a name "NNNN_name.sql"
 * (four digits 0001–9999, '_', [a-z0-9_]+, ".sql"), its SHA-256, its marker.
 * A bad name or content is appended to p and the file is not added. */
int migplan_files_add(struct migplan_files *fs, const char *fname, const char *data, size_t len,
		      struct problems *p) __attribute__((warn_unused_result));
/* Sort by version, then refuse duplicates, gaps (versions run 0001, 0002, …)
 * and transaction control in transactional files; every problem goes to p. */
int migplan_files_check(struct migplan_files *fs, struct problems *p)
    __attribute__((warn_unused_result));
/* Read every entry of dir (dot files are ignored), add and check them. */
int migplan_scan_dir(const char *dir, struct migplan_files *fs, struct problems *p)
    __attribute__((warn_unused_result));
void migplan_files_free(struct migplan_files *fs);
/* Append one recorded row (copied); rows are appended in version order. */
void migplan_applied_add(struct migplan_applied_list *al, int version, const char *name,
			 const char *checksum, const char *applied_at);
void migplan_applied_free(struct migplan_applied_list *al);

/* Merge files (checked) and applied rows (sorted by version) into one step
 * per version, in version order. Borrows from both. */
void migplan_build(const struct migplan_files *fs, const struct migplan_applied_list *al,
		   struct migplan *plan);
size_t migplan_count(const struct migplan *plan, enum migplan_state state);
/* Append one line per step that forbids applying (CHANGED, RENAMED,
 * OUT_OF_ORDER); returns how many. */
size_t migplan_refusals(const struct migplan *plan, struct problems *p);
void migplan_free(struct migplan *plan);
/* The `migrate status` table: version, name, applied_at or "pending", and
 * the state ("ok", "new", "changed", "file missing", …). */
void migplan_print_status(const struct migplan *plan, FILE *out);

#endif
