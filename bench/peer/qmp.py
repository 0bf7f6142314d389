"""A minimal QMP client (QEMU Machine Protocol over a unix socket): commands and events.

Only the standard library. Events that arrive while waiting for a command's answer are kept,
with QEMU's own timestamps, so a caller can ask later when something happened.
"""
import json
import socket
import time


class QmpError(Exception):
    pass


class Qmp:
    def __init__(self, path, timeout=30.0, name="qmp"):
        self.name = name
        self.events = []
        self._buf = b""
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + timeout
        # QEMU creates the socket shortly after it starts: retry until it is there.
        while True:
            try:
                self._sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise QmpError(f"{name}: no QMP socket at {path} after {timeout:.0f} s")
                time.sleep(0.02)
        self._sock.settimeout(timeout)
        greeting = self._read_message()
        if "QMP" not in greeting:
            raise QmpError(f"{name}: not a QMP greeting: {greeting}")
        self.command("qmp_capabilities")

    def close(self):
        self._sock.close()

    def _read_message(self):
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except socket.timeout:
                raise QmpError(f"{self.name}: no answer from QEMU") from None
            if not chunk:
                raise QmpError(f"{self.name}: QEMU closed the QMP connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def command(self, name, **arguments):
        """Runs one command; returns its "return" value, raises QmpError on an "error"."""
        msg = {"execute": name}
        if arguments:
            msg["arguments"] = arguments
        self._sock.sendall(json.dumps(msg).encode() + b"\n")
        while True:
            reply = self._read_message()
            if "event" in reply:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise QmpError(f"{self.name}: {name}: {reply['error'].get('desc', reply['error'])}")
            return reply.get("return")

    def wait_event(self, match, timeout):
        """The first event (kept or new) for which match(event) is true; QmpError on timeout."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for ev in self.events[seen:]:
                if match(ev):
                    return ev
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise QmpError(f"{self.name}: the awaited event did not come in {timeout:.0f} s")
            self._sock.settimeout(left)
            try:
                self.events.append(self._read_message())
            finally:
                self._sock.settimeout(30.0)


def event_time(ev):
    """QEMU's wall-clock timestamp of an event, in seconds (same clock as time.time())."""
    ts = ev["timestamp"]
    return ts["seconds"] + ts["microseconds"] / 1e6


def migration_status_is(*statuses):
    return lambda ev: ev.get("event") == "MIGRATION" and ev["data"]["status"] in statuses
