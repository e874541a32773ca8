// SPDX-License-Identifier: BSD-2-Clause
/*
 * The embedded trace store (store.h) on SQLite.
 *
 * Schema (PRAGMA user_version = STORE_SCHEMA_VERSION):
 *   traces  one row per trace, kept up to date as spans go in: start, end, span and error
 *           counts and the root span, so a search lists traces without reading their spans.
 *           Its rowid is the trace's key in the other tables: a new trace gets the next
 *           one, so their indexes grow at the end where a 16-byte random trace id would
 *           write all over them.
 *   spans   one row per span: its trace's rowid and the columns the queries filter on,
 *           taken from the span line when it goes in, and the line itself (what comes out).
 *   attrs   (key, value, trace): the string and integer attributes of a trace's spans,
 *           each pair once a trace (the spans of a trace repeat most: the method, the
 *           addresses), so that a `key=value` filter is one index lookup. Clustered by key
 *           and value: most attributes take few values, so a batch's entries land on a few
 *           pages (a hash of key and value, tried, spread them over the whole index and
 *           wrote a third slower). Bounded: at most STORE_MAX_ATTRS_PER_SPAN a span, values
 *           up to STORE_MAX_ATTR_VALUE bytes; the keys of unindexed_keys are left out. A
 *           filter on a key left out reads the lines instead (json_extract): right, only
 *           slower.
 *
 * Retention deletes whole traces, oldest start first, and gives the pages back to the file
 * system (auto_vacuum = INCREMENTAL, then incremental_vacuum): a store at its size bound
 * stays there. Ids are stored as BLOBs (16 and 8 bytes), times as integers (ns).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "audit.h"
#include "json_read.h"
#include "store.h"

#define STORE_SCHEMA_VERSION 4
#define STORE_SCHEMA_VERSION_TEXT "4"
#define STORE_MAX_ATTRS_PER_SPAN 32
#define STORE_MAX_ATTR_VALUE 256
#define STORE_BUSY_TIMEOUT_MS 2000
#define STORE_PRUNE_BATCH 1   /* traces deleted a round at least while over the size bound */
#define STORE_AGE_BATCH 2000  /* expired traces deleted a round at most */
#define STORE_AGE_ROUNDS 4    /* rounds of those a store_prune call at most */
#define STORE_CACHE_KIB 16384 /* page cache of a connection: indexes keyed by random ids */
#define STORE_MAX_VALUE_LEN (4 * (int)JSON_READ_MAX_LEN) /* a line is JSON_READ_MAX_LEN at most */

/* In an upsert of traces: the new span is a better root than the one recorded (in SQL, every
 * expression of an UPDATE's SET reads the row as it was). */
#define ROOT_BETTER                                                                                \
	"(excluded.root_has_parent < root_has_parent OR (excluded.root_has_parent = "              \
	"root_has_parent AND excluded.root_start < root_start))"

enum stmt_id {
	ST_INSERT_SPAN,
	ST_UPSERT_TRACE,
	ST_INSERT_ATTR,
	ST_TRACE_LINES,
	ST__COUNT,
};

static const char *const stmt_sql[ST__COUNT] = {
    [ST_INSERT_SPAN] = "INSERT INTO spans(trace, span_id, parent_id, service, name, route, "
		       "kind, start_ns, duration_ns, error, callee, propagation, line) "
		       "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    /* the root is the earliest span without a parent; failing that, the earliest span */
    [ST_UPSERT_TRACE] =
	"INSERT INTO traces(trace_id, start_ns, end_ns, nspans, nerrors, root_service, "
	"root_name, root_start, root_duration, root_has_parent) "
	"VALUES(?1, ?2, ?3, 1, ?4, ?5, ?6, ?2, ?7, ?8) "
	"ON CONFLICT(trace_id) DO UPDATE SET "
	"start_ns = min(start_ns, excluded.start_ns), end_ns = max(end_ns, excluded.end_ns), "
	"nspans = nspans + 1, nerrors = nerrors + excluded.nerrors, "
	"root_service = iif(" ROOT_BETTER ", excluded.root_service, root_service), "
	"root_name = iif(" ROOT_BETTER ", excluded.root_name, root_name), "
	"root_duration = iif(" ROOT_BETTER ", excluded.root_duration, root_duration), "
	"root_start = iif(" ROOT_BETTER ", excluded.root_start, root_start), "
	"root_has_parent = iif(" ROOT_BETTER ", excluded.root_has_parent, root_has_parent) "
	"RETURNING id",
    [ST_INSERT_ATTR] = "INSERT OR IGNORE INTO attrs(key, value, trace) VALUES(?1, ?2, ?3)",
    [ST_TRACE_LINES] = "SELECT line FROM spans WHERE trace = (SELECT id FROM traces WHERE "
		       "trace_id = ?1) ORDER BY start_ns, id",
};

static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS spans("
    " id INTEGER PRIMARY KEY,"
    " trace INTEGER NOT NULL, span_id BLOB NOT NULL, parent_id BLOB,"
    " service TEXT NOT NULL, name TEXT NOT NULL, route TEXT,"
    " kind INTEGER NOT NULL, start_ns INTEGER NOT NULL, duration_ns INTEGER NOT NULL,"
    " error INTEGER NOT NULL, callee TEXT, propagation TEXT, line TEXT NOT NULL);"
    "CREATE INDEX IF NOT EXISTS spans_trace ON spans(trace, parent_id);"
    "CREATE INDEX IF NOT EXISTS spans_service ON spans(service, name);"
    "CREATE INDEX IF NOT EXISTS spans_name ON spans(name);"
    "CREATE INDEX IF NOT EXISTS spans_route ON spans(route) WHERE route IS NOT NULL;"
    "CREATE INDEX IF NOT EXISTS spans_client ON spans(start_ns) WHERE kind = 3;"
    "CREATE TABLE IF NOT EXISTS traces("
    " id INTEGER PRIMARY KEY, trace_id BLOB NOT NULL UNIQUE,"
    " start_ns INTEGER NOT NULL, end_ns INTEGER NOT NULL,"
    " nspans INTEGER NOT NULL, nerrors INTEGER NOT NULL,"
    " root_service TEXT NOT NULL, root_name TEXT NOT NULL, root_start INTEGER NOT NULL,"
    " root_duration INTEGER NOT NULL, root_has_parent INTEGER NOT NULL);"
    "CREATE INDEX IF NOT EXISTS traces_start ON traces(start_ns);"
    "CREATE TABLE IF NOT EXISTS attrs("
    " key TEXT NOT NULL, value TEXT NOT NULL, trace INTEGER NOT NULL,"
    " PRIMARY KEY(key, value, trace)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS attrs_trace ON attrs(trace);";

/*
 * Attributes not indexed (a filter on them reads the lines instead): those with another
 * value on every span (the peer's port, the thread), those another column or attribute
 * already serves (url.full: server.address and url.path; http.route and url.template: the
 * operation), and the agent's own evidence (hoptrace.parent.*, hoptrace.traceparent.*,
 * and the details of the propagation verdict), which the audit and the dependencies read.
 * Each index entry costs as much to write as the span's row: the attributes were 60% of
 * the writer's CPU time before these were left out.
 */
static const char *const unindexed_keys[] = {
    "thread.id",  "network.peer.port", "client.port", "network.local.port",	  "url.full",
    "url.scheme", "url.template",      "http.route",  "network.protocol.version",
};
static const char *const unindexed_prefixes[] = {
    "hoptrace.parent.",
    "hoptrace.traceparent.",
    "hoptrace.propagation.",
};

static bool key_unindexed(const char *key)
{
	for (size_t i = 0; i < sizeof(unindexed_keys) / sizeof(unindexed_keys[0]); i++)
		if (strcmp(key, unindexed_keys[i]) == 0)
			return true;
	for (size_t i = 0; i < sizeof(unindexed_prefixes) / sizeof(unindexed_prefixes[0]); i++)
		if (strncmp(key, unindexed_prefixes[i], strlen(unindexed_prefixes[i])) == 0)
			return true;
	return false;
}

struct store {
	sqlite3 *db;
	sqlite3_stmt *stmt[ST__COUNT];
	struct json_doc doc;
	bool read_only;
	uint64_t max_bytes, max_age_ns;
	int64_t pruned_size;	/* the file's size after the last deletion for size, 0: none */
	unsigned time_limit_ms; /* of a query (store_set_time_limit), 0: none */
	uint64_t deadline_ns;	/* CLOCK_MONOTONIC: the query running stops past it */
	char path[PATH_MAX];
};

/* -errno for a SQLite result code: the callers tell a full disk and a damaged file apart. */
static int sqlite_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		return -EUCLEAN;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		return -EACCES;
	case SQLITE_CANTOPEN:
		return -ENOENT;
	case SQLITE_TOOBIG:
		return -E2BIG;
	case SQLITE_INTERRUPT: /* only the time limit interrupts */
		return -ETIMEDOUT;
	}
	return -EIO;
}

const char *store_strerror(int err)
{
	switch (err) {
	case -ENOSPC:
		return "disk full";
	case -EUCLEAN:
		return "not a SQLite database, or damaged";
	case -ETIMEDOUT:
		return "the query took longer than its time limit";
	}
	return strerror(err < 0 ? -err : err);
}

static int exec_sql(struct store *st, const char *sql)
{
	return sqlite_errno(sqlite3_exec(st->db, sql, NULL, NULL, NULL));
}

/* The integer a one-row PRAGMA (or query) returns; <0: -errno. */
static int64_t query_int(struct store *st, const char *sql)
{
	sqlite3_stmt *s;
	int64_t v = -EIO;
	int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);

	if (rc != SQLITE_OK)
		return sqlite_errno(rc);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	else
		v = sqlite_errno(rc) ? sqlite_errno(rc) : -EIO;
	sqlite3_finalize(s);
	return v;
}

/* Each missing directory of path's parent, mode 0700 (the spans are private). */
static int make_parent_dirs(const char *path)
{
	char dir[PATH_MAX];
	size_t n = strlen(path);

	if (n >= sizeof(dir))
		return -ENAMETOOLONG;
	memcpy(dir, path, n + 1);
	for (char *p = dir + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(dir, 0700) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	return 0;
}

/* The agent writes as root: in a directory others may write to, they could plant the
 * database, its -wal or -shm file (to read the spans or feed it a crafted one), or a
 * symbolic link to a file of the system. The store's directory must be ours (or root's)
 * and writable by us alone. */
static int check_private_dir(const char *path, const char **why)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	struct stat sb;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == path)
		snprintf(dir, sizeof(dir), "/");
	else if ((size_t)(slash - path) >= sizeof(dir))
		return -ENAMETOOLONG;
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
	if (lstat(dir, &sb) != 0)
		return -errno;
	if (S_ISLNK(sb.st_mode)) {
		*why = "its directory is a symbolic link";
		return -EPERM;
	}
	if ((sb.st_uid != geteuid() && sb.st_uid != 0) || (sb.st_mode & 022)) {
		*why = "its directory is writable by other users (use a directory only its owner "
		       "writes to)";
		return -EPERM;
	}
	return 0;
}

/* Create the file 0600 before SQLite opens it (SQLite would create it 0644 under the
 * usual umask); its -wal and -shm files take the database file's mode. An existing file
 * must be a regular file of ours: never a symbolic link (O_NOFOLLOW here, and
 * SQLITE_OPEN_NOFOLLOW for SQLite's own open), nor another user's. */
static int create_private_file(const char *path, const char **why)
{
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	struct stat sb;
	int e = 0;

	if (fd < 0) {
		if (errno == ELOOP)
			*why = "it is a symbolic link";
		return errno == ELOOP ? -EPERM : -errno;
	}
	if (fstat(fd, &sb) != 0) {
		e = -errno;
	} else if (!S_ISREG(sb.st_mode) || sb.st_uid != geteuid() || sb.st_nlink != 1) {
		*why = "it is not a regular file of this user's";
		e = -EPERM;
	} else if ((sb.st_mode & 077) && fchmod(fd, 0600) != 0) {
		e = -errno;
	}
	close(fd);
	return e;
}

/* SQLite on a file someone else may have written (hoptrace query and ui read any path
 * they are given, as root): no schema code runs (triggers, views, virtual tables: a
 * hoptrace store has none, so one that does is refused), no function the schema names
 * runs with side effects, no write to the schema itself, each b-tree cell's size is checked
 * as it is read, and no value is larger than a span line can be (SQLite's "Defense Against
 * The Dark Arts"). */
static int harden_connection(struct store *st)
{
	/* no string or blob larger than a span line can be (a crafted row of a gigabyte would
	 * be read whole into memory): SQLITE_TOOBIG instead */
	sqlite3_limit(st->db, SQLITE_LIMIT_LENGTH, STORE_MAX_VALUE_LEN);
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_DEFENSIVE, 1, NULL);
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, NULL);
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_ENABLE_TRIGGER, 0, NULL);
	sqlite3_db_config(st->db, SQLITE_DBCONFIG_ENABLE_VIEW, 0, NULL);
	return exec_sql(st, "PRAGMA cell_size_check = ON");
}

static int refuse_schema_code(struct store *st)
{
	int64_t n = query_int(st, "SELECT count(*) FROM sqlite_schema WHERE type IN "
				  "('trigger', 'view') OR sql LIKE 'CREATE VIRTUAL%'");

	return n < 0 ? (int)n : n > 0 ? -EPROTO : 0;
}

static int setup_schema(struct store *st)
{
	int64_t version = query_int(st, "PRAGMA user_version");
	int err;

	if (version < 0)
		return (int)version;
	if (version != 0 && version != STORE_SCHEMA_VERSION)
		return -EPROTO; /* another layout (a newer hoptrace's): not ours to change */
	/* before any table exists, or it has no effect */
	err = exec_sql(st, "PRAGMA auto_vacuum = INCREMENTAL");
	if (!err)
		err = exec_sql(st, "PRAGMA journal_mode = WAL");
	if (!err)
		err = exec_sql(st, "PRAGMA synchronous = NORMAL");
	if (!err)
		err = exec_sql(st, schema_sql);
	if (!err && version != STORE_SCHEMA_VERSION)
		err = exec_sql(st, "PRAGMA user_version = " STORE_SCHEMA_VERSION_TEXT);
	return err;
}

static int prepare_statements(struct store *st)
{
	for (int i = 0; i < ST__COUNT; i++) {
		int rc = sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
					    &st->stmt[i], NULL);

		if (rc != SQLITE_OK)
			return sqlite_errno(rc);
	}
	return 0;
}

struct store *store_open_errno(const char *path, enum store_mode mode, int *errnum, char *err,
			       size_t errlen)
{
	bool memory = strcmp(path, ":memory:") == 0;
	int flags = mode == STORE_READ_WRITE ? SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE
					     : SQLITE_OPEN_READONLY;
	struct store *st = calloc(1, sizeof(*st));
	const char *what = "cannot open the store", *why = NULL;
	int e = 0, rc;

	if (!st) {
		e = -ENOMEM;
		goto fail;
	}
	json_doc__init(&st->doc);
	st->read_only = mode != STORE_READ_WRITE;
	snprintf(st->path, sizeof(st->path), "%s", path);
	if (!memory && mode == STORE_READ_WRITE) {
		e = make_parent_dirs(path);
		if (!e)
			e = check_private_dir(path, &why);
		if (!e)
			e = create_private_file(path, &why);
		if (e) {
			what = "cannot create the store";
			goto fail;
		}
		flags |= SQLITE_OPEN_NOFOLLOW;
	}
	rc = sqlite3_open_v2(path, &st->db, flags | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		e = sqlite_errno(rc);
		if (st->db && sqlite3_extended_errcode(st->db) == SQLITE_CANTOPEN_SYMLINK) {
			why = "its path holds a symbolic link";
			e = -EPERM;
		}
		goto fail;
	}
	sqlite3_extended_result_codes(st->db, 0);
	sqlite3_busy_timeout(st->db, STORE_BUSY_TIMEOUT_MS);
	e = harden_connection(st);
	if (!e)
		e = refuse_schema_code(st);
	if (!e && mode == STORE_READ_WRITE) {
		e = setup_schema(st);
	} else if (!e) {
		int64_t v = query_int(st, "PRAGMA user_version");

		e = v < 0 ? (int)v : v != STORE_SCHEMA_VERSION ? -EPROTO : 0;
	}
	if (!e)
		e = exec_sql(st, "PRAGMA temp_store = MEMORY");
	if (!e) {
		char sql[64];

		snprintf(sql, sizeof(sql), "PRAGMA cache_size = -%d", STORE_CACHE_KIB);
		e = exec_sql(st, sql);
	}
	if (!e)
		e = prepare_statements(st);
	if (e)
		goto fail;
	if (errnum)
		*errnum = 0;
	return st;
fail:
	if (errnum)
		*errnum = e;
	if (err && errlen)
		snprintf(err, errlen, "%s %s: %s", what, path,
			 why		? why
			 : e == -EPROTO ? "not a hoptrace store (or one of a newer version)"
			 : e == -ENOENT && mode != STORE_READ_WRITE ? "no such file"
								    : store_strerror(e));
	store_close(st);
	return NULL;
}

struct store *store_open(const char *path, enum store_mode mode, char *err, size_t errlen)
{
	return store_open_errno(path, mode, NULL, err, errlen);
}

void store_close(struct store *st)
{
	if (!st)
		return;
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	json_doc__free(&st->doc);
	free(st);
}

/* ---- span lines in ------------------------------------------------------------------- */

/* What the indexed columns take from a span line. Strings point into the parsed document. */
struct span_row {
	uint8_t trace_id[16], span_id[8], parent_id[8];
	bool has_parent;
	const char *service, *name, *route, *callee, *propagation;
	int kind;
	int64_t start_ns, end_ns, duration_ns;
	bool error;
	const struct json_value *attributes;
};

static int hex_nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

bool store_parse_hex_id(const char *hex, uint8_t *out, size_t n)
{
	if (!hex || strlen(hex) != 2 * n)
		return false;
	for (size_t i = 0; i < n; i++) {
		int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return false;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return true;
}

static const char *member_str(const struct json_doc *d, const struct json_value *obj,
			      const char *key)
{
	return json_value_cstr(json_doc__member(d, obj, key));
}

static bool member_int(const struct json_doc *d, const struct json_value *obj, const char *key,
		       int64_t *out)
{
	return json_value_int(json_doc__member(d, obj, key), out);
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* The row of one span line; false for a line that is not a span of the schema. */
static bool parse_span_line(struct store *st, const char *line, size_t len, struct span_row *r)
{
	const struct json_doc *d = &st->doc;
	const struct json_value *root, *attrs;
	const char *parent, *kind, *status;

	memset(r, 0, sizeof(*r));
	if (json_doc__parse(&st->doc, line, len) != 0)
		return false;
	root = json_doc__root(d);
	if (!root || root->type != JSON_OBJECT)
		return false;
	if (!store_parse_hex_id(member_str(d, root, "trace_id"), r->trace_id, 16) ||
	    !store_parse_hex_id(member_str(d, root, "span_id"), r->span_id, 8) ||
	    all_zero(r->trace_id, 16))
		return false;
	parent = member_str(d, root, "parent_span_id");
	if (parent && *parent) {
		if (!store_parse_hex_id(parent, r->parent_id, 8))
			return false;
		r->has_parent = !all_zero(r->parent_id, 8);
	}
	r->name = member_str(d, root, "name");
	r->service = member_str(d, root, "service.name");
	if (!r->name || !r->service || !member_int(d, root, "start_unix_ns", &r->start_ns) ||
	    !member_int(d, root, "end_unix_ns", &r->end_ns) || r->start_ns < 0 || r->end_ns < 0)
		return false;
	if (!member_int(d, root, "duration_ns", &r->duration_ns) || r->duration_ns < 0)
		r->duration_ns = r->end_ns > r->start_ns ? r->end_ns - r->start_ns : 0;
	kind = member_str(d, root, "kind");
	r->kind = !kind ? 0 : strcmp(kind, "SERVER") == 0 ? 2 : strcmp(kind, "CLIENT") == 0 ? 3 : 0;
	status = member_str(d, root, "status");
	r->error = status && strcmp(status, "ERROR") == 0;
	attrs = json_doc__member(d, root, "attributes");
	if (attrs && attrs->type == JSON_OBJECT) {
		r->attributes = attrs;
		r->route = member_str(d, attrs, "http.route");
		r->callee = member_str(d, attrs, "hoptrace.callee.service");
		r->propagation = member_str(d, attrs, "hoptrace.propagation");
	}
	return true;
}

static void bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
	if (v)
		sqlite3_bind_text(s, i, v, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, i);
}

/* Step a statement that returns no rows, then reset it. */
static int step_done(sqlite3_stmt *s)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? 0 : sqlite_errno(rc) ? sqlite_errno(rc) : -EIO;
}

/* The string and integer attributes of a span into attrs, up to the per-span bound. */
static int insert_attrs(struct store *st, const struct span_row *r, int64_t trace_rowid)
{
	sqlite3_stmt *s = st->stmt[ST_INSERT_ATTR];
	unsigned n = 0;

	for (const struct json_value *a = json_doc__first(&st->doc, r->attributes);
	     a && n < STORE_MAX_ATTRS_PER_SPAN; a = json_doc__next(&st->doc, a)) {
		const char *v;
		int err;

		if (!a->key || a->key_len != strlen(a->key))
			continue;
		if (a->type == JSON_STRING)
			v = json_value_cstr(a);
		else if (a->type == JSON_NUMBER && json_value_int(a, &(int64_t){0}))
			v = a->str; /* the integer as written, as `key=value` gives it */
		else
			continue;
		if (!v || a->len > STORE_MAX_ATTR_VALUE || key_unindexed(a->key))
			continue;
		sqlite3_bind_text(s, 1, a->key, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, v, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, trace_rowid);
		err = step_done(s);
		if (err)
			return err;
		n++;
	}
	return 0;
}

/* The trace's row, created or brought up to date with the span; its rowid into *rowid. */
static int upsert_trace(struct store *st, const struct span_row *r, int64_t *rowid)
{
	sqlite3_stmt *s = st->stmt[ST_UPSERT_TRACE];
	int rc;

	sqlite3_bind_blob(s, 1, r->trace_id, 16, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, r->start_ns);
	sqlite3_bind_int64(s, 3, r->end_ns > r->start_ns ? r->end_ns : r->start_ns);
	sqlite3_bind_int(s, 4, r->error);
	sqlite3_bind_text(s, 5, r->service, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 6, r->name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 7, r->duration_ns);
	sqlite3_bind_int(s, 8, r->has_parent);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*rowid = sqlite3_column_int64(s, 0);
		rc = sqlite3_step(s);
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_DONE ? 0 : sqlite_errno(rc) ? sqlite_errno(rc) : -EIO;
}

static int insert_span(struct store *st, const struct span_row *r, const char *line, size_t len)
{
	sqlite3_stmt *s = st->stmt[ST_INSERT_SPAN];
	int64_t trace_rowid = 0;
	int err = upsert_trace(st, r, &trace_rowid);

	if (err)
		return err;
	sqlite3_bind_int64(s, 1, trace_rowid);
	sqlite3_bind_blob(s, 2, r->span_id, 8, SQLITE_STATIC);
	if (r->has_parent)
		sqlite3_bind_blob(s, 3, r->parent_id, 8, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 3);
	sqlite3_bind_text(s, 4, r->service, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, r->name, -1, SQLITE_STATIC);
	bind_text_or_null(s, 6, r->route);
	sqlite3_bind_int(s, 7, r->kind);
	sqlite3_bind_int64(s, 8, r->start_ns);
	sqlite3_bind_int64(s, 9, r->duration_ns);
	sqlite3_bind_int(s, 10, r->error);
	bind_text_or_null(s, 11, r->callee);
	bind_text_or_null(s, 12, r->propagation);
	sqlite3_bind_text(s, 13, line, (int)len, SQLITE_STATIC);
	err = step_done(s);
	return err ? err : insert_attrs(st, r, trace_rowid);
}

int store_add_lines(struct store *st, const char *const *lines, const size_t *lens, size_t n,
		    uint64_t *malformed)
{
	struct span_row r;
	int added = 0, err;

	if (st->read_only)
		return -EROFS;
	err = exec_sql(st, "BEGIN");
	if (err)
		return err;
	for (size_t i = 0; i < n && added < INT_MAX; i++) {
		if (lens[i] > INT_MAX || !parse_span_line(st, lines[i], lens[i], &r)) {
			if (malformed)
				(*malformed)++;
			continue;
		}
		err = insert_span(st, &r, lines[i], lens[i]);
		if (err)
			break;
		added++;
	}
	if (!err)
		err = exec_sql(st, "COMMIT");
	if (err) {
		exec_sql(st, "ROLLBACK");
		return err;
	}
	return added;
}

/* ---- queries --------------------------------------------------------------------------- */

static int64_t clamp_i64(uint64_t v)
{
	return v > INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* SQL built piece by piece into a fixed buffer; the values are bound, never written in. */
struct sql_text {
	char buf[2048];
	size_t len;
	bool overflow;
};

static void sql_add(struct sql_text *q, const char *piece)
{
	size_t n = strlen(piece);

	if (q->len + n >= sizeof(q->buf)) {
		q->overflow = true;
		return;
	}
	memcpy(q->buf + q->len, piece, n + 1);
	q->len += n;
}

/* The values bound to a search's parameters, in order. */
struct sql_arg {
	bool is_text;
	const char *text;
	int64_t i;
	const void *blob;
	int bloblen;
};

struct sql_args {
	struct sql_arg v[32];
	int n;
};

static void arg_text(struct sql_args *a, const char *t)
{
	if (a->n < 32)
		a->v[a->n++] = (struct sql_arg){.is_text = true, .text = t};
}

static void arg_int(struct sql_args *a, int64_t i)
{
	if (a->n < 32)
		a->v[a->n++] = (struct sql_arg){.i = i};
}

static void arg_blob(struct sql_args *a, const void *b, int len)
{
	if (a->n < 32)
		a->v[a->n++] = (struct sql_arg){.blob = b, .bloblen = len};
}

static void bind_args(sqlite3_stmt *s, const struct sql_args *a)
{
	for (int i = 0; i < a->n; i++) {
		if (a->v[i].is_text)
			sqlite3_bind_text(s, i + 1, a->v[i].text, -1, SQLITE_STATIC);
		else if (a->v[i].blob)
			sqlite3_bind_blob(s, i + 1, a->v[i].blob, a->v[i].bloblen, SQLITE_STATIC);
		else
			sqlite3_bind_int64(s, i + 1, a->v[i].i);
	}
}

/* The span conditions of a search (service, operation, duration of that span). */
static void where_span(const struct store_filter *f, struct sql_text *q, struct sql_args *a)
{
	bool by_span = (f->service && *f->service) || (f->operation && *f->operation);

	if (!by_span) {
		/* no span named: the durations are the root span's */
		if (f->min_duration_ns) {
			sql_add(q, " AND t.root_duration >= ?");
			arg_int(a, clamp_i64(f->min_duration_ns));
		}
		if (f->max_duration_ns) {
			sql_add(q, " AND t.root_duration <= ?");
			arg_int(a, clamp_i64(f->max_duration_ns));
		}
		return;
	}
	sql_add(q, " AND t.id IN (SELECT s.trace FROM spans s WHERE 1");
	if (f->service && *f->service) {
		sql_add(q, " AND s.service = ?");
		arg_text(a, f->service);
	}
	if (f->operation && *f->operation) {
		sql_add(q, " AND (s.name = ? OR s.route = ?)");
		arg_text(a, f->operation);
		arg_text(a, f->operation);
	}
	if (f->min_duration_ns) {
		sql_add(q, " AND s.duration_ns >= ?");
		arg_int(a, clamp_i64(f->min_duration_ns));
	}
	if (f->max_duration_ns) {
		sql_add(q, " AND s.duration_ns <= ?");
		arg_int(a, clamp_i64(f->max_duration_ns));
	}
	sql_add(q, ")");
}

/* A span with attribute key = value: by the index, or (a key not indexed, a long value) by
 * the lines. path: room for the JSON path, which the statement's arguments point to. */
static void where_attr(const char *key, const char *value, struct sql_text *q, struct sql_args *a,
		       char *path, size_t pathcap)
{
	if (!key_unindexed(key) && strlen(value) <= STORE_MAX_ATTR_VALUE) {
		sql_add(q, " AND t.id IN (SELECT a.trace FROM attrs a WHERE a.key = ? AND "
			   "a.value = ?)");
		arg_text(a, key);
		arg_text(a, value);
		return;
	}
	/* a key with '"' or '\\' cannot be named in a JSON path: it matches nothing */
	if (strpbrk(key, "\"\\") ||
	    (size_t)snprintf(path, pathcap, "$.attributes.\"%s\"", key) >= pathcap) {
		sql_add(q, " AND 0");
		return;
	}
	sql_add(q, " AND t.id IN (SELECT trace FROM spans WHERE "
		   "CAST(json_extract(line, ?) AS TEXT) = ?)");
	arg_text(a, path);
	arg_text(a, value);
}

static void build_search(const struct store_filter *f, struct sql_text *q, struct sql_args *a,
			 char (*paths)[300])
{
	sql_add(q, "SELECT t.trace_id, t.start_ns, t.end_ns, t.nspans, t.nerrors, "
		   "(SELECT count(DISTINCT service) FROM spans x WHERE x.trace = t.id), "
		   "t.root_service, t.root_name FROM traces t WHERE 1");
	if (f->has_trace_id) {
		sql_add(q, " AND t.trace_id = ?");
		arg_blob(a, f->trace_id, 16);
	}
	if (f->from_unix_ns) {
		sql_add(q, " AND t.start_ns >= ?");
		arg_int(a, clamp_i64(f->from_unix_ns));
	}
	if (f->to_unix_ns) {
		sql_add(q, " AND t.start_ns <= ?");
		arg_int(a, clamp_i64(f->to_unix_ns));
	}
	if (f->error == 1)
		sql_add(q, " AND t.nerrors > 0");
	else if (f->error == 0)
		sql_add(q, " AND t.nerrors = 0");
	where_span(f, q, a);
	for (unsigned i = 0; i < f->nattrs && i < STORE_MAX_ATTR_FILTERS; i++)
		where_attr(f->attr_key[i] ? f->attr_key[i] : "",
			   f->attr_value[i] ? f->attr_value[i] : "", q, a, paths[i],
			   sizeof(paths[i]));
	sql_add(q, " ORDER BY t.start_ns DESC");
	if (f->limit) {
		sql_add(q, " LIMIT ?");
		arg_int(a, f->limit);
	}
}

static void copy_column_text(sqlite3_stmt *s, int col, char *out, size_t cap)
{
	const unsigned char *t = sqlite3_column_text(s, col);

	snprintf(out, cap, "%s", t ? (const char *)t : "");
}

static void read_summary(sqlite3_stmt *s, struct store_trace_summary *sum)
{
	const void *id = sqlite3_column_blob(s, 0);
	int64_t start = sqlite3_column_int64(s, 1), end = sqlite3_column_int64(s, 2);

	memset(sum, 0, sizeof(*sum));
	if (id && sqlite3_column_bytes(s, 0) == 16)
		memcpy(sum->trace_id, id, 16);
	sum->start_unix_ns = (uint64_t)start;
	sum->duration_ns = end > start ? (uint64_t)(end - start) : 0;
	sum->nspans = (unsigned)sqlite3_column_int(s, 3);
	sum->nerrors = (unsigned)sqlite3_column_int(s, 4);
	sum->nservices = (unsigned)sqlite3_column_int(s, 5);
	copy_column_text(s, 6, sum->root_service, sizeof(sum->root_service));
	copy_column_text(s, 7, sum->root_name, sizeof(sum->root_name));
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* SQLite's progress handler: nonzero stops the statement (SQLITE_INTERRUPT). */
static int past_deadline(void *ctx)
{
	const struct store *st = ctx;

	return st->deadline_ns && mono_ns() > st->deadline_ns;
}

void store_set_time_limit(struct store *st, unsigned ms)
{
	st->time_limit_ms = ms;
	st->deadline_ns = 0;
	/* every 1000 virtual machine steps: a few microseconds */
	sqlite3_progress_handler(st->db, ms ? 1000 : 0, ms ? past_deadline : NULL, st);
}

/* A read starts: its time limit runs from now. */
static void query_begin(struct store *st)
{
	if (st->time_limit_ms)
		st->deadline_ns = mono_ns() + (uint64_t)st->time_limit_ms * 1000000ull;
}

/* Each trace matching f (f->limit 0: all), newest first, into fn. */
static int each_trace(struct store *st, const struct store_filter *f,
		      int (*fn)(void *ctx, const struct store_trace_summary *sum), void *ctx)
{
	struct sql_text q = {0};
	struct sql_args a = {0};
	char paths[STORE_MAX_ATTR_FILTERS][300];
	struct store_trace_summary sum;
	sqlite3_stmt *s;
	int rc, err = 0;

	build_search(f, &q, &a, paths);
	if (q.overflow)
		return -E2BIG;
	query_begin(st);
	rc = sqlite3_prepare_v2(st->db, q.buf, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return sqlite_errno(rc);
	bind_args(s, &a);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		read_summary(s, &sum);
		err = fn(ctx, &sum);
		if (err)
			break;
	}
	if (!err && rc != SQLITE_DONE)
		err = sqlite_errno(rc) ? sqlite_errno(rc) : -EIO;
	sqlite3_finalize(s);
	return err;
}

struct summaries {
	struct store_trace_summary *out;
	unsigned n, cap;
};

static int collect_summary(void *ctx, const struct store_trace_summary *sum)
{
	struct summaries *c = ctx;

	c->out[c->n++] = *sum;
	return c->n >= c->cap ? 1 : 0;
}

int store_find_traces(struct store *st, const struct store_filter *f,
		      struct store_trace_summary *out, unsigned cap)
{
	struct store_filter lim = *f;
	struct summaries c = {out, 0, cap};
	int err;

	if (!cap)
		return 0;
	if (!lim.limit)
		lim.limit = 20;
	if (lim.limit > cap)
		lim.limit = cap;
	err = each_trace(st, &lim, collect_summary, &c);
	return err < 0 ? err : (int)c.n;
}

int store_trace_lines(struct store *st, const uint8_t trace_id[16], span_line_fn fn, void *ctx)
{
	sqlite3_stmt *s = st->stmt[ST_TRACE_LINES];
	bool found = false;
	int rc, err = 0;

	query_begin(st);
	sqlite3_bind_blob(s, 1, trace_id, 16, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *line = (const char *)sqlite3_column_text(s, 0);

		found = true;
		err = fn(ctx, line ? line : "", (size_t)sqlite3_column_bytes(s, 0));
		if (err)
			break;
	}
	if (!err && rc != SQLITE_DONE)
		err = sqlite_errno(rc) ? sqlite_errno(rc) : -EIO;
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	if (!err && !found)
		err = -ENOENT;
	return err;
}

int store_services(struct store *st, int (*fn)(void *ctx, const char *service), void *ctx)
{
	sqlite3_stmt *s;
	int rc, err = 0;

	query_begin(st);
	rc = sqlite3_prepare_v2(st->db, "SELECT DISTINCT service FROM spans ORDER BY service", -1,
				&s, NULL);
	if (rc != SQLITE_OK)
		return sqlite_errno(rc);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);

		err = fn(ctx, name ? name : "");
		if (err)
			break;
	}
	if (!err && rc != SQLITE_DONE)
		err = sqlite_errno(rc) ? sqlite_errno(rc) : -EIO;
	sqlite3_finalize(s);
	return err;
}

static const char *kind_text(int kind)
{
	return kind == 2 ? "SERVER" : kind == 3 ? "CLIENT" : "UNSPECIFIED";
}

int store_operations(struct store *st, const char *service,
		     int (*fn)(void *ctx, const char *name, const char *kind), void *ctx)
{
	sqlite3_stmt *s;
	int rc, err = 0;

	query_begin(st);
	rc = sqlite3_prepare_v2(st->db,
				"SELECT DISTINCT name, kind FROM spans WHERE service = ?1 "
				"ORDER BY name, kind",
				-1, &s, NULL);
	if (rc != SQLITE_OK)
		return sqlite_errno(rc);
	sqlite3_bind_text(s, 1, service ? service : "", -1, SQLITE_TRANSIENT);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);

		err = fn(ctx, name ? name : "", kind_text(sqlite3_column_int(s, 1)));
		if (err)
			break;
	}
	if (!err && rc != SQLITE_DONE)
		err = sqlite_errno(rc) ? sqlite_errno(rc) : -EIO;
	sqlite3_finalize(s);
	return err;
}

/*
 * Client spans with their callee: the one the agent named (hoptrace.callee.service, a hop on
 * this host), else the service of a server span in the store that the client span is the
 * parent of (a hop another agent traced). Calls whose callee is known neither way are not
 * an edge between services.
 */
static const char deps_sql[] =
    "SELECT caller, callee, count(*), sum(error), "
    "sum(propagation = 'ok'), sum(propagation = 'forwarded'), sum(propagation = 'restarted'), "
    "sum(propagation = 'dropped'), sum(propagation = 'invalid') FROM ("
    " SELECT c.service AS caller, c.error AS error, c.propagation AS propagation,"
    " coalesce(c.callee, (SELECT s.service FROM spans s WHERE s.trace = c.trace"
    "  AND s.parent_id = c.span_id AND s.kind = 2 LIMIT 1)) AS callee"
    " FROM spans c WHERE c.kind = 3 AND c.start_ns >= ?1 AND c.start_ns <= ?2)"
    " WHERE callee IS NOT NULL GROUP BY caller, callee ORDER BY caller, callee";

int store_dependencies(struct store *st, uint64_t from_unix_ns, uint64_t to_unix_ns,
		       int (*fn)(void *ctx, const struct store_edge *e), void *ctx)
{
	static const int verdicts[] = {PROP_OK, PROP_FORWARDED, PROP_RESTARTED, PROP_DROPPED,
				       PROP_INVALID};
	sqlite3_stmt *s;
	int rc, err = 0;

	query_begin(st);
	rc = sqlite3_prepare_v2(st->db, deps_sql, -1, &s, NULL);
	if (rc != SQLITE_OK)
		return sqlite_errno(rc);
	sqlite3_bind_int64(s, 1, clamp_i64(from_unix_ns));
	sqlite3_bind_int64(s, 2, to_unix_ns ? clamp_i64(to_unix_ns) : INT64_MAX);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_edge e = {0};

		e.parent = (const char *)sqlite3_column_text(s, 0);
		e.child = (const char *)sqlite3_column_text(s, 1);
		e.calls = (uint64_t)sqlite3_column_int64(s, 2);
		e.errors = (uint64_t)sqlite3_column_int64(s, 3);
		for (size_t i = 0; i < sizeof(verdicts) / sizeof(verdicts[0]); i++)
			e.by_propagation[verdicts[i]] =
			    (uint64_t)sqlite3_column_int64(s, 4 + (int)i);
		if (!e.parent || !e.child)
			continue;
		err = fn(ctx, &e);
		if (err)
			break;
	}
	if (!err && rc != SQLITE_DONE)
		err = sqlite_errno(rc) ? sqlite_errno(rc) : -EIO;
	sqlite3_finalize(s);
	return err;
}

/* ---- retention --------------------------------------------------------------------------- */

void store_set_limits(struct store *st, uint64_t max_bytes, uint64_t max_age_ns)
{
	st->max_bytes = max_bytes;
	st->max_age_ns = max_age_ns;
	if (max_bytes) {
		char sql[80];
		uint64_t wal = max_bytes / 8 < (16u << 20) ? max_bytes / 8 : (16u << 20);

		/* the WAL counts against the bound too: truncated to this after checkpoints */
		snprintf(sql, sizeof(sql), "PRAGMA journal_size_limit = %" PRIu64, wal);
		exec_sql(st, sql);
	}
}

int64_t store_size_bytes(struct store *st)
{
	int64_t pages = query_int(st, "PRAGMA page_count");
	int64_t size = query_int(st, "PRAGMA page_size");

	if (pages < 0)
		return pages;
	if (size < 0)
		return size;
	return pages * size;
}

/* Delete the traces listed in temp table doomed, with their spans and attributes. */
static int delete_doomed(struct store *st)
{
	int err = exec_sql(st, "DELETE FROM attrs WHERE trace IN (SELECT t.id FROM traces t JOIN "
			       "doomed d ON t.trace_id = d.trace_id)");

	if (!err)
		err = exec_sql(
		    st, "DELETE FROM spans WHERE trace IN (SELECT t.id FROM traces t JOIN doomed d "
			"ON t.trace_id = d.trace_id)");
	if (!err)
		err = exec_sql(
		    st, "DELETE FROM traces WHERE trace_id IN (SELECT trace_id FROM doomed)");
	return err;
}

/* One round: the traces picked by select_sql (into doomed) deleted in one transaction.
 * Returns how many, or -errno. */
static int delete_round(struct store *st, const char *select_sql)
{
	int64_t n;
	int err;

	err = exec_sql(st, "CREATE TEMP TABLE IF NOT EXISTS doomed(trace_id BLOB PRIMARY KEY)");
	if (!err)
		err = exec_sql(st, "BEGIN");
	if (err)
		return err;
	err = exec_sql(st, "DELETE FROM doomed");
	if (!err)
		err = exec_sql(st, select_sql);
	n = err ? 0 : query_int(st, "SELECT count(*) FROM doomed");
	if (n < 0)
		err = (int)n;
	if (!err && n)
		err = delete_doomed(st);
	if (!err)
		err = exec_sql(st, "COMMIT");
	if (err) {
		exec_sql(st, "ROLLBACK");
		return err;
	}
	return (int)n;
}

/* Give the freed pages back to the file system, and the WAL's room after a checkpoint. */
static int reclaim(struct store *st)
{
	int err = exec_sql(st, "PRAGMA incremental_vacuum");

	if (!err)
		err = exec_sql(st, "PRAGMA wal_checkpoint(TRUNCATE)");
	return err;
}

/*
 * The size bound. Deleting rows frees whole pages (given back by incremental_vacuum) and
 * leaves holes in others, which later writes fill before the file grows again. So: past
 * 95% of the bound, delete the oldest traces, about the share of them that brings the file
 * to 85%; then do not delete again until the file has grown past its size after that (the
 * holes are being reused). Only if the file stays over the bound itself (it was opened over
 * a lowered bound, say) is it rebuilt compact (VACUUM, once a call).
 */
static int prune_for_size(struct store *st, uint64_t *traces_deleted)
{
	int64_t size = store_size_bytes(st);
	uint64_t high = st->max_bytes / 20 * 19, low = st->max_bytes / 20 * 17;
	bool vacuumed = false;
	char sql[160];
	int err = 0;

	if (size < 0)
		return (int)size;
	if ((uint64_t)size <= high ||
	    ((uint64_t)size <= st->max_bytes && st->pruned_size && size <= st->pruned_size))
		return 0;
	for (int round = 0; round < 8 && (uint64_t)size > high; round++) {
		int64_t ntraces = query_int(st, "SELECT count(*) FROM traces"), batch;
		int n;

		if (ntraces <= 0)
			return ntraces < 0 ? (int)ntraces : 0;
		batch = (int64_t)((double)ntraces * (double)((uint64_t)size - low) / (double)size);
		if (batch < STORE_PRUNE_BATCH)
			batch = STORE_PRUNE_BATCH;
		snprintf(sql, sizeof(sql),
			 "INSERT INTO doomed SELECT trace_id FROM traces ORDER BY start_ns LIMIT "
			 "%" PRId64,
			 batch);
		n = delete_round(st, sql);
		if (n <= 0)
			return n;
		if (traces_deleted)
			*traces_deleted += (uint64_t)n;
		err = reclaim(st);
		size = err ? err : store_size_bytes(st);
		if (size < 0)
			return (int)size;
		if ((uint64_t)size <= st->max_bytes)
			break; /* the holes take the next writes */
		if (!vacuumed) {
			vacuumed = true;
			err = exec_sql(st, "VACUUM");
			if (!err)
				err = exec_sql(st, "PRAGMA wal_checkpoint(TRUNCATE)");
			size = err ? err : store_size_bytes(st);
			if (size < 0)
				return (int)size;
		}
	}
	st->pruned_size = size;
	return 0;
}

int store_prune(struct store *st, uint64_t now_unix_ns, uint64_t *traces_deleted)
{
	char sql[256];
	bool deleted = false;
	int n, err = 0;

	if (st->read_only)
		return -EROFS;
	/* by end: a trace still going on is not old. In rounds, each committed and its room
	 * given back: a store that comes back after days holds a bound's worth of expired traces,
	 * which in one transaction stalled the writer for seconds and doubled the disk used (the
	 * WAL held every page deleted); what the rounds of one call leave, the next one takes. */
	for (int round = 0;
	     st->max_age_ns && now_unix_ns > st->max_age_ns && round < STORE_AGE_ROUNDS; round++) {
		snprintf(sql, sizeof(sql),
			 "INSERT INTO doomed SELECT trace_id FROM traces WHERE start_ns < %" PRId64
			 " AND end_ns < %" PRId64 " ORDER BY start_ns LIMIT %d",
			 clamp_i64(now_unix_ns - st->max_age_ns),
			 clamp_i64(now_unix_ns - st->max_age_ns), STORE_AGE_BATCH);
		n = delete_round(st, sql);
		if (n < 0)
			return n;
		if (traces_deleted)
			*traces_deleted += (uint64_t)n;
		deleted = n > 0;
		if (deleted)
			err = reclaim(st);
		if (err || n < STORE_AGE_BATCH)
			break;
	}
	if (!st->max_bytes)
		return err;
	return err ? err : prune_for_size(st, traces_deleted);
}

/* ---- a damaged file ---------------------------------------------------------------------- */

int store_move_aside(const char *path, char *moved_to, size_t cap)
{
	static const char *const suffixes[] = {"", "-wal", "-shm"};
	char from[PATH_MAX + 8], to[PATH_MAX + 48];
	time_t now = time(NULL);

	if (strlen(path) >= PATH_MAX)
		return -ENAMETOOLONG;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		snprintf(from, sizeof(from), "%s%s", path, suffixes[i]);
		snprintf(to, sizeof(to), "%s.corrupt-%lld%s", path, (long long)now, suffixes[i]);
		if (rename(from, to) != 0 && (i == 0 || errno != ENOENT))
			return -errno;
		if (i == 0 && moved_to && cap)
			snprintf(moved_to, cap, "%s", to);
	}
	return 0;
}

/* ---- the tsource kind store:PATH ---------------------------------------------------------- */

struct tsource_walk {
	struct store *st;
	span_line_fn fn;
	void *ctx;
	struct tsource_stats *stats;
	int stop; /* fn's nonzero value */
};

static int count_line(void *ctx, const char *line, size_t len)
{
	struct tsource_walk *w = ctx;

	w->stats->lines++;
	w->stats->spans++;
	w->stop = w->fn(w->ctx, line, len);
	return w->stop;
}

static int walk_trace(void *ctx, const struct store_trace_summary *sum)
{
	struct tsource_walk *w = ctx;
	int err = store_trace_lines(w->st, sum->trace_id, count_line, w);

	return err == -ENOENT ? 0 : err; /* deleted since the search */
}

int store_tsource_read(const char *prog, const char *path, const struct tsource_opts *opts,
		       span_line_fn fn, void *ctx, struct tsource_stats *stats)
{
	struct store_filter f = {.error = -1};
	struct tsource_walk w = {.fn = fn, .ctx = ctx, .stats = stats};
	char err[PATH_MAX + 128];
	int e;

	w.st = store_open(path, STORE_READ_ONLY, err, sizeof(err));
	if (!w.st) {
		fprintf(stderr, "%s: %s\n", prog, err);
		return -EIO;
	}
	f.service = opts->service;
	f.from_unix_ns = opts->from_unix_ns;
	f.to_unix_ns = opts->to_unix_ns;
	f.limit = opts->limit;
	/* one read transaction: a consistent view while the agent writes */
	e = exec_sql(w.st, "BEGIN");
	if (!e)
		e = each_trace(w.st, &f, walk_trace, &w);
	exec_sql(w.st, "COMMIT");
	if (e && e == w.stop) {
		store_close(w.st);
		return e;
	}
	if (e) {
		fprintf(stderr, "%s: cannot read the store %s: %s\n", prog, path,
			store_strerror(e));
		store_close(w.st);
		return e < 0 ? e : -EIO;
	}
	store_close(w.st);
	return 0;
}
