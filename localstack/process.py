"""Small helpers shared by the local service launchers: ports on loopback and process lifetimes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["STOP_GRACE_S", "alive", "free_port", "pid_from", "port_in_use", "terminate", "wait_for_port"]

# Every process a launcher, a test or `trail run` starts gets SIGTERM, then SIGKILL (its whole process group) when it
# has not exited after this long: a wedged worker or broker can delay a stop, never leak.
STOP_GRACE_S = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, timeout_s: float, host: str = "127.0.0.1") -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if port_in_use(port, host):
            return True
        time.sleep(0.1)
    return False


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def terminate(pid: int, process: subprocess.Popen[bytes] | None, timeout_s: float = STOP_GRACE_S) -> bool:
    """SIGTERM, wait up to ``timeout_s``, then SIGKILL the whole process group (the launchers start each
    service in its own session, so its helpers go too). True when it exited by itself in time."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    clean = False
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (process.poll() is not None) if process is not None else not alive(pid):
            clean = True
            break
        time.sleep(0.1)
    if not clean:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if process is not None:
        process.wait()
    return clean
