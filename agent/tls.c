// SPDX-License-Identifier: BSD-2-Clause
#include "tls.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>

#include "elfsym.h"
#include "elfwork.h"
#include "hashmap.h"
#include "hoptrace.skel.h"
#include "loader.h"
#include "log.h"
#include "procmaps.h"
#include "stats.h"

/* Files with probes attached (each holds NPROBES uprobes). */
#define TLS_MAX_PROBED 1024
/* Files looked at that are not probed (executables without OpenSSL, libraries that could
 * not be probed): remembered so an exec storm of one binary parses it once. Emptied when
 * full: a process that execs thousands of distinct binaries costs re-parsing, never the
 * probed files' places. */
#define TLS_MAX_SEEN 4096
/* Processes waiting for a scan after their exec (16 bytes each). */
#define TLS_MAX_PENDING 4096
/* Work per loop tick (the loop ticks every 5 ms): scans of processes for OpenSSL happen on
 * the event thread, and an exec storm must not keep it from draining the rings. */
#define TLS_TICK_MAX_SCANS 64
#define TLS_TICK_BUDGET_NS (1000000ULL)
/* What one file's symbols may cost. Real OpenSSL builds have a few thousand symbols
 * (node's dynamic symbols: ~60k); a crafted file gets refused, not parsed for seconds. */
static const struct elfsym_budget elf_budget = {
    .max_table_bytes = 32ULL << 20,
    .max_symbols = 1ULL << 20,
    .max_ns = 100ULL * 1000000ULL,
};
/* A /proc/PID/maps line: fields, padding and a path of up to PATH_MAX bytes. Longer lines
 * (paths with escaped newlines) are skipped and counted. */
#define MAPS_LINE_MAX (PATH_MAX + 256)
/* Every selected process is looked at again this often, for libraries loaded late
 * (dlopen) by processes whose exec we did not see. */
#define TLS_RESCAN_NS (30ULL * 1000000000ULL)
#define NS_PER_MS 1000000ULL

/* After an exec: when to look at the process's mappings again (ld.so maps libraries
 * after the exec event; interpreters dlopen libssl when a module imports it). */
static const uint64_t exec_rescan_ms[] = {0, 100, 500, 2000, 8000};
#define EXEC_STEPS (sizeof(exec_rescan_ms) / sizeof(exec_rescan_ms[0]))

enum tls_sym {
	SYM_READ,
	SYM_WRITE,
	SYM_READ_EX,
	SYM_WRITE_EX,
	SYM_SET_FD,
	SYM_FREE,
	SYM__COUNT,
};

static const char *const sym_names[SYM__COUNT] = {
    [SYM_READ] = "SSL_read",	     [SYM_WRITE] = "SSL_write",	  [SYM_READ_EX] = "SSL_read_ex",
    [SYM_WRITE_EX] = "SSL_write_ex", [SYM_SET_FD] = "SSL_set_fd", [SYM_FREE] = "SSL_free",
};

/* The programs of tls_progs.bpf.h. Each exists twice: as named here (bpf/tls.bpf.c), and with
 * an _inj suffix (bpf/tls_inject.bpf.c), loaded instead under --repair=inject. */
enum tls_prog {
	PROG_ENTER,
	PROG_RET_READ,
	PROG_RET_WRITE,
	PROG_RET_READ_EX,
	PROG_RET_WRITE_EX,
	PROG_SET_FD,
	PROG_FREE,
	PROG__COUNT,
};

static const char *const prog_names[PROG__COUNT] = {
    [PROG_ENTER] = "ht_ssl_enter",
    [PROG_RET_READ] = "ht_ssl_ret_read",
    [PROG_RET_WRITE] = "ht_ssl_ret_write",
    [PROG_RET_READ_EX] = "ht_ssl_ret_read_ex",
    [PROG_RET_WRITE_EX] = "ht_ssl_ret_write_ex",
    [PROG_SET_FD] = "ht_ssl_set_fd",
    [PROG_FREE] = "ht_ssl_free",
};

/* Every probe of one file. SSL_read and SSL_write are required; the rest are attached when
 * the file has them (OpenSSL 1.1.0 has no _ex forms). */
static const struct probe_spec {
	enum tls_sym sym;
	enum tls_prog prog;
	bool retprobe;
} probe_specs[] = {
    {SYM_READ, PROG_ENTER, false},     {SYM_READ, PROG_RET_READ, true},
    {SYM_WRITE, PROG_ENTER, false},    {SYM_WRITE, PROG_RET_WRITE, true},
    {SYM_READ_EX, PROG_ENTER, false},  {SYM_READ_EX, PROG_RET_READ_EX, true},
    {SYM_WRITE_EX, PROG_ENTER, false}, {SYM_WRITE_EX, PROG_RET_WRITE_EX, true},
    {SYM_SET_FD, PROG_SET_FD, false},  {SYM_FREE, PROG_FREE, false},
};
#define NPROBES (sizeof(probe_specs) / sizeof(probe_specs[0]))

/* A file with probes, by inode: each is probed once, for every process. */
struct tls_file {
	uint64_t dev, ino;
	unsigned nlinks;
	struct bpf_link *links[NPROBES];
};

struct pending_scan {
	uint32_t tgid;
	unsigned step; /* index into exec_rescan_ms */
	uint64_t due_ns;
};

struct tls_tracer {
	struct hoptrace_bpf *skel;
	struct bpf_program *progs[PROG__COUNT]; /* the loaded variant */
	const struct loader_config *cfg;
	uint32_t self;
	struct u64map probed; /* file_key(dev, ino) -> struct tls_file */
	struct u64map seen;   /* seen_key(stat) -> &seen_marker: looked at, not probed */
	bool probed_full_logged;
	unsigned npending;
	struct pending_scan pending[TLS_MAX_PENDING];
	DIR *rescan; /* the periodic rescan's place in /proc, across ticks; NULL: none */
	uint64_t next_rescan_ns;
	struct elfwork *work; /* the symbol parses */
	bool starting;	      /* in tls__start: a full parse queue is waited for */
	bool stopping;	      /* in tls__destroy: parse results are discarded */
};

static char seen_marker; /* the value of every entry of tls_tracer.seen */

static struct bpf_program *prog_of(struct hoptrace_bpf *skel, enum tls_prog p, bool inject)
{
	char name[64];

	snprintf(name, sizeof(name), "%s%s", prog_names[p], inject ? "_inj" : "");
	return bpf_object__find_program_by_name(skel->obj, name);
}

void tls__configure(struct hoptrace_bpf *skel, enum tls_variant variant)
{
	for (enum tls_prog p = 0; p < PROG__COUNT; p++) {
		for (int inject = 0; inject <= 1; inject++) {
			struct bpf_program *prog = prog_of(skel, p, inject);

			bpf_program__set_autoload(
			    prog, variant == (inject ? TLS_WITH_INJECT_CTX : TLS_PLAIN));
			/* attached per library by tls__start, never by the skeleton */
			bpf_program__set_autoattach(prog, false);
		}
	}
}

/* ---- probing files ----------------------------------------------------------------- */

static uint64_t file_key(uint64_t dev, uint64_t ino)
{
	return ino ^ (dev * 0x9e3779b97f4a7c15ULL);
}

static void file_detach(struct tls_file *f)
{
	for (unsigned i = 0; i < f->nlinks; i++)
		bpf_link__destroy(f->links[i]);
	f->nlinks = 0;
}

static const char *attach_hint(int err)
{
	switch (err) {
	case -EPERM:
	case -EACCES:
		return " (run as root, or grant CAP_PERFMON and CAP_SYS_ADMIN)";
	case -EINVAL:
		return " (the offset is not an instruction boundary: unusual build)";
	case -ENOENT:
		return " (no uprobe support: CONFIG_UPROBE_EVENTS)";
	}
	return "";
}

/* Attach every probe the file supports. path names the open file for the kernel. */
static int file_attach(struct tls_tracer *tt, struct tls_file *f, const char *path,
		       const char *name, const uint64_t off[SYM__COUNT])
{
	for (unsigned i = 0; i < NPROBES; i++) {
		const struct probe_spec *ps = &probe_specs[i];
		LIBBPF_OPTS(bpf_uprobe_opts, opts, .retprobe = ps->retprobe);
		struct bpf_link *link;
		int err;

		if (!off[ps->sym])
			continue;
		link = bpf_program__attach_uprobe_opts(tt->progs[ps->prog], -1, path, off[ps->sym],
						       &opts);
		if (!link) {
			err = -errno;
			log_warn("cannot probe %s: attaching to %s failed: %s%s; HTTPS through "
				 "this file is not traced",
				 name, sym_names[ps->sym], strerror(-err), attach_hint(err));
			file_detach(f);
			return err;
		}
		f->links[f->nlinks++] = link;
	}
	return 0;
}

static void log_probed(const char *name, const uint64_t off[SYM__COUNT], uint32_t tgid)
{
	char missing[96] = "";

	for (int s = SYM_READ_EX; s < SYM__COUNT; s++) {
		if (off[s])
			continue;
		strncat(missing, missing[0] ? ", " : "; without ",
			sizeof(missing) - strlen(missing) - 1);
		strncat(missing, sym_names[s], sizeof(missing) - strlen(missing) - 1);
	}
	if (tgid)
		log_info("tracing HTTPS through %s (first seen in pid %u)%s", name, tgid, missing);
	else
		log_info("tracing HTTPS through %s (the system's OpenSSL)%s", name, missing);
}

static uint64_t seen_key(const struct stat *st)
{
	uint64_t k = file_key(st->st_dev, st->st_ino);

	k ^= (uint64_t)st->st_size * 0xc2b2ae3d27d4eb4fULL;
	k ^= ((uint64_t)st->st_mtim.tv_sec * 1000000000ULL + (uint64_t)st->st_mtim.tv_nsec) *
	     0x165667b19e3779f9ULL;
	return k;
}

/* Remember a file that is not probed. A full cache is emptied: what it held is parsed again
 * when seen again (within the budgets), and no process can push out the probed files. */
static void remember_seen(struct tls_tracer *tt, const struct stat *st)
{
	uint64_t k;
	void *v;

	if (tt->seen.count >= TLS_MAX_SEEN) {
		for (size_t it = 0; u64map_next(&tt->seen, &it, &k, &v);)
			u64map_del(&tt->seen, k);
		STAT_INC(tls_seen_cache_resets);
	}
	if (u64map_put(&tt->seen, seen_key(st), &seen_marker))
		log_debug("TLS: cannot remember a file without OpenSSL: out of memory");
}

static void count_elf_failure(int err)
{
	if (err == -EFBIG || err == -E2BIG || err == -ETIMEDOUT)
		STAT_INC(tls_elf_over_budget);
	else if (err == -EIO)
		STAT_INC(tls_elf_read_failed);
}

/* Attach the probes to a file with both SSL_read and SSL_write; 0 or -errno. */
static int probe_openssl(struct tls_tracer *tt, int fd, const struct stat *st, const char *name,
			 const uint64_t off[SYM__COUNT], uint32_t tgid)
{
	struct tls_file *f;
	char path[64];
	int err;

	if (tt->probed.count >= TLS_MAX_PROBED) {
		STAT_INC(tls_probed_table_full);
		if (!tt->probed_full_logged)
			log_warn("cannot probe %s: %u OpenSSL files are probed already; HTTPS "
				 "through new ones is not traced",
				 name, TLS_MAX_PROBED);
		tt->probed_full_logged = true;
		return -ENOSPC;
	}
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->dev = st->st_dev;
	f->ino = st->st_ino;
	/* the kernel resolves the path to the inode now: go through our own fd, so a
	 * process exiting meanwhile or a mount namespace changes nothing */
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	err = file_attach(tt, f, path, name, off);
	if (!err)
		err = u64map_put(&tt->probed, file_key(f->dev, f->ino), f);
	if (err) {
		file_detach(f);
		free(f);
		return err;
	}
	log_probed(name, off, tgid);
	return 0;
}

/* A parse on the worker (elfwork.h): what the loop needs to act on its result. */
struct parse_job {
	struct stat st; /* at submission: the file's identity */
	uint32_t tgid;	/* the process it was first seen in; 0: the system's */
	bool is_exe;
	char name[]; /* for messages */
};

/* What a parse found, acted upon on the loop thread: probes attached, or the file
 * remembered as not probed. The fd is the job's, still open. */
static void parse_done(struct tls_tracer *tt, int fd, const struct parse_job *job, int err,
		       const char *why, const uint64_t off[SYM__COUNT])
{
	if (err) {
		count_elf_failure(err);
		if (!job->is_exe || err != -ENOEXEC)
			log_warn("cannot probe %s: %s; HTTPS through this file is not traced",
				 job->name, why);
	} else if (!off[SYM_READ] || !off[SYM_WRITE]) {
		if (!job->is_exe)
			log_warn("cannot probe %s: %s not found in its symbol tables (stripped, or "
				 "not OpenSSL); HTTPS through this file is not traced",
				 job->name, off[SYM_READ] ? "SSL_write" : "SSL_read");
	} else if (probe_openssl(tt, fd, &job->st, job->name, off, job->tgid) == 0) {
		return;
	}
	remember_seen(tt, &job->st);
}

static void on_parsed(void *arg, const struct elfwork_result *r)
{
	struct tls_tracer *tt = arg;
	struct parse_job *job = r->ctx;

	/* stopping: nothing is attached any more */
	if (!tt->stopping && r->err != -ECANCELED)
		parse_done(tt, r->fd, job, r->err, r->why, r->off);
	close(r->fd);
	free(job);
}

/* Before the loop runs, a full queue is waited for: what runs at start-up is probed
 * before the agent says it is ready. */
static void wait_for_a_parse(struct tls_tracer *tt)
{
	elfwork__wait(tt->work, 1000);
	elfwork__collect(tt->work, on_parsed, tt);
}

/* Hand the file open at fd to the worker (a dup of fd: the caller keeps its own). Queue
 * full: counted and left for the next scan that sees it (the exec rescans, the periodic
 * rescan), as a scan that was not done. */
static void submit_parse(struct tls_tracer *tt, int fd, const struct stat *st, const char *name,
			 bool is_exe, uint32_t tgid)
{
	size_t len = strlen(name);
	struct parse_job *job = malloc(sizeof(*job) + len + 1);
	int jobfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	int err = -EAGAIN;

	if (!job || jobfd < 0) {
		log_debug("TLS: cannot queue a file's parse: %s", strerror(errno));
		goto err_free;
	}
	job->st = *st;
	job->tgid = tgid;
	job->is_exe = is_exe;
	memcpy(job->name, name, len + 1);
	while ((err = elfwork__submit(tt->work, jobfd, file_key(st->st_dev, st->st_ino), job)) ==
		   -EAGAIN &&
	       tt->starting)
		wait_for_a_parse(tt);
	if (!err)
		return;
	if (err == -EAGAIN)
		STAT_INC(tls_elf_queue_full);
err_free:
	if (jobfd >= 0)
		close(jobfd);
	free(job);
}

/* Probe the regular file open at fd (named name in messages) unless done before or under
 * way. is_exe: a program's executable, which is usually not OpenSSL (not worth a message).
 * The symbols are read on the worker; tls__tick attaches what it finds. */
static void probe_fd(struct tls_tracer *tt, int fd, const char *name, bool is_exe, uint32_t tgid)
{
	struct stat st;

	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		return;
	/* seen before (a 64-bit key collision between two files would skip the second) */
	if (u64map_get(&tt->probed, file_key(st.st_dev, st.st_ino)) ||
	    u64map_get(&tt->seen, seen_key(&st)) ||
	    elfwork__queued(tt->work, file_key(st.st_dev, st.st_ino)))
		return;
	submit_parse(tt, fd, &st, name, is_exe, tgid);
}

/* ---- opening files a process names ------------------------------------------------- */

/* How a candidate is opened for reading: never blocking (a FIFO, or a file its owner holds
 * a lease on, would stop the event thread), never a controlling terminal. */
#define READ_FLAGS (O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC)

/* pathfd (O_PATH, consumed) reopened for reading when it is a regular file. The O_PATH step
 * means a FIFO, device or socket is never opened (no driver's open runs as root). */
static int reopen_regular(int pathfd)
{
	char p[64];
	struct stat st;
	int fd;

	if (fstat(pathfd, &st) || !S_ISREG(st.st_mode)) {
		STAT_INC(tls_open_refused);
		close(pathfd);
		return -EPERM;
	}
	snprintf(p, sizeof(p), "/proc/self/fd/%d", pathfd);
	fd = open(p, READ_FLAGS);
	if (fd < 0) {
		fd = -errno;
		if (fd == -EWOULDBLOCK)
			STAT_INC(tls_open_refused);
	}
	close(pathfd);
	return fd;
}

/* path (absolute, as the process's maps show it) resolved inside the process's root: its
 * symlinks, absolute or "..", cannot leave it (containers, chroots), the last component is
 * never followed, and /proc magic links are refused. */
static int open_in_root(uint32_t tgid, const char *path)
{
	struct open_how how = {
	    .flags = O_PATH | O_NOFOLLOW | O_CLOEXEC,
	    .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS,
	};
	char p[64];
	int root, fd;

	snprintf(p, sizeof(p), "/proc/%u/root", tgid);
	root = open(p, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (root < 0)
		return -errno;
	fd = (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
	if (fd < 0) {
		fd = -errno;
		if (fd == -ELOOP || fd == -EXDEV)
			STAT_INC(tls_open_refused);
	}
	close(root);
	return fd < 0 ? fd : reopen_regular(fd);
}

/* Open a file a process maps: through map_files (the exact mapped inode, even when the
 * file was replaced or deleted since, e.g. by a package upgrade), else through the
 * process's root (map_files needs CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE). A deleted
 * file's path names something else now, if anything: never opened by path. */
static int open_mapped(uint32_t tgid, const struct procmaps_entry *e, const char *path)
{
	char name[PROCMAPS_MAP_FILES_NAME_MAX], p[96];
	int fd;

	procmaps_map_files_name(e, name, sizeof(name));
	snprintf(p, sizeof(p), "/proc/%u/map_files/%s", tgid, name);
	fd = open(p, O_PATH | O_CLOEXEC);
	if (fd >= 0)
		return reopen_regular(fd);
	if (e->deleted)
		return -ENOENT;
	return open_in_root(tgid, path);
}

static bool is_libssl(const char *path)
{
	const char *base = strrchr(path, '/');

	return base && strncmp(base + 1, "libssl.so", 9) == 0;
}

/* The next line of f into buf (NUL-terminated, '\n' kept). A line longer than the buffer
 * is consumed whole and reported as too long: its tail must never be read as a line of its
 * own (the path, which the process chose, could look like one). Returns 1, 0 at the end,
 * or -E2BIG. */
static int read_line(FILE *f, char *buf, size_t size)
{
	size_t n;
	int c;

	if (!fgets(buf, (int)size, f))
		return 0;
	n = strlen(buf);
	if ((n && buf[n - 1] == '\n') || feof(f))
		return 1;
	while ((c = getc(f)) != EOF && c != '\n')
		;
	return -E2BIG;
}

/* One maps line: a libssl.so* file mapping not seen on the previous line is probed. */
static void scan_maps_line(struct tls_tracer *tt, uint32_t tgid, const char *line,
			   struct procmaps_entry *prev)
{
	struct procmaps_entry e;
	char path[PATH_MAX];
	int fd;

	if (procmaps_parse_line(line, strlen(line), &e)) {
		STAT_INC(tls_maps_lines_skipped);
		return;
	}
	if (!e.inode || !e.path || e.path[0] != '/' || e.path_len >= sizeof(path))
		return;
	/* a library is several consecutive mappings of one file */
	if (e.inode == prev->inode && e.dev_major == prev->dev_major &&
	    e.dev_minor == prev->dev_minor)
		return;
	*prev = e;
	memcpy(path, e.path, e.path_len);
	path[e.path_len] = '\0';
	if (!is_libssl(path))
		return;
	fd = open_mapped(tgid, &e, path);
	if (fd < 0)
		return;
	probe_fd(tt, fd, path, false, tgid);
	close(fd);
}

/* The process's executable (node and others link OpenSSL in and export it). */
static void scan_exe(struct tls_tracer *tt, uint32_t tgid)
{
	char p[64], exe[PATH_MAX];
	ssize_t n;
	int fd;

	snprintf(p, sizeof(p), "/proc/%u/exe", tgid);
	fd = open(p, O_PATH | O_CLOEXEC);
	if (fd < 0)
		return;
	fd = reopen_regular(fd);
	if (fd < 0)
		return;
	n = readlink(p, exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = '\0';
	probe_fd(tt, fd, n > 0 ? exe : p, true, tgid);
	close(fd);
}

/* The process's executable and every libssl.so* it maps. */
static void scan_process(struct tls_tracer *tt, uint32_t tgid)
{
	struct procmaps_entry prev = {0};
	char p[64], *line;
	FILE *maps;
	int r;

	if (tgid == tt->self)
		return;
	STAT_INC(tls_scans);
	scan_exe(tt, tgid);
	snprintf(p, sizeof(p), "/proc/%u/maps", tgid);
	maps = fopen(p, "re");
	if (!maps)
		return;
	line = malloc(MAPS_LINE_MAX);
	while (line && (r = read_line(maps, line, MAPS_LINE_MAX)) != 0) {
		if (r < 0)
			STAT_INC(tls_maps_lines_skipped);
		else
			scan_maps_line(tt, tgid, line, &prev);
	}
	free(line);
	fclose(maps);
}

/* ---- which processes --------------------------------------------------------------- */

/* The same selection as the BPF side's task_selected: --pid and --comm, both when given. */
static bool tgid_selected(const struct tls_tracer *tt, uint32_t tgid)
{
	const struct loader_config *cfg = tt->cfg;
	char p[64], comm[64] = "";
	bool found = cfg->npids == 0;
	FILE *f;

	for (unsigned i = 0; !found && i < cfg->npids; i++)
		found = cfg->pids[i] == tgid;
	if (!found)
		return false;
	if (cfg->ncomms == 0)
		return true;
	snprintf(p, sizeof(p), "/proc/%u/comm", tgid);
	f = fopen(p, "re");
	if (!f)
		return false;
	if (!fgets(comm, sizeof(comm), f))
		comm[0] = '\0';
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	for (unsigned i = 0; i < cfg->ncomms; i++)
		if (strcmp(comm, cfg->comms[i]) == 0)
			return true;
	return false;
}

/* Only --pid: the selected processes are known; else every process in /proc. */
static bool rescan_lists_proc(const struct tls_tracer *tt)
{
	return !(tt->cfg->npids && !tt->cfg->ncomms);
}

static DIR *open_proc(void)
{
	DIR *d = opendir("/proc");

	if (!d)
		log_warn("cannot list /proc: %s; HTTPS is traced only for processes that start "
			 "from now on",
			 strerror(errno));
	return d;
}

/* The next selected process of a /proc listing, or 0 at its end. */
static uint32_t next_selected(struct tls_tracer *tt, DIR *d)
{
	struct dirent *de;

	while ((de = readdir(d))) {
		char *end;
		unsigned long tgid = strtoul(de->d_name, &end, 10);

		if (!isdigit((unsigned char)de->d_name[0]) || *end || !tgid || tgid > UINT32_MAX)
			continue;
		if (tgid_selected(tt, (uint32_t)tgid))
			return (uint32_t)tgid;
	}
	return 0;
}

/* Every selected process at once: at start-up, before the loop runs. */
static void scan_all(struct tls_tracer *tt)
{
	const struct loader_config *cfg = tt->cfg;
	uint32_t tgid;
	DIR *d;

	if (!rescan_lists_proc(tt)) {
		for (unsigned i = 0; i < cfg->npids; i++)
			scan_process(tt, cfg->pids[i]);
		return;
	}
	d = open_proc();
	if (!d)
		return;
	while ((tgid = next_selected(tt, d)))
		scan_process(tt, tgid);
	closedir(d);
}

/* Without --pid the selection (everything, or --comm names) also covers processes that
 * start later: probe the system's libssl now, so a short-lived client that is its first
 * user (curl run from a shell) is traced from its first call. Found through its exec
 * instead, its first requests would race the attach. With --pid the selected processes
 * exist already and their libraries are found by scanning them. */
static void probe_system_libssl(struct tls_tracer *tt)
{
	static const char *const dirs[] = {
	    "/usr/lib/x86_64-linux-gnu",
	    "/lib/x86_64-linux-gnu",
	    "/usr/lib/aarch64-linux-gnu",
	    "/lib/aarch64-linux-gnu",
	    "/usr/lib64",
	    "/lib64",
	    "/usr/lib",
	    "/usr/local/lib64",
	    "/usr/local/lib",
	};
	static const char *const names[] = {"libssl.so.3", "libssl.so.1.1"};
	char path[PATH_MAX];

	for (size_t d = 0; d < sizeof(dirs) / sizeof(dirs[0]); d++) {
		for (size_t n = 0; n < sizeof(names) / sizeof(names[0]); n++) {
			int fd;

			snprintf(path, sizeof(path), "%s/%s", dirs[d], names[n]);
			fd = open(path, READ_FLAGS);
			if (fd < 0)
				continue;
			probe_fd(tt, fd, path, false, 0);
			close(fd);
		}
	}
}

/* ---- lifecycle --------------------------------------------------------------------- */

struct tls_tracer *tls__start(struct hoptrace_bpf *skel, const struct loader_config *cfg,
			      enum tls_variant variant)
{
	struct tls_tracer *tt = calloc(1, sizeof(*tt));

	if (!tt || u64map_init(&tt->probed, TLS_MAX_PROBED) ||
	    u64map_init(&tt->seen, TLS_MAX_SEEN) ||
	    !(tt->work = elfwork__start(sym_names, SYM__COUNT, SYM_WRITE + 1, &elf_budget))) {
		log_error("cannot start HTTPS tracing: %s", strerror(errno ?: ENOMEM));
		if (tt) {
			u64map_free(&tt->probed);
			u64map_free(&tt->seen);
		}
		free(tt);
		return NULL;
	}
	tt->skel = skel;
	for (enum tls_prog p = 0; p < PROG__COUNT; p++)
		tt->progs[p] = prog_of(skel, p, variant == TLS_WITH_INJECT_CTX);
	tt->cfg = cfg;
	tt->self = (uint32_t)getpid();
	tt->starting = true;
	if (!cfg->npids)
		probe_system_libssl(tt);
	scan_all(tt);
	while (elfwork__busy(tt->work))
		wait_for_a_parse(tt);
	tt->starting = false;
	if (!tt->probed.count)
		log_info("no OpenSSL library or binary in use by the selected processes yet; "
			 "HTTPS is traced once one starts");
	return tt;
}

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static struct pending_scan *pending_find(struct tls_tracer *tt, uint32_t tgid)
{
	for (unsigned i = 0; i < tt->npending; i++)
		if (tt->pending[i].tgid == tgid)
			return &tt->pending[i];
	return NULL;
}

/* The pending scan furthest along its steps (the least likely to find something new). */
static struct pending_scan *latest_step(struct tls_tracer *tt)
{
	struct pending_scan *latest = NULL;

	for (unsigned i = 0; i < tt->npending; i++)
		if (!latest || tt->pending[i].step > latest->step)
			latest = &tt->pending[i];
	return latest;
}

static void schedule(struct tls_tracer *tt, uint32_t tgid, unsigned step, uint64_t now_ns)
{
	struct pending_scan *ps;

	if (step >= EXEC_STEPS)
		return;
	/* one entry per process: a process exec'ing in a loop restarts its steps */
	ps = pending_find(tt, tgid);
	if (!ps && tt->npending < TLS_MAX_PENDING)
		ps = &tt->pending[tt->npending++];
	if (!ps) {
		/* full (an exec storm): a later look at an older process gives way to an
		 * earlier look at a newer one; the periodic rescan still covers both */
		ps = latest_step(tt);
		STAT_INC(tls_scans_dropped);
		if (!ps || ps->step <= step)
			return;
	}
	ps->tgid = tgid;
	ps->step = step;
	ps->due_ns = now_ns + exec_rescan_ms[step] * NS_PER_MS;
}

/* The exec is only queued: the scan runs in a tick, within its budget. */
void tls__on_exec(struct tls_tracer *tt, uint32_t tgid, uint64_t now_ns)
{
	if (!tt || tgid == tt->self)
		return;
	schedule(tt, tgid, 0, now_ns);
}

/* What one tick may still do. */
struct tick_budget {
	uint64_t end_ns;
	unsigned scans;
};

static bool budget_left(const struct tick_budget *b)
{
	return b->scans < TLS_TICK_MAX_SCANS && monotonic_ns() < b->end_ns;
}

static void run_pending(struct tls_tracer *tt, uint64_t now_ns, struct tick_budget *b)
{
	for (unsigned i = 0; i < tt->npending;) {
		struct pending_scan ps = tt->pending[i];
		char p[32];

		if (ps.due_ns > now_ns) {
			i++;
			continue;
		}
		if (!budget_left(b)) {
			STAT_INC(tls_scans_deferred);
			i++;
			continue;
		}
		tt->pending[i] = tt->pending[--tt->npending];
		snprintf(p, sizeof(p), "/proc/%u", ps.tgid);
		if (access(p, F_OK) != 0)
			continue; /* exited */
		scan_process(tt, ps.tgid);
		b->scans++;
		schedule(tt, ps.tgid, ps.step + 1, now_ns);
	}
}

/* The periodic rescan walks /proc a few processes a tick. */
static void run_rescan(struct tls_tracer *tt, uint64_t now_ns, struct tick_budget *b)
{
	uint32_t tgid;

	if (!tt->rescan && now_ns >= tt->next_rescan_ns) {
		bool first = tt->next_rescan_ns == 0; /* tls__start scanned everything */

		tt->next_rescan_ns = now_ns + TLS_RESCAN_NS;
		if (first)
			return;
		if (!rescan_lists_proc(tt)) {
			/* the processes --pid names: a handful, given by the operator */
			for (unsigned i = 0; i < tt->cfg->npids; i++)
				scan_process(tt, tt->cfg->pids[i]);
			return;
		}
		tt->rescan = open_proc();
	}
	while (tt->rescan && budget_left(b)) {
		tgid = next_selected(tt, tt->rescan);
		if (!tgid) {
			closedir(tt->rescan);
			tt->rescan = NULL;
			break;
		}
		scan_process(tt, tgid);
		b->scans++;
	}
}

void tls__tick(struct tls_tracer *tt, uint64_t now_ns)
{
	struct tick_budget b = {.end_ns = monotonic_ns() + TLS_TICK_BUDGET_NS};

	if (!tt)
		return;
	/* parses finished since the last tick: attach (never waits for one under way) */
	elfwork__collect(tt->work, on_parsed, tt);
	run_pending(tt, now_ns, &b);
	run_rescan(tt, now_ns, &b);
}

void tls__destroy(struct tls_tracer *tt)
{
	uint64_t k;
	void *v;

	if (!tt)
		return;
	tt->stopping = true;
	elfwork__destroy(tt->work, on_parsed, tt);
	for (size_t it = 0; u64map_next(&tt->probed, &it, &k, &v);) {
		file_detach(v);
		free(v);
	}
	u64map_free(&tt->probed);
	u64map_free(&tt->seen);
	if (tt->rescan)
		closedir(tt->rescan);
	free(tt);
}
