"""A TCP relay on 127.0.0.1 in front of the API server, for one client: the operator's Pod.

`freeze()` makes the API server go silent for that client without closing anything: every
open connection stays open but no byte moves either way, and new connections are accepted
and left just as silent, as behind a network path that dropped everything. TLS passes
through untouched (the API server's certificate names 127.0.0.1, whatever the port).
"""

from __future__ import annotations

import contextlib
import socket
import threading


class ApiProxy:
    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.connections = 0

    def start(self) -> ApiProxy:
        threading.Thread(target=self._accept, name="api-proxy", daemon=True).start()
        return self

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def stop(self) -> None:
        self._closed.set()
        self._flowing.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._flowing.wait()  # frozen: the connection is accepted and stays silent
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        with self._lock:
            self._sockets += [client, upstream]
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _pump(self, source: socket.socket, dest: socket.socket) -> None:
        source.settimeout(0.2)  # a freeze takes effect within this
        try:
            while not self._closed.is_set():
                self._flowing.wait()
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    continue
                if not data:
                    break
                self._flowing.wait()
                dest.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, dest):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
