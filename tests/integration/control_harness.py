"""What the control-plane integration tests share: pass/fail bookkeeping, polling, a real
sluice-controld in a work directory (fresh keys, hashed tokens, its config) driven over HTTP and
through sluicectl, with its store on SQLite (default) or on an etcd v3 cluster (EtcdCluster:
three etcd members on loopback, over TLS with client certificates by default), and replicas of
one controller sharing that cluster.
Imported by control_e2e.py, fleet_faults.py, failover_etcd.py (same directory) and
tools/fleet_bench.py.

Every process started here is killed when the test process exits, however it exits: children
get PR_SET_PDEATHSIG=SIGKILL (so even a SIGKILLed test, e.g. a ctest timeout, leaves nothing
behind), and atexit kills whatever is still tracked."""

import atexit
import base64
import ctypes
import hashlib
import http.client
import json
import os
import shutil
import signal
import ssl
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
import uuid

# Polling and ports: the helpers tools/netlab.py gives the namespace scripts too.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "tools"))
from netlab import controller_tls, free_port, wait_for  # noqa: E402,F401  (re-exported to the tests)

TOKENS = {"ministry": "tok-ministry-1", "engineer": "tok-engineer-alice",
          "viewer": "tok-viewer", "node": "tok-node-fleet"}
ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"
failures = []
_tracked = []   # every process popen() started; killed at exit


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)
    return cond


def read_jsonl(path):
    """The JSON lines of a file that may still be being written (a torn last line is skipped);
    [] when the file does not exist yet."""
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


_libc = ctypes.CDLL(None, use_errno=True)
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    # Runs in the child between fork and exec. The death signal fires when the thread that
    # forked exits; every harness process is started from the main thread.
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def popen(args, **kw):
    """subprocess.Popen that dies with this process and is killed at exit (tracked)."""
    p = subprocess.Popen(args, preexec_fn=_die_with_parent, **kw)
    _tracked.append(p)
    return p


def kill_all_tracked():
    for p in _tracked:
        if p.poll() is None:
            try:
                p.kill()
                p.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                pass


atexit.register(kill_all_tracked)


def store_arg(argv):
    """`--store sqlite|etcd` anywhere after the two positional arguments (default sqlite)."""
    if "--store" in argv:
        i = argv.index("--store")
        kind = argv[i + 1] if i + 1 < len(argv) else ""
        if kind not in ("sqlite", "etcd"):
            raise SystemExit(f"--store: expected sqlite or etcd, got {kind!r}")
        return kind
    return "sqlite"


class EtcdCluster:
    """A `size`-member etcd 3.4 cluster on loopback, its data dirs under ROOT/etcd. Fast
    elections (heartbeat 100 ms, election timeout 1 s) so a killed member is noticed quickly.
    start() returns once every member answers /health; kill(i) and restart(i) (same data dir,
    --initial-cluster-state existing) exercise one member; stop() kills them all (also at exit).

    tls (the default; issue 14): a throwaway CA in ROOT/etcd/pki (openssl, EC P-256) signs each
    member's server and peer certificates (subjectAltName IP:127.0.0.1) and one client
    certificate, client.crt/key, for the controllers and etcdctl. Client and peer URLs are
    https://, and the members require a certificate from that CA on both (--client-cert-auth,
    --peer-client-cert-auth). tls=False: plain http:// as before."""

    def __init__(self, root, size=3, spawn=popen, tls=True):
        if not (os.access(ETCD, os.X_OK) and os.access(ETCDCTL, os.X_OK)):
            raise RuntimeError(f"{ETCD} / {ETCDCTL} missing: run tools/setup.sh (Debian etcd-server, "
                               "etcd-client)")
        self.root = os.path.join(root, "etcd")
        os.makedirs(self.root, exist_ok=True)
        self.spawn = spawn
        self.token = f"sluice-test-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.names = [f"etcd{i}" for i in range(size)]
        self.client_ports = [free_port() for _ in range(size)]
        self.peer_ports = [free_port() for _ in range(size)]
        self.procs = [None] * size
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self.pki = os.path.join(self.root, "pki")
        self._context = None  # for /health: verifies the member, presents client.crt
        if tls:
            self._make_certs()
            self._context = ssl.create_default_context(cafile=self.tls_file("ca.crt"))
            self._context.load_cert_chain(self.tls_file("client.crt"), self.tls_file("client.key"))
        atexit.register(self.stop)

    def _openssl(self, *args):
        p = subprocess.run(["openssl", *args], cwd=self.pki, capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"openssl {' '.join(args)}: {p.stderr.strip()}")

    def _make_certs(self):
        os.makedirs(self.pki, exist_ok=True)
        key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        self._openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "30",
                      "-subj", "/CN=Sluice test etcd CA",
                      "-addext", "basicConstraints=critical,CA:TRUE",
                      "-addext", "keyUsage=critical,keyCertSign,cRLSign")

        def leaf(name, cn, usage, san=True):
            with open(os.path.join(self.pki, name + ".ext"), "w") as f:
                f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                        f"extendedKeyUsage={usage}\n" + ("subjectAltName=IP:127.0.0.1\n" if san else ""))
            self._openssl("req", *key, "-keyout", name + ".key", "-out", name + ".csr",
                          "-subj", "/CN=" + cn)
            self._openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                          "-CAcreateserial", "-out", name + ".crt", "-days", "30",
                          "-extfile", name + ".ext")

        for n in self.names:
            # clientAuth on the server certificate too: etcd 3.4's gateway presents it to the
            # member's own gRPC port, which --client-cert-auth checks. Peers are both ends.
            leaf(f"{n}-server", n, "serverAuth,clientAuth")
            leaf(f"{n}-peer", n, "serverAuth,clientAuth")
        leaf("client", "sluice-controller", "clientAuth", san=False)

    def tls_file(self, name):
        """A file of the cluster's PKI (ca.crt, client.crt, client.key, etcdN-server.crt, ...)."""
        return os.path.join(self.pki, name)

    def store_tls_yaml(self, config_dir):
        """The `tls:` line of a controller's `store:` section (paths relative to the config's
        directory), or "" without TLS."""
        if not self.tls:
            return ""
        ca, cert, key = (os.path.relpath(self.tls_file(n), config_dir)
                         for n in ("ca.crt", "client.crt", "client.key"))
        return f"  tls: {{ ca: {ca}, cert: {cert}, key: {key} }}\n"

    def _peer_url(self, i):
        return f"{self.scheme}://127.0.0.1:{self.peer_ports[i]}"

    def _initial_cluster(self):
        return ",".join(f"{n}={self._peer_url(i)}" for i, n in enumerate(self.names))

    def endpoints(self):
        return [f"{self.scheme}://127.0.0.1:{p}" for p in self.client_ports]

    def endpoint(self, i):
        return self.endpoints()[i]

    def _launch(self, i, state):
        name = self.names[i]
        data = os.path.join(self.root, name)
        args = [ETCD, "--name", name, "--data-dir", data,
                "--listen-client-urls", self.endpoint(i),
                "--advertise-client-urls", self.endpoint(i),
                "--listen-peer-urls", self._peer_url(i),
                "--initial-advertise-peer-urls", self._peer_url(i),
                "--initial-cluster", self._initial_cluster(),
                "--initial-cluster-state", state,
                "--initial-cluster-token", self.token,
                "--max-txn-ops", "10000", "--max-request-bytes", "16777216",
                "--heartbeat-interval", "100", "--election-timeout", "1000",
                "--log-level", "error", "--logger", "zap"]
        if self.tls:
            ca = self.tls_file("ca.crt")
            args += ["--cert-file", self.tls_file(f"{name}-server.crt"),
                     "--key-file", self.tls_file(f"{name}-server.key"),
                     "--client-cert-auth", "--trusted-ca-file", ca,
                     "--peer-cert-file", self.tls_file(f"{name}-peer.crt"),
                     "--peer-key-file", self.tls_file(f"{name}-peer.key"),
                     "--peer-client-cert-auth", "--peer-trusted-ca-file", ca]
        with open(os.path.join(self.root, f"{name}.log"), "a") as log:
            self.procs[i] = self.spawn(args, stdout=log, stderr=log, cwd=self.root)

    def start(self, timeout=30):
        # Ports are picked free, then bound by etcd a moment later: a busy machine (CI runs two
        # suites at once) can take one in between. So a cluster that does not come up is
        # started once more, on fresh ports and fresh data dirs, and its logs are shown.
        for attempt in (1, 2):
            for i in range(len(self.names)):
                self._launch(i, "new")
            if self.wait_healthy(timeout):
                return self
            self.stop()
            for name in self.names:
                path = os.path.join(self.root, f"{name}.log")
                if os.path.exists(path):
                    with open(path) as f:
                        print(f"  {name}.log (attempt {attempt}): {f.read()[-600:].strip()!r}")
            if attempt == 1:
                for name in self.names:
                    shutil.rmtree(os.path.join(self.root, name), ignore_errors=True)
                self.client_ports = [free_port() for _ in self.names]
                self.peer_ports = [free_port() for _ in self.names]
        raise RuntimeError(f"etcd cluster not healthy in {timeout} s, twice (logs in {self.root})")

    def healthy(self, i):
        p = self.procs[i]
        if p is None or p.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(self.endpoint(i) + "/health", timeout=2,
                                        context=self._context) as r:
                return json.loads(r.read()).get("health") == "true"
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            return False

    def wait_healthy(self, timeout=30, members=None):
        members = range(len(self.names)) if members is None else members
        return wait_for(lambda: all(self.healthy(i) for i in members), timeout, step=0.2)

    def kill(self, i, sig=signal.SIGKILL):
        p = self.procs[i]
        if p and p.poll() is None:
            p.send_signal(sig)
            p.wait(timeout=20)

    def restart(self, i, timeout=30):
        self.kill(i)
        self._launch(i, "existing")
        return self.wait_healthy(timeout, members=[i])

    def alive(self):
        return [i for i, p in enumerate(self.procs) if p and p.poll() is None]

    def stop(self):
        for i in range(len(self.names)):
            self.kill(i)

    def remove(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def etcdctl(self, args, endpoints=None, timeout=20, client_cert=True):
        """etcdctl on the live members (or `endpoints`); with TLS it verifies them against the
        CA and presents client.crt unless client_cert=False."""
        env = dict(os.environ, ETCDCTL_API="3")
        eps = ",".join(endpoints or [self.endpoint(i) for i in self.alive()])
        tls = []
        if self.tls:
            tls = ["--cacert", self.tls_file("ca.crt")]
            if client_cert:
                tls += ["--cert", self.tls_file("client.crt"), "--key", self.tls_file("client.key")]
        return subprocess.run([ETCDCTL, "--endpoints", eps, "--dial-timeout", "3s",
                               "--command-timeout", "5s"] + tls + args,
                              env=env, capture_output=True, text=True, timeout=timeout)

    def refuses_without_client_cert(self):
        """TLS: a read that succeeds with client.crt fails without a client certificate (the
        members' --client-cert-auth); (refused, what etcdctl said without one)."""
        read = ["get", "/", "--prefix", "--keys-only", "--limit", "1"]
        with_cert = self.etcdctl(read)
        without = self.etcdctl(read, client_cert=False)
        said = (without.stderr or without.stdout).strip().splitlines()
        return (with_cert.returncode == 0 and without.returncode != 0,
                said[-1] if said else f"exit {without.returncode}")

    def get(self, key, member=None, serializable=False):
        """The value at `key` (str) or None; member: read from that member only."""
        eps = [self.endpoint(member)] if member is not None else None
        args = ["get", key, "-w", "json"] + (["--consistency=s"] if serializable else [])
        p = self.etcdctl(args, endpoints=eps)
        if p.returncode != 0:
            return None
        kvs = json.loads(p.stdout).get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    def keys(self, prefix):
        p = self.etcdctl(["get", prefix, "--prefix", "--keys-only"])
        return [k for k in p.stdout.splitlines() if k] if p.returncode == 0 else []

    def put(self, key, value):
        # `--` so a value starting with '-' is not taken for a flag.
        return self.etcdctl(["put", "--", key, value]).returncode == 0

    def leader_member(self):
        """Index of the member that is the raft leader, or None."""
        p = self.etcdctl(["endpoint", "status", "-w", "json"])
        if p.returncode != 0:
            return None
        try:
            st = json.loads(p.stdout)
        except ValueError:
            return None
        for s in st:
            if s["Status"]["leader"] == s["Status"]["header"]["member_id"]:
                return self.endpoints().index(s["Endpoint"])
        return None


def new_prefix(tag):
    """A key prefix no other test (or earlier run) used: one test = one fresh prefix."""
    return f"/sluice-test/{tag}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


class HttpsRequests:
    """For Controller subclasses that set up TLS their own way (`self.ctx`: the ssl context that
    vouches for the controller; `self.port`): requests over http.client, each on a connection of
    its own, optionally with a client certificate's context, headers or a raw body; and one
    sample of /metrics."""

    def connection(self, ctx=None, timeout=10):
        return http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx or self.ctx,
                                           timeout=timeout)

    def request(self, method, path, role="viewer", body=None, timeout=10, ctx=None, headers=None,
                raw=None):
        """(status, parsed JSON or text); status 0 when the controller did not answer."""
        conn = self.connection(ctx, timeout)
        h = dict(headers or {})
        if role:
            h["Authorization"] = "Bearer " + TOKENS[role]
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=data, headers=h)
            r = conn.getresponse()
            payload = r.read()
        except (OSError, http.client.HTTPException):
            return 0, None
        finally:
            conn.close()
        try:
            return r.status, json.loads(payload) if payload[:1] in (b"{", b"[") else payload.decode()
        except ValueError:
            return r.status, payload.decode(errors="replace")

    def metric(self, sample):
        """The value of one exposition line (`name{labels}`), 0.0 when absent, None when
        /metrics did not answer."""
        status, text = self.request("GET", "/metrics", None)
        if status != 200:
            return None
        for line in text.splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return 0.0


def tls_prerequisites(bin_dir):
    """None when a TLS test can run (openssl, sluice-controld and sluicectl there), else why
    not (the test then exits 77)."""
    if not shutil.which("openssl"):
        return "openssl not installed"
    for b in ("sluice-controld", "sluicectl"):
        if not os.access(os.path.join(bin_dir, b), os.X_OK):
            return f"{bin_dir}/{b} not built"
    return None


def sim_auth(root):
    """sluice-fleet-sim's credential flags for the controllers of `root`: over TLS (ctl-ca.crt
    there) each simulated node gets a certificate minted from the node CA (its CN is its id);
    else the fleet node token."""
    if not os.path.exists(os.path.join(root, "ctl-ca.crt")):
        return ["--node-token-file", os.path.join(root, "node.token")]
    return ["--ca-file", os.path.join(root, "ctl-ca.crt"),
            "--node-ca-cert", os.path.join(root, "node-ca", "node-ca.crt"),
            "--node-ca-key", os.path.join(root, "node-ca", "node-ca.key")]


class Controller:
    """sluice-controld with its config in `root`: keys `keys` (NAME.pub/NAME.key, made by
    sluicectl keygen; "ministry" is the trusted issuer, "controller" signs snapshots), the four
    TOKENS hashed, node.token for the agents. `spawn` starts processes (tests that track them
    pass their own).

    TLS (default, issue 14): the controller serves HTTPS with a certificate from a throwaway CA
    (ctl-ca.crt, made with openssl) and has its own node CA (`sluicectl ca init`, node-ca/):
    nodes present client certificates (sim_auth() gives sluice-fleet-sim the flags that mint
    them) and the fleet node token is refused. tls=False: plain HTTP and the node token (for
    subclasses that set up TLS their own way).

    Store: SQLite (controld.db in root) unless `etcd` (an EtcdCluster) is given; then the store
    is that cluster under `prefix` (fresh by default), this replica named `replica`.
    add_replica(name) makes another controller of the same store: same root, keys, tokens and
    settings, its own port, config (controld-NAME.yaml) and log."""

    def __init__(self, root, bin_dir, src_dir, keys=("ministry", "controller"),
                 stale_after=20, canary_soak=0, spawn=popen,
                 etcd=None, prefix=None, replica="ctl-a", leader_lease=5, _keygen=True, tls=True):
        self.root = root
        self.bin = bin_dir
        self.src = src_dir
        self.port = free_port()
        self.tls = tls
        self.ca = os.path.join(root, "ctl-ca.crt") if tls else None
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._ssl = ssl.create_default_context(cafile=self.ca) if tls and os.path.exists(self.ca) else None
        self.proc = None
        self.spawn = spawn
        self.etcd = etcd
        self.prefix = (prefix or new_prefix(os.path.basename(root))) if etcd else None
        self.replica = replica if etcd else None
        self.settings = dict(keys=keys, stale_after=stale_after, canary_soak=canary_soak,
                             leader_lease=leader_lease)
        # The first replica keeps the historic file names (tests look at controld.log).
        self.config_name = "controld.yaml" if _keygen else f"controld-{replica}.yaml"
        self.log_name = "controld.log" if _keygen else f"controld-{replica}.log"
        if _keygen:
            if tls:
                controller_tls(root)
                self._ssl = ssl.create_default_context(cafile=self.ca)
                self.ctl(["ca", "init", "--out", "node-ca"])
            for name in keys:
                self.ctl(["keygen", "--public", f"{name}.pub", "--secret", f"{name}.key"])
            with open(os.path.join(root, "node.token"), "w") as f:
                f.write(TOKENS["node"])
        self._write_config()

    def _write_config(self):
        s = self.settings
        tokens = "\n".join(
            f"  - {{ name: {role}-user, role: {role}, sha256: {hashlib.sha256(t.encode()).hexdigest()} }}"
            for role, t in TOKENS.items())
        canary = (f"canary: {{ labels: {{ group: canary }}, soak_seconds: {s['canary_soak']} }}\n"
                  if s["canary_soak"] else "")
        if self.etcd:
            store = (f"store:\n  kind: etcd\n  endpoints: [{', '.join(self.etcd.endpoints())}]\n"
                     f"  prefix: {self.prefix}\n  replica: {self.replica}\n"
                     f"  leader_lease_seconds: {s['leader_lease']}\n"
                     + self.etcd.store_tls_yaml(self.root))  # over TLS by default (issue 14)
        else:
            store = "database: controld.db\n"
        with open(os.path.join(self.root, self.config_name), "w") as f:
            f.write(f"""listen: 127.0.0.1:{self.port}
{store}apps_dir: {self.src}/config/apps
signing_key: controller.key
issuers:
  - {{ name: ministry-of-communications, public_key: ministry.pub }}
approvals_required: 1
stale_after_seconds: {s['stale_after']}
max_wait_seconds: 5
{canary}inventory: {{ sites: [sim], labels: {{ group: [canary, main] }} }}
tokens:
{tokens}
""")
            if self.tls:
                f.write("tls: { cert: ctl.crt, key: ctl.key }\n"
                        "node_ca: { cert: node-ca/node-ca.crt, key: node-ca/node-ca.key }\n")

    def add_replica(self, replica):
        """Another sluice-controld on the same etcd store and prefix (not started)."""
        if not self.etcd:
            raise ValueError("replicas need the etcd store")
        s = self.settings
        r = Controller(self.root, self.bin, self.src, keys=s["keys"], stale_after=s["stale_after"],
                       canary_soak=s["canary_soak"],
                       spawn=self.spawn, etcd=self.etcd, prefix=self.prefix, replica=replica,
                       leader_lease=s["leader_lease"], _keygen=False, tls=self.tls)
        return r

    def sim_auth(self):
        return sim_auth(self.root) if self.tls else ["--node-token-file",
                                                     os.path.join(self.root, "node.token")]

    def ctl(self, args, role=None, expect=0):
        cmd = ([os.path.join(self.bin, "sluicectl"), "--controller", self.url]
               + (["--ca", self.ca] if self.tls else []) + args)
        env = dict(os.environ)
        env.pop("SLUICE_TOKEN", None)
        if role:
            env["SLUICE_TOKEN"] = TOKENS[role]
        p = subprocess.run(cmd, cwd=self.root, env=env, capture_output=True, text=True, timeout=60)
        if expect is not None and p.returncode != expect:
            print(f"  sluicectl {' '.join(args)} -> {p.returncode}\n  stdout: {p.stdout}\n  stderr: {p.stderr}")
        return p

    def start(self, timeout=15):
        with open(os.path.join(self.root, self.log_name), "a") as log:
            self.proc = self.spawn([os.path.join(self.bin, "sluice-controld"), "--config",
                                    self.config_name], cwd=self.root, stdout=log, stderr=log)
        what = f"controller {self.replica} answers" if self.replica else "controller answers"
        return check(wait_for(lambda: self.get("/v1/health", None) is not None, timeout),
                     f"{what} on /v1/health")

    def kill(self, sig=signal.SIGKILL):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=20)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=1500):
        try:
            with open(os.path.join(self.root, self.log_name)) as f:
                return f.read()[-n:]
        except OSError:
            return ""

    def request(self, method, path, role="viewer", body=None, timeout=10):
        """(status, parsed body or text); status 0 when the controller did not answer."""
        req = urllib.request.Request(self.url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
        if role:
            req.add_header("Authorization", "Bearer " + TOKENS[role])
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self._ssl) as r:
                data, status = r.read(), r.status
        except urllib.error.HTTPError as e:
            data, status = e.read(), e.code
        except (urllib.error.URLError, ConnectionError, OSError):
            return 0, None
        try:
            return status, json.loads(data) if data[:1] in (b"{", b"[") else data.decode()
        except ValueError:
            return status, data.decode(errors="replace")

    def get(self, path, role="viewer"):
        status, body = self.request("GET", path, role)
        return body if status == 200 else None

    def enroll_nodes(self, nodes):
        """Puts [(node id, {labels})...] in the controller's inventory (issue 14: only enrolled
        nodes are served, with the inventory's labels), 250 per request (under the route's body limit), as an engineer."""
        for i in range(0, len(nodes), 250):
            chunk = [{"node": n, "labels": labels} for n, labels in nodes[i:i + 250]]
            status, body = self.request("POST", "/v1/inventory", role="engineer", body={"nodes": chunk})
            if status != 200:
                raise RuntimeError(f"enrolling {len(chunk)} nodes: HTTP {status} {body}")

    def enroll_sim(self, nodes, prefix="sim-", labels=None, canary=0):
        """The nodes sluice-fleet-sim --nodes N --node-prefix P --labels L --canary C runs."""
        labels = labels if labels is not None else {"site": "sim"}
        self.enroll_nodes([(f"{prefix}{i:04d}", {**labels, **({"group": "canary"} if i <= canary else {})})
                           for i in range(1, nodes + 1)])

    def node_list(self):
        return (self.get("/v1/nodes") or {}).get("nodes", [])

    def metric(self, sample):
        """The value of one exposition line (`name{labels}`) of /metrics, 0.0 when absent, None
        when the controller did not answer."""
        status, text = self.request("GET", "/metrics", role=None)
        if status != 200 or not isinstance(text, str):
            return None
        for line in text.splitlines():
            if line.startswith(sample + " "):
                return float(line.split()[-1])
        return 0.0

    def rollout(self):
        return self.get("/v1/rollout") or {}

    def audit_records(self):
        return (self.get("/v1/audit?limit=100000") or {}).get("records", [])

    def tamper_audit(self, event="directive.approved"):
        """Changes one stored audit record of `event` behind the controller's back (the SQLite
        file, or the record's etcd key). Returns its seq, or None when there was none.
        SQLite: stop the controller first (the test reads the file with --db afterwards)."""
        if self.etcd:
            return _tamper_etcd_audit(self.etcd, self.prefix, event)
        import sqlite3
        db = sqlite3.connect(os.path.join(self.root, "controld.db"))
        row = db.execute("SELECT seq, detail FROM audit WHERE event = ? LIMIT 1", (event,)).fetchone()
        if row:
            seq, detail = row
            db.execute("UPDATE audit SET detail = ? WHERE seq = ?", (_edit_text(detail), seq))
            db.commit()
        db.close()
        return row[0] if row else None


def _edit_text(text):
    """One byte changed ("1" -> "2"), or one appended when there is no "1"."""
    return text.replace("1", "2", 1) if "1" in text else text + " "


def _tamper_etcd_audit(etcd, prefix, event):
    """Rewrites the value of the first PREFIX/audit/<seq> record of `event` with etcdctl put:
    its detail (or, whatever the stored shape, one byte of the value) changed."""
    for key in etcd.keys(prefix + "/audit/"):
        value = etcd.get(key)
        if value is None:
            continue
        try:
            rec = json.loads(value)
        except ValueError:
            rec = None
        if isinstance(rec, dict):
            if rec.get("event") != event:
                continue
            if isinstance(rec.get("detail"), str):
                rec["detail"] = _edit_text(rec["detail"])
            elif isinstance(rec.get("detail"), dict):
                rec["detail"]["tampered"] = True
            else:
                rec["actor"] = str(rec.get("actor", "")) + "x"
            edited = json.dumps(rec, separators=(",", ":"))
        elif event in value:
            edited = _edit_text(value)
        else:
            continue
        seq = int(key.rsplit("/", 1)[1])
        return seq if etcd.put(key, edited) else None
    return None
