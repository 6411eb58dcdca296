#!/usr/bin/python3
"""rpz_test: sluice-rpz for real (issue 18): directive names as a Response Policy Zone, enforced
by a real Unbound recursive resolver, driven by a real sluice-controld over TLS.

    rpz_test.py BUILD_DIR SOURCE_DIR      (SLUICE_KEEP_TEST_DIR keeps the work dir)

Everything runs in a network namespace of its own (the script re-executes itself under
`unshare --net`), on its loopback only:
  - an authoritative server: Unbound with auth-zones for example.org, telegram.org,
    nottelegram.org, t.me, telesco.pe and isp.net, on 127.0.0.2:53;
  - the ISP's recursive resolver: Unbound on 127.0.0.1:53, stub zones to that server, the RPZ
    zone sluice.rpz from the file sluice-rpz writes (deploy/unbound/sluice-rpz.conf's settings),
    unbound-control on a unix socket;
  - sluice-controld (TLS, node CA) and sluice-rpz as enrolled node rpz-1 (client certificate).
The story, every answer read with dig through the resolver:
  1. before: every name resolves; the block (telegram.org + *.telegram.org, response reset) and
     a notice directive (t.me): telegram.org and web.telegram.org NXDOMAIN, t.me a CNAME to the
     notice host, example.org and nottelegram.org untouched; the node ACKs; metrics; BIND's
     named-checkzone accepts the file sluice-rpz wrote (BIND itself is not run: deploy/bind).
  2. restart (persisted snapshot re-applied, serial rises) with a reload command that can be
     told to fail: a new directive's zone the resolver takes and then "refuses", and one it
     really refuses (a corrupt file: Unbound's own parse error), are NACKed with the error, and
     dig proves the previous zone is in force each time; once the resolver takes it, ACK.
  3. the lift: everything resolves again; named-checkzone accepts the empty zone too.
  4. a block with not_after 20 s ahead; the controller stopped: the name resolves again after
     not_after (the node honours windows itself).
Root, unbound, unbound-control, dig, named-checkzone, openssl (tools/setup.sh); otherwise exit
77, unless SLUICE_REQUIRE_REAL_CLIENTS is set (then a missing tool fails)."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))
sys.path.insert(0, HERE)
import netlab  # noqa: E402
from netlab import wait_for  # noqa: E402

TOOLS = ("ip", "unshare", "unbound", "unbound-control", "dig", "named-checkzone", "openssl")
ENV_FLAG = "SLUICE_RPZ_ISOLATED"
ISSUER = "ministry-of-communications"
NODE = "rpz-1"
ZONE = "sluice.rpz"
NOTICE = "notice.isp.net"
ORIGIN_ADDR = {"example.org": "192.0.2.10", "telegram.org": "192.0.2.20",
               "web.telegram.org": "192.0.2.21", "nottelegram.org": "192.0.2.30",
               "t.me": "192.0.2.40", "telesco.pe": "192.0.2.50", NOTICE: "192.0.2.99"}
# (not under .test: Unbound answers RFC 6761's special names itself)
ZONES = ("example.org", "telegram.org", "nottelegram.org", "t.me", "telesco.pe", "isp.net")
AUTH, RESOLVER = "127.0.0.2", "127.0.0.1"

AUTH_CONF = netlab.unbound_server("{auth}@53", "auth.pid") + """{zones}
remote-control:
  control-enable: no
"""

RESOLVER_CONF = netlab.unbound_server("{resolver}@53", "resolver.pid") + """  do-not-query-localhost: no
  # No validator (the test zones are unsigned); respip is the module RPZ needs.
  module-config: "respip iterator"
{stubs}
# As deploy/unbound/sluice-rpz.conf, with the test's paths.
rpz:
  name: {zone}
  zonefile: "{work}/{zone}.zone"
  rpz-log: yes
  rpz-log-name: sluice
remote-control:
  control-enable: yes
  control-interface: "{work}/unbound-control.sock"
  control-use-cert: no
"""

# A reload command that can be told to fail (reload.mode in the work dir), for the bad-input
# steps; with "pass" it is unbound-control as configured in deploy/unbound.
#   refuse:  the resolver takes a zone naming telesco.pe, then the command exits 1
#   corrupt: a zone naming telesco.pe gets a broken line first: Unbound itself refuses it
RELOAD_WRAPPER = """#!/bin/sh
zone="$1"; file="$2"; conf="$3"; work="$(dirname "$0")"
mode="$(cat "$work/reload.mode" 2>/dev/null || echo pass)"
named=no
grep -q '^telesco[.]pe ' "$file" && named=yes
if [ "$mode" = corrupt ] && [ "$named" = yes ]; then echo 'broken line ((' >> "$file"; fi
out="$(unbound-control -c "$conf" auth_zone_reload "$zone" 2>&1)"
rc=$?
if [ "$rc" = 0 ] && [ "$mode" = refuse ] && [ "$named" = yes ]; then
  echo "test: the resolver took the zone, then refused it"
  exit 1
fi
echo "$out"
exit $rc
"""


def rfc(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class Lab(netlab.Story):
    def __init__(self, build, source):
        super().__init__("sluice-rpz-it-", "SLUICE_KEEP_TEST_DIR")
        os.chmod(self.work, 0o755)
        self.build, self.source = build, source
        self.ctl = None
        self.rpz = None
        self.rpz_runs = 0
        self.metrics_port = netlab.free_port()

    # ---- DNS -----------------------------------------------------------------------------------
    def dig(self, name):
        """(status, [(type, data)...]) of the resolver's answer."""
        r = subprocess.run(["dig", "+tries=1", "+time=3", "@" + RESOLVER, name, "A"],
                           capture_output=True, text=True, timeout=20)
        status = next((line.split("status: ")[1].split(",")[0] for line in r.stdout.splitlines()
                       if "status: " in line), "no answer (dig %d)" % r.returncode)
        answers = []
        for line in r.stdout.splitlines():
            f = line.split()
            if line and not line.startswith(";") and len(f) == 5 and f[2] == "IN":
                answers.append((f[3], f[4]))
        return status, answers

    def resolves(self, name):
        status, answers = self.dig(name)
        return status == "NOERROR" and answers == [("A", ORIGIN_ADDR[name])]

    def nxdomain(self, name):
        status, answers = self.dig(name)
        return status == "NXDOMAIN" and not answers

    def noticed(self, name):
        status, answers = self.dig(name)
        return status == "NOERROR" and answers == [("CNAME", NOTICE + "."),
                                                   ("A", ORIGIN_ADDR[NOTICE])]

    def check_names(self, want, what):
        """want: name -> "resolves" | "nxdomain" | "notice"; polled briefly (a reload is quick
        but not instant), then each is reported."""
        test = {"resolves": self.resolves, "nxdomain": self.nxdomain, "notice": self.noticed}
        wait_for(lambda: all(test[w](n) for n, w in want.items()), 10, 0.2)
        for name, w in want.items():
            status, answers = self.dig(name)
            self.check(test[w](name), "%s: dig %s -> %s %s" % (what, name, status, answers))

    # ---- resolvers -----------------------------------------------------------------------------
    def start_resolvers(self):
        zones = []
        for zone in ZONES:
            path = os.path.join(self.work, "auth-%s.zone" % zone)
            with open(path, "w") as f:
                f.write("$ORIGIN %s.\n$TTL 60\n@ SOA ns.%s. h.%s. 1 3600 600 86400 60\n"
                        "@ NS ns.%s.\nns A %s\n" % (zone, zone, zone, zone, AUTH))
                for name, addr in ORIGIN_ADDR.items():
                    if name == zone or name.endswith("." + zone):
                        f.write("%s. A %s\n" % (name, addr))
            zones.append('auth-zone:\n  name: "%s"\n  zonefile: "%s"\n  for-downstream: yes\n'
                         "  for-upstream: no" % (zone, path))
        stubs = "\n".join('stub-zone:\n  name: "%s"\n  stub-addr: %s@53' % (z, AUTH)
                          for z in ZONES)
        with open(os.path.join(self.work, "auth.conf"), "w") as f:
            f.write(AUTH_CONF.format(auth=AUTH, work=self.work, zones="\n".join(zones)))
        self.resolver_conf = os.path.join(self.work, "resolver.conf")
        with open(self.resolver_conf, "w") as f:
            f.write(RESOLVER_CONF.format(resolver=RESOLVER, work=self.work, stubs=stubs,
                                         zone=ZONE))
        subprocess.run(["ip", "addr", "add", AUTH + "/8", "dev", "lo"], capture_output=True)
        self.spawn("unbound (authoritative)",
                   ["unbound", "-d", "-c", os.path.join(self.work, "auth.conf")], "auth.log")
        ok = wait_for(lambda: subprocess.run(
            ["dig", "+tries=1", "+time=1", "+norec", "@" + AUTH, "example.org", "A"],
            capture_output=True, text=True).stdout.count("status: NOERROR") == 1, 15)
        self.must(ok, "the authoritative Unbound answers on %s" % AUTH)

    def start_resolver(self):
        # Unbound does not start without its RPZ file: sluice-rpz writes it first (deploy order).
        self.spawn("unbound (resolver)", ["unbound", "-d", "-c", self.resolver_conf],
                   "resolver.log")
        self.must(wait_for(lambda: self.resolves("example.org"), 15),
                  "the resolver answers on %s (example.org via the authoritative server)"
                  % RESOLVER)

    # ---- controller ----------------------------------------------------------------------------
    def start_controller(self):
        import control_harness
        self.harness = control_harness
        self.ctl = control_harness.Controller(self.work, self.build, self.source,
                                              spawn=self._spawn_controller)
        self.must(self.ctl.start(), "sluice-controld answers over TLS")
        p = self.ctl.ctl(["nodes", "enroll", NODE, "--labels", "site=sim", "--out", "node-rpz"],
                         role="engineer")
        self.must(p.returncode == 0, "node %s enrolled (its key and certificate from the node CA)"
                  % NODE)

    def _spawn_controller(self, args, **kw):
        p = subprocess.Popen(args, start_new_session=True, **kw)
        self.procs.append(("sluice-controld", p))
        return p

    def target(self):
        return (self.ctl.get("/v1/rollout") or {}).get("target", 0)

    def node(self):
        for n in self.ctl.node_list():
            if n.get("node") == NODE:
                return n
        return {}

    def converged(self, rev):
        n = self.node()
        return n.get("applied_revision", 0) >= rev and n.get("state") == "converged"

    def directive(self, name, body, lift=False):
        """Signs, submits and approves a directive; returns the revision it compiled."""
        path = os.path.join(self.work, name)
        t = datetime.now(timezone.utc)
        with open(path, "w") as f:
            f.write("issuer: %s\nissued_at: %s\nlegal_basis: \"Order No. 18 of 2026 (rpz test)\"\n"
                    "scope: all\n%s" % (ISSUER, rfc(t - timedelta(minutes=1)), body))
        before = self.target()
        self.must(self.ctl.ctl(["sign", "--secret", "ministry.key", name]).returncode == 0,
                  "%s signed" % name)
        did = ISSUER + "/" + re.search(r"(?m)^id: (\S+)", body).group(1)
        p = self.ctl.ctl(["lift" if lift else "submit", name], role="ministry")
        self.must(p.returncode == 0, "%s submitted" % did)
        p = self.ctl.ctl(["approve", did], role="engineer")
        self.must(p.returncode == 0, "%s approved" % did)
        rev = wait_for(lambda: (lambda r: r if r > before else 0)(self.target()), 10)
        self.must(rev > before, "%s compiled revision %d" % (did, rev))
        return rev

    # ---- sluice-rpz ----------------------------------------------------------------------------
    def start_rpz(self, reload_command):
        self.rpz_runs += 1
        self.rpz_log = "rpz-%d.log" % self.rpz_runs
        os.makedirs(os.path.join(self.work, "state"), exist_ok=True)
        cmd = [os.path.join(self.build, "sluice-rpz"),
               "--controller", self.ctl.url, "--controller-ca", self.ctl.ca,
               "--controller-key", os.path.join(self.work, "controller.pub"),
               "--node-id", NODE, "--labels", "site=sim",
               "--node-cert", os.path.join(self.work, "node-rpz", "node.crt"),
               "--node-key", os.path.join(self.work, "node-rpz", "node.key"),
               "--state-dir", os.path.join(self.work, "state"),
               "--zone", ZONE, "--zone-file", self.zone_file,
               "--reload-command", reload_command, "--notice-host", NOTICE,
               "--retry-interval", "1", "--command-timeout", "20",
               "--metrics", "127.0.0.1:%d" % self.metrics_port]
        self.rpz = self.spawn("sluice-rpz", cmd, self.rpz_log)

    def stop_rpz(self):
        self.rpz.send_signal(signal.SIGTERM)
        self.rpz.wait(timeout=15)

    def metric(self, name, **labels):
        return netlab.metric_sum(netlab.http_json("http://127.0.0.1:%d/metrics" %
                                                  self.metrics_port), name, **labels)

    def serial(self):
        with open(self.zone_file) as f:
            m = re.search(r"(?m)^@ IN SOA \S+ \S+ (\d+) ", f.read())
        return int(m.group(1)) if m else 0

    def bind_accepts_zone(self, what):
        """BIND's zone loader on the file as written (sluice-rpz renames it into place whole):
        the file deploy/bind points named at, read as named would read it."""
        r = subprocess.run(["named-checkzone", ZONE, self.zone_file], capture_output=True,
                           text=True, timeout=60)
        said = (r.stdout + r.stderr).strip().replace("\n", " / ")
        self.check(r.returncode == 0, "%s: named-checkzone %s accepts the zone file (exit %d: %s)"
                   % (what, ZONE, r.returncode, said))

    def nack_with(self, text, timeout=40):
        """The node record once it reports a refusal whose error contains `text`."""
        return wait_for(lambda: (lambda n: n if text in (n.get("error") or "") else None)(
            self.node()), timeout, 0.2)

    # ---- the story -----------------------------------------------------------------------------
    def run(self):
        self.zone_file = os.path.join(self.work, ZONE + ".zone")
        unbound_reload = "unbound-control -c %s auth_zone_reload {zone}" % self.resolver_conf_path()
        self.step("set-up: authoritative server, controller (TLS), sluice-rpz, resolver")
        self.start_resolvers()
        self.start_controller()
        self.start_rpz(unbound_reload)
        self.must(wait_for(lambda: os.path.exists(self.zone_file), 10),
                  "sluice-rpz wrote the (empty) zone before the resolver starts")
        self.start_resolver()
        self.must(wait_for(lambda: self.converged(self.target()), 30),
                  "node converged on revision %d (reload retried once the resolver was up)"
                  % self.target())
        self.check_names({n: "resolves" for n in ("example.org", "telegram.org",
                                                  "web.telegram.org", "nottelegram.org", "t.me",
                                                  "telesco.pe")}, "before")

        self.step("1. block: telegram.org and *.telegram.org (reset), t.me (notice)")
        self.directive("block.yaml", "id: MINCOM-RPZ-001\naction: block\nresponse: reset\n"
                       "targets:\n  domains: [telegram.org, \"*.telegram.org\"]\n"
                       "not_before: %s\n" % rfc(datetime.now(timezone.utc) - timedelta(minutes=1)))
        rev = self.directive("notice.yaml", "id: MINCOM-RPZ-002\naction: block\nresponse: notice\n"
                             "targets:\n  domains: [t.me]\nnot_before: %s\n"
                             % rfc(datetime.now(timezone.utc) - timedelta(minutes=1)))
        self.must(wait_for(lambda: self.converged(rev), 30), "node ACKed revision %d" % rev)
        self.check_names({"telegram.org": "nxdomain", "web.telegram.org": "nxdomain",
                          "t.me": "notice", "example.org": "resolves",
                          "nottelegram.org": "resolves"}, "block")
        with open(self.zone_file) as f:
            self.say(f.read().strip())
        self.bind_accepts_zone("block (wildcard, CNAME ., notice CNAME)")
        self.check(self.metric("sluice_rpz_zone_names") == 3, "metric: 3 names in the zone")
        self.check(self.metric("sluice_rpz_applied_revision") == rev,
                   "metric: applied revision %d" % rev)
        self.check(self.metric("sluice_rpz_zone_serial") == self.serial(),
                   "metric: serial %d (the file's)" % self.serial())
        self.check(self.metric("sluice_rpz_reloads_total", result="ok") >= 2,
                   "metric: reloads counted")
        log = self.log_tail("resolver.log", 400)
        self.check("rpz: applied [sluice] telegram.org. rpz-nxdomain" in log,
                   "the resolver logs the RPZ hit (rpz-log)")

        self.step("2. restart with a reload command that can fail; bad input is NACKed")
        serial = self.serial()
        self.stop_rpz()
        wrapper = os.path.join(self.work, "reload.sh")
        with open(wrapper, "w") as f:
            f.write(RELOAD_WRAPPER)
        os.chmod(wrapper, 0o755)
        self.start_rpz("%s {zone} {file} %s" % (wrapper, self.resolver_conf))
        self.must(wait_for(lambda: "persisted snapshot revision %d in force" % rev in
                           self.log_tail(self.rpz_log, 50) or
                           "revision %d in force" % rev in self.log_tail(self.rpz_log, 50), 15),
                  "restarted: the persisted snapshot re-applied")
        self.check(self.serial() > serial, "the serial rose over the restart (%d > %d)"
                   % (self.serial(), serial))
        self.check(self.nxdomain("telegram.org"), "telegram.org still NXDOMAIN")
        self.must(wait_for(lambda: self.converged(self.target()), 30),
                  "node converged on revision %d" % self.target())
        rev = self.node().get("applied_revision")

        with open(os.path.join(self.work, "reload.mode"), "w") as f:
            f.write("refuse\n")
        serial = self.serial()
        bad = self.directive("bad.yaml", "id: MINCOM-RPZ-003\naction: block\nresponse: reset\n"
                             "targets:\n  domains: [telesco.pe]\nnot_before: %s\n"
                             % rfc(datetime.now(timezone.utc) - timedelta(minutes=1)))
        n = self.nack_with("the resolver took the zone, then refused it")
        # (the node took the shadow revision of the directive awaiting approval: monitor rules)
        self.check(n is not None and n.get("applied_revision", bad) < bad,
                   "refused zone NACKed, revision %d not applied (%d stays): %s"
                   % (bad, (n or {}).get("applied_revision", 0), (n or self.node()).get("error")))
        self.check_names({"telesco.pe": "resolves", "telegram.org": "nxdomain", "t.me": "notice",
                          "example.org": "resolves"}, "previous zone in force")
        self.check(self.serial() > serial + 1,
                   "the restored zone has a serial above the refused one (%d)" % self.serial())

        with open(os.path.join(self.work, "reload.mode"), "w") as f:
            f.write("corrupt\n")
        n = self.nack_with("failed to read " + ZONE)
        self.check(n is not None and n.get("applied_revision", bad) < bad,
                   "a zone Unbound itself rejects is NACKed with its error: %s"
                   % (n or self.node()).get("error"))
        self.check_names({"telesco.pe": "resolves", "telegram.org": "nxdomain"},
                         "previous zone in force")
        with open(self.zone_file) as f:
            self.check("broken line" not in f.read(), "the rejected file was replaced by the "
                       "previous zone")
        self.check(self.metric("sluice_rpz_failures_total", stage="reload") >= 2,
                   "metric: reload failures counted")

        with open(os.path.join(self.work, "reload.mode"), "w") as f:
            f.write("pass\n")
        self.must(wait_for(lambda: self.converged(bad), 60),
                  "the resolver takes it now: revision %d ACKed" % bad)
        self.check_names({"telesco.pe": "nxdomain", "telegram.org": "nxdomain"}, "third block")

        self.step("3. the lift")
        lift = self.directive("lift.yaml", "id: MINCOM-RPZ-004\naction: unblock\n"
                              "lifts: [MINCOM-RPZ-001, MINCOM-RPZ-002, MINCOM-RPZ-003]\n"
                              "not_before: %s\n" % rfc(datetime.now(timezone.utc)
                                                        - timedelta(seconds=5)), lift=True)
        self.must(wait_for(lambda: self.converged(lift), 30), "node ACKed the lift (%d)" % lift)
        self.check_names({n: "resolves" for n in ("telegram.org", "web.telegram.org", "t.me",
                                                  "telesco.pe", "example.org",
                                                  "nottelegram.org")}, "after the lift")
        self.check(self.metric("sluice_rpz_zone_names") == 0, "metric: 0 names in the zone")
        self.bind_accepts_zone("after the lift (no names)")

        self.step("4. a block that ends on its own, the controller stopped")
        end = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=20)
        rev = self.directive("window.yaml", "id: MINCOM-RPZ-005\naction: block\nresponse: reset\n"
                             "targets:\n  domains: [telegram.org, \"*.telegram.org\"]\n"
                             "not_before: %s\nnot_after: %s\n"
                             % (rfc(datetime.now(timezone.utc) - timedelta(minutes=1)), rfc(end)))
        self.must(wait_for(lambda: self.converged(rev), 30), "node ACKed revision %d" % rev)
        self.check_names({"telegram.org": "nxdomain", "web.telegram.org": "nxdomain",
                          "nottelegram.org": "resolves"}, "windowed block")
        self.ctl.kill(signal.SIGTERM)
        self.check(not self.ctl.alive(), "controller stopped")
        left = (end - datetime.now(timezone.utc)).total_seconds()
        self.check(left > 0 and self.nxdomain("telegram.org"),
                   "still blocked with the controller gone (%.1f s to not_after)" % left)
        ok = wait_for(lambda: self.resolves("telegram.org"), left + 10, 0.2)
        late = (datetime.now(timezone.utc) - end).total_seconds()
        self.check(ok, "telegram.org resolves again %.1f s after not_after" % late)
        self.check_names({"telegram.org": "resolves", "web.telegram.org": "resolves"},
                         "after not_after, no controller")
        self.check("window edge" in self.log_tail(self.rpz_log, 100),
                   "sluice-rpz rewrote the zone at the window edge")

    def resolver_conf_path(self):
        return os.path.join(self.work, "resolver.conf")


def main():
    if len(sys.argv) != 3:
        print(__doc__.split("\n\n")[1])
        return 2
    build, source = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    if os.environ.get(ENV_FLAG) != "1":
        absent = netlab.clients_missing(TOOLS)
        if absent is not None:
            return absent
        why = netlab.namespaces_unavailable()
        if why:
            print("SKIPPED: %s" % why)
            return 77
        missing = [b for b in ("sluice-controld", "sluicectl", "sluice-rpz")
                   if not os.access(os.path.join(build, b), os.X_OK)]
        if missing:
            print("FAIL: not built in %s: %s" % (build, " ".join(missing)))
            return 1
        return netlab.isolate(ENV_FLAG)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    lab = Lab(build, source)
    print("rpz_test: sluice-rpz and a real Unbound (work dir %s)" % lab.work, flush=True)
    return netlab.run_story(lab, lab.run, "rpz_test",
                            ["rpz-1.log", "rpz-2.log", "resolver.log", "controld.log"],
                            time_limit=280)


if __name__ == "__main__":
    sys.exit(main())
