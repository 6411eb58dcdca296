// Runs the classifier over every capture in ../shared/testdata/captures and checks each flow
// against the capture's ground truth (*.truth.tsv, decoded by tshark): every name a flow carries
// (TLS SNI, QUIC SNI, gQUIC SNI, HTTP Host, DNS question) must be extracted exactly, ClientHellos
// without SNI must be seen as nameless, and flows the truth gives no name must get none.
// A mismatch fails unless the table `explained` below names the flow and the reason.

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "dataplane/offline/capture_flows.hpp"
#include "tests/unit/support/text.hpp"

namespace {

namespace fs = std::filesystem;
using sluice::test::lower;
using sluice::test::split;
using sluice::flow::flow_status;
using sluice::flow::name_kind;

struct truth_row {
  std::string l4, client, server, kinds, names, ech, esni;
  std::uint16_t cport = 0, sport = 0;
};

struct explanation {
  const char* capture;
  std::uint16_t client_port;  // identifies the flow within the capture
  const char* reason;
};

// Flows whose truth we knowingly do not reproduce, each with its reason. None today: every
// named flow in the shared captures is matched exactly.
const std::vector<explanation> explained = {};

const explanation* find_explanation(const std::string& capture, std::uint16_t port) {
  for (const auto& e : explained) {
    if (capture == e.capture && port == e.client_port) return &e;
  }
  return nullptr;
}

std::vector<truth_row> read_truth(const fs::path& path) {
  std::vector<truth_row> rows;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#' || line.rfind("l4\t", 0) == 0) continue;
    const auto f = split(line, '\t');
    REQUIRE_MESSAGE(f.size() >= 14, "short truth row in " << path << ": " << line);
    if (f[0] != "tcp" && f[0] != "udp") continue;  // ICMP, unreassembled fragments: no names
    truth_row r;
    r.l4 = f[0];
    r.client = f[1];
    r.cport = static_cast<std::uint16_t>(std::stoi(f[2]));
    r.server = f[3];
    r.sport = static_cast<std::uint16_t>(std::stoi(f[4]));
    r.kinds = f[9];
    r.names = f[10];
    r.ech = f[12];
    r.esni = f[13];
    rows.push_back(r);
  }
  return rows;
}

sluice::offline::flow_key key_of(const truth_row& r) {
  sluice::packet::frame_info info;
  info.l4_proto = r.l4 == "tcp" ? 6 : 17;
  info.src = sluice::offline::parse_address(r.client);
  info.dst = sluice::offline::parse_address(r.server);
  info.src_port = r.cport;
  info.dst_port = r.sport;
  sluice::flow::direction dir{};
  return sluice::offline::make_key(info, dir);
}

name_kind expected_kind(const std::string& kinds) {
  if (kinds == "tls_sni") return name_kind::tls_sni;
  if (kinds == "quic_sni") return name_kind::quic_sni;
  if (kinds == "gquic_sni") return name_kind::gquic_sni;
  if (kinds == "http_host") return name_kind::http_host;
  if (kinds == "dns_qname") return name_kind::dns_qname;
  return name_kind::none;
}

// tshark's http.host is the header as sent; the classifier reports the host the request names,
// without a ":port" (a rule for telegram.org must stop "Host: telegram.org:443").
std::string without_port(const std::string& authority) {
  const std::size_t colon = authority.rfind(':');
  if (colon == std::string::npos || authority.find(']', colon) != std::string::npos) return authority;
  for (std::size_t i = colon + 1; i < authority.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(authority[i]))) return authority;
  }
  return authority.substr(0, colon);
}

std::string join(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
  return out.empty() ? "-" : out;
}

}  // namespace

TEST_CASE("every capture's names match its ground truth") {
  const fs::path dir = fs::path(SLUICE_TESTDATA_DIR) / "captures";
  REQUIRE_MESSAGE(fs::is_directory(dir), "test captures not found at " << dir);

  std::vector<fs::path> truths;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().string().ends_with(".truth.tsv")) truths.push_back(e.path());
  }
  std::sort(truths.begin(), truths.end());
  REQUIRE(truths.size() >= 30);

  sluice::flow::buffer_pool pool(1024, 16384);
  // Most captures were taken on an endpoint: its outgoing packets carry checksum-offload
  // artefacts, so the fake-packet checksum filter is off for them (as in tshark's default).
  sluice::flow::classifier::config cfg;
  cfg.verify_checksums = false;
  sluice::flow::classifier cls(pool, cfg);
  std::size_t total_named = 0, total_matched = 0, total_explained = 0, total_failed = 0;
  // Flows per kind of name the truth gives them (nameless ClientHellos count as their own kind),
  // and how many of those matched: the table shows which classes each capture exercises.
  std::map<std::string, std::pair<std::size_t, std::size_t>> total_by_kind;

  for (const auto& truth_path : truths) {
    std::string capture = truth_path.filename().string();
    capture.resize(capture.size() - std::string(".truth.tsv").size());
    CAPTURE(capture);
    const auto result = sluice::offline::classify_capture((dir / capture).string(), cls);
    REQUIRE_MESSAGE(result.error.empty(), result.error);
    CHECK(pool.available() == pool.capacity());  // every reassembly buffer came back

    std::size_t named = 0, matched = 0;
    std::map<std::string, std::pair<std::size_t, std::size_t>> by_kind;  // kind -> (flows, matched)
    for (const auto& row : read_truth(truth_path)) {
      const std::size_t matched_before = matched, named_before = named;
      const auto it = result.flows.find(key_of(row));
      const sluice::offline::flow_record* rec = it == result.flows.end() ? nullptr : &it->second;
      std::set<std::string> expected;
      if (row.names != "-") {
        for (auto& n : split(row.names, ',')) {
          expected.insert(row.kinds == "http_host" ? without_port(lower(n)) : lower(n));
        }
      }
      const std::set<std::string> got = rec ? rec->names : std::set<std::string>{};
      std::string problem;
      const name_kind want = expected_kind(row.kinds);
      if (want != name_kind::none) {
        ++named;
        if (got != expected) {
          problem = "names " + join(got) + " != truth " + join(expected);
        } else if (rec->kind != want) {
          problem = std::string("kind ") + to_string(rec->kind) + " != truth " + row.kinds;
        } else if (row.kinds == "tls_sni" && (rec->has_ech != (row.ech == "yes") ||
                                              rec->has_esni != (row.esni == "yes"))) {
          problem = "ECH/ESNI flags differ from truth";
        } else {
          ++matched;
        }
      } else if (row.kinds == "tls_ch_nosni" || row.kinds == "quic_ch_nosni") {
        ++named;
        if (!rec || rec->state.status != flow_status::nameless || !got.empty()) {
          problem = std::string("expected a nameless ClientHello, got status ") +
                    (rec ? to_string(rec->state.status) : "no flow") + " names " + join(got);
        } else if (rec->has_esni != (row.esni == "yes")) {
          problem = "ESNI flag differs from truth";
        } else {
          ++matched;
        }
      } else if (!got.empty()) {
        problem = "names " + join(got) + " where truth has none";
      }
      if (named != named_before) {
        auto& k = by_kind[row.kinds];
        ++k.first;
        k.second += matched - matched_before;
      }
      if (problem.empty()) continue;
      const auto* why = find_explanation(capture, row.cport);
      const std::string flow = row.l4 + " " + row.client + ":" + std::to_string(row.cport) +
                               " -> " + row.server + ":" + std::to_string(row.sport);
      if (why) {
        ++total_explained;
        MESSAGE("explained: " << capture << " " << flow << ": " << problem << " (" << why->reason
                              << ")");
      } else {
        ++total_failed;
        FAIL_CHECK(capture << " " << flow << ": " << problem);
      }
    }
    std::string kinds;
    for (const auto& [kind, n] : by_kind) {
      kinds += " " + kind + "=" + std::to_string(n.second) + "/" + std::to_string(n.first);
      total_by_kind[kind].first += n.first;
      total_by_kind[kind].second += n.second;
    }
    std::printf("%-58s %3zu/%-3zu named flows matched:%s\n", capture.c_str(), matched, named,
                kinds.c_str());
    total_named += named;
    total_matched += matched;
  }
  std::printf("all captures: %zu/%zu named flows matched, %zu explained, %zu failed\n",
              total_matched, total_named, total_explained, total_failed);
  for (const auto& [kind, n] : total_by_kind) {
    std::printf("  %-16s %4zu/%-4zu matched\n", kind.c_str(), n.second, n.first);
  }
}
