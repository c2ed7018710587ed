/* SPDX-License-Identifier: BSD-3-Clause */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

int test_run_self(const char *self, const char *mode, char *buf, size_t len)
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
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

bool test_shm_region_left(int pid)
{
    char prefix[24];
    int n = snprintf(prefix, sizeof(prefix), "%d:", pid);
    DIR *d = opendir("/dev/shm");
    if (!d)
        return false;
    bool found = false;
    for (struct dirent *e; (e = readdir(d));)
        found |= strncmp(e->d_name, prefix, (size_t)n) == 0;
    closedir(d);
    return found;
}
