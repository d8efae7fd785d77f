/*
 * loadgen.c: the closed-loop echo load generator of bench/echo.py.
 *
 * bench/echo.py compiles this file on the fly (cc -O2) into a cache
 * directory when a C compiler exists; bench/pyloadgen.py is the fallback
 * with the same command line and the same output.
 *
 *   loadgen --port P [--host 127.0.0.1] --conns C --size S
 *           --duration D --warmup W [--idle N] [--max-seconds T]
 *
 * Each of the C connections sends one message of S bytes, waits until all S
 * bytes have come back, and sends the next (closed loop): one request in
 * flight per connection. Latency is measured per request, from the first
 * send() to the last byte received, into a log-linear histogram (about 1.6%
 * resolution). One thread, one epoll set, level-triggered.
 *
 * Output, one line each, flushed at once so that the parent can sample the
 * server's CPU counters on the same instant:
 *   "start"  the measured window begins (after W seconds of warm-up)
 *   "end"    it ends, D seconds later
 *   {...}    JSON: requests, duration, rps, p50_us, p99_us, mean_us, max_us,
 *            cpu_s (this process's user+system CPU over the window),
 *            cpu_frac (cpu_s / duration: >= 0.9 means the client saturated)
 * With --idle N, first: C active connections are warmed up and left quiet,
 * "before" is printed and a line is read from stdin; then N extra
 * connections are opened (in batches, each one pinged with one byte and its
 * echo awaited, so the server has accepted and read from it), "after" is
 * printed and a line is read from stdin; then the measured run as above,
 * with the N idle connections held open. The parent samples the server's
 * RSS at "before" and "after".
 *
 * Bounded: alarm(max-seconds) ends the process whatever happens, and the
 * process dies with its parent (PR_SET_PDEATHSIG). Only the address given is
 * contacted; bench/echo.py passes 127.0.0.1.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#if defined(__linux__) && defined(MSG_TRUNC)
#define RECV_FLAGS MSG_TRUNC
#else
#define RECV_FLAGS 0
#endif

/* -- histogram: values in ns; 128 exact buckets, then 64 per power of two */
#define SUB_BITS 6
#define SUB (1 << SUB_BITS)
#define NBUCKETS ((64 - SUB_BITS + 1) * SUB)
static uint64_t hist[NBUCKETS];
static uint64_t hist_count, hist_max;
static double hist_sum;

static int bucket_of(uint64_t v) {
    if (v < 2 * SUB) return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - SUB_BITS;
    return shift * SUB + (int)(v >> shift); /* v >> shift is in [SUB, 2*SUB) */
}

static double bucket_mid(int b) {
    if (b < 2 * SUB) return b;
    int shift = b / SUB - 1;
    uint64_t lo = (uint64_t)(b - shift * SUB) << shift;
    return (double)lo + ((double)((uint64_t)1 << shift)) / 2.0;
}

static void hist_add(uint64_t v) {
    hist[bucket_of(v)]++;
    hist_count++;
    hist_sum += (double)v;
    if (v > hist_max) hist_max = v;
}

static double hist_quantile(double q) {
    if (!hist_count) return 0;
    uint64_t want = (uint64_t)(q * (double)hist_count);
    if (want < 1) want = 1;
    uint64_t seen = 0;
    for (int b = 0; b < NBUCKETS; b++) {
        seen += hist[b];
        if (seen >= want) return bucket_mid(b);
    }
    return (double)hist_max;
}

/* -- time and CPU ------------------------------------------------------- */
static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void say(const char *line) {
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
}

static void wait_for_go(void) {
    char line[64];
    if (!fgets(line, sizeof line, stdin)) {
        fprintf(stderr, "loadgen: stdin closed while waiting for the parent\n");
        exit(1);
    }
}

/* -- connections ---------------------------------------------------------- */
struct conn {
    int fd;
    size_t sent, rcvd;
    uint64_t t0;
    int want_out; /* EPOLLOUT registered */
};

static struct sockaddr_in addr;
static int epfd;
static size_t msg_size;
static char *msg, *rbuf;
static size_t rbuf_size;

static int open_conn(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    /* Close with a reset: thousands of connections per run would otherwise
     * leave as many sockets in TIME_WAIT. */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
    return fd;
}

static void set_nonblocking(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) die("fcntl");
}

static void set_out(struct conn *c, int on) {
    if (c->want_out == on) return;
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->want_out = on;
}

static void push(struct conn *c) {
    while (c->sent < msg_size) {
        ssize_t n = send(c->fd, msg + c->sent, msg_size - c->sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            die("send");
        }
        c->sent += (size_t)n;
    }
    set_out(c, c->sent < msg_size);
}

static void start_request(struct conn *c, uint64_t t) {
    c->sent = c->rcvd = 0;
    c->t0 = t;
    push(c);
}

/* Run the closed loop until `until` (ns). Requests completing inside
 * [ws, we) are counted and their latency recorded; "start" and "end" are
 * printed when those instants pass. With `issue` false at the end (drain),
 * connections finish their current request and do not start another. */
static uint64_t requests;
static int started, ended;
static double cpu0, cpu1;
static uint64_t t_start, t_end;

static void run(struct conn *conns, int nconns, uint64_t ws, uint64_t we, uint64_t until, int drain) {
    struct epoll_event evs[256];
    for (;;) {
        uint64_t t = now_ns();
        if (!started && ws && t >= ws) {
            started = 1;
            t_start = t;
            cpu0 = cpu_seconds();
            say("start");
        }
        if (started && !ended && we && t >= we) {
            ended = 1;
            t_end = t;
            cpu1 = cpu_seconds();
            say("end");
        }
        if (t >= until) return;
        if (drain) {
            int inflight = 0;
            for (int i = 0; i < nconns; i++)
                if (conns[i].t0) inflight++;
            if (!inflight) return;
        }
        uint64_t next = until;
        if (!started && ws && ws < next) next = ws;
        if (started && !ended && we && we < next) next = we;
        int timeout_ms = (int)((next - t) / 1000000) + 1;
        int n = epoll_wait(epfd, evs, 256, timeout_ms);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (evs[i].events & EPOLLOUT) push(c);
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                /* MSG_TRUNC on a TCP socket (Linux): count the bytes and
                 * let the kernel drop them, with no copy to user space; the
                 * client then spends its CPU on sending, not on memcpy, and
                 * stays ahead of the server at 100 KiB. */
                ssize_t r = recv(c->fd, rbuf, rbuf_size, RECV_FLAGS);
                if (r < 0) {
                    if (errno == EAGAIN || errno == EINTR) continue;
                    die("recv");
                }
                if (r == 0) {
                    fprintf(stderr, "loadgen: the server closed a connection\n");
                    exit(1);
                }
                c->rcvd += (size_t)r;
                if (c->rcvd > c->sent) {
                    fprintf(stderr, "loadgen: received more than was sent\n");
                    exit(1);
                }
                if (c->rcvd == msg_size) {
                    uint64_t t2 = now_ns();
                    if (started && !ended) {
                        requests++;
                        hist_add(t2 - c->t0);
                    }
                    if (drain) {
                        c->t0 = 0;
                        c->sent = c->rcvd = 0;
                    } else {
                        start_request(c, t2);
                    }
                }
            }
        }
    }
}

static void add_to_epoll(struct conn *c) {
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
}

/* Open n idle connections in batches: connect, send one byte, await its
 * echo. A batch never exceeds the listen backlog, so no SYN is dropped. */
static int *open_idle(int n) {
    int *fds = calloc((size_t)n, sizeof *fds);
    if (!fds) die("calloc");
    const int batch = 64;
    struct timeval tv = {10, 0};
    for (int i = 0; i < n; i += batch) {
        int end = i + batch < n ? i + batch : n;
        for (int j = i; j < end; j++) {
            fds[j] = open_conn();
            setsockopt(fds[j], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            if (send(fds[j], "x", 1, MSG_NOSIGNAL) != 1) die("send (idle)");
        }
        for (int j = i; j < end; j++) {
            char b;
            ssize_t r = recv(fds[j], &b, 1, 0);
            if (r != 1) {
                if (r == 0) errno = ECONNRESET;
                die("recv (idle ping)");
            }
        }
    }
    return fds;
}

static void raise_nofile(int need) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < need) {
        fprintf(stderr, "loadgen: need %d descriptors, the limit is %ld\n", need, (long)rl.rlim_cur);
        exit(2);
    }
}

static void usage(void) {
    fprintf(stderr, "usage: loadgen --port P [--host H] --conns C --size S --duration D "
                    "--warmup W [--idle N] [--max-seconds T]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    int port = 0, nconns = 10, idle = 0;
    double duration = 2.0, warmup = 0.5, max_seconds = 0;
    msg_size = 1024;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc) usage();
        const char *k = argv[i], *v = argv[++i];
        if (!strcmp(k, "--host")) host = v;
        else if (!strcmp(k, "--port")) port = atoi(v);
        else if (!strcmp(k, "--conns")) nconns = atoi(v);
        else if (!strcmp(k, "--size")) msg_size = (size_t)atol(v);
        else if (!strcmp(k, "--duration")) duration = atof(v);
        else if (!strcmp(k, "--warmup")) warmup = atof(v);
        else if (!strcmp(k, "--idle")) idle = atoi(v);
        else if (!strcmp(k, "--max-seconds")) max_seconds = atof(v);
        else usage();
    }
    if (port <= 0 || nconns < 1 || msg_size < 1 || duration <= 0 || warmup < 0 || idle < 0) usage();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (max_seconds <= 0) max_seconds = 60 + 2 * (warmup + duration) + idle / 100.0;
    alarm((unsigned)max_seconds + 1); /* the hard bound on this process's life */
    raise_nofile(nconns + idle + 16);

    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
        return 2;
    }
    msg = malloc(msg_size);
    rbuf_size = msg_size > 262144 ? msg_size : 262144;
    rbuf = malloc(rbuf_size);
    if (!msg || !rbuf) die("malloc");
    for (size_t i = 0; i < msg_size; i++) msg[i] = (char)('a' + i % 26);

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    if (!conns) die("calloc");
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = open_conn();
        set_nonblocking(conns[i].fd);
        add_to_epoll(&conns[i]);
    }

    uint64_t t = now_ns();
    int *idle_fds = NULL;
    if (idle) {
        /* Warm the active connections, let them go quiet, then measure the
         * server's memory before and after the idle connections arrive. */
        for (int i = 0; i < nconns; i++) start_request(&conns[i], t);
        run(conns, nconns, 0, 0, t + (uint64_t)(warmup * 1e9), 0);
        run(conns, nconns, 0, 0, now_ns() + 10000000000ull, 1);
        say("before");
        wait_for_go();
        idle_fds = open_idle(idle);
        say("after");
        wait_for_go();
        t = now_ns();
        warmup = warmup / 2;
    }
    for (int i = 0; i < nconns; i++) start_request(&conns[i], t);
    uint64_t ws = t + (uint64_t)(warmup * 1e9);
    uint64_t we = ws + (uint64_t)(duration * 1e9);
    run(conns, nconns, ws, we, we, 0);
    if (!ended) { /* the loop returns at `we`; make sure "end" was said */
        ended = 1;
        t_end = now_ns();
        cpu1 = cpu_seconds();
        say("end");
    }
    double dur = (double)(t_end - t_start) / 1e9;
    double cpu = cpu1 - cpu0;
    printf("{\"client\": \"c\", \"requests\": %llu, \"duration\": %.6f, \"rps\": %.3f, "
           "\"p50_us\": %.3f, \"p99_us\": %.3f, \"mean_us\": %.3f, \"max_us\": %.3f, "
           "\"cpu_s\": %.6f, \"cpu_frac\": %.4f, \"cpu_cores\": 1, \"conns\": %d, \"size\": %zu, \"idle\": %d}\n",
           (unsigned long long)requests, dur, dur > 0 ? requests / dur : 0.0,
           hist_quantile(0.50) / 1e3, hist_quantile(0.99) / 1e3,
           hist_count ? hist_sum / hist_count / 1e3 : 0.0, hist_max / 1e3,
           cpu, dur > 0 ? cpu / dur : 0.0, nconns, msg_size, idle);
    fflush(stdout);
    for (int i = 0; i < nconns; i++) close(conns[i].fd);
    for (int i = 0; i < idle; i++) close(idle_fds[i]);
    return 0;
}
