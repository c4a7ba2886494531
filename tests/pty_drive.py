# Drives `kubectl exec -it` under a pty for tests/kubelet_metrics.rs:
# sets the window to 30x100, runs `stty size`, resizes to 40x120 (the
# kernel signals SIGWINCH to kubectl), runs `stty size` again, exits.
# argv: the kubectl command line. Prints what it saw; exit 0 on success.
import os, pty, sys, time, fcntl, termios, struct, select

def winsize(fd, rows, cols):
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
winsize(fd, 30, 100)
seen = b""

def expect(want, secs=60):
    global seen
    end = time.time() + secs
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 0.5)
        if r:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
            if want in seen:
                return True
    return False

def wait_for_size(rows, cols, mark):
    # The size travels kubectl -> apiserver -> kubelet -> runtime apart from
    # stdin, so the shell waits until it lands (bounded by expect's deadline)
    # rather than the script sleeping. The sums keep the size out of the echo.
    os.write(fd, b'until [ "$(stty size)" = "$((%d+1)) $((%d+1))" ]; do sleep 0.1; done; '
             b'echo %s=$(stty size)\n' % (rows - 1, cols - 1, mark))
    return expect(b"%s=%d %d" % (mark, rows, cols))

ok1 = wait_for_size(30, 100, b"mark-one")
winsize(fd, 40, 120)
ok2 = wait_for_size(40, 120, b"mark-two")
os.write(fd, b"exit 0\n")
time.sleep(1)
_, status = os.waitpid(pid, 0)
sys.stdout.write(repr(seen))
sys.exit(0 if ok1 and ok2 else 1)
