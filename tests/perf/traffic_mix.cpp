#include "tests/perf/traffic_mix.hpp"

#include <pcap/pcap.h>

#include <cstdio>
#include <map>
#include <numeric>
#include <random>
#include <tuple>

#include "tests/perf/block_list.hpp"
#include "tests/unit/engine_worker/traffic.hpp"

namespace sluice::perf {

namespace {

using namespace sluice::test;

enum class encap : std::uint8_t { none, vlan, qinq, vxlan, gre };

const packet::ip_address tunnel_ran = v4(198, 51, 100, 1);  // subscriber-side tunnel endpoint
const packet::ip_address tunnel_core = v4(198, 51, 100, 2);

packet::ip_address v6_telegram_server() {  // 2001:67c:4e8::99, in Telegram's 2001:67c:4e8::/48
  packet::ip_address a = v6(0x2001, 0x99);
  a.bytes[2] = 0x06;
  a.bytes[3] = 0x7c;
  a.bytes[4] = 0x04;
  a.bytes[5] = 0xe8;
  return a;
}

// An IP packet (of an Ethernet frame built by tcp_conv and friends) in its encapsulation.
buf wrap(const buf& eth_frame, encap e, bool up, std::uint32_t tag) {
  const buf ip_pkt = slice(eth_frame, 14, eth_frame.size());
  const std::uint16_t type = (ip_pkt[0] >> 4) == 6 ? 0x86dd : 0x0800;
  const auto& src = up ? tunnel_ran : tunnel_core;
  const auto& dst = up ? tunnel_core : tunnel_ran;
  switch (e) {
    case encap::none:
      return eth_frame;
    case encap::vlan:
      return eth_tagged({{0x8100, static_cast<std::uint16_t>(100 + tag % 3000)}}, type, ip_pkt);
    case encap::qinq:
      return eth_tagged({{0x88a8, static_cast<std::uint16_t>(10 + tag % 50)}, {0x8100, 200}}, type,
                        ip_pkt);
    case encap::vxlan: {
      buf f = eth(0x0800, ipv4(src, dst, 17,
                               udp(up ? 50000 : 50001, 4789, vxlan(1000 + tag % 64, eth_frame))));
      f[14 + 20 + 6] = 0;  // outer UDP checksum 0 (RFC 7348): inner patches keep the frame valid
      f[14 + 20 + 7] = 0;
      return f;
    }
    case encap::gre:
      return eth(0x0800, ipv4(src, dst, 47, gre(0, type, {}, ip_pkt)));
  }
  return eth_frame;
}

// A Chromium-like post-quantum ClientHello: X25519MLKEM768 (0x11ec, 1216-byte share) and X25519
// key shares, ~1.8 KB in one TLS record.
buf pq_client_hello(std::string_view sni) {
  buf groups;
  put16(groups, 8);
  for (std::uint16_t g : {0x3a3a, 0x11ec, 0x001d, 0x0017}) put16(groups, g);
  buf shares;
  buf list;
  put16(list, 0x11ec);
  put16(list, 1216);
  for (int i = 0; i < 1216; ++i) list.push_back(static_cast<std::uint8_t>(i * 13));
  put16(list, 0x001d);
  put16(list, 32);
  for (int i = 0; i < 32; ++i) list.push_back(static_cast<std::uint8_t>(i * 5));
  put16(shares, list.size());
  append(shares, list);
  std::vector<tls_ext> exts{grease_ext(0x1a1a),
                            {0, sni_data({sni})},
                            {23, {}},
                            {65281, {0}},
                            {10, groups},
                            {11, {1, 0}},
                            {35, {}},
                            {16, alpn_data({"h2", "http/1.1"})},
                            {5, {1, 0, 0, 0, 0}},
                            filler_ext(13, 18),
                            {51, shares},
                            {45, {2, 0x03, 0x04}},
                            {43, {4, 0x03, 0x04, 0x03, 0x03}},
                            filler_ext(27, 3),
                            filler_ext(0x4469, 5),
                            grease_ext(0x2a2a)};
  return tls_records(tls_client_hello(exts), 1);
}

struct endpoint {
  std::array<std::uint8_t, 16> addr{};
  std::uint16_t port = 0;
  auto operator<=>(const endpoint&) const = default;
};

endpoint src_of(const buf& f, const l3_view& v) {
  endpoint e;
  const std::size_t off = v.version == 4 ? 12 : 8;
  std::memcpy(e.addr.data(), f.data() + v.l3 + off, v.version == 4 ? 4 : 16);
  e.port = rd16(f.data() + v.l4);
  return e;
}
endpoint dst_of(const buf& f, const l3_view& v) {
  endpoint e;
  const std::size_t off = v.version == 4 ? 16 : 24;
  std::memcpy(e.addr.data(), f.data() + v.l3 + off, v.version == 4 ? 4 : 16);
  e.port = rd16(f.data() + v.l4 + 2);
  return e;
}

// Recomputes the TCP/UDP checksum of the packet at `v` (a UDP/IPv4 checksum of 0 stays 0).
void fix_checksum(buf& f, const l3_view& v) {
  if (!v.ok || v.l4 == 0 || (v.proto != 6 && v.proto != 17)) return;
  const std::size_t at = v.l4 + (v.proto == 6 ? 16u : 6u);
  if (at + 2 > f.size()) return;
  if (v.proto == 17 && v.version == 4 && rd16(f.data() + at) == 0) return;
  const std::size_t end =
      v.version == 4 ? v.l3 + rd16(f.data() + v.l3 + 2) : v.l3 + 40u + rd16(f.data() + v.l3 + 4);
  if (end > f.size() || end < v.l4) return;
  buf l4 = slice(f, v.l4, end);
  packet::ip_address src, dst;
  src.version = dst.version = v.version;
  const std::size_t alen = v.version == 4 ? 4 : 16;
  std::memcpy(src.bytes.data(), f.data() + v.l3 + (v.version == 4 ? 12 : 8), alen);
  std::memcpy(dst.bytes.data(), f.data() + v.l3 + (v.version == 4 ? 16 : 24), alen);
  fix_l4_checksum(l4, v.proto, src, dst);
  std::memcpy(f.data() + v.l4, l4.data(), l4.size());
}

}  // namespace

std::vector<buf> read_capture(const std::string& path) {
  std::vector<buf> out;
  char err[PCAP_ERRBUF_SIZE];
  pcap_t* p = pcap_open_offline(path.c_str(), err);
  if (p == nullptr) {
    std::fprintf(stderr, "skip %s: %s\n", path.c_str(), err);
    return out;
  }
  if (pcap_datalink(p) == DLT_EN10MB) {
    pcap_pkthdr* h;
    const u_char* d;
    while (pcap_next_ex(p, &h, &d) == 1) {
      if (h->caplen == h->len && h->caplen <= 1514) out.emplace_back(d, d + h->caplen);
    }
  }
  pcap_close(p);
  return out;
}

traffic_mix::traffic_mix(const mix_config& cfg)
    : n_(std::max<std::uint32_t>(cfg.flows, 1)), seed_(cfg.seed) {
  auto add_template = [&](buf bytes, bool from_client, bool established) {
    frame_tpl t;
    t.bytes = std::move(bytes);
    t.from_client = from_client;
    t.established = established;
    t.at = locate_l3(t.bytes.data(), static_cast<std::uint32_t>(t.bytes.size()));
    if (t.at.ok && t.at.l4 != 0) {
      if (t.at.proto == 6) t.l4_csum = static_cast<std::uint16_t>(t.at.l4 + 16);
      if (t.at.proto == 17 && rd16(t.bytes.data() + t.at.l4 + 6) != 0) {
        t.l4_csum = static_cast<std::uint16_t>(t.at.l4 + 6);
      }
    }
    templates_.push_back(std::move(t));
    return static_cast<std::uint32_t>(templates_.size() - 1);
  };

  std::mt19937_64 rng(cfg.seed);
  const char* tg_names[] = {"t.me",
                            "web.telegram.org",
                            "telegram.org",
                            "cdn4.cdn-telegram.org",
                            "venus.web.telegram.org",
                            "telegram.me",
                            "telegra.ph",
                            "core.telegram.org"};
  const char* popular[] = {"www.google.com",    "www.youtube.com",
                           "i.ytimg.com",       "static.xx.fbcdn.net",
                           "www.instagram.com", "api.github.com",
                           "fonts.gstatic.com", "www.wikipedia.org",
                           "yandex.ru",         "login.microsoftonline.com",
                           "cdn.jsdelivr.net",  "www.example.com"};
  static constexpr const char* tlds[] = {"com", "net", "org", "ru", "de", "io", "co.uk", "fr"};

  // Established data, shared by every script of the same shape: (server data, client ack).
  // The tunnel tag (VLAN id, VNI) is part of a flow's identity, hence of its shape.
  std::map<std::tuple<int, int, bool, std::uint16_t, std::uint32_t>, std::int32_t> shape_of;
  auto shape = [&](int version, encap e, bool tg, std::uint16_t sport, std::uint32_t tag) {
    const auto key = std::make_tuple(version, static_cast<int>(e), tg, sport, tag);
    const auto it = shape_of.find(key);
    if (it != shape_of.end()) return it->second;
    tcp_conv c;
    c.client = version == 6 ? v6(0x2a02, 1) : v4(10, 0, 0, 1);
    c.server = tg ? (version == 6 ? v6_telegram_server() : tg_ip())
                  : (version == 6 ? v6(0x2a00, 0x34) : other_ip());
    c.cport = 40000;
    c.sport = sport;
    c.cseq = 0x10000000;
    c.sseq = 0x20000000;
    const std::uint32_t a =
        add_template(wrap(c.server_data(buf(1200, 0x17)), e, false, tag), false, true);
    const std::uint32_t b = add_template(wrap(c.ack(), e, true, tag), true, true);
    shapes_.push_back({a, b});
    const auto id = static_cast<std::int32_t>(shapes_.size() - 1);
    shape_of.emplace(key, id);
    return id;
  };

  // Generated scripts.
  const std::uint32_t variants = std::max<std::uint32_t>(1, std::min(cfg.variants, n_));
  for (std::uint32_t v = 0; v < variants; ++v) {
    script s;
    const int version = rng() % 4 == 0 ? 6 : 4;
    const std::uint64_t er = rng() % 100;
    const encap e = er < 67   ? encap::none
                    : er < 77 ? encap::vlan
                    : er < 83 ? encap::qinq
                    : er < 92 ? encap::vxlan
                              : encap::gre;
    const std::uint64_t kr = rng() % 88;  // captures take the other 12% (per flow)
    s.kind = kr < 45   ? flow_kind::tls
             : kr < 65 ? flow_kind::tls_pq_split
             : kr < 70 ? flow_kind::http
             : kr < 78 ? flow_kind::opaque
                       : flow_kind::dns;
    for (int i = 0; i < 5 && (cfg.kinds & (1u << static_cast<unsigned>(s.kind))) == 0; ++i) {
      s.kind = static_cast<flow_kind>((static_cast<unsigned>(s.kind) + 1) % 5);
    }
    const std::uint64_t nr = rng() % 100;
    if (nr < 5) {
      s.name = tg_names[rng() % std::size(tg_names)];
      s.telegram_name = true;
    } else if (nr < 10 && !cfg.blocked_names.empty()) {
      s.name = cfg.blocked_names[rng() % cfg.blocked_names.size()];
      s.listed_name = true;
    } else if (nr < 30) {
      s.name = popular[rng() % std::size(popular)];
    } else {
      s.name = (rng() % 2 ? "www." : "cdn.") + random_label(rng, 4, 12) + "." +
               tlds[rng() % std::size(tlds)];
    }
    s.telegram_addr = rng() % 10 == 0 || s.kind == flow_kind::opaque;
    if (s.kind == flow_kind::opaque) {
      s.name.clear();
      s.telegram_name = s.listed_name = false;
    }
    const auto tag = e == encap::none ? 0u : static_cast<std::uint32_t>(rng() % 16);
    std::size_t together = SIZE_MAX;  // head index sent back to back with the next one

    tcp_conv c;
    c.client = version == 6 ? v6(0x2a02, 1) : v4(10, 0, 0, 1);
    c.server = s.telegram_addr ? (version == 6 ? v6_telegram_server() : tg_ip())
                               : (version == 6 ? v6(0x2a00, 0x34) : other_ip());
    c.cport = 40000;
    c.sport = s.kind == flow_kind::http ? 80 : 443;
    auto up = [&](const buf& f) {
      s.head.push_back(add_template(wrap(f, e, true, tag), true, false));
    };
    auto down = [&](const buf& f) {
      s.head.push_back(add_template(wrap(f, e, false, tag), false, false));
    };
    if (s.kind == flow_kind::dns) {
      const packet::ip_address resolver = version == 6 ? v6(0x2001, 0x8888) : v4(8, 8, 8, 8);
      up(eth_ip(ip(c.client, resolver, 17, udp(40000, 53, dns_message({s.name})))));
      down(eth_ip(ip(resolver, c.client, 17, udp(53, 40000, dns_message({s.name}, true)))));
      s.server = server_patch::none;
      s.slot_end = {1, 2};
      scripts_.push_back(std::move(s));
      continue;
    }
    s.server = version == 6 ? (s.telegram_addr ? server_patch::v6_telegram : server_patch::v6_any)
                            : (s.telegram_addr ? server_patch::v4_telegram : server_patch::v4_any);
    c.cseq = 0x10000000 - 1;
    c.sseq = 0x20000000 - 1;
    up(c.syn());
    down(c.syn_ack());
    up(c.ack());
    switch (s.kind) {
      case flow_kind::tls: {
        const std::size_t bare = tls_client_hello_for(s.name).size();
        up(c.data(tls_records(tls_client_hello_for(s.name, bare < 500 ? 508 - bare : 0), 1)));
        break;
      }
      case flow_kind::tls_pq_split: {
        const buf rec = pq_client_hello(s.name);
        up(c.data(slice(rec, 0, 1448)));
        up(c.data(slice(rec, 1448, rec.size())));
        together = s.head.size() - 2;  // both segments back to back, as a client sends them
        break;
      }
      case flow_kind::http:
        up(c.data(http_get(s.name, "/index.html")));
        break;
      default: {  // opaque: an MTProto-like obfuscated start, then the server's first bytes
        buf b(64);
        for (auto& x : b) x = static_cast<std::uint8_t>(rng());
        up(c.data(b));
        down(c.server_data(buf(96, 0x5a)));
        break;
      }
    }
    s.data_shape = shape(version, e, s.telegram_addr, c.sport, tag);
    for (std::size_t i = 0; i < s.head.size(); ++i) {
      if (together != SIZE_MAX && i == together + 1) {
        s.slot_end.back() = static_cast<std::uint8_t>(i + 1);
      } else {
        s.slot_end.push_back(static_cast<std::uint8_t>(i + 1));
      }
    }
    scripts_.push_back(std::move(s));
  }

  // Capture scripts: QUIC v1 / v2 / draft-29 flows and Telegram's UDP flows, whole.
  std::vector<std::uint32_t> captured;
  if (!cfg.capture_dir.empty() && (cfg.kinds & (1u << static_cast<unsigned>(flow_kind::capture)))) {
    for (const char* file :
         {"zeek__quic__curl-8.1.2-dev-http3-www-google-de.pcap", "quic-v2.eth.pcap",
          "sv__quic-ietf__input.pcap", "quic-29.pcap", "telegram.pcap"}) {
      const bool telegram = std::string_view(file) == "telegram.pcap";
      std::map<std::pair<endpoint, endpoint>, std::size_t> flow_of;  // (client, server) -> script
      for (auto& f : read_capture(cfg.capture_dir + "/" + file)) {
        const l3_view v = locate_l3(f.data(), static_cast<std::uint32_t>(f.size()));
        if (!v.ok || v.l4 == 0 || (v.proto != 6 && v.proto != 17)) continue;
        const endpoint s = src_of(f, v), d = dst_of(f, v);
        bool from_client = true;
        auto it = flow_of.find({s, d});
        if (it == flow_of.end()) {
          it = flow_of.find({d, s});
          from_client = false;
        }
        if (it == flow_of.end()) {
          if (telegram && !(d.addr[0] == 91 && d.addr[1] == 108)) continue;
          script sc;
          sc.kind = flow_kind::capture;
          sc.telegram_addr = telegram;
          sc.name = telegram ? "" : std::string(file);
          scripts_.push_back(std::move(sc));
          it = flow_of.emplace(std::make_pair(s, d), scripts_.size() - 1).first;
          from_client = true;
          captured.push_back(static_cast<std::uint32_t>(scripts_.size() - 1));
        }
        script& sc = scripts_[it->second];
        if (sc.head.size() >= 48) continue;
        // The client's first flight (up to the first server frame) goes back to back.
        const bool first_flight = from_client && !sc.head.empty() && sc.slot_end.size() == 1 &&
                                  templates_[sc.head.back()].from_client &&
                                  sc.slot_end.back() < max_slot;
        fix_checksum(f, v);  // capture tools saw offloaded checksums; a link carries real ones
        sc.head.push_back(add_template(std::move(f), from_client, false));
        if (first_flight) {
          sc.slot_end.back() = static_cast<std::uint8_t>(sc.head.size());
        } else {
          sc.slot_end.push_back(static_cast<std::uint8_t>(sc.head.size()));
        }
      }
    }
  }

  // Flows: script, start round, length.
  script_.resize(n_);
  start_.resize(n_);
  len_.resize(n_);
  std::uint32_t longest = 0;
  for (std::uint32_t f = 0; f < n_; ++f) {
    const std::uint64_t h = mix64(seed_ ^ (std::uint64_t{f} << 20) ^ 0x5eed);
    const bool capture =
        !captured.empty() && (h % 100 < 12 || (cfg.kinds & 0x1fu) == 0);  // 0x1f: generated kinds
    script_[f] = capture ? captured[(h >> 8) % captured.size()]
                         : static_cast<std::uint32_t>((h >> 8) % variants);
    const script& s = scripts_[script_[f]];
    start_[f] = static_cast<std::uint8_t>((h >> 40) % 8);
    const std::uint32_t rounds = s.data_shape >= 0 ? 2 + (h >> 48) % 12 : 0;
    len_[f] = static_cast<std::uint8_t>(s.slot_end.size() + 2 * rounds);
    longest = std::max<std::uint32_t>(longest, len_[f]);
  }
  rounds_ = 8 + longest;
  rot_.resize(rounds_);
  for (auto& r : rot_) r = static_cast<std::uint32_t>(rng() % n_);
  stride_ = n_ / 2 + 1 + rng() % (n_ / 4 + 1);
  while (std::gcd(stride_, std::uint64_t{n_}) != 1) ++stride_;
  offset_ = rng() % n_;
}

std::uint64_t traffic_mix::frames(phase p) const noexcept {
  std::uint64_t n = 0;
  for (std::uint32_t f = 0; f < n_; ++f) {
    const script& s = scripts_[script_[f]];
    if (p != phase::established) n += s.head.size();
    if (p != phase::setup) n += len_[f] - s.slot_end.size();
  }
  return n;
}

traffic_mix::census traffic_mix::count() const {
  census c;
  for (std::uint32_t f = 0; f < n_; ++f) {
    const script& s = scripts_[script_[f]];
    ++c.flows[static_cast<std::size_t>(s.kind)];
    const frame_tpl& first = templates_[s.head.front()];
    if (first.at.version == 6) ++c.ipv6;
    if (first.at.l3 != 14) ++c.tunnelled;
    c.telegram_addr += s.telegram_addr;
    c.telegram_name += s.telegram_name;
    c.listed_name += s.listed_name;
    for (std::uint32_t i : s.head) c.bytes += templates_[i].bytes.size();
    const std::uint64_t data = len_[f] - s.slot_end.size();
    c.frames += s.head.size() + data;
    c.established_frames += data;
    if (data != 0) {
      const auto& sh = shapes_[static_cast<std::size_t>(s.data_shape)];
      c.bytes += data / 2 * (templates_[sh[0]].bytes.size() + templates_[sh[1]].bytes.size());
    }
  }
  return c;
}

void traffic_mix::patch(std::uint8_t* d, const frame_tpl& t, std::uint32_t f,
                        server_patch sp) const noexcept {
  if (!t.at.ok || t.at.l4 == 0 || (t.at.proto != 6 && t.at.proto != 17)) return;
  const std::uint64_t h = mix64(seed_ ^ (std::uint64_t{f} << 1 | 1));
  std::uint8_t* ip = d + t.at.l3;
  std::uint8_t* l4 = d + t.at.l4;
  const bool four = t.at.version == 4;
  std::uint8_t* src = ip + (four ? 12 : 8);
  std::uint8_t* dst = ip + (four ? 16 : 24);
  std::uint8_t* client = t.from_client ? src : dst;
  std::uint8_t* server = t.from_client ? dst : src;
  std::uint32_t ip_delta = 0;  // sum of ~old + new over changed 16-bit words (RFC 1624)
  std::uint32_t l4_delta = 0;
  auto change = [&](std::uint8_t* p, const std::uint8_t* now, std::size_t n, bool in_ip_header) {
    for (std::size_t i = 0; i < n; i += 2) {
      const std::uint32_t d16 = (~rd16(p + i) & 0xffffu) + rd16(now + i);
      l4_delta += d16;
      if (in_ip_header) ip_delta += d16;
      p[i] = now[i];
      p[i + 1] = now[i + 1];
    }
  };
  const std::uint8_t fb[4] = {static_cast<std::uint8_t>(f >> 24),
                              static_cast<std::uint8_t>(f >> 16), static_cast<std::uint8_t>(f >> 8),
                              static_cast<std::uint8_t>(f)};
  if (four) {
    const std::uint8_t a[4] = {10, fb[1], fb[2], fb[3]};
    change(client, a, 4, true);
  } else {
    change(client + 12, fb, 4, false);
  }
  const auto port = static_cast<std::uint16_t>(1024 + h % 64000);
  const std::uint8_t pb[2] = {static_cast<std::uint8_t>(port >> 8),
                              static_cast<std::uint8_t>(port)};
  change(l4 + (t.from_client ? 0 : 2), pb, 2, false);
  const std::uint64_t h2 = mix64(h);
  std::uint8_t sb[4] = {static_cast<std::uint8_t>(h2 >> 8), static_cast<std::uint8_t>(h2 >> 16),
                        static_cast<std::uint8_t>(h2 >> 24), static_cast<std::uint8_t>(h2 >> 32)};
  switch (sp) {
    case server_patch::none:
      break;
    case server_patch::v4_any:
      sb[0] = public_octets[h2 % std::size(public_octets)];
      change(server, sb, 4, true);
      break;
    case server_patch::v4_telegram: {
      static constexpr std::uint8_t nets[][3] = {
          {149, 154, 167}, {149, 154, 175}, {91, 108, 56}, {91, 108, 4}, {95, 161, 76}};
      const auto& n = nets[h2 % std::size(nets)];
      const std::uint8_t a[4] = {n[0], n[1], n[2], sb[3]};
      change(server, a, 4, true);
      break;
    }
    case server_patch::v6_any:
      change(server + 2, sb, 4, false);
      break;
    case server_patch::v6_telegram:
      change(server + 12, sb, 4, false);
      break;
  }
  auto apply = [](std::uint8_t* at, std::uint32_t delta, bool udp) {
    std::uint32_t sum = (~rd16(at) & 0xffffu) + delta;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
    auto c = static_cast<std::uint16_t>(~sum);
    if (udp && c == 0) c = 0xffff;
    at[0] = static_cast<std::uint8_t>(c >> 8);
    at[1] = static_cast<std::uint8_t>(c);
  };
  if (four) apply(ip + 10, ip_delta, false);
  if (t.l4_csum != 0) apply(d + t.l4_csum, l4_delta, t.at.proto == 17);
}

}  // namespace sluice::perf
