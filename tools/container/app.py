#!/usr/bin/env python3
"""A small web app that porter starts on the first request (socket
activation): it serves on the listening socket porter hands it as fd 3
(LISTEN_FDS=1, sd_listen_fds(3)) instead of binding one itself, so no
request is lost while it starts. porter stops it after IdleTimeoutSec= and
starts it again on the next request."""
import http.server
import os
import socket
import socketserver
import time

STARTED = time.time()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"hello from the lazily started app, pid {os.getpid()}, up {time.time() - STARTED:.1f}s\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        # stderr goes to porter's log, under the unit's name.
        super().log_message(fmt, *args)


class InheritedServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    def __init__(self):
        super().__init__(("", 0), Handler, bind_and_activate=False)
        if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
            raise SystemExit("app.py: expected one socket from porter (LISTEN_FDS=1)")
        self.socket.close()
        self.socket = socket.socket(fileno=3)


if __name__ == "__main__":
    InheritedServer().serve_forever()
