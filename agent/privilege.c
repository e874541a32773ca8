// SPDX-License-Identifier: BSD-2-Clause
#include "privilege.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define CAP_MAX_KNOWN 63

capmask_t privilege__runtime_set(bool tls, bool inject)
{
	/* environ, maps, root and map_files of processes of other users */
	capmask_t keep = CAPMASK(CAP_SYS_PTRACE) | CAPMASK(CAP_DAC_READ_SEARCH);

	if (tls)
		/* perf_event_open of a uprobe (CAP_SYS_ADMIN since Linux 6.6, CAP_PERFMON
		 * before), map_files links, the BPF link of each probe */
		keep |= CAPMASK(CAP_SYS_ADMIN) | CAPMASK(CAP_PERFMON) | CAPMASK(CAP_BPF);
	if (inject)
		keep |= CAPMASK(CAP_NET_ADMIN);
	return keep;
}

static int cap_get(struct __user_cap_data_struct data[2])
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};

	return syscall(SYS_capget, &hdr, data) ? -errno : 0;
}

capmask_t privilege__effective(void)
{
	struct __user_cap_data_struct d[2] = {0};

	if (cap_get(d))
		return 0;
	return (capmask_t)d[0].effective | (capmask_t)d[1].effective << 32;
}

/* Empty the bounding set of what is not kept. Needs CAP_SETPCAP: without it (a unit whose
 * CapabilityBoundingSet already limits it) the set stays as it is. */
static void drop_bounding(capmask_t keep)
{
	for (int cap = 0; cap <= CAP_MAX_KNOWN; cap++) {
		int in = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);

		if (in < 0)
			break; /* past the last capability this kernel knows */
		if (in && !(keep & CAPMASK(cap)) && prctl(PR_CAPBSET_DROP, cap, 0, 0, 0))
			break; /* EPERM: no CAP_SETPCAP */
	}
}

int privilege__restrict(capmask_t keep)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct d[2] = {0};
	int err = cap_get(d);

	if (err)
		return err;
	drop_bounding(keep);
	prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
	for (int i = 0; i < 2; i++) {
		__u32 k = (__u32)(keep >> (32 * i));

		d[i].permitted &= k;
		d[i].effective &= d[i].permitted;
		d[i].inheritable = 0;
	}
	if (syscall(SYS_capset, &hdr, d))
		return -errno;
	return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ? -errno : 0;
}

static const char *const cap_names[] = {
    [CAP_CHOWN] = "chown",
    [CAP_DAC_OVERRIDE] = "dac_override",
    [CAP_DAC_READ_SEARCH] = "dac_read_search",
    [CAP_NET_ADMIN] = "net_admin",
    [CAP_SYS_PTRACE] = "sys_ptrace",
    [CAP_SYS_ADMIN] = "sys_admin",
    [CAP_SYS_RESOURCE] = "sys_resource",
    [CAP_PERFMON] = "perfmon",
    [CAP_BPF] = "bpf",
};

const char *privilege__names(capmask_t m, char *buf, unsigned len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (unsigned cap = 0; cap <= CAP_MAX_KNOWN && used < len; cap++) {
		const char *name =
		    cap < sizeof(cap_names) / sizeof(cap_names[0]) ? cap_names[cap] : NULL;
		int n;

		if (!(m & CAPMASK(cap)))
			continue;
		n = name ? snprintf(buf + used, len - used, "%s%s", used ? " " : "", name)
			 : snprintf(buf + used, len - used, "%scap_%u", used ? " " : "", cap);
		if (n < 0)
			break;
		used += (size_t)n;
	}
	return buf[0] ? buf : "none";
}
