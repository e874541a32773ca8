// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* The OpenSSL programs for every kernel (tls_progs.bpf.h). */
#include "tls_progs.bpf.h"
