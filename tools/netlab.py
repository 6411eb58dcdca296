"""netlab: the plumbing shared by the scripts that run Sluice on real traffic over network
namespaces: tools/demo.py (the main job), tests/integration/impact_e2e.py and
tests/integration/namespaces.py.

What it gives:
  - namespaces joined to this one by veth pairs, offloads off on both ends (add_namespace);
  - a threaded origin server (TLS :443 and plain HTTP :80) and port probes;
  - a Story: output and checks, child processes, a dataplane started on net_af_packet, and a
    cleanup that removes everything the run made on every exit path;
  - run_story(): signals and time limit, the report of failed steps, the exit code;
  - isolate(): re-executing a script in a network namespace of its own, and the sweep of named
    namespaces left by a run that was SIGKILLed.

No per-script knowledge lives here: addresses, ports, node ids and the stories stay with the
scripts."""

import hashlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

# Veth offloads must be off: with them, af_packet sees partial checksums, which the dataplane
# rightly treats as fakes, and GSO/GRO super-frames. ethtool may be absent, so this is the
# legacy SIOCETHTOOL ioctl, run in the interface's namespace.
OFFLOADS_OFF = r"""
import ctypes, fcntl, socket, struct, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def ethtool(name, cmd, data=0):
    buf = ctypes.create_string_buffer(struct.pack("II", cmd, data))
    ifr = struct.pack("16sP", name.encode(), ctypes.addressof(buf)).ljust(40, b"\0")
    fcntl.ioctl(s, 0x8946, ifr)
    return struct.unpack("II", buf.raw[:8])[1]
for name in sys.argv[1:]:
    for cmd in (0x2c, 0x24, 0x1f, 0x19, 0x15, 0x17):  # GRO GSO TSO SG RXCSUM TXCSUM off
        try:
            ethtool(name, cmd, 0)
        except OSError as e:
            print("%s: ethtool cmd %#x: %s" % (name, cmd, e), file=sys.stderr)
    if ethtool(name, 0x16) != 0:  # ETHTOOL_GTXCSUM
        sys.exit("%s: tx checksum offload still on" % name)
"""

# The origin servers, one process: TLS :443 and plain HTTP :80 on every address of the server
# namespace, threaded (a half-open connection left by a reset must not stall the next one;
# `openssl s_server` serves one connection at a time). The body names the port so a check
# can tell the origin's answer from the dataplane's 451 page.
ORIGIN = r"""
import http.server, ssl, sys, threading
class handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("origin server (%s) for %s\n" % (self.server.kind, self.headers.get("Host"))).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(sys.argv[1], sys.argv[2])
tls = http.server.ThreadingHTTPServer(("0.0.0.0", 443), handler)
tls.kind, tls.daemon_threads = "tls", True
tls.socket = ctx.wrap_socket(tls.socket, server_side=True, do_handshake_on_connect=False)
plain = http.server.ThreadingHTTPServer(("0.0.0.0", 80), handler)
plain.kind, plain.daemon_threads = "http", True
threading.Thread(target=plain.serve_forever, daemon=True).start()
tls.serve_forever()
"""


class StepFailed(Exception):
    """A step the rest of the story depends on did not happen (already reported as FAIL)."""


class Interrupted(Exception):
    """A signal or the time limit: unwind through every `finally`, then exit non-zero."""


def on_signal(signum, _frame):
    raise Interrupted("signal %d (%s)" % (signum, signal.Signals(signum).name))


# ---- small helpers -------------------------------------------------------------------------
def run(cmd, **kw):
    return subprocess.run(cmd, check=True, **kw)


def in_ns(ns, cmd):
    return ["ip", "netns", "exec", ns] + cmd


def wait_for(pred, timeout, step=0.1):
    """Polls pred until it returns something true (returned) or timeout seconds pass."""
    end = time.time() + timeout
    while time.time() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    return pred()


def wait_listening(ns, port, timeout=15):
    ok = wait_for(lambda: subprocess.run(in_ns(ns, ["ss", "-Hltn", "sport = :%d" % port]),
                                         capture_output=True, text=True).stdout.strip(), timeout)
    if not ok:
        raise RuntimeError("nothing listens on %s port %d" % (ns, port))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_json(url, token=None, timeout=5, ca=None):
    """GET url -> parsed JSON, the text of any other body, or None when it did not answer.
    `ca`: the CA file that vouches for an https:// server."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    ctx = ssl.create_default_context(cafile=ca) if ca else None
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ctx) as r:
            body = r.read()
            return json.loads(body) if body[:1] in (b"{", b"[") else body.decode()
    except (urllib.error.URLError, ConnectionError, OSError, ValueError):
        return None


def sluicectl(binary, url, args, token=None, cwd=None, timeout=60, ca=None):
    """Runs sluicectl against url with `token` as SLUICE_TOKEN (never the caller's own); `ca`
    vouches for an https:// controller."""
    env = {k: v for k, v in os.environ.items() if k not in ("SLUICE_TOKEN", "SLUICE_CONTROLLER")}
    if token:
        env["SLUICE_TOKEN"] = token
    return subprocess.run([binary, "--controller", url] + (["--ca", ca] if ca else []) + args,
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def controller_tls(work):
    """A throwaway CA (ctl-ca.crt) and the controller's certificate for IP 127.0.0.1 signed by
    it (ctl.crt, ctl.key; EC P-256) in `work`; returns the CA's path."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    def openssl(*args):
        run(["openssl", *args], cwd=work, capture_output=True)
    openssl("req", "-x509", *ec, "-keyout", "ctl-ca.key", "-out", "ctl-ca.crt", "-days", "2",
            "-subj", "/CN=sluice throwaway controller CA", "-addext",
            "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", *ec, "-keyout", "ctl.key", "-out", "ctl.csr", "-subj", "/CN=127.0.0.1")
    with open(os.path.join(work, "ctl.ext"), "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "ctl.csr", "-CA", "ctl-ca.crt", "-CAkey", "ctl-ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "ctl.ext", "-out", "ctl.crt")
    return os.path.join(work, "ctl-ca.crt")


def controld_yaml(writer, listen, source, issuer, principals, extra=""):
    """A sluice-controld config (schema: control/api/config.hpp) for a throwaway controller in
    its work dir: SQLite, the keys start_controller() makes, one issuer, one approval, and
    `principals` [(name, role, secret)] as hashed tokens; `extra` is appended as is."""
    tokens = "\n".join("  - { name: %s, role: %s, sha256: %s }"
                       % (name, role, hashlib.sha256(secret.encode()).hexdigest())
                       for name, role, secret in principals)
    return """# written by %s (schema: control/api/config.hpp)
listen: %s
database: controld.db
apps_dir: %s/config/apps
signing_key: controller.key
issuers:
  - { name: %s, public_key: ministry.pub }
approvals_required: 1
stale_after_seconds: 20
tokens:
%s
%s""" % (writer, listen, source, issuer, tokens, extra)


def telegram_policy(revision, rule_id, directive, action, blocked=True):
    """A standalone policy (the dataplane's --policy schema): `action` on telegram.org and
    *.telegram.org under rule_id, or, when not blocked, no rules at all (the lift)."""
    rules = ("rules:\n  - id: %s\n    directive: %s\n    action: %s\n"
             "    domains: [\"telegram.org\", \"*.telegram.org\"]\n"
             % (rule_id, directive, action)) if blocked else "rules: []\n"
    return "revision: %d\ngenerated_at: 2026-01-01T00:00:00Z\n%s" % (revision, rules)


def metric_sum(text, name, **labels):
    """Sum of Prometheus text samples of metric `name` whose labels include `labels`."""
    total = 0.0
    for line in (text or "").splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if all('%s="%s"' % kv in line for kv in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def wait_metric(url, name, minimum, timeout=10, **labels):
    """metric_sum of `name` at the Prometheus endpoint `url`, polled until it reaches `minimum` or
    `timeout` seconds pass (the dataplane refreshes its counters from the control loop, so what
    just happened shows a moment later); returns the last value read."""
    end = time.time() + timeout
    value = metric_sum(http_json(url), name, **labels)
    while value < minimum and time.time() < end:
        time.sleep(0.2)
        value = metric_sum(http_json(url), name, **labels)
    return value


def curl_error(rc):
    return {0: "", 7: "(connection refused)", 28: "(timed out)", 35: "(TLS handshake reset)",
            52: "(empty reply)", 55: "(reset while sending)", 56: "(connection reset)"}.get(rc, "")


def self_signed_cert(work, cn, alt_names):
    """A throwaway certificate: (cert path, key path). alt_names like ["DNS:a.org", "IP:1.2.3.4"]."""
    cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=" + cn, "-addext", "subjectAltName=" + ",".join(alt_names),
         "-keyout", key, "-out", cert], capture_output=True)
    return cert, key


def add_namespace(ns, outer, addrs, inner="eth0"):
    """Named namespace `ns` whose interface `inner` carries `addrs` (CIDR strings); its veth peer
    `outer` stays in this namespace, up, for the dataplane to take. IPv6 off, offloads off."""
    run(["ip", "netns", "add", ns])
    run(["ip", "link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer])
    run(["sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % outer])
    run(in_ns(ns, ["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]))
    run(in_ns(ns, ["ip", "link", "set", "lo", "up"]))
    for addr in addrs:
        run(in_ns(ns, ["ip", "addr", "add", addr, "dev", inner]))
    run(in_ns(ns, ["ip", "link", "set", inner, "up"]))
    run(in_ns(ns, [sys.executable, "-c", OFFLOADS_OFF, inner]))
    run([sys.executable, "-c", OFFLOADS_OFF, outer])
    run(["ip", "link", "set", outer, "up"])


def kill_namespace(ns):
    """Kills what still runs inside named namespace ns (only ours are passed) and deletes it."""
    pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    for pid in pids.stdout.split():
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError):
            pass
    subprocess.run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)


def dataplane_cmd(binary, file_prefix, subscriber_if, internet_if, mgmt_port, metrics_port,
                  mirror=False):
    """sluice-dataplane on two net_af_packet ports, small tables, no hugepages; append the
    controller and node options. With mirror, the two interfaces are the mirror port (the copy
    comes in) and the inject port (answers go out) of --mode mirror."""
    cpus = os.cpu_count() or 1
    ports = (["--mode", "mirror", "--mirror-port", "0", "--inject-port", "1"] if mirror else
             ["--subscriber-port", "0", "--internet-port", "1"])
    return [binary, "--no-huge", "--no-pci", "--no-shconf", "--no-telemetry", "-m", "256",
            "--file-prefix=" + file_prefix, "--lcores", "(0-1)@(0-%d)" % (cpus - 1),
            "--log-level=warning",
            "--vdev", "net_af_packet0,iface=" + subscriber_if,
            "--vdev", "net_af_packet1,iface=" + internet_if, "--"] + ports + [
            "--mgmt", "127.0.0.1:%d" % mgmt_port, "--metrics", "127.0.0.1:%d" % metrics_port,
            "--flow-table-size", "4096", "--reassembly-buffers", "256", "--frag-table-size", "256"]


# ---- running in a namespace of our own -----------------------------------------------------
def namespaces_unavailable():
    """Why this machine cannot run the namespace stories, or None."""
    if os.geteuid() != 0:
        return "not root"
    for tool in ("ip", "unshare", "curl", "openssl", "ss"):
        if shutil.which(tool) is None:
            return "%s not installed" % tool
    if subprocess.run(["unshare", "--net", "true"], capture_output=True).returncode != 0:
        return "network namespaces unavailable (unshare --net failed)"
    return None


def clients_missing(tools, require_env="SLUICE_REQUIRE_REAL_CLIENTS"):
    """None when this is root and every one of `tools` is installed; otherwise the exit code
    after saying why: 77 (skipped), or 1 when `require_env` is set (tools/test.sh sets it once
    tools/setup.sh has installed them, so that a missing one fails instead of skipping)."""
    missing = [t for t in tools if shutil.which(t) is None]
    if os.geteuid() == 0 and not missing:
        return None
    why = "not root" if os.geteuid() != 0 else "missing " + ", ".join(missing)
    if os.environ.get(require_env):
        print("FAIL: %s (%s is set)" % (why, require_env))
        return 1
    print("SKIPPED: %s (tools/setup.sh installs them)" % why)
    return 77


def isolate(env_flag):
    """Re-executes this script in a network namespace of its own, with env_flag=1 in its
    environment; returns its exit code."""
    child = subprocess.Popen(["unshare", "--net", sys.executable] + sys.argv,
                             env=dict(os.environ, **{env_flag: "1"}))
    # The terminal's Ctrl-C reaches the child too (same process group): let it clean up.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, lambda signum, _f: child.send_signal(signum))
    while True:
        try:
            return child.wait()
        except InterruptedError:
            continue


def sweep_stale_namespaces(pattern, who):
    """Removes the named namespaces of an earlier run that was killed (SIGKILL leaves no chance
    to clean up): only names matching `pattern` (group 1 the name, group 2 the run's pid), and
    only if that run's pid is gone."""
    r = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    for line in r.stdout.splitlines():
        m = re.match(pattern, line)
        if m and not os.path.exists("/proc/" + m.group(2)):
            print("%s: removing namespace %s left by a killed run" % (who, m.group(1)))
            subprocess.run(["ip", "netns", "del", m.group(1)], stderr=subprocess.DEVNULL)


# ---- one run ---------------------------------------------------------------------------------
class Story:
    """Output, checks, child processes and cleanup of one run. `keep_env`: when that variable is
    set, the work directory is kept for a post-mortem."""

    def __init__(self, work_prefix, keep_env):
        self.work = tempfile.mkdtemp(prefix=work_prefix)
        self.keep_env = keep_env
        self.procs = []          # (name, Popen), stopped in reverse order
        self.namespaces = []     # named namespaces we made
        self.dpdk_prefixes = []  # --file-prefix runtime dirs to remove
        self.failures = []
        self.t0 = time.time()

    # ---- output and checks ---------------------------------------------------------------------
    def step(self, title):
        print("\n== [%5.1fs] %s" % (time.time() - self.t0, title), flush=True)

    def say(self, text):
        print("   " + str(text).replace("\n", "\n   "), flush=True)

    def check(self, cond, what):
        print(("   ok    " if cond else "   FAIL  ") + what, flush=True)
        if not cond:
            self.failures.append(what)
        return cond

    def must(self, cond, what):
        """A check the rest of the story depends on."""
        if not self.check(cond, what):
            raise StepFailed(what)

    # ---- processes -----------------------------------------------------------------------------
    def spawn(self, name, cmd, log, **kw):
        # A session of its own: a terminal's Ctrl-C reaches only the script, which then stops
        # its children in order.
        with open(os.path.join(self.work, log), "w") as f:
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                 start_new_session=True, **kw)
        self.procs.append((name, p))
        return p

    def log_tail(self, log, lines=25):
        try:
            with open(os.path.join(self.work, log), errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def add_namespace(self, ns, outer, addrs):
        self.namespaces.append(ns)
        add_namespace(ns, outer, addrs)

    def start_controller(self, binary, config, node_token, health_url, ca=None):
        """Makes the ministry's and the controller's keys (self.ctl: the script's sluicectl
        runner), writes node.token and controld.yaml (`config`), starts sluice-controld and
        waits for health_url to answer (over TLS vouched for by `ca`, if given)."""
        for who in ("ministry", "controller"):
            p = self.ctl(["keygen", "--public", who + ".pub", "--secret", who + ".key"])
            self.must(p.returncode == 0, "sluicectl keygen (%s)" % who)
        with open(os.path.join(self.work, "node.token"), "w") as f:
            f.write(node_token)
        with open(os.path.join(self.work, "controld.yaml"), "w") as f:
            f.write(config)
        proc = self.spawn("sluice-controld", [binary, "--config", "controld.yaml"], "controld.log",
                          cwd=self.work)
        ok = wait_for(lambda: proc.poll() is None and http_json(health_url, ca=ca) is not None, 15)
        if not ok:
            self.say(self.log_tail("controld.log"))
        self.must(ok, "sluice-controld answers on %s" % health_url)
        return proc

    def start_origin(self, ns, cert, key, log):
        """The ORIGIN server in namespace ns; returns once :443 and :80 listen."""
        self.spawn("origin " + ns, in_ns(ns, [sys.executable, "-c", ORIGIN, cert, key]), log)
        for port in (443, 80):
            wait_listening(ns, port)

    def start_dataplane(self, name, cmd, log, answers, file_prefix):
        """Starts cmd (a dataplane_cmd() list); returns its Popen once answers() is true, or
        None. DPDK 22.11's net_af_packet names its PACKET_FANOUT group (getpid() ^ ifindex) &
        0xffff; groups are per network namespace, so a second node's group can collide with the
        first's, on another device: EINVAL, and the port is missing. A new pid avoids it."""
        self.dpdk_prefixes.append(file_prefix)
        for attempt in range(1, 6):
            proc = self.spawn(name, cmd, log, cwd=self.work)
            up = wait_for(lambda: proc.poll() is not None or answers(), 60, 0.2)
            if proc.poll() is None or "PACKET_FANOUT" not in self.log_tail(log, 10000):
                return proc if up and proc.poll() is None else None
            self.say("%s: DPDK af_packet fanout group id collided (attempt %d), restarting"
                     % (name, attempt))
        return None

    def cleanup(self):
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for _, p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for ns in self.namespaces:
            kill_namespace(ns)
        for prefix in self.dpdk_prefixes:
            shutil.rmtree("/var/run/dpdk/" + prefix, ignore_errors=True)
        if os.environ.get(self.keep_env) is None:
            shutil.rmtree(self.work, ignore_errors=True)
        else:
            print("kept %s (%s)" % (self.work, self.keep_env))


def run_story(story, body, name, logs, time_limit=None, hold=False):
    """Runs body() under a time limit (SIGALRM) with signals turned into Interrupted; on every
    exit path prints the failed steps and the tails of `logs`, cleans up, and returns the exit
    code (0 when every check passed). With hold, an interruption other than the time limit is
    the normal end (an interactive run stopped with Ctrl-C)."""
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGALRM):
        signal.signal(s, on_signal)
    if time_limit:
        signal.alarm(time_limit)
    try:
        body()
    except StepFailed:
        pass  # in story.failures already; the rest of the story cannot happen
    except Interrupted as e:
        timeout = "SIGALRM" in str(e)
        if not hold or timeout:
            story.failures.append("interrupted: %s%s" % (
                e, " (time limit %d s)" % time_limit if timeout else ""))
    except Exception as e:  # noqa: BLE001 - report, clean up below, exit non-zero
        story.failures.append("%s: %s" % (type(e).__name__, e))
    finally:
        signal.alarm(0)
        for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(s, signal.SIG_IGN)  # cleanup must finish
        if story.failures:
            for log in logs:
                tail = story.log_tail(log, 15)
                if tail:
                    print("--- %s (last lines)\n%s" % (log, tail))
        story.cleanup()
    print()
    if story.failures:
        print("%s: FAILED after %.1f s: %d step(s) did not happen as described:"
              % (name, time.time() - story.t0, len(story.failures)))
        for f in story.failures:
            print("  - " + f)
        return 1
    return 0


def unbound_server(interface, pid_name):
    """The `server:` lines every test's Unbound starts with, as a str.format template that keeps
    `{work}` for the caller's work directory: listening on `interface` (IPv4, 127/8 allowed), in
    the foreground, logging to stderr, no chroot or user switch, its pid file `{work}/pid_name`.
    The caller appends its own server lines (zones, modules) and sections."""
    return ("server:\n"
            "  interface: %s\n"
            "  do-daemonize: no\n"
            "  use-syslog: no\n"
            "  logfile: \"\"\n"
            "  chroot: \"\"\n"
            "  username: \"\"\n"
            "  directory: \"{work}\"\n"
            "  pidfile: \"{work}/%s\"\n"
            "  access-control: 127.0.0.0/8 allow\n"
            "  do-ip6: no\n"
            "  verbosity: 1\n" % (interface, pid_name))
