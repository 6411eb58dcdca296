#include "dataplane/telemetry/json.hpp"

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>

namespace tel = sluice::telemetry;

namespace {

tel::dataplane_stats full_snapshot() {
  tel::dataplane_stats s;
  tel::port_stats sub;
  sub.name = "subscriber";
  sub.rx_packets = 1;
  sub.tx_packets = 2;
  sub.rx_bytes = 3;
  sub.tx_bytes = 4;
  sub.rx_missed = 5;
  sub.rx_errors = 6;
  sub.tx_errors = 7;
  sub.rx_nombuf = 8;
  // Not sorted, and one value above 2^53 that a double would round.
  sub.xstats = {{"rx_q1_packets", 9},
                {"rx_good_packets", std::numeric_limits<std::uint64_t>::max()}};
  tel::port_stats inet;
  inet.name = "internet";
  inet.rx_packets = (std::uint64_t{1} << 53) + 1;
  s.ports = {sub, inet};
  s.workers = {{1, 100, 20000, 10, 123456789, false}, {3, 0, 0, 0, 42, true}};
  s.packets_by_direction = {{"out", 11}, {"in", 12}};
  s.parse_outcomes = {{"ok", 13}, {"truncated", 14}, {"too_deep", 0}};
  s.engine_events = {{"flow_created", 15}, {"table_full_pass", 16}};
  s.reassembly_give_ups = {{"over_cap", 17}, {"pool_empty", 18}};
  s.responses_sent = {{"tcp_reset", 19}, {"notice", 20}};
  s.impact_reports = {{"delivered", 21}, {"failed", 22}};
  s.impact_unrecorded_flows = {{"rule_overflow", 23}, {"policy_swap", 24}};
  s.rules = {{"tg-sni", "D-2024-17", "reset", 21, 22}, {"tg-ip", "D-2024-17", "drop", 23, 24}};
  s.flow_table_entries = 25;
  s.flow_table_capacity = 26;
  s.policy_revision = 27;
  s.policy_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
  s.policy_load_seconds = 0.1;  // not exact in binary: the dump must still round-trip it
  s.policy_loaded_at = -5;      // signed on purpose
  s.policy_reload_failures = 28;
  s.healthy = false;
  return s;
}

}  // namespace

TEST_CASE("stats json: a full snapshot round-trips exactly") {
  const auto s = full_snapshot();
  const std::string text = tel::to_json(s);
  INFO(text);
  CHECK(tel::from_json(text) == s);
  CHECK(tel::from_json(tel::to_json(tel::dataplane_stats{})) == tel::dataplane_stats{});
}

TEST_CASE("stats json: stable keys, pretty-printed, in struct order") {
  const std::string text = tel::to_json(full_snapshot());
  CHECK(text.rfind("{\n  \"format\": \"sluice-dataplane-stats/1\",\n  \"ports\": [\n", 0) == 0);
  CHECK(text.back() == '\n');
  // key, expected fragment
  const char* const fragments[] = {
      R"("rx_good_packets": 18446744073709551615)",
      R"("rx_packets": 9007199254740993)",
      R"("parse_outcomes": {
    "ok": 13,
    "truncated": 14,
    "too_deep": 0
  })",
      R"("rule": "tg-sni",
      "directive": "D-2024-17",
      "action": "reset",
      "flows": 21,
      "packets": 22)",
      R"("policy_loaded_at": -5)",
      R"("healthy": false)",
  };
  for (const char* f : fragments) {
    CAPTURE(std::string(f));
    CHECK(text.find(f) != std::string::npos);
  }
  const auto pos = [&](const char* key) { return text.find(std::string("\n  \"") + key + "\""); };
  CHECK(pos("ports") < pos("workers"));
  CHECK(pos("workers") < pos("packets_by_direction"));
  CHECK(pos("rules") < pos("flow_table_entries"));
  CHECK(pos("policy_reload_failures") < pos("healthy"));
}

TEST_CASE("stats json: missing keys keep defaults, unknown keys are ignored") {
  const auto s = tel::from_json(R"({"policy_revision": 4, "future_key": [1, 2]})");
  CHECK(s.policy_revision == 4);
  CHECK(s.healthy == true);
  CHECK(s.ports.empty());
}

TEST_CASE("stats json: malformed input throws") {
  // description, input
  const std::pair<const char*, const char*> cases[] = {
      {"not json", "{\"ports\": ["},
      {"empty", ""},
      {"top level array", "[]"},
      {"other format", R"({"format": "sluice-dataplane-stats/2"})"},
      {"negative count", R"({"flow_table_entries": -1})"},
      {"fractional count", R"({"policy_revision": 1.5})"},
      {"string count", R"({"policy_reload_failures": "3"})"},
      {"count too large", R"({"policy_revision": 18446744073709551616})"},
      {"bool as int", R"({"healthy": 1})"},
      {"ports not array", R"({"ports": {}})"},
      {"port not object", R"({"ports": [1]})"},
      {"lcore out of range", R"({"workers": [{"lcore": 4294967296}]})"},
      {"labelled counts as array", R"({"parse_outcomes": [["ok", 1]]})"},
      {"negative labelled count", R"({"parse_outcomes": {"ok": -1}})"},
      {"negative xstat", R"({"ports": [{"xstats": {"a": -2}}]})"},
      {"timestamp fractional", R"({"policy_loaded_at": 1.5})"},
      {"timestamp too large", R"({"policy_loaded_at": 9223372036854775808})"},
      {"sha not string", R"({"policy_sha256": 12})"},
  };
  for (const auto& c : cases) {
    const std::string desc = c.first;
    CAPTURE(desc);
    CHECK_THROWS_AS((void)tel::from_json(c.second), std::invalid_argument);
  }
}
