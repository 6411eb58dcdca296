// Integration: the real sluice-dataplane binary in offline mode (net_pcap in, net_pcap out),
// judged packet by packet.
//
//  - capture_replay: every capture in ${SLUICE_TESTDATA_DIR}/captures with a policy built from
//    its truth file (the server addresses of its Telegram flows as /32 or /128 prefix rules or,
//    when it has none, one name carried by one of its flows), action drop.
//  - generated_evasion: every synthetic capture (tools/gen_captures.py, MANIFEST.tsv) with
//    config/policy.example.yaml, checksums verified.
//
// Feed: the whole capture enters through the subscriber port (net_pcap0's rx_pcap) and what is
// forwarded leaves through the internet port (net_pcap1's tx_pcap), so both directions of
// every flow keep their relative order. Each flow is then compared as a sequence (flows on
// different workers interleave differently, a flow never). The worker takes a flow's internet
// address from its first packet's destination (the subscriber port is the client side), and
// this test computes the expected verdicts the same way.

#include <doctest/doctest.h>
#include <pcap/pcap.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "dataplane/flow/classifier.hpp"
#include "dataplane/offline/capture_flows.hpp"
#include "dataplane/packet/frame.hpp"
#include "dataplane/packet/icmp.hpp"
#include "dataplane/telemetry/json.hpp"

namespace {

namespace fs = std::filesystem;
using frame = std::vector<std::uint8_t>;

std::vector<frame> read_pcap(const fs::path& path) {
  char err[PCAP_ERRBUF_SIZE] = {};
  std::vector<frame> out;
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  REQUIRE_MESSAGE(p != nullptr, path.string() << ": " << err);
  pcap_pkthdr* h = nullptr;
  const u_char* data = nullptr;
  while (pcap_next_ex(p, &h, &data) == 1) out.emplace_back(data, data + h->caplen);
  pcap_close(p);
  return out;
}

void write_empty_pcap(const fs::path& path) {
  pcap_t* p = pcap_open_dead(DLT_EN10MB, 65535);
  pcap_dumper_t* d = pcap_dump_open(p, path.c_str());
  REQUIRE(d != nullptr);
  pcap_dump_close(d);
  pcap_close(p);
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

struct scratch_dir {
  fs::path path;
  scratch_dir() {
    path = fs::temp_directory_path() / ("sluice-it-" + std::to_string(::getpid()));
    fs::create_directories(path);
    write_empty_pcap(path / "empty.pcap");
  }
  ~scratch_dir() {
    std::error_code ec;
    if (std::getenv("SLUICE_KEEP_TEST_DIR") == nullptr) fs::remove_all(path, ec);
  }
};

struct run_result {
  int exit_code = -1;
  std::vector<frame> out_internet;    // tx of the internet port
  std::vector<frame> out_subscriber;  // tx of the subscriber port (answers to the sender)
  sluice::telemetry::dataplane_stats stats;
  std::string log;
};

std::string lcores_arg() {
  // Two workers (software dispatch and tx funnels on net_pcap) plus the main lcore, mapped
  // onto whatever CPUs the machine has.
  const long cpus = std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN));
  return cpus >= 3 ? "0-2" : "(0-2)@(0-" + std::to_string(cpus - 1) + ")";
}

run_result run_dataplane(const scratch_dir& dir, const fs::path& input, const std::string& args) {
  const fs::path out0 = dir.path / "out0.pcap", out1 = dir.path / "out1.pcap",
                 json = dir.path / "stats.json", log = dir.path / "log.txt";
  fs::remove(out0);
  fs::remove(out1);
  fs::remove(json);
  std::ostringstream cmd;
  cmd << "'" << SLUICE_DATAPLANE_BIN << "' --no-huge --no-pci --no-shconf --no-telemetry -m 768"
      << " --file-prefix=sluice-it-" << ::getpid()
      << " --lcores '" << lcores_arg() << "' --log-level=warning"
      << " --vdev 'net_pcap0,rx_pcap=" << input.string() << ",tx_pcap=" << out0.string() << "'"
      << " --vdev 'net_pcap1,rx_pcap=" << (dir.path / "empty.pcap").string()
      << ",tx_pcap=" << out1.string() << "'"
      << " -- --offline --subscriber-port 0 --internet-port 1 --metrics none --mgmt none"
      << " --flow-table-size 4096 --reassembly-buffers 256 --frag-table-size 256"
      << " --stats-json " << json.string() << " " << args << " > " << log.string() << " 2>&1";
  run_result r;
  const int rc = std::system(cmd.str().c_str());
  // DPDK leaves its runtime directory behind (even with --no-shconf): one per test process.
  std::error_code ec;
  fs::remove_all(fs::path("/var/run/dpdk") / ("sluice-it-" + std::to_string(::getpid())), ec);
  r.exit_code = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  r.log = read_file(log);
  if (r.exit_code != 0) return r;
  r.out_subscriber = read_pcap(out0);
  r.out_internet = read_pcap(out1);
  r.stats = sluice::telemetry::from_json(read_file(json));
  return r;
}

std::uint64_t event(const sluice::telemetry::dataplane_stats& s, const std::string& name) {
  for (const auto& [k, v] : s.engine_events) {
    if (k == name) return v;
  }
  FAIL("no engine event " << name);
  return 0;
}

// Packets of one flow stay in order through the node; packets of different flows need not.
std::string group_of(const frame& f) {
  const auto info = sluice::packet::parse_frame(sluice::packet::bytes(f.data(), f.size()));
  if (info.outcome == sluice::packet::frame_outcome::ok) {
    sluice::flow::direction dir{};
    const auto k = sluice::offline::make_key(info, dir);
    return "flow " + std::to_string(k.proto) + " " + sluice::offline::to_string(k.a) + ":" +
           std::to_string(k.port_a) + " " + sluice::offline::to_string(k.b) + ":" +
           std::to_string(k.port_b);
  }
  if (info.ip_version == 4 || info.ip_version == 6) {
    auto a = sluice::offline::to_string(info.src), b = sluice::offline::to_string(info.dst);
    if (b < a) std::swap(a, b);
    return "ip " + a + " " + b;
  }
  return "other";
}

std::map<std::string, std::vector<frame>> by_group(const std::vector<frame>& frames) {
  std::map<std::string, std::vector<frame>> out;
  for (const frame& f : frames) out[group_of(f)].push_back(f);
  return out;
}

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::string cell;
  std::istringstream in(line);
  while (std::getline(in, cell, '\t')) out.push_back(cell);
  return out;
}

bool plausible_domain(const std::string& n) {
  if (n.size() < 3 || n.size() > 200 || n.find('.') == std::string::npos) return false;
  if (n.front() == '.' || n.back() == '.' || n.front() == '-') return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
  }) && !std::all_of(n.begin(), n.end(), [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

struct capture_policy {
  std::vector<std::string> addresses;  // blocked servers (exact)
  std::string name;                    // blocked name ("" none)
};

capture_policy policy_from_truth(const fs::path& truth) {
  capture_policy p;
  std::ifstream in(truth);
  std::string line;
  std::vector<std::string> header;
  std::vector<std::string> names;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    auto cells = split_tabs(line);
    if (header.empty()) {
      header = cells;
      continue;
    }
    auto col = [&](const std::string& name) -> std::string {
      for (std::size_t i = 0; i < header.size() && i < cells.size(); ++i) {
        if (header[i] == name) return cells[i];
      }
      return "";
    };
    if (col("telegram_ip") == "yes") {
      const std::string server = col("server");
      if (std::find(p.addresses.begin(), p.addresses.end(), server) == p.addresses.end() &&
          p.addresses.size() < 4) {
        p.addresses.push_back(server);
      }
    }
    const std::string n = col("names");
    if (n != "-" && !n.empty()) names.push_back(n.substr(0, n.find(',')));
  }
  if (p.addresses.empty()) {
    for (std::string n : names) {
      std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
      if (plausible_domain(n)) {
        p.name = n;
        break;
      }
    }
  }
  return p;
}

void write_policy(const fs::path& path, const capture_policy& p) {
  std::ostringstream out;
  out << "revision: 1\ngenerated_at: 2026-01-01T00:00:00Z\n";
  if (p.addresses.empty() && p.name.empty()) out << "rules: []\n";
  else out << "rules:\n";
  if (!p.addresses.empty()) {
    out << "  - id: by-address\n    directive: TEST-1\n    action: drop\n    prefixes: [";
    for (std::size_t i = 0; i < p.addresses.size(); ++i) {
      out << (i ? ", " : "") << p.addresses[i]
          << (p.addresses[i].find(':') != std::string::npos ? "/128" : "/32");
    }
    out << "]\n";
  }
  if (!p.name.empty()) {
    out << "  - id: by-name\n    directive: TEST-1\n    action: drop\n    domains: [\"" << p.name
        << "\"]\n";
  }
  std::ofstream(path) << out.str();
}

// What the node must forward, given the policy: see the file comment.
std::vector<frame> expected_forward(const fs::path& capture, const capture_policy& p,
                                    const std::vector<frame>& input) {
  sluice::flow::buffer_pool pool(1024, 16384);
  sluice::flow::classifier::config cfg;
  cfg.verify_checksums = false;
  sluice::flow::classifier cls(pool, cfg);
  // Flows judged per message (DNS over UDP, SSDP), and the frame from which each is pinned: its
  // first message naming the blocked name stops it and every later frame of it, both ways, as
  // the worker does (dataplane/engine/FLOW_SEMANTICS.md).
  std::set<sluice::offline::flow_key> per_message;
  std::map<sluice::offline::flow_key, std::uint64_t> pinned_from;
  const auto classified = sluice::offline::classify_capture(
      capture.string(), cls,
      [&](std::uint64_t no, const sluice::packet::frame_info&,
          const sluice::offline::flow_record* rec, const sluice::flow::classify_result& r) {
        if (rec == nullptr) return;
        if (rec->state.protocol == sluice::flow::flow_protocol::dns_udp ||
            rec->state.protocol == sluice::flow::flow_protocol::ssdp) {
          per_message.insert(rec->key);
        }
        for (std::uint8_t i = 0; i < r.name_count; ++i) {
          std::string n(r.names[i]);
          std::transform(n.begin(), n.end(), n.begin(),
                         [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
          if (!n.empty() && n.back() == '.') n.pop_back();
          if (!p.name.empty() && n == p.name && per_message.count(rec->key)) {
            pinned_from.emplace(rec->key, no);
          }
        }
      });
  REQUIRE_MESSAGE(classified.error.empty(), classified.error);

  std::set<sluice::packet::ip_address> blocked;
  for (const auto& a : p.addresses) blocked.insert(sluice::offline::parse_address(a));
  std::map<sluice::offline::flow_key, sluice::packet::ip_address> internet_of;
  // Whether frame `no` of a flow already seen is stopped.
  auto stopped = [&](const sluice::offline::flow_key& key, std::uint64_t no) {
    const auto in = internet_of.find(key);
    if (in != internet_of.end() && blocked.count(in->second)) return true;
    if (per_message.count(key)) {
      const auto pin = pinned_from.find(key);
      return pin != pinned_from.end() && no >= pin->second;
    }
    if (p.name.empty()) return false;
    const auto it = classified.flows.find(key);
    return it != classified.flows.end() && it->second.names.count(p.name) &&
           no >= it->second.named_at_frame;
  };
  // Not TCP/UDP: by its internet side's address (its destination: everything enters through the
  // subscriber port) and, for an ICMP error, the flow or the addresses it quotes; never ICMPv6
  // neighbour discovery (dataplane/engine/FLOW_SEMANTICS.md).
  auto other_l4_stopped = [&](const frame& f, const sluice::packet::frame_info& info,
                              std::uint64_t no) {
    namespace pk = sluice::packet;
    pk::icmp_info m;
    if ((info.ip_version == 4 && info.l4_proto == pk::ipproto_icmp) ||
        (info.ip_version == 6 && info.l4_proto == pk::ipproto_icmpv6)) {
      const std::size_t end = std::size_t{info.l3_offset} + info.l3_length;
      if (info.l4_offset <= end && end <= f.size()) {
        m = pk::parse_icmp(pk::bytes(f.data() + info.l4_offset, end - info.l4_offset),
                           info.ip_version);
      }
      if (info.ip_version == 6 && m.outcome == pk::icmp_outcome::not_error &&
          pk::icmpv6_is_neighbour_discovery(m.type)) {
        return false;
      }
    }
    if (blocked.count(info.dst)) return true;
    if (!m.error || m.outcome != pk::icmp_outcome::quoted) return false;
    const pk::quoted_packet& q = m.quoted;
    if (q.has_ports && (q.l4_proto == 6 || q.l4_proto == 17)) {
      pk::frame_info qi = info;
      qi.ip_version = q.ip_version;
      qi.l4_proto = q.l4_proto;
      qi.src = q.src;
      qi.dst = q.dst;
      qi.src_port = q.src_port;
      qi.dst_port = q.dst_port;
      sluice::flow::direction qdir{};
      const auto key = sluice::offline::make_key(qi, qdir);
      if (internet_of.count(key)) return stopped(key, no);
    }
    return blocked.count(q.src) != 0;  // the quoted packet came from the internet side
  };
  // The flow of each fragmented datagram, from its first fragment (the one with the ports).
  std::map<std::tuple<sluice::packet::ip_address, sluice::packet::ip_address, std::uint32_t,
                      std::uint8_t>,
           sluice::offline::flow_key>
      datagram_flow;
  for (const frame& f : input) {
    const auto info = sluice::packet::parse_frame(sluice::packet::bytes(f.data(), f.size()));
    if (info.outcome != sluice::packet::frame_outcome::ok || !info.is_fragment) continue;
    sluice::flow::direction dir{};
    datagram_flow.emplace(std::make_tuple(info.src, info.dst, info.frag_id, info.l4_proto),
                          sluice::offline::make_key(info, dir));
  }
  std::vector<frame> out;
  std::uint64_t no = 0;
  for (const frame& f : input) {
    ++no;
    const auto info = sluice::packet::parse_frame(sluice::packet::bytes(f.data(), f.size()));
    if (info.outcome == sluice::packet::frame_outcome::fragment) {
      // A pinned DNS flow's reassembled datagram takes all its fragments with it.
      const auto d = datagram_flow.find({info.src, info.dst, info.frag_id, info.l4_proto});
      if (d != datagram_flow.end() && per_message.count(d->second)) {
        if (!stopped(d->second, no)) out.push_back(f);
      } else if (!blocked.count(info.dst)) {
        out.push_back(f);
      }
      continue;
    }
    if (info.outcome == sluice::packet::frame_outcome::other_l4) {
      if (!other_l4_stopped(f, info, no)) out.push_back(f);
      continue;
    }
    if (info.outcome != sluice::packet::frame_outcome::ok) {
      out.push_back(f);
      continue;
    }
    sluice::flow::direction dir{};
    const auto key = sluice::offline::make_key(info, dir);
    internet_of.emplace(key, info.dst);
    if (!stopped(key, no)) out.push_back(f);
  }
  return out;
}

std::vector<fs::path> real_captures() {
  std::vector<fs::path> out;
  const fs::path dir = fs::path(SLUICE_TESTDATA_DIR) / "captures";
  std::ifstream manifest(dir / "MANIFEST.tsv");
  std::string line;
  while (std::getline(manifest, line)) {
    const auto cells = split_tabs(line);
    if (cells.size() < 4 || cells[0] == "file") continue;
    // DPDK's pcap driver hands frames on as Ethernet; other link types have *.eth.pcap twins.
    if (cells[3] != "ether") continue;
    if (fs::exists(dir / cells[0])) out.push_back(dir / cells[0]);
  }
  return out;
}

}  // namespace

TEST_CASE("capture_replay: every capture, policy from its truth file, judged flow by flow") {
  scratch_dir dir;
  const auto captures = real_captures();
  REQUIRE(captures.size() >= 20);
  for (const fs::path& capture : captures) {
    CAPTURE(capture.filename().string());
    const capture_policy p = policy_from_truth(capture.string() + ".truth.tsv");
    const fs::path policy = dir.path / "policy.yaml";
    write_policy(policy, p);
    const std::vector<frame> input = read_pcap(capture);
    const run_result r =
        run_dataplane(dir, capture, "--no-checksum-check --policy " + policy.string());
    REQUIRE_MESSAGE(r.exit_code == 0, r.log);

    const auto want = by_group(expected_forward(capture, p, input));
    const auto got = by_group(r.out_internet);
    std::size_t bad = 0;
    for (const auto& [g, frames] : want) {
      const auto it = got.find(g);
      const std::size_t n = it == got.end() ? 0 : it->second.size();
      if (it == got.end() || it->second != frames) {
        if (++bad <= 5) {
          MESSAGE(capture.filename().string() << ": " << g << ": expected " << frames.size()
                                              << " frames in order, got " << n);
        }
      }
    }
    for (const auto& [g, frames] : got) {
      if (!want.count(g) && ++bad <= 5) {
        MESSAGE(capture.filename().string() << ": " << g << ": " << frames.size()
                                            << " frames forwarded that should not be");
      }
    }
    CHECK_MESSAGE(bad == 0, "address rules " << p.addresses.size() << ", name '" << p.name << "'");
    CHECK(r.out_subscriber.empty());  // action drop: no answers, nothing comes back

    // The counters agree with the files.
    const auto& s = r.stats;
    const std::uint64_t received = event(s, "packets_in") + event(s, "packets_out");
    CHECK(received == input.size());
    CHECK(event(s, "forwarded") == r.out_internet.size());
    CHECK(received == event(s, "forwarded") + event(s, "dropped_by_rule"));
    CHECK(event(s, "tx_refused") == 0);
  }
}

namespace {

struct manifest_row {
  std::string file;
  std::uint64_t by_frame = 0;
  bool block = false;
  bool needs_reassembly = false;
};

}  // namespace

TEST_CASE("generated_evasion: synthetic evasion captures with the example Telegram policy") {
  scratch_dir dir;
  const fs::path gen = SLUICE_GENERATED_DIR;
  std::ifstream manifest(gen / "MANIFEST.tsv");
  REQUIRE(manifest);
  std::vector<manifest_row> rows;
  std::string line;
  while (std::getline(manifest, line)) {
    const auto c = split_tabs(line);
    if (c.size() < 6 || c[0] == "file") continue;
    rows.push_back({c[0], std::stoull(c[3]), c[4] == "yes",
                    c[5].find("needs IP reassembly") != std::string::npos});
  }
  REQUIRE(rows.size() >= 20);
  const std::string policy = std::string(SLUICE_SOURCE_DIR) + "/config/policy.example.yaml";
  for (const manifest_row& row : rows) {
    CAPTURE(row.file);
    const std::vector<frame> input = read_pcap(gen / row.file);
    const run_result r = run_dataplane(dir, gen / row.file, "--policy " + policy);
    REQUIRE_MESSAGE(r.exit_code == 0, r.log);
    // Our answers (resets) are new frames; what matters is which originals went through.
    std::vector<frame> passed;
    for (const frame& f : r.out_internet) {
      if (std::find(input.begin(), input.end(), f) != input.end()) passed.push_back(f);
    }
    bool ok = false;
    if (row.block) {
      // A prefix of the flow, ending before the frame that completes the request.
      ok = passed.size() < row.by_frame &&
           std::equal(passed.begin(), passed.end(), input.begin());
    } else {
      ok = passed == input;
    }
    // DNS rows too: the blocked query pins its flow, so its answer is dropped with it.
    // Rows marked "needs IP reassembly" (ip_fragments*) are strict: the worker reassembles.
    CHECK_MESSAGE(ok, row.file << ": block=" << row.block << " by_frame=" << row.by_frame
                               << " needs_reassembly=" << row.needs_reassembly
                               << ": forwarded " << passed.size() << " of " << input.size());
    const auto& s = r.stats;
    const std::uint64_t received = event(s, "packets_in") + event(s, "packets_out");
    CHECK(received == input.size());
    CHECK(received == event(s, "forwarded") + event(s, "dropped_by_rule"));
  }
}
