#pragma once
// sluice-dataplane, the application: command line, EAL and port bring-up, worker launch, and
// the control loop on the main lcore (software dispatch when ports lack queues, policy reloads,
// watchdog, stats for the Prometheus exporter, offline drain detection). See dataplane/README.md.
//
// Threads: everything here runs on the main thread, except the management endpoint's handlers
// (cpp-httplib threads), which talk to the control side through policy_holder (thread-safe) and
// a status snapshot under a mutex, and, with --controller, the node agent's thread (it applies
// snapshots through policy_holder too).

#include <cstdint>
#include <string>
#include <vector>

namespace sluice::engine {

struct app_options {
  std::string mode = "inline";  // inline | mirror
  int subscriber_port = -1;
  int internet_port = -1;
  int mirror_port = -1;
  int inject_port = -1;
  std::string policy;           // empty: empty policy (forward everything)
  std::string apps;             // empty: "apps" beside the policy file
  std::string metrics = "127.0.0.1:9469";  // "none" disables
  std::string mgmt = "127.0.0.1:9470";     // "none" disables
  bool offline = false;
  std::string stats_json;       // offline: "" = stdout
  std::string node_id;
  // Controller mode (node agent, control/agent): --controller-key and --state-dir are required
  // once --controller is given, and a credential (--node-cert/--node-key for mutual TLS, or
  // --node-token-file); --policy then only bootstraps until the first snapshot.
  std::vector<std::string> controllers;  // URLs, tried in order on failure
  std::string labels;                    // "k=v,k=v"
  std::string controller_key;            // controller's minisign public key file
  std::string state_dir;                 // persisted last good snapshot
  std::string node_token_file;           // bearer token (role node); optional with a certificate
  std::string node_cert;                 // this node's client certificate (CN = node id), PEM
  std::string node_key;                  // its private key, PEM
  std::string controller_ca;             // CA certificates that vouch for the controller, PEM
  bool no_checksum_check = false;
  bool test_hooks = false;
  std::uint32_t flow_table_size = 1u << 18;
  std::uint32_t reassembly_buffers = 4096;
  std::uint32_t reassembly_buffer_bytes = 16384;
  std::uint32_t frag_table_size = 4096;
  std::uint32_t idle_timeout = 120;
  std::uint16_t burst = 32;
  std::uint32_t mbufs = 0;      // 0: sized from queues, rings and workers
  std::uint32_t mbuf_size = 0;  // data room; 0: 2048 live, 10240 offline (endpoint captures)
  // Impact windows (issue 8): every N seconds the per-rule name sketches are drained; with
  // --controller the window is POSTed to /v1/nodes/{node}/impact. 0: sketches off entirely.
  std::uint32_t impact_interval = 30;
};

// Exit codes.
inline constexpr int exit_ok = 0;
inline constexpr int exit_runtime = 1;   // DPDK or a device failed at run time
inline constexpr int exit_usage = 2;     // bad command line, bad policy, bad port

// Parses and validates our options (argv[0] is the program name, then what followed "--").
// Returns -1 to continue, or an exit code (0 after --help) with the message already printed.
[[nodiscard]] int parse_app_options(int argc, char** argv, app_options& out);

// Runs the node. `eal_argv` is argv[0] plus the EAL options. Returns the process exit code.
[[nodiscard]] int run_app(std::vector<char*> eal_argv, const app_options& opts);

// "host:port" with a port number; false otherwise. "none" is handled by the caller.
[[nodiscard]] bool split_listen_address(const std::string& addr, std::string& host,
                                        std::uint16_t& port);

}  // namespace sluice::engine
