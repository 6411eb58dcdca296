#include "control/api/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <sstream>
#include <type_traits>

#include "control/pki/pki.hpp"
#include "dataplane/match/policy_config.hpp"

namespace sluice::control::api {
namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw config_error(p.string() + ": cannot read");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

struct reader {
  std::string name;
  std::filesystem::path base;

  [[noreturn]] void fail(const YAML::Node& n, const std::string& message) const {
    const auto m = n.Mark();
    throw config_error(name + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) +
                       ": " + message);
  }
  void keys(const YAML::Node& n, const std::set<std::string>& allowed, const std::string& where) const {
    if (!n.IsMap()) fail(n, where + " must be a mapping");
    for (const auto& kv : n) {
      const auto k = kv.first.as<std::string>();
      if (!allowed.contains(k)) fail(kv.first, "unknown key '" + k + "' in " + where);
    }
  }
  std::string str(const YAML::Node& n, const std::string& what) const {
    if (!n.IsScalar()) fail(n, what + " must be a string");
    return n.as<std::string>();
  }
  std::uint64_t num(const YAML::Node& n, const std::string& what) const {
    try {
      if (!n.IsScalar()) fail(n, what + " must be a number");
      return n.as<std::uint64_t>();
    } catch (const YAML::Exception&) {
      fail(n, what + " must be a non-negative number");
    }
  }
  double real(const YAML::Node& n, const std::string& what) const {
    try {
      if (!n.IsScalar()) fail(n, what + " must be a number");
      return n.as<double>();
    } catch (const YAML::Exception&) {
      fail(n, what + " must be a number");
    }
  }
  std::filesystem::path path(const YAML::Node& n, const std::string& what) const {
    std::filesystem::path p = str(n, what);
    return p.is_absolute() ? p : base / p;
  }
  // Node label names and values (1-64 of [A-Za-z0-9_.-], as nodes send them and check them):
  // they go into snapshot scopes (fleet::snapshot_scope) unescaped.
  std::string label_token(const YAML::Node& n, const std::string& what) const {
    std::string v = str(n, what);
    const bool ok = !v.empty() && v.size() <= 64 && std::all_of(v.begin(), v.end(), [](unsigned char ch) {
      return std::isalnum(ch) != 0 || ch == '_' || ch == '.' || ch == '-';
    });
    if (!ok) fail(n, what + " '" + v + "' must be 1-64 of [A-Za-z0-9_.-]");
    return v;
  }
  std::map<std::string, std::string> string_map(const YAML::Node& n, const std::string& what) const {
    if (!n.IsMap()) fail(n, what + " must be a mapping");
    std::map<std::string, std::string> out;
    for (const auto& kv : n) out[str(kv.first, what)] = str(kv.second, what);
    return out;
  }
};

}  // namespace

daemon_config load_daemon_config(std::istream& in, const std::filesystem::path& base,
                                 const std::string& name) {
  const reader r{name, base};
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    throw config_error(name + ":" + std::to_string(e.mark.line + 1) + ":" +
                       std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  r.keys(root,
         {"listen", "database", "apps_dir", "signing_key", "issuers", "approvals_required",
          "stale_after_seconds", "canary", "inventory", "tokens", "http_threads", "server", "tls",
          "max_wait_seconds", "store", "protected", "approval", "impact", "limits", "node_ca",
          "nodes", "nodes_file", "console"},
         "the config");
  daemon_config c;
  if (root["listen"]) c.listen = r.str(root["listen"], "listen");
  if (root["database"]) c.database = r.path(root["database"], "database");
  else c.database = base / c.database;
  c.apps_dir = root["apps_dir"] ? r.path(root["apps_dir"], "apps_dir") : base / c.apps_dir;
  if (root["approvals_required"])
    c.core.approvals_required = static_cast<std::uint32_t>(r.num(root["approvals_required"], "approvals_required"));
  if (root["stale_after_seconds"])
    c.core.stale_after_s = static_cast<std::int64_t>(r.num(root["stale_after_seconds"], "stale_after_seconds"));
  if (root["max_wait_seconds"])
    c.core.max_wait_s = static_cast<std::int64_t>(r.num(root["max_wait_seconds"], "max_wait_seconds"));
  // Obsolete since issue 13 (the server no longer holds a thread per long poll): still read so
  // older configs load, and otherwise ignored; sluice-controld says so at start.
  if (root["http_threads"]) {
    (void)r.num(root["http_threads"], "http_threads");
    c.obsolete_http_threads = true;
  }
  if (const auto srv = root["server"]) {
    r.keys(srv,
           {"io_threads", "api_threads", "max_connections", "max_body_bytes", "max_document_bytes",
            "header_timeout", "body_timeout", "rate_limit"},
           "server");
    auto bounded = [&](const char* key, std::uint64_t lo, std::uint64_t hi, auto& out) {
      if (!srv[key]) return;
      const std::uint64_t v = r.num(srv[key], std::string("server.") + key);
      if (v < lo || v > hi)
        r.fail(srv[key], std::string("server.") + key + " must be " + std::to_string(lo) + ".." +
                             std::to_string(hi));
      out = static_cast<std::remove_reference_t<decltype(out)>>(v);
    };
    bounded("io_threads", 1, 64, c.io_threads);
    bounded("api_threads", 1, 64, c.api_threads);
    bounded("max_connections", 16, 1000000, c.max_connections);
    bounded("max_body_bytes", 4096, 1ULL << 30, c.max_body_bytes);
    bounded("max_document_bytes", 4096, 1ULL << 30, c.api.max_document_bytes);
    std::uint64_t seconds = 0;
    bounded("header_timeout", 1, 300, seconds);
    if (srv["header_timeout"]) c.header_timeout = std::chrono::seconds(seconds);
    bounded("body_timeout", 1, 3600, seconds);
    if (srv["body_timeout"]) c.body_timeout = std::chrono::seconds(seconds);
    if (const auto rl = srv["rate_limit"]) {
      r.keys(rl, {"per_token", "per_address"}, "server.rate_limit");
      for (const char* which : {"per_token", "per_address"}) {
        const auto b = rl[which];
        if (!b) continue;
        const std::string where = std::string("server.rate_limit.") + which;
        r.keys(b, {"rate", "burst"}, where);
        bucket_config& out = std::string(which) == "per_token" ? c.api.per_token : c.api.per_address;
        if (b["rate"]) {
          out.rate = r.real(b["rate"], where + ".rate");
          if (!(out.rate >= 0.001 && out.rate <= 1e6)) r.fail(b["rate"], where + ".rate must be 0.001..1000000 a second");
        }
        if (b["burst"]) {
          out.burst = r.real(b["burst"], where + ".burst");
          if (!(out.burst >= 1 && out.burst <= 1e6)) r.fail(b["burst"], where + ".burst must be 1..1000000");
        }
      }
    }
    // max_body_bytes is the ceiling over every route's limit.
    if (!srv["max_document_bytes"])
      c.api.max_document_bytes = std::min(c.api.max_document_bytes, c.max_body_bytes);
    else if (c.api.max_document_bytes > c.max_body_bytes)
      r.fail(srv["max_document_bytes"], "server.max_document_bytes must not exceed server.max_body_bytes (" +
                                            std::to_string(c.max_body_bytes) + ")");
  }

  if (!root["signing_key"]) r.fail(root, "signing_key is required (the controller's secret key)");
  {
    const auto p = r.path(root["signing_key"], "signing_key");
    std::string err;
    auto k = crypto::parse_secret_key(read_file(p), &err);
    if (!k) r.fail(root["signing_key"], p.string() + ": " + err);
    c.core.signing_key = *k;
  }
  if (!root["issuers"] || !root["issuers"].IsSequence() || root["issuers"].size() == 0)
    r.fail(root, "issuers: at least one trusted issuer key is required");
  for (const auto& i : root["issuers"]) {
    r.keys(i, {"name", "public_key"}, "an issuer");
    if (!i["name"] || !i["public_key"]) r.fail(i, "an issuer needs name and public_key");
    const auto p = r.path(i["public_key"], "public_key");
    std::string err;
    auto k = crypto::parse_public_key(read_file(p), &err);
    if (!k) r.fail(i["public_key"], p.string() + ": " + err);
    c.core.issuers.push_back({r.str(i["name"], "name"), *k});
  }
  if (const auto canary = root["canary"]) {
    r.keys(canary, {"labels", "soak_seconds"}, "canary");
    if (canary["labels"]) c.core.canary_labels = r.string_map(canary["labels"], "canary.labels");
    if (canary["soak_seconds"])
      c.core.canary_soak_s = static_cast<std::int64_t>(r.num(canary["soak_seconds"], "canary.soak_seconds"));
  }
  if (const auto inv = root["inventory"]) {
    r.keys(inv, {"sites", "labels"}, "inventory");
    if (inv["sites"])
      for (const auto& s : inv["sites"]) c.core.known_sites.insert(r.label_token(s, "inventory.sites"));
    if (inv["labels"])
      for (const auto& kv : inv["labels"]) {
        auto& values = c.core.known_labels[r.label_token(kv.first, "inventory.labels")];
        for (const auto& v : kv.second) values.insert(r.label_token(v, "inventory.labels value"));
      }
  }
  if (!root["tokens"] || !root["tokens"].IsSequence()) r.fail(root, "tokens: a list is required");
  for (const auto& t : root["tokens"]) {
    r.keys(t, {"name", "role", "sha256"}, "a token");
    if (!t["name"] || !t["role"] || !t["sha256"]) r.fail(t, "a token needs name, role and sha256");
    const auto role = controller::parse_role(r.str(t["role"], "role"));
    if (!role) r.fail(t["role"], "role must be ministry, engineer, viewer or node");
    const auto hash = r.str(t["sha256"], "sha256");
    if (hash.size() != 64 || hash.find_first_not_of("0123456789abcdef") != std::string::npos)
      r.fail(t["sha256"], "sha256 must be 64 lowercase hex digits (sha256sum of the token)");
    c.tokens.push_back({r.str(t["name"], "name"), *role, hash});
  }
  if (const auto tls = root["tls"]) {
    r.keys(tls, {"cert", "key", "client_ca"}, "tls");
    if (!tls["cert"] || !tls["key"]) r.fail(tls, "tls needs cert and key");
    c.tls_cert = r.path(tls["cert"], "tls.cert");
    c.tls_key = r.path(tls["key"], "tls.key");
    if (tls["client_ca"]) c.tls_client_ca = r.path(tls["client_ca"], "tls.client_ca");
  }

  if (const auto st = root["store"]) {
    r.keys(st, {"kind", "path", "endpoints", "prefix", "replica", "leader_lease_seconds", "tls"},
           "store");
    const std::string kind = st["kind"] ? r.str(st["kind"], "store.kind") : "sqlite";
    if (kind == "sqlite") {
      for (const char* k : {"endpoints", "prefix", "replica", "leader_lease_seconds", "tls"})
        if (st[k]) r.fail(st[k], std::string("store.") + k + " is for kind etcd");
      if (st["path"]) c.database = r.path(st["path"], "store.path");
    } else if (kind == "etcd") {
      if (st["path"]) r.fail(st["path"], "store.path is for kind sqlite");
      c.backend = store_kind::etcd;
      if (!st["endpoints"] || !st["endpoints"].IsSequence() || st["endpoints"].size() == 0)
        r.fail(st, "store.endpoints: at least one etcd client URL is required");
      // Issue 14: https:// endpoints need tls (at least its ca); tls needs every endpoint
      // https:// (one plaintext member would carry the same data unprotected).
      const auto tls = st["tls"];
      if (tls) {
        r.keys(tls, {"ca", "cert", "key"}, "store.tls");
        if (!tls["ca"]) r.fail(tls, "store.tls needs ca (the CA of the etcd members' certificates)");
        if (!tls["cert"] != !tls["key"]) r.fail(tls, "store.tls needs cert and key together");
        c.etcd.tls_ca = r.path(tls["ca"], "store.tls.ca").string();
        if (tls["cert"]) c.etcd.tls_cert = r.path(tls["cert"], "store.tls.cert").string();
        if (tls["key"]) c.etcd.tls_key = r.path(tls["key"], "store.tls.key").string();
      }
      for (const auto& e : st["endpoints"]) {
        const auto url = r.str(e, "store.endpoints entry");
        const bool https = url.rfind("https://", 0) == 0;
        if (url.rfind("http://", 0) != 0 && !https)
          r.fail(e, "store.endpoints: '" + url + "' is not an http(s):// URL");
        if (https && !tls)
          r.fail(e, "store.endpoints: '" + url + "' is https:// but store.tls (its ca) is missing");
        if (!https && tls)
          r.fail(e, "store.endpoints: '" + url + "' is http:// but store.tls is set (use https://)");
        c.etcd.endpoints.push_back(url);
      }
      if (st["prefix"]) {
        c.etcd.prefix = r.str(st["prefix"], "store.prefix");
        if (c.etcd.prefix.empty() || c.etcd.prefix.front() != '/' || c.etcd.prefix.back() == '/')
          r.fail(st["prefix"], "store.prefix must start with '/' and not end with one");
      }
      if (st["replica"]) c.etcd.replica = r.str(st["replica"], "store.replica");
      if (st["leader_lease_seconds"]) {
        const auto ttl = r.num(st["leader_lease_seconds"], "store.leader_lease_seconds");
        if (ttl < 2 || ttl > 60) r.fail(st["leader_lease_seconds"], "store.leader_lease_seconds must be 2..60");
        c.etcd.leader_ttl = std::chrono::seconds(ttl);
      }
    } else {
      r.fail(st["kind"], "store.kind must be sqlite or etcd");
    }
  }
  if (const auto prot = root["protected"]) {
    if (!prot.IsSequence()) r.fail(prot, "protected must be a list of {name, prefixes, domains}");
    for (const auto& e : prot) {
      r.keys(e, {"name", "prefixes", "domains"}, "a protected entry");
      if (!e["name"]) r.fail(e, "a protected entry needs a name");
      impact::protected_entry entry;
      entry.name = r.str(e["name"], "protected name");
      for (const char* k : {"prefixes", "domains"}) {
        if (!e[k]) continue;
        if (!e[k].IsSequence()) r.fail(e[k], std::string("protected ") + k + " must be a list");
        for (const auto& v : e[k])
          (std::string(k) == "prefixes" ? entry.prefixes : entry.domains)
              .push_back(r.str(v, std::string("protected ") + k + " entry"));
      }
      c.core.protected_targets.entries.push_back(std::move(entry));
    }
    std::string err;
    if (!impact::validate_protected(c.core.protected_targets, err)) r.fail(prot, "protected: " + err);
  }
  if (const auto ap = root["approval"]) {
    r.keys(ap, {"overrides_required", "require_impact_report_within_seconds"}, "approval");
    if (ap["overrides_required"]) {
      const auto n = r.num(ap["overrides_required"], "approval.overrides_required");
      if (n < 1 || n > 10) r.fail(ap["overrides_required"], "approval.overrides_required must be 1..10");
      c.core.overrides_required = static_cast<std::uint32_t>(n);
    }
    if (ap["require_impact_report_within_seconds"])
      c.core.impact_max_age_s = static_cast<std::int64_t>(
          r.num(ap["require_impact_report_within_seconds"], "approval.require_impact_report_within_seconds"));
  }
  if (const auto li = root["limits"]) {
    r.keys(li, {"directive_bytes", "directive_entries"}, "limits");
    if (li["directive_bytes"]) {
      const auto n = r.num(li["directive_bytes"], "limits.directive_bytes");
      if (n < 1024 || n > 1024ULL * 1024 * 1024)
        r.fail(li["directive_bytes"], "limits.directive_bytes must be 1 KiB..1 GiB");
      c.core.max_directive_bytes = static_cast<std::size_t>(n);
    }
    if (li["directive_entries"]) {
      const auto n = r.num(li["directive_entries"], "limits.directive_entries");
      if (n < 100 || n > 100000000)
        r.fail(li["directive_entries"], "limits.directive_entries must be 100..100000000");
      c.core.max_directive_entries = static_cast<std::size_t>(n);
    }
  }
  if (const auto co = root["console"]) {
    r.keys(co, {"assets", "enabled", "session_idle_seconds", "session_max_seconds"}, "console");
    if (co["enabled"]) {
      try {
        c.console_enabled = co["enabled"].as<bool>();
      } catch (const YAML::Exception&) {
        r.fail(co["enabled"], "console.enabled must be true or false");
      }
    }
    if (co["assets"]) c.console.assets = r.path(co["assets"], "console.assets");
    const auto seconds = [&](const char* key, std::uint64_t lo, std::uint64_t hi) {
      const std::uint64_t v = r.num(co[key], std::string("console.") + key);
      if (v < lo || v > hi)
        r.fail(co[key], std::string("console.") + key + " must be " + std::to_string(lo) + ".." +
                            std::to_string(hi));
      return std::chrono::seconds(v);
    };
    if (co["session_idle_seconds"]) c.console.session_idle = seconds("session_idle_seconds", 60, 86400);
    if (co["session_max_seconds"]) c.console.session_max = seconds("session_max_seconds", 60, 7 * 86400);
  }
  if (const auto im = root["impact"]) {
    r.keys(im, {"retention_seconds"}, "impact");
    if (im["retention_seconds"])
      c.core.impact_retention_s =
          static_cast<std::int64_t>(r.num(im["retention_seconds"], "impact.retention_seconds"));
  }
  if (const auto ca = root["node_ca"]) {
    r.keys(ca, {"cert", "key", "certificate_days"}, "node_ca");
    if (!ca["cert"]) r.fail(ca, "node_ca needs cert (the node CA's certificate)");
    c.node_ca_cert = r.path(ca["cert"], "node_ca.cert");
    if (!c.tls_client_ca.empty() && c.tls_client_ca != c.node_ca_cert)
      r.fail(ca["cert"], "node_ca.cert and tls.client_ca name different files (they are the same CA)");
    c.api.node_certificates_required = true;
    const std::string key = ca["key"] ? read_file(r.path(ca["key"], "node_ca.key")) : std::string();
    std::string err;
    auto loaded = pki::certificate_authority::load(read_file(c.node_ca_cert), key, err);
    if (!loaded) r.fail(ca, "node_ca: " + err);
    c.core.node_ca = std::make_shared<const pki::certificate_authority>(std::move(*loaded));
    if (ca["certificate_days"]) {
      const auto days = r.num(ca["certificate_days"], "node_ca.certificate_days");
      if (days < 1 || days > 3650) r.fail(ca["certificate_days"], "node_ca.certificate_days must be 1..3650");
      c.core.node_certificate_days = static_cast<int>(days);
    }
    if (c.tls_cert.empty())
      r.fail(ca, "node_ca needs tls (nodes present their certificates in the TLS handshake)");
  }
  {
    std::set<std::string> seen;
    auto read_nodes = [&](const reader& rr, const YAML::Node& list) {
      if (!list.IsSequence()) rr.fail(list, "nodes must be a list of {id, labels}");
      for (const auto& n : list) {
        rr.keys(n, {"id", "labels"}, "a node");
        if (!n["id"]) rr.fail(n, "a node needs an id");
        controller::configured_node cn;
        cn.id = rr.label_token(n["id"], "node id");
        if (!seen.insert(cn.id).second) rr.fail(n["id"], "node " + cn.id + " is listed twice");
        if (n["labels"]) {
          if (!n["labels"].IsMap()) rr.fail(n["labels"], "node labels must be a mapping");
          for (const auto& kv : n["labels"])
            cn.labels[rr.label_token(kv.first, "label name")] = rr.label_token(kv.second, "label value");
        }
        c.core.nodes.push_back(std::move(cn));
      }
    };
    if (root["nodes"]) read_nodes(r, root["nodes"]);
    if (root["nodes_file"]) {
      const auto p = r.path(root["nodes_file"], "nodes_file");
      const reader fr{p.string(), p.parent_path()};
      YAML::Node list;
      try {
        list = YAML::LoadFile(p.string());
      } catch (const YAML::BadFile&) {
        r.fail(root["nodes_file"], p.string() + ": cannot read");
      } catch (const YAML::Exception& e) {
        throw config_error(p.string() + ":" + std::to_string(e.mark.line + 1) + ":" +
                           std::to_string(e.mark.column + 1) + ": " + e.msg);
      }
      read_nodes(fr, list);
    }
  }
  c.core.replicated = c.backend == store_kind::etcd;
  if (c.core.replicated) {
    // etcd must run with --max-txn-ops >= 10000 and --max-request-bytes >= 8 MiB (control/README):
    // two ops per node record, about 1 KiB of request per record at most, room for the rest.
    c.etcd.max_txn_ops = 10000;
    c.etcd.max_request_bytes = std::size_t{8} << 20;
    c.core.max_nodes_per_commit = 2000;
  }
  c.etcd.node_ttl = std::chrono::seconds(c.core.stale_after_s);

  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(c.apps_dir, ec)) {
    if (e.path().extension() != ".yaml") continue;
    auto app = match::load_app_profile_file(e.path());
    if (!app) throw config_error(app.error.text());
    c.core.apps[app.profile->name] = std::move(*app.profile);
  }
  if (ec) throw config_error(name + ": apps_dir " + c.apps_dir.string() + ": " + ec.message());
  return c;
}

daemon_config load_daemon_config_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw config_error(path.string() + ": cannot read");
  return load_daemon_config(in, path.parent_path(), path.string());
}

}  // namespace sluice::control::api
