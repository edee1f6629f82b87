"""The HTTP connection: uvicorn's httptools protocol with the limits and manners SageMaker's callers need.

A refused body is read and thrown away so that the refusal reaches the client, request heads and idle
connections are bounded, and a request with `Connection: Upgrade` keeps its body.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .server_settings import LARGEST_BODY_BYTES

# The type of every answer the server writes itself (refusals, /ping).
TEXT = "text/plain; charset=utf-8"
# Request lines and headers add up to less than this (SageMaker's own headers take a few hundred bytes).
MAX_HEAD_BYTES = 64 * 1024
# The headers that say where a request's body ends.
FRAMING_HEADERS = (b"content-length", b"transfer-encoding")


class _ClosesAfterTheBody:
    """The connection as uvicorn's request cycle sees it, except that a close waits for the rest of the body."""

    def __init__(self, protocol: ServingProtocol) -> None:
        self._protocol = protocol

    def close(self) -> None:
        self._protocol.close_after_body()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._protocol.transport, name)


class ServingProtocol(HttpToolsProtocol):
    """uvicorn's httptools connection, with the limits and manners SageMaker's callers need.

    - A request answered before its body was read (a refusal) has the rest of its body read and thrown
      away, up to LARGEST_BODY_BYTES, before the connection takes the next request or closes. Clients
      that write the whole body before reading (http.client, boto3) then read the answer: closed with
      the body unread, the connection would be reset under them and the answer lost.
    - A request's head (request line and headers) over MAX_HEAD_BYTES is refused with 431.
    - The server waits `timeout_keep_alive` seconds (server.KEEPALIVE_SECONDS) for a request's whole head, on a
      new connection and after each answer (with the rest of a refused body), then closes the connection.
    - A request with `Connection: Upgrade` (curl --http2 sends one) keeps its body: httptools stops after
      its head, taking what follows for the new protocol's bytes, but this server never upgrades.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._reading_head = True
        self._head_bytes = 0  # received while the head is incomplete
        self._body_read = True  # the latest request's body has been parsed to its end
        self._discarding = False  # an answer went out before its request's body was read
        self._discarded = 0
        self._close_after_body = False
        self._finished = False  # nothing more is parsed or answered on this connection
        self._upgrade_body = False  # httptools skips this request's body: it is parsed past the upgrade point
        self._replaying_head = False
        self._awaits_continue = False  # `Expect: 100-continue` and none of its body has arrived yet

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._wait_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_waiting_for_head()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            self._discarded += len(data)
            if self._discarded > LARGEST_BODY_BYTES:  # not worth reading any further
                self._finish()
                return
        if self._finished:
            return
        if self._reading_head:
            self._head_bytes += len(data)
        self._unset_keepalive_if_required()
        self._feed(data)
        if self._reading_head and self._head_bytes > MAX_HEAD_BYTES and not self._finished:
            self._refuse(431, f"the request line and headers are over {MAX_HEAD_BYTES} bytes")

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            self._parse_past_upgrade()
            self._feed(data[upgrade.args[0] :])
        except httptools.HttpParserError:
            self._refuse(400, "the request is not valid HTTP/1.1")

    def _parse_past_upgrade(self) -> None:
        """A new parser for what follows an upgrade request's head: its body first (given its framing headers)."""
        self.parser = httptools.HttpRequestParser(self)
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
        if self._upgrade_body:
            self._upgrade_body = False
            framing = [name + b": " + value for name, value in self.headers if name in FRAMING_HEADERS]
            self._replaying_head = True  # the callbacks for this head are not a new request's
            self.parser.feed_data(b"\r\n".join([b"POST / HTTP/1.1", *framing, b"", b""]))
            self._replaying_head = False

    def on_message_begin(self) -> None:
        if not (self._replaying_head or self._finished):
            super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if not (self._replaying_head or self._finished):
            super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not (self._replaying_head or self._finished):
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._replaying_head or self._finished:
            return
        self._reading_head = False
        self._head_bytes = 0
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > MAX_HEAD_BYTES:
            self._refuse(431, f"the request line and headers are over {MAX_HEAD_BYTES} bytes")
            return
        self._stop_waiting_for_head()
        self._body_read = False
        self._awaits_continue = (b"expect", b"100-continue") in ((n, v.lower()) for n, v in self.headers)
        self._upgrade_body = self.parser.should_upgrade() and any(name in FRAMING_HEADERS for name, _ in self.headers)
        super().on_headers_complete()
        self.cycle.transport = _ClosesAfterTheBody(self)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        self._awaits_continue = False
        if not self._finished:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._finished or self._upgrade_body:
            return
        self._body_read = True
        self._discarding = False
        self._reading_head = True
        self._head_bytes = 0
        super().on_message_complete()
        if self._close_after_body:
            self._finish()

    def on_response_complete(self) -> None:
        waiting = not self.pipeline  # else the next request, parsed already, starts now
        super().on_response_complete()
        if not self._body_read and self._awaits_continue:
            # Refused before the 100 Continue went out: the client sends no body, so there is nothing to
            # throw away and no way to tell where the next request would start.
            self._finish()
        elif not self.transport.is_closing():
            self._discarding, self._discarded = not self._body_read, 0
            if waiting:
                self._wait_for_head()

    def close_after_body(self) -> None:
        """Close once the request's body has been read to its end: now, if it has or none will come."""
        if self._body_read or self._awaits_continue:
            self._finish()
        else:
            self._close_after_body = True

    def _finish(self) -> None:
        self.transport.close()
        self._finished = True

    def _refuse(self, status: int, reason: str) -> None:
        """Answer what the parser cannot take, then drop what the client still sends until it closes (or the
        wait for a head runs out): closed at once, the connection could be reset before the answer is read."""
        cycle = self.cycle
        answer = cycle is None or not cycle.response_started or (cycle.response_complete and self._body_read)
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the request being answered gets no answer of its own
            cycle.message_event.set()
        if answer:
            body = f"{reason}\n".encode()
            headers = [*self.server_state.default_headers, (b"content-type", TEXT.encode())]
            headers += [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
            head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            self.transport.write(STATUS_LINE[status] + head + b"\r\n" + body)
            if self.transport.can_write_eof():  # clients reading to the end see it now, not at the timeout
                self.transport.write_eof()
        self._finished = True
        self._discarding, self._discarded = True, 0
        self._wait_for_head()

    def _wait_for_head(self) -> None:
        self._stop_waiting_for_head()
        self._head_timer = self.loop.call_later(self.timeout_keep_alive, self._head_timed_out)

    def _stop_waiting_for_head(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self.transport.is_closing():
            self.transport.close()
