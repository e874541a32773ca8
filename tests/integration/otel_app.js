'use strict';
/*
 * A Node.js service instrumented with the real OpenTelemetry SDK (@opentelemetry/sdk-node and
 * @opentelemetry/instrumentation-http), for the propagation audit tests: the SDK, not this
 * code, reads the incoming traceparent and writes the outgoing one, as in a real
 * application. Spans stay in memory (no exporter, no network besides the app's own).
 *
 *   node otel_app.js PORT DOWNSTREAM_PORT
 *
 *   GET /call?path=P   calls http://127.0.0.1:DOWNSTREAM_PORT/P while serving and answers
 *                      JSON: the downstream status, the traceparent the SDK sent, and the
 *                      SDK's ids of this server span
 *   GET /anything      200 "otel leaf"
 *
 * Modules come from NODE_PATH (the test installs them under the build directory).
 */
const { NodeSDK, tracing } = require('@opentelemetry/sdk-node');
const { HttpInstrumentation } = require('@opentelemetry/instrumentation-http');

const sdk = new NodeSDK({
  spanProcessors: [new tracing.SimpleSpanProcessor(new tracing.InMemorySpanExporter())],
  instrumentations: [new HttpInstrumentation()],
});
sdk.start();

// after sdk.start(): the instrumentation patches http when it is loaded
const http = require('http');
const api = require('@opentelemetry/api');

const port = Number(process.argv[2]);
const downstream = Number(process.argv[3]);

function callDownstream(path, res) {
  const server = api.trace.getSpan(api.context.active());
  const req = http.get({ host: '127.0.0.1', port: downstream, path }, (r) => {
    r.resume();
    r.on('end', () => {
      const ctx = server ? server.spanContext() : {};
      const body = JSON.stringify({
        status: r.statusCode,
        sent_traceparent: req.getHeader('traceparent') || null,
        server_trace_id: ctx.traceId || null,
        server_span_id: ctx.spanId || null,
      });
      res.writeHead(200, { 'Content-Type': 'application/json',
                           'Content-Length': Buffer.byteLength(body) });
      res.end(body);
    });
  });
  req.on('error', (e) => {
    res.writeHead(502);
    res.end(String(e));
  });
}

http.createServer((req, res) => {
  const url = new URL(req.url, 'http://localhost');
  if (url.pathname === '/call' && downstream) {
    callDownstream(url.searchParams.get('path') || '/leaf', res);
    return;
  }
  res.writeHead(200, { 'Content-Type': 'text/plain', 'Content-Length': 9 });
  res.end('otel leaf');
}).listen(port, '127.0.0.1');

process.on('SIGTERM', () => sdk.shutdown().finally(() => process.exit(0)));
