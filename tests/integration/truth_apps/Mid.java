// Middle service of the runtime ground-truth tests: com.sun.net.httpserver with a thread
// pool (protocol in node_mid.js). Requests with ?client=huc call the leaf with
// HttpURLConnection, ?client=jhc with java.net.http.HttpClient (HTTP/1.1). A scheduled
// executor thread calls /timer/<k> every TIMER_MS, alternating the two clients.
import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.HttpURLConnection;
import java.net.InetSocketAddress;
import java.net.URI;
import java.net.URL;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

public class Mid {
    static String leaf;
    static final HttpClient jhc = HttpClient.newBuilder()
            .version(HttpClient.Version.HTTP_1_1)
            .connectTimeout(Duration.ofSeconds(10)).build();

    static int callHuc(String path, String traceparent) throws Exception {
        HttpURLConnection c = (HttpURLConnection) new URL(leaf + path).openConnection();
        c.setConnectTimeout(10000);
        c.setReadTimeout(30000);
        if (traceparent != null) c.setRequestProperty("traceparent", traceparent);
        int code = c.getResponseCode();
        try (InputStream in = c.getInputStream()) { in.readAllBytes(); }
        return code;
    }

    static int callJhc(String path, String traceparent) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create(leaf + path))
                .timeout(Duration.ofSeconds(30)).GET();
        if (traceparent != null) b.header("traceparent", traceparent);
        return jhc.send(b.build(), HttpResponse.BodyHandlers.ofByteArray()).statusCode();
    }

    static Map<String, String> query(String q) {
        Map<String, String> m = new HashMap<>();
        if (q != null)
            for (String kv : q.split("&")) {
                int i = kv.indexOf('=');
                if (i > 0) m.put(kv.substring(0, i), kv.substring(i + 1));
            }
        return m;
    }

    static void work(HttpExchange ex) throws java.io.IOException {
        int code = 200;
        byte[] body = "ok\n".getBytes();
        try {
            String[] parts = ex.getRequestURI().getPath().split("/");
            if (parts.length != 4 || !(parts[2].equals("fwd") || parts[2].equals("drop"))) {
                code = 404;
            } else {
                Map<String, String> q = query(ex.getRequestURI().getRawQuery());
                int n = Integer.parseInt(q.getOrDefault("n", "1"));
                int pause = Integer.parseInt(q.getOrDefault("sleep", "0"));
                boolean useJhc = "jhc".equals(q.get("client"));
                String tp = parts[2].equals("fwd") ? ex.getRequestHeaders().getFirst("traceparent") : null;
                for (int i = 0; i < n; i++) {
                    if (pause > 0 && i == n - 1) Thread.sleep(pause);
                    if (useJhc) callJhc("/leaf/" + parts[3], tp);
                    else callHuc("/leaf/" + parts[3], tp);
                }
            }
        } catch (Exception e) {
            code = 502;
            body = e.toString().getBytes();
        }
        try (InputStream in = ex.getRequestBody()) { in.readAllBytes(); }
        ex.sendResponseHeaders(code, body.length);
        try (OutputStream out = ex.getResponseBody()) { out.write(body); }
    }

    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        leaf = "http://127.0.0.1:" + args[1];
        int timerMs = Integer.parseInt(args[2]);
        HttpServer server = HttpServer.create(new InetSocketAddress("127.0.0.1", port), 128);
        server.createContext("/work/", Mid::work);
        server.setExecutor(Executors.newFixedThreadPool(8));
        ScheduledExecutorService timer = Executors.newSingleThreadScheduledExecutor();
        AtomicInteger k = new AtomicInteger();
        timer.scheduleAtFixedRate(() -> {
            int i = k.incrementAndGet();
            try {
                if (i % 2 == 0) callJhc("/timer/" + i, null);
                else callHuc("/timer/" + i, null);
            } catch (Exception e) {
                // the next tick tries again
            }
        }, timerMs, timerMs, TimeUnit.MILLISECONDS);
        server.start();
    }
}
