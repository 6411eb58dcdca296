#include "dataplane/offline/capture_flows.hpp"

#include <arpa/inet.h>
#include <pcap/pcap.h>

#include <algorithm>
#include <cctype>
#include <memory>
#include <tuple>

namespace sluice::offline {

flow_key make_key(const packet::frame_info& info, flow::direction& dir) noexcept {
  flow_key k;
  k.proto = info.l4_proto;
  k.tenant = info.tenant_id;
  const auto src = std::tie(info.src.bytes, info.src_port);
  const auto dst = std::tie(info.dst.bytes, info.dst_port);
  if (src <= dst) {
    k.a = info.src;
    k.port_a = info.src_port;
    k.b = info.dst;
    k.port_b = info.dst_port;
    dir = flow::direction::forward;
  } else {
    k.a = info.dst;
    k.port_a = info.dst_port;
    k.b = info.src;
    k.port_b = info.src_port;
    dir = flow::direction::reverse;
  }
  return k;
}

std::string to_string(const packet::ip_address& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.version == 4) {
    inet_ntop(AF_INET, addr.bytes.data(), text, sizeof text);
  } else if (addr.version == 6) {
    inet_ntop(AF_INET6, addr.bytes.data(), text, sizeof text);
  }
  return text;
}

packet::ip_address parse_address(const std::string& text) {
  packet::ip_address addr;
  if (inet_pton(AF_INET, text.c_str(), addr.bytes.data()) == 1) {
    addr.version = 4;
  } else if (inet_pton(AF_INET6, text.c_str(), addr.bytes.data()) == 1) {
    addr.version = 6;
  } else {
    addr = {};
  }
  return addr;
}

capture_result classify_capture(const std::string& path, flow::classifier& cls,
                                const frame_observer& observer) {
  capture_result result;
  char errbuf[PCAP_ERRBUF_SIZE] = {};
  std::unique_ptr<pcap_t, decltype(&pcap_close)> pcap(pcap_open_offline(path.c_str(), errbuf),
                                                        &pcap_close);
  if (!pcap) {
    result.error = errbuf;
    return result;
  }
  const bool ethernet = pcap_datalink(pcap.get()) == DLT_EN10MB;
  pcap_pkthdr* header = nullptr;
  const u_char* data = nullptr;
  int rc = 0;
  while ((rc = pcap_next_ex(pcap.get(), &header, &data)) == 1) {
    const std::uint64_t frame_no = ++result.stats.frames;
    if (!ethernet) {
      ++result.stats.not_ethernet;
      continue;
    }
    const packet::bytes frame{data, header->caplen};
    const packet::frame_info info = packet::parse_frame(frame);
    ++result.stats.outcomes[static_cast<std::size_t>(info.outcome)];
    flow::classify_result res;
    flow_record* rec = nullptr;
    if (info.outcome == packet::frame_outcome::ok) {
      flow::direction dir{};
      const flow_key key = make_key(info, dir);
      auto [it, fresh] = result.flows.try_emplace(key);
      rec = &it->second;
      if (fresh) {
        rec->key = key;
        rec->first_frame = frame_no;
      }
      ++rec->packets;
      res = cls.on_packet(rec->state, info, frame, dir);
      rec->has_ech |= res.has_ech;
      rec->has_esni |= res.has_esni;
      if (res.name_count > 0) {
        if (rec->named_at_frame == 0) rec->named_at_frame = frame_no;
        rec->kind = res.kind;
        for (std::size_t i = 0; i < res.name_count; ++i) {
          std::string name(res.names[i]);
          std::transform(name.begin(), name.end(), name.begin(),
                         [](unsigned char c) { return std::tolower(c); });
          rec->names.insert(std::move(name));
        }
      }
    }
    if (observer) observer(frame_no, info, rec, res);
  }
  if (rc == PCAP_ERROR) result.error = pcap_geterr(pcap.get());
  for (auto& [key, rec] : result.flows) cls.release(rec.state);
  return result;
}

}  // namespace sluice::offline
