#!/usr/bin/env node
// SPDX-License-Identifier: BSD-2-Clause
//
// Send spans to an OTLP/HTTP receiver with the real OpenTelemetry JS SDK and its protobuf
// exporter (npm @opentelemetry/sdk-trace-base, @opentelemetry/exporter-trace-otlp-proto),
// for test_otlp_export.py: hoptrace-collect must accept what SDKs send, not only what
// hoptrace sends.
//
//   node otlp_sdk_send.js URL
//
// Makes a small trace: a SERVER span joining a remote parent (with tracestate), a CLIENT
// child with typed attributes, an event, a link and an ERROR status, and a root INTERNAL
// span. Exports the spans twice through OTLPTraceExporter: once gzipped, once not. Prints
// one JSON object: the export results and the spans as the SDK holds them (ids, times in
// unix ns as decimal strings, attributes, resource, scope), for the test to compare with
// what the receiver wrote. Modules come from NODE_PATH.
'use strict';

const api = require('@opentelemetry/api');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } =
	require('@opentelemetry/sdk-trace-base');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-proto');

const url = process.argv[2];
const memory = new InMemorySpanExporter();
const provider = new BasicTracerProvider({
	resource: resourceFromAttributes({
		'service.name': 'sdk-sender',
		'service.version': '1.2.3',
		'process.pid': process.pid,
		'deployment.environment.name': 'test',
	}),
	spanProcessors: [new SimpleSpanProcessor(memory)],
});
const tracer = provider.getTracer('hoptrace-interop', '0.9.1');

// a remote caller, as a traceparent/tracestate would give it
const remote = {
	traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
	spanId: '00f067aa0ba902b7',
	traceFlags: api.TraceFlags.SAMPLED,
	isRemote: true,
	traceState: api.createTraceState('congo=t61rcWkgMzE,rojo=00f067aa0ba902b7'),
};
const parentCtx = api.trace.setSpanContext(api.context.active(), remote);
const server = tracer.startSpan('GET /sdk', {
	kind: api.SpanKind.SERVER,
	attributes: {
		'http.request.method': 'GET',
		'url.path': '/sdk',
		'server.port': 8080,
		'http.response.status_code': 200,
	},
}, parentCtx);
const serverCtx = api.trace.setSpan(parentCtx, server);
const client = tracer.startSpan('GET /down', {
	kind: api.SpanKind.CLIENT,
	attributes: {
		'server.port': 9090,
		'thread.id': 77,
		'hoptrace.test.bool': true,
		'hoptrace.test.double': 0.25,
		'hoptrace.test.array': ['a', 'b'],
		'hoptrace.test.text': 'h\u00e9llo \u2713 "quoted"\ttab\nline \u0085',
	},
	links: [{
		context: { traceId: 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', spanId: 'bbbbbbbbbbbbbbbb',
			   traceFlags: 1, traceState: api.createTraceState('k=v') },
		attributes: { 'hoptrace.link.reason': 'ambiguous', 'link.n': 2 },
	}],
}, serverCtx);
client.addEvent('retry', { attempt: 1 });
client.setStatus({ code: api.SpanStatusCode.ERROR, message: 'boom' });
client.end();
server.setStatus({ code: api.SpanStatusCode.OK });
server.end();
tracer.startSpan('internal work', { root: true }).end();

function ns(hr) {
	return (BigInt(hr[0]) * 1000000000n + BigInt(hr[1])).toString();
}

function describe(s) {
	const ctx = s.spanContext();
	const parent = s.parentSpanContext;
	return {
		trace_id: ctx.traceId,
		span_id: ctx.spanId,
		parent_span_id: parent ? parent.spanId : '',
		parent_is_remote: parent ? Boolean(parent.isRemote) : null,
		name: s.name,
		kind: s.kind,
		start_unix_ns: ns(s.startTime),
		end_unix_ns: ns(s.endTime),
		status: s.status,
		trace_flags: ctx.traceFlags,
		tracestate: ctx.traceState ? ctx.traceState.serialize() : '',
		attributes: s.attributes,
		events: s.events.map((e) => ({ name: e.name, time_unix_ns: ns(e.time),
					       attributes: e.attributes || {} })),
		links: s.links.map((l) => ({ trace_id: l.context.traceId, span_id: l.context.spanId,
					     tracestate: l.context.traceState ?
						 l.context.traceState.serialize() : '',
					     attributes: l.attributes || {} })),
		resource: s.resource.attributes,
		scope: { name: s.instrumentationScope.name,
			 version: s.instrumentationScope.version || '' },
	};
}

function exportWith(compression, spans) {
	const exporter = new OTLPTraceExporter({ url, compression, timeoutMillis: 5000 });
	return new Promise((resolve) => {
		exporter.export(spans, (r) => resolve({
			compression, code: r.code, error: r.error ? String(r.error) : null,
		}));
	}).then((r) => exporter.shutdown().then(() => r));
}

(async () => {
	const spans = memory.getFinishedSpans();
	const results = [];
	for (const c of ['gzip', 'none'])
		results.push(await exportWith(c, spans));
	console.log(JSON.stringify({ results, spans: spans.map(describe) }));
	await provider.shutdown();
})().catch((e) => {
	console.error(e && e.stack ? e.stack : String(e));
	process.exit(1);
});
