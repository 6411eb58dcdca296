// Fuzzes the controller's request handling up to the body (issue 14): arbitrary bytes as a
// request head through the server's own path (Beast's parser, target decoding, routing) and the
// API's real admission (bearer tokens, node certificates, rate limits, role, per-route body
// limits), on a real controller over SQLite in a temp dir. Nothing may crash, throw out, or
// answer other than a refusal the server documents; an admitted head's body limit stays within
// the server's ceiling.
//
// The first input byte picks the caller: bits 0-2 a bearer token (none, a guess, or one of the
// four roles' tokens, inserted after the request line), bit 3 a verified client certificate
// (CN from the next byte), bits 4-5 the remote address. The rest is the head.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "control/api/http_api.hpp"
#include "control/api/http_server.hpp"
#include "control/store/store.hpp"

namespace api = sluice::control::api;
namespace ctl = sluice::control::controller;
namespace crypto = sluice::control::crypto;
namespace store = sluice::control::store;

namespace {

const char* const tokens[] = {"tok-ministry", "tok-engineer", "tok-viewer", "tok-node"};

struct world {
  std::filesystem::path dir;
  ctl::system_clock clk;
  std::unique_ptr<store::store> st;
  std::unique_ptr<ctl::controller> core;
  std::unique_ptr<api::http_api> routes;
  std::unique_ptr<api::http_server> server;
  api::server_options opt;

  world() {
    // tmpfs when there is one: a forbidden write is audited (an fsync) on a blocking thread.
    const std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string tmpl = (base / "sluice-fuzz-http-XXXXXX").string();
    dir = ::mkdtemp(tmpl.data());
    st = store::open_sqlite_store((dir / "c.db").string());
    ctl::controller_config cfg;
    cfg.issuers.push_back({"ministry", crypto::generate_key_pair()->pub});
    cfg.signing_key = crypto::generate_key_pair()->sec;
    core = std::make_unique<ctl::controller>(cfg, *st, clk);
    routes = std::make_unique<api::http_api>(
        *core, std::vector<api::token_entry>{{"moc", ctl::role::ministry, api::token_hash(tokens[0])},
                                             {"eng", ctl::role::engineer, api::token_hash(tokens[1])},
                                             {"noc", ctl::role::viewer, api::token_hash(tokens[2])},
                                             {"fleet", ctl::role::node, api::token_hash(tokens[3])}});
    opt.port = 0;
    opt.max_header_bytes = 4096;
    server = std::make_unique<api::http_server>(opt);
    routes->attach(*server);
  }
  ~world() {
    server.reset();  // joins the blocking threads (audits of forbidden writes)
    routes.reset();
    core.reset();
    st.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

world& the_world() {
  static world w;
  return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  world& w = the_world();
  if (size < 2) return 0;
  const std::uint8_t caller = data[0];
  std::string head(reinterpret_cast<const char*>(data) + 2, size - 2);

  const unsigned token = caller & 7u;
  if (token != 0) {
    const std::string value = token == 1 ? "guess" : token <= 5 ? tokens[token - 2] : "";
    const std::string line = "Authorization: Bearer " + value + "\r\n";
    const auto eol = head.find("\r\n");
    if (eol != std::string::npos) head.insert(eol + 2, line);
  }
  api::peer_identity peer;
  if ((caller & 8u) != 0) {
    peer.verified = true;
    static const char* const names[] = {"n1", "edge-1", "", "n2"};
    peer.common_name = names[data[1] & 3u];
    peer.fingerprint = std::string(64, 'a');
  }
  static const char* const addresses[] = {"127.0.0.1", "10.0.0.1", "::1", ""};
  const api::head_verdict v = w.server->inspect_head(head, addresses[(caller >> 4) & 3u], peer);

  switch (v.status) {
    case 0:
      if (v.route.empty() || v.body_limit > w.opt.max_body_bytes) __builtin_trap();
      if (v.route.rfind("GET ", 0) == 0 && v.body_limit != 0) __builtin_trap();  // GETs read no body
      break;
    case 400: case 401: case 403: case 404: case 405: case 413: case 429: case 431:
      break;
    default:
      __builtin_trap();  // 500: an admission threw
  }

  // The target decoder on its own: a target without escapes decodes to itself.
  std::string path;
  std::map<std::string, std::string> params;
  const std::string_view target(head.data(), std::min<std::size_t>(head.size(), 512));
  api::parse_target(target, path, params);
  if (target.find_first_of("%?") == std::string_view::npos && path != target) __builtin_trap();
  return 0;
}
