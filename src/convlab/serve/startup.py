"""What ``serve`` does before it loads anything: the options checked and the port taken, torch-free, so that a
mistake or a busy port is one sentence at once; and the one line it says when the server answers."""

from __future__ import annotations

import errno
import http.client
import ipaddress
import os
import socket
import threading
import time

from convlab.errors import ConvlabError

WILDCARD_HOSTS = {
    "0.0.0.0": "127.0.0.1",
    "::": "::1",
}  # listening everywhere; this machine reaches it on loopback
TOKEN_VARIABLE = "CONVLAB_SERVE_TOKEN"  # the bearer token, where `ps` does not show it (--token wins)
MAKE_A_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def check_options(port: int, workers: int, max_upload_mb: float, max_pixels: int, max_files: int) -> None:
    """The server's numbers, each refused in one sentence when out of range."""
    if not 0 <= int(port) <= 65535:
        raise ConvlabError(f"--port must be 0..65535, got {port}.")
    if int(workers) < 1:
        raise ConvlabError(f"--workers must be at least 1, got {workers}.")
    if not max_upload_mb > 0:
        raise ConvlabError(f"--max-upload-mb must be a positive number, got {max_upload_mb}.")
    if int(max_pixels) < 1 or int(max_files) < 1:
        raise ConvlabError(
            f"--max-megapixels and --max-files must be positive, got {int(max_pixels) / 1e6:g} MP "
            f"and {max_files} files."
        )


def check_token(token: str, where: str = "token") -> None:
    """A bearer token is refused in one sentence (that never repeats it) when it cannot travel in a header."""
    if not token:
        raise ConvlabError(
            f"{where} is empty; give a secret (e.g. from {MAKE_A_TOKEN}), or unset it to serve without a token."
        )
    if not all("!" <= character <= "~" for character in token):
        raise ConvlabError(
            f"{where} holds a space, a control or a non-ASCII character; a bearer token travels in an HTTP "
            f"header, so use printable ASCII (e.g. from {MAKE_A_TOKEN})."
        )


def resolve_token(option: str | None, environ=None) -> str | None:
    """The token of `convlab serve`: ``--token`` if given, else the environment variable CONVLAB_SERVE_TOKEN,
    else None (no token). A set but empty variable is refused rather than read as "no token"."""
    environ = os.environ if environ is None else environ
    if option is not None:
        check_token(option, "--token")
        return option
    if TOKEN_VARIABLE in environ:
        check_token(environ[TOKEN_VARIABLE], TOKEN_VARIABLE)
        return environ[TOKEN_VARIABLE]
    return None


def is_loopback(listener: socket.socket) -> bool:
    """Whether only this machine can reach the socket (127.0.0.0/8 or ::1)."""
    host = listener.getsockname()[0].split("%")[0]  # an IPv6 scope (fe80::1%eth0) is no address
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def network_warning(listener: socket.socket, token: str | None) -> str | None:
    """The line ``serve`` prints at start-up when other machines may reach it and no token is asked for."""
    if token or is_loopback(listener):
        return None
    host, port = listener.getsockname()[:2]
    return (
        f"Warning: listening on {host} port {port}, which other machines may reach, without a token: anyone who "
        f"can reach this port can use the model. Set {TOKEN_VARIABLE} (see docs/shipping.md, 'On a network'), "
        "or use --host 127.0.0.1."
    )


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port`` (0: a free port), taken before the model loads, so that a busy port is
    one sentence at once instead of a failure after a long load; uvicorn then serves on this very socket."""
    try:
        family, kind, protocol, _, address = socket.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)[0]
    except socket.gaierror as error:
        raise ConvlabError(
            f"Host '{host}' is not an address of this machine ({error.strerror}); use --host 127.0.0.1 "
            "(this machine only) or --host 0.0.0.0 (every interface)."
        ) from None
    listener = socket.socket(family, kind, protocol)
    # uvicorn's own choice: a port left in TIME_WAIT by a server that just stopped can be taken again at once
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind(address)
    except OSError as error:
        listener.close()
        if error.errno == errno.EADDRINUSE:
            raise ConvlabError(
                f"Port {port} on {host} is already in use by another program; choose another with --port "
                f"(e.g. --port {int(port) + 1}, or --port 0 for any free port)."
            ) from None
        raise ConvlabError(
            f"Cannot listen on {host} port {port} ({error.strerror}); choose another --host or --port "
            "(ports below 1024 need administrator rights)."
        ) from None
    # Listening at once holds the port against a second server started while this one loads its model (with
    # SO_REUSEADDR, Linux lets another socket bind a port that nobody listens on yet); a request that comes
    # early waits in the queue and is answered once the server runs.
    listener.listen()
    listener.set_inheritable(True)  # worker processes serve on it too
    return listener


def local_address(listener: socket.socket) -> tuple[str, int]:
    """Where this machine reaches a bound socket: its own address, or loopback for a wildcard host."""
    host, port = listener.getsockname()[:2]
    return WILDCARD_HOSTS.get(host, host), port


def url_of(listener: socket.socket) -> str:
    host, port = local_address(listener)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def ready_line(served, listener: socket.socket, token: bool = False) -> str:
    """The one line ``serve`` prints for a ServedModel: the model, the file it came from, for a checkpoint the
    precision it runs in (the card, /model, says why), and the URL to open; with ``token``, that a bearer token
    is required (never the token itself)."""
    everywhere = listener.getsockname()[0] in WILDCARD_HOSTS
    precision = f"; {served.precision.setting}" if served.format == "checkpoint" else ""
    return (
        f"Serving {served.name} ({len(served.classes)} classes, {served.format} {served.source}{precision}) "
        f"at {url_of(listener)}"
        f"{' and on every address of this machine' if everywhere else ''}"
        f" ({'bearer token required; ' if token else ''}Ctrl+C to stop)"
    )


def announce_when_ready(listener: socket.socket, line: str, timeout: float = 600.0) -> threading.Thread:
    """Print ``line`` once the server on ``listener`` answers /health (with several workers: the first whose
    model is loaded), from a daemon thread that asks every 50 ms."""
    host, port = local_address(listener)

    def wait() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            connection = http.client.HTTPConnection(host, port, timeout=2)
            try:
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    print(line, flush=True)
                    return
            except OSError:  # not listening yet
                pass
            finally:
                connection.close()
            time.sleep(0.05)

    thread = threading.Thread(target=wait, name="convlab-serve-ready", daemon=True)
    thread.start()
    return thread
