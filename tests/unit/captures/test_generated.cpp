// Runs the classifier over the synthetic captures tools/gen_captures.py writes (evasion and
// precision cases no real capture has) and checks each against its MANIFEST.tsv row: the capture
// holds exactly one TCP/UDP flow, every frame parses, the flow gets exactly the expected name (or
// is nameless / unrecognized) and learns it exactly at the frame that completes the real request.
//
// Two groups are held to something else:
//  - rows whose notes say "needs IP reassembly": the classifier sees only IP fragments, which the
//    fast path reassembles before classifying; here they must merely not be named wrongly;
//  - the fake_* rows (a decoy ClientHello injected before the real one): the decoy must be
//    ignored and the real request name the flow.

#include <doctest/doctest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "dataplane/offline/capture_flows.hpp"
#include "tests/unit/support/text.hpp"

namespace {

namespace fs = std::filesystem;
using sluice::flow::flow_status;
using sluice::flow::name_kind;
using sluice::packet::frame_outcome;

struct manifest_row {
  std::string file;
  std::string description;
  std::string expect;  // "name:<name>", "nameless" or "unrecognized"
  std::uint64_t by_frame = 0;
  bool policy_block = false;
  std::string notes;
};

const fs::path generated_dir{SLUICE_GENERATED_DIR};
using sluice::test::split;

std::vector<manifest_row> read_manifest() {
  std::vector<manifest_row> rows;
  std::ifstream in(generated_dir / "MANIFEST.tsv");
  REQUIRE_MESSAGE(in.good(), "no manifest in " << generated_dir << " (run gen_captures.py)");
  std::string line;
  REQUIRE(std::getline(in, line));
  REQUIRE(line == "file\tdescription\texpect\tby_frame\tpolicy_block\tnotes");
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto f = split(line, '\t');
    REQUIRE_MESSAGE(f.size() == 6, "bad manifest row: " << line);
    manifest_row r;
    r.file = f[0];
    r.description = f[1];
    r.expect = f[2];
    r.by_frame = std::stoull(f[3]);
    REQUIRE_MESSAGE((f[4] == "yes" || f[4] == "no"), "bad policy_block in: " << line);
    r.policy_block = f[4] == "yes";
    r.notes = f[5];
    rows.push_back(r);
  }
  return rows;
}

bool needs_ip_reassembly(const manifest_row& r) {
  return r.notes.find("needs IP reassembly") != std::string::npos;
}
bool is_fake_case(const manifest_row& r) { return r.file.rfind("fake_", 0) == 0; }
bool is_tunnel_case(const manifest_row& r) {
  return r.file.find("gtpu_") != std::string::npos || r.file.find("vxlan_") != std::string::npos;
}

// "name:a" or, for a request that names several hosts in one frame, "name:a,b".
std::set<std::string> expected_names(const manifest_row& r) {
  std::set<std::string> out;
  if (r.expect.rfind("name:", 0) != 0) return out;
  for (auto& n : sluice::test::split(r.expect.substr(5), ',')) out.insert(n);
  return out;
}

// The manifest has no kind column; the generator's file names say which protocol carries it.
name_kind expected_kind(const manifest_row& r) {
  if (r.file.rfind("http_", 0) == 0) return name_kind::http_host;
  if (r.file.rfind("dns_", 0) == 0) return name_kind::dns_qname;
  if (r.file.rfind("quic_", 0) == 0) return name_kind::quic_sni;
  return name_kind::tls_sni;
}

// The policy the manifest's policy_block column assumes: telegram.org, *.telegram.org, t.me,
// *.t.me, with label boundaries, case-insensitive, one trailing dot ignored.
bool blocked_by_name(std::string name) {
  name = sluice::test::lower(std::move(name));
  if (name.ends_with('.')) name.pop_back();
  return name == "telegram.org" || name == "t.me" || name.ends_with(".telegram.org") ||
         name.ends_with(".t.me");
}

std::string join(const std::set<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ",") + n;
  return out.empty() ? "-" : out;
}

struct replay {
  sluice::offline::capture_result result;
  // First frame at which the classifier reported each status for the (single) flow.
  std::map<flow_status, std::uint64_t> first_status_frame;
  std::uint64_t ip_fragments = 0;  // frames carrying an IP fragment, first one included
};

replay run(const manifest_row& row, sluice::flow::classifier& cls) {
  replay out;
  const auto observer = [&out](std::uint64_t frame_no, const sluice::packet::frame_info& info,
                               const sluice::offline::flow_record* rec,
                               const sluice::flow::classify_result& res) {
    if (rec != nullptr) out.first_status_frame.try_emplace(res.status, frame_no);
    if (info.is_fragment) ++out.ip_fragments;
  };
  out.result = sluice::offline::classify_capture((generated_dir / row.file).string(), cls,
                                                 observer);
  return out;
}

std::string describe_flows(const sluice::offline::capture_result& result) {
  std::string out;
  for (const auto& [key, rec] : result.flows) {
    out += std::string(key.proto == 6 ? "tcp " : key.proto == 17 ? "udp " : "other ") +
           sluice::offline::to_string(key.a) + ":" + std::to_string(key.port_a) + " <-> " +
           sluice::offline::to_string(key.b) + ":" + std::to_string(key.port_b) + " names " +
           join(rec.names) + "; ";
  }
  return out.empty() ? "none" : out;
}

// Every check a row gets; failures carry the file name via CAPTURE.
void check_row(const manifest_row& row, sluice::flow::classifier& cls,
               sluice::flow::buffer_pool& pool) {
  CAPTURE(row.file);
  CAPTURE(row.description);
  const replay rp = run(row, cls);
  const auto& result = rp.result;
  REQUIRE_MESSAGE(result.error.empty(), result.error);
  CHECK(pool.available() == pool.capacity());  // every reassembly buffer came back
  REQUIRE(result.stats.frames >= row.by_frame);

  const auto count = [&](frame_outcome o) {
    return result.stats.outcomes[static_cast<std::size_t>(o)];
  };
  if (needs_ip_reassembly(row)) {
    // The first fragment still shows its TCP header (outcome ok), the other two do not; when the
    // fragmented datagram is a UDP tunnel's, the first is held too (its tunnel header and inner
    // packet are only whole after reassembly).
    const std::uint64_t held = is_tunnel_case(row) ? 3 : 2;
    CHECK(rp.ip_fragments == 3);
    CHECK(count(frame_outcome::fragment) == held);
    CHECK(count(frame_outcome::ok) == result.stats.frames - held);
  } else {
    CHECK_MESSAGE(count(frame_outcome::ok) == result.stats.frames,
                  "some frames did not parse to L4");
  }

  CHECK_MESSAGE(result.flows.size() == 1, "flows: " << describe_flows(result));
  if (result.flows.empty()) return;
  const auto& rec = result.flows.begin()->second;
  const auto status = rec.state.status;

  if (needs_ip_reassembly(row)) {
    // Only the fast path's IP reassembly can reveal the name; alone, the classifier must not
    // make one up from the handshake, the server's flight or the fragments.
    CHECK_MESSAGE(rec.names.empty(), "wrongly named: " << join(rec.names));
    CHECK(rec.named_at_frame == 0);
    CHECK(status != flow_status::named);
    return;
  }

  if (const auto names = expected_names(row); !names.empty()) {
    CHECK_MESSAGE(rec.names == names,
                  "names " << join(rec.names) << " != expected " << join(names));
    CHECK(rec.kind == expected_kind(row));
    CHECK_MESSAGE(rec.named_at_frame == row.by_frame,
                  "named at frame " << rec.named_at_frame << ", expected " << row.by_frame);
    CHECK(status == flow_status::named);
    return;
  }

  const flow_status want = row.expect == "nameless" ? flow_status::nameless
                                                    : flow_status::unrecognized;
  CHECK_MESSAGE(rec.names.empty(), "names " << join(rec.names) << " where none expected");
  CHECK_MESSAGE(status == want, "status " << to_string(status) << ", expected " << row.expect);
  const auto it = rp.first_status_frame.find(want);
  const std::uint64_t at = it == rp.first_status_frame.end() ? 0 : it->second;
  CHECK_MESSAGE(at == row.by_frame, row.expect << " at frame " << at << ", expected "
                                               << row.by_frame);
}

}  // namespace

TEST_CASE("generated manifest is complete and self-consistent") {
  const auto rows = read_manifest();
  CHECK(rows.size() == 41);
  std::set<std::string> files;
  for (const auto& row : rows) {
    CAPTURE(row.file);
    CHECK(files.insert(row.file).second);
    CHECK(fs::is_regular_file(generated_dir / row.file));
    CHECK(row.by_frame >= 1);
    const auto names = expected_names(row);
    CHECK((!names.empty() || row.expect == "nameless" || row.expect == "unrecognized"));
    // policy_block follows from the names under the assumed policy (any of them blocked blocks
    // the flow), or is said to be by address.
    const bool by_address = row.notes.find("by address") != std::string::npos;
    const bool by_name = std::any_of(names.begin(), names.end(), blocked_by_name);
    CHECK(row.policy_block == (by_name || by_address));
  }
  // The precision controls are there and are not blocked.
  for (const char* f : {"allowed_example_org.pcap", "allowed_nottelegram_org.pcap",
                        "allowed_telegram_org_example_com.pcap", "allowed_at_me.pcap",
                        "allowed_gtpu_example_org.pcap"}) {
    CAPTURE(f);
    CHECK(files.count(f) == 1);
  }
}

TEST_CASE("generated captures are classified as their manifest says") {
  sluice::flow::buffer_pool pool(64, 16384);
  sluice::flow::classifier cls(pool);
  std::vector<std::string> deferred;
  std::size_t checked = 0;
  for (const auto& row : read_manifest()) {
    if (is_fake_case(row)) continue;  // see the fake test case below
    if (needs_ip_reassembly(row)) deferred.push_back(row.file);
    check_row(row, cls, pool);
    ++checked;
  }
  CHECK(checked == 38);
  CHECK(deferred.size() == 3);
  for (const auto& f : deferred) {
    MESSAGE(f << ": only checked not to be wrongly named (needs IP reassembly, done by the "
                 "fast path before the classifier)");
  }
}

// Injected fakes: a bad checksum, a TTL too low to reach the server, a sequence number outside
// the window. Without the classifier's defence (before fced2dd) the first two named the flow
// example.org at frame 4.
TEST_CASE("generated captures: injected fake ClientHellos are ignored") {
  sluice::flow::buffer_pool pool(64, 16384);
  sluice::flow::classifier cls(pool);
  std::size_t checked = 0;
  for (const auto& row : read_manifest()) {
    if (!is_fake_case(row)) continue;
    check_row(row, cls, pool);
    ++checked;
  }
  CHECK(checked == 3);
}
