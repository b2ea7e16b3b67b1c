"""esos vs tgt benchmark driver (run through scripts/bench, which installs the tools).

Everything listens on loopback only: esos on 3340-3349, tgt on 3350-3359 (tgtd control port
40). Every process started here is stopped by PID in a finally block. Workloads alternate
esos and tgt within each round so drift in machine load hits both alike.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import iscsi_login  # noqa: E402

ESOS_PORT = 3340
ESOS_SCALE_PORT = 3341
IPERF_PORT = 3349
SOCKPERF_PORT = 3348
TGT_PORT = 3350
TGT_CONTROL = 40
TGT_SCALE_PORT = 3351
TGT_SCALE_CONTROL = 41
ESOS_IQN = "iqn.2026-11.org.esos:quick"
TGT_IQN = "iqn.2026-11.org.esos:bench-tgt"
BLOCK = 512
#: Longest any single client command may run before it is killed.
CMD_TIMEOUT_S = 120
#: Longest a daemon may take to listen.
LISTEN_TIMEOUT_S = 20
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

# name, backing, request bytes, queue depth, random, write. Reads use iscsi-perf (it only
# reads); writes use qemu-img bench with the iscsi driver.
WORKLOADS = [
    ("4K rand read QD1", "file", 4096, 1, True, False),
    ("4K seq read QD1", "file", 4096, 1, False, False),
    ("4K rand read QD32", "file", 4096, 32, True, False),
    ("4K rand write QD32", "file", 4096, 32, True, True),
    ("4K seq write QD32", "file", 4096, 32, False, True),
    ("1M seq read QD8", "file", 1 << 20, 8, False, False),
    ("1M seq write QD8", "file", 1 << 20, 8, False, True),
    ("4K rand read QD32", "null", 4096, 32, True, False),
]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def wait_listen(port, proc, timeout_s=LISTEN_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.005)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def port_free(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return False
    except OSError:
        return True


def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15)


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


class Procs:
    """Every process this run started, stopped by PID on exit."""

    def __init__(self):
        self.procs = []

    def start(self, args, logpath, **kw):
        logf = open(logpath, "ab")
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, **kw)
        logf.close()
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM):
        if p.poll() is None:
            os.kill(p.pid, sig)
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        if p in self.procs:
            self.procs.remove(p)

    def stop_all(self):
        for p in list(self.procs):
            # tgtd ignores SIGTERM while it has targets; it holds nothing to flush here.
            sig = signal.SIGKILL if os.path.basename(p.args[0]) == "tgtd" else signal.SIGTERM
            self.stop(p, sig)


def run(args, timeout=CMD_TIMEOUT_S):
    r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({r.returncode}): {r.stdout[-400:]} {r.stderr[-400:]}")
    return r.stdout


def fill(path, size):
    """Writes real pages (not a sparse hole) so reads hit tmpfs memory on both targets."""
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        for _ in range(size >> 20):
            f.write(chunk)


class Esos:
    name = "esos"

    def __init__(self, procs, binary, work, file_img):
        self.p = procs.start([binary, "serve", "--portal", f"127.0.0.1:{ESOS_PORT}",
                              "--lun", file_img, "--lun", "null:1G",
                              "--data-dir", os.path.join(work, "esos-data"),
                              "--log-level", "warn"],
                             os.path.join(work, "esos.log"))
        wait_listen(ESOS_PORT, self.p)
        self.pid = self.p.pid

    def url(self, backing):
        lun = 0 if backing == "file" else 1
        return f"iscsi://127.0.0.1:{ESOS_PORT}/{ESOS_IQN}/{lun}"


class Tgt:
    name = "tgt"

    def __init__(self, procs, work, file_img):
        self.p = procs.start(["tgtd", "-f", "-C", str(TGT_CONTROL), "--iscsi",
                              f"portal=127.0.0.1:{TGT_PORT}"], os.path.join(work, "tgtd.log"))
        wait_listen(TGT_PORT, self.p)
        self.pid = self.p.pid
        t = ["tgtadm", "-C", str(TGT_CONTROL), "--lld", "iscsi"]
        run(t + ["--op", "new", "--mode", "target", "--tid", "1", "-T", TGT_IQN])
        run(t + ["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "1",
                 "-b", file_img])
        run(t + ["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", "2",
                 "--bstype", "null", "-b", "null0"])
        run(t + ["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"])

    def url(self, backing):
        lun = 1 if backing == "file" else 2
        return f"iscsi://127.0.0.1:{TGT_PORT}/{TGT_IQN}/{lun}"


def iscsi_perf(url, size, qd, rand, secs):
    args = ["iscsi-perf", "-m", str(qd), "-b", str(size // BLOCK), "-t", str(secs)]
    if rand:
        args.append("-r")
    out = run(args + [url], timeout=secs + 60)
    m = re.findall(r"iops average (\d+)", out)
    if not m:
        raise RuntimeError(f"no result from iscsi-perf: {out[-300:]}")
    iops = int(m[-1])
    return iops, iops * secs


#: Stride between qemu-img bench writes for "random" 4K writes: an odd number of 4 KiB
#: blocks, so offsets (taken modulo the image size) scatter over the whole image.
RAND_STRIDE = 4096 * 48_271


def qemu_bench(url, size, qd, rand, count):
    args = ["qemu-img", "bench", "-f", "raw", "-t", "none", "-w", "--pattern", "165",
            "-c", str(count), "-d", str(qd), "-s", str(size)]
    if rand:
        args += ["-S", str(RAND_STRIDE)]
    out = run(args + [url])
    m = re.search(r"Run completed in ([0-9.]+) seconds", out)
    if not m:
        raise RuntimeError(f"no result from qemu-img bench: {out[-300:]}")
    secs = float(m.group(1))
    return count / secs, count


def one(target, wl, secs, counts):
    """Runs one workload against one target; returns a result dict."""
    name, backing, size, qd, rand, write = wl
    url = target.url(backing)
    c0 = cpu_ticks(target.pid)
    if write:
        key = (target.name, name, backing)
        if key not in counts:  # calibrate: a short run sizes the measured one to ~secs
            iops, _ = qemu_bench(url, size, qd, rand, 2000 if size == 4096 else 100)
            counts[key] = max(100, int(iops * secs))
            c0 = cpu_ticks(target.pid)
        iops, ios = qemu_bench(url, size, qd, rand, counts[key])
    else:
        iops, ios = iscsi_perf(url, size, qd, rand, secs)
    c1 = cpu_ticks(target.pid)
    cpu_s = (c1 - c0) / CLK_TCK
    return {
        "iops": iops,
        "mib_s": iops * size / (1 << 20),
        "lat_us": qd / iops * 1e6 if iops else float("inf"),
        "cpu_per_mio": cpu_s / ios * 1e6 if ios else float("inf"),
    }


def iperf(procs, work):
    s = procs.start(["iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", str(IPERF_PORT)],
                    os.path.join(work, "iperf3.log"))
    try:
        wait_listen_iperf(s)
        out = run(["iperf3", "-c", "127.0.0.1", "-p", str(IPERF_PORT), "-t", "5", "-P", "1",
                   "-J"], timeout=30)
        return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 8 / (1 << 20)
    finally:
        procs.stop(s)


def loopback_rtt(procs, work, secs=3):
    """The machine's TCP round trip on loopback for a 4 KiB message (sockperf ping-pong):
    the floor under any QD1 latency, since one command is one request and one answer."""
    s = procs.start(["sockperf", "server", "-i", "127.0.0.1", "-p", str(SOCKPERF_PORT), "--tcp"],
                    os.path.join(work, "sockperf.log"))
    try:
        wait_listen(SOCKPERF_PORT, s)
        out = run(["sockperf", "ping-pong", "-i", "127.0.0.1", "-p", str(SOCKPERF_PORT), "--tcp",
                   "-m", "4096", "-t", str(secs)], timeout=secs + 30)
        # sockperf reports half the round trip ("latency"); the floor is the whole of it.
        avg = re.search(r"Latency is ([0-9.]+) usec", out)
        p50 = re.search(r"percentile 50\.000 =\s*([0-9.]+)", out)
        if not avg or not p50:
            raise RuntimeError(f"no result from sockperf: {out[-300:]}")
        return {"avg_us": 2 * float(avg.group(1)), "p50_us": 2 * float(p50.group(1))}
    finally:
        procs.stop(s)


def wait_listen_iperf(s):
    # iperf3 -1 serves exactly one test: a probe connection would consume it, so wait for
    # the listening socket to appear in /proc/net/tcp instead.
    want = f":{IPERF_PORT:04X}"
    deadline = time.monotonic() + LISTEN_TIMEOUT_S
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as f:
            if any(want in ln.split()[1] and ln.split()[3] == "0A" for ln in f.readlines()[1:]):
                return
        if s.poll() is not None:
            raise RuntimeError("iperf3 -s exited")
        time.sleep(0.01)
    raise RuntimeError("iperf3 did not listen")


# ------------------------------------------------------------------ scale tests (esos, tgt)

def scale_esos(procs, binary, work, sessions):
    res = {}
    d = os.path.join(work, "scale16")
    os.makedirs(d)
    luns = []
    for i in range(16):
        luns += ["--lun", f"{d}/lun{i}.img:1G"]
    p = procs.start([binary, "serve", "--portal", f"127.0.0.1:{ESOS_SCALE_PORT}", *luns,
                     "--data-dir", f"{d}/data", "--log-level", "warn"], f"{d}/esos.log")
    try:
        wait_listen(ESOS_SCALE_PORT, p)
        time.sleep(1.0)
        res["idle_rss_16"] = status_kib(p.pid, "VmRSS")
        res["sessions_opened"], res["sessions_rss"] = hold_sessions(
            p.pid, ESOS_SCALE_PORT, ESOS_IQN, sessions)
        res["sessions_base"] = res["idle_rss_16"]
    finally:
        procs.stop(p)
    res["start_1000"] = start_1000(procs, binary, work)
    return res


def hold_sessions(pid, port, iqn, n):
    """Opens n sessions, reads VmRSS while they are held, closes them."""
    socks = []
    try:
        for i in range(n):
            try:
                socks.append(iscsi_login.login("127.0.0.1", port, iqn, iscsi_login.isid_for(i)))
            except (OSError, iscsi_login.LoginError) as e:
                log(f"  session {i} failed: {e}")
                break
        time.sleep(1.0)
        return len(socks), status_kib(pid, "VmRSS")
    finally:
        for s in socks:
            s.close()


def start_1000(procs, binary, work):
    """Seconds from exec to the first successful login, with 1,000 file LUNs on 100 targets."""
    d = os.path.join(work, "scale1000")
    os.makedirs(f"{d}/disks")
    lines = [
        "[server]", f'data_dir = "{d}/data"', 'log_level = "warn"',
        "[[server.portal]]", f'address = "127.0.0.1:{ESOS_SCALE_PORT}"', "",
    ]
    for i in range(1000):
        img = f"{d}/disks/d{i}.img"
        with open(img, "wb") as f:
            f.truncate(64 << 20)
        lines += ["[[device]]", f'name = "d{i}"', 'type = "file"', f'path = "{img}"', ""]
    for t in range(100):
        maps = ", ".join(f'{{ lun = {k}, device = "d{t * 10 + k}" }}' for k in range(10))
        lines += ["[[target]]", f'name = "iqn.2026-11.org.esos:t{t}"',
                  f"default_luns = [{maps}]", ""]
    cfg = f"{d}/esos.toml"
    with open(cfg, "w") as f:
        f.write("\n".join(lines))
    os.chmod(cfg, 0o600)
    # First start creates identity.toml for 1,000 LUs; the timed start is the second, the
    # one a restarted server sees.
    times = []
    for _ in range(2):
        t0 = time.monotonic()
        p = procs.start([binary, "serve", "--config", cfg], f"{d}/esos.log")
        try:
            wait_listen(ESOS_SCALE_PORT, p, timeout_s=60)
            deadline = time.monotonic() + 60
            while True:
                try:
                    s = iscsi_login.login("127.0.0.1", ESOS_SCALE_PORT,
                                          "iqn.2026-11.org.esos:t99", iscsi_login.isid_for(1))
                    s.close()
                    break
                except (OSError, iscsi_login.LoginError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.005)
            times.append(time.monotonic() - t0)
        finally:
            procs.stop(p)
    # `esos config apply` of the same file to a daemon serving none of it, then again
    # (the second apply must change nothing).
    base = f"{d}/base.toml"
    with open(base, "w") as f:
        f.write("\n".join(lines[:6]) + "\n")
    os.chmod(base, 0o600)
    applies = []
    p = procs.start([binary, "serve", "--config", base], f"{d}/esos-apply.log")
    try:
        wait_listen(ESOS_SCALE_PORT, p, timeout_s=60)
        sock = f"{d}/data/esos.sock"
        for _ in range(2):
            t0 = time.monotonic()
            out = run([binary, "--socket", sock, "--json", "config", "apply", cfg])
            applies.append(time.monotonic() - t0)
        report = json.loads(out)["report"]
        changed = sum(len(report[k]) for k in ("devices_added", "devices_removed",
                                                 "devices_changed", "targets_added",
                                                 "targets_removed", "targets_changed"))
    finally:
        procs.stop(p)
    return {"first": times[0], "restart": times[1], "apply": applies[0],
            "reapply": applies[1], "reapply_changed": changed}


def scale_tgt(procs, work, sessions):
    res = {}
    d = os.path.join(work, "tgt-scale")
    os.makedirs(d)
    p = procs.start(["tgtd", "-f", "-C", str(TGT_SCALE_CONTROL), "--iscsi",
                     f"portal=127.0.0.1:{TGT_SCALE_PORT}"], f"{d}/tgtd.log")
    try:
        wait_listen(TGT_SCALE_PORT, p)
        t = ["tgtadm", "-C", str(TGT_SCALE_CONTROL), "--lld", "iscsi"]
        run(t + ["--op", "new", "--mode", "target", "--tid", "1", "-T", TGT_IQN])
        for i in range(16):
            img = f"{d}/lun{i}.img"
            with open(img, "wb") as f:
                f.truncate(1 << 30)
            run(t + ["--op", "new", "--mode", "logicalunit", "--tid", "1", "--lun", str(i + 1),
                     "-b", img])
        run(t + ["--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL"])
        time.sleep(1.0)
        res["idle_rss_16"] = status_kib(p.pid, "VmRSS")
        res["sessions_opened"], res["sessions_rss"] = hold_sessions(
            p.pid, TGT_SCALE_PORT, TGT_IQN, sessions)
        res["sessions_base"] = res["idle_rss_16"]
    finally:
        procs.stop(p, signal.SIGKILL)
    return res


# ------------------------------------------------------------------ report

def fmt(v, unit):
    if unit == "iops":
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


TARGETS = {  # (workload name, backing) -> minimum esos/tgt ratio; None: measured, no target
    ("4K seq read QD1", "file"): None,
    ("4K seq write QD32", "file"): None,
    ("4K rand read QD32", "file"): 2.0,
    ("4K rand write QD32", "file"): 2.0,
    ("4K rand read QD32", "null"): 1.3,
    ("4K rand read QD1", "file"): 1.4,
    ("1M seq read QD8", "file"): 1.3,
    ("1M seq write QD8", "file"): 1.3,
}


def spread(vals, unit):
    """min–max over the rounds, for the reader to judge the median beside it."""
    return f"{fmt(min(vals), unit)}–{fmt(max(vals), unit)}"


def report(results, meta, iperf_mib, scale, hwm, rtt):
    out = []
    w = out.append
    w(f"Run: {meta['date']}; {meta['rounds']} rounds x {meta['secs']} s per workload, "
      f"alternating esos and tgt; medians shown, with the min–max over the rounds.")
    w(f"Machine: {meta['nproc']} CPUs, {meta['cpu']}, kernel {meta['kernel']}; "
      f"1-minute load average before the run: {meta['load']}, after: {meta['load_after']}.")
    w("")
    w("| workload | backing | esos (min–max) | tgt (min–max) | esos/tgt (min–max) | "
      "per-round ratios | target | met | esos lat µs | tgt lat µs | esos CPU-s/M I/O | "
      "tgt CPU-s/M I/O | CPU ratio |")
    w("| --- | --- | ---: | ---: | ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for wl in WORKLOADS:
        name, backing, size, *_ = wl
        med = {}
        for t in ("esos", "tgt"):
            rs = results[(t, name, backing)]
            med[t] = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
        big = size >= (1 << 20)
        key = "mib_s" if big else "iops"
        unit = "MiB/s" if big else "IOPS"
        ratio = med["esos"][key] / med["tgt"][key]
        ratios = [e[key] / t[key] for e, t in zip(results[("esos", name, backing)],
                                                   results[("tgt", name, backing)])]
        per_round = ", ".join(f"{r:.2f}" for r in ratios)
        goal = TARGETS[(name, backing)]
        goal_s, met = ("-", "-") if goal is None else (f"≥ {goal}×",
                                                       "yes" if ratio >= goal else "NO")
        cpu_ratio = med["esos"]["cpu_per_mio"] / med["tgt"]["cpu_per_mio"]
        e_sp = spread([r[key] for r in results[("esos", name, backing)]], key)
        t_sp = spread([r[key] for r in results[("tgt", name, backing)]], key)
        lat = {t: f"{med[t]['lat_us']:.0f}" for t in ("esos", "tgt")}
        if name.endswith("QD1") and rtt:
            # One command is one round trip: show what is left above the machine's floor.
            lat = {t: f"{lat[t]} (floor {med[t]['lat_us'] - rtt['avg_us']:+.0f})"
                   for t in lat}
        w(f"| {name} | {backing} | {fmt(med['esos'][key], key)} {unit} ({e_sp}) | "
          f"{fmt(med['tgt'][key], key)} {unit} ({t_sp}) | {ratio:.2f}× "
          f"({min(ratios):.2f}–{max(ratios):.2f}) | {per_round} | {goal_s} | "
          f"{met} | {lat['esos']} | "
          f"{lat['tgt']} | {med['esos']['cpu_per_mio']:.2f} | "
          f"{med['tgt']['cpu_per_mio']:.2f} | {cpu_ratio:.2f}× |")
    w("")
    if rtt:
        w(f"Loopback TCP round trip for a 4 KiB message (sockperf ping-pong, 3 s): "
          f"{rtt['avg_us']:.0f} µs average, {rtt['p50_us']:.0f} µs median: the floor under "
          f"every QD1 latency above (one command is one request and one answer).")
    r1m = statistics.median(r["mib_s"] for r in results[("esos", "1M seq read QD8", "file")])
    w(f"iperf3 loopback, one stream, 5 s: {iperf_mib:,.0f} MiB/s. esos 1M seq read QD8 = "
      f"{100 * r1m / iperf_mib:.0f}% of it (target ≥ 60%: "
      f"{'yes' if r1m >= 0.6 * iperf_mib else 'NO'}).")
    for label, sel in (("every 4K run", lambda n: n.startswith("4K")),
                       ("4K runs at QD32", lambda n: n.startswith("4K") and n.endswith("QD32"))):
        cpu4k = {}
        for t in ("esos", "tgt"):
            vals = [r["cpu_per_mio"] for (tt, n, b), rs in results.items() if tt == t
                    and sel(n) for r in rs]
            cpu4k[t] = statistics.median(vals)
        cr = cpu4k["esos"] / cpu4k["tgt"]
        w(f"CPU-seconds per million 4K I/Os (median over {label}): esos {cpu4k['esos']:.2f}, "
          f"tgt {cpu4k['tgt']:.2f}, ratio {cr:.2f}× (target ≤ 0.5×: "
          f"{'yes' if cr <= 0.5 else 'NO'}).")
    w(f"Peak RSS (VmHWM) over the whole run: esos {hwm['esos'] / 1024:.1f} MiB, "
      f"tgt {hwm['tgt'] / 1024:.1f} MiB.")
    w("")
    if scale:
        e, t = scale["esos"], scale.get("tgt")
        w("| scale | esos | tgt | target | met |")
        w("| --- | ---: | ---: | --- | --- |")
        idle_t = f"{t['idle_rss_16'] / 1024:.1f} MiB" if t else "-"
        w(f"| idle RSS, 16 file LUNs | {e['idle_rss_16'] / 1024:.1f} MiB | {idle_t} | ≤ 16 MiB | "
          f"{'yes' if e['idle_rss_16'] <= 16 * 1024 else 'NO'} |")
        add_e = (e["sessions_rss"] - e["sessions_base"]) / 1024
        add_t = f"{(t['sessions_rss'] - t['sessions_base']) / 1024:.1f} MiB ({t['sessions_opened']} sessions)" if t else "-"
        w(f"| RSS added by {meta['sessions']} logged-in sessions | {add_e:.1f} MiB "
          f"({e['sessions_opened']} sessions) | {add_t} | ≤ 64 MiB | "
          f"{'yes' if add_e <= 64 and e['sessions_opened'] == meta['sessions'] else 'NO'} |")
        s = e["start_1000"]
        w(f"| start to first login, 1,000 file LUNs / 100 targets | {s['restart']:.2f} s "
          f"(first start, creating identities: {s['first']:.2f} s) | - | ≤ 1 s | "
          f"{'yes' if s['restart'] <= 1.0 and s['first'] <= 1.0 else 'NO'} |")
        w(f"| `esos config apply` of the same 1,000 LUNs to a running daemon | {s['apply']:.2f} s "
          f"(again: {s['reapply']:.2f} s, {s['reapply_changed']} changes) | - | ≤ 1 s, "
          f"0 changes | {'yes' if s['apply'] <= 1.0 and s['reapply'] <= 1.0 and s['reapply_changed'] == 0 else 'NO'} |")
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--secs", type=int, default=4)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--sessions", type=int, default=256)
    ap.add_argument("--no-scale", action="store_true")
    ap.add_argument("--out")
    ap.add_argument("--json")
    a = ap.parse_args()

    for port in [ESOS_PORT, ESOS_SCALE_PORT, IPERF_PORT, SOCKPERF_PORT, TGT_PORT, TGT_SCALE_PORT]:
        if not port_free(port):
            sys.exit(f"bench: 127.0.0.1:{port} is in use")
    t_start = time.monotonic()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "rounds": a.rounds, "secs": a.secs, "sessions": a.sessions,
        "nproc": os.cpu_count(),
        "cpu": next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                     if ln.startswith("model name")), "?"),
        "kernel": os.uname().release,
        "load": open("/proc/loadavg").read().split()[0],
    }
    work = tempfile.mkdtemp(prefix="esos-bench.", dir="/dev/shm")
    procs = Procs()
    try:
        log(f"bench: work dir {work} (tmpfs); filling two {a.size_mib} MiB images")
        esos_img, tgt_img = f"{work}/esos.img", f"{work}/tgt.img"
        fill(esos_img, a.size_mib << 20)
        shutil.copyfile(esos_img, tgt_img)
        log("bench: iperf3 loopback ceiling")
        iperf_mib = iperf(procs, work)
        log("bench: loopback round trip (sockperf)")
        rtt = loopback_rtt(procs, work)
        esos = Esos(procs, a.bin, work, esos_img)
        tgt = Tgt(procs, work, tgt_img)
        results, counts = {}, {}
        for rnd in range(a.rounds):
            for wl in WORKLOADS:
                order = (esos, tgt) if rnd % 2 == 0 else (tgt, esos)
                for t in order:
                    r = one(t, wl, a.secs, counts)
                    results.setdefault((t.name, wl[0], wl[1]), []).append(r)
                    log(f"  round {rnd + 1} {t.name:4} {wl[0]:18} {wl[1]:4}: "
                        f"{r['iops']:10,.0f} IOPS {r['mib_s']:8,.1f} MiB/s "
                        f"cpu {r['cpu_per_mio']:.2f} s/M")
        hwm = {"esos": status_kib(esos.pid, "VmHWM"), "tgt": status_kib(tgt.pid, "VmHWM")}
        procs.stop(esos.p)
        procs.stop(tgt.p, signal.SIGKILL)
        scale = None
        if not a.no_scale:
            log("bench: scale tests")
            scale = {"esos": scale_esos(procs, a.bin, work, a.sessions),
                     "tgt": scale_tgt(procs, work, a.sessions)}
        meta["load_after"] = open("/proc/loadavg").read().split()[0]
        text = report(results, meta, iperf_mib, scale, hwm, rtt)
        text += f"\n\nTotal bench time: {time.monotonic() - t_start:.0f} s.\n"
        print(text)
        if a.out:
            with open(a.out, "w") as f:
                f.write(text)
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"meta": meta, "iperf_mib_s": iperf_mib, "loopback_rtt": rtt, "scale": scale, "hwm_kib": hwm,
                           "results": {"|".join(k): v for k, v in results.items()}}, f, indent=1)
    finally:
        procs.stop_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
