#include "dataplane/telemetry/exporter.hpp"

#include <doctest/doctest.h>
#include <httplib.h>

#include <chrono>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>

namespace tel = sluice::telemetry;

namespace {

// GET /metrics; the sample lines (no # HELP / # TYPE) of the sluice_dataplane_ metrics.
std::set<std::string> scrape(std::uint16_t port) {
  httplib::Client client("127.0.0.1", port);
  const auto res = client.Get("/metrics");
  REQUIRE(res);
  REQUIRE(res->status == 200);
  std::set<std::string> lines;
  std::istringstream in(res->body);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("sluice_dataplane_", 0) == 0) lines.insert(line);
  }
  return lines;
}

// The value of the one sample whose line starts with `series` + " ".
std::string value_of(const std::set<std::string>& lines, const std::string& series) {
  for (const auto& l : lines) {
    if (l.rfind(series + " ", 0) == 0) return l.substr(series.size() + 1);
  }
  return "<missing>";
}

std::string all(const std::set<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

tel::dataplane_stats first_snapshot() {
  tel::dataplane_stats s;
  tel::port_stats sub;
  sub.name = "subscriber";
  sub.rx_packets = 1000;
  sub.tx_packets = 990;
  sub.rx_bytes = 640000;
  sub.tx_bytes = 630000;
  sub.rx_missed = 3;
  sub.rx_errors = 1;
  sub.tx_errors = 0;
  sub.rx_nombuf = 2;
  sub.xstats = {{"rx_good_packets", 1000}, {"rx_q0_packets", 600}};
  s.ports.push_back(sub);

  tel::worker_stats w1;
  w1.lcore = 1;
  w1.packets = 400;
  w1.busy_cycles = 80000;  // 200 cycles/packet
  w1.bursts = 20;
  tel::worker_stats w2;
  w2.lcore = 2;
  w2.packets = 0;
  w2.busy_cycles = 0;
  w2.stalled = true;
  s.workers = {w1, w2};

  s.packets_by_direction = {{"in", 600}, {"out", 390}};
  s.parse_outcomes = {{"ok", 950}, {"truncated", 7}, {"bad_ipv4", 0}};
  s.engine_events = {{"flow_created", 40}, {"table_full_pass", 5}};
  s.reassembly_give_ups = {{"over_cap", 2}};
  s.responses_sent = {{"tcp_reset", 11}};
  s.impact_reports = {{"delivered", 5}, {"failed", 1}};
  s.impact_unrecorded_flows = {{"rule_overflow", 2}, {"policy_swap", 0}};
  s.rules = {{"tg-sni", "D-2024-17", "reset", 12, 30}, {"tg-ip", "D-2024-17", "drop", 4, 44}};
  s.flow_table_entries = 917;
  s.flow_table_capacity = 1024;
  s.policy_revision = 7;
  s.policy_sha256 = "ab12";
  s.policy_load_seconds = 0.25;
  s.policy_loaded_at = 1700000000;
  s.policy_reload_failures = 1;
  s.healthy = false;
  return s;
}

}  // namespace

TEST_CASE("metrics_exporter: port 0 picks a port; nothing before the first update") {
  tel::metrics_exporter ex("127.0.0.1:0", {{"node", "edge-1"}});
  REQUIRE(ex.port() != 0);
  CHECK(scrape(ex.port()).empty());
}

TEST_CASE("metrics_exporter: first snapshot, exact sample lines with node labels") {
  tel::metrics_exporter ex("127.0.0.1:0", {{"node", "edge-1"}, {"site", "msk"}});
  ex.update(first_snapshot());
  const auto lines = scrape(ex.port());
  INFO(all(lines));

  // description, exact sample line expected in the exposition
  const char* const expected[] = {
      R"(sluice_dataplane_port_packets_total{node="edge-1",site="msk",dir="rx",port="subscriber"} 1000)",
      R"(sluice_dataplane_port_packets_total{node="edge-1",site="msk",dir="tx",port="subscriber"} 990)",
      R"(sluice_dataplane_port_bytes_total{node="edge-1",site="msk",dir="rx",port="subscriber"} 640000)",
      R"(sluice_dataplane_port_bytes_total{node="edge-1",site="msk",dir="tx",port="subscriber"} 630000)",
      R"(sluice_dataplane_port_errors_total{node="edge-1",site="msk",kind="rx_missed",port="subscriber"} 3)",
      R"(sluice_dataplane_port_errors_total{node="edge-1",site="msk",kind="rx_errors",port="subscriber"} 1)",
      R"(sluice_dataplane_port_errors_total{node="edge-1",site="msk",kind="tx_errors",port="subscriber"} 0)",
      R"(sluice_dataplane_port_errors_total{node="edge-1",site="msk",kind="rx_nombuf",port="subscriber"} 2)",
      R"(sluice_dataplane_port_xstat_total{node="edge-1",site="msk",name="rx_good_packets",port="subscriber"} 1000)",
      R"(sluice_dataplane_port_xstat_total{node="edge-1",site="msk",name="rx_q0_packets",port="subscriber"} 600)",
      R"(sluice_dataplane_packets_total{node="edge-1",site="msk",dir="in"} 600)",
      R"(sluice_dataplane_packets_total{node="edge-1",site="msk",dir="out"} 390)",
      R"(sluice_dataplane_worker_packets_total{node="edge-1",site="msk",worker="1"} 400)",
      R"(sluice_dataplane_worker_packets_total{node="edge-1",site="msk",worker="2"} 0)",
      R"(sluice_dataplane_worker_busy_cycles_total{node="edge-1",site="msk",worker="1"} 80000)",
      R"(sluice_dataplane_worker_bursts_total{node="edge-1",site="msk",worker="1"} 20)",
      R"(sluice_dataplane_worker_cycles_per_packet{node="edge-1",site="msk",worker="1"} 200)",
      R"(sluice_dataplane_worker_cycles_per_packet{node="edge-1",site="msk",worker="2"} 0)",
      R"(sluice_dataplane_worker_stalled{node="edge-1",site="msk",worker="1"} 0)",
      R"(sluice_dataplane_worker_stalled{node="edge-1",site="msk",worker="2"} 1)",
      R"(sluice_dataplane_parse_outcomes_total{node="edge-1",site="msk",outcome="ok"} 950)",
      R"(sluice_dataplane_parse_outcomes_total{node="edge-1",site="msk",outcome="truncated"} 7)",
      R"(sluice_dataplane_parse_outcomes_total{node="edge-1",site="msk",outcome="bad_ipv4"} 0)",
      R"(sluice_dataplane_engine_events_total{node="edge-1",site="msk",event="flow_created"} 40)",
      R"(sluice_dataplane_engine_events_total{node="edge-1",site="msk",event="table_full_pass"} 5)",
      R"(sluice_dataplane_reassembly_give_ups_total{node="edge-1",site="msk",reason="over_cap"} 2)",
      R"(sluice_dataplane_responses_total{node="edge-1",site="msk",kind="tcp_reset"} 11)",
      R"(sluice_dataplane_impact_reports_total{node="edge-1",site="msk",result="delivered"} 5)",
      R"(sluice_dataplane_impact_reports_total{node="edge-1",site="msk",result="failed"} 1)",
      R"(sluice_dataplane_impact_unrecorded_flows_total{node="edge-1",site="msk",reason="rule_overflow"} 2)",
      R"(sluice_dataplane_verdicts_total{node="edge-1",site="msk",action="reset",directive="D-2024-17",rule="tg-sni"} 12)",
      R"(sluice_dataplane_verdicts_total{node="edge-1",site="msk",action="drop",directive="D-2024-17",rule="tg-ip"} 4)",
      R"(sluice_dataplane_rule_packets_total{node="edge-1",site="msk",action="reset",directive="D-2024-17",rule="tg-sni"} 30)",
      R"(sluice_dataplane_rule_packets_total{node="edge-1",site="msk",action="drop",directive="D-2024-17",rule="tg-ip"} 44)",
      R"(sluice_dataplane_flow_table_entries{node="edge-1",site="msk"} 917)",
      R"(sluice_dataplane_flow_table_capacity{node="edge-1",site="msk"} 1024)",
      R"(sluice_dataplane_policy_revision{node="edge-1",site="msk"} 7)",
      R"(sluice_dataplane_policy_info{node="edge-1",site="msk",sha256="ab12"} 1)",
      R"(sluice_dataplane_policy_load_seconds{node="edge-1",site="msk"} 0.25)",
      R"(sluice_dataplane_policy_loaded_timestamp_seconds{node="edge-1",site="msk"} 1700000000)",
      R"(sluice_dataplane_policy_reload_failures_total{node="edge-1",site="msk"} 1)",
      R"(sluice_dataplane_healthy{node="edge-1",site="msk"} 0)",
  };
  for (const char* line : expected) {
    CAPTURE(std::string(line));
    CHECK(lines.count(line) == 1);
  }

  // Every sample carries the node labels.
  for (const auto& l : lines) {
    CAPTURE(l);
    CHECK(l.find(R"(node="edge-1")") != std::string::npos);
    CHECK(l.find(R"(site="msk")") != std::string::npos);
  }

  // The update stamp is the wall clock at update().
  const double stamp = std::stod(value_of(
      lines, R"(sluice_dataplane_last_update_timestamp_seconds{node="edge-1",site="msk"})"));
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(stamp <= now);
  CHECK(stamp > now - 60);
}

TEST_CASE("metrics_exporter: counters follow deltas; gauges and cycles/packet per interval") {
  tel::metrics_exporter ex("127.0.0.1:0", {{"node", "n1"}});
  auto s = first_snapshot();
  ex.update(s);

  s.ports[0].rx_packets = 1500;              // +500
  s.workers[0].packets = 500;                // +100 packets ...
  s.workers[0].busy_cycles = 80000 + 15000;  // ... +15000 cycles: 150 per packet this interval
  s.workers[1].stalled = false;
  s.parse_outcomes = {{"ok", 1000}, {"truncated", 7}, {"bad_ipv4", 3}};
  s.policy_reload_failures = 2;
  s.flow_table_entries = 100;  // gauges take the value as is, also downwards
  s.policy_revision = 8;
  s.policy_sha256 = "cd34";
  s.healthy = true;
  ex.update(s);
  auto lines = scrape(ex.port());
  INFO(all(lines));

  struct row {
    const char* series;
    const char* value;
  };
  const row after_second[] = {
      {R"(sluice_dataplane_port_packets_total{node="n1",dir="rx",port="subscriber"})", "1500"},
      {R"(sluice_dataplane_port_packets_total{node="n1",dir="tx",port="subscriber"})", "990"},
      {R"(sluice_dataplane_worker_packets_total{node="n1",worker="1"})", "500"},
      {R"(sluice_dataplane_worker_busy_cycles_total{node="n1",worker="1"})", "95000"},
      {R"(sluice_dataplane_worker_cycles_per_packet{node="n1",worker="1"})", "150"},
      {R"(sluice_dataplane_worker_cycles_per_packet{node="n1",worker="2"})", "0"},
      {R"(sluice_dataplane_worker_stalled{node="n1",worker="2"})", "0"},
      {R"(sluice_dataplane_parse_outcomes_total{node="n1",outcome="ok"})", "1000"},
      {R"(sluice_dataplane_parse_outcomes_total{node="n1",outcome="bad_ipv4"})", "3"},
      {R"(sluice_dataplane_policy_reload_failures_total{node="n1"})", "2"},
      {R"(sluice_dataplane_flow_table_entries{node="n1"})", "100"},
      {R"(sluice_dataplane_policy_revision{node="n1"})", "8"},
      {R"(sluice_dataplane_policy_info{node="n1",sha256="cd34"})", "1"},
      {R"(sluice_dataplane_healthy{node="n1"})", "1"},
  };
  for (const auto& r : after_second) {
    CAPTURE(std::string(r.series));
    CHECK(value_of(lines, r.series) == r.value);
  }
  // Only the current policy digest has an info series.
  CHECK(value_of(lines, R"(sluice_dataplane_policy_info{node="n1",sha256="ab12"})") == "<missing>");

  // One exporter for the steps below: each exporter's shutdown costs civetweb ~2 s.
  // A third update with no change keeps counters and zeroes cycles/packet.
  ex.update(s);
  lines = scrape(ex.port());
  CHECK(value_of(lines, R"(sluice_dataplane_worker_packets_total{node="n1",worker="1"})") == "500");
  CHECK(value_of(lines, R"(sluice_dataplane_worker_cycles_per_packet{node="n1",worker="1"})") ==
        "0");

  // A source that goes down (port stats reset) counts as a reset: the counter never decreases.
  const std::string rx =
      R"(sluice_dataplane_port_packets_total{node="n1",dir="rx",port="subscriber"})";
  s.ports[0].rx_packets = 40;  // cleared, then 40 new packets
  ex.update(s);
  CHECK(value_of(scrape(ex.port()), rx) == "1540");
  s.ports[0].rx_packets = 100;  // +60 after the reset
  ex.update(s);
  CHECK(value_of(scrape(ex.port()), rx) == "1600");

  // A worker counter reset starts a fresh cycles/packet interval.
  s.workers[0].packets = 10;
  s.workers[0].busy_cycles = 3000;
  ex.update(s);
  lines = scrape(ex.port());
  CHECK(value_of(lines, R"(sluice_dataplane_worker_cycles_per_packet{node="n1",worker="1"})") ==
        "300");
  CHECK(value_of(lines, R"(sluice_dataplane_worker_packets_total{node="n1",worker="1"})") == "510");
}

TEST_CASE("metrics_exporter: a rule gone after a policy swap keeps its series and value") {
  tel::metrics_exporter ex("127.0.0.1:0", {{"node", "n1"}});
  auto s = first_snapshot();
  ex.update(s);
  // New policy: tg-ip is gone from the snapshot, tg-sni continues, tg-quic is new.
  s.rules = {{"tg-sni", "D-2024-17", "reset", 20, 50}, {"tg-quic", "D-2024-18", "drop", 1, 9}};
  ex.update(s);
  const auto lines = scrape(ex.port());
  INFO(all(lines));
  const char* const expected[] = {
      R"(sluice_dataplane_verdicts_total{node="n1",action="drop",directive="D-2024-17",rule="tg-ip"} 4)",
      R"(sluice_dataplane_rule_packets_total{node="n1",action="drop",directive="D-2024-17",rule="tg-ip"} 44)",
      R"(sluice_dataplane_verdicts_total{node="n1",action="reset",directive="D-2024-17",rule="tg-sni"} 20)",
      R"(sluice_dataplane_rule_packets_total{node="n1",action="reset",directive="D-2024-17",rule="tg-sni"} 50)",
      R"(sluice_dataplane_verdicts_total{node="n1",action="drop",directive="D-2024-18",rule="tg-quic"} 1)",
      R"(sluice_dataplane_rule_packets_total{node="n1",action="drop",directive="D-2024-18",rule="tg-quic"} 9)",
  };
  for (const char* line : expected) {
    CAPTURE(std::string(line));
    CHECK(lines.count(line) == 1);
  }
}

TEST_CASE("metrics_exporter: metric families are declared with HELP and TYPE") {
  tel::metrics_exporter ex("127.0.0.1:0", {{"node", "n1"}});
  ex.update(first_snapshot());
  httplib::Client client("127.0.0.1", ex.port());
  const auto res = client.Get("/metrics");
  REQUIRE(res);
  const std::string& body = res->body;
  // family, type
  const std::pair<const char*, const char*> families[] = {
      {"sluice_dataplane_port_packets_total", "counter"},
      {"sluice_dataplane_port_xstat_total", "counter"},
      {"sluice_dataplane_verdicts_total", "counter"},
      {"sluice_dataplane_worker_cycles_per_packet", "gauge"},
      {"sluice_dataplane_flow_table_entries", "gauge"},
      {"sluice_dataplane_healthy", "gauge"},
  };
  for (const auto& f : families) {
    const std::string name = f.first, type = f.second;
    CAPTURE(name);
    CHECK(body.find("# TYPE " + name + " " + type + "\n") != std::string::npos);
    CHECK(body.find("# HELP " + name + " ") != std::string::npos);
  }
}

TEST_CASE("metrics_exporter: bad node labels are rejected") {
  CHECK_THROWS_AS(tel::metrics_exporter("127.0.0.1:0", {{"port", "x"}}), std::invalid_argument);
  CHECK_THROWS_AS(tel::metrics_exporter("127.0.0.1:0", {{"bad-name", "x"}}), std::invalid_argument);
}
