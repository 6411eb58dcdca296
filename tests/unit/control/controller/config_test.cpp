// sluice-controld's config: values and defaults, and every refusal with its line and column.
#include "control/api/config.hpp"

#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/unit/support/openssl_certs.hpp"

namespace api = sluice::control::api;
namespace crypto = sluice::control::crypto;

namespace {

struct key_dir {
  std::filesystem::path path;
  key_dir() {
    char tmpl[] = "/tmp/sluice-cfg-XXXXXX";
    path = mkdtemp(tmpl);
    const auto k = *crypto::generate_key_pair();
    std::ofstream(path / "c.key") << crypto::format_secret_key(k.sec);
    std::ofstream(path / "m.pub") << crypto::format_public_key(k.pub);
    std::filesystem::create_directory(path / "apps");
    std::ofstream(path / "apps" / "telegram.yaml")
        << "name: telegram\nprefixes: [91.108.4.0/22]\ndomains: [t.me]\n";
  }
  ~key_dir() { std::filesystem::remove_all(path); }
};

const std::string hash64(64, 'a');

std::string base_config() {
  return "signing_key: c.key\n"
         "issuers:\n  - { name: moc, public_key: m.pub }\n"
         "tokens:\n  - { name: alice, role: engineer, sha256: " + hash64 + " }\n";
}

}  // namespace

TEST_CASE("a minimal config loads with its defaults; the full one with its values") {
  key_dir d;
  std::istringstream in(base_config());
  const auto c = api::load_daemon_config(in, d.path);
  CHECK(c.listen == "127.0.0.1:9480");
  CHECK(c.database == d.path / "controld.db");
  CHECK(c.core.approvals_required == 1);
  CHECK(c.core.issuers.size() == 1);
  CHECK(c.core.issuers[0].issuer == "moc");
  CHECK(c.core.apps.contains("telegram"));
  REQUIRE(c.tokens.size() == 1);
  CHECK(c.tokens[0].r == sluice::control::controller::role::engineer);

  std::istringstream full(base_config() +
                          "listen: 0.0.0.0:1\napprovals_required: 2\nstale_after_seconds: 7\n"
                          "canary: { labels: { group: canary }, soak_seconds: 3 }\n"
                          "inventory: { sites: [a], labels: { region: [n, s] } }\n");
  const auto f = api::load_daemon_config(full, d.path);
  CHECK(f.listen == "0.0.0.0:1");
  CHECK(f.core.approvals_required == 2);
  CHECK(f.core.stale_after_s == 7);
  CHECK(f.core.canary_labels.at("group") == "canary");
  CHECK(f.core.canary_soak_s == 3);
  CHECK(f.core.known_sites.contains("a"));
  CHECK(f.core.known_labels.at("region").size() == 2);
  CHECK(f.backend == api::store_kind::sqlite);
  CHECK_FALSE(f.core.replicated);

  std::istringstream issue7_8(
      base_config() +
      "store: { kind: etcd, endpoints: [http://127.0.0.1:2379, http://127.0.0.1:2479], "
      "prefix: /isp, replica: ctl-b, leader_lease_seconds: 4 }\n"
      "protected:\n  - { name: resolvers, prefixes: [192.0.2.53/32], domains: [gov.example] }\n"
      "approval: { overrides_required: 3, require_impact_report_within_seconds: 900 }\n"
      "impact: { retention_seconds: 3600 }\n");
  const auto e = api::load_daemon_config(issue7_8, d.path);
  CHECK(e.backend == api::store_kind::etcd);
  CHECK(e.core.replicated);
  CHECK(e.etcd.endpoints.size() == 2);
  CHECK(e.etcd.prefix == "/isp");
  CHECK(e.etcd.replica == "ctl-b");
  CHECK(e.etcd.leader_ttl == std::chrono::seconds(4));
  CHECK(e.etcd.node_ttl == std::chrono::seconds(90));
  CHECK(e.core.max_nodes_per_commit == 2000);
  REQUIRE(e.core.protected_targets.entries.size() == 1);
  CHECK(e.core.protected_targets.entries[0].name == "resolvers");
  CHECK(e.core.protected_targets.entries[0].domains.size() == 1);
  CHECK(e.core.overrides_required == 3);
  CHECK(e.core.impact_max_age_s == 900);
  CHECK(e.core.impact_retention_s == 3600);

  // Issue 14: etcd over TLS, the files relative to the config's directory.
  std::istringstream etcd_tls(base_config() +
                              "store: { kind: etcd, endpoints: [https://127.0.0.1:2379], "
                              "tls: { ca: pki/ca.crt, cert: pki/ctl.crt, key: /k/ctl.key } }\n");
  const auto t = api::load_daemon_config(etcd_tls, d.path);
  CHECK(t.etcd.tls_ca == (d.path / "pki/ca.crt").string());
  CHECK(t.etcd.tls_cert == (d.path / "pki/ctl.crt").string());
  CHECK(t.etcd.tls_key == "/k/ctl.key");
  CHECK(e.etcd.tls_ca.empty());

  std::istringstream sqlite_path(base_config() + "store: { kind: sqlite, path: x/y.db }\n");
  CHECK(api::load_daemon_config(sqlite_path, d.path).database == d.path / "x/y.db");

  // Issue 13: the event-driven server's settings; http_threads still loads, flagged obsolete.
  std::istringstream server(base_config() +
                            "server: { io_threads: 2, api_threads: 3, max_connections: 500, "
                            "max_body_bytes: 65536 }\nhttp_threads: 64\n");
  const auto sv = api::load_daemon_config(server, d.path);
  CHECK(sv.io_threads == 2);
  CHECK(sv.api_threads == 3);
  CHECK(sv.max_connections == 500);
  CHECK(sv.max_body_bytes == 65536);
  CHECK(sv.obsolete_http_threads);
  CHECK_FALSE(f.obsolete_http_threads);
  CHECK(f.io_threads == 1);  // the default
  CHECK(sv.api.max_document_bytes == 65536);  // the default (4 MiB) under the ceiling

  // Issue 14: per-route caps, deadlines, rate limits, client certificates.
  CHECK(f.api.max_document_bytes == 4u << 20);
  CHECK(f.header_timeout == std::chrono::seconds(10));
  CHECK(f.body_timeout == std::chrono::seconds(30));
  CHECK(f.api.per_token.rate == 100);
  CHECK(f.api.per_address.burst == 100);
  std::istringstream hardened(base_config() +
                              "server:\n  max_document_bytes: 1048576\n  header_timeout: 5\n  body_timeout: 60\n"
                              "  rate_limit: { per_token: { rate: 2.5, burst: 10 }, per_address: { rate: 0.5 } }\n"
                              "tls: { cert: t.crt, key: t.key, client_ca: ca.crt }\n");
  const auto h = api::load_daemon_config(hardened, d.path);
  CHECK(h.api.max_document_bytes == 1048576);
  CHECK(h.header_timeout == std::chrono::seconds(5));
  CHECK(h.body_timeout == std::chrono::seconds(60));
  CHECK(h.api.per_token.rate == 2.5);
  CHECK(h.api.per_token.burst == 10);
  CHECK(h.api.per_address.rate == 0.5);
  CHECK(h.api.per_address.burst == 100);  // the default
  CHECK(h.tls_client_ca == d.path / "ca.crt");
  CHECK(h.tls_cert == d.path / "t.crt");
}

TEST_CASE("config refusals say where and why") {
  key_dir d;
  struct row {
    const char* what;
    std::string text;
    const char* where;  // "line:column"
    const char* says;
  };
  const row rows[] = {
      {"unknown key", base_config() + "listne: x\n", "config:6:1", "unknown key 'listne'"},
      {"bad role", "signing_key: c.key\nissuers:\n  - { name: moc, public_key: m.pub }\n"
                   "tokens:\n  - { name: a, role: admin, sha256: " + hash64 + " }\n",
       "config:5:22", "role must be"},
      {"token in clear", "signing_key: c.key\nissuers:\n  - { name: moc, public_key: m.pub }\n"
                         "tokens:\n  - { name: a, role: viewer, sha256: secret }\n",
       "config:5:38", "64 lowercase hex"},
      {"missing key file", "signing_key: nope.key\nissuers:\n  - { name: moc, public_key: m.pub }\n"
                           "tokens: []\n",
       "nope.key", "cannot read"},
      {"public key is not a key", "signing_key: c.key\nissuers:\n  - { name: moc, public_key: c.key }\n"
                                  "tokens: []\n",
       "config:3:30", "c.key"},
      {"no issuers", "signing_key: c.key\ntokens: []\n", "config:1:1", "issuers"},
      {"negative number", base_config() + "stale_after_seconds: -5\n", "config:6:22",
       "non-negative"},
      {"server io_threads zero", base_config() + "server: { io_threads: 0 }\n", "config:6:23", "1..64"},
      {"server key unknown", base_config() + "server: { threads: 4 }\n", "config:6:11",
       "unknown key 'threads' in server"},
      {"document cap over the body ceiling", base_config() + "server: { max_body_bytes: 65536, max_document_bytes: 70000 }\n",
       "config:6:54", "must not exceed server.max_body_bytes"},
      {"header timeout zero", base_config() + "server: { header_timeout: 0 }\n", "config:6:27", "1..300"},
      {"rate zero", base_config() + "server: { rate_limit: { per_token: { rate: 0 } } }\n", "config:6:44",
       "rate must be"},
      {"rate limit key unknown", base_config() + "server: { rate_limit: { per_node: { rate: 1 } } }\n",
       "config:6:25", "unknown key 'per_node' in server.rate_limit"},
      {"tls key unknown", base_config() + "tls: { cert: a, key: b, ca: c }\n", "config:6:25",
       "unknown key 'ca' in tls"},
      {"inventory site outside the label charset", base_config() + "inventory: { sites: [\"a,b\"] }\n",
       "config:6:22", "must be 1-64 of [A-Za-z0-9_.-]"},
      {"unknown store kind", base_config() + "store: { kind: zookeeper }\n", "config:6:16",
       "store.kind must be sqlite or etcd"},
      {"etcd without endpoints", base_config() + "store: { kind: etcd }\n", "config:6:8",
       "store.endpoints"},
      {"etcd endpoint not a URL", base_config() + "store: { kind: etcd, endpoints: [h:1] }\n",
       "config:6:34", "not an http(s):// URL"},
      {"etcd prefix with trailing slash",
       base_config() + "store: { kind: etcd, endpoints: [http://127.0.0.1:2379], prefix: /s/ }\n",
       "config:6:66", "store.prefix"},
      {"etcd key on sqlite", base_config() + "store: { kind: sqlite, prefix: /s }\n",
       "config:6:32", "store.prefix is for kind etcd"},
      {"etcd https without store.tls",
       base_config() + "store: { kind: etcd, endpoints: [https://127.0.0.1:2379] }\n",
       "config:6:34", "is https:// but store.tls (its ca) is missing"},
      {"etcd store.tls with an http endpoint",
       base_config() + "store: { kind: etcd, endpoints: [https://a:1, http://b:1], tls: { ca: ca.crt } }\n",
       "config:6:47", "'http://b:1' is http:// but store.tls is set"},
      {"etcd store.tls without ca",
       base_config() + "store: { kind: etcd, endpoints: [https://a:1], tls: { cert: c.crt, key: c.key } }\n",
       "config:6:53", "store.tls needs ca"},
      {"etcd store.tls cert without key",
       base_config() + "store: { kind: etcd, endpoints: [https://a:1], tls: { ca: ca.crt, cert: c.crt } }\n",
       "config:6:53", "cert and key together"},
      {"etcd store.tls key unknown",
       base_config() + "store: { kind: etcd, endpoints: [https://a:1], tls: { ca: a, client_ca: b } }\n",
       "config:6:62", "unknown key 'client_ca' in store.tls"},
      {"store.tls on sqlite", base_config() + "store: { kind: sqlite, tls: { ca: a } }\n",
       "config:6:29", "store.tls is for kind etcd"},
      {"lease too short",
       base_config() + "store: { kind: etcd, endpoints: [http://a:1], leader_lease_seconds: 1 }\n",
       "config:6:69", "2..60"},
      {"protected prefix invalid",
       base_config() + "protected:\n  - { name: cdn, prefixes: [10.0.0.0/33] }\n", "config:7:3",
       "protected 'cdn': invalid prefix '10.0.0.0/33'"},
      {"protected entry without name", base_config() + "protected:\n  - { prefixes: [10.0.0.0/8] }\n",
       "config:7:5", "needs a name"},
      {"overrides_required zero", base_config() + "approval: { overrides_required: 0 }\n",
       "config:6:33", "1..10"},
      {"console session too short", base_config() + "console: { session_idle_seconds: 5 }\n",
       "config:6:34", "console.session_idle_seconds must be 60..86400"},
      {"console enabled not a bool", base_config() + "console: { enabled: maybe }\n",
       "config:6:21", "console.enabled must be true or false"},
      {"console key unknown", base_config() + "console: { dir: x }\n", "config:6:12",
       "unknown key 'dir' in console"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    std::istringstream in(r.text);
    try {
      (void)api::load_daemon_config(in, d.path);
      FAIL("accepted");
    } catch (const api::config_error& e) {
      const std::string msg = e.what();
      CAPTURE(msg);
      CHECK(msg.find(r.where) != std::string::npos);
      CHECK(msg.find(r.says) != std::string::npos);
    }
  }
}

TEST_CASE("issue 14: node_ca, nodes and nodes_file") {
  key_dir d;
  sluice::test::cert_dir certs;
  certs.make_ca("ca");
  certs.make_ca("other");
  std::filesystem::copy_file(certs.file("ca.crt"), d.path / "ca.crt");
  std::filesystem::copy_file(certs.file("ca.key"), d.path / "ca.key");
  std::filesystem::copy_file(certs.file("other.key"), d.path / "other.key");
  std::ofstream(d.path / "nodes.yaml") << "- { id: sim-0001, labels: { site: sim } }\n"
                                          "- { id: sim-0002 }\n";

  std::istringstream in(base_config() +
                        "tls: { cert: tls.crt, key: tls.key }\n"
                        "node_ca: { cert: ca.crt, key: ca.key, certificate_days: 90 }\n"
                        "nodes:\n  - { id: edge-1, labels: { site: msk-1, group: canary } }\n"
                        "nodes_file: nodes.yaml\n");
  const auto c = api::load_daemon_config(in, d.path);
  REQUIRE(c.core.node_ca);
  CHECK(c.core.node_ca->can_issue());
  CHECK(c.core.node_certificate_days == 90);
  CHECK(c.node_ca_cert == d.path / "ca.crt");
  REQUIRE(c.core.nodes.size() == 3);
  CHECK(c.core.nodes[0].id == "edge-1");
  CHECK(c.core.nodes[0].labels.at("group") == "canary");
  CHECK(c.core.nodes[1].labels.at("site") == "sim");
  CHECK(c.core.nodes[2].labels.empty());

  std::istringstream isp(base_config() + "tls: { cert: tls.crt, key: tls.key }\nnode_ca: { cert: ca.crt }\n");
  const auto i = api::load_daemon_config(isp, d.path);
  REQUIRE(i.core.node_ca);
  CHECK_FALSE(i.core.node_ca->can_issue());
  std::istringstream none(base_config());
  CHECK(api::load_daemon_config(none, d.path).core.node_ca == nullptr);

  struct row {
    const char* what;
    std::string text;
    const char* says;
  };
  const row rows[] = {
      {"CA without cert", base_config() + "node_ca: { key: ca.key }\n", "node_ca needs cert"},
      {"CA key of another CA", base_config() + "node_ca: { cert: ca.crt, key: other.key }\n",
       "does not belong"},
      {"days out of range", base_config() + "node_ca: { cert: ca.crt, certificate_days: 0 }\n", "1..3650"},
      {"CA without TLS", base_config() + "node_ca: { cert: ca.crt }\n", "node_ca needs tls"},
      {"node id with a slash", base_config() + "nodes:\n  - { id: a/b }\n", "config:7:11"},
      {"label value with a comma", base_config() + "nodes:\n  - { id: a, labels: { s: \"x,y\" } }\n",
       "must be 1-64"},
      {"node twice", base_config() + "nodes:\n  - { id: a }\n  - { id: a }\n", "listed twice"},
      {"missing nodes file", base_config() + "nodes_file: none.yaml\n", "cannot read"},
  };
  for (const auto& r : rows) {
    CAPTURE(r.what);
    std::istringstream bad(r.text);
    try {
      (void)api::load_daemon_config(bad, d.path);
      FAIL("accepted");
    } catch (const api::config_error& e) {
      CHECK(std::string(e.what()).find(r.says) != std::string::npos);
    }
  }
}

TEST_CASE("issue 15: the console's section") {
  key_dir d;
  std::istringstream defaults(base_config());
  const auto c = api::load_daemon_config(defaults, d.path);
  CHECK(c.console_enabled);
  CHECK(c.console.assets.empty());  // sluice-controld looks beside its binary
  CHECK(c.console.session_idle == std::chrono::seconds(1800));
  CHECK(c.console.session_max == std::chrono::seconds(43200));
  std::istringstream set(base_config() +
                         "console: { enabled: false, assets: ui, session_idle_seconds: 600, "
                         "session_max_seconds: 3600 }\n");
  const auto s = api::load_daemon_config(set, d.path);
  CHECK_FALSE(s.console_enabled);
  CHECK(s.console.assets == d.path / "ui");
  CHECK(s.console.session_idle == std::chrono::seconds(600));
  CHECK(s.console.session_max == std::chrono::seconds(3600));
}
