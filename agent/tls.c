// SPDX-License-Identifier: BSD-2-Clause
#include "tls.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <bpf/libbpf.h>

#include "hashmap.h"
#include "hoptrace.skel.h"
#include "loader.h"
#include "log.h"

#define TLS_MAX_FILES 4096
#define TLS_MAX_PENDING 1024
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

enum file_state {
	FILE_PROBED,	 /* probes attached */
	FILE_FAILED,	 /* OpenSSL-looking but could not be probed: logged once */
	FILE_NOT_OPENSSL /* an executable without the OpenSSL entry points */
};

/* A file looked at, by inode: each is probed (or rejected) once. */
struct tls_file {
	uint64_t dev, ino;
	enum file_state state;
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
	struct u64map files; /* file_key(dev, ino) -> struct tls_file */
	unsigned nprobed;
	unsigned npending;
	struct pending_scan pending[TLS_MAX_PENDING];
	uint64_t next_rescan_ns;
};

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

/* ---- ELF: where the OpenSSL entry points are -------------------------------------- */

/* File offset of a symbol: its address relative to its section, plus the section's
 * offset in the file (what a uprobe wants). */
static size_t sym_file_offset(Elf *elf, const GElf_Sym *sym)
{
	Elf_Scn *scn = elf_getscn(elf, sym->st_shndx);
	GElf_Shdr sh;

	if (!scn || !gelf_getshdr(scn, &sh) || sh.sh_type != SHT_PROGBITS ||
	    !(sh.sh_flags & SHF_EXECINSTR) || sym->st_value < sh.sh_addr)
		return 0;
	return (size_t)(sym->st_value - sh.sh_addr + sh.sh_offset);
}

static void scan_symtab(Elf *elf, Elf_Scn *scn, const GElf_Shdr *sh, size_t off[SYM__COUNT])
{
	Elf_Data *data = elf_getdata(scn, NULL);
	size_t n = sh->sh_entsize ? sh->sh_size / sh->sh_entsize : 0;

	for (size_t i = 0; data && i < n; i++) {
		GElf_Sym sym;
		const char *name;

		if (!gelf_getsym(data, (int)i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
		    sym.st_shndx == SHN_UNDEF || sym.st_shndx >= SHN_LORESERVE || !sym.st_value)
			continue;
		name = elf_strptr(elf, sh->sh_link, sym.st_name);
		if (!name || name[0] != 'S' || strncmp(name, "SSL_", 4) != 0)
			continue;
		for (int s = 0; s < SYM__COUNT; s++)
			if (!off[s] && strcmp(name, sym_names[s]) == 0)
				off[s] = sym_file_offset(elf, &sym);
	}
}

/* Offsets of the OpenSSL entry points in the ELF file open at fd (0: absent), from its
 * dynamic symbols, then its full symbol table when it has one. Returns 0, or -errno with
 * *why set. */
static int elf_find_ssl(int fd, size_t off[SYM__COUNT], const char **why)
{
	Elf_Scn *scn = NULL;
	Elf *elf;

	memset(off, 0, sizeof(size_t) * SYM__COUNT);
	if (elf_version(EV_CURRENT) == EV_NONE) {
		*why = "libelf is unusable";
		return -EINVAL;
	}
	elf = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!elf || elf_kind(elf) != ELF_K_ELF) {
		*why = "not an ELF file";
		if (elf)
			elf_end(elf);
		return -ENOEXEC;
	}
	for (int pass = 0; pass < 2; pass++) {
		while ((scn = elf_nextscn(elf, scn))) {
			GElf_Shdr sh;

			if (gelf_getshdr(scn, &sh) &&
			    sh.sh_type == (pass == 0 ? SHT_DYNSYM : SHT_SYMTAB))
				scan_symtab(elf, scn, &sh, off);
		}
		if (off[SYM_READ] && off[SYM_WRITE])
			break;
	}
	elf_end(elf);
	return 0;
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
		       const char *name, const size_t off[SYM__COUNT])
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

static void log_probed(const char *name, const size_t off[SYM__COUNT], uint32_t tgid)
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

/* Probe the file open at fd (named name in messages) unless done before. is_exe: a
 * program's executable, which is usually not OpenSSL (not worth a message). */
static void probe_fd(struct tls_tracer *tt, int fd, const char *name, bool is_exe, uint32_t tgid)
{
	size_t off[SYM__COUNT];
	char path[64];
	const char *why = NULL;
	struct tls_file *f;
	struct stat st;

	if (fstat(fd, &st))
		return;
	/* seen before (a 64-bit key collision between two files would skip the second) */
	if (u64map_get(&tt->files, file_key(st.st_dev, st.st_ino)))
		return;
	f = calloc(1, sizeof(*f));
	if (!f)
		return;
	f->dev = st.st_dev;
	f->ino = st.st_ino;
	f->state = FILE_FAILED;
	if (elf_find_ssl(fd, off, &why)) {
		if (!is_exe)
			log_warn("cannot probe %s: %s; HTTPS through this file is not traced", name,
				 why);
		f->state = is_exe ? FILE_NOT_OPENSSL : FILE_FAILED;
	} else if (!off[SYM_READ] || !off[SYM_WRITE]) {
		if (!is_exe)
			log_warn("cannot probe %s: %s not found in its symbol tables (stripped, or "
				 "not OpenSSL); HTTPS through this file is not traced",
				 name, off[SYM_READ] ? "SSL_write" : "SSL_read");
		f->state = is_exe ? FILE_NOT_OPENSSL : FILE_FAILED;
	} else {
		/* the kernel resolves the path to the inode now: go through our own fd, so a
		 * process exiting meanwhile or a mount namespace changes nothing */
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		if (file_attach(tt, f, path, name, off) == 0) {
			f->state = FILE_PROBED;
			tt->nprobed++;
			log_probed(name, off, tgid);
		}
	}
	if (u64map_put(&tt->files, file_key(f->dev, f->ino), f)) {
		file_detach(f);
		if (f->state == FILE_PROBED)
			tt->nprobed--;
		free(f);
	}
}

/* Open a file a process maps: through map_files (the exact mapped inode, even when the
 * file was replaced or deleted since, e.g. by a package upgrade), else through the
 * process's root (containers). */
static int open_mapped(uint32_t tgid, const char *range, const char *path)
{
	char p[PATH_MAX + 64];
	int fd;

	snprintf(p, sizeof(p), "/proc/%u/map_files/%s", tgid, range);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd >= 0)
		return fd;
	snprintf(p, sizeof(p), "/proc/%u/root%s", tgid, path);
	return open(p, O_RDONLY | O_CLOEXEC);
}

static bool is_libssl(const char *path)
{
	const char *base = strrchr(path, '/');

	return base && strncmp(base + 1, "libssl.so", 9) == 0;
}

/* The process's executable (node and others link OpenSSL in and export it) and every
 * libssl.so* it maps. */
static void scan_process(struct tls_tracer *tt, uint32_t tgid)
{
	char p[64], line[PATH_MAX + 128], exe[PATH_MAX];
	uint64_t last_ino = 0;
	ssize_t n;
	FILE *maps;
	int fd;

	if (tgid == tt->self)
		return;
	snprintf(p, sizeof(p), "/proc/%u/exe", tgid);
	fd = open(p, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		n = readlink(p, exe, sizeof(exe) - 1);
		exe[n > 0 ? n : 0] = '\0';
		probe_fd(tt, fd, n > 0 ? exe : p, true, tgid);
		close(fd);
	}
	snprintf(p, sizeof(p), "/proc/%u/maps", tgid);
	maps = fopen(p, "re");
	if (!maps)
		return;
	while (fgets(line, sizeof(line), maps)) {
		char range[64], *path, *nl;
		unsigned long long ino;
		int pos = 0;

		if (sscanf(line, "%63s %*s %*s %*s %llu %n", range, &ino, &pos) < 2 || !pos ||
		    !ino || ino == last_ino)
			continue;
		path = line + pos;
		nl = strchr(path, '\n');
		if (nl)
			*nl = '\0';
		if (path[0] != '/' || !is_libssl(path))
			continue;
		last_ino = ino; /* a library is several consecutive mappings */
		nl = strstr(path, " (deleted)");
		if (nl)
			*nl = '\0';
		fd = open_mapped(tgid, range, path);
		if (fd < 0)
			continue;
		probe_fd(tt, fd, path, false, tgid);
		close(fd);
	}
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

static void scan_all(struct tls_tracer *tt)
{
	const struct loader_config *cfg = tt->cfg;
	struct dirent *de;
	DIR *d;

	if (cfg->npids && !cfg->ncomms) {
		for (unsigned i = 0; i < cfg->npids; i++)
			scan_process(tt, cfg->pids[i]);
		return;
	}
	d = opendir("/proc");
	if (!d) {
		log_warn("cannot list /proc: %s; HTTPS is traced only for processes that start "
			 "from now on",
			 strerror(errno));
		return;
	}
	while ((de = readdir(d))) {
		char *end;
		unsigned long tgid = strtoul(de->d_name, &end, 10);

		if (!isdigit((unsigned char)de->d_name[0]) || *end || !tgid || tgid > UINT32_MAX)
			continue;
		if (tgid_selected(tt, (uint32_t)tgid))
			scan_process(tt, (uint32_t)tgid);
	}
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
			fd = open(path, O_RDONLY | O_CLOEXEC);
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

	if (!tt || u64map_init(&tt->files, TLS_MAX_FILES)) {
		free(tt);
		log_error("cannot start HTTPS tracing: out of memory");
		return NULL;
	}
	tt->skel = skel;
	for (enum tls_prog p = 0; p < PROG__COUNT; p++)
		tt->progs[p] = prog_of(skel, p, variant == TLS_WITH_INJECT_CTX);
	tt->cfg = cfg;
	tt->self = (uint32_t)getpid();
	if (!cfg->npids)
		probe_system_libssl(tt);
	scan_all(tt);
	if (!tt->nprobed)
		log_info("no OpenSSL library or binary in use by the selected processes yet; "
			 "HTTPS is traced once one starts");
	return tt;
}

static void schedule(struct tls_tracer *tt, uint32_t tgid, unsigned step, uint64_t now_ns)
{
	struct pending_scan *ps;

	if (step >= EXEC_STEPS)
		return;
	if (tt->npending == TLS_MAX_PENDING) {
		log_debug("TLS: too many recent execs, pid %u is found by the periodic rescan",
			  tgid);
		return;
	}
	ps = &tt->pending[tt->npending++];
	ps->tgid = tgid;
	ps->step = step;
	ps->due_ns = now_ns + exec_rescan_ms[step] * NS_PER_MS;
}

void tls__on_exec(struct tls_tracer *tt, uint32_t tgid, uint64_t now_ns)
{
	if (!tt)
		return;
	scan_process(tt, tgid);
	schedule(tt, tgid, 1, now_ns);
}

void tls__tick(struct tls_tracer *tt, uint64_t now_ns)
{
	if (!tt)
		return;
	for (unsigned i = 0; i < tt->npending;) {
		struct pending_scan ps = tt->pending[i];
		char p[32];

		if (ps.due_ns > now_ns) {
			i++;
			continue;
		}
		tt->pending[i] = tt->pending[--tt->npending];
		snprintf(p, sizeof(p), "/proc/%u", ps.tgid);
		if (access(p, F_OK) != 0)
			continue; /* exited */
		scan_process(tt, ps.tgid);
		schedule(tt, ps.tgid, ps.step + 1, now_ns);
	}
	if (now_ns >= tt->next_rescan_ns) {
		if (tt->next_rescan_ns)
			scan_all(tt);
		tt->next_rescan_ns = now_ns + TLS_RESCAN_NS;
	}
}

void tls__destroy(struct tls_tracer *tt)
{
	uint64_t k;
	void *v;

	if (!tt)
		return;
	for (size_t it = 0; u64map_next(&tt->files, &it, &k, &v);) {
		file_detach(v);
		free(v);
	}
	u64map_free(&tt->files);
	free(tt);
}
