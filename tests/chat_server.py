"""A real HTTP server on loopback that plays an incoming chat webhook (Slack, Mattermost, Teams).

It answers 200 ``ok`` (HTTP/1.1, keep-alive) unless told otherwise: a scripted status with its
headers and body, or dropping the connection without answering. It records every request and
counts the connections it accepted.
"""

from __future__ import annotations

import html
import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOST = "127.0.0.1"
#: The secret part of the webhook's URL: it must never show in a log, an error or an output.
TOKEN = "xoxT-9f3Kq2ZsecretW7token"
PATH = f"/hooks/T0001/B0002/{TOKEN}"


@dataclass
class Answer:
    """What the server does with one request: a status (with headers and a body), or ``drop``."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str = "ok"
    drop: bool = False


@dataclass
class Posted:
    """One request as the server got it, and what it answered."""

    path: str
    headers: dict[str, str]
    payload: Any
    answer: Answer


class ChatServer:
    """ThreadingHTTPServer on a free loopback port, in a thread of its own."""

    def __init__(self, port: int = 0) -> None:
        self.requests: list[Posted] = []
        self.script: list[Answer] = []
        self.always: Answer | None = None
        self.connections = 0
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def setup(self) -> None:
                super().setup()
                with owner.lock:
                    owner.connections += 1

            def log_message(self, format: str, *args: Any) -> None:
                return None  # quiet: the test reads owner.requests

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                answer = owner.next_answer()
                with owner.lock:
                    owner.requests.append(
                        Posted(self.path, dict(self.headers), json.loads(raw), answer)
                    )
                if answer.drop:
                    # Close the socket without a word: the client sees the connection go.
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                body = answer.body.encode()
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer((HOST, port), Handler)
        self.httpd.daemon_threads = True
        self.port: int = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def next_answer(self) -> Answer:
        with self.lock:
            if self.script:
                return self.script.pop(0)
            return self.always or Answer()

    def answer(self, *answers: Answer) -> None:
        """Answer the next requests so, one each, then 200 again."""
        with self.lock:
            self.script.extend(answers)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{PATH}"

    @property
    def delivered(self) -> list[Posted]:
        """The requests the server took (answered 2xx)."""
        return [r for r in self.requests if not r.answer.drop and r.answer.status < 300]

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def chat_server() -> Iterator[ChatServer]:
    """A started ChatServer, stopped afterwards (for a pytest fixture)."""
    server = ChatServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def slack_text(payload: Any) -> str:
    """What a Slack user reads of a ``{"text": ...}`` payload: the markup's escapes undone."""
    text = payload["text"]
    assert isinstance(text, str)
    return html.unescape(text)
