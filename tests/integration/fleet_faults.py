#!/usr/bin/python3
"""Fleet fault runs on loopback with the real binaries: sluice-controld, sluicectl and
sluice-fleet-sim (the real agent code, NODES nodes). Outcomes are asserted, timings are not
(except that a partitioned node ends a block by itself within about a second of its end).

  fleet_faults.py BIN_DIR SOURCE_DIR [--store sqlite|etcd]

With --store etcd the controller's store is a 3-member etcd cluster on loopback (started here,
/usr/bin/etcd), each scenario under its own key prefix; one controller replica.

1. crash: with a canary stage (soak), the controller is killed (SIGKILL) while the canary
   soaks; after a restart the rollout completes and every node converges on its revision.
2. restart: with the controller down, the whole simulated fleet is restarted; every node
   applies its persisted snapshot by itself, and converges when the controller returns.
3. partition: 10% of the nodes reach the controller only through a TCP proxy (a second
   simulator process). A block with a scheduled end (not_after a few seconds ahead) is rolled
   out, the proxy is stopped (connections closed, port refused), and while they are cut off the
   partitioned nodes stop enforcing it at its end by themselves (the simulator's "enforcing"
   events, --report-windows). After the proxy comes back they converge on the controller's
   current revision (the one without the block).
Exit 0 pass, 1 fail."""

import math
import os
import resource
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from datetime import datetime, timezone

from control_harness import (Controller, read_jsonl, EtcdCluster, check, failures, free_port, popen,
                             store_arg, wait_for)

BIN, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
STORE = store_arg(sys.argv[3:])
cluster = None  # the EtcdCluster with --store etcd
CONTROLD = os.path.join(BIN, "sluice-controld")
CTL = os.path.join(BIN, "sluicectl")
SIM = os.path.join(BIN, "sluice-fleet-sim")
NODES = 60          # per scenario
PARTITIONED = 6     # 10% of NODES
processes = []      # every process this test started, killed by pid at the end


def rfc(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def spawn(args, **kw):
    p = popen(args, **kw)
    processes.append(p)
    return p


class Proxy:
    """A TCP forwarder 127.0.0.1:port -> 127.0.0.1:target. stop() closes the listener and every
    connection (the far side sees resets/EOF, new connections are refused); start() again
    listens on the same port."""

    def __init__(self, target):
        self.target = target
        self.port = free_port()
        self.lock = threading.Lock()
        self.socks = set()
        self.running = False
        self.thread = None

    def start(self):
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", self.port))
        self.listener.listen(256)
        self.listener.settimeout(0.1)
        self.running = True
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def stop(self):
        self.running = False
        self.thread.join()
        self.listener.close()
        with self.lock:
            socks, self.socks = list(self.socks), set()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def _accept(self):
        while self.running:
            try:
                c, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            c.settimeout(None)
            try:
                u = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                c.close()
                continue
            with self.lock:
                if not self.running:
                    c.close()
                    u.close()
                    return
                self.socks.update((c, u))
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


class Sim:
    """One sluice-fleet-sim process and its JSON-lines output."""

    def __init__(self, env, name, nodes, prefix, url, canary=0, windows=False):
        self.env, self.name, self.nodes, self.prefix, self.url = env, name, nodes, prefix, url
        self.canary, self.windows = canary, windows
        self.out = os.path.join(env.root, f"{name}.jsonl")
        self.proc = None

    def start(self):
        if self.env.alive():  # issue 14: only enrolled nodes are served (restarts keep them)
            self.env.enroll_sim(self.nodes, prefix=self.prefix, canary=self.canary)
        args = [SIM, "--controller", self.url, "--nodes", str(self.nodes), "--labels", "site=sim",
                "--node-prefix", self.prefix, "--controller-key", "controller.pub",
                *self.env.sim_auth(), "--state-root",
                os.path.join(self.env.root, "state-" + self.name), "--wait", "5",
                "--status-interval", "2", "--backoff-max-ms", "2000"]
        if self.canary:
            args += ["--canary", str(self.canary)]
        if self.windows:
            args.append("--report-windows")
        self.mark = len(self.events())
        with open(self.out, "a") as out, open(os.path.join(self.env.root, f"{self.name}.log"), "a") as err:
            self.proc = spawn(args, cwd=self.env.root, stdout=out, stderr=err)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def events(self, since_start=False):
        out = read_jsonl(self.out)
        return out[self.mark:] if since_start else out

    def ids(self):
        return [f"{self.prefix}{i:04d}" for i in range(1, self.nodes + 1)]


class Env(Controller):
    def __init__(self, root, canary_soak=0):
        super().__init__(root, BIN, SRC, stale_after=60, canary_soak=canary_soak,
                         spawn=spawn, etcd=cluster)

    def nodes(self):
        return {n["node"]: n for n in self.node_list()}

    def converged(self, rev, ids):
        ns = self.nodes()
        return all(i in ns and ns[i]["applied_revision"] == rev and ns[i]["state"] == "converged"
                   for i in ids)

    def directive(self, name, id_, action_part, not_before, not_after=None):
        d = (f"id: {id_}\nissuer: ministry-of-communications\nissued_at: {rfc(time.time() - 300)}\n"
             f"legal_basis: \"Order No. 123 of 2026-11-20\"\n{action_part}scope: all\n"
             f"not_before: {rfc(not_before)}\n")
        if not_after:
            d += f"not_after: {rfc(not_after)}\n"
        with open(os.path.join(self.root, name), "w") as f:
            f.write(d)
        return check(self.ctl(["sign", "--secret", "ministry.key", name]).returncode == 0
                     and self.ctl(["submit", name], role="ministry").returncode == 0
                     and self.ctl(["approve", f"ministry-of-communications/{id_}"],
                                  role="engineer").returncode == 0,
                     f"directive {id_} signed, submitted and approved")


BLOCK = "action: block\nresponse: notice\ntargets:\n  apps: [telegram]\n"


def last_applied(events):
    out = {}
    for ev in events:
        if ev.get("event") == "applied":
            out[ev["node"]] = ev["revision"]
    return out


def crash_and_restart(root):
    print(f"== crash: SIGKILL of the controller mid-rollout ({NODES} nodes, 5 canaries, soak 4 s)")
    e = Env(root, canary_soak=4)
    if not e.start():
        return
    sim = Sim(e, "fleet", NODES, "sim-", e.url, canary=5)
    sim.start()
    ids = sim.ids()
    if not check(wait_for(lambda: e.converged(1, ids), 60), f"{NODES} nodes converge on revision 1"):
        return
    if not e.directive("block.yaml", "MINCOM-2026-201", BLOCK, time.time() - 60):
        return
    ro = e.rollout()
    target = ro.get("target", 0)
    check(target >= 2 and ro.get("stage") == "canary",
          f"rollout of revision {target} starts with the canary stage: {ro.get('stage')}")
    canaries = ids[:5]
    check(wait_for(lambda: e.converged(target, canaries), 20), "the 5 canaries applied it")
    ro = e.rollout()
    rest = e.nodes()
    mid = (ro.get("stage") == "canary" and ro.get("released", 0) < target and
           all(rest[i]["applied_revision"] < target for i in ids[5:]))
    e.kill()
    check(mid, f"the controller was killed mid-rollout (stage {ro.get('stage')}, released "
               f"{ro.get('released')} < {target}, non-canary nodes still on the old revision)")
    check(e.proc.returncode == -signal.SIGKILL, "the controller died of SIGKILL")
    if not e.start():
        return
    check(wait_for(lambda: e.rollout().get("stage") == "done", 60),
          "after the restart the rollout completes (stage done)")
    check(e.rollout().get("target") == target, f"the target is still revision {target}")
    check(wait_for(lambda: e.converged(target, ids), 30),
          f"all {NODES} nodes converged on revision {target} (controller's view)")
    applied = last_applied(sim.events())
    check(all(applied.get(i) == target for i in ids),
          f"every simulated node's last applied revision is {target} (simulator's view)")
    check(e.ctl(["audit", "verify"], role="viewer").returncode == 0, "audit chain intact after the crash")

    print("== restart: controller down, whole fleet restarted, persisted snapshots applied")
    e.kill()
    sim.stop()
    stopped = [ev for ev in sim.events() if ev.get("event") == "stopped"]
    check(stopped and all(n["revision"] == target and n["nacks"] == 0 for n in stopped[-1]["nodes"]),
          f"the simulator stopped with every node on revision {target} and no NACK")
    sim.start()
    def restored():
        got = last_applied(sim.events(since_start=True))
        return len(got) == NODES and all(got.get(i) == target for i in ids)
    check(wait_for(restored, 30),
          f"with no controller, all {NODES} restarted nodes apply their persisted revision {target}")
    restart_at = int(time.time()) + 1
    if not e.start():
        return
    def reconverged():
        ns = e.nodes()
        return all(i in ns and ns[i]["applied_revision"] == target and ns[i]["state"] == "converged"
                   and ns[i]["last_seen"] >= restart_at for i in ids)
    check(wait_for(reconverged, 30),
          f"when the controller returns, all {NODES} nodes report to it and are converged on {target}")
    check(len(last_applied(sim.events(since_start=True))) == NODES and
          all(ev["revision"] == target for ev in sim.events(since_start=True)
              if ev.get("event") == "applied"),
          "the restarted nodes applied nothing but their persisted revision")
    sim.stop()
    e.kill(signal.SIGTERM)


def partition(root):
    direct_n = NODES - PARTITIONED
    print(f"== partition: {PARTITIONED} of {NODES} nodes cut off during a block, healed after its end")
    e = Env(root)
    if not e.start():
        return
    proxy = Proxy(e.port)
    proxy.start()
    direct = Sim(e, "direct", direct_n, "sim-", e.url, windows=True)
    cut = Sim(e, "cut", PARTITIONED, "cut-", f"{e.url.split(':')[0]}://127.0.0.1:{proxy.port}", windows=True)
    direct.start()
    cut.start()
    all_ids = direct.ids() + cut.ids()
    if not check(wait_for(lambda: e.converged(1, all_ids), 60),
                 f"{NODES} nodes ({PARTITIONED} through the proxy) converge on revision 1"):
        return
    not_after = math.ceil(time.time()) + 15
    if not e.directive("block.yaml", "MINCOM-2026-301", BLOCK, time.time() - 60, not_after):
        return
    block_rev = e.rollout().get("target", 0)
    check(wait_for(lambda: e.converged(block_rev, all_ids), 30),
          f"all {NODES} nodes converge on the block's revision {block_rev}")
    def enforcing(ev_list, node):
        return [ev for ev in ev_list if ev.get("event") == "enforcing" and ev["node"] == node]
    evs = cut.events()
    check(all(enforcing(evs, i) and enforcing(evs, i)[-1]["rules_in_force"] > 0 and
              enforcing(evs, i)[-1]["revision"] == block_rev for i in cut.ids()),
          "the partitioned nodes enforce the block's rules")
    proxy.stop()
    cut_at = time.time()
    if not check(cut_at < not_after - 2,
                 f"partition in place {not_after - cut_at:.1f} s before the block's end"):
        return
    time.sleep(max(0.0, not_after - time.time()) + 3)
    st = e.get("/v1/directives/ministry-of-communications/MINCOM-2026-301") or {}
    check(st.get("state") == "ended" and st.get("end_reason") == "expired",
          f"the controller ended the block: {st.get('state')}/{st.get('end_reason')}")
    end_rev = e.rollout().get("target", 0)
    check(end_rev > block_rev, f"the block's end made revision {end_rev}")
    check(wait_for(lambda: e.converged(end_rev, direct.ids()), 20),
          f"the {direct_n} connected nodes converge on revision {end_rev}")
    ns = e.nodes()
    check(all(ns[i]["applied_revision"] == block_rev for i in cut.ids()),
          f"the controller still sees the partitioned nodes on revision {block_rev}")
    heal_at = time.time()
    evs = cut.events()
    for i in cut.ids():
        ends = [ev for ev in enforcing(evs, i) if ev["rules_in_force"] == 0 and ev["at"] >= cut_at]
        applied_late = [ev for ev in evs if ev.get("event") == "applied" and ev["node"] == i
                        and ev["at"] >= cut_at]
        ok = (len(ends) == 1 and ends[0]["revision"] == block_rev and
              not_after <= ends[0]["at"] <= not_after + 1.0 and not applied_late)
        check(ok, f"{i}, partitioned, stopped enforcing on revision {block_rev} by itself "
                  f"{(ends[0]['at'] - not_after) if ends else float('nan'):.3f} s after not_after "
                  f"(within 1 s, before healing, with no snapshot received)")
    devs = direct.events()
    check(all(enforcing(devs, i) and enforcing(devs, i)[-1]["rules_in_force"] == 0 for i in direct.ids()),
          "the connected nodes enforce nothing either")
    proxy.start()
    check(wait_for(lambda: e.converged(e.rollout().get("target", 0), all_ids), 40),
          f"after healing all {NODES} nodes converge on the controller's current revision")
    ns = e.nodes()
    current = e.rollout().get("target", 0)
    check(current == end_rev and all(ns[i]["applied_revision"] == current for i in cut.ids()),
          f"the healed nodes report revision {current}, the controller's current one")
    got = last_applied(cut.events())
    check(all(got.get(i) == current for i in cut.ids()),
          f"the healed nodes applied revision {current} (simulator's view)")
    check(heal_at > not_after, "healing happened after the block's scheduled end")
    direct.stop()
    cut.stop()
    proxy.stop()
    e.kill(signal.SIGTERM)


def main():
    global cluster
    for f in (CONTROLD, CTL, SIM):
        if not os.access(f, os.X_OK):
            print(f"missing {f}")
            return 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    print(f"store: {STORE}")
    with tempfile.TemporaryDirectory(prefix="sluice-fleet-faults-") as root:
        try:
            if STORE == "etcd":
                cluster = EtcdCluster(root, spawn=spawn).start()
            for name, fn in (("crash", crash_and_restart), ("partition", partition)):
                os.mkdir(os.path.join(root, name))
                fn(os.path.join(root, name))
        except Exception as ex:  # an unexpected error is a failure, not a crash of the runner
            traceback.print_exc()
            check(False, f"unexpected {type(ex).__name__}: {ex}")
        finally:
            for p in processes:
                if p.poll() is None:
                    p.kill()
                    p.wait()
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
