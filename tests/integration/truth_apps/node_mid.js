// Middle service of the runtime ground-truth tests: Node.js http server and client.
//   GET /work/<mode>/<id>?n=N&sleep=MS  calls the leaf at /leaf/<id> N times (sleeping MS
//   before the last call, without blocking the loop); mode fwd forwards the incoming
//   traceparent verbatim, drop sends none. A setInterval timer calls /timer/<k> with no
//   traceparent every TIMER_MS, whatever requests are in flight.
'use strict';
const http = require('http');
const [port, leaf, timerMs] = process.argv.slice(2).map(Number);
const agent = new http.Agent({keepAlive: true, maxSockets: 16});

function callLeaf(path, headers) {
  return new Promise((resolve, reject) => {
    const req = http.get({host: '127.0.0.1', port: leaf, path, headers, agent}, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', reject);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

http.createServer(async (req, res) => {
  const u = new URL(req.url, 'http://x');
  const m = u.pathname.match(/^\/work\/(fwd|drop)\/([^/]+)$/);
  if (!m) { res.writeHead(404); res.end(); return; }
  const n = +(u.searchParams.get('n') || 1), pause = +(u.searchParams.get('sleep') || 0);
  const headers = {};
  if (m[1] === 'fwd' && req.headers.traceparent) headers.traceparent = req.headers.traceparent;
  try {
    for (let i = 0; i < n; i++) {
      if (pause && i === n - 1) await sleep(pause);
      await callLeaf(`/leaf/${m[2]}`, headers);
    }
    res.end('ok\n');
  } catch (e) {
    res.writeHead(502); res.end(String(e));
  }
}).listen(port, '127.0.0.1');

let k = 0;
setInterval(() => { callLeaf(`/timer/${++k}`, {}).catch(() => {}); }, timerMs);
