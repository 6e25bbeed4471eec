/* A fake nvidia-cuda-mps-control for the tests: the part of the control daemon gpu-share uses.
 *
 *   fake -d   daemon, in the background: returns once $CUDA_MPS_PIPE_DIRECTORY/control listens
 *   fake -f   the same daemon, in the foreground
 *   fake      front-end: commands on stdin, sent to the daemon; its answers on stdout; exit 1
 *             when no daemon answers
 *
 * The daemon keeps the limits it is given and answers the get_* commands with them, as the real
 * one does; it never starts an MPS server, so get_server_list is empty. Every command and its
 * answer is appended to $CUDA_MPS_LOG_DIRECTORY/control.log as `cmd -> answer`, and the first
 * line records the daemon's CUDA_VISIBLE_DEVICES. FAKE_MPS_HANG=1 in the daemon's environment
 * makes it accept connections and never answer (to prove the client's timeout).
 *
 * The wire between this front-end and this daemon is its own (the real one is not documented):
 * the front-end sends every stdin line, shuts down its write side and prints what comes back.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static char pipe_dir[4096], log_dir[4096], sock_path[4200], pid_path[4200], log_path[4200];
static char mem_limit[256] = "0";
static char thread_pct[32] = "100.0";

static const char *env_or(const char *name, const char *fallback) {
    const char *v = getenv(name);
    return v && *v ? v : fallback;
}

static void log_line(const char *fmt, const char *a, const char *b) {
    FILE *f = fopen(log_path, "a");
    if (!f) return;
    fprintf(f, fmt, a, b);
    fclose(f);
}

static int sock_addr(struct sockaddr_un *addr) {
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    if (strlen(sock_path) >= sizeof addr->sun_path) return -1;
    strcpy(addr->sun_path, sock_path);
    return 0;
}

/* One command: the answer goes to `out` (empty when the real daemon prints nothing). Returns 1 on quit. */
static int handle(char *cmd, char *out, size_t n) {
    char a[256] = "", b[256] = "";
    out[0] = 0;
    if (strcmp(cmd, "quit") == 0 || strncmp(cmd, "quit ", 5) == 0) return 1;
    if (strcmp(cmd, "get_server_list") == 0) {
        /* no servers: the real daemon prints nothing either */
    } else if (sscanf(cmd, "set_default_device_pinned_mem_limit %255s %255s", a, b) == 2) {
        snprintf(mem_limit, sizeof mem_limit, "%s", b);
    } else if (sscanf(cmd, "get_default_device_pinned_mem_limit %255s", a) == 1) {
        snprintf(out, n, "%s", mem_limit);
    } else if (sscanf(cmd, "set_default_active_thread_percentage %255s", a) == 1) {
        snprintf(thread_pct, sizeof thread_pct, "%.1f", atof(a));
        snprintf(out, n, "%s", thread_pct);
    } else if (strcmp(cmd, "get_default_active_thread_percentage") == 0) {
        snprintf(out, n, "%s", thread_pct);
    } else {
        snprintf(out, n, "Unrecognized command: %s", cmd);
    }
    return 0;
}

static void serve(int listener) {
    int hang = strcmp(env_or("FAKE_MPS_HANG", "0"), "1") == 0;
    for (;;) {
        int c = accept(listener, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR) continue;
            exit(1);
        }
        if (hang) continue; /* keep it open, never answer */
        char buf[8192];
        size_t len = 0;
        ssize_t r;
        while (len < sizeof buf - 1 && (r = read(c, buf + len, sizeof buf - 1 - len)) > 0) len += r;
        buf[len] = 0;
        int quit = 0;
        for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
            char answer[512];
            quit = handle(line, answer, sizeof answer);
            log_line("%s -> %s\n", line, answer);
            if (answer[0]) {
                dprintf(c, "%s\n", answer);
            }
            if (quit) break;
        }
        close(c);
        if (quit) {
            unlink(sock_path);
            unlink(pid_path);
            exit(0);
        }
    }
}

static int daemon_main(int background) {
    mkdir(pipe_dir, 0755);
    mkdir(log_dir, 0755);
    struct sockaddr_un addr;
    if (sock_addr(&addr) < 0) return 1;
    int ready[2];
    if (background && pipe(ready) < 0) return 1;
    if (background) {
        pid_t pid = fork();
        if (pid < 0) return 1;
        if (pid > 0) {
            char ok = 0;
            close(ready[1]);
            return read(ready[0], &ok, 1) == 1 && ok == 1 ? 0 : 1;
        }
        close(ready[0]);
        setsid();
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
    }
    signal(SIGPIPE, SIG_IGN);
    unlink(sock_path);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(l, 16) < 0) return 1;
    chmod(sock_path, 0777);
    FILE *p = fopen(pid_path, "w");
    if (p) {
        fprintf(p, "%d\n", (int)getpid());
        fclose(p);
    }
    log_line("start CUDA_VISIBLE_DEVICES=%s%s\n", env_or("CUDA_VISIBLE_DEVICES", "(unset)"), "");
    if (background) {
        char ok = 1;
        if (write(ready[1], &ok, 1) != 1) return 1;
        close(ready[1]);
    }
    serve(l);
    return 0;
}

static int front_end(void) {
    struct sockaddr_un addr;
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    if (c < 0 || sock_addr(&addr) < 0 || connect(c, (struct sockaddr *)&addr, sizeof addr) < 0) {
        fprintf(stderr, "Cannot find MPS control daemon process\n");
        return 1;
    }
    char buf[8192];
    ssize_t r;
    while ((r = read(0, buf, sizeof buf)) > 0) {
        if (write(c, buf, r) != r) return 1;
    }
    shutdown(c, SHUT_WR);
    while ((r = read(c, buf, sizeof buf)) > 0) {
        if (write(1, buf, r) != r) return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    snprintf(pipe_dir, sizeof pipe_dir, "%s", env_or("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps"));
    snprintf(log_dir, sizeof log_dir, "%s", env_or("CUDA_MPS_LOG_DIRECTORY", "/var/log/nvidia-mps"));
    snprintf(sock_path, sizeof sock_path, "%s/control", pipe_dir);
    snprintf(pid_path, sizeof pid_path, "%s/nvidia-cuda-mps-control.pid", pipe_dir);
    snprintf(log_path, sizeof log_path, "%s/control.log", log_dir);
    if (argc > 1 && strcmp(argv[1], "-d") == 0) return daemon_main(1);
    if (argc > 1 && strcmp(argv[1], "-f") == 0) return daemon_main(0);
    if (argc > 1) {
        fprintf(stderr, "usage: %s [-d | -f]\n", argv[0]);
        return 2;
    }
    return front_end();
}
