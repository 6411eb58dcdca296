#pragma once
// sluice-controld's configuration file (YAML) -> plain structs, once, at start-up.
//
//   listen: 127.0.0.1:9480
//   database: /var/lib/sluice/controld.db
//   apps_dir: /etc/sluice/apps                 # app profiles (NAME.yaml)
//   signing_key: /etc/sluice/controller.key    # the controller's secret key (snapshots)
//   issuers:                                   # keys whose directives are accepted
//     - { name: ministry-of-communications, public_key: /etc/sluice/ministry.pub }
//   approvals_required: 1                      # distinct engineers; 0 = no approval step
//   stale_after_seconds: 90
//   canary: { labels: { group: canary }, soak_seconds: 10 }   # optional
//   inventory: { sites: [a, b], labels: { region: [north, south] } }
//   tokens:                                    # SHA-256 of each bearer token, never the token
//     - { name: moc-1, role: ministry, sha256: 9f86d0... }
//   server:                                    # optional; the defaults shown (issues 13, 14)
//     io_threads: 1                            # event loop: node feed, TLS, parsing
//     api_threads: 2                           # operators' requests (they wait on the store)
//     max_connections: 20000                   # more are closed at once (nodes + operators)
//     max_body_bytes: 8388608                  # ceiling over every route's body limit (413)
//     max_document_bytes: 4194304              # POST /v1/directives body (413)
//     header_timeout: 10                       # seconds for a request head, from its first byte
//     body_timeout: 30                         # seconds for a body, from the end of its head
//     rate_limit:                              # token buckets (429): rate a second, burst
//       per_token: { rate: 100, burst: 200 }   # per operator token, per node id
//       per_address: { rate: 20, burst: 100 }  # per address, requests without a valid credential
//   # http_threads: obsolete (one thread per long poll, before issue 13); read and ignored
//   tls:                                       # optional; SIGHUP re-reads the three files
//     cert: /etc/sluice/tls.crt
//     key: /etc/sluice/tls.key
//     client_ca: /etc/sluice/node-ca.crt       # optional: verify client certificates (nodes)
//   store:                                     # optional; default SQLite at `database`
//     kind: etcd                               # sqlite | etcd (replicated controllers)
//     endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379, https://10.0.0.3:2379]
//     prefix: /sluice                          # every key under it
//     replica: ctl-a                           # this replica's name (default: listen address)
//     leader_lease_seconds: 5                  # 2..60; leadership moves within about this
//     tls:                                     # issue 14: required by https:// endpoints,
//       ca: /etc/sluice/etcd-ca.crt            #   refused with http:// ones; verifies members
//       cert: /etc/sluice/etcd-client.crt      # optional, with key: the controller's client
//       key: /etc/sluice/etcd-client.key       #   certificate (etcd --client-cert-auth)
//   protected:                                 # issue 8: never blocked without an override
//     - { name: isp-resolvers, prefixes: [192.0.2.53/32], domains: [] }
//   approval:
//     overrides_required: 2                    # engineers consenting to overlap protection
//     require_impact_report_within_seconds: 0  # > 0: address blocks need a fresh report
//   impact: { retention_seconds: 604800 }
//   limits:                                    # submitted directives (issue 14)
//     directive_bytes: 4194304                 # larger documents are refused (document_too_large)
//     directive_entries: 200000                # YAML nodes, each target one (too_many_entries)
//   node_ca:                                   # issue 14: node identity (mutual TLS)
//     cert: /etc/sluice/node-ca.crt            # nodes' client certificates chain to it
//     key: /etc/sluice/node-ca.key             # optional: lets `sluicectl nodes enroll` sign CSRs
//     certificate_days: 825                    # validity of certificates issued here
//   nodes:                                     # optional inventory kept in config management:
//     - { id: edge-1, labels: { site: msk-1, group: canary } }   # enrolled at start
//   nodes_file: /etc/sluice/nodes.yaml         # optional: the same list in a file of its own
//   console:                                   # issue 15: the operators' web console, /ui/
//     enabled: true                            # false: no console files, no /ui/
//     assets: /usr/share/sluice/console        # default: beside the binary (see below)
//     session_idle_seconds: 1800               # a browser session ends after this idle,
//     session_max_seconds: 43200               #   and this long after sign-in in any case
//
// Relative paths are relative to the config file. Unknown keys are errors. Throws
// config_error ("file:line:column: message") on any problem, including unreadable keys.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <vector>

#include "control/api/http_api.hpp"
#include "control/controller/controller.hpp"
#include "control/store/etcd_store.hpp"

namespace sluice::control::api {

struct config_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class store_kind : std::uint8_t { sqlite, etcd };

struct daemon_config {
  std::string listen = "127.0.0.1:9480";
  std::filesystem::path database = "controld.db";
  store_kind backend = store_kind::sqlite;
  store::etcd_options etcd;  // store_kind == etcd
  std::filesystem::path apps_dir = "apps";
  std::vector<token_entry> tokens;
  unsigned io_threads = 1;
  unsigned api_threads = 2;
  std::size_t max_connections = 20000;
  std::size_t max_body_bytes = 8 * 1024 * 1024;
  std::chrono::seconds header_timeout{10};
  std::chrono::seconds body_timeout{30};
  api_limits api;  // per-route body limits (max_document_bytes) and rate limits
  bool obsolete_http_threads = false;  // the config still says http_threads (ignored)
  std::filesystem::path tls_cert;
  std::filesystem::path tls_key;
  std::filesystem::path tls_client_ca;  // optional
  // The node CA's certificate (node_ca.cert; empty when none): what the server verifies nodes'
  // client certificates against. The CA itself (with its key, if any) is core.node_ca.
  std::filesystem::path node_ca_cert;
  // The operators' console (issue 15). assets empty: sluice-controld looks beside its binary
  // (BUILD/console, PREFIX/share/sluice/console).
  bool console_enabled = true;
  console_config console;
  controller::controller_config core;
};

// `base` resolves relative paths; `name` prefixes error messages.
[[nodiscard]] daemon_config load_daemon_config(std::istream& in, const std::filesystem::path& base,
                                               const std::string& name = "config");
[[nodiscard]] daemon_config load_daemon_config_file(const std::filesystem::path& path);

}  // namespace sluice::control::api
