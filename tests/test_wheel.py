"""The project works installed from its wheel, not only as an editable checkout.

The wheel is built from a copy of the source tree (``pip wheel --no-deps``), checked for every module and
data file of the package, and installed with ``--no-deps`` into a fresh venv (``--without-pip``) whose
dependencies come from the test environment's own site-packages through a ``.pth`` file: the wheel's code is
what runs, while torch and the rest (about 2 GB) are not installed again. Then, from a folder outside the
checkout holding only ``data/corpus/`` (a user's project folder), the installed ``rag`` must ``ask``,
``eval`` on its default gold set, answer through an LLM backend (tests/openai_stub.py) and ``serve`` one request.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ARTICLE, ROOT
from tests.openai_stub import OpenAIStub

pytestmark = pytest.mark.slow

# Top-level entries of the checkout that are not source (the venv, built indexes, caches, VCS).
_NOT_SOURCE = {".venv", ".git", "build", "dist", "index", "reports", "run", ".pytest_cache", ".ruff_cache", ".env"}
QUESTION = "Who replaced Qassem Soleimani?"


def _ignore(directory: str, names: list[str]) -> set[str]:
    top = Path(directory).resolve() == ROOT
    return {n for n in names if (top and n in _NOT_SOURCE) or n == "__pycache__" or n.endswith(".egg-info")}


def _packages() -> list[str]:
    """The checkout's top-level packages that pyproject.toml's ``packages.find`` includes (rag, ui, ...)."""
    include = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["packages"][
        "find"]["include"]
    return sorted(d.name for d in ROOT.iterdir() if (d / "__init__.py").is_file()
                  and any(fnmatch.fnmatchcase(d.name, pattern) for pattern in include))


def _package_files() -> set[str]:
    """What the wheel must hold: every file of those packages in the checkout (modules and data alike)."""
    wanted = set()
    for package in _packages():
        for path in (ROOT / package).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                wanted.add(path.relative_to(ROOT).as_posix())
    return wanted


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wheel-build")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=_ignore)  # a copy: no build/ or egg-info left in the checkout
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(work), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    (built,) = work.glob("rag_news-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A fresh venv with only the wheel installed in it; the dependencies are borrowed through a .pth file."""
    target = tmp_path_factory.mktemp("wheel-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True, timeout=120)
    python = target / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    borrowed = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    # A plain path line: the directory is appended to sys.path after the venv's own site-packages, and the
    # .pth files inside it (among them the checkout's editable install) are not run.
    (site / "zz_borrowed_dependencies.pth").write_text("".join(f"{p}\n" for p in borrowed), encoding="utf-8")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "--quiet",
         str(wheel)],
        check=True, capture_output=True, text=True, timeout=300,
    )
    return target


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A user's folder outside the checkout: only data/corpus/ with the article."""
    folder = tmp_path_factory.mktemp("wheel-user")
    (folder / "data" / "corpus").mkdir(parents=True)
    shutil.copy(ARTICLE, folder / "data" / "corpus" / ARTICLE.name)
    assert not folder.resolve().is_relative_to(ROOT)
    return folder


def _env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RAG_") and k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def run_rag(venv: Path, home: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "rag"), *args], cwd=home, env=_env(venv), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def test_wheel_holds_every_module_and_data_file(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    assert {"rag", "ui"} <= set(_packages())
    missing = sorted(_package_files() - names)
    assert not missing, f"not in the wheel: {missing}"
    assert not [n for n in names if n.startswith(("tests/", "bench/", "eval/", "data/"))]


def test_installed_package_is_the_wheel_not_the_checkout(venv, home):
    result = subprocess.run([str(venv / "bin" / "python"), "-c", "import rag, ui; print(rag.__file__, ui.__file__)"],
                            cwd=home, env=_env(venv), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for path in result.stdout.split():
        assert Path(path).resolve().is_relative_to(venv.resolve()), result.stdout


def test_rag_ask_from_outside_the_checkout(venv, home):
    result = run_rag(venv, home, "ask", QUESTION, "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert "Ghaani" in answer["answer"] and answer["citations"], answer
    assert (home / "index" / "default" / "manifest.json").is_file()  # relative defaults: the working directory


def test_rag_eval_on_a_small_gold_file(venv, home):
    small = home / "small-gold.jsonl"
    small.write_text("".join((ROOT / "eval" / "gold.jsonl").read_text(encoding="utf-8").splitlines(True)[:3]),
                     encoding="utf-8")
    result = run_rag(venv, home, "eval", "--gold", str(small), "--no-baseline", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]), result.stdout


def test_rag_eval_finds_its_default_gold_set(venv, home):
    """The gold set ships with the package: `rag eval` needs no checkout."""
    result = run_rag(venv, home, "eval", "--no-baseline", "--json", timeout=600)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]), result.stdout


def test_llm_backend_loads_its_prompts_from_the_package(venv, home):
    def reply(body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        line = next((m for m in re.finditer(r"^\[(\d+)\].*$", prompt, re.M) if "Esmail Ghaani" in m.group(0)), None)
        return f"Soleimani was replaced by Esmail Ghaani [{line.group(1) if line else 1}]."

    with OpenAIStub(reply) as stub:
        result = run_rag(venv, home, "ask", QUESTION, "--json", "--backend", f"openai-compatible:{stub.url}#tiny")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["answer"].startswith("Soleimani was replaced by Esmail Ghaani [1]"), answer
    assert stub.requests and stub.requests[0]["messages"][0]["content"].strip()  # the packaged system prompt


def test_rag_serve_answers_a_request(venv, home):
    from gradio_client import Client

    from rag.net import free_port, stop_process

    port = free_port()
    log = home / "serve.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(venv / "bin" / "rag"), "serve", "--port", str(port)], cwd=home,
                                  env=_env(venv), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert server.poll() is None, f"rag serve exited: {log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"rag serve did not answer: {log.read_text()[-2000:]}"
            time.sleep(1)
        client = Client(url, verbose=False, download_files=False)
        found = client.predict("Popular Mobilization Forces budget", 2, api_name="/search")
        assert found["query"] == "Popular Mobilization Forces budget" and len(found["hits"]) == 2
    finally:
        stop_process(server)
