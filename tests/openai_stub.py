"""A minimal OpenAI-compatible chat server for tests, on a loopback port.

It is not a model: it replies with a scripted answer (or a function of the request), speaking the real
wire protocol (JSON or server-sent events), so the real LangChain/OpenAI client and our parsing are
exercised end to end. It records the requests it received.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OpenAIStub:
    """``delay``: seconds before the response starts; ``first_token_delay``: seconds between the response's
    headers and its first chunk (a model reading its prompt); ``chunk_delay``: seconds between chunks;
    ``prompt_tokens``: reported in a final usage chunk when the client asks for it (stream_options);
    ``check``: the probability of "yes" the answer check (a one-token, non-streamed request) gets."""

    def __init__(self, reply: str | Callable[[dict], str] = "", delay: float = 0.0, *, first_token_delay: float = 0.0,
                 chunk_delay: float = 0.0, prompt_tokens: int = 0, check: float | None = None):
        self.reply, self.delay, self.check = reply, delay, check
        self.first_token_delay, self.chunk_delay, self.prompt_tokens = first_token_delay, chunk_delay, prompt_tokens
        self.requests: list[dict] = []
        self.checks: list[dict] = []  # the answer-check requests (one-token replies), apart from ``requests``
        self.tokenized: list[str] = []  # texts sent to /extras/tokenize/count (counted as words)
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):  # noqa: N802 (http.server API)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if self.path.endswith("/extras/tokenize/count"):  # llama-cpp-python's tokenizer endpoint
                    stub.tokenized.append(body["input"])
                    payload = json.dumps({"count": len(body["input"].split())}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                if 1 in (body.get("max_tokens"), body.get("max_completion_tokens")) and not body.get("stream"):
                    stub.checks.append(body)
                    self._check_reply(body)
                    return
                stub.requests.append(body)
                if stub.delay:
                    time.sleep(stub.delay)
                text = stub.reply(body) if callable(stub.reply) else stub.reply
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    self.wfile.flush()
                    try:
                        time.sleep(stub.first_token_delay)
                        for i in range(0, len(text), 7):
                            if i and stub.chunk_delay:
                                time.sleep(stub.chunk_delay)
                            self._event({"choices": [{"index": 0, "delta": {"content": text[i : i + 7]},
                                                      "finish_reason": None}]})
                        self._event({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                        if stub.prompt_tokens and (body.get("stream_options") or {}).get("include_usage"):
                            self._event({"choices": [], "usage": {"prompt_tokens": stub.prompt_tokens,
                                                                  "completion_tokens": len(text) // 4,
                                                                  "total_tokens": stub.prompt_tokens + len(text) // 4}})
                        self.wfile.write(b"data: [DONE]\n\n")
                    except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
                        pass
                    return
                self._completion(body, {"index": 0, "message": {"role": "assistant", "content": text},
                                        "finish_reason": "stop"})

            def _check_reply(self, body: dict) -> None:
                """The one-token answer check: "yes" or "no" with log-probabilities of both when ``check`` is
                set, else a token that is neither (the backend then keeps its answer unchecked)."""
                if stub.check is None:
                    message = {"role": "assistant", "content": "?"}
                    self._completion(body, {"index": 0, "message": message, "finish_reason": "length"})
                    return
                yes = min(max(stub.check, 1e-6), 1 - 1e-6)
                tops = [{"token": "yes", "logprob": math.log(yes), "bytes": None},
                        {"token": "no", "logprob": math.log(1 - yes), "bytes": None}]
                word = 0 if yes >= 0.5 else 1
                self._completion(body, {"index": 0, "finish_reason": "length",
                                        "message": {"role": "assistant", "content": tops[word]["token"]},
                                        "logprobs": {"content": [{**tops[word], "top_logprobs": tops}]}})

            def _completion(self, body: dict, choice: dict) -> None:
                payload = json.dumps({
                    "id": "stub", "object": "chat.completion", "created": 0, "model": body.get("model", "stub"),
                    "choices": [choice],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _event(self, chunk: dict) -> None:
                chunk = {"id": "stub", "object": "chat.completion.chunk", "created": 0, "model": "stub", **chunk}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> OpenAIStub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


class OllamaStub:
    """The same idea for Ollama's /api/chat (newline-delimited JSON stream)."""

    def __init__(self, reply: str):
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                stub.requests.append(body)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.end_headers()
                for i in range(0, len(reply), 7):
                    line = {"model": body.get("model"), "created_at": "2026-01-01T00:00:00Z",
                            "message": {"role": "assistant", "content": reply[i : i + 7]}, "done": False}
                    self.wfile.write((json.dumps(line) + "\n").encode())
                    self.wfile.flush()
                final = {"model": body.get("model"), "created_at": "2026-01-01T00:00:00Z",
                         "message": {"role": "assistant", "content": ""}, "done": True, "done_reason": "stop",
                         "total_duration": 1, "load_duration": 1, "prompt_eval_count": 1, "prompt_eval_duration": 1,
                         "eval_count": 1, "eval_duration": 1}
                self.wfile.write((json.dumps(final) + "\n").encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.host = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> OllamaStub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
