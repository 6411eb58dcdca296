#!/usr/bin/python3
"""rpz_bench: how long 1,000,000 directive names take to become a Response Policy Zone that a
real Unbound enforces (issue 18). It reports numbers; it does not pass or fail on time.

    tools/rpz_bench.py BUILD_DIR [--names N] [--wildcards FRACTION]     (root: a netns of its own)

A policy with N names (one rule, `drop`; FRACTION of them `*.` patterns, default 0.1) is applied
by `sluice-rpz --policy` (standalone: the same enforcer as controller mode) to an Unbound 1.17
resolver in a network namespace of this script's own, on its loopback:
  - parse:  the policy document read and every name normalised (sluice-rpz's log);
  - render, write: the zone text made, written, fsynced and renamed into place;
  - reload: `unbound-control auth_zone_reload` of the whole zone (Unbound parses and indexes it);
  - cold load: Unbound started on the zone file until it answers a blocked name with NXDOMAIN;
  - zone size on disk, Unbound's resident memory with the zone loaded.
In controller mode the agent also verifies the snapshot (signature, one more parse of the policy)
before the enforcer's work: add about the `parse` figure once more."""

import argparse
import os
import random
import re
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import netlab  # noqa: E402

RESOLVER_CONF = netlab.unbound_server("127.0.0.1@53", "unbound.pid") + """  module-config: "respip iterator"
rpz:
  name: sluice.rpz
  zonefile: "{work}/sluice.rpz.zone"
remote-control:
  control-enable: yes
  control-interface: "{work}/unbound-control.sock"
  control-use-cert: no
"""

TLDS = ["com", "net", "org", "ru", "io", "me", "info", "xn--p1ai", "de", "app"]


def names(n, wildcards, seed=18):
    rnd = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits
    out = set()
    while len(out) < n:
        label = "".join(rnd.choice(alphabet) for _ in range(rnd.randint(6, 16)))
        sub = "" if rnd.random() < 0.6 else "".join(
            rnd.choice(alphabet) for _ in range(rnd.randint(2, 8))) + "."
        out.add(sub + label + "." + rnd.choice(TLDS))
    out = sorted(out)
    rnd.shuffle(out)
    k = int(n * wildcards)
    return ["*." + x for x in out[:k]] + out[k:]


def dig_status(name):
    r = subprocess.run(["dig", "+tries=1", "+time=1", "@127.0.0.1", name, "A"],
                       capture_output=True, text=True)
    m = re.search(r"status: (\w+)", r.stdout)
    return m.group(1) if m else None


def rss_mib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            m = re.search(r"VmRSS:\s+(\d+) kB", f.read())
        return int(m.group(1)) / 1024 if m else 0
    except OSError:
        return 0


def bench(build, n, wildcards):
    work = tempfile.mkdtemp(prefix="sluice-rpz-bench-")
    procs = []
    try:
        conf = os.path.join(work, "resolver.conf")
        with open(conf, "w") as f:
            f.write(RESOLVER_CONF.format(work=work))
        zone = os.path.join(work, "sluice.rpz.zone")
        rpz = os.path.join(build, "sluice-rpz")
        reload_cmd = "unbound-control -c %s auth_zone_reload {zone}" % conf
        common = ["--zone-file", zone, "--reload-command", reload_cmd]

        t = time.time()
        listed = names(n, wildcards)
        policy = os.path.join(work, "policy.yaml")
        with open(policy, "w") as f:
            f.write("revision: 1\nrules:\n  - id: bench\n    action: drop\n    domains:\n")
            for x in listed:
                f.write('      - "%s"\n' % x)
        print("generated %d names (%d wildcards) in %.1f s, policy %.1f MB"
              % (n, int(n * wildcards), time.time() - t, os.path.getsize(policy) / 1e6),
              flush=True)
        blocked = next(x for x in listed if not x.startswith("*."))

        # An empty zone for Unbound's start (it does not start without its RPZ file).
        empty = os.path.join(work, "empty.yaml")
        with open(empty, "w") as f:
            f.write("revision: 0\nrules: []\n")
        p = subprocess.Popen([rpz, "--policy", empty, "--zone-file", zone, "--reload-command",
                              "true"], stderr=subprocess.PIPE, text=True)
        netlab.wait_for(lambda: os.path.exists(zone), 10)
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        ub = subprocess.Popen(["unbound", "-d", "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(work, "unbound.log"), "w"))
        procs.append(ub)
        if not netlab.wait_for(lambda: dig_status(blocked) is not None, 15):
            raise RuntimeError("unbound does not answer")

        # The whole zone through sluice-rpz: parse, render, write, reload.
        log = os.path.join(work, "rpz.log")
        t = time.time()
        p = subprocess.Popen([rpz, "--policy", policy, "--command-timeout", "600"] + common,
                             stderr=open(log, "w"))
        procs.append(p)
        line = netlab.wait_for(lambda: next((l for l in open(log) if "in force" in l or
                                             "refused" in l), None), 900, 0.2)
        applied = time.time() - t
        if not line or "in force" not in line:
            raise RuntimeError("sluice-rpz did not apply: %s" % open(log).read()[-2000:])
        fig = dict(re.findall(r"(parse|render|write|reload) ([0-9.]+) s", line))
        status = dig_status(blocked)
        p.send_signal(signal.SIGTERM)
        p.wait(10)
        size = os.path.getsize(zone)
        rss_reload = rss_mib(ub.pid)

        # Cold load: Unbound started on the 1M-name file.
        ub.send_signal(signal.SIGTERM)
        ub.wait(30)
        t = time.time()
        ub = subprocess.Popen(["unbound", "-d", "-c", conf], stdout=subprocess.DEVNULL,
                              stderr=open(os.path.join(work, "unbound-cold.log"), "w"))
        procs.append(ub)
        ok = netlab.wait_for(lambda: dig_status(blocked) == "NXDOMAIN", 600, 0.05)
        cold = time.time() - t
        rss_cold = rss_mib(ub.pid)

        print()
        print("names                         %d (%d%% wildcards)" % (n, round(wildcards * 100)))
        print("zone file                     %.1f MB (%d bytes/name)" % (size / 1e6, size // n))
        print("sluice-rpz parse              %.2f s" % float(fig.get("parse", 0)))
        print("sluice-rpz render             %.2f s" % float(fig.get("render", 0)))
        print("sluice-rpz write (fsync)      %.2f s" % float(fig.get("write", 0)))
        print("unbound auth_zone_reload      %.2f s" % float(fig.get("reload", 0)))
        print("policy file to zone in force  %.2f s (process start to the log line)" % applied)
        print("blocked name after reload     %s" % status)
        print("unbound cold start on it      %.2f s (%s)" % (cold, "NXDOMAIN" if ok else "timed out"))
        print("unbound RSS                   %.0f MiB after reload, %.0f MiB cold" % (rss_reload,
                                                                                    rss_cold))
        return 0 if status == "NXDOMAIN" and ok else 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("build")
    ap.add_argument("--names", type=int, default=1_000_000)
    ap.add_argument("--wildcards", type=float, default=0.1)
    a = ap.parse_args()
    if os.environ.get("SLUICE_RPZ_BENCH_ISOLATED") != "1":
        if os.geteuid() != 0 or not shutil.which("unbound") or not shutil.which("dig"):
            print("rpz_bench: needs root, unbound and dig (tools/setup.sh)")
            return 77
        return netlab.isolate("SLUICE_RPZ_BENCH_ISOLATED")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    return bench(os.path.abspath(a.build), a.names, a.wildcards)


if __name__ == "__main__":
    sys.exit(main())
