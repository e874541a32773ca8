// SPDX-License-Identifier: BSD-2-Clause
/*
 * Kubernetes metadata, the pure half (k8s_parse.h): container ids and pod uids from
 * /proc/PID/cgroup texts shaped as each runtime and cgroup driver writes them (copied from
 * the layouts of real nodes: kubeadm with containerd and the systemd driver, CRI-O, k3s with
 * cgroupfs, kind nested in docker, plain docker on cgroup v1), the owner derivation, and a
 * pod object as the API server serves it.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "json_read.h"
#include "k8s_parse.h"

#define ID "3f0c5e1f8d2a4b6c9e7f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f"
#define ID2 "aa0c5e1f8d2a4b6c9e7f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f"
#define UID "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f"
#define UID_ "6f1c2d3e_4a5b_4c6d_8e9f_0a1b2c3d4e5f"

/* Parse text (copied to a heap buffer of exactly its length: ASan sees any overread). */
static int ids(const char *text, char id[K8S_ID_LEN + 1], char uid[K8S_UID_LEN + 1])
{
	size_t n = strlen(text);
	char *copy = malloc(n ? n : 1);
	int err;

	assert_non_null(copy);
	memcpy(copy, text, n);
	err = k8s_cgroup_ids(copy, n, id, uid);
	free(copy);
	return err;
}

static void expect(const char *text, const char *want_id, const char *want_uid)
{
	char id[K8S_ID_LEN + 1], uid[K8S_UID_LEN + 1];
	int err = ids(text, id, uid);

	if (want_id) {
		assert_int_equal(err, 0);
		assert_string_equal(id, want_id);
	} else {
		assert_int_equal(err, -ENOENT);
		assert_string_equal(id, "");
	}
	assert_string_equal(uid, want_uid ? want_uid : "");
}

static void test_systemd_driver(void **state)
{
	(void)state;
	/* containerd, cgroup v2, burstable and guaranteed QoS */
	expect("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_
	       ".slice/cri-containerd-" ID ".scope\n",
	       ID, UID);
	expect("0::/kubepods.slice/kubepods-pod" UID_ ".slice/cri-containerd-" ID ".scope\n", ID,
	       UID);
	/* CRI-O and docker (cri-dockerd) */
	expect("0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" UID_
	       ".slice/crio-" ID ".scope\n",
	       ID, UID);
	expect("0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" UID_
	       ".slice/docker-" ID ".scope\n",
	       ID, UID);
	/* containerd's own systemd form (kind) */
	expect("0::/system.slice/containerd.service/kubepods-besteffort-pod" UID_
	       ".slice:cri-containerd:" ID "\n",
	       ID, UID);
	/* a process in a sub-cgroup of its container */
	expect("0::/kubepods.slice/kubepods-pod" UID_ ".slice/cri-containerd-" ID
	       ".scope/init.scope\n",
	       ID, UID);
}

static void test_cgroupfs_driver(void **state)
{
	(void)state;
	expect("0::/kubepods/burstable/pod" UID "/" ID "\n", ID, UID);
	expect("0::/kubepods/pod" UID "/" ID "\n", ID, UID);
	/* CRI-O under cgroupfs */
	expect("0::/kubepods/besteffort/pod" UID "/crio-" ID "\n", ID, UID);
	/* cgroup v1 only: every controller line names the same path */
	expect("12:memory:/kubepods/burstable/pod" UID "/" ID "\n"
	       "11:cpu,cpuacct:/kubepods/burstable/pod" UID "/" ID "\n"
	       "1:name=systemd:/kubepods/burstable/pod" UID "/" ID "\n",
	       ID, UID);
}

static void test_docker_and_nesting(void **state)
{
	(void)state;
	expect("13:name=systemd:/docker/" ID "\n12:pids:/docker/" ID "\n0::/docker/" ID "\n", ID,
	       NULL);
	expect("0::/system.slice/docker-" ID ".scope\n", ID, NULL);
	/* kind: the node is a docker container, the pod's container is the deepest id */
	expect("0::/docker/" ID2 "/kubepods/burstable/pod" UID "/" ID "\n", ID, UID);
}

static void test_hybrid_host(void **state)
{
	(void)state;
	/* cgroup v2 "0::/" at the root, the v1 hierarchies name the container: v1 read */
	expect("9:name=systemd:/kubepods/pod" UID "/" ID "\n4:memory:/kubepods/pod" UID "/" ID
	       "\n0::/\n",
	       ID, UID);
	/* v2 names one container, a stale v1 line another: v2 wins */
	expect("4:memory:/docker/" ID2 "\n0::/kubepods/pod" UID "/" ID "\n", ID, UID);
}

static void test_not_containers(void **state)
{
	(void)state;
	expect("0::/user.slice/user-1000.slice/session-3.scope\n", NULL, NULL);
	expect("0::/\n", NULL, NULL);
	expect("", NULL, NULL);
	expect("garbage without colons", NULL, NULL);
	/* CRI-O's conmon monitors the container, it is not in it */
	expect("0::/kubepods.slice/kubepods-pod" UID_ ".slice/crio-conmon-" ID ".scope\n", NULL,
	       UID);
	/* the pod's cgroup itself (the pause container's parent): a pod, no container */
	expect("0::/kubepods/burstable/pod" UID "\n", NULL, UID);
	/* ids that are not 64 lowercase hex digits */
	expect("0::/docker/"
	       "3F0C5E1F8D2A4B6C9E7F1A2B3C4D5E6F708192A3B4C5D6E7F8091A2B3C4D5E6F\n",
	       NULL, NULL);
	expect("0::/docker/3f0c5e1f8d2a\n", NULL, NULL);
	expect("0::/system.slice/evil-" ID ".scope\n", NULL, NULL);
	expect("0::/kubepods/podnot-a-uid/" ID "\n", ID, NULL);
	/* no trailing newline, a line cut short */
	expect("0::/kubepods/pod" UID "/" ID, ID, UID);
	expect("0::/kubepods/pod" UID "/3f0c5e", NULL, UID);
}

/* A user names cgroups freely in the tree systemd delegates to them: ids there are no
 * pod's, whatever they look like. Seen from a pod's cgroup namespace, paths start with "..". */
static void test_only_runtime_owned_trees(void **state)
{
	(void)state;
	expect("0::/user.slice/user-1000.slice/user@1000.service/app.slice/cri-containerd-" ID
	       ".scope\n",
	       NULL, NULL);
	expect("0::/user.slice/user-1000.slice/user@1000.service/kubepods.slice/"
	       "kubepods-pod" UID_ ".slice/cri-containerd-" ID ".scope\n",
	       NULL, NULL);
	expect("0::/../../../../user.slice/user-1000.slice/user@1000.service/pod" UID "/" ID "\n",
	       NULL, NULL);
	expect("0::/init.scope/kubepods/pod" UID "/" ID "\n", NULL, NULL);
	/* a pod's own view: another pod of its QoS class, of the cgroupfs driver, its own pod */
	expect("0::/../../kubepods-besteffort-pod" UID_ ".slice/cri-containerd-" ID ".scope\n", ID,
	       UID);
	expect("0::/../../pod" UID "/" ID "\n", ID, UID);
	expect("0::/../" ID "\n", ID, NULL);
	/* a v1 line in a delegated tree does not count either */
	expect("1:name=systemd:/user.slice/pod" UID "/" ID "\n", NULL, NULL);
}

static void owners(const char *kind, const char *name, const char *hash, int64_t created,
		   unsigned want_n, const char *k0, const char *n0, const char *k1, const char *n1)
{
	struct k8s_owner o[K8S_OWNERS_MAX];
	unsigned n = k8s_owners_derive(kind, name, hash, created, o);

	assert_int_equal(n, want_n);
	if (n > 0) {
		assert_string_equal(o[0].key, k0);
		assert_string_equal(o[0].name, n0);
	}
	if (n > 1) {
		assert_string_equal(o[1].key, k1);
		assert_string_equal(o[1].name, n1);
	}
}

static void test_owners(void **state)
{
	/* 2024-05-01T00:00:00Z = 1714521600 s = 28575360 min */
	const int64_t t = 1714521600;

	(void)state;
	owners("ReplicaSet", "checkout-7d4b9c8f6d", "7d4b9c8f6d", t, 2, "k8s.replicaset.name",
	       "checkout-7d4b9c8f6d", "k8s.deployment.name", "checkout");
	owners("ReplicaSet", "web-api-v2-5f9c7", "5f9c7", t, 2, "k8s.replicaset.name",
	       "web-api-v2-5f9c7", "k8s.deployment.name", "web-api-v2");
	/* a ReplicaSet made by hand, or the hash label missing or not its suffix: no guess */
	owners("ReplicaSet", "frontend-abc12", NULL, t, 1, "k8s.replicaset.name", "frontend-abc12",
	       NULL, NULL);
	owners("ReplicaSet", "frontend-abc12", "zzz99", t, 1, "k8s.replicaset.name",
	       "frontend-abc12", NULL, NULL);
	owners("ReplicaSet", "abc12", "abc12", t, 1, "k8s.replicaset.name", "abc12", NULL, NULL);
	owners("ReplicaSet", "frontendabc12", "abc12", t, 1, "k8s.replicaset.name", "frontendabc12",
	       NULL, NULL);
	/* the CronJob controller names Jobs <cronjob>-<scheduled minute>; the pod follows */
	owners("Job", "backup-28575360", NULL, t + 5, 2, "k8s.job.name", "backup-28575360",
	       "k8s.cronjob.name", "backup");
	owners("Job", "nightly-report-28575360", NULL, t + 3600, 2, "k8s.job.name",
	       "nightly-report-28575360", "k8s.cronjob.name", "nightly-report");
	/* a date-like Job name, a pod days away from the minute, no creation time: no guess */
	owners("Job", "migrate-20240101", NULL, t, 1, "k8s.job.name", "migrate-20240101", NULL,
	       NULL);
	owners("Job", "backup-28575360", NULL, t + 3 * 86400, 1, "k8s.job.name", "backup-28575360",
	       NULL, NULL);
	owners("Job", "backup-28575360", NULL, t - 120, 1, "k8s.job.name", "backup-28575360", NULL,
	       NULL);
	owners("Job", "backup-28575360", NULL, 0, 1, "k8s.job.name", "backup-28575360", NULL, NULL);
	owners("Job", "pi", NULL, t, 1, "k8s.job.name", "pi", NULL, NULL);
	owners("Job", "-28575360", NULL, t, 1, "k8s.job.name", "-28575360", NULL, NULL);
	owners("StatefulSet", "db", NULL, t, 1, "k8s.statefulset.name", "db", NULL, NULL);
	owners("DaemonSet", "node-exporter", NULL, t, 1, "k8s.daemonset.name", "node-exporter",
	       NULL, NULL);
	owners("Node", "worker-1", NULL, t, 0, NULL, NULL, NULL, NULL);
	owners("ReplicaSet", "", NULL, t, 0, NULL, NULL, NULL, NULL);
	owners(NULL, "x", NULL, t, 0, NULL, NULL, NULL, NULL);
}

static void test_parse_time(void **state)
{
	int64_t v;

	(void)state;
	assert_int_equal(k8s_parse_time("2024-05-01T00:00:00Z", &v), 0);
	assert_int_equal(v, 1714521600);
	assert_int_equal(k8s_parse_time("2024-05-01T00:00:00", &v), -EINVAL);
	assert_int_equal(k8s_parse_time("2024-13-01T00:00:00Z", &v), -EINVAL);
	assert_int_equal(k8s_parse_time("2024-05-01T00:00:00Zjunk", &v), -EINVAL);
	assert_int_equal(k8s_parse_time(NULL, &v), -EINVAL);
}

static const char pod_json[] =
    "{\"kind\":\"Pod\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"checkout-7d4b9c8f6d-x2x9q\","
    "\"generateName\":\"checkout-7d4b9c8f6d-\",\"namespace\":\"shop\",\"uid\":\"" UID "\","
    "\"resourceVersion\":\"48121\",\"creationTimestamp\":\"2024-05-01T00:00:00Z\","
    "\"labels\":{\"app.kubernetes.io/name\":\"checkout-svc\",\"pod-template-hash\":"
    "\"7d4b9c8f6d\"},\"ownerReferences\":[{\"apiVersion\":\"apps/v1\",\"kind\":\"ReplicaSet\","
    "\"name\":\"checkout-7d4b9c8f6d\",\"uid\":\"0e2f\",\"controller\":true,"
    "\"blockOwnerDeletion\":true}]},\"spec\":{\"nodeName\":\"worker-1\",\"initContainers\":[{"
    "\"name\":\"migrate\",\"image\":\"m\"}],\"containers\":[{\"name\":\"app\",\"image\":\"a\"},"
    "{\"name\":\"sidecar\",\"image\":\"s\"}]},\"status\":{\"phase\":\"Running\","
    "\"initContainerStatuses\":[{\"name\":\"migrate\",\"containerID\":\"containerd://" ID2
    "\"}],\"containerStatuses\":[{\"name\":\"app\",\"containerID\":\"containerd://" ID "\","
    "\"ready\":true},{\"name\":\"sidecar\",\"ready\":false}]}}";

static void test_pod_from_json(void **state)
{
	struct json_doc d;
	struct k8s_pod p;

	(void)state;
	json_doc__init(&d);
	assert_int_equal(json_doc__parse(&d, pod_json, strlen(pod_json)), 0);
	assert_int_equal(k8s_pod_from_json(&d, json_doc__root(&d), &p), 0);
	assert_string_equal(p.uid, UID);
	assert_string_equal(p.name, "checkout-7d4b9c8f6d-x2x9q");
	assert_string_equal(p.ns, "shop");
	assert_string_equal(p.node, "worker-1");
	assert_string_equal(p.app, "checkout-svc");
	assert_string_equal(p.resource_version, "48121");
	assert_int_equal(p.nowners, 2);
	assert_string_equal(p.owners[1].key, "k8s.deployment.name");
	assert_string_equal(p.owners[1].name, "checkout");
	assert_int_equal(p.ncontainers, 3);
	assert_string_equal(p.containers[0].name, "migrate");
	assert_string_equal(p.containers[0].id, ID2);
	assert_string_equal(p.containers[1].name, "app");
	assert_string_equal(p.containers[1].id, ID);
	assert_string_equal(p.containers[2].name, "sidecar");
	assert_string_equal(p.containers[2].id, ""); /* not started: no id yet */
	json_doc__free(&d);
}

static void test_pod_invalid(void **state)
{
	static const char *const bad[] = {
	    "{}",
	    "{\"metadata\":{\"name\":\"a\",\"namespace\":\"b\"}}",
	    "{\"metadata\":{\"uid\":\"" UID "\",\"namespace\":\"b\"}}",
	    "{\"metadata\":{\"uid\":\"not-a-uid\",\"name\":\"a\",\"namespace\":\"b\"}}",
	    "{\"metadata\":{\"uid\":\"" UID "\",\"name\":\"a\",\"namespace\":"
	    "\"a-namespace-name-that-is-longer-than-sixty-three-bytes-which-no-dns-label-is\"}}",
	    "[1,2]",
	};
	struct json_doc d;
	struct k8s_pod p;

	(void)state;
	json_doc__init(&d);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(json_doc__parse(&d, bad[i], strlen(bad[i])), 0);
		assert_int_equal(k8s_pod_from_json(&d, json_doc__root(&d), &p), -EINVAL);
	}
	json_doc__free(&d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_systemd_driver),
	    cmocka_unit_test(test_cgroupfs_driver),
	    cmocka_unit_test(test_docker_and_nesting),
	    cmocka_unit_test(test_hybrid_host),
	    cmocka_unit_test(test_not_containers),
	    cmocka_unit_test(test_owners),
	    cmocka_unit_test(test_parse_time),
	    cmocka_unit_test(test_pod_from_json),
	    cmocka_unit_test(test_pod_invalid),
	    cmocka_unit_test(test_only_runtime_owned_trees),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
