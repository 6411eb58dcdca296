#pragma once
// Offline replay of a capture file through the classifier, flow by flow. For tests, the
// `sluice-classify` tool and capture judging — never on the live path (it allocates, keeps
// per-flow records and may print them: the per-flow log DESIGN.md allows only offline).

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "dataplane/flow/classifier.hpp"
#include "dataplane/packet/frame.hpp"

namespace sluice::offline {

// Orientation-free 5-tuple: endpoint `a` is the smaller of the two (address, port) pairs; plus
// the VNI of the VXLAN/Geneve overlay it came through (frame_info::tenant_id, 0 if none), as in
// the fast path's key.
struct flow_key {
  std::uint8_t proto = 0;
  packet::ip_address a;
  packet::ip_address b;
  std::uint16_t port_a = 0;
  std::uint16_t port_b = 0;
  std::uint32_t tenant = 0;
  auto operator<=>(const flow_key&) const = default;
};

// Makes the key for a parsed frame and says which way the frame travels relative to it.
[[nodiscard]] flow_key make_key(const packet::frame_info& info, flow::direction& dir) noexcept;

[[nodiscard]] std::string to_string(const packet::ip_address& addr);
// Parses "192.0.2.1" or "2001:db8::1"; version 0 on failure.
[[nodiscard]] packet::ip_address parse_address(const std::string& text);

struct flow_record {
  flow_key key;
  std::uint64_t first_frame = 0;  // 1-based frame number in the capture
  std::uint64_t packets = 0;
  flow::flow_state state;
  flow::name_kind kind = flow::name_kind::none;
  std::set<std::string> names;    // lower-cased
  std::uint64_t named_at_frame = 0;  // frame that first revealed a name (0 = none)
  bool has_ech = false;
  bool has_esni = false;
};

struct capture_stats {
  std::uint64_t frames = 0;
  std::uint64_t not_ethernet = 0;
  std::array<std::uint64_t, static_cast<std::size_t>(packet::frame_outcome::count)> outcomes{};
};

struct capture_result {
  std::string error;  // empty on success
  capture_stats stats;
  std::map<flow_key, flow_record> flows;
};

// Called for every frame after classification, with its 1-based number, the parsed frame, the
// record of its flow (null when the frame has no L4 flow) and the classifier's result.
using frame_observer = std::function<void(std::uint64_t frame_no, const packet::frame_info&,
                                          const flow_record*, const flow::classify_result&)>;

// Reads a pcap or pcapng file (Ethernet link type) with libpcap and classifies every flow.
[[nodiscard]] capture_result classify_capture(const std::string& path, flow::classifier& cls,
                                              const frame_observer& observer = {});

}  // namespace sluice::offline
