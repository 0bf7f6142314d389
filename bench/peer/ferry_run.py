"""One ferry migration of the synthetic image over loopback TCP: `ferry recv` + `ferry send`.

Both generate nothing the other does not know: send builds the seed's image in its own memory
(not timed), recv receives into fresh anonymous memory on transparent huge pages (`--thp`, as
QEMU's destination RAM is). The idle guest is `--dirty-rate 0`.

Timed: the "total-time" of `ferry send --json`, which the engine measures over the whole
migration through the destination's DONE (verification and device state included). The wall
time around `ferry send` (image generation and process start included) is recorded too.
"""
import json
import os
import re
import subprocess
import time

CONFIGS = {
    "1ch": ["--channels", "1"],
    "2ch": ["--channels", "2"],
    "2ch-no-xbzrle": ["--channels", "2", "--no-xbzrle"],
    # Dirty tracking by a log (the idle guest's writer marks what it writes: nothing), as a KVM
    # VMM tracks with KVM's dirty log. The default, uffd-wp, puts a marker on every page the
    # guest never touched, and a marked page must be read like any other.
    "2ch-log": ["--channels", "2", "--dirty-tracking", "explicit"],
    # The same, reading every page as QEMU does: what skipping unpopulated pages is worth.
    "2ch-log-read-all": ["--channels", "2", "--dirty-tracking", "explicit",
                         "--no-page-table-zero"],
}

_HASH = re.compile(r"image hash ([0-9a-f]{16})")


def _image_args(size, content, seed):
    return ["--size", str(size), "--seed", str(seed), "--content", content]


def write_image(ferry, path, size, content, seed):
    """`ferry image`: the same bytes `ferry send` migrates, for QEMU. Returns its image hash."""
    out = subprocess.run([ferry, "image", "--output", path] + _image_args(size, content, seed),
                         capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"ferry image failed ({out.returncode}): {out.stderr.strip()}")
    m = _HASH.search(out.stdout)
    return m.group(1) if m else None


def run(ferry, size, content, seed, config, workdir, timeout=600, prealloc=False):
    json_path = os.path.join(workdir, f"vsq-ferry-{os.getpid()}.json")
    result = {"tool": "ferry", "config": config, "ok": False}
    # --thp: the destination's RAM on huge pages, as QEMU's is (vs-qemu backs huge blocks for
    # both right before each run).
    # --prealloc: the RAM is faulted in before recv listens, as QEMU's prealloc=on.
    recv = subprocess.Popen([ferry, "recv", "--listen", "tcp:127.0.0.1:0", "--channels", "0",
                             "--thp", "-q"] + (["--prealloc"] if prealloc else []) +
                            _image_args(size, content, seed),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = recv.stdout.readline().strip()
        if not first.startswith("listening on "):
            raise RuntimeError(f"ferry recv did not start: {first} {recv.stderr.read()[-500:]}")
        address = first[len("listening on "):]
        cmd = [ferry, "send", "--connect", address, "--dirty-rate", "0", "--json", json_path,
               "-q"] + _image_args(size, content, seed) + CONFIGS[config]
        t0 = time.monotonic()
        send = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        wall = time.monotonic() - t0
        recv_out, recv_err = recv.communicate(timeout=timeout)
        result["send-wall-s"] = wall
        result["destination-hash"] = _hash_of(recv_out)
        if send.returncode != 0 or recv.returncode != 0:
            raise RuntimeError(f"ferry send exit {send.returncode}: {send.stderr.strip()[-500:]}; "
                               f"ferry recv exit {recv.returncode}: {recv_err.strip()[-500:]}")
        with open(json_path) as f:
            stats = json.load(f)
        result.update(_figures(stats))
        result["ok"] = True
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as e:
        result["error"] = str(e)
    finally:
        if recv.poll() is None:
            recv.kill()
        recv.wait()
        if os.path.exists(json_path):
            os.unlink(json_path)
    return result


def _hash_of(text):
    m = _HASH.search(text or "")
    return m.group(1) if m else None


def _figures(stats):
    if "blackout-us" in stats:
        blackout_ms, source = stats["blackout-us"] / 1e3, "ferry blackout"
    elif "blackout" in stats:
        blackout_ms, source = stats["blackout"], "ferry blackout"
    else:
        blackout_ms, source = stats.get("downtime"), "ferry downtime"
    return {
        "time-s": stats["total-time"] / 1e3,
        "ferry-total-time-ms": stats["total-time"],
        "blackout-ms": blackout_ms,
        "blackout-source": source,
        "verify-time-ms": stats.get("verify-time"),
        "verified": stats.get("verified"),
        "transferred-bytes": stats.get("ram", {}).get("transferred"),
        "zero-pages": stats.get("ram", {}).get("duplicate"),
        "zero-pages-unread": stats.get("ram", {}).get("duplicate-unread"),
        "stats": {k: v for k, v in stats.items() if k != "iterations"},
    }
