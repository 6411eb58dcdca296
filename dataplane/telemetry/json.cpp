#include "dataplane/telemetry/json.hpp"

#include <climits>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <type_traits>

namespace sluice::telemetry {
namespace {

// ordered_json keeps keys in insertion order: the dump reads in struct order, and
// labelled_counts come back in the order they went out (so a round trip is exact).
using json = nlohmann::ordered_json;

constexpr const char* format_name = "sluice-dataplane-stats/1";

json counts_to_json(const std::vector<std::pair<std::string, std::uint64_t>>& counts) {
  json o = json::object();
  for (const auto& [key, value] : counts) o[key] = value;
  return o;
}

[[noreturn]] void fail(const std::string& where, const char* what) {
  throw std::invalid_argument("stats json: " + where + ": " + what);
}

// Typed readers: each checks the JSON type itself rather than letting nlohmann convert, which
// would turn -1 into 2^64-1 and 1.5 into 1.
std::uint64_t read_count(const json& v, const std::string& where) {
  if (!v.is_number_unsigned()) fail(where, "expected a non-negative integer");
  return v.get<std::uint64_t>();
}

template <typename T>
void read_field(const json& obj, const char* key, T& out, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end()) return;
  const json& v = *it;
  const std::string at = where + "." + key;
  if constexpr (std::is_same_v<T, bool>) {
    if (!v.is_boolean()) fail(at, "expected true or false");
    out = v.get<bool>();
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!v.is_string()) fail(at, "expected a string");
    out = v.get<std::string>();
  } else if constexpr (std::is_same_v<T, double>) {
    if (!v.is_number()) fail(at, "expected a number");
    out = v.get<double>();
  } else if constexpr (std::is_same_v<T, std::int64_t>) {
    if (!v.is_number_integer()) fail(at, "expected an integer");
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > INT64_MAX) fail(at, "out of range");
    out = v.get<std::int64_t>();
  } else if constexpr (std::is_same_v<T, unsigned>) {
    const auto n = read_count(v, at);
    if (n > UINT_MAX) fail(at, "out of range");
    out = static_cast<unsigned>(n);
  } else if constexpr (std::is_same_v<T, std::uint64_t>) {
    out = read_count(v, at);
  } else {
    static_assert(std::is_same_v<T, labelled_counts>);
    if (!v.is_object()) fail(at, "expected an object of counts");
    out.clear();
    for (const auto& [k, n] : v.items()) out.emplace_back(k, read_count(n, at + "." + k));
  }
}

// Reads an array of objects under `key`, each through `read_one(object, where)`.
template <typename T, typename F>
void read_array(const json& obj, const char* key, std::vector<T>& out, const std::string& where,
                F read_one) {
  const auto it = obj.find(key);
  if (it == obj.end()) return;
  const std::string at = where + "." + key;
  if (!it->is_array()) fail(at, "expected an array");
  out.clear();
  for (std::size_t i = 0; i < it->size(); ++i) {
    const std::string elem = at + "[" + std::to_string(i) + "]";
    if (!(*it)[i].is_object()) fail(elem, "expected an object");
    out.push_back(read_one((*it)[i], elem));
  }
}

}  // namespace

std::string to_json(const dataplane_stats& s) {
  json j;
  j["format"] = format_name;

  json ports = json::array();
  for (const auto& p : s.ports) {
    ports.push_back({
        {"name", p.name},
        {"rx_packets", p.rx_packets},
        {"tx_packets", p.tx_packets},
        {"rx_bytes", p.rx_bytes},
        {"tx_bytes", p.tx_bytes},
        {"rx_missed", p.rx_missed},
        {"rx_errors", p.rx_errors},
        {"tx_errors", p.tx_errors},
        {"rx_nombuf", p.rx_nombuf},
        {"xstats", counts_to_json(p.xstats)},
    });
  }
  j["ports"] = std::move(ports);

  json workers = json::array();
  for (const auto& w : s.workers) {
    workers.push_back({
        {"lcore", w.lcore},
        {"packets", w.packets},
        {"busy_cycles", w.busy_cycles},
        {"bursts", w.bursts},
        {"last_beat_tsc", w.last_beat_tsc},
        {"stalled", w.stalled},
    });
  }
  j["workers"] = std::move(workers);

  j["packets_by_direction"] = counts_to_json(s.packets_by_direction);
  j["parse_outcomes"] = counts_to_json(s.parse_outcomes);
  j["engine_events"] = counts_to_json(s.engine_events);
  j["reassembly_give_ups"] = counts_to_json(s.reassembly_give_ups);
  j["responses_sent"] = counts_to_json(s.responses_sent);
  j["impact_reports"] = counts_to_json(s.impact_reports);
  j["impact_unrecorded_flows"] = counts_to_json(s.impact_unrecorded_flows);

  json rules = json::array();
  for (const auto& r : s.rules) {
    rules.push_back({
        {"rule", r.rule},
        {"directive", r.directive},
        {"action", r.action},
        {"flows", r.flows},
        {"packets", r.packets},
    });
  }
  j["rules"] = std::move(rules);

  j["flow_table_entries"] = s.flow_table_entries;
  j["flow_table_capacity"] = s.flow_table_capacity;
  j["reassembly_buffers_in_use"] = s.reassembly_buffers_in_use;
  j["reassembly_buffers"] = s.reassembly_buffers;
  j["policy_revision"] = s.policy_revision;
  j["policy_sha256"] = s.policy_sha256;
  j["policy_load_seconds"] = s.policy_load_seconds;
  j["policy_loaded_at"] = s.policy_loaded_at;
  j["policy_reload_failures"] = s.policy_reload_failures;
  j["healthy"] = s.healthy;

  return j.dump(2) + "\n";
}

dataplane_stats from_json(std::string_view text) {
  json j;
  try {
    j = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    fail("input", e.what());
  }
  const std::string top = "$";
  if (!j.is_object()) fail(top, "expected an object");
  if (const auto it = j.find("format"); it != j.end()) {
    if (!it->is_string() || it->get<std::string>() != format_name) {
      fail(top + ".format", "unknown format (want sluice-dataplane-stats/1)");
    }
  }

  dataplane_stats s;
  read_array(j, "ports", s.ports, top, [](const json& o, const std::string& at) {
    port_stats p;
    read_field(o, "name", p.name, at);
    read_field(o, "rx_packets", p.rx_packets, at);
    read_field(o, "tx_packets", p.tx_packets, at);
    read_field(o, "rx_bytes", p.rx_bytes, at);
    read_field(o, "tx_bytes", p.tx_bytes, at);
    read_field(o, "rx_missed", p.rx_missed, at);
    read_field(o, "rx_errors", p.rx_errors, at);
    read_field(o, "tx_errors", p.tx_errors, at);
    read_field(o, "rx_nombuf", p.rx_nombuf, at);
    read_field(o, "xstats", p.xstats, at);
    return p;
  });
  read_array(j, "workers", s.workers, top, [](const json& o, const std::string& at) {
    worker_stats w;
    read_field(o, "lcore", w.lcore, at);
    read_field(o, "packets", w.packets, at);
    read_field(o, "busy_cycles", w.busy_cycles, at);
    read_field(o, "bursts", w.bursts, at);
    read_field(o, "last_beat_tsc", w.last_beat_tsc, at);
    read_field(o, "stalled", w.stalled, at);
    return w;
  });
  read_field(j, "packets_by_direction", s.packets_by_direction, top);
  read_field(j, "parse_outcomes", s.parse_outcomes, top);
  read_field(j, "engine_events", s.engine_events, top);
  read_field(j, "reassembly_give_ups", s.reassembly_give_ups, top);
  read_field(j, "responses_sent", s.responses_sent, top);
  read_field(j, "impact_reports", s.impact_reports, top);
  read_field(j, "impact_unrecorded_flows", s.impact_unrecorded_flows, top);
  read_array(j, "rules", s.rules, top, [](const json& o, const std::string& at) {
    rule_stats r;
    read_field(o, "rule", r.rule, at);
    read_field(o, "directive", r.directive, at);
    read_field(o, "action", r.action, at);
    read_field(o, "flows", r.flows, at);
    read_field(o, "packets", r.packets, at);
    return r;
  });
  read_field(j, "flow_table_entries", s.flow_table_entries, top);
  read_field(j, "flow_table_capacity", s.flow_table_capacity, top);
  read_field(j, "reassembly_buffers_in_use", s.reassembly_buffers_in_use, top);
  read_field(j, "reassembly_buffers", s.reassembly_buffers, top);
  read_field(j, "policy_revision", s.policy_revision, top);
  read_field(j, "policy_sha256", s.policy_sha256, top);
  read_field(j, "policy_load_seconds", s.policy_load_seconds, top);
  read_field(j, "policy_loaded_at", s.policy_loaded_at, top);
  read_field(j, "policy_reload_failures", s.policy_reload_failures, top);
  read_field(j, "healthy", s.healthy, top);
  return s;
}

}  // namespace sluice::telemetry
