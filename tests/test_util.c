/* SPDX-License-Identifier: BSD-3-Clause */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "test_util.h"

pid_t test_spawn_self(const char *self, const char *mode, char *buf, size_t len)
{
    int fds[2];
    if (pipe(fds) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 2);
        close(fds[0]);
        close(fds[1]);
        execl(self, self, mode, (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + used, len - 1 - used)) > 0)
        if ((used += (size_t)n) == len - 1)
            break;
    buf[used] = '\0';
    close(fds[0]);
    return pid;
}

int test_run_self(const char *self, const char *mode, char *buf, size_t len)
{
    pid_t pid = test_spawn_self(self, mode, buf, len);
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return status;
}

double test_wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

bool test_shm_region_left(int pid, double since)
{
    char prefix[24];
    int n = snprintf(prefix, sizeof(prefix), "%d:", pid);
    DIR *d = opendir("/dev/shm");
    if (!d)
        return false;
    bool found = false;
    for (struct dirent *e; (e = readdir(d));) {
        struct stat st;
        if (strncmp(e->d_name, prefix, (size_t)n) != 0 ||
            fstatat(dirfd(d), e->d_name, &st, 0) != 0)
            continue;
        /* File times tick coarsely (a few ms behind the clock): a second of
         * slack, far below the time a pid takes to come round again. */
        double written = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9;
        found |= written >= since - 1.0;
    }
    closedir(d);
    return found;
}
