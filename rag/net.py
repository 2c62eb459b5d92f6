"""Loopback networking shared by the app's launcher, the benchmarks and the tests (standard library only)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now, chosen by the OS (another process could still take it first)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def free_port_from(host: str, first: int) -> int:
    """The first port from ``first`` on that is free on ``host`` right now (the OS's choice if none of the next
    100 is): a second server beside one on a known port gets a predictable port next to it."""
    for port in range(max(first, 1), min(first + 100, 65536)):
        with socket.socket() as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    return free_port(host)


def exit_with_parent(parent: int, poll_s: float = 0.5) -> None:
    """End this process (exit code 1) within ``poll_s`` of the process ``parent`` ending: a helper process started
    by a server (an indexing job, the web app beside the API workers) must not outlive it."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(poll_s)
        os._exit(1)

    threading.Thread(target=watch, name="parent watch", daemon=True).start()


def stop_process(process: subprocess.Popen, timeout: float = 30) -> None:
    """Stop a server started for a test or a benchmark: SIGTERM, then SIGKILL if it has not exited in time."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
