#!/usr/bin/python3
"""Fleet rollout benchmark: one controller (sluice-controld) and N simulated nodes
(sluice-fleet-sim: the real agent code, no DPDK) on loopback, for each N asked.

  tools/fleet_bench.py --build BUILD_DIR --nodes 100 --nodes 1000 [--out results.json]

For each N, on a fresh controller and simulator (no canary stage by default, so the figure is
pure fan-out): wait until all N nodes converged on revision 1, then measure two revisions, a
signed Telegram block (apps: [telegram]) and its signed lift (unblock):
  - per node, the time from the approval's HTTP response to the node's `applied` event for the
    new revision, and to its `acked` event (the controller answered its ACK; --report-acks), by
    the simulator's timestamps (same machine, same clock): p50, p99, max; and the apply times
    from the moment the approval request was sent;
  - the time to the last ACK as the controller sees it: its `rollout.completed` audit record
    (revision creation -> last live node's ACK, millisecond precision), and when our poll of
    /v1/rollout first saw the stage `done`;
  - controller CPU seconds (utime+stime of /proc/PID/stat) from just before the approval to
    the rollout's completion;
  - bytes per node per revision: the delta of sluice_control_snapshot_bytes_total over the delta
    of sluice_control_snapshots_served_total (snapshot bodies, HTTP headers not counted), and
    the status POST body an ACK carries (computed from the agent's format, status_json).
Also the controller's peak RSS (VmHWM) and the simulator's CPU. Timings are reported, not
asserted; the exit status is 1 only when a run did not converge."""

import argparse
import hashlib
import json
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

TOKENS = {"ministry": "tok-ministry-1", "engineer": "tok-engineer-alice",
          "viewer": "tok-viewer", "node": "tok-node-fleet"}
ISSUER = "ministry-of-communications"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rfc(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def proc_status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def listen_overflows():
    """TcpExt ListenOverflows (machine-wide): SYNs dropped because a listen queue was full."""
    with open("/proc/net/netstat") as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return int(dict(zip(names.split()[1:], values.split()[1:])).get("ListenOverflows", 0))
    return 0


def percentile(values, p):
    """Nearest rank."""
    if not values:
        return None
    s = sorted(values)
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def status_body_bytes(revision, offered, labels):
    """The ACK's POST /v1/nodes/{node}/status body, as control/agent's status_json writes it
    (nlohmann::json: keys sorted, compact)."""
    return len(json.dumps({"revision": revision, "offered": offered, "ruleset_sha256": "0" * 64,
                           "result": "ack", "error": "", "health": "ok", "labels": labels},
                          sort_keys=True, separators=(",", ":")).encode())


class Run:
    def __init__(self, args, nodes, root):
        self.a, self.n, self.root = args, nodes, root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.ctl_bin = os.path.join(args.build, "sluicectl")
        self.proc = self.sim = None
        self.sim_out = os.path.join(root, "sim.jsonl")
        self.offset = 0
        self.applied = {}  # revision -> {node: at}
        self.acked = {}    # revision -> {node: at} (the first ACK the controller took)
        for name in ("ministry", "controller"):
            self.ctl(["keygen", "--public", f"{name}.pub", "--secret", f"{name}.key"])
        with open(os.path.join(root, "node.token"), "w") as f:
            f.write(TOKENS["node"])
        tokens = "\n".join(
            f"  - {{ name: {role}-user, role: {role}, sha256: {hashlib.sha256(t.encode()).hexdigest()} }}"
            for role, t in TOKENS.items())
        canary = (f"canary: {{ labels: {{ group: canary }}, soak_seconds: {args.soak} }}\n"
                  if args.canary else "")
        with open(os.path.join(root, "controld.yaml"), "w") as f:
            f.write(f"""listen: 127.0.0.1:{self.port}
database: controld.db
apps_dir: {args.source}/config/apps
signing_key: controller.key
issuers:
  - {{ name: {ISSUER}, public_key: ministry.pub }}
approvals_required: 1
stale_after_seconds: {max(90, 3 * args.status_interval)}
max_wait_seconds: {args.wait}
http_threads: {nodes + 64}
{canary}inventory: {{ sites: [sim], labels: {{ group: [canary, main] }} }}
tokens:
{tokens}
""")

    def ctl(self, args, role=None):
        env = dict(os.environ)
        env.pop("SLUICE_TOKEN", None)
        if role:
            env["SLUICE_TOKEN"] = TOKENS[role]
        p = subprocess.run([self.ctl_bin, "--controller", getattr(self, "url", "http://127.0.0.1:1")] + args,
                           cwd=self.root, env=env, capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"sluicectl {' '.join(args)}: exit {p.returncode}: {p.stdout}{p.stderr}")
        return p

    def http(self, method, path, role="viewer", body=None, timeout=30):
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        if role:
            req.add_header("Authorization", "Bearer " + TOKENS[role])
        if body is not None:
            req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            data = r.read()
        return json.loads(data) if data[:1] in (b"{", b"[") else data.decode()

    def get(self, path):
        try:
            return self.http("GET", path)
        except (urllib.error.URLError, ConnectionError, OSError):
            return None

    def metric(self, name):
        text = self.get("/metrics") or ""
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{}"):
                return float(line.split()[-1])
        return 0.0

    def start(self):
        self.log = open(os.path.join(self.root, "controld.log"), "w")
        self.proc = subprocess.Popen([os.path.join(self.a.build, "sluice-controld"), "--config",
                                      "controld.yaml"], cwd=self.root, stdout=self.log, stderr=self.log)
        if not self.wait_for(lambda: self.get("/v1/health") is not None, 20):
            raise RuntimeError("the controller did not answer /v1/health (see controld.log)")
        args = [os.path.join(self.a.build, "sluice-fleet-sim"), "--controller", self.url,
                "--nodes", str(self.n), "--labels", "site=sim", "--controller-key", "controller.pub",
                "--node-token-file", "node.token", "--state-root", os.path.join(self.root, "state"),
                "--wait", str(self.a.wait), "--status-interval", str(self.a.status_interval),
                "--report-acks"]
        if self.a.canary:
            args += ["--canary", str(self.a.canary)]
        self.sim_started = time.time()
        self.sim = subprocess.Popen(args, cwd=self.root, stdout=open(self.sim_out, "w"),
                                    stderr=open(os.path.join(self.root, "sim.log"), "w"))

    def stop(self):
        for p in (self.sim, self.proc):
            if p and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()

    @staticmethod
    def wait_for(pred, timeout, step=0.05):
        end = time.time() + timeout
        while time.time() < end:
            v = pred()
            if v:
                return v
            time.sleep(step)
        return pred()

    def read_events(self):
        with open(self.sim_out) as f:
            f.seek(self.offset)
            data = f.read()
        cut = data.rfind("\n") + 1
        self.offset += len(data[:cut].encode())
        for line in data[:cut].splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "applied":
                self.applied.setdefault(ev["revision"], {})[ev["node"]] = ev["at"]
            elif ev.get("event") == "acked":
                self.acked.setdefault(ev["revision"], {}).setdefault(ev["node"], ev["at"])

    def all_applied(self, rev):
        self.check_alive()
        self.read_events()
        return len(self.applied.get(rev, {})) >= self.n and len(self.acked.get(rev, {})) >= self.n

    def check_alive(self):
        for name, p, log in (("sluice-fleet-sim", self.sim, "sim.log"), ("sluice-controld", self.proc, "controld.log")):
            if p and p.poll() is not None:
                with open(os.path.join(self.root, log)) as f:
                    tail = f.read()[-600:]
                raise RuntimeError(f"{name} exited ({p.returncode}): {tail}")

    def all_converged(self, rev):
        self.check_alive()
        nodes = (self.get("/v1/nodes") or {}).get("nodes", [])
        return len([x for x in nodes if x["applied_revision"] >= rev and x["state"] == "converged"]) >= self.n

    def revision(self, what, doc_name, doc_text, submit_cmd, key):
        with open(os.path.join(self.root, doc_name), "w") as f:
            f.write(doc_text)
        self.ctl(["sign", "--secret", "ministry.key", doc_name])
        self.ctl([submit_cmd, doc_name], role="ministry")
        before = self.http("GET", "/v1/rollout")["target"]
        bytes0 = self.metric("sluice_control_snapshot_bytes_total")
        served0 = self.metric("sluice_control_snapshots_served_total")
        cpu0 = cpu_seconds(self.proc.pid)
        sim_cpu0 = cpu_seconds(self.sim.pid)
        t_sent = time.time()
        self.http("POST", f"/v1/directives/{ISSUER}/{key}/approve", role="engineer", body={})
        t_resp = time.time()
        ro = self.http("GET", "/v1/rollout")
        target = ro["target"]
        if target <= before:
            raise RuntimeError(f"{what}: the approval made no new revision ({before} -> {target})")
        done = self.wait_for(lambda: (lambda r: r and r["target"] == target and r["stage"] == "done")(
            self.get("/v1/rollout")), self.a.timeout)
        t_done = time.time()
        cpu1 = cpu_seconds(self.proc.pid)
        sim_cpu1 = cpu_seconds(self.sim.pid)
        if not done:
            raise RuntimeError(f"{what}: rollout of revision {target} not done in {self.a.timeout} s")
        if not self.wait_for(lambda: self.all_applied(target), 30):
            raise RuntimeError(f"{what}: only {len(self.applied.get(target, {}))} applied and "
                               f"{len(self.acked.get(target, {}))} acked events of {self.n} for "
                               f"revision {target}")
        converged = self.all_converged(target)
        bytes1 = self.metric("sluice_control_snapshot_bytes_total")
        served1 = self.metric("sluice_control_snapshots_served_total")
        records = self.http("GET", "/v1/audit?limit=100000")["records"]
        completed = [r["detail"] for r in records if r["event"] == "rollout.completed"
                     and isinstance(r["detail"], dict) and r["detail"].get("revision") == target]
        at = list(self.applied[target].values())
        lat = [t - t_resp for t in at]
        lat_sent = [t - t_sent for t in at]
        ack = [t - t_resp for t in self.acked[target].values()]
        served = served1 - served0
        return {
            "what": what, "revision": target, "nodes": self.n,
            "all_converged_controller_view": converged,
            "approve_rtt_s": t_resp - t_sent,
            "apply_after_approval_response_s": {"p50": percentile(lat, 50), "p99": percentile(lat, 99),
                                                "max": max(lat), "min": min(lat)},
            "ack_after_approval_response_s": {"p50": percentile(ack, 50), "p99": percentile(ack, 99),
                                              "max": max(ack)},
            "apply_after_approval_sent_s": {"p50": percentile(lat_sent, 50),
                                            "p99": percentile(lat_sent, 99), "max": max(lat_sent)},
            "controller_last_ack_since_revision_s":
                completed[0].get("seconds_since_revision") if completed else None,
            "rollout_done_seen_after_approval_response_s": t_done - t_resp,
            "controller_cpu_s": cpu1 - cpu0,
            "sim_cpu_s": sim_cpu1 - sim_cpu0,
            "snapshots_served": served,
            "snapshot_bytes_per_node": (bytes1 - bytes0) / served if served else None,
            "status_post_body_bytes": status_body_bytes(target, target, {"site": "sim"}),
        }

    def stopped_summary(self):
        """Sums of the simulator's final per-node counters (after stop())."""
        out = {"fetch_failures": 0, "status_failures": 0, "nacks": 0}
        with open(self.sim_out) as f:
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("event") == "stopped":
                    for n in ev["nodes"]:
                        for k in out:
                            out[k] += n.get(k, 0)
        return out

    def bench(self):
        self.start()
        if not self.wait_for(lambda: self.all_converged(1), self.a.timeout, step=0.5):
            raise RuntimeError(f"{self.n} nodes did not all converge on revision 1")
        registered_s = time.time() - self.sim_started
        now = time.time()
        common = (f"issuer: {ISSUER}\nissued_at: {rfc(now - 300)}\n"
                  "legal_basis: \"Order No. 123 of 2026-11-20\"\n")
        block = (f"id: BENCH-BLOCK\n{common}action: block\nresponse: notice\n"
                 f"targets:\n  apps: [telegram]\nscope: all\nnot_before: {rfc(now - 60)}\n")
        lift = (f"id: BENCH-LIFT\n{common}action: unblock\nlifts: [BENCH-BLOCK]\n"
                f"scope: all\nnot_before: {rfc(now - 30)}\n")
        results = [self.revision("block", "block.yaml", block, "submit", "BENCH-BLOCK"),
                   self.revision("lift", "lift.yaml", lift, "lift", "BENCH-LIFT")]
        return {"nodes": self.n, "registration_s": registered_s,
                "controller_peak_rss_kib": proc_status_kib(self.proc.pid, "VmHWM"),
                "controller_threads": proc_status_kib(self.proc.pid, "Threads"),
                "sim_peak_rss_kib": proc_status_kib(self.sim.pid, "VmHWM"),
                "revisions": results}


def fmt(v, scale=1000.0, unit="ms"):
    return "-" if v is None else f"{v * scale:.0f} {unit}" if unit else f"{v:.0f}"


def print_table(all_results, machine):
    print(f"\nfleet rollout benchmark ({machine})")
    hdr = ("N", "rev", "apply p50", "apply p99", "ACK p50", "ACK p99", "ACK max", "last ACK (ctl)",
           "ctl CPU", "ctl peak RSS", "snapshot B/node", "status B/node")
    rows = [hdr]
    for r in all_results:
        for rv in r["revisions"]:
            a = rv["apply_after_approval_response_s"]
            k = rv["ack_after_approval_response_s"]
            rows.append((str(r["nodes"]), rv["what"], fmt(a["p50"]), fmt(a["p99"]), fmt(k["p50"]),
                         fmt(k["p99"]), fmt(k["max"]),
                         fmt(rv["controller_last_ack_since_revision_s"]),
                         f"{rv['controller_cpu_s']:.2f} s", f"{r['controller_peak_rss_kib'] / 1024:.1f} MiB",
                         fmt(rv["snapshot_bytes_per_node"], 1, ""), str(rv["status_post_body_bytes"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(hdr))]
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("apply/ACK: approval's HTTP response -> node's `applied` / `acked` event (simulator clock);\n"
          "last ACK (ctl): the controller's rollout.completed (revision created -> last ACK);\n"
          "ctl CPU: controller utime+stime from the approval to the rollout's completion.")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", required=True, help="build dir with sluice-controld, sluicectl, sluice-fleet-sim")
    ap.add_argument("--source", default=os.path.dirname(here), help="source tree (for config/apps)")
    ap.add_argument("--nodes", type=int, action="append", help="fleet size; repeat (default 100 and 1000)")
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--wait", type=int, default=25, help="long-poll wait, s (max_wait_seconds too)")
    ap.add_argument("--status-interval", type=int, default=30, help="nodes' periodic status, s")
    ap.add_argument("--canary", type=int, default=0, help="canary nodes (default 0: pure fan-out)")
    ap.add_argument("--soak", type=int, default=2, help="canary soak, s (with --canary)")
    ap.add_argument("--timeout", type=float, default=180, help="per-wait timeout, s")
    ap.add_argument("--keep", action="store_true", help="keep the work directories")
    a = ap.parse_args()
    a.build, a.source = os.path.abspath(a.build), os.path.abspath(a.source)
    sizes = a.nodes or [100, 1000]
    for b in ("sluice-controld", "sluicectl", "sluice-fleet-sim"):
        if not os.access(os.path.join(a.build, b), os.X_OK):
            sys.exit(f"fleet_bench: missing {a.build}/{b}")
    # Each long-polling node holds a socket in the controller and one in the simulator.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, 4 * max(sizes) + 1024) if hard != resource.RLIM_INFINITY else 4 * max(sizes) + 1024
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    machine = f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start"
    results, ok = [], True
    for n in sizes:
        root = tempfile.mkdtemp(prefix=f"sluice-fleet-bench-{n}-")
        run = Run(a, n, root)
        print(f"== N={n} (work dir {root})", flush=True)
        overflows0 = listen_overflows()
        try:
            r = run.bench()
            r["load_at_end"] = os.getloadavg()[0]
            results.append(r)
            for rv in r["revisions"]:
                x, k = rv["apply_after_approval_response_s"], rv["ack_after_approval_response_s"]
                print(f"   {rv['what']}: revision {rv['revision']}, applied p50 {x['p50'] * 1000:.0f} ms "
                      f"p99 {x['p99'] * 1000:.0f} ms; ACK p50 {k['p50'] * 1000:.0f} ms "
                      f"p99 {k['p99'] * 1000:.0f} ms max {k['max'] * 1000:.0f} ms", flush=True)
        except (RuntimeError, OSError, KeyError, ValueError) as ex:
            print(f"   N={n} failed: {ex}", flush=True)
            results.append({"nodes": n, "error": str(ex)})
            ok = False
        finally:
            run.stop()
            if results and results[-1]["nodes"] == n and "error" not in results[-1]:
                results[-1]["sim_totals"] = run.stopped_summary()
                results[-1]["tcp_listen_overflows"] = listen_overflows() - overflows0
                print(f"   simulator totals {results[-1]['sim_totals']}, TCP listen overflows "
                      f"(machine-wide) {results[-1]['tcp_listen_overflows']}", flush=True)
            if not a.keep:
                shutil.rmtree(root, ignore_errors=True)
    print_table([r for r in results if "error" not in r], machine)
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"machine": machine, "command": " ".join(sys.argv), "results": results}, f, indent=2)
        print(f"results: {a.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
