// SPDX-License-Identifier: BSD-2-Clause
#include "stopsig.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "log.h"

static void stop_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
}

int stop_signals__open(struct stop_signals *s)
{
	sigset_t set;

	s->fd = -1;
	/* a shell's "cmd &" starts us with SIGINT ignored: take the default back, so the
	 * signal is queued for the signalfd (an ignored signal is discarded, blocked or not) */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	stop_set(&set);
	/* never unblocked: see stop_signals__close() */
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		return -errno;
	s->fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return s->fd < 0 ? -errno : 0;
}

int stop_signals__read(struct stop_signals *s)
{
	struct signalfd_siginfo si;

	if (s->fd < 0 || read(s->fd, &si, sizeof(si)) != sizeof(si))
		return 0;
	return (int)si.ssi_signo;
}

void stop_signals__close(struct stop_signals *s)
{
	int sig;

	/* a signal is pending once however often it was sent: one line per kind at most */
	while ((sig = stop_signals__read(s)))
		log_debug("received %s while shutting down: ignored", strsignal(sig));
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
}
