/*
 * Replication probes, the Redis fixed-rate load and the switchover loads for
 * the replication, cluster and switchover suites of the benchmark
 * (bench/probe.py compiles and runs it).
 *
 *   cc -O2 -o repl_probe repl_probe.c -lnghttp2
 *
 *   repl_probe erdtree-lag MASTER_PORT SLAVE_PORTS SAMPLES GAP_MS PREFIX [LIMIT_S]
 *   repl_probe redis-lag   MASTER_PORT SLAVE_PORTS SAMPLES GAP_MS PREFIX [LIMIT_S]
 *       SLAVE_PORTS: comma-separated; it and MASTER_PORT may be HOST:PORT (IPv4).
 *       Sample i writes key PREFIX-i (a 100-byte
 *       value naming i) on the master, and from the moment the answer arrives
 *       reads it on slave i % n (Get / GET), back to back, until the slave
 *       returns that value; then sleeps GAP_MS ± 50 % (uniform, so that samples
 *       do not fall in step with anything periodic in the servers, such as a
 *       once-a-second fsync). One line per sample on stdout:
 *         i slave lag_us polls set_rtt_us get_rtt_us at_us
 *       lag_us: master's answer -> arrival of the first read answer that held
 *       the value (so it includes up to one read round trip, get_rtt_us, the
 *       round trip of that last read); at_us: when the master answered, µs since the
 *       first sample started (to line lags up with anything periodic). A
 *       sample not seen within LIMIT_S
 *       (default 10) seconds stops the probe with an error.
 *
 *   repl_probe erdtree-catchup SLAVE_PORT KEY VALUE TIMEOUT_S
 *   repl_probe redis-catchup   REPLICA_PORT KEY VALUE TIMEOUT_S
 *       Dials the node (retrying while it does not listen yet) and reads KEY
 *       (Get / GET) every 5 ms until it returns VALUE; prints that instant,
 *       CLOCK_REALTIME in µs. Answers that are errors (a slave not serving
 *       yet, Redis -LOADING) count as not yet. A slave applies its master's
 *       entries in LSN order, so with KEY the last key written, every entry is
 *       readable by then.
 *
 *   repl_probe redis-load PORT RATE SECONDS CONNECTIONS KEY
 *       SET KEY to a 100-byte value RATE times a second in all, for SECONDS,
 *       over CONNECTIONS connections (round robin, pipelined, at most 32
 *       unanswered per connection, like h2load's m32; writes due while a
 *       connection is at that bound are sent when it has room). Writes go out
 *       in ticks of about 1 ms, what is due by then. Prints
 *       "sent answered seconds" at the end; every answer must be +OK.
 *
 *   repl_probe erdtree-switchover MASTER TO RATE SECONDS SWITCH_AT_S PREFIX OUT
 *   repl_probe redis-switchover   MASTER TO RATE SECONDS SWITCH_AT_S PREFIX OUT
 *       Writes keys PREFIX-0 ... PREFIX-(RATE x SECONDS - 1), each once with a
 *       100-byte value naming it, RATE a second over 4 connections to the
 *       master (multiplexed / pipelined, at most 1024 unanswered on each; what
 *       is due goes out in ticks of about 1 ms), and SWITCH_AT_S into it asks
 *       MASTER to hand over to TO: Admin/Failover{to: TO, timeout_ms: 5000} on
 *       a connection of its own, or FAILOVER TO HOST PORT TIMEOUT 5000. A
 *       refused write (UNAVAILABLE or FAILED_PRECONDITION; a Redis error) is
 *       sent again to the master the refusal names (its erdtree-master
 *       trailer; for -READONLY, master_host:master_port in the INFO
 *       replication of the node that refused), and every write after it too;
 *       a write refused twice, or by a refusal naming no master, waits 1 ms
 *       before each retry. Once every write is acknowledged, each is read
 *       back from the node the writes went to last (Get / GET). OUT gets a
 *       line per write (µs since the start, -1 for never; sent: its first
 *       send; refused: its first refusal; lsn and epoch from the SetResponse,
 *       0 for Redis):
 *         id due sent refused acked first_port acked_port attempts lsn epoch
 *       and stdout
 *         switchover SENT ANSWERED STATUS ANSWER  (new master, epoch, last LSN; or the error)
 *         writes N ACKED REFUSALS UNNAMED HELD_BACK LAST_PORT
 *         readback CHECKED LOST WRONG
 *         unhinted MESSAGE                         (the first refusal naming no master, if any)
 *         bounced FIRST, refused again by NODE: MESSAGE   (the first write refused twice, if any)
 *         named PORT COUNT                         (Erdtree: refusals whose erdtree-master named PORT)
 *       The probe dies if writes are unanswered 10 s after the last was due.
 *
 *   repl_probe erdtree-failover MASTER PID RATE SECONDS KILL_AT_S PREFIX OUT PEERS
 *   repl_probe redis-failover   MASTER PID RATE SECONDS KILL_AT_S PREFIX OUT SENTINELS
 *       The switchover load, but KILL_AT_S into it the probe kills the master
 *       (process PID) with SIGKILL instead of asking it to hand over. A
 *       connection the dead master closes is not an error: the writes in
 *       flight on it are sent again (their outcome is unknown, and each key
 *       is written once with the same value), and that node is never dialled
 *       again nor followed when a refusal names it. While the probe knows no
 *       live master (the master died, or a refusal named none or a dead one)
 *       it sends nothing and every FAILOVER_POLL_US asks, blocking, for the
 *       master: Erdtree, Admin/Status on each of PEERS (comma-separated, the
 *       other nodes) until one says ROLE_MASTER; Redis, SENTINEL
 *       get-master-addr-by-name bench on each of SENTINELS until one names a
 *       live node. OUT and stdout as for the switchover ("switchover KILLED_AT
 *       KILLED_AT 0 killed PID"), and one more line:
 *         failover DROPPED POLLS       (writes in flight on a closed connection; master look-ups)
 *
 * Nodes are on loopback unless given as HOST:PORT (IPv4; every node on its own
 * port then), one connection per node, blocking I/O with TCP_NODELAY for the probes (the probe sleeps in recv while a request is in
 * flight, so it takes little CPU from the servers on a 2-core machine).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define VALUE_BYTES 100

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "repl_probe: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    exit(1);
}

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_us(int64_t us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {}
}

/* The host of each port given as HOST:PORT (the cluster suite's nodes in network
 * namespaces, on ports of their own); loopback for a bare port. */
static struct in_addr endpoint_host[65536];

static int parse_endpoint(const char *text) {
    const char *colon = strrchr(text, ':');
    int port = atoi(colon ? colon + 1 : text);
    if (port <= 0 || port > 65535) die("'%s' is not a port or HOST:PORT", text);
    if (colon) {
        char host[64];
        snprintf(host, sizeof host, "%.*s", (int)(colon - text), text);
        if (inet_pton(AF_INET, host, &endpoint_host[port]) != 1) die("'%s' is not an IPv4 address", host);
    }
    return port;
}

static const char *endpoint_name(int port) {
    static char names[4][64];
    static int next;
    char *name = names[next++ % 4];
    struct in_addr host = endpoint_host[port];
    if (host.s_addr == 0) host.s_addr = htonl(INADDR_LOOPBACK);
    snprintf(name, sizeof names[0], "%s:%d", inet_ntoa(host), port);
    return name;
}

static int dial(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket: %s", strerror(errno));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr = endpoint_host[port];
    if (addr.sin_addr.s_addr == 0) addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) die("connect %s: %s", endpoint_name(port), strerror(errno));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* Failover runs: a connection the peer closed (a killed master) is noted, not fatal. */
static int survive_close;

/* Writes everything, waiting for room when the socket is non-blocking; in a failover run,
 * gives up quietly on a connection the peer closed (the read side notices). */
static void write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EAGAIN) {
            struct pollfd room = {fd, POLLOUT, 0};
            poll(&room, 1, 100);
        } else if (survive_close && n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            return;
        } else if (n == 0 || errno != EINTR) {
            die("write: %s", n < 0 ? strerror(errno) : "closed");
        }
    }
}

/* The value of sample i, and of the load: 100 bytes naming it. */
static void make_value(char *out, const char *tag, long i) {
    char head[64];
    int n = snprintf(head, sizeof head, "erdtree-repl-%s-%ld-", tag, i);
    memset(out, 'v', VALUE_BYTES);
    memcpy(out, head, (size_t)n < VALUE_BYTES ? (size_t)n : VALUE_BYTES);
}

/* ---- gRPC over HTTP/2 (libnghttp2): unary calls, any number in flight ------ */

/* One unary call: its framed request, and its answer as it arrives. */
struct call {
    uint8_t req[256];
    size_t req_len, req_off;
    int port, done, grpc_status;
    uint8_t body[256]; /* the response, framed */
    size_t body_len;
    char master[64];   /* a refusal's erdtree-master trailer; "" if none */
    char message[128]; /* its grpc-message */
    long tag;          /* the caller's */
    struct call *next; /* in its connection's list of finished calls */
};

struct h2 {
    int fd, port, inflight, closed; /* closed: by the peer, in a failover run */
    nghttp2_session *session;
    struct call *finished; /* calls finished since the caller last took them */
    struct call one;       /* h2_try_call's */
};

static ssize_t h2_send(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *user) {
    (void)s, (void)flags;
    if (!((struct h2 *)user)->closed) write_all(((struct h2 *)user)->fd, data, len);
    return (ssize_t)len;
}

static void copy_text(char *out, size_t size, const uint8_t *text, size_t len) {
    if (len >= size) len = size - 1;
    memcpy(out, text, len);
    out[len] = 0;
}

static int h2_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *user) {
    (void)flags, (void)user;
    struct call *call = nghttp2_session_get_stream_user_data(s, frame->hd.stream_id);
    if (!call) return 0;
    if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        char text[16];
        copy_text(text, sizeof text, value, valuelen);
        call->grpc_status = atoi(text);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        copy_text(call->message, sizeof call->message, value, valuelen);
    } else if (namelen == 14 && memcmp(name, "erdtree-master", 14) == 0) {
        copy_text(call->master, sizeof call->master, value, valuelen);
    }
    return 0;
}

static int h2_data(nghttp2_session *s, uint8_t flags, int32_t stream, const uint8_t *data, size_t len, void *user) {
    (void)flags, (void)user;
    struct call *call = nghttp2_session_get_stream_user_data(s, stream);
    if (!call) return 0;
    if (call->body_len + len > sizeof call->body) die("a response on %s is larger than expected", endpoint_name(call->port));
    memcpy(call->body + call->body_len, data, len);
    call->body_len += len;
    return 0;
}

static int h2_close(nghttp2_session *s, int32_t stream, uint32_t error, void *user) {
    struct h2 *c = user;
    struct call *call = nghttp2_session_get_stream_user_data(s, stream);
    if (!call) return 0;
    if (error != 0) die("%s reset the stream (HTTP/2 error %u)", endpoint_name(c->port), error);
    call->done = 1;
    call->next = c->finished;
    c->finished = call;
    c->inflight--;
    return 0;
}

static ssize_t h2_read_body(nghttp2_session *s, int32_t stream, uint8_t *buf, size_t len, uint32_t *flags,
                            nghttp2_data_source *source, void *user) {
    (void)s, (void)stream, (void)user;
    struct call *call = source->ptr;
    size_t n = call->req_len - call->req_off;
    if (n > len) n = len;
    memcpy(buf, call->req + call->req_off, n);
    call->req_off += n;
    if (call->req_off == call->req_len) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static void h2_open(struct h2 *c, int port) {
    memset(c, 0, sizeof *c);
    c->port = port;
    c->fd = dial(port);
    nghttp2_session_callbacks *cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_send_callback(cb, h2_send);
    nghttp2_session_callbacks_set_on_header_callback(cb, h2_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, h2_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, h2_close);
    if (nghttp2_session_client_new(&c->session, cb, c) != 0) die("nghttp2_session_client_new failed");
    nghttp2_session_callbacks_del(cb);
    nghttp2_settings_entry window = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20};
    nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, &window, 1);
}

#define HDR(n, v) {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, strlen(v), NGHTTP2_NV_FLAG_NONE}

/* Starts a unary call of the message on c; it goes out with the next h2_flush. */
static void h2_submit(struct h2 *c, struct call *call, const char *path, const uint8_t *msg, size_t len) {
    if (len + 5 > sizeof call->req) die("request too large");
    call->req[0] = 0;
    call->req[1] = (uint8_t)(len >> 24), call->req[2] = (uint8_t)(len >> 16), call->req[3] = (uint8_t)(len >> 8),
    call->req[4] = (uint8_t)len;
    if (len > 0) memcpy(call->req + 5, msg, len);
    call->req_len = len + 5, call->req_off = 0;
    call->port = c->port, call->done = 0, call->grpc_status = -1, call->body_len = 0;
    call->master[0] = call->message[0] = 0;
    char authority[32];
    snprintf(authority, sizeof authority, "%s", endpoint_name(c->port));
    nghttp2_nv headers[] = {
        HDR(":method", "POST"), HDR(":scheme", "http"), HDR(":path", path), HDR(":authority", authority),
        HDR("content-type", "application/grpc"), HDR("te", "trailers"),
    };
    nghttp2_data_provider provider = {.source.ptr = call, .read_callback = h2_read_body};
    int32_t stream = nghttp2_submit_request(c->session, NULL, headers, sizeof headers / sizeof headers[0], &provider,
                                            call);
    if (stream < 0) die("nghttp2_submit_request: %s", nghttp2_strerror(stream));
    c->inflight++;
}

static void h2_flush(struct h2 *c) {
    int rv = nghttp2_session_send(c->session);
    if (rv != 0) die("nghttp2_session_send: %s", nghttp2_strerror(rv));
}

/* Reads what c has (blocking until something) and hands it to nghttp2. */
static void h2_receive(struct h2 *c) {
    uint8_t buf[16384];
    ssize_t n = read(c->fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) return;
    if (n <= 0 && survive_close) {
        c->closed = 1;
        return;
    }
    if (n <= 0) die("%s closed the connection", endpoint_name(c->port));
    ssize_t used = nghttp2_session_mem_recv(c->session, buf, (size_t)n);
    if (used < 0) die("nghttp2_session_mem_recv: %s", nghttp2_strerror((int)used));
}

/* The response message of a call answered with status 0 (without its 5-byte frame header). */
static const uint8_t *call_message(const struct call *call, size_t *len) {
    if (call->body_len < 5) die("a call on %s answered no message", endpoint_name(call->port));
    *len = call->body_len - 5;
    return call->body + 5;
}

/* One unary call, waited for: its grpc-status (-1 for none); c->one holds the answer. */
static int h2_try_call(struct h2 *c, const char *path, const uint8_t *msg, size_t len) {
    h2_submit(c, &c->one, path, msg, len);
    while (h2_flush(c), !c->one.done && !c->closed) h2_receive(c);
    h2_flush(c); /* window updates, acks */
    c->finished = NULL;
    return c->one.grpc_status;
}

static void h2_call(struct h2 *c, const char *path, const uint8_t *msg, size_t len) {
    int status = h2_try_call(c, path, msg, len);
    if (status != 0) die("%s on %s answered grpc-status %d", path, endpoint_name(c->port), status);
}

/* Sends what is queued on the connections, waits up to timeout_ms for any of them to answer,
 * and returns the calls that finished (a list through next). */
static struct call *h2_poll(struct h2 **conns, int n, int timeout_ms) {
    struct pollfd p[64];
    if (n > 64) die("too many connections");
    for (int i = 0; i < n; i++) {
        h2_flush(conns[i]);
        p[i] = (struct pollfd){conns[i]->fd, POLLIN, 0};
    }
    if (poll(p, (nfds_t)n, timeout_ms) < 0 && errno != EINTR) die("poll: %s", strerror(errno));
    struct call *finished = NULL;
    for (int i = 0; i < n; i++) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)) || conns[i]->closed) continue;
        h2_receive(conns[i]);
        h2_flush(conns[i]); /* window updates, acks */
        while (conns[i]->finished) {
            struct call *call = conns[i]->finished;
            conns[i]->finished = call->next;
            call->next = finished;
            finished = call;
        }
    }
    return finished;
}

static size_t put_varint(uint8_t *out, uint64_t v) {
    size_t n = 0;
    do {
        out[n] = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v) out[n] |= 0x80;
        n++;
    } while (v);
    return n;
}

static size_t put_bytes(uint8_t *out, int field, const void *data, size_t len) {
    size_t n = put_varint(out, (uint64_t)field << 3 | 2);
    n += put_varint(out + n, len);
    memcpy(out + n, data, len);
    return n + len;
}

static int get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    *v = 0;
    for (int shift = 0; *p < end && shift < 64; shift += 7) {
        uint8_t b = *(*p)++;
        *v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) return 1;
    }
    return 0;
}

/* Fields 1..7 of a message: varints in v, length-delimited ones in p and n. */
struct fields {
    uint64_t v[8];
    const uint8_t *p[8];
    uint64_t n[8];
};

static struct fields decode(const char *what, const uint8_t *msg, size_t len) {
    struct fields f = {0};
    const uint8_t *p = msg, *end = msg + len;
    while (p < end) {
        uint64_t tag, v;
        if (!get_varint(&p, end, &tag)) die("%s does not decode", what);
        int field = tag >> 3 < 8 ? (int)(tag >> 3) : 0;
        switch (tag & 7) {
        case 0:
            if (!get_varint(&p, end, &v)) die("%s does not decode", what);
            f.v[field] = v;
            break;
        case 2:
            if (!get_varint(&p, end, &v) || v > (uint64_t)(end - p)) die("%s does not decode", what);
            f.p[field] = p, f.n[field] = v;
            p += v;
            break;
        default: die("%s has an unexpected wire type %llu", what, (unsigned long long)(tag & 7));
        }
    }
    return f;
}

/* GetResponse{1: value bytes, 2: found bool, 3: lsn, 4: expires_at_ms} of a call answered
 * with status 0: 0 not found, 1 found with value, -1 found with another value. */
static int get_found(const struct call *call, const char *value) {
    size_t len;
    const uint8_t *msg = call_message(call, &len);
    struct fields f = decode("GetResponse", msg, len);
    if (!f.v[2]) return 0;
    return f.n[1] == VALUE_BYTES && memcmp(f.p[1], value, VALUE_BYTES) == 0 ? 1 : -1;
}

/* ---- RESP ------------------------------------------------------------------- */

struct resp {
    int fd, port, closed; /* closed: by the peer, in a failover run */
    char buf[65536];
    size_t len, off;
};

static void resp_open(struct resp *c, int port) {
    memset(c, 0, sizeof *c);
    c->port = port;
    c->fd = dial(port);
}

/* Reads what the connection has (on a blocking one, waiting for something); 0 if a
 * non-blocking one had nothing. */
static int resp_fill(struct resp *c) {
    if (c->off > 0) {
        memmove(c->buf, c->buf + c->off, c->len - c->off);
        c->len -= c->off, c->off = 0;
    }
    ssize_t n = read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) return 0;
    if (n <= 0 && survive_close) {
        c->closed = 1;
        return 0;
    }
    if (n <= 0) die("redis %s closed the connection", endpoint_name(c->port));
    c->len += (size_t)n;
    return 1;
}

/* The next reply line (without CRLF) if a whole one is buffered, else NULL. */
static char *resp_line(struct resp *c, size_t *len) {
    char *start = c->buf + c->off;
    char *crlf = memmem(start, c->len - c->off, "\r\n", 2);
    if (!crlf) return NULL;
    *len = (size_t)(crlf - start);
    c->off += *len + 2;
    return start;
}

/* Reads one reply: 1 for +OK or a bulk equal to want, 0 for a nil bulk, -1 for another bulk. */
static int resp_reply(struct resp *c, const char *want) {
    size_t len;
    char *line;
    while (!(line = resp_line(c, &len))) resp_fill(c);
    if (len == 3 && memcmp(line, "+OK", 3) == 0) return 1;
    if (len == 3 && memcmp(line, "$-1", 3) == 0) return 0;
    if (line[0] == '$') {
        long n = strtol(line + 1, NULL, 10);
        while (c->len - c->off < (size_t)n + 2) resp_fill(c);
        int same = want && n == VALUE_BYTES && memcmp(c->buf + c->off, want, VALUE_BYTES) == 0;
        c->off += (size_t)n + 2;
        return same ? 1 : -1;
    }
    die("redis %s answered '%.*s'", endpoint_name(c->port), (int)len, line);
    return -1;
}

/* resp_reply, except that an error reply (-LOADING ...) counts as a nil. */
static int resp_reply_or_error(struct resp *c, const char *want) {
    size_t len;
    while (!memmem(c->buf + c->off, c->len - c->off, "\r\n", 2)) resp_fill(c);
    if (c->buf[c->off] == '-') {
        resp_line(c, &len);
        return 0;
    }
    return resp_reply(c, want);
}

static size_t resp_set(char *out, const char *key, const char *value) {
    size_t k = strlen(key);
    int n = sprintf(out, "*3\r\n$3\r\nSET\r\n$%zu\r\n%s\r\n$%d\r\n", k, key, VALUE_BYTES);
    memcpy(out + n, value, VALUE_BYTES);
    memcpy(out + n + VALUE_BYTES, "\r\n", 2);
    return (size_t)n + VALUE_BYTES + 2;
}

/* A command of string arguments in RESP; its length. */
static size_t resp_command(char *out, int nargs, const char *const *args) {
    size_t n = (size_t)sprintf(out, "*%d\r\n", nargs);
    for (int i = 0; i < nargs; i++) n += (size_t)sprintf(out + n, "$%zu\r\n%s\r\n", strlen(args[i]), args[i]);
    return n;
}

/* ---- probes ------------------------------------------------------------------ */

static int parse_ports(const char *list, int *ports, int max) {
    int n = 0;
    char *copy = strdup(list), *save = NULL;
    for (char *t = strtok_r(copy, ",", &save); t && n < max; t = strtok_r(NULL, ",", &save)) ports[n++] = parse_endpoint(t);
    free(copy);
    if (n == 0) die("no slave ports in '%s'", list);
    return n;
}

static int lag(int erdtree, int argc, char **argv) {
    if (argc != 7 && argc != 8)
        die("usage: %s-lag MASTER_PORT SLAVE_PORTS SAMPLES GAP_MS PREFIX [LIMIT_S]", erdtree ? "erdtree" : "redis");
    int64_t limit_us = (argc == 8 ? atol(argv[7]) : 10) * 1000000LL;
    srand48((long)now_us());
    int master_port = parse_endpoint(argv[2]), slave_ports[8];
    int slaves = parse_ports(argv[3], slave_ports, 8);
    long samples = atol(argv[4]);
    int64_t gap_us = atol(argv[5]) * 1000LL;
    const char *prefix = argv[6];
    struct h2 h2_master, h2_slave[8];
    struct resp r_master, r_slave[8];
    if (erdtree) {
        h2_open(&h2_master, master_port);
        for (int s = 0; s < slaves; s++) h2_open(&h2_slave[s], slave_ports[s]);
    } else {
        resp_open(&r_master, master_port);
        for (int s = 0; s < slaves; s++) resp_open(&r_slave[s], slave_ports[s]);
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    int64_t start = now_us();
    for (long i = 0; i < samples; i++) {
        int s = (int)(i % slaves);
        char key[128], value[VALUE_BYTES];
        snprintf(key, sizeof key, "%s-%ld", prefix, i);
        make_value(value, prefix, i);
        uint8_t set_msg[512], get_msg[256];
        size_t set_len = put_bytes(set_msg, 1, key, strlen(key));
        set_len += put_bytes(set_msg + set_len, 2, value, VALUE_BYTES);
        size_t get_len = put_bytes(get_msg, 1, key, strlen(key));
        char resp_cmd[512], get_cmd[256];
        size_t resp_len = resp_set(resp_cmd, key, value);
        int get_cmd_len = sprintf(get_cmd, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n", strlen(key), key);

        int64_t t_send = now_us();
        if (erdtree) {
            h2_call(&h2_master, "/erdtree.v1.KVStore/Set", set_msg, set_len);
        } else {
            write_all(r_master.fd, resp_cmd, resp_len);
            if (resp_reply(&r_master, NULL) != 1) die("SET on the master did not answer +OK");
        }
        int64_t t_answer = now_us(), t_get = 0, t_seen = 0;
        long polls = 0;
        for (;;) {
            t_get = now_us();
            int seen;
            if (erdtree) {
                h2_call(&h2_slave[s], "/erdtree.v1.KVStore/Get", get_msg, get_len);
                seen = get_found(&h2_slave[s].one, value);
            } else {
                write_all(r_slave[s].fd, get_cmd, (size_t)get_cmd_len);
                seen = resp_reply(&r_slave[s], value);
            }
            if (seen < 0) die("a follower returned another value for a probe key");
            polls++;
            t_seen = now_us();
            if (seen) break;
            if (t_seen - t_answer > limit_us)
                die("sample %ld (%s) not readable on slave %s %lld ms after the master answered", i, key,
                    endpoint_name(slave_ports[s]), (long long)((t_seen - t_answer) / 1000));
        }
        printf("%ld %d %lld %ld %lld %lld %lld\n", i, s, (long long)(t_seen - t_answer), polls,
               (long long)(t_answer - t_send), (long long)(t_seen - t_get), (long long)(t_answer - start));
        sleep_us(gap_us / 2 + (int64_t)(drand48() * (double)gap_us));
    }
    return 0;
}

/* ---- catch-up ------------------------------------------------------------------- */

static int64_t wall_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Waits until the port accepts a connection; dies after the deadline. */
static void wait_listening(int port, int64_t deadline) {
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        int ok = connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
        close(fd);
        if (ok) return;
        if (now_us() > deadline) die("%s did not listen in time", endpoint_name(port));
        sleep_us(2000);
    }
}

static int catchup(int erdtree, int argc, char **argv) {
    if (argc != 6) die("usage: %s-catchup PORT KEY VALUE TIMEOUT_S", erdtree ? "erdtree" : "redis");
    int port = atoi(argv[2]);
    const char *key = argv[3], *value = argv[4];
    if (strlen(value) != VALUE_BYTES) die("catch-up: the value must be %d bytes", VALUE_BYTES);
    int64_t deadline = now_us() + atol(argv[5]) * 1000000LL;
    wait_listening(port, deadline);
    struct h2 h;
    struct resp r;
    uint8_t get_msg[256];
    size_t get_len = put_bytes(get_msg, 1, key, strlen(key));
    char get_cmd[256];
    int get_cmd_len = snprintf(get_cmd, sizeof get_cmd, "*2\r\n$3\r\nGET\r\n$%zu\r\n%s\r\n", strlen(key), key);
    if (erdtree) h2_open(&h, port);
    else resp_open(&r, port);
    for (;;) {
        int seen;
        if (erdtree) {
            seen = h2_try_call(&h, "/erdtree.v1.KVStore/Get", get_msg, get_len) == 0 ? get_found(&h.one, value) : 0;
        } else {
            write_all(r.fd, get_cmd, (size_t)get_cmd_len);
            seen = resp_reply_or_error(&r, value);
        }
        if (seen < 0) die("%s on %s holds another value", key, endpoint_name(port));
        if (seen) {
            printf("%lld\n", (long long)wall_us());
            return 0;
        }
        if (now_us() > deadline) die("%s not readable on %s after %s s", key, endpoint_name(port), argv[5]);
        sleep_us(5000);
    }
}

/* ---- Redis fixed-rate load ------------------------------------------------------ */

#define LOAD_WINDOW 32

static int redis_load(int argc, char **argv) {
    if (argc != 7) die("usage: redis-load PORT RATE SECONDS CONNECTIONS KEY");
    int port = atoi(argv[2]), conns = atoi(argv[5]);
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    if (conns < 1 || conns > 64 || rate <= 0 || seconds <= 0) die("redis-load: bad arguments");
    char value[VALUE_BYTES], cmd[512];
    make_value(value, "load", 0);
    size_t cmd_len = resp_set(cmd, argv[6], value);
    struct resp *c = calloc((size_t)conns, sizeof *c);
    long inflight[64] = {0};
    for (int i = 0; i < conns; i++) {
        resp_open(&c[i], port);
        fcntl(c[i].fd, F_SETFL, O_NONBLOCK);
    }
    long sent = 0, answered = 0, due_total = (long)(rate * seconds);
    int next = 0;
    int64_t start = now_us(), end = start + (int64_t)(seconds * 1e6);
    static char out[LOAD_WINDOW * 512];
    for (;;) {
        int64_t now = now_us();
        long due = now >= end ? due_total : (long)((double)(now - start) * rate / 1e6);
        if (due > due_total) due = due_total;
        /* Send what is due, round robin over connections with room. */
        while (sent < due) {
            int tried = 0;
            while (tried < conns && inflight[next] >= LOAD_WINDOW) next = (next + 1) % conns, tried++;
            if (tried == conns) break;
            long batch = due - sent, room = LOAD_WINDOW - inflight[next];
            if (batch > room) batch = room;
            for (long k = 0; k < batch; k++) memcpy(out + k * cmd_len, cmd, cmd_len);
            write_all(c[next].fd, out, (size_t)batch * cmd_len);
            inflight[next] += batch;
            sent += batch;
            next = (next + 1) % conns;
        }
        if (sent >= due_total && answered >= sent) break;
        /* Wait for replies; writes go out in ticks of about 1 ms (never a busy
         * loop: the probe shares 2 cores with the servers). */
        struct pollfd p[64];
        for (int i = 0; i < conns; i++) p[i] = (struct pollfd){c[i].fd, POLLIN, 0};
        int timeout_ms = sent < due_total ? 1 : 100;
        if (poll(p, (nfds_t)conns, timeout_ms) < 0 && errno != EINTR) die("redis-load: poll: %s", strerror(errno));
        for (int i = 0; i < conns; i++) {
            if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR)) || !resp_fill(&c[i])) continue;
            size_t len;
            char *line;
            while ((line = resp_line(&c[i], &len))) {
                if (len != 3 || memcmp(line, "+OK", 3) != 0) die("redis-load: SET answered '%.*s'", (int)len, line);
                inflight[i]--;
                answered++;
            }
        }
        if (now_us() - end > 10000000LL) die("redis-load: %ld SETs unanswered 10 s after the end", sent - answered);
    }
    printf("%ld %ld %.3f\n", sent, answered, (double)(now_us() - start) / 1e6);
    return 0;
}

/* ---- switchover load ------------------------------------------------------------ */

#define SW_CONNS 4         /* connections to each node */
#define SW_WINDOW 1024     /* writes in flight on each */
#define SW_NODES 4
#define SW_BACKOFF_US 1000 /* before each retry of a write refused twice (nodes naming each other) */
#define SW_DRAIN_S 10      /* every write answered by then after the last was due */
#define SW_TIMEOUT_MS 5000 /* the switchover's own wait for its target */
#define FAILOVER_POLL_US 2000 /* between look-ups of the master while none is known */

/* A node's slot in the run's tables, by port. */
static int sw_slot(int *ports, int port) {
    for (int i = 0; i < SW_NODES; i++) {
        if (ports[i] == port) return i;
        if (ports[i] == 0) return ports[i] = port, i;
    }
    die("more than %d nodes named", SW_NODES);
    return -1;
}

/* One write of a switchover run; times in µs since the start, -1 for not yet. */
struct sw_write {
    int64_t due, sent, refused, acked, retry_at;
    uint64_t lsn, epoch;
    int first, node, attempts; /* the ports it was first sent to and acked by */
};

/* A switchover run: the writes, where they go now, and the switchover itself. */
struct sw {
    const char *prefix, *out;
    struct sw_write *w;
    long n, next, acked, refusals, unhinted, backoffs;
    int named_ports[SW_NODES]; /* Erdtree's refusals by the master their erdtree-master named */
    long named[SW_NODES];
    long *retries, retry_head, retry_tail; /* writes to send again, in a ring of n + 1 */
    int master, to, target;                 /* ports: the master at the start, the switchover's target, writes' now */
    int64_t start, switch_at, end, switch_sent, switch_answered;
    int switch_status;
    /* Failover runs: the master's pid, the nodes or Sentinels asked for the master, the nodes
     * whose connections closed; target 0 while no live master is known. */
    int failover, pid, peers[SW_NODES], npeers, dead[SW_NODES], ndead;
    long dropped, polls;
    int64_t next_poll;
    char switch_answer[192], unhinted_example[192], bounce_example[256];
};

static struct sw sw_init(int argc, char **argv, int failover) {
    if (!failover && argc != 9) die("usage: %s MASTER TO RATE SECONDS SWITCH_AT_S PREFIX OUT", argv[1]);
    if (failover && argc != 10) die("usage: %s MASTER PID RATE SECONDS KILL_AT_S PREFIX OUT PEERS", argv[1]);
    struct sw sw = {.prefix = argv[7], .out = argv[8], .switch_sent = -1, .switch_answered = -1};
    sw.master = sw.target = parse_endpoint(argv[2]);
    if (failover) {
        sw.failover = survive_close = 1;
        sw.pid = atoi(argv[3]);
        sw.npeers = parse_ports(argv[9], sw.peers, SW_NODES);
        signal(SIGPIPE, SIG_IGN);
    } else {
        sw.to = parse_endpoint(argv[3]);
    }
    double rate = atof(argv[4]), seconds = atof(argv[5]);
    sw.n = (long)(rate * seconds);
    if (sw.n < 1 || atof(argv[6]) >= seconds) die("%s: bad arguments", argv[1]);
    sw.w = calloc((size_t)sw.n, sizeof *sw.w);
    sw.retries = calloc((size_t)sw.n + 1, sizeof *sw.retries);
    for (long i = 0; i < sw.n; i++) {
        sw.w[i] = (struct sw_write){.due = (int64_t)((double)i * 1e6 / rate), .sent = -1, .refused = -1, .acked = -1};
    }
    sw.switch_at = (int64_t)(atof(argv[6]) * 1e6);
    sw.end = (int64_t)(seconds * 1e6);
    return sw;
}

static void sw_key(const struct sw *sw, long id, char *key, char *value) {
    snprintf(key, 128, "%s-%ld", sw->prefix, id);
    make_value(value, sw->prefix, id);
}

/* The write to send now, if any: a retry that is due, else the next new write that is due. */
static long sw_next(struct sw *sw, int64_t now) {
    if (sw->retry_head != sw->retry_tail && sw->w[sw->retries[sw->retry_head]].retry_at <= now) {
        long id = sw->retries[sw->retry_head];
        sw->retry_head = (sw->retry_head + 1) % (sw->n + 1);
        return id;
    }
    return sw->next < sw->n && sw->w[sw->next].due <= now ? sw->next++ : -1;
}

static void sw_sent(struct sw *sw, long id, int port, int64_t now) {
    struct sw_write *w = &sw->w[id];
    if (w->sent < 0) w->sent = now, w->first = port;
    w->attempts++;
}

static void sw_ack(struct sw *sw, long id, int port, int64_t now, uint64_t lsn, uint64_t epoch) {
    struct sw_write *w = &sw->w[id];
    if (w->acked >= 0) die("write %ld was acknowledged twice", id);
    w->acked = now, w->node = port, w->lsn = lsn, w->epoch = epoch;
    sw->acked++;
}

/* A write the node at port refused: writes go to the master the refusal names (hint, a port)
 * from now on, and this one again, at once unless it bounced before or the refusal named no
 * master. The first of each kind is kept, to be shown. */
static int sw_dead(const struct sw *sw, int port) {
    for (int i = 0; i < sw->ndead; i++) {
        if (sw->dead[i] == port) return 1;
    }
    return 0;
}

static void sw_refused(struct sw *sw, long id, int port, int hint, int64_t now, const char *why) {
    struct sw_write *w = &sw->w[id];
    if (w->refused < 0) w->refused = now;
    sw->refusals++;
    if (sw->failover && hint && sw_dead(sw, hint)) hint = 0; /* a node that still names the dead master */
    if (hint) sw->target = hint;
    else if (sw->failover) sw->target = 0;
    if (!hint && sw->unhinted++ == 0) snprintf(sw->unhinted_example, sizeof sw->unhinted_example, "%s", why);
    w->retry_at = now;
    if (!hint || w->attempts >= 2) w->retry_at += SW_BACKOFF_US, sw->backoffs++;
    if (hint && w->attempts >= 2 && !sw->bounce_example[0])
        snprintf(sw->bounce_example, sizeof sw->bounce_example, "%s, refused again by %s: %s", endpoint_name(w->first),
                 endpoint_name(port), why);
    sw->retries[sw->retry_tail] = id;
    sw->retry_tail = (sw->retry_tail + 1) % (sw->n + 1);
}

/* Failover runs: the node at port closed its connections (killed). Never dialled or followed
 * again; the writes that were in flight on it (n of them, in ids) are sent again as soon as a
 * live master is known, their first send's outcome unknown. */
static void sw_node_down(struct sw *sw, int port, const long *ids, long n, int64_t now) {
    if (!sw_dead(sw, port) && sw->ndead < SW_NODES) sw->dead[sw->ndead++] = port;
    if (sw->target == port) sw->target = 0;
    for (long i = 0; i < n; i++) {
        struct sw_write *w = &sw->w[ids[i]];
        if (w->refused < 0) w->refused = now;
        w->retry_at = now;
        sw->retries[sw->retry_tail] = ids[i];
        sw->retry_tail = (sw->retry_tail + 1) % (sw->n + 1);
    }
    sw->dropped += n;
}

/* Failover runs: SIGKILL to the master when it is time. */
static void sw_kill(struct sw *sw, int64_t now) {
    if (sw->switch_sent >= 0 || now < sw->switch_at) return;
    if (kill(sw->pid, SIGKILL) != 0) die("kill %d: %s", sw->pid, strerror(errno));
    sw->switch_sent = sw->switch_answered = now_us() - sw->start;
    sw->switch_status = 0;
    snprintf(sw->switch_answer, sizeof sw->switch_answer, "killed %d", sw->pid);
}

/* Failover runs: whether it is time to ask for the master again (none known); counts it. */
static int sw_poll_due(struct sw *sw, int64_t now) {
    if (sw->target || now < sw->next_poll) return 0;
    sw->next_poll = now + FAILOVER_POLL_US;
    sw->polls++;
    return 1;
}

/* Whether the run is over: every write acked and the switchover answered. Dies when writes
 * stay unanswered SW_DRAIN_S after the last was due. */
static int sw_over(const struct sw *sw, int64_t now) {
    if (sw->acked == sw->n && sw->switch_answered >= 0) return 1;
    if (now > sw->end + SW_DRAIN_S * 1000000LL)
        die("%ld of %ld writes unanswered %d s after the last was due (switchover: %s; writes go to %s; %ld refusals)",
            sw->n - sw->acked, sw->n, SW_DRAIN_S, sw->switch_answered >= 0 ? sw->switch_answer : "unanswered",
            endpoint_name(sw->target), sw->refusals);
    return 0;
}

/* One line per write to OUT (id due sent refused acked first node attempts lsn epoch), the
 * summary on stdout. */
static int sw_report(const struct sw *sw, long lost, long wrong) {
    FILE *f = fopen(sw->out, "w");
    if (!f) die("%s: %s", sw->out, strerror(errno));
    for (long i = 0; i < sw->n; i++) {
        const struct sw_write *w = &sw->w[i];
        fprintf(f, "%ld %lld %lld %lld %lld %d %d %d %llu %llu\n", i, (long long)w->due, (long long)w->sent,
                (long long)w->refused, (long long)w->acked, w->first, w->node, w->attempts,
                (unsigned long long)w->lsn, (unsigned long long)w->epoch);
    }
    fclose(f);
    printf("switchover %lld %lld %d %s\n", (long long)sw->switch_sent, (long long)sw->switch_answered,
           sw->switch_status, sw->switch_answer);
    printf("writes %ld %ld %ld %ld %ld %d\n", sw->n, sw->acked, sw->refusals, sw->unhinted, sw->backoffs, sw->target);
    printf("readback %ld %ld %ld\n", sw->acked, lost, wrong);
    if (sw->unhinted) printf("unhinted %s\n", sw->unhinted_example);
    if (sw->bounce_example[0]) printf("bounced %s\n", sw->bounce_example);
    for (int i = 0; i < SW_NODES && sw->named_ports[i]; i++) printf("named %d %ld\n", sw->named_ports[i], sw->named[i]);
    if (sw->failover) printf("failover %ld %ld\n", sw->dropped, sw->polls);
    return 0;
}

/* -- Erdtree: Set over SW_CONNS HTTP/2 connections per node; Admin/Failover on one more. */

struct enode {
    int rr, dead;
    struct h2 c[SW_CONNS];
};

static int eports[SW_NODES];
static struct enode enodes[SW_NODES];
static struct call *spare, *pool; /* calls not in flight; all of them */
static long pool_size;

/* A connection to the node at port with room for a write, dialled on first use; NULL if none
 * (or no node: port 0, a failover run's unknown master). */
static struct h2 *erdtree_conn(int port) {
    if (!port) return NULL;
    struct enode *node = &enodes[sw_slot(eports, port)];
    if (node->dead) return NULL;
    if (!node->c[0].session) {
        for (int k = 0; k < SW_CONNS; k++) h2_open(&node->c[k], port);
    }
    for (int k = 0; k < SW_CONNS; k++) {
        struct h2 *c = &node->c[node->rr++ % SW_CONNS];
        if (c->inflight < SW_WINDOW) return c;
    }
    return NULL;
}

/* Every open connection, and admin if given; returns how many. */
static int erdtree_conns(struct h2 **conns, struct h2 *admin) {
    int n = 0;
    for (int i = 0; i < SW_NODES; i++) {
        for (int k = 0; k < SW_CONNS && enodes[i].c[k].session && !enodes[i].dead; k++) conns[n++] = &enodes[i].c[k];
    }
    if (admin) conns[n++] = admin;
    return n;
}

/* Set (with_value) or Get of write id's key on c. */
static void erdtree_request(struct h2 *c, const struct sw *sw, long id, int with_value) {
    char key[128], value[VALUE_BYTES];
    uint8_t msg[256];
    sw_key(sw, id, key, value);
    size_t len = put_bytes(msg, 1, key, strlen(key));
    if (with_value) len += put_bytes(msg + len, 2, value, VALUE_BYTES);
    struct call *call = spare;
    spare = call->next;
    call->tag = id;
    h2_submit(c, call, with_value ? "/erdtree.v1.KVStore/Set" : "/erdtree.v1.KVStore/Get", msg, len);
}

static void erdtree_failover(struct sw *sw, struct h2 *admin, struct call *call) {
    uint8_t msg[128];
    const char *to = endpoint_name(sw->to);
    size_t len = put_bytes(msg, 1, to, strlen(to));
    msg[len++] = 2 << 3; /* timeout_ms, a varint */
    len += put_varint(msg + len, SW_TIMEOUT_MS);
    call->tag = -1;
    h2_submit(admin, call, "/erdtree.v1.Admin/Failover", msg, len);
    sw->switch_sent = now_us() - sw->start;
}

static void erdtree_answered(struct sw *sw, struct call *call, int64_t now) {
    size_t len;
    if (call->tag < 0) { /* FailoverResponse{1: master_address, 2: epoch, 3: last_lsn} */
        sw->switch_answered = now, sw->switch_status = call->grpc_status;
        snprintf(sw->switch_answer, sizeof sw->switch_answer, "%s", call->message);
        if (call->grpc_status != 0) return;
        const uint8_t *msg = call_message(call, &len);
        struct fields f = decode("FailoverResponse", msg, len);
        snprintf(sw->switch_answer, sizeof sw->switch_answer, "%.*s %llu %llu", (int)f.n[1], (const char *)f.p[1],
                 (unsigned long long)f.v[2], (unsigned long long)f.v[3]);
    } else if (call->grpc_status == 0) { /* SetResponse{1: lsn, 2: epoch} */
        const uint8_t *msg = call_message(call, &len);
        struct fields f = decode("SetResponse", msg, len);
        sw_ack(sw, call->tag, call->port, now, f.v[1], f.v[2]);
    } else if (call->grpc_status == 9 || call->grpc_status == 14) { /* FAILED_PRECONDITION, UNAVAILABLE */
        int hint = call->master[0] ? parse_endpoint(call->master) : 0;
        if (hint) sw->named[sw_slot(sw->named_ports, hint)]++;
        sw_refused(sw, call->tag, call->port, hint, now, call->message);
    } else {
        die("Set on %s answered grpc-status %d: %s", endpoint_name(call->port), call->grpc_status, call->message);
    }
}

/* Failover runs: a node any of whose write connections the peer closed is down; the writes
 * in flight on it go back to be sent again. */
static void erdtree_check_down(struct sw *sw, int64_t now) {
    for (int i = 0; i < SW_NODES; i++) {
        struct enode *node = &enodes[i];
        int closed = 0;
        for (int k = 0; k < SW_CONNS && node->c[k].session; k++) closed |= node->c[k].closed;
        if (node->dead || !closed) continue;
        node->dead = 1;
        long n = 0, *ids = malloc((size_t)pool_size * sizeof *ids);
        for (long j = 0; j < pool_size; j++) {
            struct call *call = &pool[j];
            if (call->port != eports[i] || call->done) continue;
            ids[n++] = call->tag;
            call->done = 1, call->next = spare, spare = call;
        }
        for (int k = 0; k < SW_CONNS && node->c[k].session; k++) close(node->c[k].fd);
        sw_node_down(sw, eports[i], ids, n, now);
        free(ids);
    }
}

/* Failover runs: Admin/Status on each peer until one says it is the master
 * (StatusResponse{1: role, ROLE_MASTER = 1}). */
static void erdtree_find_master(struct sw *sw) {
    static struct h2 admin[SW_NODES];
    for (int i = 0; i < sw->npeers && !sw->target; i++) {
        if (sw_dead(sw, sw->peers[i])) continue;
        if (!admin[i].session) h2_open(&admin[i], sw->peers[i]);
        size_t len;
        if (h2_try_call(&admin[i], "/erdtree.v1.Admin/Status", NULL, 0) != 0) continue;
        const uint8_t *msg = call_message(&admin[i].one, &len);
        struct fields f = decode("StatusResponse", msg, len);
        if (f.v[1] == 1) sw->target = sw->peers[i];
    }
}

static void erdtree_switch_load(struct sw *sw) {
    pool_size = SW_NODES * SW_CONNS * SW_WINDOW;
    pool = calloc((size_t)pool_size, sizeof *pool);
    struct call failover;
    for (long i = 0; i < pool_size; i++) pool[i].next = spare, spare = &pool[i];
    struct h2 admin, *conns[SW_NODES * SW_CONNS + 1], *c;
    if (!sw->failover) h2_open(&admin, sw->master);
    erdtree_conn(sw->master);
    sw->start = now_us();
    for (;;) {
        int64_t now = now_us() - sw->start;
        if (sw->failover) {
            sw_kill(sw, now);
            if (sw_poll_due(sw, now)) erdtree_find_master(sw), now = now_us() - sw->start;
        } else if (sw->switch_sent < 0 && now >= sw->switch_at) {
            erdtree_failover(sw, &admin, &failover);
        }
        long id;
        while ((c = erdtree_conn(sw->target)) && (id = sw_next(sw, now)) >= 0) {
            erdtree_request(c, sw, id, 1);
            sw_sent(sw, id, c->port, now);
        }
        if (sw_over(sw, now)) return;
        for (struct call *call = h2_poll(conns, erdtree_conns(conns, sw->failover ? NULL : &admin), 1), *next; call;
             call = next) {
            next = call->next;
            erdtree_answered(sw, call, now_us() - sw->start);
            if (call != &failover) call->next = spare, spare = call;
        }
        if (sw->failover) erdtree_check_down(sw, now_us() - sw->start);
    }
}

/* Reads every write back from the node the writes went to last: lost (not found), wrong
 * (another value). */
static void erdtree_readback(const struct sw *sw, long *lost, long *wrong) {
    char key[128], value[VALUE_BYTES];
    struct h2 *conns[SW_NODES * SW_CONNS], *c;
    long next = 0, pending = 0;
    while (next < sw->n || pending > 0) {
        while (next < sw->n && (c = erdtree_conn(sw->target))) erdtree_request(c, sw, next++, 0), pending++;
        for (struct call *call = h2_poll(conns, erdtree_conns(conns, NULL), 100), *after; call; call = after) {
            after = call->next;
            if (call->grpc_status != 0)
                die("Get on %s answered grpc-status %d: %s", endpoint_name(call->port), call->grpc_status, call->message);
            sw_key(sw, call->tag, key, value);
            int got = get_found(call, value);
            *lost += got == 0, *wrong += got < 0, pending--;
            call->next = spare, spare = call;
        }
    }
}

/* -- Redis: SET pipelined over SW_CONNS connections per node; FAILOVER, INFO and the
 * read-back on one more (blocking). */

struct rconn {
    struct resp r;
    long queue[SW_WINDOW]; /* the writes in flight, oldest at head */
    int head, count;
    char out[SW_WINDOW * 192];
    size_t out_len;
};

struct rnode {
    int rr, dead;
    struct rconn c[SW_CONNS];
    struct resp admin;
};

static int rports[SW_NODES];
static struct rnode *rnodes;

/* The node at port, dialled on first use. */
static struct rnode *redis_node(int port) {
    if (!rnodes) rnodes = calloc(SW_NODES, sizeof *rnodes);
    struct rnode *node = &rnodes[sw_slot(rports, port)];
    if (!node->admin.port) {
        resp_open(&node->admin, port);
        for (int k = 0; k < SW_CONNS; k++) {
            resp_open(&node->c[k].r, port);
            fcntl(node->c[k].r.fd, F_SETFL, O_NONBLOCK);
        }
    }
    return node;
}

static struct rconn *redis_conn(int port) {
    if (!port) return NULL;
    struct rnode *node = redis_node(port);
    if (node->dead) return NULL;
    for (int k = 0; k < SW_CONNS; k++) {
        struct rconn *c = &node->c[node->rr++ % SW_CONNS];
        if (c->count < SW_WINDOW) return c;
    }
    return NULL;
}

/* The reply line to a command on a blocking connection (NUL-terminated in place). */
static char *redis_ask(struct resp *c, int nargs, const char *const *args) {
    char cmd[512], *line;
    size_t len;
    write_all(c->fd, cmd, resp_command(cmd, nargs, args));
    while (!(line = resp_line(c, &len))) resp_fill(c);
    line[len] = 0;
    return line;
}

/* The master the node at port follows (INFO replication), or 0 if it says it is one. */
static int redis_master_of(int port) {
    struct resp *c = &redis_node(port)->admin;
    const char *args[] = {"INFO", "replication"};
    char *line = redis_ask(c, 2, args), host[64], text[96];
    long n = line[0] == '$' ? atol(line + 1) : -1;
    if (n < 0) die("INFO replication on %s answered '%s'", endpoint_name(port), line);
    while (c->len - c->off < (size_t)n + 2) resp_fill(c);
    char *info = c->buf + c->off, *h = memmem(info, (size_t)n, "master_host:", 12);
    char *p = memmem(info, (size_t)n, "master_port:", 12);
    int follows = memmem(info, (size_t)n, "role:slave", 10) && h && p && sscanf(h + 12, "%63[^\r]", host) == 1;
    c->off += (size_t)n + 2;
    if (!follows) return 0;
    snprintf(text, sizeof text, "%s:%d", host, atoi(p + 12));
    return parse_endpoint(text);
}

static void redis_failover(struct sw *sw) {
    char host[64], port[16], timeout[16];
    snprintf(host, sizeof host, "%s", endpoint_name(sw->to));
    *strrchr(host, ':') = 0;
    snprintf(port, sizeof port, "%d", sw->to);
    snprintf(timeout, sizeof timeout, "%d", SW_TIMEOUT_MS);
    const char *args[] = {"FAILOVER", "TO", host, port, "TIMEOUT", timeout};
    sw->switch_sent = now_us() - sw->start;
    char *line = redis_ask(&redis_node(sw->master)->admin, 6, args);
    sw->switch_answered = now_us() - sw->start;
    sw->switch_status = strcmp(line, "+OK") != 0;
    snprintf(sw->switch_answer, sizeof sw->switch_answer, "%s", line);
}

static void redis_answers(struct sw *sw, struct rconn *c, int64_t now) {
    size_t len;
    char *line, why[192];
    while ((line = resp_line(&c->r, &len))) {
        if (c->count == 0) die("redis %s answered '%.*s' to nothing", endpoint_name(c->r.port), (int)len, line);
        long id = c->queue[c->head];
        c->head = (c->head + 1) % SW_WINDOW, c->count--;
        if (len == 3 && memcmp(line, "+OK", 3) == 0) {
            sw_ack(sw, id, c->r.port, now, 0, 0);
            continue;
        }
        if (line[0] != '-') die("redis %s answered '%.*s' to SET", endpoint_name(c->r.port), (int)len, line);
        snprintf(why, sizeof why, "%.*s", (int)len, line);
        int hint = 0;
        if (strncmp(why, "-READONLY", 9) == 0) hint = c->r.port == sw->target ? redis_master_of(c->r.port) : sw->target;
        sw_refused(sw, id, c->r.port, hint, now, why);
    }
}

/* Failover runs: a node any of whose write connections the peer closed is down; the writes
 * queued on it go back to be sent again. */
static void redis_check_down(struct sw *sw, int64_t now) {
    for (int i = 0; i < SW_NODES; i++) {
        struct rnode *node = &rnodes[i];
        int closed = 0;
        for (int k = 0; node->admin.port && k < SW_CONNS; k++) closed |= node->c[k].r.closed;
        if (node->dead || !closed) continue;
        node->dead = 1;
        long ids[SW_CONNS * SW_WINDOW], n = 0;
        for (int k = 0; k < SW_CONNS; k++) {
            struct rconn *c = &node->c[k];
            for (int j = 0; j < c->count; j++) ids[n++] = c->queue[(c->head + j) % SW_WINDOW];
            c->count = 0, c->out_len = 0;
            close(c->r.fd);
        }
        close(node->admin.fd);
        sw_node_down(sw, rports[i], ids, n, now);
    }
}

/* Failover runs: SENTINEL get-master-addr-by-name bench on each Sentinel until one names a
 * live node (*2, $host, $port; *-1 if it knows no such master). */
static void redis_find_master(struct sw *sw) {
    static struct resp sentinel[SW_NODES];
    const char *args[] = {"SENTINEL", "get-master-addr-by-name", "bench"};
    for (int i = 0; i < sw->npeers && !sw->target; i++) {
        struct resp *c = &sentinel[i];
        if (!c->port) resp_open(c, sw->peers[i]);
        char *line = redis_ask(c, 3, args), host[64], text[96];
        if (strcmp(line, "*2") != 0) continue;
        size_t len;
        for (int field = 0; field < 4; field++) {
            while (!(line = resp_line(c, &len))) resp_fill(c);
            line[len] = 0;
            if (field == 1) snprintf(host, sizeof host, "%s", line);
        }
        snprintf(text, sizeof text, "%s:%s", host, line);
        int port = parse_endpoint(text);
        if (!sw_dead(sw, port)) sw->target = port;
    }
}

static void redis_switch_load(struct sw *sw) {
    char key[128], value[VALUE_BYTES];
    struct pollfd p[SW_NODES * SW_CONNS];
    struct rconn *open[SW_NODES * SW_CONNS], *c;
    redis_node(sw->master);
    sw->start = now_us();
    for (;;) {
        int64_t now = now_us() - sw->start;
        if (sw->failover) {
            sw_kill(sw, now);
            if (sw_poll_due(sw, now)) redis_find_master(sw), now = now_us() - sw->start;
        } else if (sw->switch_sent < 0 && now >= sw->switch_at) {
            redis_failover(sw);
        }
        long id;
        while ((c = redis_conn(sw->target)) && (id = sw_next(sw, now)) >= 0) {
            sw_key(sw, id, key, value);
            c->out_len += resp_set(c->out + c->out_len, key, value);
            c->queue[(c->head + c->count++) % SW_WINDOW] = id;
            sw_sent(sw, id, c->r.port, now);
        }
        if (sw_over(sw, now)) return;
        int n = 0;
        for (int i = 0; i < SW_NODES; i++) {
            for (int k = 0; rnodes[i].admin.port && !rnodes[i].dead && k < SW_CONNS; k++) {
                c = &rnodes[i].c[k];
                write_all(c->r.fd, c->out, c->out_len);
                c->out_len = 0;
                p[n] = (struct pollfd){c->r.fd, POLLIN, 0};
                open[n++] = c;
            }
        }
        if (poll(p, (nfds_t)n, 1) < 0 && errno != EINTR) die("poll: %s", strerror(errno));
        for (int i = 0; i < n; i++) {
            if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) && resp_fill(&open[i]->r))
                redis_answers(sw, open[i], now_us() - sw->start);
        }
        if (sw->failover) redis_check_down(sw, now_us() - sw->start);
    }
}

static void redis_readback(const struct sw *sw, long *lost, long *wrong) {
    struct resp *c = &redis_node(sw->target)->admin;
    char key[128], value[VALUE_BYTES], cmd[256 * 64];
    for (long first = 0; first < sw->n; first += 256) {
        long last = first + 256 < sw->n ? first + 256 : sw->n;
        size_t len = 0;
        for (long id = first; id < last; id++) {
            sw_key(sw, id, key, value);
            const char *args[] = {"GET", key};
            len += resp_command(cmd + len, 2, args);
        }
        write_all(c->fd, cmd, len);
        for (long id = first; id < last; id++) {
            sw_key(sw, id, key, value);
            int got = resp_reply(c, value);
            *lost += got == 0, *wrong += got < 0;
        }
    }
}

static int switchover(int erdtree, int failover, int argc, char **argv) {
    struct sw sw = sw_init(argc, argv, failover);
    long lost = 0, wrong = 0;
    if (erdtree) erdtree_switch_load(&sw), erdtree_readback(&sw, &lost, &wrong);
    else redis_switch_load(&sw), redis_readback(&sw, &lost, &wrong);
    return sw_report(&sw, lost, wrong);
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "erdtree-lag") == 0) return lag(1, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "redis-lag") == 0) return lag(0, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "redis-load") == 0) return redis_load(argc, argv);
    if (argc >= 2 && strcmp(argv[1], "erdtree-catchup") == 0) return catchup(1, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "redis-catchup") == 0) return catchup(0, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "erdtree-switchover") == 0) return switchover(1, 0, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "redis-switchover") == 0) return switchover(0, 0, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "erdtree-failover") == 0) return switchover(1, 1, argc, argv);
    if (argc >= 2 && strcmp(argv[1], "redis-failover") == 0) return switchover(0, 1, argc, argv);
    fprintf(stderr, "usage: repl_probe erdtree-lag|redis-lag|redis-load|erdtree-catchup|redis-catchup|"
                    "erdtree-switchover|redis-switchover|erdtree-failover|redis-failover ... (see repl_probe.c)\n");
    return 2;
}
