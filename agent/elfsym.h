/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Where named functions are in an ELF file that a traced process maps: their file offsets,
 * which a uprobe wants. The file belongs to whoever can write it: it may be huge, crafted,
 * or truncated while it is read. So it is read with pread into bounded memory (never
 * mmap: a file truncated under a mapping raises SIGBUS), and the work has a size, symbol
 * and time budget.
 */
#ifndef HOPTRACE_ELFSYM_H
#define HOPTRACE_ELFSYM_H

#include <stddef.h>
#include <stdint.h>

struct elfsym_budget {
	uint64_t max_table_bytes; /* largest symbol or string table read */
	uint64_t max_symbols;	  /* symbols looked at, all tables together */
	uint64_t max_ns;	  /* CLOCK_MONOTONIC time for the whole file */
};

/*
 * For each names[i], the file offset of the function of that name defined in the 64-bit
 * native-endian ELF file open at fd, in off[i] (0: not found). The dynamic symbols are read
 * first; the full symbol table only when want_all names are not all found there. Returns 0,
 * or with *why set: -ENOEXEC (not an ELF file this agent can probe), -EFBIG (a table over
 * the budget), -E2BIG (too many symbols), -ETIMEDOUT (time budget spent), -EIO (the file
 * changed or could not be read), -ENOMEM.
 */
int elfsym_find_funcs(int fd, const char *const names[], unsigned n, unsigned want_all,
		      uint64_t off[], const struct elfsym_budget *budget, const char **why);

#endif
