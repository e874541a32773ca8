#!/usr/bin/env node
// SPDX-License-Identifier: BSD-2-Clause
//
// A minimal OTLP/gRPC trace receiver for tests, written on node's own http2 module (h2c),
// with no gRPC library: it takes the unary call
// /opentelemetry.proto.collector.trace.v1.TraceService/Export, strips the 5-byte gRPC
// message prefix (gunzipping when the compressed flag and grpc-encoding: gzip say so),
// writes the raw ExportTraceServiceRequest to OUT/request-N.bin and the request headers to
// OUT/request-N.json, and answers with an empty ExportTraceServiceResponse and grpc-status 0
// in real trailers.
//
//   node otlp_grpc_receiver.js --out DIR [--port 0] [--fail-first N] [--fail-status CODE]
//        [--reject N] [--tls DIR [--mtls]]
//
// --fail-first N answers the first N calls with a trailers-only grpc-status CODE (default
// 14, UNAVAILABLE); --reject N answers with partial_success.rejected_spans = N.
// --tls DIR serves HTTP/2 over TLS with DIR/server.pem and DIR/server.key; --mtls also
// requires a client certificate signed by DIR/ca.pem.
// Prints "listening on port P" on stdout once ready.
'use strict';

const fs = require('fs');
const http2 = require('http2');
const path = require('path');
const zlib = require('zlib');

const EXPORT_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
// the metrics service too (test_metrics.py): its response has the same fields and numbers
const METRICS_PATH = '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export';

function parseArgs(argv) {
	const opts = { port: 0, out: null, failFirst: 0, failStatus: 14, reject: 0, tls: null,
		       mtls: false };
	for (let i = 2; i < argv.length; i += 2) {
		const v = argv[i + 1];
		switch (argv[i]) {
		case '--mtls': opts.mtls = true; i--; break;
		case '--tls': opts.tls = v; break;
		case '--port': opts.port = Number(v); break;
		case '--out': opts.out = v; break;
		case '--fail-first': opts.failFirst = Number(v); break;
		case '--fail-status': opts.failStatus = Number(v); break;
		case '--reject': opts.reject = Number(v); break;
		default:
			console.error(`unknown option ${argv[i]}`);
			process.exit(2);
		}
	}
	if (!opts.out) {
		console.error('--out DIR is required');
		process.exit(2);
	}
	return opts;
}

function varint(n) {
	const out = [];
	while (n >= 0x80) {
		out.push((n & 0x7f) | 0x80);
		n = Math.floor(n / 128);
	}
	out.push(n);
	return Buffer.from(out);
}

// ExportTraceServiceResponse { partial_success (1) { rejected_spans (1) error_message (2) } }
function response(reject) {
	if (!reject)
		return Buffer.alloc(0);
	const msg = Buffer.from('rejected by test');
	const inner = Buffer.concat([Buffer.from([0x08]), varint(reject), Buffer.from([0x12]),
				     varint(msg.length), msg]);
	return Buffer.concat([Buffer.from([0x0a]), varint(inner.length), inner]);
}

function frame(msg) {
	const hdr = Buffer.alloc(5);
	hdr[0] = 0;
	hdr.writeUInt32BE(msg.length, 1);
	return Buffer.concat([hdr, msg]);
}

function trailersOnly(stream, status, message) {
	stream.respond({ ':status': 200, 'content-type': 'application/grpc',
			 'grpc-status': String(status), 'grpc-message': encodeURIComponent(message) },
		       { endStream: true });
}

const opts = parseArgs(process.argv);
fs.mkdirSync(opts.out, { recursive: true });
let calls = 0;

function createServer() {
	if (!opts.tls)
		return http2.createServer();
	const file = (name) => fs.readFileSync(path.join(opts.tls, name));
	return http2.createSecureServer({
		key: file('server.key'), cert: file('server.pem'), ca: file('ca.pem'),
		requestCert: opts.mtls, rejectUnauthorized: opts.mtls,
	});
}

const server = createServer();
server.on('stream', (stream, headers) => {
	const chunks = [];
	stream.on('data', (c) => chunks.push(c));
	stream.on('end', () => {
		if (headers[':path'] !== EXPORT_PATH && headers[':path'] !== METRICS_PATH)
			return trailersOnly(stream, 12, `unknown method ${headers[':path']}`);
		if (!String(headers['content-type'] || '').startsWith('application/grpc'))
			return trailersOnly(stream, 3, 'content-type is not application/grpc');
		const body = Buffer.concat(chunks);
		if (body.length < 5 || body.readUInt32BE(1) !== body.length - 5)
			return trailersOnly(stream, 13, 'bad gRPC message framing');
		let msg = body.subarray(5);
		if (body[0] === 1) {
			if (headers['grpc-encoding'] !== 'gzip')
				return trailersOnly(stream, 12, 'compressed without grpc-encoding gzip');
			try {
				msg = zlib.gunzipSync(msg);
			} catch (e) {
				return trailersOnly(stream, 13, `bad gzip: ${e.message}`);
			}
		}
		calls++;
		if (calls <= opts.failFirst)
			return trailersOnly(stream, opts.failStatus, 'injected failure');
		const base = path.join(opts.out, `request-${calls}`);
		fs.writeFileSync(`${base}.bin`, msg);
		const peer = stream.session.socket.getPeerCertificate ?
			stream.session.socket.getPeerCertificate() : null;
		fs.writeFileSync(`${base}.json`, JSON.stringify({
			headers, compressed: body[0] === 1, session: stream.session.__id,
			client_cn: peer && peer.subject ? peer.subject.CN : null,
		}));
		stream.respond({ ':status': 200, 'content-type': 'application/grpc' },
			       { waitForTrailers: true });
		stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
		stream.end(frame(response(opts.reject)));
	});
});
let sessions = 0;
server.on('session', (session) => { session.__id = ++sessions; });
server.on('sessionError', () => {});
server.listen(opts.port, '127.0.0.1', () => {
	console.log(`listening on port ${server.address().port}`);
});
for (const sig of ['SIGTERM', 'SIGINT'])
	process.on(sig, () => process.exit(0));
