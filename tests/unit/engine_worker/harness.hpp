#pragma once
// Test harness for one engine worker: two net_ring ports (0: subscriber side, 1: internet side;
// created once per process), a packet mempool, a policy holder that swaps compiled policies the
// way the control thread does (minus the grace period: tests swap between bursts), and helpers
// to send frames through `process_burst` and read back what each port transmitted.

#include <doctest/doctest.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <rte_ring.h>

#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/engine/worker.hpp"
#include "dataplane/match/policy.hpp"
#include "dataplane/packet/frame.hpp"
#include "tests/unit/engine_worker/traffic.hpp"
#include "tests/unit/support/packet_builder.hpp"

namespace sluice::test {

struct ring_port {
  std::uint16_t id = 0;
  rte_ring* rx = nullptr;
  rte_ring* tx = nullptr;
};

struct environment {
  rte_mempool* pool = nullptr;
  rte_mempool* response_pool = nullptr;
  ring_port ports[3];  // subscriber, internet, mirror-inject

  static environment& get() {
    static environment env;
    return env;
  }

 private:
  environment() {
    pool = rte_pktmbuf_pool_create("ew_pkts", 8191, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                   SOCKET_ID_ANY);
    response_pool = rte_pktmbuf_pool_create("ew_resp", 1023, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                            SOCKET_ID_ANY);
    if (pool == nullptr || response_pool == nullptr) throw std::runtime_error("mempool");
    for (int i = 0; i < 3; ++i) {
      const std::string n = "ew" + std::to_string(i);
      ring_port& p = ports[i];
      p.rx = rte_ring_create((n + "rx").c_str(), 1024, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
      p.tx = rte_ring_create((n + "tx").c_str(), 4096, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
      if (p.rx == nullptr || p.tx == nullptr) throw std::runtime_error("ring");
      const int id = rte_eth_from_rings(("net_ring_" + n).c_str(), &p.rx, 1, &p.tx, 1, SOCKET_ID_ANY);
      if (id < 0) throw std::runtime_error("rte_eth_from_rings");
      p.id = static_cast<std::uint16_t>(id);
      rte_eth_conf conf{};
      if (rte_eth_dev_configure(p.id, 1, 1, &conf) != 0 ||
          rte_eth_rx_queue_setup(p.id, 0, 1024, SOCKET_ID_ANY, nullptr, pool) != 0 ||
          rte_eth_tx_queue_setup(p.id, 0, 1024, SOCKET_ID_ANY, nullptr) != 0 ||
          rte_eth_dev_start(p.id) != 0) {
        throw std::runtime_error("port setup");
      }
    }
  }
};

inline std::vector<buf> drain(const ring_port& p) {
  std::vector<buf> out;
  void* objs[64];
  unsigned n;
  while ((n = rte_ring_dequeue_burst(p.tx, objs, 64, nullptr)) != 0) {
    for (unsigned i = 0; i < n; ++i) {
      auto* m = static_cast<rte_mbuf*>(objs[i]);
      buf f(rte_pktmbuf_pkt_len(m));  // the whole frame, also of a chained mbuf
      const void* d = rte_pktmbuf_read(m, 0, static_cast<std::uint32_t>(f.size()), f.data());
      REQUIRE(d != nullptr);
      if (d != f.data()) std::memcpy(f.data(), d, f.size());
      out.push_back(std::move(f));
      rte_pktmbuf_free(m);
    }
  }
  return out;
}

// An mbuf chain holding `f`, one segment per piece between `cuts` (increasing offsets inside
// `f`), as scattered rx delivers a frame larger than one mbuf.
inline rte_mbuf* chained(rte_mempool* pool, const buf& f, std::vector<std::size_t> cuts) {
  cuts.push_back(f.size());
  rte_mbuf* head = nullptr;
  std::size_t from = 0;
  for (std::size_t to : cuts) {
    REQUIRE(from < to);
    rte_mbuf* seg = rte_pktmbuf_alloc(pool);
    REQUIRE(seg != nullptr);
    char* d = rte_pktmbuf_append(seg, static_cast<std::uint16_t>(to - from));
    REQUIRE(d != nullptr);
    std::memcpy(d, f.data() + from, to - from);
    if (head == nullptr) {
      head = seg;
    } else {
      REQUIRE(rte_pktmbuf_chain(head, seg) == 0);
    }
    from = to;
  }
  return head;
}

// Sets the IPv4 TTL of an Ethernet + IPv4 frame and fixes the header checksum.
inline buf with_ttl(buf f, std::uint8_t ttl) {
  f[14 + 8] = ttl;
  set16(f, 14 + 10, 0);
  const buf hdr(f.begin() + 14, f.begin() + 34);
  set16(f, 14 + 10, ref_checksum({}, hdr));
  return f;
}
// Breaks the TCP checksum of an Ethernet + IPv4 (no options) + TCP frame.
inline buf with_bad_checksum(buf f) {
  f[14 + 20 + 16] ^= 0x5a;
  return f;
}

// Splits the L4 bytes of a whole Ethernet + IPv4/IPv6 (no options/extensions) frame into
// fragments with their data starting at `cuts` (multiples of 8, first 0), in datagram order.
inline std::vector<buf> fragment(const buf& frame, std::vector<std::size_t> cuts,
                                 std::uint16_t id) {
  const auto info = packet::parse_frame(frame);
  REQUIRE(info.outcome == packet::frame_outcome::ok);
  const bool v6 = info.ip_version == 6;
  const buf l4(frame.begin() + info.l4_offset, frame.end());
  cuts.push_back(l4.size());
  std::vector<buf> out;
  for (std::size_t i = 0; i + 1 < cuts.size(); ++i) {
    const buf piece = slice(l4, cuts[i], cuts[i + 1]);
    const bool more = i + 2 < cuts.size();
    if (v6) {
      out.push_back(eth_ip(ipv6(info.src, info.dst, 44,
                                frag6(info.l4_proto, static_cast<std::uint16_t>(cuts[i]), more, id),
                                piece, info.l4_proto, false)));
    } else {
      v4_opts o;
      o.id = id;
      o.frag = static_cast<std::uint16_t>((more ? 0x2000 : 0) | (cuts[i] / 8));
      out.push_back(eth_ip(ipv4(info.src, info.dst, info.l4_proto, piece, o)));
    }
  }
  return out;
}

struct harness {
  environment& env = environment::get();
  engine::worker_shared shared;
  engine::worker_config cfg;
  std::unique_ptr<engine::active_policy> active;
  std::vector<std::unique_ptr<engine::active_policy>> retired;
  std::unique_ptr<engine::worker> w;
  std::uint64_t generation = 0;

  const ring_port& sub() const { return env.ports[0]; }
  const ring_port& inet() const { return env.ports[1]; }
  const ring_port& inject() const { return env.ports[2]; }

  explicit harness(std::uint32_t flow_table_size = 1024, bool mirror = false) {
    for (auto& p : env.ports) drain(p);
    const std::uint16_t max_port = std::max({sub().id, inet().id, inject().id});
    cfg.tx_queue_of_port.assign(max_port + 1u, UINT16_MAX);
    cfg.role_of_port.assign(max_port + 1u, engine::port_role::subscriber);
    for (auto& p : env.ports) cfg.tx_queue_of_port[p.id] = 0;
    cfg.role_of_port[inet().id] = engine::port_role::internet;
    cfg.peer_of_port[sub().id] = inet().id;
    cfg.peer_of_port[inet().id] = sub().id;
    cfg.response_pool = env.response_pool;
    cfg.flow_table_size = flow_table_size;
    cfg.reassembly_buffers = 64;
    cfg.reassembly_buffer_bytes = 16384;
    if (mirror) {
      cfg.mirror_mode = true;
      cfg.inject_port = inject().id;
      cfg.role_of_port[sub().id] = engine::port_role::mirror;
    }
    w = std::make_unique<engine::worker>(cfg, shared);
  }
  ~harness() {
    w.reset();
    for (auto& p : env.ports) drain(p);
  }

  // Compiles and publishes `spec` (generation + 1); the old snapshot is kept until the end.
  void set_policy(const match::policy_spec& spec) {
    auto r = match::compile_policy(spec);
    REQUIRE_MESSAGE(r, r.error.message);
    auto ap = std::make_unique<engine::active_policy>();
    ap->generation = ++generation;
    ap->workers = 1;
    ap->rule_counters = std::make_unique<engine::rule_counter[]>(r.policy->rule_count());
    ap->policy = std::move(r.policy);
    shared.policy.store(ap.get(), std::memory_order_release);
    if (active) retired.push_back(std::move(active));
    active = std::move(ap);
  }

  [[nodiscard]] const engine::rule_counter& rule_counter(std::uint32_t rule) const {
    return active->rule_counters[rule];
  }

  // Sends the frames as one burst received on `port`, then flushes tx.
  void send(const std::vector<buf>& frames, std::uint16_t port) {
    std::vector<rte_mbuf*> ms;
    for (const buf& f : frames) {
      rte_mbuf* m = rte_pktmbuf_alloc(env.pool);
      REQUIRE(m != nullptr);
      char* d = rte_pktmbuf_append(m, static_cast<std::uint16_t>(f.size()));
      REQUIRE(d != nullptr);
      std::memcpy(d, f.data(), f.size());
      m->port = port;
      ms.push_back(m);
    }
    w->process_burst(ms.data(), static_cast<std::uint16_t>(ms.size()), port);
    w->flush();
  }
  // Sends `f` as one chained mbuf (see chained), its own burst, then flushes tx.
  void send_chained(const buf& f, const std::vector<std::size_t>& cuts, std::uint16_t port) {
    rte_mbuf* m = chained(env.pool, f, cuts);
    m->port = port;
    w->process_burst(&m, 1, port);
    w->flush();
  }
  void from_client(const std::vector<buf>& frames) { send(frames, sub().id); }
  void from_internet(const std::vector<buf>& frames) { send(frames, inet().id); }
  // Sends one frame (its own burst) from the client or the internet side and returns what
  // reached the other side.
  std::vector<buf> through(const buf& f, bool client_side) {
    if (client_side) {
      from_client({f});
      return drain(inet());
    }
    from_internet({f});
    return drain(sub());
  }

  [[nodiscard]] std::uint64_t count(engine::engine_event e) const {
    return w->counters().events[static_cast<std::size_t>(e)];
  }

  // Every received packet ended exactly once.
  void check_accounting() const {
    using engine::engine_event;
    const auto& c = w->counters();
    CHECK(c.packets == count(engine_event::forwarded) + count(engine_event::dropped_by_rule) +
                           count(engine_event::tx_refused) + count(engine_event::mirror_consumed));
    CHECK(count(engine_event::packets_in) + count(engine_event::packets_out) <= c.packets);
  }
};

// Policy helpers.
inline match::rule_spec rule(std::string id, match::action act, std::vector<std::string> prefixes,
                             std::vector<std::string> domains = {}) {
  match::rule_spec r;
  r.id = std::move(id);
  r.directive = "D-" + r.id;
  r.act = act;
  r.prefixes = std::move(prefixes);
  r.domains = std::move(domains);
  if (act == match::action::notice) r.legal_basis = "Order 123 of 2026-11-20";
  if (act == match::action::throttle) r.throttle = {64000, 16384};
  return r;
}
inline match::policy_spec policy_of(std::vector<match::rule_spec> rules, std::uint64_t rev = 1) {
  match::policy_spec s;
  s.revision = rev;
  s.rules = std::move(rules);
  return s;
}

}  // namespace sluice::test
