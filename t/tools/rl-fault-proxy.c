/*
 * rl-fault-proxy: a TCP proxy in front of a real Redis that injects faults,
 * for the request tests of the rate limit module (t/007-faults.t).
 *
 *   rl-fault-proxy [-v] [-p PIDFILE] [-c CTL_PORT] PORT REDIS_PORT [MODE [ARG...]]
 *
 *   PORT          loopback port for Redis clients; 0 picks a free one
 *   REDIS_PORT    the real Redis, at 127.0.0.1:REDIS_PORT
 *   -c CTL_PORT   loopback control port (default 0: a free one)
 *   -p PIDFILE    write the pid there; removed at exit
 *   -v            log connections, commands and mode changes to stderr
 *
 * Once both ports listen it prints two lines to stdout and flushes: PORT,
 * then CTL_PORT.
 *
 * Modes (the first from the command line, default pass):
 *
 *   pass              transparent proxy
 *   delay MS          forward every command at once, hold every reply MS ms
 *   stall             accept and read, never answer; the commands are held,
 *                     and forwarded in order when the mode goes back to pass
 *                     or delay: a paused Redis, not one that loses commands
 *   drop              close every client connection now, and any connection
 *                     as soon as it sends a command
 *   close-on-accept   close every client connection now, then accept each
 *                     new one and close it at once
 *   refuse            stop listening and close every client connection:
 *                     connects are refused until the mode changes
 *   garbage           answer every command with bytes that are not RESP
 *   error TEXT        answer every command with "-TEXT\r\n"
 *   wrong-type        answer every command with "+OK\r\n"
 *   raw RESP          answer every command with RESP, written with \r and
 *                     \n for CR and LF (a reply a broken Redis might send)
 *   flood             answer a command with the header of a 1 GB string,
 *                     then send its bytes as fast as the client reads them
 *   flood-array       the same with an array of 65536 strings of 256 KiB
 *
 * In the last six a bare PING is answered "+PONG", as a Redis whose
 * scripts fail still answers it: the module's connection setup passes and
 * the fault reaches its checks.
 *
 * A mode applies to connections already open from their next command on;
 * replies already on their way from Redis are still delivered, in order.
 * Switch modes while no command is in flight through the proxy, or a reply
 * injected here may overtake one of Redis'.
 *
 * Control: connect to 127.0.0.1:CTL_PORT and send one command per line, each
 * answered with one line:
 *
 *   mode MODE [ARG...]    "OK", or "ERR why"
 *   stats                 "accepted N open N commands N flooded N": client
 *                         connections accepted and open now, bytes sent
 *                         in flood mode, and commands
 *                         handled (forwarded or answered) since the start
 *
 *   e.g. from bash:
 *     exec 3<>/dev/tcp/127.0.0.1/$CTL
 *     echo 'mode error OOM command not allowed' >&3; head -n1 <&3
 *     exec 3<&-
 *
 * SIGTERM or SIGINT: close everything, remove the pid file, exit 0.
 *
 * Nothing here polls: every wait is a libevent read, write or timer event,
 * a stalled connection stops being read once 4 MiB are held, and an accept
 * error (out of descriptors) pauses the listener for 100 ms.
 */

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>


#define HELD_MAX       (4 * 1024 * 1024)
#define ERROR_TEXT_MAX 512

/* flood modes: a batch of one check answered with a string of 1 GB, or
 * with an array of 65536 strings of 256 KiB each */
static const char  flood_header[] = "*1\r\n$1000000000\r\n";
static const char  flood_array_header[] = "*1\r\n*65536\r\n";

static const char  garbage_reply[] = "?? rl-fault-proxy: this is not RESP\r\n";


typedef enum {
    MODE_PASS = 0,
    MODE_DELAY,
    MODE_STALL,
    MODE_DROP,
    MODE_CLOSE_ON_ACCEPT,
    MODE_REFUSE,
    MODE_GARBAGE,
    MODE_ERROR,
    MODE_WRONG_TYPE,
    MODE_RAW,
    MODE_FLOOD,
    MODE_FLOOD_ARRAY
} mode_e;


/* a reply waiting for its time (delay mode, or behind one that waits) */
typedef struct held_s {
    struct held_s    *next;
    uint64_t          due;        /* monotonic ms */
    struct evbuffer  *data;
} held_t;


/* one client connection and, once it forwarded a command, its upstream */
typedef struct conn_s {
    struct conn_s       *prev;
    struct conn_s       *next;
    unsigned             id;
    struct bufferevent  *cli;
    struct bufferevent  *up;
    struct event        *timer;   /* delivers held replies */
    held_t              *held;
    held_t              *held_tail;
    int                  closing; /* upstream gone: close once flushed */
    int                  flooding;
} conn_t;


/* a control connection */
typedef struct {
    struct bufferevent  *bev;
    int                  closing;
} ctl_t;


static struct event_base      *base;
static struct evconnlistener  *listener;
static struct evconnlistener  *ctl_listener;
static struct event           *relisten_timer;
static int                     verbose;
static int                     listen_port;
static int                     redis_port;
static const char             *pid_file;

static mode_e                  mode = MODE_PASS;
static unsigned                delay_ms;
static char                    error_text[ERROR_TEXT_MAX];
static char                    raw_reply[ERROR_TEXT_MAX];
static size_t                  raw_len;

static conn_t                 *conns;
static unsigned                next_id = 1;
static unsigned long           n_accepted;
static unsigned long           n_open;
static unsigned long           n_commands;
static unsigned long           n_flooded;       /* bytes, flood mode */


static void vlog(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int start_listener(void);
static void conn_process(conn_t *c);
static void conn_free(conn_t *c);


static void
vlog(const char *fmt, ...)
{
    va_list  ap;

    if (!verbose) {
        return;
    }

    va_start(ap, fmt);
    fprintf(stderr, "rl-fault-proxy: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}


static uint64_t
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);

    return (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;
}


/* a decimal number ending in "\r\n" at p: the bytes it takes, 0 when
 * incomplete, -1 when malformed */
static long
parse_line_number(const char *p, size_t len, long *out)
{
    size_t  i;
    long    v = 0;

    for (i = 0; i < len && p[i] >= '0' && p[i] <= '9'; i++) {
        if (v > (LONG_MAX - 9) / 10) {
            return -1;
        }

        v = v * 10 + (p[i] - '0');
    }

    if (i == len) {
        return 0;
    }

    if (i == 0 || p[i] != '\r') {
        return -1;
    }

    if (i + 1 == len) {
        return 0;
    }

    if (p[i + 1] != '\n') {
        return -1;
    }

    *out = v;

    return (long) i + 2;
}


/*
 * The length of the first complete command at p: a RESP array of bulk
 * strings, or an inline command (one line).  0: not complete yet;
 * -1: not a Redis client.
 */
static long
command_length(const char *p, size_t len)
{
    long  argc, arglen, n;
    long  pos;

    if (len == 0) {
        return 0;
    }

    if (p[0] != '*') {
        const char  *nl = memchr(p, '\n', len);

        return nl ? nl - p + 1 : 0;
    }

    n = parse_line_number(p + 1, len - 1, &argc);
    if (n <= 0) {
        return n;
    }

    pos = 1 + n;

    while (argc-- > 0) {
        if ((size_t) pos >= len) {
            return 0;
        }

        if (p[pos] != '$') {
            return -1;
        }

        n = parse_line_number(p + pos + 1, len - pos - 1, &arglen);
        if (n <= 0) {
            return n;
        }

        pos += 1 + n;

        if (arglen > HELD_MAX) {
            return -1;
        }

        if ((size_t) (pos + arglen + 2) > len) {
            return 0;
        }

        if (p[pos + arglen] != '\r' || p[pos + arglen + 1] != '\n') {
            return -1;
        }

        pos += arglen + 2;
    }

    return pos;
}


/* writes the replies whose time has come, in order; rearms for the next */
static void
flush_held(conn_t *c)
{
    held_t    *h;
    uint64_t   now = now_ms();

    while ((h = c->held) != NULL && h->due <= now) {
        bufferevent_write_buffer(c->cli, h->data);
        c->held = h->next;

        if (c->held == NULL) {
            c->held_tail = NULL;
        }

        evbuffer_free(h->data);
        free(h);
    }

    if (c->held) {
        struct timeval  tv;
        uint64_t        ms = c->held->due - now;

        tv.tv_sec = (time_t) (ms / 1000);
        tv.tv_usec = (suseconds_t) (ms % 1000) * 1000;
        evtimer_add(c->timer, &tv);
    }
}


/* true when the connection was freed */
static int
maybe_finish(conn_t *c)
{
    if (c->closing && c->held == NULL
        && evbuffer_get_length(bufferevent_get_output(c->cli)) == 0)
    {
        conn_free(c);
        return 1;
    }

    return 0;
}


static void flood(conn_t *c);


/* a reply for the client: now, unless it must wait or others wait;
 * -1: out of memory, the connection was freed */
static int
reply(conn_t *c, struct evbuffer *src, const void *data, size_t len,
    uint64_t wait)
{
    held_t  *h;

    if (c->held == NULL && wait == 0) {
        if (src) {
            bufferevent_write_buffer(c->cli, src);

        } else {
            bufferevent_write(c->cli, data, len);
        }

        return 0;
    }

    h = calloc(1, sizeof(held_t));
    if (h == NULL || (h->data = evbuffer_new()) == NULL) {
        free(h);
        conn_free(c);
        return -1;
    }

    h->due = now_ms() + wait;

    if (src) {
        evbuffer_remove_buffer(src, h->data, evbuffer_get_length(src));

    } else {
        evbuffer_add(h->data, data, len);
    }

    if (c->held_tail) {
        c->held_tail->next = h;

    } else {
        /* the first one waiting arms the timer */
        struct timeval  tv;

        c->held = h;
        tv.tv_sec = (time_t) (wait / 1000);
        tv.tv_usec = (suseconds_t) (wait % 1000) * 1000;
        evtimer_add(c->timer, &tv);
    }

    c->held_tail = h;

    return 0;
}


static void
conn_free(conn_t *c)
{
    held_t  *h;

    vlog("conn %u: closed", c->id);

    if (c->prev) {
        c->prev->next = c->next;

    } else {
        conns = c->next;
    }

    if (c->next) {
        c->next->prev = c->prev;
    }

    while ((h = c->held) != NULL) {
        c->held = h->next;
        evbuffer_free(h->data);
        free(h);
    }

    event_free(c->timer);

    if (c->up) {
        bufferevent_free(c->up);
    }

    bufferevent_free(c->cli);
    free(c);
    n_open--;
}


static void
on_held_timer(evutil_socket_t fd, short what, void *arg)
{
    conn_t  *c = arg;

    (void) fd;
    (void) what;

    flush_held(c);
    maybe_finish(c);
}


static void
on_up_read(struct bufferevent *bev, void *arg)
{
    conn_t  *c = arg;

    (void) reply(c, bufferevent_get_input(bev), NULL, 0,
                 mode == MODE_DELAY ? delay_ms : 0);
}


static void
on_up_event(struct bufferevent *bev, short what, void *arg)
{
    conn_t  *c = arg;

    (void) bev;

    if (what & BEV_EVENT_CONNECTED) {
        vlog("conn %u: connected to Redis", c->id);
        return;
    }

    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        vlog("conn %u: Redis closed the connection", c->id);

        /* what Redis sent last still goes out, then the client is closed */
        bufferevent_free(c->up);
        c->up = NULL;
        c->closing = 1;
        bufferevent_disable(c->cli, EV_READ);
        maybe_finish(c);
    }
}


static int
connect_up(conn_t *c)
{
    struct sockaddr_in  sin;

    c->up = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (c->up == NULL) {
        return -1;
    }

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t) redis_port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    bufferevent_setcb(c->up, on_up_read, NULL, on_up_event, c);
    bufferevent_enable(c->up, EV_READ | EV_WRITE);

    if (bufferevent_socket_connect(c->up, (struct sockaddr *) &sin,
                                   sizeof(sin))
        != 0)
    {
        bufferevent_free(c->up);
        c->up = NULL;
        return -1;
    }

    return 0;
}


static const char  ping_command[] = "*1\r\n$4\r\nPING\r\n";


/* handles the complete commands the client sent, per the current mode */
static void
conn_process(conn_t *c)
{
    struct evbuffer  *in = bufferevent_get_input(c->cli);
    char              line[ERROR_TEXT_MAX + 4];
    size_t            len;
    long              n;
    const char       *p;

    if (c->closing) {
        return;
    }

    while ((len = evbuffer_get_length(in)) > 0) {

        if (mode == MODE_STALL) {
            /* held until the mode changes; 4 MiB at most (watermark) */
            return;
        }

        if (mode == MODE_DROP || mode == MODE_REFUSE) {
            conn_free(c);
            return;
        }

        p = (const char *) evbuffer_pullup(in, -1);
        n = command_length(p, len);

        if (n == 0) {
            return;
        }

        if (n < 0) {
            vlog("conn %u: not a Redis client", c->id);
            conn_free(c);
            return;
        }

        n_commands++;

        if (verbose) {
            char  shown[61];
            int   i;

            for (i = 0; i < n && i < 60; i++) {
                shown[i] = (p[i] >= ' ' && p[i] <= '~') ? p[i] : '.';
            }

            shown[i] = '\0';
            vlog("conn %u: command (%ld bytes) %s", c->id, n, shown);
        }

        /*
         * The module's connection setup ends with a PING: the faulty modes
         * answer it like a healthy Redis, so their fault hits the checks
         * (a Redis that fails its scripts still answers PING).
         */
        if (mode != MODE_PASS && mode != MODE_DELAY
            && (size_t) n == sizeof(ping_command) - 1
            && memcmp(p, ping_command, (size_t) n) == 0)
        {
            evbuffer_drain(in, (size_t) n);
            if (reply(c, NULL, "+PONG\r\n", 7, 0) != 0) {
                return;
            }

            continue;
        }

        switch (mode) {

        case MODE_PASS:
        case MODE_DELAY:
            if (c->up == NULL && connect_up(c) != 0) {
                conn_free(c);
                return;
            }

            evbuffer_remove_buffer(in, bufferevent_get_output(c->up),
                                   (size_t) n);
            break;

        case MODE_GARBAGE:
            evbuffer_drain(in, (size_t) n);
            if (reply(c, NULL, garbage_reply, sizeof(garbage_reply) - 1, 0)
                != 0)
            {
                return;
            }

            break;

        case MODE_FLOOD:
        case MODE_FLOOD_ARRAY:
            evbuffer_drain(in, (size_t) n);
            if (!c->flooding) {
                c->flooding = 1;

                if (mode == MODE_FLOOD) {
                    bufferevent_write(c->cli, flood_header,
                                      sizeof(flood_header) - 1);
                } else {
                    bufferevent_write(c->cli, flood_array_header,
                                      sizeof(flood_array_header) - 1);
                }

                flood(c);
            }

            break;

        case MODE_RAW:
            evbuffer_drain(in, (size_t) n);
            if (reply(c, NULL, raw_reply, raw_len, 0) != 0) {
                return;
            }

            break;

        case MODE_ERROR:
            evbuffer_drain(in, (size_t) n);
            len = (size_t) snprintf(line, sizeof(line), "-%s\r\n",
                                    error_text);
            if (reply(c, NULL, line, len, 0) != 0) {
                return;
            }

            break;

        case MODE_WRONG_TYPE:
            evbuffer_drain(in, (size_t) n);
            if (reply(c, NULL, "+OK\r\n", 5, 0) != 0) {
                return;
            }

            break;

        default:
            /* close-on-accept: a connection accepted before the switch */
            conn_free(c);
            return;
        }
    }
}


static void
on_cli_read(struct bufferevent *bev, void *arg)
{
    (void) bev;

    conn_process(arg);
}


/* flood mode: the next 256 KiB of a string that never ends */
static void
flood(conn_t *c)
{
    static char  chunk[256 * 1024];

    if (chunk[0] == '\0') {
        memset(chunk, 'x', sizeof(chunk));
    }

    static const char  element[] = "$262144\r\n";   /* sizeof(chunk) */

    if (mode == MODE_FLOOD_ARRAY) {
        bufferevent_write(c->cli, element, sizeof(element) - 1);
        n_flooded += sizeof(element) - 1;
    }

    bufferevent_write(c->cli, chunk, sizeof(chunk));
    n_flooded += sizeof(chunk);

    if (mode == MODE_FLOOD_ARRAY) {
        bufferevent_write(c->cli, "\r\n", 2);
        n_flooded += 2;
    }
}


static void
on_cli_write(struct bufferevent *bev, void *arg)
{
    conn_t  *c = arg;

    (void) bev;

    if (c->flooding && (mode == MODE_FLOOD || mode == MODE_FLOOD_ARRAY)) {
        flood(c);
        return;
    }

    maybe_finish(arg);
}


static void
on_cli_event(struct bufferevent *bev, short what, void *arg)
{
    (void) bev;

    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        conn_free(arg);
    }
}


static void
on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
    int socklen, void *arg)
{
    conn_t  *c;

    (void) l;
    (void) sa;
    (void) socklen;
    (void) arg;

    n_accepted++;

    if (mode == MODE_CLOSE_ON_ACCEPT) {
        vlog("accepted and closed");
        evutil_closesocket(fd);
        return;
    }

    c = calloc(1, sizeof(conn_t));
    if (c == NULL) {
        evutil_closesocket(fd);
        return;
    }

    c->id = next_id++;
    c->cli = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->timer = evtimer_new(base, on_held_timer, c);

    if (c->cli == NULL || c->timer == NULL) {
        if (c->cli) {
            bufferevent_free(c->cli);

        } else {
            evutil_closesocket(fd);
        }

        if (c->timer) {
            event_free(c->timer);
        }

        free(c);
        return;
    }

    c->next = conns;
    if (conns) {
        conns->prev = c;
    }
    conns = c;
    n_open++;

    vlog("conn %u: accepted", c->id);

    bufferevent_setcb(c->cli, on_cli_read, on_cli_write, on_cli_event, c);
    bufferevent_setwatermark(c->cli, EV_READ, 0, HELD_MAX);
    bufferevent_enable(c->cli, EV_READ | EV_WRITE);
}


static void
on_relisten(evutil_socket_t fd, short what, void *arg)
{
    (void) fd;
    (void) what;

    if (arg) {
        evconnlistener_enable(arg);
    }
}


/* out of descriptors, most likely: pause instead of spinning on accept */
static void
on_accept_error(struct evconnlistener *l, void *arg)
{
    struct timeval  tv = { 0, 100000 };

    (void) arg;

    vlog("accept: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));

    evconnlistener_disable(l);
    event_free(relisten_timer);
    relisten_timer = evtimer_new(base, on_relisten, l);

    if (relisten_timer) {
        evtimer_add(relisten_timer, &tv);
    }
}


static struct evconnlistener *
listen_on(int port, evconnlistener_cb cb, void *arg)
{
    struct sockaddr_in  sin;

    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t) port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

    return evconnlistener_new_bind(base, cb, arg,
                                   LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE
                                   | LEV_OPT_CLOSE_ON_EXEC, 128,
                                   (struct sockaddr *) &sin, sizeof(sin));
}


static int
bound_port(struct evconnlistener *l)
{
    struct sockaddr_in  sin;
    socklen_t           len = sizeof(sin);

    if (getsockname(evconnlistener_get_fd(l), (struct sockaddr *) &sin, &len)
        != 0)
    {
        return -1;
    }

    return ntohs(sin.sin_port);
}


static int
start_listener(void)
{
    if (listener) {
        return 0;
    }

    listener = listen_on(listen_port, on_accept, NULL);
    if (listener == NULL) {
        return -1;
    }

    evconnlistener_set_error_cb(listener, on_accept_error);
    listen_port = bound_port(listener);

    return 0;
}


static void
stop_listener(void)
{
    if (relisten_timer) {
        event_free(relisten_timer);
        relisten_timer = NULL;
    }

    if (listener) {
        evconnlistener_free(listener);
        listener = NULL;
    }
}


static void
close_all(void)
{
    while (conns) {
        conn_free(conns);
    }
}


/* "pass", "delay 200", "error NOSCRIPT No matching script", ...; NULL: ok */
static const char *
set_mode(const char *arg)
{
    const char     *rest;
    char           *end;
    size_t          len;
    unsigned long   ms;
    mode_e          m;
    conn_t         *c, *next;

    while (*arg == ' ') {
        arg++;
    }

    len = strcspn(arg, " ");
    rest = arg + len;

    while (*rest == ' ') {
        rest++;
    }

#define IS(s)  (len == sizeof(s) - 1 && strncmp(arg, s, len) == 0)

    if (IS("pass")) {
        m = MODE_PASS;

    } else if (IS("delay")) {
        errno = 0;
        ms = strtoul(rest, &end, 10);

        if (*rest == '\0' || *end != '\0' || errno || ms > 600000) {
            return "delay takes milliseconds, 0 to 600000";
        }

        delay_ms = (unsigned) ms;
        m = MODE_DELAY;

    } else if (IS("stall")) {
        m = MODE_STALL;

    } else if (IS("drop")) {
        m = MODE_DROP;

    } else if (IS("close-on-accept")) {
        m = MODE_CLOSE_ON_ACCEPT;

    } else if (IS("refuse")) {
        m = MODE_REFUSE;

    } else if (IS("garbage")) {
        m = MODE_GARBAGE;

    } else if (IS("error")) {
        if (*rest == '\0' || strlen(rest) >= sizeof(error_text)
            || strpbrk(rest, "\r\n"))
        {
            return "error takes the text of the reply, one line";
        }

        snprintf(error_text, sizeof(error_text), "%s", rest);
        m = MODE_ERROR;

    } else if (IS("wrong-type")) {
        m = MODE_WRONG_TYPE;

    } else if (IS("flood")) {
        m = MODE_FLOOD;

    } else if (IS("flood-array")) {
        m = MODE_FLOOD_ARRAY;

    } else if (IS("raw")) {
        /* RESP written with \r and \n for CR and LF */
        raw_len = 0;

        for (const char *q = rest; *q; q++) {
            if (raw_len == sizeof(raw_reply)) {
                return "raw takes at most 512 bytes";
            }

            if (q[0] == '\\' && (q[1] == 'r' || q[1] == 'n')) {
                raw_reply[raw_len++] = q[1] == 'r' ? '\r' : '\n';
                q++;
                continue;
            }

            raw_reply[raw_len++] = *q;
        }

        if (raw_len == 0) {
            return "raw takes the bytes of the reply";
        }

        m = MODE_RAW;

    } else {
        return "unknown mode";
    }

#undef IS

    if (m != MODE_DELAY && m != MODE_ERROR && m != MODE_RAW
        && *rest != '\0')
    {
        return "this mode takes no argument";
    }

    mode = m;
    vlog("mode %s", arg);

    if (m == MODE_REFUSE) {
        stop_listener();
        close_all();
        return NULL;
    }

    if (start_listener() != 0) {
        return "cannot listen on the port again";
    }

    if (m == MODE_DROP || m == MODE_CLOSE_ON_ACCEPT) {
        close_all();
        return NULL;
    }

    /* commands held by a stall go on under the new mode */
    for (c = conns; c; c = next) {
        next = c->next;
        conn_process(c);
    }

    return NULL;
}


static void
ctl_free(ctl_t *ctl)
{
    bufferevent_free(ctl->bev);
    free(ctl);
}


static void
on_ctl_read(struct bufferevent *bev, void *arg)
{
    char             *line;
    const char       *err;
    struct evbuffer  *out = bufferevent_get_output(bev);

    while ((line = evbuffer_readln(bufferevent_get_input(bev), NULL,
                                   EVBUFFER_EOL_CRLF))
           != NULL)
    {
        if (strncmp(line, "mode ", 5) == 0) {
            err = set_mode(line + 5);

            if (err) {
                evbuffer_add_printf(out, "ERR %s\n", err);

            } else {
                evbuffer_add_printf(out, "OK\n");
            }

        } else if (strcmp(line, "stats") == 0) {
            evbuffer_add_printf(out, "accepted %lu open %lu commands %lu "
                                "flooded %lu\n",
                                n_accepted, n_open, n_commands, n_flooded);

        } else if (line[0] != '\0') {
            evbuffer_add_printf(out, "ERR unknown command\n");
        }

        free(line);
    }

    (void) arg;
}


static void
on_ctl_write(struct bufferevent *bev, void *arg)
{
    ctl_t  *ctl = arg;

    (void) bev;

    if (ctl->closing) {
        ctl_free(ctl);
    }
}


static void
on_ctl_event(struct bufferevent *bev, short what, void *arg)
{
    ctl_t  *ctl = arg;

    if (what & BEV_EVENT_ERROR) {
        ctl_free(ctl);
        return;
    }

    if (what & BEV_EVENT_EOF) {
        /* the answers still go out: nc and friends half-close first */
        if (evbuffer_get_length(bufferevent_get_output(bev)) == 0) {
            ctl_free(ctl);
            return;
        }

        ctl->closing = 1;
        bufferevent_disable(bev, EV_READ);
    }
}


static void
on_ctl_accept(struct evconnlistener *l, evutil_socket_t fd,
    struct sockaddr *sa, int socklen, void *arg)
{
    ctl_t  *ctl;

    (void) l;
    (void) sa;
    (void) socklen;
    (void) arg;

    ctl = calloc(1, sizeof(ctl_t));
    if (ctl == NULL) {
        evutil_closesocket(fd);
        return;
    }

    ctl->bev = bufferevent_socket_new(base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (ctl->bev == NULL) {
        evutil_closesocket(fd);
        free(ctl);
        return;
    }

    bufferevent_setcb(ctl->bev, on_ctl_read, on_ctl_write, on_ctl_event, ctl);
    bufferevent_setwatermark(ctl->bev, EV_READ, 0, 64 * 1024);
    bufferevent_enable(ctl->bev, EV_READ | EV_WRITE);
}


static void
on_signal(evutil_socket_t sig, short what, void *arg)
{
    (void) what;
    (void) arg;

    vlog("signal %d: exiting", (int) sig);
    event_base_loopbreak(base);
}


static int
parse_port(const char *s)
{
    char  *end;
    long   v;

    errno = 0;
    v = strtol(s, &end, 10);

    if (*s == '\0' || *end != '\0' || errno || v < 0 || v > 65535) {
        return -1;
    }

    return (int) v;
}


static void
usage(void)
{
    fprintf(stderr,
            "usage: rl-fault-proxy [-v] [-p PIDFILE] [-c CTL_PORT] "
            "PORT REDIS_PORT [MODE [ARG...]]\n"
            "modes: pass, delay MS, stall, drop, close-on-accept, refuse, "
            "garbage, error TEXT, wrong-type\n");
    exit(2);
}


int
main(int argc, char **argv)
{
    int            opt, ctl_port = 0, i, rc = 0;
    char           mode_arg[ERROR_TEXT_MAX + 32];
    size_t         len;
    const char    *err;
    struct event  *sigterm, *sigint;
    FILE          *f;

    while ((opt = getopt(argc, argv, "vp:c:")) != -1) {
        switch (opt) {
        case 'v':
            verbose = 1;
            break;
        case 'p':
            pid_file = optarg;
            break;
        case 'c':
            if ((ctl_port = parse_port(optarg)) < 0) {
                usage();
            }
            break;
        default:
            usage();
        }
    }

    if (argc - optind < 2) {
        usage();
    }

    listen_port = parse_port(argv[optind]);
    redis_port = parse_port(argv[optind + 1]);

    if (listen_port < 0 || redis_port <= 0) {
        usage();
    }

    signal(SIGPIPE, SIG_IGN);

    base = event_base_new();
    if (base == NULL) {
        fprintf(stderr, "rl-fault-proxy: no event base\n");
        return 1;
    }

    if (start_listener() != 0) {
        fprintf(stderr, "rl-fault-proxy: cannot listen on 127.0.0.1:%d: %s\n",
                listen_port, strerror(errno));
        return 1;
    }

    ctl_listener = listen_on(ctl_port, on_ctl_accept, NULL);
    if (ctl_listener == NULL) {
        fprintf(stderr, "rl-fault-proxy: cannot listen on 127.0.0.1:%d: %s\n",
                ctl_port, strerror(errno));
        return 1;
    }

    if (argc - optind > 2) {
        mode_arg[0] = '\0';
        len = 0;

        for (i = optind + 2; i < argc; i++) {
            len += (size_t) snprintf(mode_arg + len, sizeof(mode_arg) - len,
                                     "%s%s", i > optind + 2 ? " " : "",
                                     argv[i]);
            if (len >= sizeof(mode_arg)) {
                usage();
            }
        }

        err = set_mode(mode_arg);
        if (err) {
            fprintf(stderr, "rl-fault-proxy: %s: %s\n", mode_arg, err);
            return 2;
        }
    }

    sigterm = evsignal_new(base, SIGTERM, on_signal, NULL);
    sigint = evsignal_new(base, SIGINT, on_signal, NULL);

    if (sigterm == NULL || sigint == NULL
        || evsignal_add(sigterm, NULL) != 0 || evsignal_add(sigint, NULL) != 0)
    {
        fprintf(stderr, "rl-fault-proxy: cannot watch signals\n");
        return 1;
    }

    if (pid_file) {
        f = fopen(pid_file, "w");
        if (f == NULL) {
            fprintf(stderr, "rl-fault-proxy: %s: %s\n", pid_file,
                    strerror(errno));
            return 1;
        }

        fprintf(f, "%ld\n", (long) getpid());
        fclose(f);
    }

    printf("%d\n%d\n", listen_port, bound_port(ctl_listener));
    fflush(stdout);

    if (event_base_dispatch(base) < 0) {
        rc = 1;
    }

    close_all();
    stop_listener();
    evconnlistener_free(ctl_listener);
    event_free(sigterm);
    event_free(sigint);
    event_base_free(base);

    if (pid_file) {
        unlink(pid_file);
    }

    return rc;
}
