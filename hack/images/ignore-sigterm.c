/* ignore-sigterm: prints "ready", then ignores SIGTERM until killed; for
 * tests of stop timeouts (SIGTERM, then SIGKILL after the grace period). */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(void) {
    signal(SIGTERM, SIG_IGN);
    puts("ready");
    fflush(stdout);
    for (;;) pause();
}
