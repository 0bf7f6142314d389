"""One QEMU migration of a memory image over loopback TCP, timed from QEMU's own events.

Source: a paused TCG guest (-S) whose RAM is a memory-backend-file (share=on) holding the image.
Destination: another paused QEMU started with -incoming defer; its RAM is a fresh anonymous
block (memory-backend-ram) or, to check what arrived, a fresh file on /dev/shm (share=on), so
the file holds the received RAM afterwards.

Timed: from the moment the `migrate` command is sent (wall clock) to the destination's MIGRATION
"completed" event (QEMU's timestamp, same clock): the destination may run the guest from then.
"""
import os
import subprocess
import time

from qmp import Qmp, QmpError, event_time, migration_status_is

MODES = {
    "single": {"multifd": False},
    "multifd2": {"multifd": True, "channels": 2},
}


def qemu_version(qemu):
    out = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def _command_line(qemu, size, ram_object, qmp_path, extra):
    return [qemu, "-accel", "tcg", "-machine", "pc,memory-backend=ram", "-m", f"{size}b",
            "-object", ram_object, "-nodefaults", "-vga", "none", "-display", "none", "-S",
            "-qmp", f"unix:{qmp_path},server=on,wait=off"] + extra


def _stop(proc, qmp):
    if qmp is not None:
        try:
            qmp.command("quit")
        except (QmpError, OSError):
            pass
        qmp.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _set_up(qmp, mode, is_source):
    caps = [{"capability": "events", "state": True}]
    if MODES[mode]["multifd"]:
        caps.append({"capability": "multifd", "state": True})
    qmp.command("migrate-set-capabilities", capabilities=caps)
    params = {}
    if MODES[mode]["multifd"]:
        params["multifd-channels"] = MODES[mode]["channels"]
    if is_source:
        # QEMU's default cap is 128 MiB/s (32 MiB/s before 7.x): lift it.
        params["max-bandwidth"] = 1 << 62
    if params:
        qmp.command("migrate-set-parameters", **params)


def run(qemu, image, size, mode, port, workdir, dest_file=None, timeout=600, prealloc=False):
    """Migrates `image` (size bytes); returns a dict of the run. dest_file: the destination's
    RAM is this file (created fresh; left for the caller to check and delete). prealloc: the
    destination's RAM is faulted in when QEMU starts (prealloc=on), before the timing."""
    tag = f"{os.getpid()}-{port}"
    src_sock = os.path.join(workdir, f"vsq-src-{tag}.qmp")
    dst_sock = os.path.join(workdir, f"vsq-dst-{tag}.qmp")
    if dest_file:
        dst_ram = f"memory-backend-file,id=ram,size={size},mem-path={dest_file},share=on"
    else:
        dst_ram = f"memory-backend-ram,id=ram,size={size}"
    if prealloc:
        dst_ram += ",prealloc=on"
    src_ram = f"memory-backend-file,id=ram,size={size},mem-path={image},share=on"
    log = open(os.path.join(workdir, f"vsq-{tag}.log"), "w+")
    procs, qmps = [], []
    result = {"tool": "qemu", "config": mode, "ok": False}
    try:
        procs.append(subprocess.Popen(
            _command_line(qemu, size, dst_ram, dst_sock, ["-incoming", "defer"]),
            stdout=log, stderr=subprocess.STDOUT))
        procs.append(subprocess.Popen(_command_line(qemu, size, src_ram, src_sock, []),
                                      stdout=log, stderr=subprocess.STDOUT))
        dst = Qmp(dst_sock, name="destination QEMU")
        qmps.append(dst)
        src = Qmp(src_sock, name="source QEMU")
        qmps.append(src)
        _set_up(dst, mode, False)
        _set_up(src, mode, True)
        uri = f"tcp:127.0.0.1:{port}"
        dst.command("migrate-incoming", uri=uri)

        t_migrate = time.time()
        src.command("migrate", uri=uri)
        done = dst.wait_event(migration_status_is("completed", "failed"), timeout)
        info = _final_query(src, timeout)
        result.update(_figures(t_migrate, done, src, info))
        if done["data"]["status"] != "completed" or info["status"] != "completed":
            result["error"] = (f"destination {done['data']['status']}, source {info['status']}"
                               f": {info.get('error-desc', '')}")
        else:
            result["ok"] = True
    except (QmpError, OSError, KeyError) as e:
        result["error"] = str(e)
    finally:
        for q, p in zip(qmps + [None] * (len(procs) - len(qmps)), procs):
            _stop(p, q)
        for p in (src_sock, dst_sock):
            if os.path.exists(p):
                os.unlink(p)
        log.seek(0)
        output = log.read().strip()
        log.close()
        os.unlink(log.name)
        if output:
            result["qemu-output"] = output[-2000:]
            if not result["ok"]:
                result["error"] = result.get("error", "") + " | QEMU said: " + output[-500:]
    return result


def _final_query(src, timeout):
    """query-migrate on the source once it has finished (it may lag the destination)."""
    deadline = time.monotonic() + timeout
    while True:
        info = src.command("query-migrate")
        if info.get("status") in ("completed", "failed", "cancelled"):
            return info
        if time.monotonic() > deadline:
            return info
        time.sleep(0.005)


def _figures(t_migrate, done, src, info):
    started = [e for e in src.events if migration_status_is("setup")(e)]
    src_done = [e for e in src.events if migration_status_is("completed")(e)]
    return {
        "time-s": event_time(done) - t_migrate,
        "source-setup-event-s": event_time(started[0]) - t_migrate if started else None,
        "source-completed-event-s": event_time(src_done[0]) - t_migrate if src_done else None,
        "destination-completed-event-s": event_time(done) - t_migrate,
        "qemu-total-time-ms": info.get("total-time"),
        "blackout-ms": info.get("downtime"),
        "blackout-source": "QEMU downtime",
        "setup-time-ms": info.get("setup-time"),
        "transferred-bytes": info.get("ram", {}).get("transferred"),
        "ram": info.get("ram"),
    }
