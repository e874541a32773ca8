/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * The signals that stop the agent: SIGINT, SIGTERM, SIGHUP. The first one ends the event
 * loop; the ones after it are ignored until the process has exited, so that the shutdown
 * (detach, end open requests, flush every output, print the counters and the audit) always
 * runs to its end. timeout(1) signals its command and then the command's process group,
 * systemd every process of a unit, and people press Ctrl-C twice: a second signal that
 * killed the agent mid-flush lost the spans and the --audit-json report. The shutdown is
 * bounded without them (the OTLP flush has a 5 s deadline); SIGKILL remains.
 */
#ifndef HOPTRACE_STOPSIG_H
#define HOPTRACE_STOPSIG_H

struct stop_signals {
	int fd; /* signalfd; -1: not open */
};

/* Block the stop signals in the calling thread for the rest of the process's life (other
 * threads must block them too: the OTLP workers block every signal), and open a signalfd
 * that reads them. 0 or -errno. */
int stop_signals__open(struct stop_signals *s);

/* The number of the next stop signal received, 0 when none is pending. */
int stop_signals__read(struct stop_signals *s);

/* End of the shutdown: log (debug) each stop signal received since the last read, which
 * the shutdown ignored, and close the signalfd. The signals stay blocked: one that arrives
 * from now on must not end the process before main() returns and stdio is flushed. */
void stop_signals__close(struct stop_signals *s);

#endif
