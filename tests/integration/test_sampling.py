"""Head and tail sampling (issue 12) on real servers.

Head: the ratio decision is the OpenTelemetry consistent-probability rule (randomness = the
56 rightmost bits of the trace id, kept when >= the rejection threshold), so two agents,
each seeing a different process of one trace, keep exactly the same traces, and the
expected set is computed here from the ids alone. Parent-based samplers follow the incoming
sampled flag. Tail: errors and slow requests are kept, fast ones dropped (ratio 0).
"""
import os
import random

from lib import Agent, curl, free_port, python_server

THRESHOLD_HALF = 0x80000000000000  # sampler_ratio_threshold(0.5)


def ids(n, seed):
    rnd = random.Random(seed)
    return ["%032x" % rnd.getrandbits(128) for _ in range(n)]


def kept_by_ratio(trace_id, threshold):
    return int(trace_id[18:], 16) >= threshold


def get(port, path, traceparent=None):
    args = [f"http://127.0.0.1:{port}{path}"]
    if traceparent:
        args[0:0] = ["-H", f"traceparent: {traceparent}"]
    return curl(*args).stdout


def test_two_agents_agree_on_ratio_decisions():
    back_port, front_port = free_port(), free_port()
    back = python_server(back_port, script="app_server.py", service="back")
    front = python_server(front_port, script="app_server.py", service="front")
    sampler = ("--sampler", "traceidratio", "--sampler-arg", "0.5")
    a_front = Agent("--pid", str(front.pid), *sampler)
    a_back = Agent("--pid", str(back.pid), *sampler)
    traces = ids(24, 12)
    try:
        for t in traces:
            # an unsampled incoming flag: traceidratio ignores the parent, the id decides
            get(front_port, f"/hop?to={back_port}&propagate=child", f"00-{t}-00f067aa0ba902b7-00")
        front_spans = a_front.stop()
        back_spans = a_back.stop()
    finally:
        a_front.kill()
        a_back.kill()
        front.stop()
        back.stop()
    expected = {t for t in traces if kept_by_ratio(t, THRESHOLD_HALF)}
    assert 0 < len(expected) < len(traces), expected  # the seed gives both outcomes
    front_servers = {s["trace_id"] for s in front_spans if s["kind"] == "SERVER"}
    front_clients = {s["trace_id"] for s in front_spans if s["kind"] == "CLIENT"}
    back_servers = {s["trace_id"] for s in back_spans if s["kind"] == "SERVER"}
    assert front_servers == expected, (sorted(front_servers), sorted(expected))
    assert front_clients == expected
    assert back_servers == expected
    assert all(s["trace_flags"] == 1 for s in front_spans + back_spans), front_spans
    dropped = len(traces) - len(expected)
    assert a_front.counters.get("sampler_head_dropped") == 2 * dropped, a_front.counters
    assert a_back.counters.get("sampler_head_dropped") == dropped, a_back.counters


def test_parent_based_honours_incoming_flag():
    port = free_port()
    app = python_server(port, script="app_server.py", service="pb")
    # roots are never sampled (ratio 0): only a sampled parent keeps a request
    agent = Agent("--pid", str(app.pid), env={"OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
                                              "OTEL_TRACES_SAMPLER_ARG": "0"})
    sampled, unsampled = ids(3, 1), ids(3, 2)
    try:
        for t in sampled:
            get(port, "/leaf", f"00-{t}-00f067aa0ba902b7-01")
        for t in unsampled:
            get(port, "/leaf", f"00-{t}-00f067aa0ba902b7-00")
        for _ in range(3):
            get(port, "/leaf")
        spans = agent.stop()
    finally:
        agent.kill()
        app.stop()
    assert {s["trace_id"] for s in spans} == set(sampled), spans
    assert agent.counters.get("sampler_head_dropped") == 6, agent.counters


def test_tail_keeps_errors_and_slow_drops_fast():
    port = free_port()
    app = python_server(port, script="app_server.py", service="tailsvc")
    agent = Agent("--pid", str(app.pid), "--tail-ratio", "0", "--tail-slow", "300",
                  "--tail-slow", "route=/leaf:5000", "--tail-quiet-ms", "200")
    try:
        for _ in range(20):
            get(port, "/leaf")
        for _ in range(2):
            get(port, "/status?code=500")
            get(port, "/slow?ms=400")
        spans = agent.stop(settle=0.8)
    finally:
        agent.kill()
        app.stop()
    paths = sorted(s["attributes"].get("url.path") for s in spans)
    assert paths == ["/slow", "/slow", "/status", "/status"], paths
    c = agent.counters
    assert c.get("tail_traces_kept_error") == 2, c
    assert c.get("tail_traces_kept_slow") == 2, c
    assert c.get("tail_traces_dropped") == 20, c


def test_injected_headers_carry_the_decision():
    """--repair=inject: the traceparent the agent adds to a call carries the head decision
    (here the ratio rule on the trace id, which traceidratio applies whatever the incoming
    flag), the same one the agent's own spans were given."""
    from test_inject import received, sink

    sk, sink_port, d = sink()
    port = free_port()
    app = python_server(port, script="app_server.py", service="inj")
    agent = Agent("--pid", str(app.pid), "--repair=inject", "--sampler", "traceidratio",
                  "--sampler-arg", "0.5")
    traces = ids(12, 7)
    try:
        for t in traces:
            get(port, f"/hop?to={sink_port}&propagate=none&path=/x", f"00-{t}-00f067aa0ba902b7-01")
        spans = agent.stop()
        writes = received(d)
    finally:
        agent.kill()
        app.stop()
        sk.stop()
    import re
    flags = {}
    for w in writes:
        m = re.search(rb"traceparent: 00-([0-9a-f]{32})-[0-9a-f]{16}-([0-9a-f]{2})\r\n", w)
        assert m, w
        flags[m.group(1).decode()] = int(m.group(2), 16)
    assert set(flags) == set(traces), (flags, traces)
    for t in traces:
        assert flags[t] & 1 == (1 if kept_by_ratio(t, THRESHOLD_HALF) else 0), (t, flags[t])
    assert {s["trace_id"] for s in spans} == {t for t in traces if flags[t] & 1}


def test_tail_two_agents_each_see_one_side_of_a_trace():
    """Two agents, one tracing the caller (front), one the callee (back), both tail sampling.
    The ratio part is the same on both; an error or a slow answer of the callee reaches the
    caller as a status or a slow client call, so both keep those traces. An error made by the
    caller alone is kept upstream only: downstream the ratio decides (the documented limit)."""
    from urllib.parse import quote

    back_port, front_port = free_port(), free_port()
    back = python_server(back_port, script="app_server.py", service="tail-back")
    front = python_server(front_port, script="app_server.py", service="tail-front")
    # the slow threshold sits far above a normal hop, which takes up to a few hundred ms on
    # an emulated kernel of the matrix; only the /slow calls may cross it
    tail = ("--tail-ratio", "0.5", "--tail-slow", "1000", "--tail-quiet-ms", "200")
    a_front = Agent("--pid", str(front.pid), *tail)
    a_back = Agent("--pid", str(back.pid), *tail)
    pool = ids(64, 21)
    normal = pool[:16]
    back_err, back_slow = pool[16:18], pool[18:20]
    # the limit is visible only on traces the ratio drops
    front_err = [t for t in pool[20:] if not kept_by_ratio(t, THRESHOLD_HALF)][:2]
    calls = [(t, "/leaf", 200) for t in normal] + [(t, "/status?code=500", 200) for t in back_err]
    calls += [(t, "/slow?ms=1200", 200) for t in back_slow]
    calls += [(t, "/leaf", 503) for t in front_err]
    try:
        for t, path, status in calls:
            get(front_port, f"/hop?to={back_port}&propagate=child&path={quote(path, safe='')}"
                f"&status={status}", f"00-{t}-00f067aa0ba902b7-01")
        front_spans = a_front.stop(settle=0.8)
        back_spans = a_back.stop(settle=0.8)
    finally:
        a_front.kill()
        a_back.kill()
        front.stop()
        back.stop()
    by_ratio = {t for t in normal + front_err if kept_by_ratio(t, THRESHOLD_HALF)}
    assert len(front_err) == 2 and 0 < len(by_ratio) < len(normal), by_ratio
    both = by_ratio | set(back_err) | set(back_slow)
    front_kept = {s["trace_id"] for s in front_spans}
    back_kept = {s["trace_id"] for s in back_spans}
    assert front_kept == both | set(front_err), (sorted(front_kept), sorted(both))
    assert back_kept == both, (sorted(back_kept), sorted(both))
    # a kept trace is kept whole: the caller's server and client span, the callee's server span
    for t in front_kept:
        kinds = sorted(s["kind"] for s in front_spans if s["trace_id"] == t)
        assert kinds == ["CLIENT", "SERVER"], (t, kinds)
    assert sorted(s["kind"] for s in back_spans) == ["SERVER"] * len(both), back_spans
    cf, cb = a_front.counters, a_back.counters
    assert cf.get("tail_traces_kept_error") == 4 and cb.get("tail_traces_kept_error") == 2, (cf, cb)
    assert cf.get("tail_traces_kept_slow") == 2 and cb.get("tail_traces_kept_slow") == 2, (cf, cb)
    assert cf.get("tail_traces_kept_ratio") == len(by_ratio), cf
    assert cb.get("tail_traces_kept_ratio") == len(by_ratio), cb
    dropped = len(normal) - len(by_ratio & set(normal))
    assert cf.get("tail_traces_dropped") == dropped, cf
    assert cb.get("tail_traces_dropped") == dropped + 2, cb
