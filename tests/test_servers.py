"""Taking the client's socket from werkzeug's request handler."""

from __future__ import annotations

import socket
import tracemalloc

from flask_sockets_channels.servers import take_socket

REQUEST = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"


def test_werkzeug_read_ahead_is_taken_and_its_buffer_given_back() -> None:
    # werkzeug's request reader is socketserver's makefile("rb"): an 8 KiB
    # buffer for as long as the request runs, which for a WebSocket is the
    # whole session. After the take, werkzeug reads through it once more
    # (its drain when the view returns): that read must still work.
    server_end, client_end = socket.socketpair()
    with server_end, client_end:
        tracemalloc.start()
        try:
            rfile = server_end.makefile("rb")
            client_end.sendall(REQUEST + b"first frame")
            while rfile.readline() != b"\r\n":  # werkzeug parses the headers
                pass
            with_buffer = tracemalloc.get_traced_memory()[0]
            taken = take_socket({"werkzeug.socket": server_end, "wsgi.input": rfile})
            given_back = with_buffer - tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert taken.buffered == b"first frame"
        assert taken.server == "werkzeug" and taken.sock is server_end
        assert given_back > 4096, f"the reader kept its 8 KiB buffer (gave back {given_back})"
        client_end.sendall(b"what the drain reads")
        client_end.shutdown(socket.SHUT_WR)
        assert rfile.read(10_000_000) == b"what the drain reads"
        rfile.close()
