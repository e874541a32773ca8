#!/usr/bin/env node
// SPDX-License-Identifier: BSD-2-Clause
//
// Send spans of two services to an OTLP/HTTP receiver with the real OpenTelemetry JS SDK and
// its JSON exporter (npm @opentelemetry/exporter-trace-otlp-http), for test_sources.py: the
// receiver writes each request body as one line, as the Collector's file exporter does, and
// `hoptrace audit otlp:FILE` reads that file.
//
//   node otlp_json_send.js URL
//
// "frontend" serves GET /checkout and calls "backend" twice: once passing the context on
// (backend's SERVER span is the child of frontend's CLIENT span, as an instrumented HTTP
// client and server make it), once with the context dropped (backend starts a trace of its
// own). The two services export separately, as two hosts would. Prints one JSON object:
// the export results and the spans as the SDK holds them. Modules come from NODE_PATH.
'use strict';

const api = require('@opentelemetry/api');
const { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } =
	require('@opentelemetry/sdk-trace-base');
const { resourceFromAttributes } = require('@opentelemetry/resources');
const { OTLPTraceExporter } = require('@opentelemetry/exporter-trace-otlp-http');

const url = process.argv[2];

function service(name) {
	const memory = new InMemorySpanExporter();
	const provider = new BasicTracerProvider({
		resource: resourceFromAttributes({
			'service.name': name,
			'service.version': '1.0.0',
			'host.name': `${name}-host`,
			'process.pid': process.pid,
		}),
		spanProcessors: [new SimpleSpanProcessor(memory)],
	});
	return { memory, provider, tracer: provider.getTracer('shop', '0.1.0') };
}

const frontend = service('frontend');
const backend = service('backend');

const root = frontend.tracer.startSpan('GET /checkout', {
	kind: api.SpanKind.SERVER,
	attributes: { 'http.request.method': 'GET', 'url.path': '/checkout' },
});
const rootCtx = api.trace.setSpan(api.context.active(), root);

// the call that passes the context on: what traceparent carries, the server side extracts
const call = frontend.tracer.startSpan('GET', {
	kind: api.SpanKind.CLIENT,
	attributes: {
		'http.request.method': 'GET',
		'server.address': 'backend.shop',
		'server.port': 8080,
		'http.response.status_code': 500,
		'retry.delays': [0.5, 1.5],
		'cache.hit': false,
	},
}, rootCtx);
const carrier = {};
api.propagation.setGlobalPropagator(new (require('@opentelemetry/core').W3CTraceContextPropagator)());
api.propagation.inject(api.trace.setSpan(rootCtx, call), carrier);
const remoteCtx = api.propagation.extract(api.ROOT_CONTEXT, carrier);
const served = backend.tracer.startSpan('GET /cart', {
	kind: api.SpanKind.SERVER,
	attributes: { 'http.request.method': 'GET', 'url.path': '/cart', 'http.response.status_code': 500 },
}, remoteCtx);
served.addEvent('db.timeout', { 'db.system': 'postgresql' });
served.setStatus({ code: api.SpanStatusCode.ERROR, message: 'cart store unavailable' });
served.end();
call.setStatus({ code: api.SpanStatusCode.ERROR });
call.end();

// the call whose context was dropped: the backend's span roots a trace of its own
const lost = frontend.tracer.startSpan('GET', {
	kind: api.SpanKind.CLIENT,
	attributes: { 'http.request.method': 'GET', 'server.address': 'backend.shop', 'server.port': 8080 },
}, rootCtx);
backend.tracer.startSpan('GET /stock', { kind: api.SpanKind.SERVER, root: true }).end();
lost.end();
root.end();

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
		name: s.name,
		kind: s.kind,
		start_unix_ns: ns(s.startTime),
		end_unix_ns: ns(s.endTime),
		status: s.status,
		attributes: s.attributes,
		service: s.resource.attributes['service.name'],
	};
}

function exportSpans(spans) {
	const exporter = new OTLPTraceExporter({ url, timeoutMillis: 5000 });
	return new Promise((resolve) => {
		exporter.export(spans, (r) => resolve({ code: r.code, error: r.error ? String(r.error) : null }));
	}).then((r) => exporter.shutdown().then(() => r));
}

(async () => {
	const results = [];
	const all = [];
	for (const svc of [frontend, backend]) {
		const spans = svc.memory.getFinishedSpans();
		results.push(await exportSpans(spans));
		all.push(...spans.map(describe));
		await svc.provider.shutdown();
	}
	console.log(JSON.stringify({ results, spans: all }));
})().catch((e) => {
	console.error(e && e.stack ? e.stack : String(e));
	process.exit(1);
});
