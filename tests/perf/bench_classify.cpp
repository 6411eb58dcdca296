// Cycles per event for the classification core, on frames taken from real captures:
//   established-flow packet  parse_frame + a final flow's early exit
//   SYN                      parse_frame + classifier (base sequence recorded)
//   ClientHello parse+match  parse_frame + classifier (checksum check, in-place parse) + policy
//                            name match
//   QUIC Initial             parse_frame + classifier (header protection, AES-GCM, CRYPTO
//                            frames, ClientHello) + policy name match; with the flow's keys
//                            cached, and for a new flow (HKDF key derivation included)
// Reports numbers; asserts nothing about time. Usage: bench_classify [TESTDATA_DIR] [POLICY].

#include <pcap/pcap.h>
#include <x86intrin.h>

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "dataplane/flow/classifier.hpp"
#include "tests/unit/support/packet_builder.hpp"
#include "dataplane/match/offline_eal.hpp"
#include "dataplane/match/policy_config.hpp"

namespace {

using sluice::packet::bytes;

// The captures were taken on the clients, whose outgoing packets carry checksum-offload
// artefacts; on the wire they would be correct. Fix them so the live checksum filter passes.
void fix_checksum(std::vector<std::uint8_t>& frame) {
  const auto info = sluice::packet::parse_frame(frame);
  if (info.outcome != sluice::packet::frame_outcome::ok) return;
  const auto l4_end = std::size_t{info.payload_offset} + info.payload_length;
  sluice::test::buf l4(frame.begin() + info.l4_offset, frame.begin() + static_cast<long>(l4_end));
  sluice::test::fix_l4_checksum(l4, info.l4_proto, info.src, info.dst);
  std::copy(l4.begin(), l4.end(), frame.begin() + info.l4_offset);
}

std::vector<std::vector<std::uint8_t>> read_frames(const std::string& path, std::size_t max) {
  std::vector<std::vector<std::uint8_t>> frames;
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  if (!p) {
    std::fprintf(stderr, "%s: %s\n", path.c_str(), err);
    std::exit(1);
  }
  pcap_pkthdr* h;
  const u_char* d;
  while (frames.size() < max && pcap_next_ex(p, &h, &d) == 1) {
    frames.emplace_back(d, d + h->caplen);
    fix_checksum(frames.back());
  }
  pcap_close(p);
  return frames;
}

double tsc_ghz() {
  const auto t0 = std::chrono::steady_clock::now();
  const auto c0 = __rdtsc();
  while (std::chrono::steady_clock::now() - t0 < std::chrono::milliseconds(200)) {
  }
  const auto c1 = __rdtsc();
  const double ns =
      std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(c1 - c0) / ns;
}

template <typename F>
void report(const char* what, std::size_t iterations, double ghz, F&& body) {
  for (std::size_t i = 0; i < iterations / 10 + 1; ++i) body();  // warm caches and key cache
  const auto c0 = __rdtsc();
  for (std::size_t i = 0; i < iterations; ++i) body();
  const auto cycles = static_cast<double>(__rdtsc() - c0) / static_cast<double>(iterations);
  std::printf("%-40s %9.0f cycles  %8.1f ns\n", what, cycles, cycles / ghz);
}

}  // namespace

int main(int argc, char** argv) {
  const std::string testdata = argc > 1 ? argv[1] : "../shared/testdata";
  const std::string policy_path = argc > 2 ? argv[2] : "config/policy.example.yaml";
  const std::string caps = testdata + "/captures/";

  std::string eal_error;
  if (!sluice::match::init_offline_eal("bench_classify", 1024, eal_error)) {
    std::fprintf(stderr, "EAL init failed: %s\n", eal_error.c_str());
    return 1;
  }
  const auto loaded = sluice::match::load_policy_file(policy_path, "config/apps");
  if (!loaded) {
    std::fprintf(stderr, "%s\n", loaded.error.text().c_str());
    return 1;
  }
  const auto compiled = sluice::match::compile_policy(*loaded.spec);
  if (!compiled) {
    std::fprintf(stderr, "%s\n", compiled.error.message.c_str());
    return 1;
  }
  const auto& policy = *compiled.policy;

  // tls_ech.pcapng frame 4: a 584-byte Chrome ClientHello (ECH, 18 extensions) in one segment.
  // 443-curl.pcap: a SYN, then data.
  const auto chrome = read_frames(caps + "tls_ech.pcapng", 4);
  const auto curl = read_frames(caps + "443-curl.pcap", 40);
  // sv__quic-ietf: the first datagram is the client's Initial (ClientHello in one packet).
  const auto quic = read_frames(caps + "sv__quic-ietf__input.pcap", 1);
  const auto google = read_frames(caps + "zeek__quic__curl-8.1.2-dev-http3-www-google-de.pcap", 1);
  const double ghz = tsc_ghz();
  std::printf("TSC %.2f GHz; policy %u rules\n", ghz, policy.rule_count());

  sluice::flow::buffer_pool pool(64, 16384);
  sluice::flow::classifier cls(pool);
  volatile std::uint64_t sink = 0;

  {
    const bytes f{curl.back()};
    sluice::flow::flow_state st;
    st.status = sluice::flow::flow_status::unrecognized;  // a flow already decided
    report("established-flow packet", 2'000'000, ghz, [&] {
      const auto info = sluice::packet::parse_frame(f);
      sink = sink + static_cast<std::uint64_t>(cls.on_packet(st, info, f, {}).status);
    });
  }
  {
    const bytes f{curl.front()};
    report("SYN", 2'000'000, ghz, [&] {
      sluice::flow::flow_state st;
      const auto info = sluice::packet::parse_frame(f);
      sink = sink + static_cast<std::uint64_t>(cls.on_packet(st, info, f, {}).status);
    });
  }
  const auto measure_name = [&](const char* what, const bytes f, std::size_t n) {
    report(what, n, ghz, [&] {
      sluice::flow::flow_state st;
      const auto info = sluice::packet::parse_frame(f);
      const auto r = cls.on_packet(st, info, f, {});
      if (r.name_count != 1) std::abort();
      sink = sink + policy.match_name(r.names[0]).value_or(7);
      cls.release(st);
    });
  };
  measure_name("ClientHello parse + match", bytes{chrome.back()}, 1'000'000);
  measure_name("QUIC Initial, same flow (keys cached)", bytes{quic.front()}, 200'000);
  {
    // Two flows' Initials in turn: the decryptor's one-entry key cache misses every time, so
    // this is the cost of a new flow's first Initial (HKDF included).
    const bytes f[2] = {bytes{quic.front()}, bytes{google.front()}};
    std::size_t i = 0;
    report("QUIC Initial, new flow (HKDF + all)", 200'000, ghz, [&] {
      sluice::flow::flow_state st;
      const bytes frame = f[i++ & 1];
      const auto info = sluice::packet::parse_frame(frame);
      const auto r = cls.on_packet(st, info, frame, {});
      if (r.name_count != 1) std::abort();
      sink = sink + policy.match_name(r.names[0]).value_or(7);
      cls.release(st);
    });
  }
  return sink == 42 ? 1 : 0;
}
