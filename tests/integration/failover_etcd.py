#!/usr/bin/python3
"""Replicated controller failover on loopback (issue 7), with the real binaries: a 3-member etcd
cluster (/usr/bin/etcd), three sluice-controld replicas on one key prefix, and NODES simulated
nodes (sluice-fleet-sim: the real agent code) in three processes, each knowing all three
controller URLs, rotated so each process starts on a different replica.

  failover_etcd.py BIN_DIR SOURCE_DIR

0. the etcd cluster runs over TLS (the harness's default, issue 14): a client without a client
   certificate is refused, the replicas present theirs.
1. leader: exactly one replica says it is the leader, and every replica names the same one.
2. controller failover: a block is submitted through one replica and approved through another;
   the leader is killed (SIGKILL) while the canary soaks. Another replica takes over within
   leader_lease_seconds + 3 s, the rollout completes (stage done), every node converges on the
   block's revision (controller's and simulator's view: ACKs), and the nodes that talked to the
   killed replica report to the survivors.
3. etcd failover: one etcd member (the raft leader) is killed; an unblock is submitted, approved
   and converges. The member is restarted and catches up (a serializable read on it alone shows
   the newest revision).
4. the killed replica is restarted and serves (a follower naming the leader); `sluicectl audit
   verify` over the API passes and every acknowledged submit/approve is in `audit export`.
Takeover and convergence times are printed, and asserted only against the lease bound.
Exit 0 pass, 1 fail."""

import json
import os
import resource
import signal
import sys
import tempfile
import time
import traceback
from datetime import datetime, timezone

from control_harness import (Controller, read_jsonl, sim_auth, EtcdCluster, check, failures, kill_all_tracked, popen,
                             wait_for)

BIN, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
CONTROLD = os.path.join(BIN, "sluice-controld")
CTL = os.path.join(BIN, "sluicectl")
SIM = os.path.join(BIN, "sluice-fleet-sim")
ISSUER = "ministry-of-communications"
REPLICAS = ("ctl-a", "ctl-b", "ctl-c")
PER_SIM = 16                      # nodes per simulator process
NODES = PER_SIM * len(REPLICAS)   # 48
CANARY_PER_SIM = 2                # 6 canaries, two behind each replica
LEASE = 5                         # leader_lease_seconds
SOAK = 4                          # canary soak_seconds
BLOCK = "action: block\nresponse: notice\ntargets:\n  apps: [telegram]\n"


def rfc(t):
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Sim:
    """One sluice-fleet-sim process (PER_SIM nodes, ids PREFIX0001...) and its JSON lines."""

    def __init__(self, root, name, urls):
        self.root, self.name, self.urls = root, name, urls
        self.prefix = name + "-"
        self.out = os.path.join(root, f"sim-{name}.jsonl")
        self.proc = None

    def start(self):
        args = [SIM, "--nodes", str(PER_SIM), "--canary", str(CANARY_PER_SIM), "--labels", "site=sim",
                "--node-prefix", self.prefix, "--controller-key", "controller.pub",
                *sim_auth(self.root), "--state-root",
                os.path.join(self.root, "state-" + self.name), "--wait", "5",
                "--status-interval", "1", "--backoff-max-ms", "1000", "--report-acks"]
        for u in self.urls:
            args += ["--controller", u]
        with open(self.out, "a") as out, open(os.path.join(self.root, f"sim-{self.name}.log"), "a") as err:
            self.proc = popen(args, cwd=self.root, stdout=out, stderr=err)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)

    def events(self):
        return read_jsonl(self.out)

    def ids(self):
        return [f"{self.prefix}{i:04d}" for i in range(1, PER_SIM + 1)]

    def canaries(self):
        return self.ids()[:CANARY_PER_SIM]


def acked(sims, rev):
    """node -> time of its first `acked` event for revision rev (the controller took the ACK)."""
    out = {}
    for s in sims:
        for ev in s.events():
            if ev.get("event") == "acked" and ev.get("revision") == rev:
                out.setdefault(ev["node"], ev["at"])
    return out


def converged(ctl, rev, ids):
    ns = {n["node"]: n for n in ctl.node_list()}
    return all(i in ns and ns[i]["applied_revision"] == rev and ns[i]["state"] == "converged"
               for i in ids)


def node_summary(ctl):
    """{(state, applied_revision): count} as one replica sees the fleet (for failure messages)."""
    out = {}
    nodes = ctl.node_list()
    for n in nodes:
        k = f"{n['state']}@{n['applied_revision']}"
        out[k] = out.get(k, 0) + 1
    listed = {n["node"][:2] for n in nodes}
    if len(nodes) < NODES:
        out["node id prefixes listed"] = sorted(listed)
    return out


def leaders(ctls):
    """{replica: (leader named, is_leader)} of the replicas that answer GET /v1/rollout."""
    out = {}
    for c in ctls:
        ro = c.get("/v1/rollout")
        if ro is not None:
            out[c.replica] = (ro.get("leader"), ro.get("is_leader"))
    return out


def one_leader(ctls):
    """The Controller every answering replica names as leader, and which says it is; else None."""
    seen = leaders(ctls)
    if len(seen) != len(ctls):
        return None
    self_says = [name for name, (_, is_leader) in seen.items() if is_leader is True]
    named = {leader for leader, _ in seen.values()}
    if len(self_says) == 1 and named == {self_says[0]}:
        return next(c for c in ctls if c.replica == self_says[0])
    return None


def directive_file(root, name, id_, action_part, not_before):
    d = (f"id: {id_}\nissuer: {ISSUER}\nissued_at: {rfc(time.time() - 300)}\n"
         f"legal_basis: \"Order No. 123 of 2026-11-20\"\n{action_part}scope: all\n"
         f"not_before: {rfc(not_before)}\n")
    with open(os.path.join(root, name), "w") as f:
        f.write(d)


def submit_and_approve(acks, via_submit, via_approve, name, id_, verb="submit"):
    """Signs NAME, submits it through one replica and approves it through another; every step
    the controller acknowledged is added to `acks` as (audit event, subject)."""
    ok = via_submit.ctl(["sign", "--secret", "ministry.key", name]).returncode == 0
    ok = ok and via_submit.ctl([verb, name], role="ministry").returncode == 0
    if ok:
        acks.append(("directive.received", f"{ISSUER}/{id_}"))
    ok = ok and via_approve.ctl(["approve", f"{ISSUER}/{id_}"], role="engineer").returncode == 0
    if ok:
        acks.append(("directive.approved", f"{ISSUER}/{id_}"))
    return check(ok, f"{id_} submitted ({verb}) through {via_submit.replica}, approved through "
                     f"{via_approve.replica}")


def run(root):
    cluster = EtcdCluster(root).start()
    print(f"etcd: {', '.join(cluster.endpoints())}")
    # Issue 14: the members take only clients presenting a certificate from the cluster's CA.
    refused, said = cluster.refuses_without_client_cert()
    check(refused, f"etcd refuses a client without a client certificate ({said})")
    a = Controller(root, BIN, SRC, stale_after=30, canary_soak=SOAK,
                   etcd=cluster, replica=REPLICAS[0], leader_lease=LEASE)
    ctls = [a] + [a.add_replica(r) for r in REPLICAS[1:]]
    print(f"prefix {a.prefix}; replicas " + ", ".join(f"{c.replica}={c.url}" for c in ctls))
    for c in ctls:
        if not c.start(timeout=20):
            print(c.log_tail())
            return
    urls = [c.url for c in ctls]
    sims = [Sim(root, REPLICAS[i][-1], urls[i:] + urls[:i]) for i in range(len(REPLICAS))]
    all_ids = [i for s in sims for i in s.ids()]
    canaries = [i for s in sims for i in s.canaries()]
    acks = []  # (event, subject) of every acknowledged submit/approve

    print("== leader")
    leader = wait_for(lambda: one_leader(ctls), LEASE + 10, step=0.2)
    if not check(leader is not None, f"exactly one leader, named by every replica: {leaders(ctls)}"):
        return
    print(f"   leader {leader.replica}")
    for s in sims:
        a.enroll_sim(PER_SIM, prefix=s.prefix, canary=CANARY_PER_SIM)  # issue 14
        s.start()
    if not check(wait_for(lambda: converged(a, 1, all_ids), 60, step=0.5),
                 f"{NODES} nodes (3 simulators, first URL rotated) converge on revision 1"):
        return

    print(f"== controller failover: kill -9 of the leader during the canary soak ({SOAK} s)")
    followers = [c for c in ctls if c is not leader]
    directive_file(root, "block.yaml", "MINCOM-2026-701", BLOCK, time.time() - 60)
    if not submit_and_approve(acks, followers[0], followers[1], "block.yaml", "MINCOM-2026-701"):
        return
    # The approving replica committed the enforcing revision (the submit made a shadow one
    # before it); the leader learns of it through the store, so wait until it has.
    target = followers[1].rollout().get("target", 0)
    ro = wait_for(lambda: (lambda r: r if r.get("target") == target else None)(leader.rollout()),
                  5, step=0.05) or leader.rollout()
    check(target >= 2 and ro.get("stage") == "canary",
          f"rollout of revision {target} starts with the canary stage: {ro.get('stage')}")
    check(wait_for(lambda: converged(leader, target, canaries), 20),
          f"the {len(canaries)} canaries applied revision {target}")
    ro = leader.rollout()
    leader_now = one_leader(ctls)
    mid = ro.get("stage") == "canary" and ro.get("released", 0) < target
    t_kill = time.time()
    leader.kill()
    check(leader.proc.returncode == -signal.SIGKILL, f"leader {leader.replica} killed with SIGKILL")
    check(mid and leader_now is leader,
          f"killed while leader and mid-rollout (stage {ro.get('stage')}, released "
          f"{ro.get('released')} < {target})")
    survivors = [c for c in ctls if c is not leader]
    new_leader = wait_for(lambda: one_leader(survivors), LEASE + 10, step=0.05)
    takeover = time.time() - t_kill
    # The lease expires LEASE s after the last keep-alive; the survivors' campaign loop and this
    # poll add a little, more on a loaded (sanitizer) CI run: 3 s of slack.
    check(new_leader is not None and takeover <= LEASE + 3,
          f"{new_leader.replica if new_leader else 'no replica'} is leader {takeover:.2f} s after "
          f"the kill (bound: lease {LEASE} s + 3 s)")
    if new_leader is None:
        return
    check(wait_for(lambda: (lambda r: r.get("stage") == "done" and r.get("target") == target)(
        new_leader.rollout()), 40, step=0.1), f"the rollout of revision {target} completes (stage done)")
    t_done = time.time() - t_kill
    via = survivors[0] if survivors[0] is not new_leader else survivors[1]
    check(wait_for(lambda: converged(via, target, all_ids), 30, step=0.2),
          f"all {NODES} nodes converged on revision {target} (seen through {via.replica}): "
          f"{node_summary(via)}; {new_leader.replica}: {node_summary(new_leader)}")
    got = wait_for(lambda: (lambda k: k if len(k) == NODES else None)(acked(sims, target)), 15)
    t_conv = max(got.values()) - t_kill if got else float("nan")
    check(got is not None, f"every node's ACK of revision {target} was taken (simulator's view)")
    moved = next(s for s in sims if s.urls[0] == leader.url)
    after_kill = int(t_kill) + 1
    def reported_elsewhere():
        ns = {n["node"]: n for n in via.node_list()}
        return all(i in ns and ns[i]["last_seen"] >= after_kill and
                   ns[i]["applied_revision"] == target for i in moved.ids())
    check(wait_for(reported_elsewhere, 15),
          f"the {PER_SIM} nodes that started on {leader.replica} report to the survivors after the kill")
    check(got is not None and all(got.get(i, 0) > t_kill for i in moved.ids()
                                  if i not in moved.canaries()),
          f"{leader.replica}'s non-canary nodes ACKed revision {target} after the kill")
    print(f"   takeover {takeover:.2f} s; rollout done {t_done:.2f} s, last ACK {t_conv:.2f} s "
          "after the kill")

    print("== etcd failover: one member killed, unblock converges, member restarted catches up")
    member = cluster.leader_member()
    member = 0 if member is None else member
    cluster.kill(member)
    t_member = time.time()
    check(not cluster.healthy(member), f"etcd member {member} (raft leader) killed")
    directive_file(root, "unblock.yaml", "MINCOM-2026-702", "action: unblock\nlifts: [MINCOM-2026-701]\n",
                   time.time() - 30)
    before = target
    if submit_and_approve(acks, survivors[0], survivors[1], "unblock.yaml", "MINCOM-2026-702", "lift"):
        lift_rev = wait_for(lambda: (lambda t: t if t > before else 0)(new_leader.rollout().get("target", 0)), 10)
        check(lift_rev > before, f"the lift made revision {lift_rev} with 2 of 3 etcd members")
        # The follower's gauges, before anything lists nodes through it (which re-reads them
        # from the store): its own tick must follow the ACKs the leader takes. It used to count
        # the leader's nodes as pending (or, quiet long enough, stale) on a converged fleet, and
        # the NOC's alerts on those gauges fired on every follower.
        sample = 'sluice_control_nodes{state="converged"}'
        check(wait_for(lambda: via.metric(sample) == NODES, 40, step=0.2),
              f"the follower {via.replica} counts all {NODES} nodes converged on {lift_rev} in "
              f"{sample} (last read {via.metric(sample)}, pending "
              f"{via.metric(sample.replace('converged', 'pending'))})")
        check(wait_for(lambda: converged(via, lift_rev, all_ids), 40, step=0.2),
              f"all {NODES} nodes converged on revision {lift_rev} (seen through {via.replica}): "
              f"{node_summary(via)}; {new_leader.replica}: {node_summary(new_leader)}")
        print(f"   unblock converged {time.time() - t_member:.2f} s after the member's kill")
        st = via.get(f"/v1/directives/{ISSUER}/MINCOM-2026-701") or {}
        check(st.get("state") == "ended" and st.get("end_reason") == "lifted",
              f"the block ended by the lift: {st.get('state')}/{st.get('end_reason')}")
    else:
        lift_rev = before
    check(cluster.restart(member), f"etcd member {member} restarted (same data dir)")
    key = a.prefix + "/revision_latest"
    def caught_up():
        v = cluster.get(key, member=member, serializable=True)
        try:
            return v is not None and int(json.loads(v)) >= lift_rev
        except (ValueError, TypeError):
            return False
    t_restart = time.time()
    check(wait_for(caught_up, 15, step=0.2),
          f"member {member} alone (serializable read) holds {key} = {lift_rev} "
          f"({time.time() - t_restart:.2f} s after its restart)")

    print(f"== restart of {leader.replica}")
    if not leader.start(timeout=20):
        print(leader.log_tail())
        return
    ro = wait_for(lambda: (lambda r: r if r.get("target") == lift_rev else None)(leader.rollout()), 10)
    check(ro is not None and ro.get("is_leader") is False and ro.get("leader") == new_leader.replica,
          f"{leader.replica} serves: target {ro and ro.get('target')}, follower of "
          f"{ro and ro.get('leader')}")
    check(wait_for(lambda: converged(leader, lift_rev, all_ids), 10),
          f"{leader.replica} sees all {NODES} nodes converged on {lift_rev}")
    p = leader.ctl(["audit", "verify"], role="viewer")
    check(p.returncode == 0, f"sluicectl audit verify over {leader.replica}'s API passes: "
                             f"{p.stdout.strip()}")
    p = leader.ctl(["audit", "export"], role="viewer")
    records = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    have = {(r.get("event"), r.get("subject")) for r in records}
    missing = [x for x in acks if x not in have]
    check(p.returncode == 0 and len(acks) == 4 and not missing,
          f"all {len(acks)} acknowledged submits/approvals are in the audit export"
          + (f" (missing {missing})" if missing else ""))
    for s in sims:
        s.stop()
    stopped = [ev for s in sims for ev in s.events() if ev.get("event") == "stopped"]
    off = [(n.get("node"), n["revision"], n["nacks"]) for ev in stopped for n in ev["nodes"]
           if n["revision"] != lift_rev or n["nacks"] != 0]
    check(len(stopped) == len(sims) and not off,
          f"every simulated node stopped on revision {lift_rev} with no NACK "
          f"({len(stopped)} of {len(sims)} simulators reported; off: {off[:5]})")
    for c in ctls:
        c.kill(signal.SIGTERM)
    cluster.stop()


def main():
    for f in (CONTROLD, CTL, SIM):
        if not os.access(f, os.X_OK):
            print(f"missing {f}")
            return 1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="sluice-failover-") as root:
        try:
            run(root)
        except Exception as ex:  # an unexpected error is a failure, not a crash of the runner
            traceback.print_exc()
            check(False, f"unexpected {type(ex).__name__}: {ex}")
        finally:
            kill_all_tracked()
    print(f"total {time.time() - t0:.1f} s")
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
