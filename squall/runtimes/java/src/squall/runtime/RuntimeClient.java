package squall.runtime;

import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.ByteArrayOutputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;

/**
 * A minimal HTTP/1.1 client of the Lambda Runtime API over one keep-alive socket with
 * TCP_NODELAY: each request is written at once, and a warm round trip costs a few tens of
 * microseconds. A request on a reused connection that finds it closed is sent once more on a
 * new one.
 */
final class RuntimeClient {
    private static final String BASE = "/2018-06-01/runtime";
    private static final String USER_AGENT = "aws-lambda-java/" + System.getProperty("java.version") + " squall";

    private final String host;
    private final int port;
    private final String authority;
    private Socket socket;
    private InputStream in;
    private OutputStream out;
    private byte[] lineBuf = new byte[1024];
    private Thread connector;
    private IOException connectError;

    static final class Response {
        final int status;
        final Map<String, String> headers; // lower-case names
        final byte[] body;

        Response(int status, Map<String, String> headers, byte[] body) {
            this.status = status;
            this.headers = headers;
            this.body = body;
        }

        String header(String lowerName) {
            return headers.get(lowerName);
        }
    }

    RuntimeClient(String address) {
        String a = address.trim();
        int colon = a.lastIndexOf(':');
        if (colon < 0 || a.endsWith("]")) {
            host = strip(a);
            port = 80;
        } else {
            host = strip(a.substring(0, colon));
            port = Integer.parseInt(a.substring(colon + 1));
        }
        authority = a;
    }

    private static String strip(String h) {
        return h.startsWith("[") && h.endsWith("]") ? h.substring(1, h.length() - 1) : h;
    }

    Response next() throws IOException {
        return exchange("GET", BASE + "/invocation/next", null, null, null, 0);
    }

    Response postResponse(String requestId, byte[] body, int length) throws IOException {
        return exchange("POST", BASE + "/invocation/" + requestId + "/response", "application/json", null, body, length);
    }

    Response postError(String requestId, String errorType, byte[] body) throws IOException {
        return exchange("POST", BASE + "/invocation/" + requestId + "/error", "application/json", errorType, body,
                body.length);
    }

    Response postInitError(String errorType, byte[] body) throws IOException {
        return exchange("POST", BASE + "/init/error", "application/json", errorType, body, body.length);
    }

    /**
     * Open the connection on another thread: the JDK's first socket costs ~25 ms of class
     * loading and setup, which then overlaps with loading the handler.
     */
    void preconnect() {
        Thread t = new Thread(new Runnable() {
            @Override
            public void run() {
                try {
                    connect();
                } catch (IOException e) {
                    connectError = e;
                }
            }
        }, "squall-runtime-connect");
        t.setDaemon(true);
        connector = t;
        t.start();
    }

    private void awaitConnector() {
        Thread t = connector;
        if (t == null) {
            return;
        }
        connector = null;
        boolean interrupted = false;
        while (true) {
            try {
                t.join();
                break;
            } catch (InterruptedException e) {
                interrupted = true;
            }
        }
        if (interrupted) {
            Thread.currentThread().interrupt();
        }
        if (connectError != null) { // tried again, and reported, by the first request
            connectError = null;
            close();
        }
    }

    private void connect() throws IOException {
        Socket s = new Socket(java.net.Proxy.NO_PROXY);
        s.setTcpNoDelay(true);
        s.setKeepAlive(true);
        s.connect(new InetSocketAddress(host, port));
        socket = s;
        in = new BufferedInputStream(s.getInputStream(), 65536);
        out = new BufferedOutputStream(s.getOutputStream(), 65536);
    }

    private void close() {
        Socket s = socket;
        socket = null;
        if (s != null) {
            try {
                s.close();
            } catch (IOException e) {
                // gone already
            }
        }
    }

    private Response exchange(String method, String path, String contentType, String errorType, byte[] body, int length)
            throws IOException {
        StringBuilder head = new StringBuilder(256);
        head.append(method).append(' ').append(path).append(" HTTP/1.1\r\nHost: ").append(authority)
                .append("\r\nUser-Agent: ").append(USER_AGENT).append("\r\n");
        if (body != null) {
            head.append("Content-Type: ").append(contentType).append("\r\nContent-Length: ").append(length).append("\r\n");
            if (errorType != null) {
                head.append("Lambda-Runtime-Function-Error-Type: ").append(errorType).append("\r\n");
            }
        }
        head.append("\r\n");
        byte[] headBytes = head.toString().getBytes(StandardCharsets.UTF_8);
        awaitConnector();
        for (int attempt = 0; ; attempt++) {
            boolean fresh = socket == null;
            if (fresh) {
                connect();
            }
            try {
                out.write(headBytes);
                if (body != null && length > 0) {
                    out.write(body, 0, length);
                }
                out.flush();
                Response r = read();
                if ("close".equalsIgnoreCase(r.header("connection"))) {
                    close();
                }
                return r;
            } catch (IOException e) {
                close();
                if (fresh || attempt > 0) {
                    throw e;
                }
            }
        }
    }

    private String line() throws IOException {
        int len = 0;
        while (true) {
            int b = in.read();
            if (b < 0) {
                throw new EOFException("the Runtime API closed the connection");
            }
            if (b == '\n') {
                break;
            }
            if (len == lineBuf.length) {
                lineBuf = java.util.Arrays.copyOf(lineBuf, len * 2);
            }
            lineBuf[len++] = (byte) b;
        }
        if (len > 0 && lineBuf[len - 1] == '\r') {
            len--;
        }
        return new String(lineBuf, 0, len, StandardCharsets.UTF_8);
    }

    private Response read() throws IOException {
        String status = line();
        int sp = status.indexOf(' ');
        if (!status.startsWith("HTTP/") || sp < 0) {
            throw new IOException("unexpected response from the Runtime API: " + status);
        }
        int end = status.indexOf(' ', sp + 1);
        int code = Integer.parseInt(status.substring(sp + 1, end < 0 ? status.length() : end));
        Map<String, String> headers = new HashMap<String, String>();
        while (true) {
            String h = line();
            if (h.isEmpty()) {
                break;
            }
            int colon = h.indexOf(':');
            if (colon > 0) {
                headers.put(h.substring(0, colon).trim().toLowerCase(java.util.Locale.ROOT), h.substring(colon + 1).trim());
            }
        }
        byte[] body;
        String length = headers.get("content-length");
        String encoding = headers.get("transfer-encoding");
        if (encoding != null && encoding.toLowerCase(java.util.Locale.ROOT).contains("chunked")) {
            body = chunked();
        } else if (length != null) {
            body = exactly(Integer.parseInt(length));
        } else if (code == 204 || code == 304) {
            body = new byte[0];
        } else {
            body = in.readAllBytes();
            headers.put("connection", "close");
        }
        return new Response(code, headers, body);
    }

    private byte[] exactly(int n) throws IOException {
        byte[] b = new byte[n];
        int off = 0;
        while (off < n) {
            int r = in.read(b, off, n - off);
            if (r < 0) {
                throw new EOFException("the Runtime API closed the connection in a body");
            }
            off += r;
        }
        return b;
    }

    private byte[] chunked() throws IOException {
        ByteArrayOutputStream all = new ByteArrayOutputStream();
        while (true) {
            String size = line();
            int semi = size.indexOf(';');
            int n = Integer.parseInt((semi < 0 ? size : size.substring(0, semi)).trim(), 16);
            if (n == 0) {
                while (!line().isEmpty()) {
                    // trailers
                }
                return all.toByteArray();
            }
            all.write(exactly(n));
            line();
        }
    }
}
