/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Least privilege. Loading and attaching need CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN (uprobes
 * since Linux 6.6; mounting tracefs), CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH (other users'
 * /proc/PID files) and, with --repair=inject, CAP_NET_ADMIN (README "Privileges"). Once all
 * is attached, the loop thread keeps only what tracing needs from then on, and every other
 * thread keeps nothing; no thread can gain privileges again (no_new_privs).
 */
#ifndef HOPTRACE_PRIVILEGE_H
#define HOPTRACE_PRIVILEGE_H

#include <linux/capability.h>
#include <stdbool.h>
#include <stdint.h>

/* Linux 5.8; older uapi headers lack them */
#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

/* A capability set as a bit mask: bit N is capability N (linux/capability.h). */
typedef uint64_t capmask_t;

#define CAPMASK(cap) ((capmask_t)1 << (cap))

/* What the loop thread needs once everything is attached: /proc reads of other users'
 * processes always; with tls, attaching uprobes to the libraries of new processes; with
 * inject, detaching the sk_msg program at exit. */
capmask_t privilege__runtime_set(bool tls, bool inject);
/*
 * Keep only keep in the calling thread (effective, permitted; inheritable, ambient and, when
 * CAP_SETPCAP allows, the bounding set emptied of the rest), then set no_new_privs.
 * Capabilities are per thread: threads started later inherit the result. 0 or -errno.
 */
int privilege__restrict(capmask_t keep);
/* The calling thread's effective set. */
capmask_t privilege__effective(void);
/* Names of the capabilities in m ("sys_admin sys_ptrace"), in buf of size len. */
const char *privilege__names(capmask_t m, char *buf, unsigned len);

#endif
