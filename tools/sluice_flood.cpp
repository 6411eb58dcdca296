// sluice-flood: a flood of new TCP flows as raw Ethernet frames out of one interface, to load a
// dataplane's flow table and reassembly pool (issue 16, "Floods"). No DPDK: an AF_PACKET socket
// with PACKET_QDISC_BYPASS, frames built in batches and sent with sendmmsg. Run it where the
// interface is (e.g. `ip netns exec CLIENT_NS sluice-flood --iface eth0 ...`); needs
// CAP_NET_RAW.
//
//   sluice-flood --iface eth0 --mode syn --flows 2000000 --dst 10.97.0.2
//   sluice-flood --iface eth0 --mode half-hello --flows 200000 --dst 10.97.0.2 --seconds 10
//
// Modes:
//   syn         one SYN per flow (MSS option), nothing else: embryonic flows.
//   half-hello  per flow a SYN, then the first TCP segment (ACK|PSH, seq = ISN + 1) of a TLS
//               ClientHello record of --hello-bytes naming --sni (X25519 and an ML-KEM-768-sized
//               key share, as Chromium sends): only its first --first-bytes, so the record never
//               completes and a DPI box must hold the bytes while it waits for the rest.
// Flow i (0 <= i < --flows) is source --src-base + (i mod --src-ips), source port
// 1024 + (i div --src-ips) mod 64512, to --dst:--dst-port: --flows distinct 5-tuples as long as
// --flows <= --src-ips * 64512. ISNs come from --seed (fixed seed, same frames every run).
// Checksums are correct (a dataplane rightly ignores bad-checksum payload as a fake).
//
// The destination MAC defaults to 02:00:00:00:f1:0d, an address no one owns: the frames cross
// the dataplane (which bridges by ports, not by MAC) and are then dropped by the receiving
// host's NIC as not its own, so the server's kernel does not answer two million SYNs on a
// two-core test machine. Pass --dst-mac to reach the server's stack instead.
//
// --seconds S: after the first pass over the flows keep cycling over them until S seconds have
// passed (a flood that lasts, of the same flows). --rate R: at most R packets per second
// (0 = as fast as the socket takes them). stdout: one JSON object at the end,
//   {"mode":..,"flows":N,"packets":P,"bytes":B,"seconds":T,"pps":P/T,"mbps":..,
//    "first_pass_seconds":..,"first_pass_pps":..,"passes":K,"retries":E}
// (`retries`: sendmmsg calls that took nothing — ENOBUFS/EAGAIN — and were repeated).
// Exit 0, 2 on bad options, 1 when the socket cannot be opened or sending fails.

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;

constexpr std::size_t eth_len = 14, ip_len = 20, tcp_len = 20, syn_opt_len = 4;
constexpr std::uint8_t tcp_syn = 0x02, tcp_psh = 0x08, tcp_ack = 0x10;

std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

void put16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}
void put32(std::uint8_t* p, std::uint32_t v) noexcept {
  put16(p, static_cast<std::uint16_t>(v >> 16));
  put16(p + 2, static_cast<std::uint16_t>(v));
}

// One's complement sum of big-endian 16-bit words (not folded).
std::uint64_t sum16(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t s = 0;
  for (std::size_t i = 0; i + 1 < n; i += 2) s += static_cast<std::uint64_t>(p[i]) << 8 | p[i + 1];
  if (n & 1) s += static_cast<std::uint64_t>(p[n - 1]) << 8;
  return s;
}
std::uint16_t fold(std::uint64_t s) noexcept {
  while (s >> 16) s = (s & 0xffff) + (s >> 16);
  return static_cast<std::uint16_t>(~s & 0xffff);
}

bool parse_mac(const std::string& text, std::array<std::uint8_t, 6>& mac) {
  unsigned b[6];
  if (std::sscanf(text.c_str(), "%x:%x:%x:%x:%x:%x", &b[0], &b[1], &b[2], &b[3], &b[4], &b[5]) != 6)
    return false;
  for (int i = 0; i < 6; ++i) {
    if (b[i] > 255) return false;
    mac[i] = static_cast<std::uint8_t>(b[i]);
  }
  return true;
}

// A TLS 1.3 ClientHello record of about `size` bytes naming `sni`, laid out like Chromium's
// post-quantum one: the SNI early, a 1,216-byte ML-KEM-768 share plus X25519 in key_share, then
// padding up to `size`. Bytes derived from `seed`.
std::vector<std::uint8_t> client_hello(const std::string& sni, std::size_t size, std::uint64_t seed) {
  std::vector<std::uint8_t> exts;
  auto u16 = [](std::vector<std::uint8_t>& v, std::size_t x) {
    v.push_back(static_cast<std::uint8_t>(x >> 8));
    v.push_back(static_cast<std::uint8_t>(x));
  };
  auto random_bytes = [&seed](std::vector<std::uint8_t>& v, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) v.push_back(static_cast<std::uint8_t>(splitmix64(seed++)));
  };
  auto ext = [&](std::uint16_t type, const std::vector<std::uint8_t>& body) {
    u16(exts, type);
    u16(exts, body.size());
    exts.insert(exts.end(), body.begin(), body.end());
  };
  {
    std::vector<std::uint8_t> b;
    u16(b, sni.size() + 3);
    b.push_back(0);
    u16(b, sni.size());
    b.insert(b.end(), sni.begin(), sni.end());
    ext(0, b);  // server_name
  }
  ext(43, {0x04, 0x03, 0x04, 0x03, 0x03});                        // supported_versions
  ext(10, {0x00, 0x04, 0x11, 0xec, 0x00, 0x1d});                  // X25519MLKEM768, x25519
  ext(13, {0x00, 0x04, 0x04, 0x03, 0x08, 0x04});                  // signature_algorithms
  ext(16, {0x00, 0x03, 0x02, 'h', '2'});                          // ALPN
  {
    std::vector<std::uint8_t> b;
    constexpr std::size_t mlkem = 1216, x25519 = 32;
    u16(b, 4 + mlkem + 4 + x25519);
    u16(b, 0x11ec);
    u16(b, mlkem);
    random_bytes(b, mlkem);
    u16(b, 0x001d);
    u16(b, x25519);
    random_bytes(b, x25519);
    ext(51, b);  // key_share
  }
  std::vector<std::uint8_t> body = {0x03, 0x03};
  random_bytes(body, 32);  // random
  body.push_back(32);
  random_bytes(body, 32);  // legacy session id
  body.insert(body.end(), {0x00, 0x06, 0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0x01, 0x00});
  const std::size_t fixed = 5 + 4 + body.size() + 2 + exts.size();
  if (size > fixed + 4) ext(21, std::vector<std::uint8_t>(size - fixed - 4, 0));  // padding
  u16(body, exts.size());
  body.insert(body.end(), exts.begin(), exts.end());
  std::vector<std::uint8_t> rec = {0x16, 0x03, 0x01};
  u16(rec, body.size() + 4);
  rec.push_back(1);
  rec.push_back(static_cast<std::uint8_t>(body.size() >> 16));
  u16(rec, body.size() & 0xffff);
  rec.insert(rec.end(), body.begin(), body.end());
  return rec;
}

struct options {
  std::string iface, mode = "syn", src_base = "10.200.0.0", dst, src_mac,
                     dst_mac = "02:00:00:00:f1:0d", sni = "flood.example.net";
  std::uint64_t flows = 100000, rate = 0;
  std::uint32_t src_ips = 65536;
  std::uint16_t dst_port = 443;
  std::uint64_t seed = 1;
  double seconds = 0;
  std::size_t hello_bytes = 1800, first_bytes = 1000;
  unsigned batch = 256;
};

class flood {
 public:
  flood(const options& o, std::array<std::uint8_t, 6> src_mac, std::array<std::uint8_t, 6> dst_mac,
        std::uint32_t src_base, std::uint32_t dst)
      : o_(o), src_mac_(src_mac), dst_mac_(dst_mac), src_base_(src_base), dst_(dst) {
    if (o.mode == "half-hello") {
      const auto rec = client_hello(o.sni, o.hello_bytes, o.seed * 7919);
      payload_.assign(rec.begin(), rec.begin() + std::min(o.first_bytes, rec.size()));
      payload_sum_ = sum16(payload_.data(), payload_.size());
    }
  }

  [[nodiscard]] unsigned frames_per_flow() const noexcept { return payload_.empty() ? 1 : 2; }
  [[nodiscard]] std::size_t max_frame() const noexcept {
    return eth_len + ip_len + tcp_len + std::max(syn_opt_len, payload_.size());
  }

  // Frame k (0 = SYN, 1 = first data segment) of flow i into `out`; returns its length.
  std::size_t build(std::uint64_t i, unsigned k, std::uint8_t* out) const noexcept {
    const std::uint32_t src = src_base_ + static_cast<std::uint32_t>(i % o_.src_ips);
    const auto sport = static_cast<std::uint16_t>(1024 + (i / o_.src_ips) % 64512);
    const auto isn = static_cast<std::uint32_t>(splitmix64(o_.seed ^ (i * 0x100000001b3ULL)));
    const bool syn = k == 0;
    const std::size_t opt = syn ? syn_opt_len : 0;
    const std::size_t data = syn ? 0 : payload_.size();
    const std::size_t l4 = tcp_len + opt + data;
    std::memcpy(out, dst_mac_.data(), 6);
    std::memcpy(out + 6, src_mac_.data(), 6);
    put16(out + 12, ETHERTYPE_IP);
    std::uint8_t* ip = out + eth_len;
    ip[0] = 0x45;
    ip[1] = 0;
    put16(ip + 2, static_cast<std::uint16_t>(ip_len + l4));
    put16(ip + 4, static_cast<std::uint16_t>(i * 2 + k));  // id
    put16(ip + 6, 0x4000);                                 // DF
    ip[8] = 64;
    ip[9] = IPPROTO_TCP;
    put16(ip + 10, 0);
    put32(ip + 12, src);
    put32(ip + 16, dst_);
    put16(ip + 10, fold(sum16(ip, ip_len)));
    std::uint8_t* tcp = ip + ip_len;
    put16(tcp, sport);
    put16(tcp + 2, o_.dst_port);
    put32(tcp + 4, syn ? isn : isn + 1);
    put32(tcp + 8, syn ? 0 : static_cast<std::uint32_t>(splitmix64(isn)));
    tcp[12] = static_cast<std::uint8_t>(((tcp_len + opt) / 4) << 4);
    tcp[13] = syn ? tcp_syn : (tcp_ack | tcp_psh);
    put16(tcp + 14, 64240);
    put16(tcp + 16, 0);
    put16(tcp + 18, 0);
    if (syn) {
      tcp[20] = 2;  // MSS 1460
      tcp[21] = 4;
      put16(tcp + 22, 1460);
    } else {
      std::memcpy(tcp + tcp_len, payload_.data(), data);
    }
    std::uint64_t s = sum16(ip + 12, 8) + IPPROTO_TCP + l4;  // pseudo header
    s += sum16(tcp, tcp_len + opt);
    if (!syn) s += payload_sum_;  // tcp_len is even: the payload's words line up
    put16(tcp + 16, fold(s));
    return eth_len + ip_len + l4;
  }

 private:
  const options& o_;
  std::array<std::uint8_t, 6> src_mac_, dst_mac_;
  std::uint32_t src_base_, dst_;
  std::vector<std::uint8_t> payload_;
  std::uint64_t payload_sum_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  CLI::App cli{"sluice-flood: a flood of new TCP flows (SYNs, or half ClientHellos) over AF_PACKET"};
  cli.add_option("--iface", o.iface, "interface to send on")->required();
  cli.add_option("--mode", o.mode, "syn | half-hello")->check(CLI::IsMember({"syn", "half-hello"}));
  cli.add_option("--flows", o.flows, "distinct flows")->check(CLI::Range(1ull, 4000000000ull));
  cli.add_option("--dst", o.dst, "destination IPv4 address")->required();
  cli.add_option("--dst-port", o.dst_port, "destination TCP port");
  cli.add_option("--src-base", o.src_base, "first source IPv4 address");
  cli.add_option("--src-ips", o.src_ips, "source addresses (from --src-base)")
      ->check(CLI::Range(1u, 1u << 24));
  cli.add_option("--src-mac", o.src_mac, "source MAC (default: the interface's)");
  cli.add_option("--dst-mac", o.dst_mac, "destination MAC");
  cli.add_option("--seed", o.seed, "ISNs and hello bytes");
  cli.add_option("--rate", o.rate, "packets per second, 0 = unlimited");
  cli.add_option("--seconds", o.seconds, "keep cycling over the flows this long (0 = one pass)");
  cli.add_option("--sni", o.sni, "half-hello: the name in the ClientHello");
  cli.add_option("--hello-bytes", o.hello_bytes, "half-hello: the whole record's size")
      ->check(CLI::Range(std::size_t{200}, std::size_t{16000}));
  cli.add_option("--first-bytes", o.first_bytes, "half-hello: bytes of it sent (one segment)")
      ->check(CLI::Range(std::size_t{50}, std::size_t{1400}));
  cli.add_option("--batch", o.batch, "frames per sendmmsg")->check(CLI::Range(1u, 1024u));
  CLI11_PARSE(cli, argc, argv);

  const std::uint64_t max_flows = std::uint64_t{o.src_ips} * 64512;
  if (o.flows > max_flows) {
    std::fprintf(stderr, "sluice-flood: --flows %llu > --src-ips * 64512 (tuples would repeat)\n",
                 static_cast<unsigned long long>(o.flows));
    return 2;
  }
  if (o.mode == "half-hello" && o.first_bytes >= o.hello_bytes) {
    std::fprintf(stderr, "sluice-flood: --first-bytes must be below --hello-bytes\n");
    return 2;
  }
  in_addr src_base{}, dst{};
  if (inet_pton(AF_INET, o.src_base.c_str(), &src_base) != 1 ||
      inet_pton(AF_INET, o.dst.c_str(), &dst) != 1) {
    std::fprintf(stderr, "sluice-flood: bad IPv4 address\n");
    return 2;
  }
  std::array<std::uint8_t, 6> dst_mac{}, src_mac{};
  if (!parse_mac(o.dst_mac, dst_mac) || (!o.src_mac.empty() && !parse_mac(o.src_mac, src_mac))) {
    std::fprintf(stderr, "sluice-flood: bad MAC address\n");
    return 2;
  }

  const int fd = socket(AF_PACKET, SOCK_RAW, 0);  // protocol 0: send only, receive nothing
  if (fd < 0) {
    std::perror("sluice-flood: socket(AF_PACKET)");
    return 1;
  }
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", o.iface.c_str());
  if (ioctl(fd, SIOCGIFINDEX, &ifr) != 0) {
    std::perror(("sluice-flood: " + o.iface).c_str());
    return 1;
  }
  const int ifindex = ifr.ifr_ifindex;
  if (o.src_mac.empty()) {
    if (ioctl(fd, SIOCGIFHWADDR, &ifr) != 0) {
      std::perror("sluice-flood: SIOCGIFHWADDR");
      return 1;
    }
    std::memcpy(src_mac.data(), ifr.ifr_hwaddr.sa_data, 6);
  }
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_ifindex = ifindex;
  sll.sll_protocol = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0) {
    std::perror("sluice-flood: bind");
    return 1;
  }
  const int one = 1, sndbuf = 8 << 20;
  if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) != 0) {
    std::perror("sluice-flood: PACKET_QDISC_BYPASS (sending through the qdisc)");
  }
  (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);

  const flood f(o, src_mac, dst_mac, ntohl(src_base.s_addr), ntohl(dst.s_addr));
  const unsigned per_flow = f.frames_per_flow();
  const std::size_t stride = (f.max_frame() + 63) & ~std::size_t{63};
  const unsigned batch = std::max(o.batch / per_flow * per_flow, per_flow);  // whole flows
  std::vector<std::uint8_t> frames(stride * batch);
  std::vector<iovec> iov(batch);
  std::vector<mmsghdr> msgs(batch);

  const std::uint64_t total_frames = o.flows * per_flow;
  std::uint64_t packets = 0, bytes = 0, retries = 0, frame_index = 0;
  double first_pass_seconds = 0;
  const auto t0 = clock_type::now();
  auto elapsed = [&t0] { return std::chrono::duration<double>(clock_type::now() - t0).count(); };
  while (true) {
    unsigned n = 0;
    for (; n < batch; ++n) {
      const std::uint64_t at = frame_index + n;
      if (o.seconds <= 0 && at >= total_frames) break;  // one pass
      const std::uint64_t j = at % total_frames;
      const std::size_t len = f.build(j / per_flow, static_cast<unsigned>(j % per_flow),
                                      frames.data() + stride * n);
      iov[n] = {frames.data() + stride * n, len};
      msgs[n] = {};
      msgs[n].msg_hdr.msg_iov = &iov[n];
      msgs[n].msg_hdr.msg_iovlen = 1;
    }
    unsigned done = 0;
    while (done < n) {
      const int r = sendmmsg(fd, msgs.data() + done, n - done, 0);
      if (r > 0) {
        for (int k = 0; k < r; ++k) bytes += iov[done + k].iov_len;
        done += static_cast<unsigned>(r);
        continue;
      }
      if (r < 0 && errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
        std::perror("sluice-flood: sendmmsg");
        return 1;
      }
      ++retries;
      std::this_thread::yield();
    }
    packets += n;
    frame_index += n;
    const double t = elapsed();
    if (first_pass_seconds == 0 && frame_index >= total_frames) first_pass_seconds = t;
    if (frame_index >= total_frames && (o.seconds <= 0 || t >= o.seconds)) break;
    if (o.rate != 0) {
      const double due = static_cast<double>(packets) / static_cast<double>(o.rate);
      if (due > t) std::this_thread::sleep_for(std::chrono::duration<double>(due - t));
    }
  }
  const double secs = elapsed();
  close(fd);
  std::printf(
      "{\"mode\":\"%s\",\"flows\":%llu,\"packets\":%llu,\"bytes\":%llu,\"seconds\":%.3f,"
      "\"pps\":%.0f,\"mbps\":%.1f,\"first_pass_seconds\":%.3f,\"first_pass_pps\":%.0f,"
      "\"passes\":%llu,\"retries\":%llu}\n",
      o.mode.c_str(), static_cast<unsigned long long>(o.flows),
      static_cast<unsigned long long>(packets), static_cast<unsigned long long>(bytes), secs,
      static_cast<double>(packets) / secs, static_cast<double>(bytes) * 8 / secs / 1e6,
      first_pass_seconds, static_cast<double>(total_frames) / first_pass_seconds,
      static_cast<unsigned long long>(frame_index / total_frames),
      static_cast<unsigned long long>(retries));
  return 0;
}
