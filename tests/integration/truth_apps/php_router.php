<?php
// Middle service of the runtime ground-truth tests: PHP's built-in server (php -S, workers
// forked with PHP_CLI_SERVER_WORKERS) and the http:// stream wrapper as client (protocol in
// node_mid.js). No timer: php -S has no background work.
$leaf = getenv('TRUTH_LEAF_PORT');
$path = parse_url($_SERVER['REQUEST_URI'], PHP_URL_PATH);
$parts = explode('/', $path);
if (count($parts) != 4 || $parts[1] !== 'work' || !in_array($parts[2], ['fwd', 'drop'], true)) {
    http_response_code(404);
    return true;
}
$n = isset($_GET['n']) ? (int)$_GET['n'] : 1;
$pause = isset($_GET['sleep']) ? (int)$_GET['sleep'] : 0;
$headers = [];
if ($parts[2] === 'fwd' && isset($_SERVER['HTTP_TRACEPARENT'])) {
    $headers[] = 'traceparent: ' . $_SERVER['HTTP_TRACEPARENT'];
}
$ctx = stream_context_create(['http' => ['method' => 'GET', 'header' => $headers,
                                         'timeout' => 30, 'ignore_errors' => true]]);
for ($i = 0; $i < $n; $i++) {
    if ($pause > 0 && $i == $n - 1) {
        usleep($pause * 1000);
    }
    if (file_get_contents("http://127.0.0.1:$leaf/leaf/" . $parts[3], false, $ctx) === false) {
        http_response_code(502);
        echo "leaf call failed\n";
        return true;
    }
}
echo "ok\n";
return true;
