#!/usr/bin/python3
"""kill -9 of sluice-controld during a burst of signed submissions (issue 14).

  crash_burst.py BIN_DIR SOURCE_DIR [--store sqlite|etcd]

Four clients submit 200 distinct signed directives (50 each, as fast as the controller answers);
the controller is SIGKILLed once about 80 have been answered. After a restart:
  - every submission that was answered 2xx is there, whole: its directive record with the exact
    document bytes and its `directive.received` audit record;
  - none is half there: a submission whose answer never came is either whole (it committed just
    before the kill) or absent, never a directive without its audit record or the reverse;
  - `sluicectl audit verify` passes, and a submission after the restart is accepted.
Exit 0 pass, 1 fail."""

import os
import signal
import sys
import tempfile
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone

from control_harness import Controller, EtcdCluster, check, failures, store_arg

BIN, SRC = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
STORE = store_arg(sys.argv[3:])
ISSUER = "ministry-of-communications"
CLIENTS, PER_CLIENT, KILL_AFTER = 4, 50, 80


def rfc(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def document(i):
    now = datetime.now(timezone.utc)
    return (f"id: BURST-{i:04d}\nissuer: {ISSUER}\nissued_at: {rfc(now - timedelta(minutes=5))}\n"
            f"legal_basis: \"Order No. {i} of 2026-12-06\"\naction: block\nresponse: reset\n"
            f"targets:\n  domains: [burst{i}.example]\nscope: all\n"
            f"not_before: {rfc(now + timedelta(days=1))}\n")


def main():
    with tempfile.TemporaryDirectory(prefix="sluice-burst-") as root:
        cluster = EtcdCluster(root).start() if STORE == "etcd" else None
        try:
            return run(root, cluster)
        finally:
            if cluster:
                cluster.stop()


def run(root, cluster):
    c = Controller(root, BIN, SRC, etcd=cluster)
    if not c.start():
        return 1
    total = CLIENTS * PER_CLIENT
    docs = {}
    for i in range(total):
        name = f"d{i:04d}.yaml"
        with open(os.path.join(root, name), "w") as f:
            f.write(document(i))
        docs[i] = name
    signed = sum(c.ctl(["sign", "--secret", "ministry.key", name]).returncode == 0
                 for name in docs.values())
    if not check(signed == total, f"{total} documents signed ({signed})"):
        return 1
    bodies = {}
    for i, name in docs.items():
        with open(os.path.join(root, name)) as f, open(os.path.join(root, name + ".minisig")) as g:
            bodies[i] = {"document": f.read(), "signature": g.read()}

    answers = {}  # i -> HTTP status (0: no answer)
    lock = threading.Lock()
    answered = threading.Semaphore(0)

    def client(k):
        for i in range(k, total, CLIENTS):
            status, _ = c.request("POST", "/v1/directives", role="ministry", body=bodies[i], timeout=20)
            with lock:
                answers[i] = status
            answered.release()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for _ in range(KILL_AFTER):
        answered.acquire()
    c.kill(signal.SIGKILL)
    killed_at = time.monotonic() - started
    for t in threads:
        t.join()
    ok = sorted(i for i, s in answers.items() if 200 <= s < 300)
    lost = sorted(i for i, s in answers.items() if s == 0)
    refused = sorted(i for i, s in answers.items() if s not in (0,) and not 200 <= s < 300)
    print(f"killed after {killed_at:.2f} s: {len(ok)} answered 2xx, {len(refused)} refused, "
          f"{len(lost)} unanswered")
    check(len(ok) >= KILL_AFTER - len(refused) and len(lost) > 0,
          "the kill landed mid-burst (some answered, some never answered)")
    check(not refused, f"no submission refused before the kill ({refused[:5]})")

    if not c.start():
        return 1
    records = c.audit_records()
    received = {}
    for r in records:
        if r["event"] == "directive.received":
            received.setdefault(r["subject"], 0)
            received[r["subject"]] += 1
    present, missing_ok, half = [], [], []
    for i in range(total):
        key = f"{ISSUER}/BURST-{i:04d}"
        status, d = c.request("GET", "/v1/directives/" + urllib.parse.quote(ISSUER) + f"/BURST-{i:04d}")
        has_record = status == 200 and isinstance(d, dict)
        exact = has_record and d.get("document") == bodies[i]["document"]
        audited = received.get(key, 0) == 1
        if has_record:
            present.append(i)
        if i in ok and not (exact and audited):
            missing_ok.append(i)
        if has_record != audited or (has_record and not exact):
            half.append(i)
    check(not missing_ok, f"every 2xx submission is there with its exact document and one audit "
                          f"record ({len(ok)} answered; missing or partial: {missing_ok[:5]})")
    check(not half, f"no submission is half there ({half[:5]})")
    print(f"after restart: {len(present)} present ({len(ok)} acknowledged, "
          f"{len(present) - len(ok)} committed without an answer)")
    check(c.ctl(["audit", "verify"], role="viewer").returncode == 0, "sluicectl audit verify passes")
    # The unanswered ones can be sent again: each is either refused as a replay (it committed) or
    # accepted now; never anything else. The first dozen (those in flight at the kill among
    # them): each accepted submission recompiles every open directive's shadow rules, which is
    # slow under the sanitizers.
    again = {}
    for i in lost[:12]:
        again[i], _ = c.request("POST", "/v1/directives", role="ministry", body=bodies[i], timeout=60)
    bad = [i for i, s in again.items() if not ((i in present and s == 409) or (i not in present and s == 201))]
    check(not bad, f"resubmitting {len(again)} unanswered: replays refused (409), the rest "
                   f"accepted (201) ({[(i, again[i]) for i in bad[:5]]})")
    c.kill()
    print(f"{len(failures)} failed" if failures else "all passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
