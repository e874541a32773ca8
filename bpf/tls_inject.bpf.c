// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The OpenSSL programs (tls_progs.bpf.h) with the trace context of --repair=inject: an HTTPS
 * request served here sets the context that the process's plaintext calls carry. Needs
 * bpf_loop (5.17); loaded instead of tls.bpf.c's programs only under --repair=inject.
 */
#define HT_INJECT_CTX 1
/* the names of the programs (the inner functions keep theirs: static to this file) */
#define ht_ssl_enter ht_ssl_enter_inj
#define ht_ssl_ret_read ht_ssl_ret_read_inj
#define ht_ssl_ret_write ht_ssl_ret_write_inj
#define ht_ssl_ret_read_ex ht_ssl_ret_read_ex_inj
#define ht_ssl_ret_write_ex ht_ssl_ret_write_ex_inj
#define ht_ssl_set_fd ht_ssl_set_fd_inj
#define ht_ssl_free ht_ssl_free_inj
#include "tls_progs.bpf.h"
