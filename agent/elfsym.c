// SPDX-License-Identifier: BSD-2-Clause
#include "elfsym.h"

#include <elf.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define NATIVE_DATA ELFDATA2LSB
#else
#define NATIVE_DATA ELFDATA2MSB
#endif

/* More sections than any real library has; bounds the section header table (4 MiB). */
#define MAX_SECTIONS 65536
/* Symbols read per pread, and between two looks at the clock. */
#define SYM_CHUNK 4096

struct elf_file {
	int fd;
	uint64_t size; /* at the start: a later short read means the file changed */
	Elf64_Shdr *sh;
	uint64_t nsh;
	const struct elfsym_budget *budget;
	uint64_t deadline_ns;
	uint64_t symbols_seen;
	const char **why;
};

static uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static int fail(struct elf_file *f, int err, const char *why)
{
	*f->why = why;
	return err;
}

/* Exactly len bytes at off, or -EIO: the file is shorter than it was (truncated). */
static int read_exact(struct elf_file *f, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	if (off > f->size || len > f->size - off)
		return fail(f, -EIO, "a table lies past the end of the file");
	while (done < len) {
		ssize_t r = pread(f->fd, (char *)buf + done, len - done, (off_t)(off + done));

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return fail(f, -EIO, "the file changed while it was read (truncated?)");
		done += (size_t)r;
	}
	return 0;
}

static int check_header(struct elf_file *f, const Elf64_Ehdr *eh)
{
	if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0)
		return fail(f, -ENOEXEC, "not an ELF file");
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != NATIVE_DATA)
		return fail(f, -ENOEXEC, "not a 64-bit ELF file of this machine's byte order");
	if (eh->e_shoff == 0 || eh->e_shentsize != sizeof(Elf64_Shdr))
		return fail(f, -ENOEXEC, "no section headers");
	return 0;
}

/* The section header table; its count is in section 0 when e_shnum cannot hold it. */
static int read_sections(struct elf_file *f, const Elf64_Ehdr *eh)
{
	Elf64_Shdr first;
	int err;

	f->nsh = eh->e_shnum;
	if (f->nsh == 0) {
		err = read_exact(f, &first, sizeof(first), eh->e_shoff);
		if (err)
			return err;
		f->nsh = first.sh_size;
	}
	if (f->nsh == 0 || f->nsh > MAX_SECTIONS)
		return fail(f, -ENOEXEC, "a section count no library has");
	f->sh = malloc(f->nsh * sizeof(Elf64_Shdr));
	if (!f->sh)
		return fail(f, -ENOMEM, "out of memory");
	return read_exact(f, f->sh, f->nsh * sizeof(Elf64_Shdr), eh->e_shoff);
}

static int check_budget(struct elf_file *f, uint64_t new_symbols)
{
	f->symbols_seen += new_symbols;
	if (f->symbols_seen > f->budget->max_symbols)
		return fail(f, -E2BIG, "more symbols than the budget allows");
	if (monotonic_ns() > f->deadline_ns)
		return fail(f, -ETIMEDOUT,
			    "reading its symbols took longer than the budget allows");
	return 0;
}

/* A table's bytes, within the file and the budget. */
static int read_table(struct elf_file *f, const Elf64_Shdr *sh, char **out)
{
	char *buf;
	int err;

	if (sh->sh_type == SHT_NOBITS || sh->sh_size == 0)
		return fail(f, -ENOEXEC, "an empty symbol or string table");
	if (sh->sh_size > f->budget->max_table_bytes)
		return fail(f, -EFBIG, "a symbol or string table larger than the budget allows");
	buf = malloc(sh->sh_size);
	if (!buf)
		return fail(f, -ENOMEM, "out of memory");
	err = read_exact(f, buf, sh->sh_size, sh->sh_offset);
	if (err) {
		free(buf);
		return err;
	}
	*out = buf;
	return 0;
}

/* File offset of a function at st_value in executable section shndx (0: none). */
static uint64_t func_file_offset(const struct elf_file *f, const Elf64_Sym *s)
{
	const Elf64_Shdr *sec;
	uint64_t off;

	if (s->st_shndx == SHN_UNDEF || s->st_shndx >= SHN_LORESERVE || s->st_shndx >= f->nsh)
		return 0;
	sec = &f->sh[s->st_shndx];
	if (sec->sh_type != SHT_PROGBITS || !(sec->sh_flags & SHF_EXECINSTR) ||
	    s->st_value < sec->sh_addr || s->st_value - sec->sh_addr >= sec->sh_size)
		return 0;
	off = s->st_value - sec->sh_addr + sec->sh_offset;
	return off < f->size ? off : 0;
}

static void match_symbol(const struct elf_file *f, const Elf64_Sym *s, const char *str,
			 uint64_t str_size, const char *const names[], unsigned n, uint64_t off[])
{
	const char *name;
	size_t max;

	if (ELF64_ST_TYPE(s->st_info) != STT_FUNC || !s->st_value || s->st_name >= str_size)
		return;
	name = str + s->st_name;
	max = (size_t)(str_size - s->st_name);
	for (unsigned i = 0; i < n; i++) {
		size_t len = strlen(names[i]);

		if (!off[i] && len < max && memcmp(name, names[i], len + 1) == 0)
			off[i] = func_file_offset(f, s);
	}
}

/* Every function of one symbol table, SYM_CHUNK symbols a read. */
static int scan_table(struct elf_file *f, const Elf64_Shdr *symsh, const char *const names[],
		      unsigned n, uint64_t off[])
{
	Elf64_Sym chunk[SYM_CHUNK];
	const Elf64_Shdr *strsh;
	uint64_t nsyms;
	char *str = NULL;
	int err;

	if (symsh->sh_entsize != sizeof(Elf64_Sym) || symsh->sh_link >= f->nsh)
		return fail(f, -ENOEXEC, "a malformed symbol table");
	strsh = &f->sh[symsh->sh_link];
	if (strsh->sh_type != SHT_STRTAB)
		return fail(f, -ENOEXEC, "a malformed symbol table");
	nsyms = symsh->sh_size / sizeof(Elf64_Sym);
	if (symsh->sh_size > f->budget->max_table_bytes)
		return fail(f, -EFBIG, "a symbol table larger than the budget allows");
	err = check_budget(f, nsyms);
	if (!err)
		err = read_table(f, strsh, &str);
	for (uint64_t i = 0; !err && i < nsyms; i += SYM_CHUNK) {
		uint64_t k = nsyms - i < SYM_CHUNK ? nsyms - i : SYM_CHUNK;

		err = read_exact(f, chunk, k * sizeof(Elf64_Sym),
				 symsh->sh_offset + i * sizeof(Elf64_Sym));
		for (uint64_t j = 0; !err && j < k; j++)
			match_symbol(f, &chunk[j], str, strsh->sh_size, names, n, off);
		if (!err)
			err = check_budget(f, 0);
	}
	free(str);
	return err;
}

static bool found_all(const uint64_t off[], unsigned want_all)
{
	for (unsigned i = 0; i < want_all; i++)
		if (!off[i])
			return false;
	return true;
}

int elfsym_find_funcs(int fd, const char *const names[], unsigned n, unsigned want_all,
		      uint64_t off[], const struct elfsym_budget *budget, const char **why)
{
	static const uint32_t passes[] = {SHT_DYNSYM, SHT_SYMTAB};
	struct elf_file f = {.fd = fd, .budget = budget, .why = why};
	Elf64_Ehdr eh;
	struct stat st;
	int err;

	memset(off, 0, n * sizeof(off[0]));
	if (fstat(fd, &st) || !S_ISREG(st.st_mode))
		return fail(&f, -ENOEXEC, "not a regular file");
	f.size = (uint64_t)st.st_size;
	f.deadline_ns = monotonic_ns() + budget->max_ns;
	err = read_exact(&f, &eh, sizeof(eh), 0);
	if (err)
		return err == -EIO && f.size < sizeof(eh) ? fail(&f, -ENOEXEC, "not an ELF file")
							  : err;
	err = check_header(&f, &eh);
	if (!err)
		err = read_sections(&f, &eh);
	for (size_t p = 0; !err && p < sizeof(passes) / sizeof(passes[0]); p++) {
		for (uint64_t i = 0; !err && i < f.nsh; i++)
			if (f.sh[i].sh_type == passes[p])
				err = scan_table(&f, &f.sh[i], names, n, off);
		if (found_all(off, want_all))
			break;
	}
	free(f.sh);
	return err;
}
