#!/usr/bin/python3
"""Fleet rollout benchmark: one controller (sluice-controld) and N simulated nodes
(sluice-fleet-sim: the real agent code, no DPDK) on loopback, for each N asked.

  tools/fleet_bench.py --build BUILD_DIR --nodes 100 --nodes 1000 [--out results.json]
  tools/fleet_bench.py --build BUILD_DIR --store etcd --replicas 3 --nodes 1000 --nodes 5000

The simulator is one event-driven process for up to 20,000 nodes (one keep-alive connection
per node), its state directories on /dev/shm when there is one (every apply fsyncs).
--store etcd: the controllers' store is a 3-member etcd cluster on loopback (/usr/bin/etcd,
started per N), with --replicas controllers on it; the nodes are split over --replicas simulator
processes (more when N > 20000 per process), each given every controller URL, rotated so each
process starts on a different replica. Approvals go through the first replica (leader or not).
CPU and bytes are summed over the replicas; RSS is reported per replica (the table: the max);
the etcd members' CPU over the same interval is reported too.

For each N, on a fresh controller and simulator (no canary stage by default, so the figure is
pure fan-out): wait until all N nodes converged on revision 1, then measure two revisions, a
signed Telegram block (apps: [telegram]) and its signed lift (unblock):
  - per node, the time from the approval's HTTP response to the node's `applied` event for the
    new revision (the simulator's timestamp), and to the moment a controller took its ACK (the
    node's `applied_at_ms` in GET /v1/nodes, the earliest over the replicas; an ACK rides on the
    node's next poll, so the simulator itself only learns it was taken when that poll is
    answered): p50, p99, max (same machine, same clock); and the apply times from the moment the
    approval request was sent;
  - the time to the last ACK as the controller sees it: its `rollout.completed` audit record
    (revision creation -> last live node's ACK, millisecond precision), and when our poll of
    /v1/rollout first saw the stage `done`;
  - controller CPU seconds (utime+stime of /proc/PID/stat) from just before the approval to
    the rollout's completion, and that per node in microseconds; the simulator's own CPU over
    the same interval per node (its PID's /proc stat, read apart from the controller's: the
    figure that says whether the simulator left the two cores to the controller);
  - bytes per node per revision: the delta of sluice_control_snapshot_bytes_total over the delta
    of sluice_control_snapshots_served_total (snapshot bodies, HTTP headers not counted), and
    the X-Sluice-Status header line an ACK rides on (the agent's status_header, with the
    controller's latest checkpoint).
Also the controller's peak RSS (VmHWM) and its peak thread count (Threads: of
/proc/PID/status, sampled every 0.2 s during the run), per replica. Timings are reported, not
asserted; the exit status is 1 only when a run did not converge.

--sim-cost: no controller; the simulator alone against a minimal in-process fake (asyncio) that
speaks the scoped protocol of issue 13 (one body per revision, signed once with the trusted
comment "sluice-snapshot revision=N scope=all", identical for every node), to measure the
simulator's own CPU per node per revision before a controller serves that protocol; once with
--share-verify and once with every node verifying its signature.

--perf DIR records the first controller's profile over each measured revision (perf record with
DWARF call graphs: DIR/controld-N-block.data and -lift.data; perf report -i FILE).

The controller runs its default server settings (control/README.md "The server"): its thread
count does not depend on N. Audit records are read in pages (the API caps one answer at 10,000)."""

import argparse
import asyncio
import base64
import hashlib
import json
import math
import os
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "tests", "integration"))
from control_harness import EtcdCluster, new_prefix, popen, wait_for  # noqa: E402  (after the path)
from netlab import controller_tls  # noqa: E402

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


def status_header_bytes(revision, offered, checkpoint):
    """The header line an ACK rides on, as control/agent's status_header writes it; `checkpoint`
    is the JSON of GET /v1/audit/checkpoint (sent in X-Sluice-Audit-Checkpoint's form)."""
    cp = base64.b64encode(json.dumps(checkpoint, separators=(",", ":")).encode()).decode() \
        if checkpoint else ""
    value = f"ack revision={revision} offered={offered} ruleset={'0' * 64}" + \
        (f" checkpoint={cp}" if cp else "")
    return len(f"X-Sluice-Status: {value}\r\n".encode())


class Run:
    SIM_MAX = 20000  # sluice-fleet-sim's --nodes limit

    def __init__(self, args, nodes, root):
        self.a, self.n, self.root = args, nodes, root
        self.etcd = args.store == "etcd"
        replicas = args.replicas if self.etcd else 1
        self.names = [f"ctl-{chr(ord('a') + i)}" for i in range(replicas)]
        self.ports = [free_port() for _ in self.names]
        # TLS by default (issue 14): the controller's own certificate, and each simulated node
        # presents a client certificate from the node CA (minted by the simulator).
        self.tls = not args.plain
        scheme = "https" if self.tls else "http"
        self.urls = [f"{scheme}://127.0.0.1:{p}" for p in self.ports]
        self.ca = controller_tls(root) if self.tls else None
        self.ssl_ctx = ssl.create_default_context(cafile=self.ca) if self.tls else None
        self.port, self.url = self.ports[0], self.urls[0]
        self.ctl_bin = os.path.join(args.build, "sluicectl")
        self.procs, self.sims = [], []
        self.proc = self.sim = None  # the first of each
        self.cluster = None
        sims = max(replicas, math.ceil(nodes / self.SIM_MAX))
        base, extra = divmod(nodes, sims)
        self.sim_sizes = [base + (1 if i < extra else 0) for i in range(sims)]
        self.sim_outs = [os.path.join(root, f"sim{i}.jsonl") for i in range(sims)]
        self.offsets = [0] * sims
        # fsync per apply and per node: tmpfs keeps that off the disk and off the timings.
        shm = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.state_base = tempfile.mkdtemp(prefix="sluice-fleet-state-", dir=shm) if shm else root
        self.peak_threads = {}  # replica name -> peak Threads:
        self.sampling = False
        self.sampler = None
        self.applied = {}  # revision -> {node: at}
        for name in ("ministry", "controller"):
            self.ctl(["keygen", "--public", f"{name}.pub", "--secret", f"{name}.key"])
        if self.tls:
            self.ctl(["ca", "init", "--out", "node-ca"])
        with open(os.path.join(root, "node.token"), "w") as f:
            f.write(TOKENS["node"])
        tokens = "\n".join(
            f"  - {{ name: {role}-user, role: {role}, sha256: {hashlib.sha256(t.encode()).hexdigest()} }}"
            for role, t in TOKENS.items())
        canary = (f"canary: {{ labels: {{ group: canary }}, soak_seconds: {args.soak} }}\n"
                  if args.canary else "")
        if self.etcd:
            self.cluster = EtcdCluster(root)
            self.prefix = new_prefix(f"bench-{nodes}")
        self.tokens, self.canary = tokens, canary  # the configs are written by start()

    def write_config(self, file, port, store, canary, tokens):
        args, nodes = self.a, self.n
        with open(os.path.join(self.root, file), "w") as f:
            f.write(f"""listen: 127.0.0.1:{port}
{store}apps_dir: {args.source}/config/apps
signing_key: controller.key
issuers:
  - {{ name: {ISSUER}, public_key: ministry.pub }}
approvals_required: 1
stale_after_seconds: {max(90, 3 * args.status_interval)}
max_wait_seconds: {args.wait}
{canary}inventory: {{ sites: [sim], labels: {{ group: [canary, main] }} }}
nodes_file: nodes.yaml
{"tls: { cert: ctl.crt, key: ctl.key }" if self.tls else ""}
{"node_ca: { cert: node-ca/node-ca.crt, key: node-ca/node-ca.key }" if self.tls else ""}
tokens:
{tokens}
""")

    def ctl(self, args, role=None):
        env = dict(os.environ)
        env.pop("SLUICE_TOKEN", None)
        if role:
            env["SLUICE_TOKEN"] = TOKENS[role]
        ca = ["--ca", self.ca] if getattr(self, "ca", None) else []
        p = subprocess.run([self.ctl_bin, "--controller", getattr(self, "url", "http://127.0.0.1:1")] + ca + args,
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
        with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_ctx) as r:
            data = r.read()
        return json.loads(data) if data[:1] in (b"{", b"[") else data.decode()

    def get(self, path, url=None):
        saved = self.url
        try:
            self.url = url or saved
            return self.http("GET", path)
        except (urllib.error.URLError, ConnectionError, OSError):
            return None
        finally:
            self.url = saved

    def metric(self, name):
        """Summed over the replicas (each counts what it served)."""
        total = 0.0
        for url in self.urls:
            text = self.get("/metrics", url) or ""
            for line in text.splitlines():
                if line.startswith(name + " ") or line.startswith(name + "{}"):
                    total += float(line.split()[-1])
        return total

    def sample_threads(self):
        """Peak Threads: of each controller, every 0.2 s until stop()."""
        while self.sampling:
            for name, p in zip(self.names, self.procs):
                try:
                    t = proc_status_kib(p.pid, "Threads")
                except OSError:
                    continue
                self.peak_threads[name] = max(self.peak_threads.get(name, 0), t)
            time.sleep(0.2)

    def controllers_cpu(self):
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def sims_cpu(self):
        return sum(cpu_seconds(p.pid) for p in self.sims)

    def etcd_cpu(self):
        if not self.cluster:
            return 0.0
        return sum(cpu_seconds(p.pid) for p in self.cluster.procs if p and p.poll() is None)

    def start(self):
        if self.cluster:
            self.cluster.start()  # its ports are final only now (it may retry on fresh ones)
        # Only the inventory's nodes are served (issue 14): every simulated node, as the
        # simulators will name and label them, in a nodes_file (a JSON list is YAML).
        inventory, canary_left = [], self.a.canary
        for i, size in enumerate(self.sim_sizes):
            prefix = "sim-" if len(self.sim_sizes) == 1 else f"s{i}-"
            c = min(canary_left, size)
            canary_left -= c
            inventory += [{"id": f"{prefix}{j:04d}",
                           "labels": {"site": "sim", **({"group": "canary"} if j <= c else {})}}
                          for j in range(1, size + 1)]
        with open(os.path.join(self.root, "nodes.yaml"), "w") as f:
            json.dump(inventory, f)
        for i, name in enumerate(self.names):
            store = (f"store:\n  kind: etcd\n  endpoints: [{', '.join(self.cluster.endpoints())}]\n"
                     f"  prefix: {self.prefix}\n  replica: {name}\n  leader_lease_seconds: 5\n"
                     + self.cluster.store_tls_yaml(self.root)  # over TLS by default (issue 14)
                     if self.etcd else "database: controld.db\n")
            self.write_config(f"controld-{name}.yaml", self.ports[i], store, self.canary, self.tokens)
        for name in self.names:
            with open(os.path.join(self.root, f"controld-{name}.log"), "w") as log:
                # SLUICE_BENCH_CONTROLD_PREFIX, e.g. 'heaptrack -o /tmp/ht': a command the
                # controllers run under (their CPU and RSS figures are then the wrapper's). Each
                # runs in its own process group, signalled whole at the end: a wrapper need not
                # pass SIGTERM on (heaptrack does not).
                prefix = os.environ.get("SLUICE_BENCH_CONTROLD_PREFIX", "").split()
                self.procs.append(popen(prefix + [os.path.join(self.a.build, "sluice-controld"), "--config",
                                                  f"controld-{name}.yaml"], cwd=self.root, stdout=log,
                                        stderr=log, start_new_session=True))
        self.proc = self.procs[0]
        self.sampling = True
        self.sampler = threading.Thread(target=self.sample_threads, daemon=True)
        self.sampler.start()
        for name, url in zip(self.names, self.urls):
            if not wait_for(lambda: self.get("/v1/health", url) is not None, 20):
                with open(os.path.join(self.root, f"controld-{name}.log")) as f:
                    tail = f.read()[-600:].strip()
                raise RuntimeError(f"controller {name} did not answer /v1/health; its log ends: {tail!r}")
        if self.etcd and not wait_for(
                lambda: any((self.get("/v1/rollout", u) or {}).get("is_leader") for u in self.urls), 20):
            raise RuntimeError("no controller replica became leader in 20 s")
        self.sim_started = time.time()
        canary_left = self.a.canary
        for i, size in enumerate(self.sim_sizes):
            k = i % len(self.urls)
            urls = self.urls[k:] + self.urls[:k]
            args = [os.path.join(self.a.build, "sluice-fleet-sim"),
                    "--nodes", str(size), "--labels", "site=sim", "--controller-key", "controller.pub",
                    "--node-prefix", "sim-" if len(self.sim_sizes) == 1 else f"s{i}-",
                    *(["--ca-file", self.ca, "--node-ca-cert", "node-ca/node-ca.crt",
                       "--node-ca-key", "node-ca/node-ca.key"] if self.tls else
                      ["--node-token-file", "node.token"]),
                    "--state-root", os.path.join(self.state_base, f"state{i}"),
                    "--wait", str(self.a.wait), "--status-interval", str(self.a.status_interval)]
            if self.a.ramp_ms is not None:
                args += ["--ramp-ms", str(self.a.ramp_ms)]
            if not self.a.sim_verify_each:
                args.append("--share-verify")
            if self.a.sim_nice:
                args = ["nice", "-n", str(self.a.sim_nice)] + args
            for u in urls:
                args += ["--controller", u]
            c = min(canary_left, size)
            if c:
                args += ["--canary", str(c)]
                canary_left -= c
            self.sims.append(popen(args, cwd=self.root, stdout=open(self.sim_outs[i], "w"),
                                   stderr=open(os.path.join(self.root, f"sim{i}.log"), "w")))
        self.sim = self.sims[0]

    def stop(self):
        self.sampling = False
        if self.sampler:
            self.sampler.join()
        def signal_all(p, sig):
            try:
                os.killpg(p.pid, sig) if p in self.procs else p.send_signal(sig)
            except OSError:
                pass
        for p in self.sims + self.procs:
            if p and p.poll() is None:
                signal_all(p, signal.SIGTERM)
        for p in self.sims + self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                signal_all(p, signal.SIGKILL)
                p.wait()
        for p in self.procs:  # whatever a wrapper left in the group
            signal_all(p, signal.SIGKILL)
        if self.cluster:
            self.cluster.stop()
        if self.state_base != self.root:
            shutil.rmtree(self.state_base, ignore_errors=True)

    def read_events(self):
        for i, out in enumerate(self.sim_outs):
            with open(out, "rb") as f:
                f.seek(self.offsets[i])
                data = f.read()
            cut = data.rfind(b"\n") + 1
            self.offsets[i] += cut
            self.take_events(data[:cut].decode())

    def take_events(self, text):
        for line in text.splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") == "applied":
                self.applied.setdefault(ev["revision"], {})[ev["node"]] = ev["at"]

    def all_applied(self, rev):
        self.check_alive()
        self.read_events()
        return len(self.applied.get(rev, {})) >= self.n

    def acked_at(self, rev):
        """node -> unix seconds when a controller took its ACK of `rev` or later (applied_at_ms,
        the earliest over the replicas)."""
        out = {}
        for url in self.urls:
            for x in (self.get("/v1/nodes", url) or {}).get("nodes", []):
                if x["applied_revision"] >= rev and x.get("applied_at_ms", 0) > 0:
                    t = x["applied_at_ms"] / 1000.0
                    out[x["node"]] = min(t, out.get(x["node"], t))
        return out

    def check_alive(self):
        watched = ([(f"sluice-fleet-sim {i}", p, f"sim{i}.log") for i, p in enumerate(self.sims)] +
                   [(f"sluice-controld {n}", p, f"controld-{n}.log") for n, p in zip(self.names, self.procs)])
        for name, p, log in watched:
            if p and p.poll() is not None:
                with open(os.path.join(self.root, log)) as f:
                    tail = f.read()[-600:]
                raise RuntimeError(f"{name} exited ({p.returncode}): {tail}")

    def converged_gauge(self):
        """sluice_control_nodes{state="converged"} of the first controller: a cheap look while
        waiting (GET /v1/nodes of 10,000 nodes twice a second took half a controller's CPU and
        slowed the registration it was waiting for)."""
        for line in (self.get("/metrics") or "").splitlines():
            if line.startswith('sluice_control_nodes{state="converged"} '):
                return float(line.split()[-1])
        return 0.0

    def all_converged(self, rev):
        self.check_alive()
        nodes = (self.get("/v1/nodes") or {}).get("nodes", [])
        return len([x for x in nodes if x["applied_revision"] >= rev and x["state"] == "converged"]) >= self.n

    def revision(self, what, doc_name, doc_text, submit_cmd, key):
        with open(os.path.join(self.root, doc_name), "w") as f:
            f.write(doc_text)
        self.ctl(["sign", "--secret", "ministry.key", doc_name])
        submitted_at = self.http("GET", "/v1/rollout")["target"]
        self.ctl([submit_cmd, doc_name], role="ministry")
        before = self.http("GET", "/v1/rollout")["target"]
        if before > submitted_at:
            # A block awaiting approval rolls out as shadow (monitor) rules first; operators
            # approve after reading its impact report, so that rollout is over by then.
            if not wait_for(lambda: self.all_applied(before), self.a.timeout, step=0.2):
                raise RuntimeError(f"{what}: shadow revision {before} not applied everywhere")
            print(f"   {what}: shadow revision {before} applied by all {self.n} nodes before the approval")
        bytes0 = self.metric("sluice_control_snapshot_bytes_total")
        served0 = self.metric("sluice_control_snapshots_served_total")
        perf = self.start_perf(what)
        cpu0 = self.controllers_cpu()
        sim_cpu0 = self.sims_cpu()
        etcd_cpu0 = self.etcd_cpu()
        t_sent = time.time()
        self.http("POST", f"/v1/directives/{ISSUER}/{key}/approve", role="engineer", body={})
        t_resp = time.time()
        ro = self.http("GET", "/v1/rollout")
        target = ro["target"]
        if target <= before:
            raise RuntimeError(f"{what}: the approval made no new revision ({before} -> {target})")
        done = wait_for(lambda: (lambda r: r and r["target"] == target and r["stage"] == "done")(
            self.get("/v1/rollout")), self.a.timeout, step=0.05)
        t_done = time.time()
        cpu1 = self.controllers_cpu()
        sim_cpu1 = self.sims_cpu()
        etcd_cpu1 = self.etcd_cpu()
        self.stop_perf(perf)
        if not done:
            raise RuntimeError(f"{what}: rollout of revision {target} not done in {self.a.timeout} s")
        if not wait_for(lambda: self.all_applied(target), 30):
            raise RuntimeError(f"{what}: only {len(self.applied.get(target, {}))} applied events "
                               f"of {self.n} for revision {target}")
        converged = self.all_converged(target)
        acked = self.acked_at(target)
        if len(acked) < self.n:
            raise RuntimeError(f"{what}: the controllers took {len(acked)} ACKs of {self.n} for "
                               f"revision {target}")
        bytes1 = self.metric("sluice_control_snapshot_bytes_total")
        served1 = self.metric("sluice_control_snapshots_served_total")
        records, after = [], 0
        while True:  # paged: one answer holds at most 10,000 records
            page = self.http("GET", f"/v1/audit?after={after}&limit=10000")["records"]
            records += page
            if len(page) < 10000:
                break
            after = page[-1]["seq"]
        completed = [r["detail"] for r in records if r["event"] == "rollout.completed"
                     and isinstance(r["detail"], dict) and r["detail"].get("revision") == target]
        at = list(self.applied[target].values())
        lat = [t - t_resp for t in at]
        lat_sent = [t - t_sent for t in at]
        ack = [t - t_resp for t in acked.values()]
        served = served1 - served0
        ctl_cpu, sim_cpu = cpu1 - cpu0, sim_cpu1 - sim_cpu0
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
            "controller_cpu_s": ctl_cpu,
            "controller_cpu_us_per_node": ctl_cpu / self.n * 1e6,
            "sim_cpu_s": sim_cpu,
            "sim_cpu_us_per_node": sim_cpu / self.n * 1e6,
            "etcd_cpu_s": etcd_cpu1 - etcd_cpu0,
            "snapshots_served": served,
            "snapshot_bytes_per_node": (bytes1 - bytes0) / served if served else None,
            "status_header_bytes": status_header_bytes(target, target, self.get("/v1/audit/checkpoint")),
        }

    def start_perf(self, what):
        """--perf DIR: `perf record` (DWARF call graphs) of the first controller over the measured
        revision. SLUICE_BENCH_TRACER replaces the command, e.g.
        SLUICE_BENCH_TRACER='strace -c -f -o {out} -p {pid}' to count its system calls."""
        if not self.a.perf:
            return None
        os.makedirs(self.a.perf, exist_ok=True)
        out = os.path.join(self.a.perf, f"controld-{self.n}-{what}.data")
        cmd = ["perf", "record", "-q", "--call-graph", "dwarf,16384", "-F", "1999", "-o", out, "-p",
               str(self.procs[0].pid)]
        if os.environ.get("SLUICE_BENCH_TRACER"):
            cmd = os.environ["SLUICE_BENCH_TRACER"].format(out=out, pid=self.procs[0].pid).split()
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)  # perf attaches before the approval
        return p

    @staticmethod
    def stop_perf(p):
        if p:
            p.send_signal(signal.SIGINT)
            p.wait(30)

    def failure_facts(self):
        """What a failed run still tells: the processes' totals since they started."""
        facts = {"controller_peak_threads": max(self.peak_threads.values() or [0]),
                 "seconds_since_sim_start": time.time() - getattr(self, "sim_started", time.time())}
        for what, get in (("controller_cpu_s_total", self.controllers_cpu),
                          ("sim_cpu_s_total", self.sims_cpu),
                          ("controller_peak_rss_kib", lambda: max(proc_status_kib(p.pid, "VmHWM")
                                                                  for p in self.procs))):
            try:
                facts[what] = get()
            except (OSError, ValueError):
                pass
        return facts

    def stopped_summary(self):
        """Sums of the simulator's final per-node counters (after stop())."""
        out = {"fetch_failures": 0, "status_failures": 0, "nacks": 0}
        for path in self.sim_outs:
            if not os.path.exists(path):  # the run failed before the simulator started
                continue
            with open(path) as f:
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
        if not wait_for(lambda: self.converged_gauge() >= self.n and self.all_converged(1),
                        self.a.timeout, step=0.5):
            seen = []
            for url in self.urls:
                ns = (self.get("/v1/nodes", url) or {}).get("nodes", [])
                seen.append(f"{len(ns)} listed, "
                            f"{len([x for x in ns if x['state'] == 'converged'])} converged")
            raise RuntimeError(f"{self.n} nodes did not all converge on revision 1 in "
                               f"{self.a.timeout:.0f} s; per replica: {'; '.join(seen)}")
        registered_s = time.time() - self.sim_started
        # Every node converged and waiting on its long poll: what holding N connections costs,
        # apart from the peak (VmHWM, which includes the ramp's handshakes).
        rss_waiting = max(proc_status_kib(p.pid, "VmRSS") for p in self.procs)
        now = time.time()
        common = (f"issuer: {ISSUER}\nissued_at: {rfc(now - 300)}\n"
                  "legal_basis: \"Order No. 123 of 2026-11-20\"\n")
        block = (f"id: BENCH-BLOCK\n{common}action: block\nresponse: notice\n"
                 f"targets:\n  apps: [telegram]\nscope: all\nnot_before: {rfc(now - 60)}\n")
        lift = (f"id: BENCH-LIFT\n{common}action: unblock\nlifts: [BENCH-BLOCK]\n"
                f"scope: all\nnot_before: {rfc(now - 30)}\n")
        results = [self.revision("block", "block.yaml", block, "submit", "BENCH-BLOCK"),
                   self.revision("lift", "lift.yaml", lift, "lift", "BENCH-LIFT")]
        rss = [proc_status_kib(p.pid, "VmHWM") for p in self.procs]
        out = {"nodes": self.n, "store": self.a.store, "replicas": len(self.procs),
               "sim_processes": len(self.sims), "registration_s": registered_s,
               "controller_peak_rss_kib": max(rss),
               "controller_rss_all_waiting_kib": rss_waiting,
               "controller_threads": max(proc_status_kib(p.pid, "Threads") for p in self.procs),
               "controller_peak_threads": max(self.peak_threads.values() or [0]),
               "replica_peak_threads": dict(self.peak_threads),
               "sim_share_verify": not self.a.sim_verify_each,
               "sim_peak_rss_kib": sum(proc_status_kib(p.pid, "VmHWM") for p in self.sims),
               "revisions": results}
        if self.etcd:
            out["replica_peak_rss_kib"] = dict(zip(self.names, rss))
            out["etcd_peak_rss_kib"] = [proc_status_kib(p.pid, "VmHWM") for p in self.cluster.procs]
            out["leader"] = next((r.get("leader") for r in (self.get("/v1/rollout", u) for u in self.urls)
                                  if r and r.get("leader")), None)
            # Which replica each node last reported to is not in the API; the spread is by design
            # (rotated URL lists), so report the planned split.
            out["sim_sizes"] = self.sim_sizes
        return out


class FakeController:
    """The scoped node protocol, minimal: GET /v1/nodes/ID/snapshot (long-poll on
    If-None-Match) and POST /v1/nodes/ID/status (counts first ACKs per revision)."""

    def __init__(self, root):
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        with open(os.path.join(root, "controller.key")) as f:
            text = f.read()
        # minisign prints the id as a little-endian 64-bit number: last byte first.
        self.key_id = bytes.fromhex(next(line.split(":", 1)[1].strip() for line in text.splitlines()
                                         if line.startswith("# sluice key id:")))[::-1]
        pem = "\n".join(line for line in text.splitlines() if not line.startswith("#")).encode()
        self.key = load_pem_private_key(pem, password=None)
        self.revision, self.body = 0, b""
        self.changed = None
        self.acked = {}  # revision -> set of nodes
        self.nack = None  # the last NACK's error

    def sign(self, message, comment):
        sig = self.key.sign(hashlib.blake2b(message, digest_size=64).digest())
        glob = self.key.sign(sig + comment.encode())
        return (f"untrusted comment: signature from sluice key {self.key_id.hex()}\n"
                f"{base64.b64encode(b'ED' + self.key_id + sig).decode()}\n"
                f"trusted comment: {comment}\n{base64.b64encode(glob).decode()}\n")

    def publish(self, revision):
        domains = ", ".join(f"blocked-{i}.example.org" for i in range(40))
        policy = (f"revision: {revision}\nrules:\n  - id: r1\n    directive: D-{revision}\n"
                  f"    action: drop\n    domains: [{domains}]\n")
        comment = f"sluice-snapshot revision={revision} scope=all"
        self.body = json.dumps({"revision": revision, "scope": "all", "policy": policy,
                                "signature": self.sign(policy.encode(), comment)}).encode()
        self.revision = revision
        old, self.changed = self.changed, asyncio.Event()
        if old:
            old.set()

    async def handle(self, reader, writer):
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                method, target = head[0].split(" ")[:2]
                headers = {k.strip().lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in head[1:] if line)}
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                node = target.split("/")[3] if target.count("/") >= 4 else ""
                if method == "GET" and "/snapshot" in target:
                    wait = float(target.rsplit("wait=", 1)[1]) if "wait=" in target else 0
                    etag = f'"{self.revision}"'
                    if headers.get("if-none-match") == etag:
                        try:
                            await asyncio.wait_for(self.changed.wait(), wait)
                        except asyncio.TimeoutError:
                            pass
                    if headers.get("if-none-match") == f'"{self.revision}"':
                        writer.write(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 0\r\n\r\n")
                    else:
                        writer.write(f"HTTP/1.1 200 OK\r\nETag: \"{self.revision}\"\r\n"
                                     f"Content-Type: application/json\r\n"
                                     f"Content-Length: {len(self.body)}\r\n\r\n".encode() + self.body)
                else:
                    r = json.loads(body or b"{}")
                    if r.get("result") == "ack" and r.get("offered"):
                        self.acked.setdefault(r["offered"], set()).add(node)
                    elif r.get("result") == "nack":
                        self.nack = r.get("error")
                    writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError, IndexError):
            pass
        finally:
            writer.close()


async def sim_cost_run(a, n, root, share_verify, revisions=3):
    fake = FakeController(root)
    fake.publish(1)
    server = await asyncio.start_server(fake.handle, "127.0.0.1", 0, backlog=4096, limit=1 << 20)
    port = server.sockets[0].getsockname()[1]
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    state = tempfile.mkdtemp(prefix="sluice-sim-cost-", dir=shm)
    args = [os.path.join(a.build, "sluice-fleet-sim"), "--controller", f"http://127.0.0.1:{port}",
            "--nodes", str(n), "--labels", "site=sim", "--controller-key", "controller.pub",
            "--node-token-file", "node.token", "--state-root", state, "--wait", str(a.wait),
            "--status-interval", str(a.status_interval), "--report-acks"]
    if share_verify:
        args.append("--share-verify")
    sim = popen(args, cwd=root, stdout=open(os.path.join(root, "sim-cost.jsonl"), "w"),
                stderr=open(os.path.join(root, "sim-cost.log"), "w"))
    out = {"nodes": n, "share_verify": share_verify, "revisions": []}
    try:
        async def all_acked(rev, timeout):
            deadline = time.time() + timeout
            while len(fake.acked.get(rev, ())) < n:
                if sim.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"sim-cost: {len(fake.acked.get(rev, ()))} of {n} ACKs of "
                                       f"revision {rev} (simulator exit {sim.poll()}; last NACK: {fake.nack})")
                await asyncio.sleep(0.02)
        await all_acked(1, a.timeout)
        await asyncio.sleep(1)
        for rev in range(2, 2 + revisions):
            cpu0, t0 = cpu_seconds(sim.pid), time.time()
            fake.publish(rev)
            await all_acked(rev, a.timeout)
            t1 = time.time()
            await asyncio.sleep(0.05)  # the last ACKs' follow-up long polls
            cpu = cpu_seconds(sim.pid) - cpu0
            out["revisions"].append({"revision": rev, "last_ack_s": t1 - t0, "sim_cpu_s": cpu,
                                     "sim_cpu_us_per_node": cpu / n * 1e6})
            await asyncio.sleep(0.5)
        out["sim_peak_rss_kib"] = proc_status_kib(sim.pid, "VmHWM")
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=60)
        server.close()
        shutil.rmtree(state, ignore_errors=True)
    return out


def sim_cost(a, sizes):
    """--sim-cost: the simulator's CPU per node per revision on the scoped protocol."""
    results = []
    for n in sizes:
        for share in (True, False):
            root = tempfile.mkdtemp(prefix=f"sluice-sim-cost-{n}-")
            subprocess.run([os.path.join(a.build, "sluicectl"), "keygen", "--public", "controller.pub",
                            "--secret", "controller.key"], cwd=root, check=True, capture_output=True)
            with open(os.path.join(root, "node.token"), "w") as f:
                f.write(TOKENS["node"])
            try:
                r = asyncio.run(sim_cost_run(a, n, root, share))
            except RuntimeError as ex:
                r = {"nodes": n, "share_verify": share, "error": str(ex)}
            finally:
                if not a.keep:
                    shutil.rmtree(root, ignore_errors=True)
            results.append(r)
            if "error" in r:
                print(f"   N={n} share_verify={share} failed: {r['error']}", flush=True)
                continue
            us = [x["sim_cpu_us_per_node"] for x in r["revisions"]]
            last = [x["last_ack_s"] for x in r["revisions"]]
            print(f"   N={n} {'--share-verify' if share else 'verify each '}: simulator CPU per node "
                  f"per revision {', '.join(f'{u:.0f}' for u in us)} us; last ACK after "
                  f"{', '.join(f'{t:.2f}' for t in last)} s; peak RSS "
                  f"{r['sim_peak_rss_kib'] / 1024:.0f} MiB", flush=True)
    return results


def fmt(v, scale=1000.0, unit="ms"):
    return "-" if v is None else f"{v * scale:.0f} {unit}" if unit else f"{v:.0f}"


def print_table(all_results, machine):
    print(f"\nfleet rollout benchmark ({machine})")
    hdr = ("N", "rev", "apply p50", "apply p99", "ACK p50", "ACK p99", "ACK max", "last ACK (ctl)",
           "ctl CPU", "ctl us/node", "ctl threads", "ctl peak RSS", "ctl RSS waiting", "sim us/node",
           "snapshot B/node", "ACK B/node")
    rows = [hdr]
    for r in all_results:
        for rv in r["revisions"]:
            a = rv["apply_after_approval_response_s"]
            k = rv["ack_after_approval_response_s"]
            rows.append((str(r["nodes"]), rv["what"], fmt(a["p50"]), fmt(a["p99"]), fmt(k["p50"]),
                         fmt(k["p99"]), fmt(k["max"]),
                         fmt(rv["controller_last_ack_since_revision_s"]),
                         f"{rv['controller_cpu_s']:.2f} s", f"{rv['controller_cpu_us_per_node']:.0f}",
                         str(r["controller_peak_threads"]), f"{r['controller_peak_rss_kib'] / 1024:.1f} MiB",
                         f"{r['controller_rss_all_waiting_kib'] / 1024:.1f} MiB",
                         f"{rv['sim_cpu_us_per_node']:.0f}",
                         fmt(rv["snapshot_bytes_per_node"], 1, ""), str(rv["status_header_bytes"])))
    widths = [max(len(row[i]) for row in rows) for i in range(len(hdr))]
    for i, row in enumerate(rows):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print("apply: approval's HTTP response -> node's `applied` event (simulator clock); ACK: -> a\n"
          "  controller took the node's ACK (its applied_at_ms, the earliest over the replicas);\n"
          "ACK B/node: the X-Sluice-Status header line the ACK rides on (its next poll);\n"
          "last ACK (ctl): the controller's rollout.completed (revision created -> last ACK);\n"
          "ctl CPU: controller utime+stime from the approval to the rollout's completion (per revision),\n"
          "  and that per node in microseconds; sim us/node: the simulator's own CPU over the same\n"
          "  interval per node; ctl threads: peak Threads: of the controller (max over replicas);\n"
          "ctl peak RSS: VmHWM at the end (the ramp's handshakes included); ctl RSS waiting: VmRSS\n"
          "  with every node converged and waiting on its long poll, before the first approval.")


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
    ap.add_argument("--ramp-ms", type=int,
                    help="spread each simulator's connections over this long (its default: "
                         "nodes/5 ms); the registration storm is not what a revision measures")
    ap.add_argument("--store", choices=("sqlite", "etcd"), default="sqlite",
                    help="controller store (etcd: a 3-member cluster on loopback)")
    ap.add_argument("--replicas", type=int, default=1,
                    help="controller replicas (--store etcd; default 1)")
    ap.add_argument("--sim-verify-each", action="store_true",
                    help="the simulator verifies every node's signature itself (default: it "
                         "verifies each distinct (policy, signature) once, --share-verify)")
    ap.add_argument("--sim-nice", type=int, default=0,
                    help="run the simulator at this nice value (default 0)")
    ap.add_argument("--plain", action="store_true",
                    help="plain HTTP and the fleet node token (default: TLS, a certificate per node)")
    ap.add_argument("--perf", metavar="DIR",
                    help="record the first controller with `perf record -g` over each measured "
                         "revision into DIR (perf report -i DIR/controld-N-WHAT.data)")
    ap.add_argument("--sim-cost", action="store_true",
                    help="no controller: the simulator's own CPU on the scoped protocol (a fake)")
    a = ap.parse_args()
    a.build, a.source = os.path.abspath(a.build), os.path.abspath(a.source)
    sizes = a.nodes or [100, 1000]
    for b in ("sluice-controld", "sluicectl", "sluice-fleet-sim"):
        if not os.access(os.path.join(a.build, b), os.X_OK):
            sys.exit(f"fleet_bench: missing {a.build}/{b}")
    # Each long-polling node holds a socket in the controller and one in the simulator: raise
    # the soft limit to the hard one here, before any Popen, so every child inherits it.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soft = hard
    need = max(sizes) + 1024  # per process: the controller's sockets, or the simulator's
    if hard != resource.RLIM_INFINITY and hard < need:
        print(f"fleet_bench: warning: RLIMIT_NOFILE hard limit {hard} < {need} "
              "(a socket per node in each process)", file=sys.stderr)
    if a.store != "etcd" and a.replicas != 1:
        sys.exit("fleet_bench: --replicas needs --store etcd")
    machine = (f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f} at start; store {a.store}"
               + (f", {a.replicas} replicas" if a.store == "etcd" else ""))
    if a.sim_cost:
        results = sim_cost(a, sizes)
        if a.out:
            with open(a.out, "w") as f:
                json.dump({"machine": machine, "command": " ".join(sys.argv), "sim_cost": results}, f,
                          indent=2)
        return 1 if any("error" in r for r in results) else 0
    results, ok = [], True
    for n in sizes:
        root = tempfile.mkdtemp(prefix=f"sluice-fleet-bench-{n}-")
        print(f"== N={n} (work dir {root}; load {os.getloadavg()[0]:.2f})", flush=True)
        overflows0 = listen_overflows()
        run = None
        try:
            run = Run(a, n, root)
            r = run.bench()
            r["load_at_end"] = os.getloadavg()[0]
            results.append(r)
            for rv in r["revisions"]:
                x, k = rv["apply_after_approval_response_s"], rv["ack_after_approval_response_s"]
                print(f"   {rv['what']}: revision {rv['revision']}, applied p50 {x['p50'] * 1000:.0f} ms "
                      f"p99 {x['p99'] * 1000:.0f} ms; ACK p50 {k['p50'] * 1000:.0f} ms "
                      f"p99 {k['p99'] * 1000:.0f} ms max {k['max'] * 1000:.0f} ms; CPU controllers "
                      f"{rv['controller_cpu_s']:.2f} s ({rv['controller_cpu_us_per_node']:.0f} us/node), "
                      f"etcd {rv['etcd_cpu_s']:.2f} s, sims {rv['sim_cpu_s']:.2f} s "
                      f"({rv['sim_cpu_us_per_node']:.0f} us/node); rollout done seen after "
                      f"{rv['rollout_done_seen_after_approval_response_s']:.2f} s", flush=True)
        except (RuntimeError, OSError, KeyError, ValueError) as ex:
            print(f"   N={n} failed: {ex}", flush=True)
            results.append({"nodes": n, "error": str(ex)})
            if run:
                results[-1].update(run.failure_facts())
                print(f"   at the failure: {results[-1]}", flush=True)
            ok = False
        finally:
            if run:
                run.stop()
            if run and results and results[-1]["nodes"] == n:
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
