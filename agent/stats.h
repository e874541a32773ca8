/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * Every counter of the agent lives here: the exit summary, periodic logs and tools read
 * them from one place. Counters are updated from the event loop thread; the export thread
 * uses the atomic variants.
 */
#ifndef HOPTRACE_STATS_H
#define HOPTRACE_STATS_H

#include <stdint.h>
#include <stdio.h>

#define STATS_LIST(X)                                                                              \
	X(events_data, "data events read from the ring buffer")                                    \
	X(events_close, "close events")                                                            \
	X(events_task, "process/thread events")                                                    \
	X(events_log, "log-write records (--capture-logs)")                                        \
	X(events_unknown, "records of unknown kind (dropped)")                                     \
	X(bytes_captured, "payload bytes received from the kernel")                                \
	X(spans_server, "server spans finished")                                                   \
	X(spans_client, "client spans finished")                                                   \
	X(spans_error_incomplete, "spans ended early: connection closed or process exited")        \
	X(drop_gap_in_headers, "messages dropped: header bytes not captured")                      \
	X(drop_parse_error, "messages dropped: malformed HTTP")                                    \
	X(drop_header_too_large, "messages dropped: header block over the limit")                  \
	X(drop_response_unmatched, "responses dropped: no request seen (started mid-request)")     \
	X(drop_conn_table_full, "events dropped: connection table full")                           \
	X(drop_pending_overflow, "requests dropped: too many pipelined on one connection")         \
	X(drop_out_of_order, "events dropped: stream position went backwards")                     \
	X(drop_sink_queue_full, "spans dropped: sink queue full")                                  \
	X(traceparent_valid, "incoming traceparent headers accepted")                              \
	X(traceparent_invalid, "incoming traceparent headers rejected (new trace started)")        \
	X(tracestate_invalid, "tracestate headers rejected")                                       \
	X(resource_attrs_dropped,                                                                  \
	  "process resource attributes dropped: a key the agent observes, or over a size cap")     \
	X(resource_attrs_malformed, "process OTEL_RESOURCE_ATTRIBUTES discarded: malformed")       \
	X(proc_identity_mismatch,                                                                  \
	  "processes whose pid was taken by another before /proc was read (named by comm)")        \
	X(parent_exact, "client spans parented by trace-id match")                                 \
	X(parent_thread, "client spans parented by same thread")                                   \
	X(parent_ancestor, "client spans parented by ancestor thread")                             \
	X(parent_ambiguous,                                                                        \
	  "client spans with possible parents but no sound evidence (unparented)")                 \
	X(thread_wait_samples, "reads of a thread's wait (non-blocking servers: one fd or many)")  \
	X(parent_none, "client spans with no server span in flight")                               \
	X(spans_stitched, "server spans stitched to a same-host caller (--repair=stitch)")         \
	X(tls_open_refused,                                                                        \
	  "OpenSSL candidates not opened: not a regular file, a symlink, or busy")                 \
	X(tls_elf_over_budget,                                                                     \
	  "files not probed: symbol tables over the size, count or time budget")                   \
	X(tls_elf_read_failed, "files not probed: changed or truncated while being read")          \
	X(tls_maps_lines_skipped, "/proc/PID/maps lines skipped: malformed or too long")           \
	X(tls_probed_table_full, "OpenSSL files not probed: table of probed files full")           \
	X(tls_seen_cache_resets, "caches of files without OpenSSL emptied when full")              \
	X(tls_scans, "processes scanned for OpenSSL")                                              \
	X(tls_scans_dropped,                                                                       \
	  "process scans dropped: scan queue full (left to the periodic rescan)")                  \
	X(tls_scans_deferred,                                                                      \
	  "due process scans postponed by a tick (once per tick each): budget spent")              \
	X(tls_elf_queue_full,                                                                      \
	  "files not parsed for OpenSSL yet: parse queue full (left to the next scan)")            \
	X(conns_http, "HTTP connections tracked")                                                  \
	X(conns_idle_expired, "idle connections expired")                                          \
	X(span_attrs_dropped, "span attributes dropped: the span's attribute room was full")       \
	X(span_events_dropped, "log lines dropped: the span's event room was full")                \
	X(log_lines, "log lines attached to server spans (--capture-logs)")                        \
	X(drop_log_no_request, "log writes dropped: the thread served no request then")            \
	X(drop_log_ambiguous,                                                                      \
	  "log writes dropped: the thread serves several requests at once (event loop)")           \
	X(drop_log_procs_full, "server processes whose logs are not captured: BPF map full")       \
	X(drop_correlate_full,                                                                     \
	  "server requests not registered for parenting: in-flight table full")                    \
	X(drop_conns_by_tuple_full,                                                                \
	  "connections not indexed by address: same-host hops on them not joined")                 \
	X(drop_proc_table_full,                                                                    \
	  "spans given a minimal resource: process table full (/proc not read)")                   \
	X(records_late,                                                                            \
	  "records delivered behind newer ones: committed over 5 ms late (links may be missed)")   \
	X(peer_link_missed,                                                                        \
	  "same-host requests whose other end had already finished: hop not linked")               \
	X(budget_drops, "allocations refused: --memory-limit reached (requests not traced)")       \
	X(budget_peak_bytes, "most bytes of connection and request state held at once")            \
	X(sampler_head_dropped,                                                                    \
	  "spans not exported: the head sampler said no (metrics and audit saw them)")             \
	X(tail_traces_kept_error, "tail sampling: local traces kept for an error")                 \
	X(tail_traces_kept_slow, "tail sampling: local traces kept for a slow span")               \
	X(tail_traces_kept_ratio, "tail sampling: local traces kept by the trace-id ratio")        \
	X(tail_traces_dropped,                                                                     \
	  "tail sampling: local traces dropped (fast, no error, not in ratio)")                    \
	X(tail_spans_dropped, "tail sampling: spans of dropped traces")                            \
	X(tail_overflow_early, "tail sampling: traces decided early, the buffer was full")         \
	X(tail_late_spans, "tail sampling: spans after their trace was decided (followed it)")     \
	X(budget_expired, "requests ended after 30 s unanswered: over 3/4 of --memory-limit in "   \
			  "use")                                                                   \
	X(drop_span_no_memory, "spans lost: no memory to build them when their exchange ended")    \
	X(metrics_overflow,                                                                        \
	  "metric observations counted in an otel.metric.overflow series: series table full")      \
	X(metrics_series_expired,                                                                  \
	  "metric series dropped after export: idle for an interval with the table 3/4 full")      \
	X(routes_learned, "distinct routes recorded (per service and side; see --route)")          \
	X(routes_overflow,                                                                         \
	  "requests named /{overflow}: their service had --max-routes-per-service routes")         \
	X(routes_table_full,                                                                       \
	  "requests named /{overflow}: route table full (1024 services or 65536 routes)")          \
	K8S_STATS_LIST(X)                                                                          \
	STORE_STATS_LIST(X)

/* Kubernetes pod metadata (k8s.h): updated by its worker thread (atomically) and the loop. */
#define K8S_STATS_LIST(X)                                                                          \
	X(k8s_lists, "kubernetes: pod LIST pages read from the API server")                        \
	X(k8s_watch_events, "kubernetes: pod WATCH events applied")                                \
	X(k8s_relists_gone, "kubernetes: LISTs again after 410 Gone (resourceVersion expired)")    \
	X(k8s_api_errors, "kubernetes: failed API requests (down, HTTP errors, bad answers)")      \
	X(k8s_api_unavailable,                                                                     \
	  "kubernetes: 1 while the API server is retried with backoff, else 0")                    \
	X(k8s_pods_cached, "kubernetes: pods in the metadata cache")                               \
	X(drop_k8s_cache_full, "kubernetes: pods not cached: --k8s-max-pods reached")              \
	X(drop_k8s_containers, "kubernetes: containers of a pod over 12 not indexed")              \
	X(k8s_lookup_hits, "kubernetes: processes whose pod was found")                            \
	X(k8s_lookup_misses, "kubernetes: lookups of a process's container that found no pod")     \
	X(k8s_meta_unavailable, "kubernetes: requests of containerised processes traced without "  \
				"pod metadata (not yet known)")

/* The embedded store (sink_store.c): its writer thread updates them atomically. */
#define STORE_STATS_LIST(X)                                                                        \
	X(store_spans_written, "store: spans committed to the embedded store")                     \
	X(drop_store_queue_full, "spans not stored: the store's write queue was full")             \
	X(drop_store_write_failed,                                                                 \
	  "spans not stored: writing failed (disk full, damaged file, I/O error)")                 \
	X(drop_store_shutdown, "spans not stored: still queued when the exit deadline passed")     \
	X(store_write_errors, "store: failed batch writes (logged once per episode)")              \
	X(store_traces_deleted, "store: traces deleted by retention (--store-max-bytes/-age)")     \
	X(store_files_replaced, "store: damaged store files moved aside and started anew")

struct agent_stats {
#define X(name, desc) uint64_t name;
	STATS_LIST(X)
#undef X
};

extern struct agent_stats g_stats;

#define STAT_INC(name) (g_stats.name++)
#define STAT_ADD(name, n) (g_stats.name += (n))

/* Print every non-zero counter (all of them when verbose) as "  name  value  description". */
void stats_print(FILE *out, int verbose);

#endif
