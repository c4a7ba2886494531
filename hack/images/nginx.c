/* nginx: a stand-in for the nginx the conformance suite expects, serving
 * with busybox httpd. It behaves as nginx does where the tests look: it runs
 * in the foreground as the container's main process, is named nginx, shows
 * "nginx: master process" in its command line, writes /var/run/nginx.pid,
 * and serves /usr/share/nginx/html on port 80 (NGINX_PORT overrides). */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TITLE "nginx: master process nginx -g daemon off;"

static pid_t child;

static void forward(int sig) {
    if (child > 0) kill(child, sig);
    _exit(0);
}

int main(int argc, char **argv) {
    (void)argc;
    if (strcmp(argv[0], TITLE) != 0) {
        char *args[] = {TITLE, NULL};
        execv("/proc/self/exe", args);
        perror("nginx: re-exec");
        return 1;
    }
    FILE *pidfile = fopen("/var/run/nginx.pid", "w");
    if (pidfile) {
        fprintf(pidfile, "%d\n", getpid());
        fclose(pidfile);
    }
    const char *port = getenv("NGINX_PORT");
    if (!port) port = "80";
    signal(SIGTERM, forward);
    signal(SIGINT, forward);
    signal(SIGQUIT, forward);
    child = fork();
    if (child == 0) {
        /* By PATH: Debian's busybox installs httpd as /usr/sbin/httpd. */
        execlp("httpd", "httpd", "-f", "-p", port, "-h", "/usr/share/nginx/html", (char *)NULL);
        perror("nginx: httpd");
        _exit(127);
    }
    int status = 0;
    for (;;) {
        pid_t pid = wait(&status);
        if (pid == child) return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
        if (pid < 0) pause();
    }
}
