"""Replicated vs unreplicated writes, resync and failover time (run through scripts/bench-replica).

A pair of esos nodes and a witness on loopback: n1 (iSCSI 127.0.0.1:3360, cluster :3362), n2
(3361, :3363), witness (:3364). Each node holds a replicated device `db` (LUN 0) over a file on
tmpfs and n1 also an unreplicated file device `solo` of the same size (LUN 1), so both rows of
a round run on the same daemon and the same kind of backing. Rounds alternate the order of
the two. Every process started here is stopped by PID in a finally block.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Procs, log, qemu_bench, wait_listen  # noqa: E402

ISCSI = {"n1": 3360, "n2": 3361}
CLUSTER = {"n1": 3362, "n2": 3363, "w": 3364}
IQN = "iqn.2026-12.io.esos:bench-replica"
WORKLOADS = [
    ("4K rand write QD32", 4096, 32, True),
    ("1M seq write QD8", 1 << 20, 8, False),
]
#: Bounds of every wait on the cluster.
STATE_TIMEOUT_S = 300
FAILOVER_TIMEOUT_S = 30


def config(node, work, size_mib):
    d = os.path.join(work, node)
    members = "\n".join(
        f'[[cluster.member]]\nname = "{n}"\naddress = "127.0.0.1:{CLUSTER[n]}"\n'
        f"portal_groups = [{i + 1}]\n"
        for i, n in enumerate(("n1", "n2")))
    group = 1 if node == "n1" else 2
    return f"""[server]
portal = [{{ address = "127.0.0.1:{ISCSI[node]}", group = {group} }}]
data_dir = "{d}"
log_level = "warn"

[cluster]
name = "bench"
node = "{node}"
auto_promote = true
{members}
[cluster.witness]
name = "w"
address = "127.0.0.1:{CLUSTER['w']}"

[[device]]
name = "db-disk"
type = "file"
path = "{d}/db.img"
size = "{size_mib}M"
[[device]]
name = "db"
type = "replicated"
backing = "db-disk"
[[device]]
name = "solo"
type = "file"
path = "{d}/solo.img"
size = "{size_mib}M"

[[target]]
name = "{IQN}"
default_luns = [{{ lun = 0, device = "db" }}, {{ lun = 1, device = "solo" }}]
"""


class Pair:
    def __init__(self, procs, binary, work, size_mib):
        self.procs, self.binary, self.work = procs, binary, work
        self.p = {}
        os.makedirs(os.path.join(work, "w"))
        self.p["w"] = procs.start(
            [binary, "witness", "--cluster", "bench", "--name", "w", "--listen",
             f"127.0.0.1:{CLUSTER['w']}", "--data-dir", os.path.join(work, "w")],
            os.path.join(work, "w.log"))
        wait_listen(CLUSTER["w"], self.p["w"])
        for n in ("n1", "n2"):
            os.makedirs(os.path.join(work, n))
            path = os.path.join(work, n, "esos.toml")
            with open(path, "w") as f:
                f.write(config(n, work, size_mib))
            os.chmod(path, 0o600)
        for n in ("n1", "n2"):
            self.start(n)

    def start(self, n):
        self.p[n] = self.procs.start(
            [self.binary, "serve", "--config", os.path.join(self.work, n, "esos.toml")],
            os.path.join(self.work, f"{n}.log"))
        wait_listen(ISCSI[n], self.p[n])

    def cli(self, n, *args, check=True):
        r = subprocess.run([self.binary, "--socket", os.path.join(self.work, n, "esos.sock"),
                            *args], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=60)
        if check and r.returncode != 0:
            raise RuntimeError(f"esos {' '.join(args)} on {n}: {r.stderr.strip()}")
        return r

    def status(self, n):
        r = self.cli(n, "--json", "replica", "status", "db", check=False)
        if r.returncode != 0:
            return None
        j = json.loads(r.stdout)
        return j["replicas"][0] if "replicas" in j else j

    def wait(self, n, what, cond, timeout_s=STATE_TIMEOUT_S):
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            s = self.status(n)
            if s is not None and cond(s):
                return s
            time.sleep(0.05)
        raise RuntimeError(f"{n}: {what} not reached in {timeout_s} s: {self.status(n)}")

    def url(self, n, lun):
        return f"iscsi://127.0.0.1:{ISCSI[n]}/{IQN}/{lun}"


def in_sync(s):
    return all(p["link"] == "connected" and p["out_of_sync_bytes"] == 0 for p in s["peers"])


def serves(url):
    r = subprocess.run(["qemu-img", "bench", "-f", "raw", "-t", "none", "-c", "1", "-s",
                        "4096", url], stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=20)
    return r.returncode == 0


def failover(pair, dead, survivor):
    """SIGKILLs `dead`'s daemon; seconds until `survivor` serves a read as primary."""
    t0 = time.monotonic()
    pair.procs.stop(pair.p[dead], signal.SIGKILL)
    url = pair.url(survivor, 0)
    while time.monotonic() - t0 < FAILOVER_TIMEOUT_S:
        s = pair.status(survivor)
        if s and s["role"] == "primary" and serves(url):
            return time.monotonic() - t0
        time.sleep(0.05)
    raise RuntimeError(f"{survivor} did not take over in {FAILOVER_TIMEOUT_S} s")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--secs", type=float, default=4)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--failovers", type=int, default=3)
    ap.add_argument("--out")
    a = ap.parse_args()
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    procs = Procs()
    rows, extra = [], []
    with tempfile.TemporaryDirectory(prefix="esos-bench-replica-", dir=shm) as work:
        try:
            pair = Pair(procs, a.bin, work, a.size_mib)
            t0 = time.monotonic()
            pair.cli("n1", "replica", "promote", "db", "--force")
            pair.wait("n1", "initial sync", in_sync)
            full = time.monotonic() - t0
            extra.append(f"initial full sync of {a.size_mib} MiB: {full:.1f} s "
                         f"({a.size_mib / full:.0f} MiB/s)")
            log(extra[-1])

            counts, res = {}, {}
            for r in range(a.rounds):
                for name, size, qd, rand in WORKLOADS:
                    order = [("replicated", 0), ("unreplicated", 1)]
                    if r % 2:
                        order.reverse()
                    for kind, lun in order:
                        url = pair.url("n1", lun)
                        key = (name, kind)
                        if key not in counts:
                            iops, _ = qemu_bench(url, size, qd, rand, 2000 if size == 4096 else 100)
                            counts[key] = max(100, int(iops * a.secs))
                        iops, _ = qemu_bench(url, size, qd, rand, counts[key])
                        res.setdefault(key, []).append(iops)
                        log(f"round {r + 1} {name} {kind}: {iops:.0f} IOPS")
            for name, size, _, _ in WORKLOADS:
                rep, solo = res[(name, "replicated")], res[(name, "unreplicated")]
                ratios = [x / y for x, y in zip(rep, solo)]
                rows.append((name, statistics.median(rep), statistics.median(solo),
                             statistics.median(ratios), min(ratios), max(ratios), size))

            # Resync after a 10-second disconnect under load: n2 frozen, n1 writing.
            url = pair.url("n1", 0)
            load_count = counts[("4K rand write QD32", "replicated")] * 4
            load = subprocess.Popen(["qemu-img", "bench", "-f", "raw", "-t", "none", "-w",
                                     "-c", str(load_count), "-d", "32", "-s", "4096", "-S",
                                     str(4096 * 48_271), url], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                time.sleep(1)
                os.kill(pair.p["n2"].pid, signal.SIGSTOP)
                time.sleep(10)
                dirty = pair.status("n1")["peers"][0]["out_of_sync_bytes"]
                os.kill(pair.p["n2"].pid, signal.SIGCONT)
                t0 = time.monotonic()
                pair.wait("n1", "resync after the disconnect", in_sync)
                took = time.monotonic() - t0
            finally:
                load.wait(timeout=300)
            extra.append(f"resync after a 10 s disconnect under 4K random write load: "
                         f"{dirty / (1 << 20):.0f} MiB out of sync, in step again {took:.1f} s "
                         f"after the peer returned ({dirty / (1 << 20) / took:.0f} MiB/s "
                         f"including reconnection)")
            log(extra[-1])

            # Failover without Pacemaker: SIGKILL the primary, time until the other serves.
            times, dead, alive = [], "n1", "n2"
            for _ in range(a.failovers):
                times.append(failover(pair, dead, alive))
                log(f"failover {dead} -> {alive}: {times[-1]:.2f} s")
                pair.start(dead)
                pair.wait(alive, "the old primary back in step", in_sync)
                dead, alive = alive, dead
            extra.append("failover without Pacemaker (SIGKILL of the primary until the other "
                         "node serves a read as primary; witness, lease 1.5 s): "
                         + ", ".join(f"{t:.2f}" for t in times)
                         + f" s (median {statistics.median(times):.2f} s)")
            log(extra[-1])
        finally:
            procs.stop_all()

    out = ["| workload | replicated | unreplicated | ratio (median) | ratio min–max |",
           "| --- | --- | --- | --- | --- |"]
    for name, rep, solo, ratio, lo, hi, size in rows:
        unit = (lambda v: f"{v / 1000:.1f}k IOPS") if size == 4096 else \
            (lambda v: f"{v * size / (1 << 20):.0f} MiB/s")
        out.append(f"| {name} | {unit(rep)} | {unit(solo)} | {ratio:.2f}× | {lo:.2f}–{hi:.2f} |")
    out.append("")
    out += [f"- {e}" for e in extra]
    text = "\n".join(out) + "\n"
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
