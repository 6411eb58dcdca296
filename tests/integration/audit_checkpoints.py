#!/usr/bin/python3
"""An audit nobody can quietly shorten (issue 14), end to end on loopback with the real
binaries: sluice-controld, sluicectl and sluice-fleet-sim (the real agent code, 3 nodes).

  audit_checkpoints.py BIN_DIR SOURCE_DIR [--store sqlite|etcd]

1. Directives are submitted and approved; the audit head moves; every node ends up holding
   (audit_checkpoint.json in its state dir) and reporting (GET /v1/nodes) a checkpoint signed
   by the controller that covers the whole log; `sluicectl audit checkpoint` exports one for
   the ministry. `sluicectl audit verify --controller-key` passes with the node's file, the
   ministry's and the fleet's reported ones.
2. The controller is stopped and the newest 3 audit records are deleted behind its back: rows
   of the SQLite file (python's sqlite3), or with --store etcd their keys (etcdctl del) and the
   head key rewritten to the new last record, as an attacker with the store would. The chain
   alone still verifies; `audit verify` with the node's persisted checkpoint (and with the
   ministry's, and with the fleet's reported ones) fails, naming the missing records and the
   checkpoint that proves them.
3. The controller restarts on the shortened log: it signs checkpoints of the shorter head, and
   the nodes do not go back to them (their files and reports still name the full count).
Exit 0 pass, 1 fail."""

import base64
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone

from control_harness import Controller, EtcdCluster, check, failures, popen, store_arg, wait_for

BIN, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
STORE = store_arg(sys.argv[3:])
SIM = os.path.join(BIN, "sluice-fleet-sim")
NODES = 3
cluster = None


def rfc(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def doc(id_, domain):
    now = datetime.now(timezone.utc)
    return (f"id: {id_}\nissuer: ministry-of-communications\n"
            f"issued_at: {rfc(now - timedelta(minutes=5))}\n"
            f"legal_basis: \"Order No. 123 of 2026-11-20\"\naction: block\nresponse: notice\n"
            f"targets:\n  domains: [{domain}]\nscope: all\n"
            f"not_before: {rfc(now - timedelta(minutes=1))}\n")


class Env(Controller):
    def __init__(self, root):
        super().__init__(root, BIN, SRC, stale_after=20, etcd=cluster)
        self.sim = None

    def start_sim(self):
        args = [SIM, "--controller", self.url, "--nodes", str(NODES), "--labels", "site=sim",
                "--controller-key", "controller.pub", *self.sim_auth(),
                "--state-root", os.path.join(self.root, "state"), "--wait", "5",
                "--status-interval", "1"]
        self.sim = popen(args, cwd=self.root, stdout=open(os.path.join(self.root, "sim.jsonl"), "a"),
                         stderr=open(os.path.join(self.root, "sim.log"), "a"))

    def stop_sim(self):
        if self.sim and self.sim.poll() is None:
            self.sim.send_signal(signal.SIGTERM)
            self.sim.wait(timeout=20)

    def node_file(self, node):
        return os.path.join(self.root, "state", node, "audit_checkpoint.json")

    def held(self, node):
        """The checkpoint a node persisted (dict), or None."""
        try:
            with open(self.node_file(node)) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def reported(self):
        """node id -> the count of the checkpoint it reported (0 when none)."""
        return {n["node"]: (n.get("audit_checkpoint") or {}).get("count", 0) for n in self.node_list()}

    def submit_and_approve(self, id_, domain):
        name = f"{id_}.yaml"
        with open(os.path.join(self.root, name), "w") as f:
            f.write(doc(id_, domain))
        ok = self.ctl(["sign", "--secret", "ministry.key", name]).returncode == 0
        ok = ok and self.ctl(["submit", name], role="ministry").returncode == 0
        ok = ok and self.ctl(["approve", f"ministry-of-communications/{id_}"], role="engineer").returncode == 0
        return ok

    def verify(self, args, expect):
        p = self.ctl(["audit", "verify", "--controller-key", "controller.pub"] + args,
                     role="viewer", expect=expect)
        return p.returncode, p.stdout + p.stderr


def quiet_head(e):
    """The audit log's record count once it has stopped moving (the rollouts done, the nodes
    registered) and the controller's latest checkpoint covers it; None if it keeps moving."""
    def settled():
        a = len(e.audit_records())
        cp = e.get("/v1/audit/checkpoint") or {}
        time.sleep(1.0)
        b = len(e.audit_records())
        return a if a == b and cp.get("count") == a and e.rollout().get("stage") == "done" else None
    return wait_for(settled, 30, step=0.5)


def delete_newest(e, n, count):
    """Deletes audit records count-n+1..count behind the stopped controller's back."""
    if STORE == "etcd":
        keep = json.loads(cluster.get(f"{e.prefix}/audit/{count - n:020d}"))
        for seq in range(count - n + 1, count + 1):
            p = cluster.etcdctl(["del", f"{e.prefix}/audit/{seq:020d}"])
            if p.returncode != 0 or p.stdout.strip() != "1":
                return False
        # The head key too, so the controller appends after the new last record unsuspecting.
        return cluster.put(f"{e.prefix}/audit_head",
                           json.dumps({"seq": keep["seq"], "hash": keep["hash"]}, separators=(",", ":")))
    db = sqlite3.connect(os.path.join(e.root, "controld.db"))
    deleted = db.execute("DELETE FROM audit WHERE seq > ?", (count - n,)).rowcount
    db.commit()
    db.close()
    return deleted == n


def scenario(root):
    e = Env(root)
    if not e.start():
        return
    e.enroll_sim(NODES)  # issue 14: only enrolled nodes are served
    e.start_sim()
    nodes = [f"sim-{i:04d}" for i in range(1, NODES + 1)]
    check(wait_for(lambda: len(e.node_list()) == NODES, 15), f"{NODES} simulated nodes registered")
    check(e.submit_and_approve("MINCOM-2026-201", "blocked-one.example"), "block 1 submitted and approved")
    check(e.submit_and_approve("MINCOM-2026-202", "blocked-two.example"), "block 2 submitted and approved")

    count = quiet_head(e)
    check(count is not None and count > 10, f"the audit log settles at {count} records")
    if count is None:
        return
    cp = e.get("/v1/audit/checkpoint")
    check(cp and cp.get("count") == count and cp.get("replica"),
          f"GET /v1/audit/checkpoint: the controller signed the head ({cp and cp.get('count')} records)")
    # Within one long-poll wait (5 s here) and one status interval (1 s).
    check(wait_for(lambda: (lambda r: len(r) == NODES and all(v == count for v in r.values()))(
                       e.reported()), 15),
          f"every node reports a checkpoint covering all {count} records: {e.reported()}")
    check(all((e.held(n) or {}).get("count") == count for n in nodes),
          "every node persisted it in its state dir (audit_checkpoint.json)")
    node_file = e.node_file(nodes[0])
    p = e.ctl(["audit", "checkpoint", "--out", "ministry-checkpoint.json", "--controller-key",
               "controller.pub"], role="viewer")
    with open(os.path.join(root, "ministry-checkpoint.json")) as f:
        ministry = json.load(f)
    check(p.returncode == 0 and ministry["count"] == count,
          f"sluicectl audit checkpoint exported {ministry.get('count')} records for the ministry")

    # 1. The untouched log: every checkpoint is covered.
    rc, out = e.verify(["--checkpoint", node_file, "--checkpoint", "ministry-checkpoint.json"], 0)
    check(rc == 0 and f"covers all {NODES + 2}" in out,
          f"audit verify passes on the untouched log with {NODES} reported + 2 files: {out.strip()!r}")
    forged = os.path.join(root, "forged.json")
    with open(forged, "w") as f:
        json.dump(dict(ministry, count=count + 5), f)
    rc, out = e.verify(["--checkpoint", forged], 1)
    check(rc == 1 and "not an audit checkpoint signed by" in out,
          "a checkpoint file whose count was edited is refused (its signature)")

    # 2. Stop the controller; delete the newest 3 records behind its back.
    e.stop_sim()
    e.kill(signal.SIGTERM)
    if STORE == "sqlite":
        p = e.ctl(["audit", "verify", "--db", "controld.db", "--controller-key", "controller.pub",
                   "--checkpoint", node_file])
        check(p.returncode == 0, "audit verify --db passes before the deletion")
    check(delete_newest(e, 3, count), f"records {count - 2}-{count} deleted from the store ({STORE})")
    if STORE == "sqlite":
        p = e.ctl(["audit", "verify", "--db", "controld.db"])
        check(p.returncode == 0, "the chain alone cannot see it: audit verify --db without checkpoints passes")
        missing = f"records {count - 2}-{count} missing: the log ends at {count - 3}"
        p = e.ctl(["audit", "verify", "--db", "controld.db", "--controller-key", "controller.pub",
                   "--checkpoint", node_file, "--no-fleet"], expect=1)
        out = p.stdout + p.stderr
        check(p.returncode == 1 and missing in out and f"file {node_file} names {count}" in out,
              f"with the node's persisted checkpoint, audit verify fails naming the missing records: {out.strip()!r}")
        p = e.ctl(["audit", "verify", "--db", "controld.db", "--controller-key", "controller.pub"],
                  expect=1)
        out = p.stdout + p.stderr
        check(p.returncode == 1 and missing in out
              and f"checkpoint held by node sim-0001 and {NODES - 1} others names {count}" in out,
              f"with the fleet's reported checkpoints (the db's node records), it fails too: {out.strip()!r}")

    # 3. The controller restarts on the shortened log (it may append a record or two: a new
    # leader's, with etcd); the checkpoints still prove the tail is gone.
    e.start()
    e.start_sim()
    rc, out = e.verify(["--checkpoint", node_file, "--no-fleet"], 1)
    check(rc == 1 and f"-{count} missing: the log ends at" in out and f"names {count} with head" in out
          and "SHORTENED" in out,
          f"over the API, the node's file proves the missing tail: {out.strip()!r}")
    rc, out = e.verify(["--checkpoint", "ministry-checkpoint.json", "--no-fleet"], 1)
    check(rc == 1 and "file ministry-checkpoint.json names" in out,
          f"so does the ministry's exported checkpoint: {out.strip()!r}")
    rc, out = e.verify([], 1)
    check(rc == 1 and "checkpoint held by node sim-" in out and f"names {count}" in out,
          f"so do the checkpoints the fleet reported: {out.strip()!r}")
    # The restarted controller signs the shorter head; nodes get it within a wait and ignore it.
    short = e.get("/v1/audit/checkpoint") or {}
    check(short.get("count", count) < count, f"the restarted controller signs {short.get('count')} records")
    time.sleep(7)
    check(all((e.held(n) or {}).get("count") == count for n in nodes),
          "the nodes did not go back: their files still name the full count")
    check(all(v == count for v in e.reported().values()),
          f"and they still report it: {e.reported()}")
    e.stop_sim()
    e.kill(signal.SIGTERM)


def main():
    global cluster
    for f in ("sluice-controld", "sluicectl", "sluice-fleet-sim"):
        if not os.access(os.path.join(BIN, f), os.X_OK):
            print(f"missing {f}")
            return 1
    print(f"store: {STORE}")
    with tempfile.TemporaryDirectory(prefix="sluice-audit-cp-") as root:
        try:
            if STORE == "etcd":
                try:
                    cluster = EtcdCluster(root).start()
                except RuntimeError as ex:
                    check(False, str(ex))
                    return 1
            os.mkdir(os.path.join(root, "run"))
            scenario(os.path.join(root, "run"))
        finally:
            if cluster:
                cluster.stop()
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
