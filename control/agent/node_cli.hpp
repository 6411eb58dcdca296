#pragma once
// The command line every enforcing node binary beside the dataplane shares (sluice-rtbh,
// sluice-rpz): the controller and identity options, their checks, what they resolve to (the
// transport's configuration, labels, the controller's key), and the signal mask the node's main
// thread waits on. Header-only: only the mains include it, and they link CLI11.

#include <signal.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "control/agent/agent.hpp"
#include "control/agent/http_transport.hpp"
#include "control/crypto/minisign.hpp"

namespace sluice::control::agent {

struct node_options {
  std::vector<std::string> controllers;
  std::string controller_key;
  std::string node_id;
  std::string labels;
  std::string node_token_file;
  std::string node_cert;
  std::string node_key;
  std::string controller_ca;
  std::string state_dir;
};

inline void add_node_options(CLI::App& cli, node_options& o) {
  cli.add_option("--controller", o.controllers,
                 "controller URL (https://HOST:PORT); repeat for replicas, tried in order");
  cli.add_option("--controller-key", o.controller_key,
                 "the controller's minisign public key (snapshot signatures)");
  cli.add_option("--node-id", o.node_id, "this node's id (and the node label of metrics)");
  cli.add_option("--labels", o.labels, "node labels, k=v,k=v");
  cli.add_option("--node-token-file", o.node_token_file,
                 "file holding this node's bearer token (optional with --node-cert)");
  cli.add_option("--node-cert", o.node_cert,
                 "this node's client certificate, PEM (CN = --node-id; sluicectl nodes enroll)");
  cli.add_option("--node-key", o.node_key, "the key of --node-cert, PEM");
  cli.add_option("--controller-ca", o.controller_ca,
                 "CA certificates that vouch for the controller's (https://)");
  cli.add_option("--state-dir", o.state_dir, "directory for the last good snapshot");
}

// A whole file, or nullopt when it cannot be read.
inline std::optional<std::string> read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream s;
  s << in.rdbuf();
  if (!in.good() && !in.eof()) return std::nullopt;
  return s.str();
}

// What controller-mode options resolve to.
struct node_identity {
  label_map labels;
  std::optional<crypto::public_key> controller_key;
  http_transport_config transport;

  // The agent's configuration for this node (health and the rest are the caller's).
  [[nodiscard]] agent_config agent_config_for(const node_options& o) const {
    agent_config ac;
    ac.node_id = o.node_id;
    ac.labels = labels;
    ac.controller_key = *controller_key;
    ac.state_dir = o.state_dir;
    return ac;
  }
};

// Checks the options of controller mode and resolves them into `out`. Returns "" or the usage
// error to print.
inline std::string resolve_node_options(const node_options& o, node_identity& out) {
  if (o.node_id.empty() || o.controller_key.empty() || o.state_dir.empty()) {
    return "--controller needs --node-id, --controller-key and --state-dir";
  }
  if (!valid_node_id(o.node_id)) return "--node-id: invalid node id";
  std::string error;
  std::optional<label_map> labels = parse_labels(o.labels, error);
  if (!labels) return "--labels: " + error;
  const std::optional<std::string> key_text = read_text_file(o.controller_key);
  if (!key_text) return "--controller-key " + o.controller_key + ": cannot read";
  out.controller_key = crypto::parse_public_key(*key_text, &error);
  if (!out.controller_key) return "--controller-key " + o.controller_key + ": " + error;
  out.labels = *labels;
  out.transport.urls = o.controllers;
  out.transport.node_id = o.node_id;
  out.transport.labels = *labels;
  return set_credentials(out.transport, o.node_token_file, o.node_cert, o.node_key,
                         o.controller_ca);
}

// Blocks SIGHUP, SIGTERM and SIGINT on the calling thread and returns them, for the main thread
// to take with sigtimedwait. Call before starting any thread: they inherit the mask, so none of
// them gets these signals.
inline sigset_t block_node_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

}  // namespace sluice::control::agent
