/* SPDX-License-Identifier: BSD-3-Clause */
/*
 * Launching workers, with real processes: this binary re-executes itself
 * (argv[1] names a child mode) to play the workers, and an intermediate
 * master for the test of the master's death.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cluster/launch.h"
#include "cluster/worker_boot.h"
#include "disco.h"
#include "test_util.h"

#define COOKIE "c00k1e-0123456789abcdef-s3cr3t"

/* ---- child modes: what the launched programs do ---------------------------- */

static void sleep_forever(void)
{
    for (;;)
        pause();
}

static int read_cookie_or_die(char *buf, size_t len)
{
    if (disco__worker_read_cookie(buf, len) != 0) {
        fprintf(stderr, "child: %s\n", disco_error_message(disco_last_error()));
        _exit(9);
    }
    return 0;
}

/* Open descriptors, not counting the one that lists them. */
static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1;
}

static bool is_fifo(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISFIFO(st.st_mode);
}

/* Reports what it received as its "address":
 * P|cookie|LAUNCH_TEST_VAR|LAUNCH_TEST_INHERIT|entries of LAUNCH_TEST_VAR|
 *  cwd|open fds|0,1,2 are pipes|last argv is the worker flag */
static int mode_probe(int argc, char **argv)
{
    char cookie[DISCO_CLUSTER_COOKIE_MAX + 1];
    read_cookie_or_die(cookie, sizeof(cookie));
    int nfds = count_fds();
    int pipes = is_fifo(0) && is_fifo(1) && is_fifo(2);
    extern char **environ;
    int nvar = 0;
    for (char **e = environ; *e; e++)
        nvar += !strncmp(*e, "LAUNCH_TEST_VAR=", 16);
    char cwd[128];
    if (!getcwd(cwd, sizeof(cwd)))
        strcpy(cwd, "?");
    const char *v = getenv("LAUNCH_TEST_VAR");
    const char *inh = getenv("LAUNCH_TEST_INHERIT");
    char addr[1024]; /* announce refuses more than DISCO__LAUNCH_ADDR_MAX */
    snprintf(addr, sizeof(addr), "P|%s|%s|%s|%d|%s|%d|%d|%d", cookie,
             v ? v : "-", inh ? inh : "-", nvar, cwd, nfds, pipes,
             !strcmp(argv[argc - 1], DISCO__WORKER_FLAG));
    disco__worker_watchdog_start(INFINITY, NULL, NULL);
    disco__worker_announce(addr);
    sleep_forever();
    return 0;
}

static int mode_silent(void)
{
    char cookie[DISCO_CLUSTER_COOKIE_MAX + 1];
    read_cookie_or_die(cookie, sizeof(cookie));
    disco__worker_watchdog_start(INFINITY, NULL, NULL);
    sleep_forever();
    return 0;
}

static int mode_chatty(void)
{
    char cookie[DISCO_CLUSTER_COOKIE_MAX + 1];
    read_cookie_or_die(cookie, sizeof(cookie));
    disco__worker_watchdog_start(INFINITY, NULL, NULL);
    for (int i = 0; i < 1500; i++)
        printf("noise %d\n", i);
    fflush(stdout);
    sleep_forever();
    return 0;
}

static int mode_early_exit(void)
{
    char cookie[DISCO_CLUSTER_COOKIE_MAX + 1];
    read_cookie_or_die(cookie, sizeof(cookie));
    printf("about to fail\n");
    fprintf(stderr, "oops\n");
    fflush(stdout);
    return 3;
}

static int mode_talker(void)
{
    char cookie[DISCO_CLUSTER_COOKIE_MAX + 1];
    read_cookie_or_die(cookie, sizeof(cookie));
    printf("before address\n"); /* still in stdio: announce flushes it */
    disco__worker_announce("talker-addr");
    printf("after on stdout\n");
    fflush(stdout);
    fprintf(stderr, "after on stderr\n");
    static char longline[5001];
    memset(longline, 'x', 5000);
    printf("%s\n", longline);
    printf("tail");
    fflush(stdout);
    return 0;
}

/* Worker with the default watchdog: connect timeout from
 * DISCO_WORKER_TIMEOUT; "connected" tells it the master is there. */
static int mode_watchdog(bool connected)
{
    char cookie[DISCO_CLUSTER_COOKIE_MAX + 1];
    read_cookie_or_die(cookie, sizeof(cookie));
    if (disco__worker_watchdog_start(0, NULL, NULL) != 0)
        return 8;
    if (disco__worker_watchdog_start(0, NULL, NULL) != DISCO_EBUSY)
        return 7;
    disco__worker_announce("watchdog-addr");
    if (connected)
        disco__worker_master_connected();
    sleep_forever();
    return 0;
}

/* An intermediate master: launches a worker, prints its os pid on stdout,
 * then waits to be killed. */
static int mode_intermediate(void)
{
    char *flags[] = {"watch", NULL};
    disco__launch_opts o = {.exeflags = flags, .cookie = COOKIE,
                            .pid_label = 2};
    disco__launched *l;
    char addr[DISCO__LAUNCH_ADDR_MAX];
    if (disco__launch_start(&o, &l) != 0 ||
        disco__launch_wait_address(l, addr, sizeof(addr)) != 0) {
        fprintf(stderr, "intermediate: %s\n",
                disco_error_message(disco_last_error()));
        return 1;
    }
    printf("%d\n", (int)disco__launched_os_pid(l));
    fflush(stdout);
    sleep_forever();
    return 0;
}

static int child_mode(int argc, char **argv)
{
    const char *m = argv[1];
    if (!strcmp(m, "probe"))
        return mode_probe(argc, argv);
    if (!strcmp(m, "silent"))
        return mode_silent();
    if (!strcmp(m, "chatty"))
        return mode_chatty();
    if (!strcmp(m, "early-exit"))
        return mode_early_exit();
    if (!strcmp(m, "talker"))
        return mode_talker();
    if (!strcmp(m, "watch"))
        return mode_watchdog(true);
    if (!strcmp(m, "no-connect"))
        return mode_watchdog(false);
    if (!strcmp(m, "intermediate"))
        return mode_intermediate();
    return 2;
}

/* ---- helpers of the tests -------------------------------------------------- */

static char *const probe_flags[] = {"probe", NULL};

/* Redirects this process's stderr (fd 2) into a temporary file. */
struct capture {
    int saved, fd;
};

static void capture_start(struct capture *c)
{
    char tmpl[] = "/tmp/disco-test-launch-XXXXXX";
    fflush(stderr);
    c->fd = mkostemp(tmpl, O_CLOEXEC);
    assert_true(c->fd >= 0);
    unlink(tmpl);
    c->saved = fcntl(2, F_DUPFD_CLOEXEC, 3);
    assert_true(c->saved >= 0);
    dup2(c->fd, 2);
}

/* Restores stderr and returns what was written meanwhile (malloc'ed). */
static char *capture_end(struct capture *c)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    off_t size = lseek(c->fd, 0, SEEK_END);
    char *buf = malloc((size_t)size + 1);
    assert_non_null(buf);
    ssize_t n = pread(c->fd, buf, (size_t)size, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(c->fd);
    return buf;
}

/* Splits s at '|' into at most max fields; returns how many. */
static int split(char *s, char **f, int max)
{
    int n = 0;
    for (char *p = s; n < max;) {
        f[n++] = p;
        char *bar = strchr(p, '|');
        if (!bar)
            break;
        *bar = '\0';
        p = bar + 1;
    }
    return n;
}

/* Reads /proc/<pid>/<what> (a file of NUL-separated strings). */
static size_t read_proc(pid_t pid, const char *what, char *buf, size_t len)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, what);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t used = 0;
    ssize_t n;
    while (used < len && (n = read(fd, buf + used, len - used)) > 0)
        used += (size_t)n;
    close(fd);
    return used;
}

/* waitpid for up to secs seconds. Returns the pid or 0 on timeout. */
static pid_t wait_for(pid_t pid, double secs, int *status)
{
    for (int i = 0; i < secs * 100; i++) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r != 0)
            return r;
        nanosleep(&(struct timespec){0, 10000000}, NULL);
    }
    return 0;
}

static bool is_gone(pid_t pid)
{
    return kill(pid, 0) != 0 && errno == ESRCH;
}

/* ---- tests --------------------------------------------------------------- */

static void test_address_and_cookie(void **state)
{
    (void)state;
    disco__launch_opts o = {.exeflags = probe_flags, .cookie = COOKIE,
                            .pid_label = 2, .timeout = 30};
    disco__launched *l;
    assert_int_equal(disco__launch_start(&o, &l), 0);
    pid_t pid = disco__launched_os_pid(l);
    assert_true(pid > 0);
    char addr[DISCO__LAUNCH_ADDR_MAX];
    assert_int_equal(disco__launch_wait_address(l, addr, sizeof(addr)), 0);
    /* A second call returns the same address. */
    char again[DISCO__LAUNCH_ADDR_MAX];
    assert_int_equal(disco__launch_wait_address(l, again, sizeof(again)), 0);
    assert_string_equal(addr, again);
    char tiny[4];
    assert_int_equal(disco__launch_wait_address(l, tiny, sizeof(tiny)),
                     DISCO_EMSGSIZE);

    char *f[9];
    assert_int_equal(split(addr, f, 9), 9);
    assert_string_equal(f[0], "P");
    assert_string_equal(f[1], COOKIE);  /* it came through stdin */
    assert_string_equal(f[7], "1");     /* 0, 1, 2 are pipes */
    assert_string_equal(f[8], "1");     /* the worker flag is last */

    /* Neither the command line nor the environment holds the cookie. */
    static char buf[1 << 16];
    size_t n = read_proc(pid, "cmdline", buf, sizeof(buf));
    assert_true(n > 0);
    assert_null(memmem(buf, n, COOKIE, strlen(COOKIE)));
    assert_non_null(memmem(buf, n, "probe\0" DISCO__WORKER_FLAG,
                           sizeof("probe\0" DISCO__WORKER_FLAG)));
    n = read_proc(pid, "environ", buf, sizeof(buf));
    assert_true(n > 0);
    assert_null(memmem(buf, n, COOKIE, strlen(COOKIE)));

    assert_int_equal(disco__launched_kill(l, SIGTERM), 0);
    int st;
    assert_int_equal(disco__launched_reap(l, 10, &st), 0);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM);
    /* Reaped: the status stays, the pid is no longer ours to signal. */
    assert_int_equal(disco__launched_reap(l, 0, &st), 0);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(disco__launched_kill(l, SIGTERM), DISCO_ESTATE);
    disco__launched_free(l);
    assert_true(is_gone(pid));
}

static void test_env_dir_and_fds(void **state)
{
    (void)state;
    setenv("LAUNCH_TEST_VAR", "inherited", 1);
    setenv("LAUNCH_TEST_INHERIT", "kept", 1);
    /* A descriptor opened without O_CLOEXEC must not reach the child. */
    int leaky = open("/dev/null", O_RDONLY);
    assert_true(leaky >= 0);
    char *env[] = {"LAUNCH_TEST_VAR=replaced", NULL};
    disco__launch_opts o = {.exeflags = probe_flags, .cookie = COOKIE,
                            .env = env, .dir = "/", .pid_label = 3};
    disco__launched *l;
    assert_int_equal(disco__launch_start(&o, &l), 0);
    close(leaky);
    unsetenv("LAUNCH_TEST_VAR");
    unsetenv("LAUNCH_TEST_INHERIT");
    char addr[DISCO__LAUNCH_ADDR_MAX];
    assert_int_equal(disco__launch_wait_address(l, addr, sizeof(addr)), 0);
    char *f[9];
    assert_int_equal(split(addr, f, 9), 9);
    assert_string_equal(f[2], "replaced");
    assert_string_equal(f[3], "kept");
    assert_string_equal(f[4], "1"); /* replaced, not added twice */
    assert_string_equal(f[5], "/");
    assert_string_equal(f[6], "3"); /* stdin, stdout, stderr: nothing else */
    assert_int_equal(disco__launched_kill(l, SIGKILL), 0);
    assert_int_equal(disco__launched_reap(l, 10, NULL), 0);
    disco__launched_free(l);
}

/* A master whose stdin is closed: the pipe it creates may land on fd 0. */
static void test_master_without_stdin(void **state)
{
    (void)state;
    int saved = fcntl(0, F_DUPFD_CLOEXEC, 3);
    assert_true(saved >= 0);
    close(0);
    disco__launch_opts o = {.exeflags = probe_flags, .cookie = COOKIE,
                            .pid_label = 10};
    disco__launched *l;
    int rc = disco__launch_start(&o, &l);
    dup2(saved, 0);
    close(saved);
    assert_int_equal(rc, 0);
    char addr[DISCO__LAUNCH_ADDR_MAX];
    assert_int_equal(disco__launch_wait_address(l, addr, sizeof(addr)), 0);
    char *f[9];
    assert_int_equal(split(addr, f, 9), 9);
    assert_string_equal(f[1], COOKIE);
    assert_string_equal(f[6], "3");
    assert_string_equal(f[7], "1");
    assert_int_equal(disco__launched_kill(l, SIGKILL), 0);
    assert_int_equal(disco__launched_reap(l, 10, NULL), 0);
    disco__launched_free(l);
}

static void test_no_address_times_out(void **state)
{
    (void)state;
    char *flags[] = {"silent", NULL};
    disco__launch_opts o = {.exeflags = flags, .cookie = COOKIE,
                            .timeout = 0.5, .pid_label = 4};
    disco__launched *l;
    assert_int_equal(disco__launch_start(&o, &l), 0);
    pid_t pid = disco__launched_os_pid(l);
    char addr[DISCO__LAUNCH_ADDR_MAX];
    assert_int_equal(disco__launch_wait_address(l, addr, sizeof(addr)),
                     DISCO_ETIMEDOUT);
    char want[128];
    snprintf(want, sizeof(want), "worker 4 (os pid %d) reported no address "
             "within 0.5 s", (int)pid);
    assert_string_equal(disco_error_message(disco_last_error()), want);
    /* Killed and reaped: no zombie left. */
    assert_true(is_gone(pid));
    int st;
    assert_int_equal(disco__launched_reap(l, 0, &st), 0);
    assert_true(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    /* The failure sticks. */
    assert_int_equal(disco__launch_wait_address(l, addr, sizeof(addr)),
                     DISCO_ETIMEDOUT);
    disco__launched_free(l);
}

static void test_too_many_lines(void **state)
{
    (void)state;
    char *flags[] = {"chatty", NULL};
    disco__launch_opts o = {.exeflags = flags, .cookie = COOKIE,
                            .timeout = 30, .pid_label = 5};
    struct capture c;
    capture_start(&c);
    disco__launched *l;
    int rc = disco__launch_start(&o, &l);
    pid_t pid = rc == 0 ? disco__launched_os_pid(l) : 0;
    char addr[DISCO__LAUNCH_ADDR_MAX];
    int wrc = rc == 0 ? disco__launch_wait_address(l, addr, sizeof(addr)) : rc;
    disco__launched_free(rc == 0 ? l : NULL);
    char *out = capture_end(&c);
    assert_int_equal(rc, 0);
    assert_int_equal(wrc, DISCO_EPROTO);
    assert_non_null(strstr(disco_error_message(disco_last_error()),
                           "printed 1000 lines without an address"));
    assert_true(is_gone(pid));
    /* The lines were forwarded. */
    assert_non_null(strstr(out, "From worker 5: noise 0\n"));
    assert_non_null(strstr(out, "From worker 5: noise 998\n"));
    free(out);
}

static void test_early_exit(void **state)
{
    (void)state;
    char *flags[] = {"early-exit", NULL};
    disco__launch_opts o = {.exeflags = flags, .cookie = COOKIE,
                            .timeout = 30, .pid_label = 6};
    struct capture c;
    capture_start(&c);
    disco__launched *l;
    int rc = disco__launch_start(&o, &l);
    pid_t pid = rc == 0 ? disco__launched_os_pid(l) : 0;
    char addr[DISCO__LAUNCH_ADDR_MAX];
    int wrc = rc == 0 ? disco__launch_wait_address(l, addr, sizeof(addr)) : rc;
    int st = 0;
    int rrc = rc == 0 ? disco__launched_reap(l, 0, &st) : rc;
    disco__launched_free(rc == 0 ? l : NULL);
    char *out = capture_end(&c);
    assert_int_equal(rc, 0);
    assert_int_equal(wrc, DISCO_EPROTO);
    char want[128];
    snprintf(want, sizeof(want), "worker 6 (os pid %d) exited with status 3 "
             "before reporting its address", (int)pid);
    assert_string_equal(disco_error_message(disco_last_error()), want);
    assert_int_equal(rrc, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    assert_true(is_gone(pid));
    assert_non_null(strstr(out, "From worker 6: about to fail\n"));
    assert_non_null(strstr(out, "From worker 6: oops\n"));
    free(out);
}

static void test_output_forwarded(void **state)
{
    (void)state;
    char *flags[] = {"talker", NULL};
    disco__launch_opts o = {.exeflags = flags, .cookie = COOKIE,
                            .timeout = 30, .pid_label = 7};
    struct capture c;
    capture_start(&c);
    disco__launched *l;
    int rc = disco__launch_start(&o, &l);
    char addr[DISCO__LAUNCH_ADDR_MAX] = "";
    int wrc = rc == 0 ? disco__launch_wait_address(l, addr, sizeof(addr)) : rc;
    int st = -1;
    int rrc = rc == 0 ? disco__launched_reap(l, 30, &st) : rc;
    disco__launched_free(rc == 0 ? l : NULL);
    char *out = capture_end(&c);
    assert_int_equal(rc, 0);
    assert_int_equal(wrc, 0);
    assert_string_equal(addr, "talker-addr");
    assert_int_equal(rrc, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    assert_non_null(strstr(out, "From worker 7: before address\n"));
    assert_non_null(strstr(out, "From worker 7: after on stdout\n"));
    assert_non_null(strstr(out, "From worker 7: after on stderr\n"));
    assert_non_null(strstr(out, "From worker 7: tail\n")); /* no newline */
    assert_null(strstr(out, "disco-worker-address"));
    /* The 5000-byte line comes in two pieces, 4096 + 904 bytes. */
    char piece[4200];
    int h = snprintf(piece, sizeof(piece), "From worker 7: ");
    memset(piece + h, 'x', 4096);
    strcpy(piece + h + 4096, "\n");
    assert_non_null(strstr(out, piece));
    memset(piece + h, 'x', 904);
    strcpy(piece + h + 904, "\n");
    assert_non_null(strstr(out, piece));
    /* Every line is whole and prefixed. */
    for (char *p = out; *p; p = strchr(p, '\n') + 1) {
        assert_true(!strncmp(p, "From worker 7: ", 15));
        assert_non_null(strchr(p, '\n'));
    }
    free(out);
}

static void test_parallel_launch(void **state)
{
    (void)state;
    enum { N = 16 };
    disco__launched *l[N];
    pid_t pid[N];
    for (int i = 0; i < N; i++) {
        disco__launch_opts o = {.exeflags = probe_flags, .cookie = COOKIE,
                                .timeout = 60, .pid_label = 2 + i};
        assert_int_equal(disco__launch_start(&o, &l[i]), 0);
        pid[i] = disco__launched_os_pid(l[i]);
    }
    for (int i = 0; i < N; i++) {
        char addr[DISCO__LAUNCH_ADDR_MAX];
        assert_int_equal(disco__launch_wait_address(l[i], addr, sizeof(addr)),
                         0);
        char *f[9];
        assert_int_equal(split(addr, f, 9), 9);
        assert_string_equal(f[1], COOKIE);
        for (int j = 0; j < i; j++)
            assert_true(pid[j] != pid[i]);
    }
    /* Freeing closes their stdin: their watchdogs end them (status 0). */
    for (int i = 0; i < N; i++)
        disco__launched_free(l[i]);
    for (int i = 0; i < N; i++) {
        int st = -1;
        assert_int_equal(wait_for(pid[i], 30, &st), pid[i]);
        assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
}

/* An intermediate master launches a worker and is SIGKILLed: the worker
 * sees EOF on stdin and exits. This process is a subreaper, so the orphaned
 * worker becomes its child and its exit status can be checked. */
static const char *self_path;

static void test_master_death(void **state)
{
    (void)state;
    assert_int_equal(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    pid_t mid = fork();
    assert_true(mid >= 0);
    if (mid == 0) {
        dup2(p[1], 1);
        execl(self_path, self_path, "intermediate", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char line[32] = "";
    size_t used = 0;
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    while (!strchr(line, '\n') && used < sizeof(line) - 1 &&
           poll(&pfd, 1, 60000) == 1) {
        ssize_t n = read(p[0], line + used, sizeof(line) - 1 - used);
        if (n <= 0)
            break;
        used += (size_t)n;
        line[used] = '\0';
    }
    close(p[0]);
    pid_t worker = (pid_t)atoi(line);
    assert_true(worker > 0);
    assert_int_equal(kill(worker, 0), 0);
    assert_int_equal(kill(mid, SIGKILL), 0);
    int st;
    assert_int_equal(waitpid(mid, &st, 0), mid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(wait_for(worker, 30, &st), worker);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    prctl(PR_SET_CHILD_SUBREAPER, 0);
}

static void test_worker_connect_timeout(void **state)
{
    (void)state;
    char *flags[] = {"no-connect", NULL};
    char *env[] = {"DISCO_WORKER_TIMEOUT=1", NULL};
    disco__launch_opts o = {.exeflags = flags, .cookie = COOKIE, .env = env,
                            .timeout = 30, .pid_label = 8};
    struct capture c;
    capture_start(&c);
    disco__launched *l;
    int rc = disco__launch_start(&o, &l);
    char addr[DISCO__LAUNCH_ADDR_MAX] = "";
    int wrc = rc == 0 ? disco__launch_wait_address(l, addr, sizeof(addr)) : rc;
    int st = -1;
    int rrc = rc == 0 ? disco__launched_reap(l, 30, &st) : rc;
    disco__launched_free(rc == 0 ? l : NULL);
    char *out = capture_end(&c);
    assert_int_equal(rc, 0);
    assert_int_equal(wrc, 0);
    assert_string_equal(addr, "watchdog-addr");
    assert_int_equal(rrc, 0);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    assert_non_null(strstr(out, "From worker 8: disco worker: the master did "
                                "not connect within 1 s"));
    free(out);
}

static void test_worker_connected_stays(void **state)
{
    (void)state;
    char *flags[] = {"watch", NULL};
    char *env[] = {"DISCO_WORKER_TIMEOUT=0.2", NULL};
    disco__launch_opts o = {.exeflags = flags, .cookie = COOKIE, .env = env,
                            .timeout = 30, .pid_label = 9};
    disco__launched *l;
    assert_int_equal(disco__launch_start(&o, &l), 0);
    pid_t pid = disco__launched_os_pid(l);
    char addr[DISCO__LAUNCH_ADDR_MAX];
    assert_int_equal(disco__launch_wait_address(l, addr, sizeof(addr)), 0);
    /* Connected: the timeout no longer applies; it is still there well
     * after it. */
    assert_int_equal(disco__launched_reap(l, 1.0, NULL), DISCO_ETIMEDOUT);
    /* EOF on stdin still ends it. */
    disco__launched_free(l);
    int st = -1;
    assert_int_equal(wait_for(pid, 30, &st), pid);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static void test_launch_errors(void **state)
{
    (void)state;
    disco__launched *l = NULL;
    disco__launch_opts o = {.exeflags = probe_flags, .cookie = COOKIE};
    assert_int_equal(disco__launch_start(NULL, &l), DISCO_EINVAL);
    assert_int_equal(disco__launch_start(&o, NULL), DISCO_EINVAL);
    o.cookie = "two\nlines";
    assert_int_equal(disco__launch_start(&o, &l), DISCO_EINVAL);
    o.cookie = "";
    assert_int_equal(disco__launch_start(&o, &l), DISCO_EINVAL);
    char big[DISCO_CLUSTER_COOKIE_MAX + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    o.cookie = big;
    assert_int_equal(disco__launch_start(&o, &l), DISCO_EINVAL);
    o.cookie = COOKIE;
    char *bad_env[] = {"NOEQUALS", NULL};
    o.env = bad_env;
    assert_int_equal(disco__launch_start(&o, &l), DISCO_EINVAL);
    o.env = NULL;
    o.exename = "/nonexistent/disco-program";
    assert_int_equal(disco__launch_start(&o, &l), DISCO_ESYS);
    assert_non_null(strstr(disco_error_message(disco_last_error()),
                           "/nonexistent/disco-program"));
    o.exename = NULL;
    o.dir = "/nonexistent-dir";
    assert_int_equal(disco__launch_start(&o, &l), DISCO_ESYS);
    assert_non_null(strstr(disco_error_message(disco_last_error()),
                           "/nonexistent-dir"));
    assert_null(l);
    assert_int_equal(disco__launch_wait_address(NULL, big, 1), DISCO_EINVAL);
    assert_int_equal(disco__launched_reap(NULL, 0, NULL), DISCO_EINVAL);
    assert_int_equal(disco__launched_kill(NULL, 0), DISCO_EINVAL);
    disco__launched_free(NULL);
}

/* disco__worker_read_cookie reads fd 0: feed it through a pipe. */
static int read_cookie_from(const char *data, size_t dlen, char *buf,
                            size_t len, char *rest, size_t rlen)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], data, dlen), (ssize_t)dlen);
    close(p[1]);
    int saved = fcntl(0, F_DUPFD_CLOEXEC, 3);
    dup2(p[0], 0);
    close(p[0]);
    int rc = disco__worker_read_cookie(buf, len);
    if (rest) {
        ssize_t n = read(0, rest, rlen - 1);
        rest[n > 0 ? n : 0] = '\0';
    }
    dup2(saved, 0);
    close(saved);
    return rc;
}

static void test_read_cookie(void **state)
{
    (void)state;
    char buf[DISCO_CLUSTER_COOKIE_MAX + 1], rest[32];
    assert_int_equal(read_cookie_from("abc\nrest", 8, buf, sizeof(buf), rest,
                                      sizeof(rest)), 0);
    assert_string_equal(buf, "abc");
    assert_string_equal(rest, "rest"); /* nothing past the line consumed */
    assert_int_equal(read_cookie_from("abc\r\n", 5, buf, sizeof(buf), NULL,
                                      0), 0);
    assert_string_equal(buf, "abc");
    assert_int_equal(read_cookie_from("abc", 3, buf, sizeof(buf), NULL, 0),
                     DISCO_EPROTO);
    assert_int_equal(buf[0], '\0'); /* wiped */
    assert_int_equal(read_cookie_from("\n", 1, buf, sizeof(buf), NULL, 0),
                     DISCO_EPROTO);
    char longl[300];
    memset(longl, 'k', sizeof(longl) - 1);
    longl[sizeof(longl) - 1] = '\n';
    assert_int_equal(read_cookie_from(longl, sizeof(longl), buf, sizeof(buf),
                                      NULL, 0), DISCO_EPROTO);
    char small[4];
    assert_int_equal(read_cookie_from("abcdef\n", 7, small, sizeof(small),
                                      NULL, 0), DISCO_EPROTO);
    assert_int_equal(read_cookie_from("abc\n", 4, small, sizeof(small), NULL,
                                      0), 0);
    assert_string_equal(small, "abc");
    assert_int_equal(disco__worker_read_cookie(NULL, 10), DISCO_EINVAL);
    assert_int_equal(disco__worker_read_cookie(buf, 1), DISCO_EINVAL);
}

static void test_announce_rejects(void **state)
{
    (void)state;
    assert_int_equal(disco__worker_announce(NULL), DISCO_EINVAL);
    assert_int_equal(disco__worker_announce(""), DISCO_EINVAL);
    assert_int_equal(disco__worker_announce("a\nb"), DISCO_EINVAL);
    char big[DISCO__LAUNCH_ADDR_MAX + 1];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_int_equal(disco__worker_announce(big), DISCO_EINVAL);
}

static void test_worker_timeout_env(void **state)
{
    (void)state;
    unsetenv("DISCO_WORKER_TIMEOUT");
    assert_true(disco__worker_timeout() == DISCO__WORKER_TIMEOUT_DEFAULT);
    setenv("DISCO_WORKER_TIMEOUT", "2.5", 1);
    assert_true(disco__worker_timeout() == 2.5);
    struct capture c;
    capture_start(&c);
    setenv("DISCO_WORKER_TIMEOUT", "soon", 1);
    double t = disco__worker_timeout();
    setenv("DISCO_WORKER_TIMEOUT", "-1", 1);
    double t2 = disco__worker_timeout();
    unsetenv("DISCO_WORKER_TIMEOUT");
    char *out = capture_end(&c);
    assert_true(t == DISCO__WORKER_TIMEOUT_DEFAULT);
    assert_true(t2 == DISCO__WORKER_TIMEOUT_DEFAULT);
    assert_non_null(strstr(out, "ignoring DISCO_WORKER_TIMEOUT=soon"));
    free(out);
}

/* Last: every process the tests started has been reaped. */
static void test_no_children_left(void **state)
{
    (void)state;
    assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
    assert_int_equal(errno, ECHILD);
}

int main(int argc, char **argv)
{
    self_path = argv[0];
    if (argc > 1)
        return child_mode(argc, argv);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_address_and_cookie),
        cmocka_unit_test(test_env_dir_and_fds),
        cmocka_unit_test(test_master_without_stdin),
        cmocka_unit_test(test_no_address_times_out),
        cmocka_unit_test(test_too_many_lines),
        cmocka_unit_test(test_early_exit),
        cmocka_unit_test(test_output_forwarded),
        cmocka_unit_test(test_parallel_launch),
        cmocka_unit_test(test_master_death),
        cmocka_unit_test(test_worker_connect_timeout),
        cmocka_unit_test(test_worker_connected_stays),
        cmocka_unit_test(test_launch_errors),
        cmocka_unit_test(test_read_cookie),
        cmocka_unit_test(test_announce_rejects),
        cmocka_unit_test(test_worker_timeout_env),
        cmocka_unit_test(test_no_children_left),
    };
    return cmocka_run_group_tests_name("launch", tests, NULL, NULL);
}
