/* SPDX-License-Identifier: BSD-3-Clause */
/* Launching local worker processes: spawn, address line, output forwarding. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "base/clock.h"
#include "base/thread.h"
#include "cluster/launch.h"
#include "cluster/worker_boot.h"
#include "disco/cluster.h"
#include "disco/error.h"

extern char **environ;

/* Longest line forwarded in one piece. */
#define LINE_CAP 4096
/* Most bytes disco__launched_free copies from each pipe before closing it. */
#define DRAIN_MAX (256 * 1024)

#define PREFIX DISCO__WORKER_ADDRESS_PREFIX
#define PREFIX_LEN (sizeof(PREFIX) - 1)

/* One pipe from a worker: its stdout or its stderr. */
struct stream {
    struct disco__launched *owner;
    int fd;          /* -1 once closed */
    bool is_stdout;
    size_t len;      /* bytes of the current, unfinished line */
    char line[LINE_CAP];
};

enum launch_state { ST_PENDING, ST_READY, ST_FAILED };
enum launch_fail { FAIL_NONE, FAIL_LINES, FAIL_EOF, FAIL_BADADDR };

struct disco__launched {
    pid_t pid;
    int label;
    int stdin_fd;
    double timeout;
    uint64_t deadline; /* disco__now_ns() by which the address must come */
    struct stream out, err;

    /* Written by the forwarder, guarded by fw.lock. */
    enum launch_state state;
    enum launch_fail fail;
    unsigned lines;    /* stdout lines before the address */
    char addr[DISCO__LAUNCH_ADDR_MAX];

    /* The owner's thread only. */
    bool reaped;       /* waited for: pid no longer ours */
    bool lost;         /* reaped by someone else: pid no longer ours */
    int wstatus;
    int result;        /* of a failed wait_address, 0 until then */
    char msg[200];
};

/* Lines ready to write on stderr, formatted, one after the other. */
struct outbuf {
    char *data;
    size_t len, cap;
    size_t *ends;      /* end offset of each line */
    size_t n, ncap;
};

/*
 * The forwarder: one thread for the whole process, epoll over every
 * registered pipe. Lock order: lock, then out_lock. Lines are formatted
 * under lock and written under out_lock only, so that a slow stderr never
 * holds up launches, and lines keep their order.
 */
static struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;        /* with lock: a launch changed state */
    pthread_mutex_t out_lock;   /* held while writing lines to stderr */
    int epfd;
    int wakefd;                 /* eventfd in the epoll set */
    bool running;               /* a forwarder thread serves the pipes */
    size_t nstreams;            /* registered pipes */
    struct stream **by_fd;      /* registered pipes by fd */
    size_t cap;
} fw = {
    .lock = PTHREAD_MUTEX_INITIALIZER,
    .out_lock = PTHREAD_MUTEX_INITIALIZER,
    .epfd = -1,
    .wakefd = -1,
};

static pthread_once_t fw_once = PTHREAD_ONCE_INIT;
static int fw_init_errno;

static void fw_init(void)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&fw.cond, &ca);
    pthread_condattr_destroy(&ca);
    fw.epfd = epoll_create1(EPOLL_CLOEXEC);
    fw.wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (fw.epfd < 0 || fw.wakefd < 0) {
        fw_init_errno = errno;
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fw.wakefd};
    if (epoll_ctl(fw.epfd, EPOLL_CTL_ADD, fw.wakefd, &ev) != 0)
        fw_init_errno = errno;
}

/* ---- output lines -------------------------------------------------------- */

static bool outbuf_reserve(struct outbuf *b, size_t more)
{
    if (b->len + more > b->cap) {
        size_t cap = b->cap ? b->cap : 8192;
        while (cap < b->len + more)
            cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d)
            return false;
        b->data = d;
        b->cap = cap;
    }
    if (b->n == b->ncap) {
        size_t ncap = b->ncap ? 2 * b->ncap : 64;
        size_t *e = realloc(b->ends, ncap * sizeof(*e));
        if (!e)
            return false;
        b->ends = e;
        b->ncap = ncap;
    }
    return true;
}

/* Appends "From worker N: <line>\n". Out of memory: the line is lost. */
static void outbuf_add(struct outbuf *b, int label, const char *p, size_t n)
{
    char head[40];
    int h = snprintf(head, sizeof(head), "From worker %d: ", label);
    if (!outbuf_reserve(b, (size_t)h + n + 1))
        return;
    memcpy(b->data + b->len, head, (size_t)h);
    memcpy(b->data + b->len + h, p, n);
    b->len += (size_t)h + n;
    b->data[b->len++] = '\n';
    b->ends[b->n++] = b->len;
}

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EAGAIN) {
            struct pollfd pfd = {.fd = fd, .events = POLLOUT};
            if (poll(&pfd, 1, 1000) <= 0)
                return; /* stderr is stuck: drop the rest */
        } else if (!(w < 0 && errno == EINTR)) {
            return;
        }
    }
}

/* Writes the lines of b, one write each, and empties b. Called with
 * fw.lock held; releases it while writing and takes it back. */
static void outbuf_flush_locked(struct outbuf *b)
{
    if (b->n == 0)
        return;
    pthread_mutex_lock(&fw.out_lock);
    pthread_mutex_unlock(&fw.lock);
    size_t start = 0;
    for (size_t i = 0; i < b->n; i++) {
        write_all(STDERR_FILENO, b->data + start, b->ends[i] - start);
        start = b->ends[i];
    }
    pthread_mutex_unlock(&fw.out_lock);
    b->len = b->n = 0;
    pthread_mutex_lock(&fw.lock);
}

static void outbuf_free(struct outbuf *b)
{
    free(b->data);
    free(b->ends);
}

/* ---- reading the pipes (fw.lock held) ------------------------------------ */

static void set_state(struct disco__launched *l, enum launch_state st,
                      enum launch_fail why)
{
    l->state = st;
    l->fail = why;
    pthread_cond_broadcast(&fw.cond);
}

/* One complete line (or a piece of a long one) from stream s. */
static void take_line(struct stream *s, const char *p, size_t n,
                      struct outbuf *b)
{
    struct disco__launched *l = s->owner;
    if (s->is_stdout && l->state == ST_PENDING) {
        if (n >= PREFIX_LEN && memcmp(p, PREFIX, PREFIX_LEN) == 0) {
            const char *a = p + PREFIX_LEN;
            size_t alen = n - PREFIX_LEN;
            if (alen > 0 && a[alen - 1] == '\r')
                alen--;
            if (alen == 0 || alen >= sizeof(l->addr) ||
                memchr(a, '\0', alen)) {
                set_state(l, ST_FAILED, FAIL_BADADDR);
            } else {
                memcpy(l->addr, a, alen);
                l->addr[alen] = '\0';
                set_state(l, ST_READY, FAIL_NONE);
            }
            return; /* the address line is not forwarded */
        }
        if (++l->lines >= DISCO__LAUNCH_MAX_LINES)
            set_state(l, ST_FAILED, FAIL_LINES);
    }
    outbuf_add(b, l->label, p, n);
}

/* Splits n bytes read from s into lines. */
static void take_bytes(struct stream *s, const char *p, size_t n,
                       struct outbuf *b)
{
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t part = nl ? (size_t)(nl - p) : n;
        size_t room = LINE_CAP - s->len;
        size_t take = part < room ? part : room;
        if (s->len == 0 && take == part && nl) {
            take_line(s, p, part, b); /* whole line, no copy */
        } else {
            memcpy(s->line + s->len, p, take);
            s->len += take;
            if (s->len == LINE_CAP || (take == part && nl)) {
                take_line(s, s->line, s->len, b);
                s->len = 0;
            }
        }
        size_t used = take + (take == part && nl ? 1 : 0);
        p += used;
        n -= used;
    }
}

/* Takes s out of the epoll set; it is served no more. */
static void stream_unregister(struct stream *s)
{
    epoll_ctl(fw.epfd, EPOLL_CTL_DEL, s->fd, NULL);
    fw.by_fd[s->fd] = NULL;
    if (--fw.nstreams == 0) {
        uint64_t one = 1; /* let an idle forwarder see there is no work */
        if (write(fw.wakefd, &one, sizeof(one)) < 0) {
            /* the counter is already non-zero */
        }
    }
}

/* End of s: its last unfinished line is taken, the pipe closed. */
static void stream_close(struct stream *s, struct outbuf *b)
{
    if (s->len > 0) {
        take_line(s, s->line, s->len, b);
        s->len = 0;
    }
    close(s->fd);
    s->fd = -1;
    if (s->is_stdout && s->owner->state == ST_PENDING)
        set_state(s->owner, ST_FAILED, FAIL_EOF);
}

/* Reads once from s. Returns false at end of stream (s is then closed). */
static bool stream_pump(struct stream *s, struct outbuf *b)
{
    char buf[4096];
    ssize_t r = read(s->fd, buf, sizeof(buf));
    if (r > 0) {
        take_bytes(s, buf, (size_t)r, b);
        return true;
    }
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return true;
    stream_unregister(s);
    stream_close(s, b);
    return false;
}

/* Adds s to the epoll set. Returns 0 or an errno value. */
static int stream_register(struct stream *s)
{
    if ((size_t)s->fd >= fw.cap) {
        size_t cap = fw.cap ? fw.cap : 64;
        while (cap <= (size_t)s->fd)
            cap *= 2;
        struct stream **t = realloc(fw.by_fd, cap * sizeof(*t));
        if (!t)
            return ENOMEM;
        memset(t + fw.cap, 0, (cap - fw.cap) * sizeof(*t));
        fw.by_fd = t;
        fw.cap = cap;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s->fd};
    if (epoll_ctl(fw.epfd, EPOLL_CTL_ADD, s->fd, &ev) != 0)
        return errno;
    fw.by_fd[s->fd] = s;
    fw.nstreams++;
    return 0;
}

static void *forwarder_main(void *unused)
{
    (void)unused;
    struct outbuf b = {0};
    struct epoll_event ev[64];
    pthread_mutex_lock(&fw.lock);
    while (fw.nstreams > 0) {
        pthread_mutex_unlock(&fw.lock);
        int n = epoll_wait(fw.epfd, ev, 64, -1);
        if (n < 0 && errno != EINTR)
            nanosleep(&(struct timespec){0, 10000000}, NULL); /* no spin */
        pthread_mutex_lock(&fw.lock);
        for (int i = 0; i < n; i++) {
            int fd = ev[i].data.fd;
            if (fd == fw.wakefd) {
                uint64_t v;
                if (read(fw.wakefd, &v, sizeof(v)) < 0) {
                    /* already drained */
                }
                continue;
            }
            /* A stale event of a pipe freed meanwhile finds NULL, or the
             * pipe that now has its fd number: either way harmless. */
            struct stream *s = (size_t)fd < fw.cap ? fw.by_fd[fd] : NULL;
            if (s)
                stream_pump(s, &b);
        }
        outbuf_flush_locked(&b);
    }
    fw.running = false;
    pthread_mutex_unlock(&fw.lock);
    outbuf_free(&b);
    return NULL;
}

/* Starts the forwarder if none runs. fw.lock held. Returns 0 or an errno
 * value. */
static int forwarder_ensure(void)
{
    if (fw.running)
        return 0;
    int err = disco__thread_start_detached(forwarder_main, NULL);
    if (err != 0)
        return err;
    fw.running = true;
    return 0;
}

/* ---- spawning ------------------------------------------------------------ */

/* Moves *fd to a number >= 3 (close-on-exec), so that the child's dup2
 * onto 0, 1 and 2 never finds its source already there. */
static int lift_fd(int *fd)
{
    if (*fd > 2)
        return 0;
    int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0)
        return -1;
    close(*fd);
    *fd = nfd;
    return 0;
}

static int make_pipe(int p[2])
{
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    if (lift_fd(&p[0]) != 0 || lift_fd(&p[1]) != 0) {
        int e = errno;
        close(p[0]);
        close(p[1]);
        p[0] = p[1] = -1;
        errno = e;
        return -1;
    }
    return 0;
}

static void close_fd(int *fd)
{
    if (*fd >= 0) {
        close(*fd);
        *fd = -1;
    }
}

/* The inherited environment with extra's entries added (replacing entries
 * of the same name). The strings are borrowed. */
static char **build_env(char *const *extra)
{
    size_t ne = 0, nx = 0;
    while (environ && environ[ne])
        ne++;
    while (extra && extra[nx])
        nx++;
    char **env = malloc((ne + nx + 1) * sizeof(*env));
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < ne; i++) {
        const char *e = environ[i];
        size_t name = strcspn(e, "=");
        bool replaced = false;
        for (size_t j = 0; j < nx && !replaced; j++)
            replaced = !strncmp(extra[j], e, name) && extra[j][name] == '=';
        if (!replaced)
            env[k++] = (char *)e;
    }
    for (size_t j = 0; j < nx; j++)
        env[k++] = extra[j];
    env[k] = NULL;
    return env;
}

static int check_opts(const disco__launch_opts *o, const char *cookie)
{
    size_t clen = strlen(cookie);
    if (clen == 0 || clen > DISCO_CLUSTER_COOKIE_MAX || strpbrk(cookie, "\r\n"))
        return disco_error_set(DISCO_EINVAL, "cannot launch worker %d: the "
                               "cookie must be 1 to %d bytes on one line",
                               o->pid_label, DISCO_CLUSTER_COOKIE_MAX);
    for (size_t j = 0; o->env && o->env[j]; j++) {
        const char *eq = strchr(o->env[j], '=');
        if (!eq || eq == o->env[j])
            return disco_error_set(DISCO_EINVAL, "cannot launch worker %d: "
                                   "environment entry \"%s\" is not "
                                   "NAME=value", o->pid_label, o->env[j]);
    }
    return 0;
}

/* posix_spawn with the pipes on 0, 1, 2 and nothing else open. */
static int spawn(const disco__launch_opts *o, const char *path, char **argv,
                 char **envp, const int in[2], const int out[2],
                 const int err[2], pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    int e = posix_spawn_file_actions_init(&fa);
    if (e != 0)
        return e;
    if ((e = posix_spawnattr_init(&at)) != 0) {
        posix_spawn_file_actions_destroy(&fa);
        return e;
    }
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
    if (!e)
        e = posix_spawn_file_actions_adddup2(&fa, err[1], STDERR_FILENO);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 34)
    /* Belt and braces: descriptors opened elsewhere without O_CLOEXEC. */
    if (!e)
        e = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
#endif
    if (!e && o->dir)
        e = posix_spawn_file_actions_addchdir_np(&fa, o->dir);
    if (!e)
        e = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK |
                                              POSIX_SPAWN_SETSIGDEF |
                                              POSIX_SPAWN_SETPGROUP);
    if (!e)
        e = posix_spawnattr_setsigmask(&at, &none);
    if (!e)
        e = posix_spawnattr_setsigdefault(&at, &all);
    if (!e)
        e = posix_spawnattr_setpgroup(&at, 0);
    if (!e)
        e = posix_spawnp(pid, path, &fa, &at, argv, envp);
    posix_spawnattr_destroy(&at);
    posix_spawn_file_actions_destroy(&fa);
    return e;
}

/* Writes "cookie\n" into the stdin pipe. The pipe is new and holds far
 * more than a cookie line, so this never blocks; we still hold the read
 * end, so it cannot raise SIGPIPE either. */
static int write_cookie(int fd, const char *cookie)
{
    char line[DISCO_CLUSTER_COOKIE_MAX + 1];
    size_t n = strlen(cookie);
    memcpy(line, cookie, n);
    line[n++] = '\n';
    ssize_t w;
    do
        w = write(fd, line, n);
    while (w < 0 && errno == EINTR);
    explicit_bzero(line, sizeof(line));
    return w == (ssize_t)n ? 0 : -1;
}

int disco__launch_start(const disco__launch_opts *o, disco__launched **out)
{
    if (!o || !out)
        return disco_error_set(DISCO_EINVAL, "disco__launch_start: NULL "
                                             "argument");
    const char *cookie = o->cookie ? o->cookie : disco_cluster_cookie();
    if (!cookie)
        return disco_error_code(disco_last_error());
    int rc = check_opts(o, cookie);
    if (rc != 0)
        return rc;
    pthread_once(&fw_once, fw_init);
    if (fw_init_errno)
        return disco_error_set(DISCO_ESYS, "cannot launch workers: %s",
                               strerror(fw_init_errno));

    uint64_t t0 = disco__now_ns();
    int in[2] = {-1, -1}, op[2] = {-1, -1}, ep[2] = {-1, -1};
    char **argv = NULL, **envp = NULL;
    char self[PATH_MAX];
    const char *path = o->exename ? o->exename : "/proc/self/exe";
    const char *argv0 = o->exename;
    if (!argv0) {
        ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
        self[n > 0 ? n : 0] = '\0';
        argv0 = n > 0 ? self : path;
    }

    disco__launched *l = calloc(1, sizeof(*l));
    size_t nflags = 0;
    while (o->exeflags && o->exeflags[nflags])
        nflags++;
    argv = calloc(nflags + 3, sizeof(*argv));
    envp = build_env(o->env);
    if (!l || !argv || !envp) {
        rc = disco_error_set(DISCO_ENOMEM, "out of memory launching worker "
                             "%d", o->pid_label);
        goto fail;
    }
    size_t k = 0;
    argv[k++] = (char *)argv0;
    for (size_t i = 0; i < nflags; i++)
        argv[k++] = o->exeflags[i];
    const char *flag = o->worker_flag ? o->worker_flag : DISCO__WORKER_FLAG;
    if (*flag)
        argv[k++] = (char *)flag;
    argv[k] = NULL;

    if (make_pipe(in) != 0 || make_pipe(op) != 0 || make_pipe(ep) != 0 ||
        write_cookie(in[1], cookie) != 0) {
        rc = disco_error_set(DISCO_ESYS, "cannot create the pipes of worker "
                             "%d: %s", o->pid_label, strerror(errno));
        goto fail;
    }
    pid_t pid;
    int e = spawn(o, path, argv, envp, in, op, ep, &pid);
    if (e != 0) {
        rc = disco_error_set(DISCO_ESYS, "cannot start worker %d (program "
                             "%s%s%s): %s", o->pid_label, path,
                             o->dir ? ", directory " : "",
                             o->dir ? o->dir : "", strerror(e));
        goto fail;
    }
    free(argv);
    free(envp);
    argv = envp = NULL;
    close_fd(&in[0]);
    close_fd(&op[1]);
    close_fd(&ep[1]);
    fcntl(op[0], F_SETFL, O_NONBLOCK);
    fcntl(ep[0], F_SETFL, O_NONBLOCK);

    l->pid = pid;
    l->label = o->pid_label;
    l->stdin_fd = in[1];
    l->timeout = o->timeout > 0 ? o->timeout : disco__worker_timeout();
    l->deadline = t0 + disco__sec_to_ns(l->timeout);
    l->out = (struct stream){.owner = l, .fd = op[0], .is_stdout = true};
    l->err = (struct stream){.owner = l, .fd = ep[0], .is_stdout = false};
    l->state = ST_PENDING;

    pthread_mutex_lock(&fw.lock);
    int e1 = stream_register(&l->out);
    int e2 = e1 ? 0 : stream_register(&l->err);
    int e3 = e1 || e2 ? 0 : forwarder_ensure();
    if (e2 || e3)
        stream_unregister(&l->out);
    if (e3)
        stream_unregister(&l->err);
    pthread_mutex_unlock(&fw.lock);
    if (e1 || e2 || e3) {
        int why = e1 ? e1 : e2 ? e2 : e3;
        rc = disco_error_set(why == ENOMEM ? DISCO_ENOMEM : DISCO_ESYS,
                             "cannot forward the output of worker %d: %s",
                             o->pid_label, strerror(why));
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        /* The pipe ends now belong to l; close them through it. */
        close(l->stdin_fd);
        close(l->out.fd);
        close(l->err.fd);
        free(l);
        return rc;
    }
    *out = l;
    return 0;

fail:
    for (int i = 0; i < 2; i++) {
        close_fd(&in[i]);
        close_fd(&op[i]);
        close_fd(&ep[i]);
    }
    free(argv);
    free(envp);
    free(l);
    return rc;
}

/* ---- waiting, reaping ---------------------------------------------------- */

/* "exited with status 3", "was killed by signal 9 (SIGKILL)". */
static void describe_status(int ws, char *buf, size_t len)
{
    if (WIFEXITED(ws)) {
        snprintf(buf, len, "exited with status %d", WEXITSTATUS(ws));
    } else if (WIFSIGNALED(ws)) {
        const char *name = NULL;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || __GLIBC_MINOR__ >= 32)
        name = sigabbrev_np(WTERMSIG(ws));
#endif
        snprintf(buf, len, "was killed by signal %d%s%s%s", WTERMSIG(ws),
                 name ? " (SIG" : "", name ? name : "", name ? ")" : "");
    } else {
        snprintf(buf, len, "ended with wait status %#x", (unsigned)ws);
    }
}

static void (*_Atomic exit_hook)(pid_t pid);

void disco__launched_set_exit_hook(void (*hook)(pid_t pid))
{
    atomic_store_explicit(&exit_hook, hook, memory_order_release);
}

int disco__launched_reap(disco__launched *l, double timeout, int *wstatus)
{
    if (!l)
        return disco_error_set(DISCO_EINVAL, "disco__launched_reap: NULL");
    uint64_t deadline =
        timeout < 0 ? UINT64_MAX : disco__now_ns() + disco__sec_to_ns(timeout);
    long nap_ns = 500000;
    if (l->lost)
        return disco_error_set(DISCO_ESYS, "worker %d (os pid %d) was reaped "
                               "elsewhere", l->label, (int)l->pid);
    while (!l->reaped) {
        /* Ended, but not reaped yet (WNOWAIT): the exit hook runs while
         * the pid is still ours. */
        siginfo_t si = {.si_pid = 0};
        int r = waitid(P_PID, (id_t)l->pid, &si,
                       WEXITED | WNOWAIT | (timeout < 0 ? 0 : WNOHANG));
        if (r == 0 && si.si_pid == l->pid) {
            void (*hook)(pid_t) = atomic_load_explicit(&exit_hook, memory_order_acquire);
            if (hook)
                hook(l->pid);
            int st;
            while (waitpid(l->pid, &st, 0) < 0 && errno == EINTR)
                ;
            l->reaped = true;
            l->wstatus = st;
            break;
        }
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            if (e == ECHILD)
                l->lost = true; /* never signal that pid again */
            return disco_error_set(DISCO_ESYS, "cannot wait for worker %d "
                                   "(os pid %d): %s", l->label, (int)l->pid,
                                   strerror(e));
        }
        uint64_t now = disco__now_ns();
        if (now >= deadline)
            return disco_error_set(DISCO_ETIMEDOUT, "worker %d (os pid %d) "
                                   "is still running after %g s", l->label,
                                   (int)l->pid, timeout);
        if ((uint64_t)nap_ns > deadline - now)
            nap_ns = (long)(deadline - now);
        nanosleep(&(struct timespec){0, nap_ns}, NULL);
        if (nap_ns < 20000000)
            nap_ns *= 2;
    }
    if (wstatus)
        *wstatus = l->wstatus;
    return 0;
}

int disco__launched_kill(disco__launched *l, int sig)
{
    if (!l)
        return disco_error_set(DISCO_EINVAL, "disco__launched_kill: NULL");
    if (l->reaped || l->lost)
        return disco_error_set(DISCO_ESTATE, "worker %d (os pid %d) has "
                               "already been reaped", l->label, (int)l->pid);
    if (kill(l->pid, sig) != 0)
        return disco_error_set(DISCO_ESYS, "cannot signal worker %d (os pid "
                               "%d): %s", l->label, (int)l->pid,
                               strerror(errno));
    return 0;
}

pid_t disco__launched_os_pid(const disco__launched *l)
{
    return l ? l->pid : -1;
}

/* Ends a launch that failed: the child is killed and reaped. */
static void finish_failed(disco__launched *l)
{
    if (!l->reaped && !l->lost) {
        kill(l->pid, SIGKILL);
        if (disco__launched_reap(l, 10.0, NULL) != 0)
            disco_error_clear();
    }
}

int disco__launch_wait_address(disco__launched *l, char *addr, size_t len)
{
    if (!l || !addr)
        return disco_error_set(DISCO_EINVAL, "disco__launch_wait_address: "
                                             "NULL argument");
    if (l->result != 0)
        return disco_error_set(l->result, "%s", l->msg);

    pthread_mutex_lock(&fw.lock);
    while (l->state == ST_PENDING) {
        if (disco__now_ns() >= l->deadline)
            break;
        struct timespec ts = {(time_t)(l->deadline / 1000000000u),
                              (long)(l->deadline % 1000000000u)};
        pthread_cond_timedwait(&fw.cond, &fw.lock, &ts);
    }
    enum launch_state st = l->state;
    enum launch_fail why = l->fail;
    pthread_mutex_unlock(&fw.lock);

    /* l->addr is final once the state left ST_PENDING. */
    if (st == ST_READY) {
        size_t n = strlen(l->addr);
        if (n >= len)
            return disco_error_set(DISCO_EMSGSIZE, "the address of worker "
                                   "%d needs %zu bytes", l->label, n + 1);
        memcpy(addr, l->addr, n + 1);
        return 0;
    }

    char what[120];
    int code = DISCO_EPROTO;
    if (st == ST_PENDING) {
        code = DISCO_ETIMEDOUT;
        snprintf(what, sizeof(what), "reported no address within %g s",
                 l->timeout);
    } else if (why == FAIL_LINES) {
        snprintf(what, sizeof(what), "printed %d lines without an address",
                 DISCO__LAUNCH_MAX_LINES);
    } else if (why == FAIL_BADADDR) {
        snprintf(what, sizeof(what), "reported an empty address or one "
                 "longer than %d bytes", DISCO__LAUNCH_ADDR_MAX - 1);
    } else {
        /* Its stdout ended: most likely it exited. Give it a moment to be
         * reapable, so the message can say how it ended. */
        if (disco__launched_reap(l, 2.0, NULL) == 0) {
            char how[80];
            describe_status(l->wstatus, how, sizeof(how));
            snprintf(what, sizeof(what), "%s before reporting its address",
                     how);
        } else {
            disco_error_clear();
            snprintf(what, sizeof(what), "closed its standard output before "
                     "reporting its address");
        }
    }
    finish_failed(l);
    snprintf(l->msg, sizeof(l->msg), "worker %d (os pid %d) %s", l->label,
             (int)l->pid, what);
    l->result = code;
    return disco_error_set(code, "%s", l->msg);
}

void disco__launched_free(disco__launched *l)
{
    if (!l)
        return;
    struct outbuf b = {0};
    pthread_mutex_lock(&fw.lock);
    struct stream *ss[2] = {&l->out, &l->err};
    for (int i = 0; i < 2; i++) {
        struct stream *s = ss[i];
        if (s->fd < 0)
            continue;
        /* Out of the forwarder's reach first, then copy what is left. */
        stream_unregister(s);
        size_t budget = DRAIN_MAX;
        while (s->fd >= 0 && budget > 0) {
            char buf[4096];
            ssize_t r = read(s->fd, buf, sizeof(buf));
            if (r > 0) {
                take_bytes(s, buf, (size_t)r, &b);
                budget -= (size_t)r < budget ? (size_t)r : budget;
            } else if (r < 0 && errno == EINTR) {
                continue;
            } else {
                break; /* EAGAIN (nothing more for now), EOF or error */
            }
        }
        stream_close(s, &b);
    }
    outbuf_flush_locked(&b);
    pthread_mutex_unlock(&fw.lock);
    outbuf_free(&b);
    close_fd(&l->stdin_fd);
    free(l);
}
