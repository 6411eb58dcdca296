#include "dataplane/engine/worker.hpp"

#include <rte_branch_prediction.h>
#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_hash.h>
#include <rte_hash_crc.h>
#include <rte_malloc.h>
#include <rte_pause.h>
#include <rte_prefetch.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>

#include "dataplane/engine/flow_names.hpp"
#include "dataplane/engine/ip_fragments.hpp"
#include "dataplane/engine/mbuf_bytes.hpp"
#include "dataplane/engine/other_l4.hpp"
#include "dataplane/engine/response.hpp"
#include "dataplane/engine/token_bucket.hpp"
#include "dataplane/flow/classifier.hpp"
#include "dataplane/flow/stream_buffer.hpp"
#include "dataplane/packet/frame.hpp"

// Accounting (tested): every received packet ends in exactly one of
//   forwarded (tx accepted it) | tx_refused (no tx queue or the NIC refused: freed) |
//   dropped_by_rule (enforced) | mirror_consumed (mirror mode: a copy, never forwarded),
// so after flush(): packets == forwarded + tx_refused + dropped_by_rule + mirror_consumed.
// Unparseable packets are forwarded (fail open) and counted by parse outcome on top. A chained
// mbuf is judged on a copy of its whole frame (multiseg_gathered); one longer than
// cfg.gather_bytes is forwarded unread (multiseg_too_long). IP fragments are held
// (fragments_held) until their datagram is complete, then a reassembled copy is judged and
// the original fragments are forwarded or dropped by that verdict
// (fragments_reassembled counts datagrams); held fragments are accounted when released, and
// those released without reassembly (timeout, table full, caps, conflicting overlap, flush)
// are forwarded unchanged and counted in fragments_passed. Packets that are IP but not TCP/UDP
// (other_l4.hpp) are judged by address rules and, for ICMP errors, the flow they quote. Our own
// answers (RST, 451, NXDOMAIN) are counted apart: resets_sent, notices_sent, dns_answers_sent,
// response_failed (no mbuf, or refused by tx), response_unanswerable (the packet cannot be answered
// where it stands, e.g. inside a tunnel: RESPONSES.md; it is dropped all the same); on a mirror, a
// verdict on UDP that is not a DNS query cannot be enforced at all: mirror_unenforceable.

namespace sluice::engine {
namespace {

constexpr std::uint16_t max_burst = 64;
constexpr std::size_t name_slot_bytes = name_list::slot_bytes;
constexpr std::uint32_t closing_idle_seconds = 10;  // after FIN/RST
constexpr std::uint16_t answer_every_packets = 32;  // re-answer a blocked flow at most this often
constexpr unsigned age_per_burst = 8;               // idle-aging scan step (held entries)
constexpr unsigned age_scan_words = 16;             // ... and bitmap words (1,024 positions)
constexpr unsigned prefetch_ahead = 3;              // packets, where each is handled whole
constexpr unsigned parse_ahead = 6;                 // packets, in a burst's parse stage
constexpr std::uint32_t no_rule = match::verdict::no_rule;
constexpr std::size_t counted_rules_per_flow = 4;
constexpr std::size_t impact_rules_per_flow = 4;  // address rules remembered per flow

// Impact recording (name_sketch.hpp), once per flow: `pending` once the flow matched address
// rules and waits for its name (or the end of classification, or expiry); `done` after it was
// recorded (or there was nothing to record and classification is over).
enum class impact_state : std::uint8_t { idle, pending, done };

// Canonical flow key: the (address, port) pair that sorts first is side a, so both directions
// of a flow find the same entry. `tenant` (VXLAN/Geneve VNI) keeps tenants' overlays with the
// same inner addresses apart (a GTP-U TEID differs per direction: not in the key). 48 bytes,
// 8-aligned, every byte defined: rte_hash_crc reads it as six aligned 64-bit words.
struct alignas(8) flow_key {
  std::array<std::uint8_t, 16> a;
  std::array<std::uint8_t, 16> b;
  std::uint16_t port_a;
  std::uint16_t port_b;
  std::uint16_t vlan;
  std::uint8_t proto;
  std::uint8_t version;
  std::uint32_t tenant;
  std::uint32_t reserved;  // zero (make_key writes whole words)
};
static_assert(sizeof(flow_key) == 48 && alignof(flow_key) == 8);
static_assert(std::is_trivially_destructible_v<packet::frame_info>);

// What an established packet reads comes first (the bulk lookup prefetches hot_entry_bytes).
// Line-aligned, so that those bytes are exactly the first two lines.
struct alignas(RTE_CACHE_LINE_SIZE) flow_entry {
  flow::flow_state cls;
  std::uint64_t last_tsc = 0;
  std::uint64_t generation = UINT64_MAX;  // of the policy the cached groups belong to
  std::uint32_t ip_group = no_group;
  std::uint32_t name_group = no_group;
  std::uint16_t since_answer = 0;
  std::uint16_t name_bytes = 0;  // of the flow's name slot in use (flow_names.hpp), 0 = none
  std::uint8_t counted_n = 0;
  impact_state impact = impact_state::idle;
  bool in_use = false;
  bool closing = false;
  bool unmatched_counted = false;
  std::uint8_t impact_n = 0;            // entries of impact_rules in use
  std::uint8_t impact_extra = 0;        // address rules beyond impact_rules (counted as overflow)
  // The flow's last verdict, reused while its inputs hold: the same policy generation, the same
  // address group (both fixed until refresh_groups clears this), the same name group and the
  // same second of ctx.now (rule windows are in seconds) give the same verdict.
  bool verdict_cached = false;
  std::uint32_t verdict_second = 0;  // low 32 bits of the ctx.now it was decided at
  match::verdict verdict;
  std::uint32_t verdict_name_group = no_group;  // the name group it was decided with
  // Read by every packet of a flow a rule matched (count_rules, answer).
  std::array<std::uint32_t, counted_rules_per_flow> counted{};  // rules whose `flows` we bumped
  std::uint64_t answer_tsc = 0;         // last RST/notice sent for this flow (0 = never)
  // Cold: classification, policy swaps, throttling.
  std::uint64_t buffer_tsc = 0;         // when cls took its reassembly buffer
  packet::ip_address internet;          // what prefix rules match
  std::uint32_t bucket_rule = no_rule;  // the throttle rule `bucket` was made for
  std::array<std::uint32_t, impact_rules_per_flow> impact_rules{};  // address rules (pending)
  token_bucket bucket{0, 0};
};

// A packet after the first stage of a burst (worker::impl::process_staged): parsed, and for a
// whole single-segment TCP/UDP packet its flow key, hash and bulk-lookup position.
struct staged {
  packet::frame_info info;  // constructed in place by process_staged (trivially destructible)
  flow_key key;
  hash_sig_t sig = 0;
  std::int32_t pos = -1;  // entry position, or negative when the bulk lookup missed
  // For a keyed packet whose flow the bulk lookup missed: the address group of the flow it
  // would create (internet_address), looked up with the burst's other new flows.
  std::uint32_t ip_group = no_group;
  bool from_a = true;
  bool parsed = false;     // false: a chain, left to on_packet
  bool keyed = false;      // a whole TCP/UDP packet: key, sig and pos are set
  bool ip_looked = false;  // ip_group is set
};

// Bytes at the start of a flow entry an established packet reads: prefetched after the bulk
// lookup.
constexpr std::size_t hot_entry_bytes = offsetof(flow_entry, buffer_tsc);
static_assert(hot_entry_bytes <= 2 * RTE_CACHE_LINE_SIZE && sizeof(flow_entry) == 192);

// A bit per position of an rte_hash table whose key is held, and a cursor that walks them a few
// at a time: the aging scans' iterator. rte_hash_iterate skips empty slots one by one, so on a
// sparse table every step scanned most of it (an idle worker spent nearly all its time there).
class held_positions {
 public:
  void attach(std::uint64_t* words, std::uint32_t positions) noexcept {
    words_ = words;
    count_ = (positions + 63) / 64;
  }
  void set(std::uint32_t pos) noexcept { words_[pos / 64] |= std::uint64_t{1} << (pos % 64); }
  void clear(std::uint32_t pos) noexcept { words_[pos / 64] &= ~(std::uint64_t{1} << (pos % 64)); }
  [[nodiscard]] std::uint32_t words() const noexcept { return count_; }
  [[nodiscard]] std::uint64_t* storage() const noexcept { return words_; }  // as attached

  // Calls f(pos) for at most `max_held` held positions from the cursor on, looking at no more
  // than `max_words` words; the next call resumes after the last position given. f may clear
  // the position it is given.
  template <typename F>
  void walk(unsigned max_held, unsigned max_words, F&& f) noexcept {
    unsigned given = 0;
    for (unsigned scanned = 0; given < max_held && scanned < max_words;) {
      const std::uint64_t bits = words_[word_] & (~std::uint64_t{0} << bit_);
      if (bits == 0) {
        next_word();
        ++scanned;
        continue;
      }
      const auto bit = static_cast<unsigned>(std::countr_zero(bits));
      const std::uint32_t pos = word_ * 64 + bit;
      if (bit == 63) {
        next_word();
        ++scanned;
      } else {
        bit_ = bit + 1;
      }
      ++given;
      f(pos);
    }
  }

 private:
  void next_word() noexcept {
    word_ = word_ + 1 == count_ ? 0 : word_ + 1;
    bit_ = 0;
  }
  std::uint64_t* words_ = nullptr;
  std::uint32_t count_ = 0;  // words
  std::uint32_t word_ = 0;
  unsigned bit_ = 0;
};

// Per-burst deltas, added to the published counters once per burst.
struct burst_counts {
  std::array<std::uint64_t, static_cast<std::size_t>(engine_event::count)> events{};
  std::array<std::uint64_t, static_cast<std::size_t>(packet::frame_outcome::count)> parse{};
  std::array<std::uint64_t, static_cast<std::size_t>(flow::give_up_reason::count)> give_ups{};
  std::uint64_t packets = 0;
  void add(engine_event e, std::uint64_t n = 1) noexcept {
    events[static_cast<std::size_t>(e)] += n;
  }
};

// What a burst reads from the policy once.
struct burst_context {
  const match::compiled_policy* policy = nullptr;
  rule_counter* rules = nullptr;  // this worker's row, or null
  std::uint64_t generation = 0;
  std::int64_t now = 0;           // unix seconds (rule windows)
  std::uint64_t now_tsc = 0;
  sketch_set* sketch = nullptr;   // the impact buffer being filled, or null (off / no policy)
};

std::int64_t system_seconds() noexcept {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME_COARSE, &ts);
  return ts.tv_sec;
}

template <typename T>
T* socket_array(std::size_t n, unsigned socket, const char* what) {
  void* mem = rte_zmalloc_socket(what, sizeof(T) * n, RTE_CACHE_LINE_SIZE, static_cast<int>(socket));
  if (mem == nullptr) {
    throw std::runtime_error(std::string("worker: rte_zmalloc_socket refused ") + what);
  }
  T* p = static_cast<T*>(mem);
  for (std::size_t i = 0; i < n; ++i) new (p + i) T();
  return p;
}

// rte_hash accepts no fewer than 8 entries.
std::uint32_t table_entries(std::uint32_t wanted) noexcept { return std::max<std::uint32_t>(wanted, 8); }

// A worker-private rte_hash with a unique name. The extendable table holds exactly `entries`
// keys whatever the bucket collisions, so "full" means full, and positions stay below
// `entries`. Throws std::runtime_error when DPDK refuses.
rte_hash* create_table(const char* prefix, const worker_config& cfg, std::uint32_t key_len,
                       std::uint32_t entries, const char* what) {
  static std::atomic<unsigned> seq{0};
  const std::string name =
      prefix + std::to_string(cfg.id) + "_" + std::to_string(seq.fetch_add(1));
  rte_hash_parameters p{};
  p.name = name.c_str();
  p.entries = table_entries(entries);
  p.key_len = key_len;
  p.hash_func = rte_hash_crc;
  p.hash_func_init_val = 0;
  p.socket_id = static_cast<int>(cfg.socket);
  p.extra_flag = RTE_HASH_EXTRA_FLAGS_EXT_TABLE;
  rte_hash* h = rte_hash_create(&p);
  if (h == nullptr) {
    throw std::runtime_error(std::string("worker: rte_hash_create refused the ") + what + ": " +
                             rte_strerror(rte_errno));
  }
  return h;
}

flow::classifier::config classifier_config(const worker_config& c) noexcept {
  flow::classifier::config k;
  k.verify_checksums = c.verify_checksums;
  return k;
}

}  // namespace

struct alignas(RTE_CACHE_LINE_SIZE) worker::impl {
  struct tx_buffer {
    std::uint16_t n = 0;
    std::array<rte_mbuf*, max_burst> pkts{};
    std::array<bool, max_burst> response{};
  };

  impl(const worker_config& c, worker_shared& s)
      : cfg(c),
        shared(s),
        pool(c.reassembly_buffers, c.reassembly_buffer_bytes),
        cls(pool, classifier_config(c)),
        entropy(rte_rdtsc() ^ (std::uint64_t{c.id} << 32)) {}

  ~impl() {
    // Held fragments were never accounted (flush() and run() release them first): free only.
    if (frag_slots != nullptr) {
      for (std::uint32_t i = 0; i < frag_capacity; ++i) {
        for (std::uint8_t k = 0; k < frag_slots[i].n; ++k) {
          rte_pktmbuf_free(frag_slots[i].pieces[k].m);
        }
        frag_slots[i].~frag_slot();
      }
      rte_free(frag_slots);
    }
    if (frags != nullptr) rte_hash_free(frags);
    rte_free(frag_scratch);
    rte_free(gather);
    if (flows != nullptr) rte_hash_free(flows);
    if (entries != nullptr) {
      for (std::uint32_t i = 0; i < capacity; ++i) entries[i].~flow_entry();
      rte_free(entries);
    }
    rte_free(names);
    rte_free(flow_bits.storage());
    rte_free(frag_bits.storage());
    if (sketches != nullptr) {
      for (int i = 0; i < 2; ++i) sketches[i].~sketch_set();
      rte_free(sketches);
    }
    for (auto& t : tx) {
      for (std::uint16_t i = 0; i < t.n; ++i) rte_pktmbuf_free(t.pkts[i]);
      t.n = 0;
    }
  }

  // ---- tx ----------------------------------------------------------------------------------

  void send_port(std::uint16_t port) noexcept {
    tx_buffer& t = tx[port];
    if (t.n == 0) return;
    const std::uint16_t q = cfg.tx_queue_of_port[port];
    const std::uint16_t sent = rte_eth_tx_burst(port, q, t.pkts.data(), t.n);
    std::uint64_t fwd = 0, refused = 0, resp_failed = 0;
    for (std::uint16_t i = 0; i < sent; ++i) fwd += t.response[i] ? 0 : 1;
    for (std::uint16_t i = sent; i < t.n; ++i) {
      (t.response[i] ? resp_failed : refused) += 1;
      rte_pktmbuf_free(t.pkts[i]);
    }
    auto& ev = counters.events;
    ev[static_cast<std::size_t>(engine_event::forwarded)] += fwd;
    ev[static_cast<std::size_t>(engine_event::tx_refused)] += refused;
    ev[static_cast<std::size_t>(engine_event::response_failed)] += resp_failed;
    t.n = 0;
  }

  void flush_all() noexcept {
    for (std::uint16_t p = 0; p < tx_ports; ++p) send_port(p);
  }

  // Buffers `m` for `port`; a port we cannot transmit on frees it (counted as refused).
  void enqueue(std::uint16_t port, rte_mbuf* m, bool response, burst_counts& c) noexcept {
    if (port >= tx_ports || cfg.tx_queue_of_port[port] == UINT16_MAX) [[unlikely]] {
      rte_pktmbuf_free(m);
      c.add(response ? engine_event::response_failed : engine_event::tx_refused);
      return;
    }
    tx_buffer& t = tx[port];
    t.pkts[t.n] = m;
    t.response[t.n] = response;
    if (++t.n >= tx_burst) send_port(port);
  }

  // The packet goes on unchanged (fail open, or no rule), except in mirror mode.
  void pass(rte_mbuf* m, std::uint16_t rx_port, burst_counts& c) noexcept {
    if (cfg.mirror_mode) {
      rte_pktmbuf_free(m);
      c.add(engine_event::mirror_consumed);
      return;
    }
    enqueue(cfg.peer_of_port[rx_port], m, false, c);
  }

  void drop(rte_mbuf* m, burst_counts& c) noexcept {
    rte_pktmbuf_free(m);
    c.add(engine_event::dropped_by_rule);
  }

  // ---- answers -----------------------------------------------------------------------------

  template <typename Build>
  bool send_answer(std::uint16_t port, engine_event what, burst_counts& c, Build&& build) noexcept {
    if (cfg.response_pool == nullptr) {
      c.add(engine_event::response_failed);
      return false;
    }
    rte_mbuf* r = rte_pktmbuf_alloc(cfg.response_pool);
    if (r == nullptr) {
      c.add(engine_event::response_failed);
      return false;
    }
    auto* data = rte_pktmbuf_mtod(r, std::uint8_t*);
    const std::size_t len = build(std::span<std::uint8_t>(data, rte_pktmbuf_tailroom(r)));
    if (len == 0) {
      rte_pktmbuf_free(r);
      c.add(engine_event::response_unanswerable);
      return false;
    }
    r->data_len = static_cast<std::uint16_t>(len);
    r->pkt_len = static_cast<std::uint32_t>(len);
    c.add(what);
    enqueue(port, r, true, c);
    return true;
  }

  void send_resets(packet::bytes frame, const packet::frame_info& info, std::uint16_t rx_port,
                   burst_counts& c) noexcept {
    const std::uint16_t back = cfg.mirror_mode ? cfg.inject_port : rx_port;
    const std::uint16_t on = cfg.mirror_mode ? cfg.inject_port : cfg.peer_of_port[rx_port];
    send_answer(back, engine_event::resets_sent, c, [&](std::span<std::uint8_t> out) {
      return build_tcp_reset(frame, info, reset_target::to_sender, entropy, out);
    });
    // Inline, the original is dropped: the receiver still expects its sequence number.
    const reset_target onward =
        cfg.mirror_mode ? reset_target::to_receiver : reset_target::to_receiver_instead;
    send_answer(on, engine_event::resets_sent, c, [&](std::span<std::uint8_t> out) {
      return build_tcp_reset(frame, info, onward, entropy, out);
    });
  }

  // reset / notice (and, on a mirror, drop): answer, then drop the packet. TCP: resets or the
  // notice, rate-limited per flow. UDP: a client's DNS query gets NXDOMAIN, each query its
  // answer (never larger than the query); other UDP gets nothing.
  void answer(rte_mbuf* m, packet::bytes frame, const packet::frame_info& info, flow_entry* e,
              const burst_context& ctx, match::action act, std::uint32_t rule,
              std::uint16_t rx_port, bool from_client, burst_counts& c) noexcept {
    if (info.l4_proto == IPPROTO_UDP && from_client && e != nullptr &&
        e->cls.protocol == flow::flow_protocol::dns_udp) {
      send_answer(cfg.mirror_mode ? cfg.inject_port : rx_port, engine_event::dns_answers_sent, c,
                  [&](std::span<std::uint8_t> out) {
                    return build_dns_answer(frame, info, dns_rcode::nxdomain, entropy, out);
                  });
      drop(m, c);
      return;
    }
    if (info.l4_proto != IPPROTO_TCP || (info.tcp_flags & packet::tcp_rst)) {
      if (cfg.mirror_mode && info.l4_proto == IPPROTO_UDP) {
        c.add(engine_event::mirror_unenforceable);
      }
      drop(m, c);
      return;
    }
    bool due = true;
    if (e != nullptr) {
      // answer_tsc is odd (non-zero marks "answered"), so it may exceed an even now_tsc of
      // the same burst: compare without wrapping.
      due = e->answer_tsc == 0 || ++e->since_answer >= answer_every_packets ||
            (ctx.now_tsc > e->answer_tsc && ctx.now_tsc - e->answer_tsc >= tsc_hz);
      if (due) {
        e->answer_tsc = ctx.now_tsc | 1;
        e->since_answer = 0;
      }
    }
    if (due) {
      bool noticed = false;
      if (act == match::action::notice && !cfg.mirror_mode && e != nullptr && e->name_bytes != 0 &&
          e->cls.protocol == flow::flow_protocol::http && from_client && info.payload_length > 0) {
        const std::string_view legal = ctx.policy->rule(rule).legal_basis;
        const std::string_view name = names_of(*e).first();
        noticed = send_answer(rx_port, engine_event::notices_sent, c,
                              [&](std::span<std::uint8_t> out) {
                                return build_http_notice(frame, info, legal, name, entropy, out);
                              });
        if (noticed) {
          send_answer(cfg.peer_of_port[rx_port], engine_event::resets_sent, c,
                      [&](std::span<std::uint8_t> out) {
                        return build_tcp_reset(frame, info, reset_target::to_receiver_instead,
                                               entropy, out);
                      });
        }
      }
      if (!noticed) send_resets(frame, info, rx_port, c);
    }
    drop(m, c);
  }

  [[nodiscard]] std::uint32_t position_of(const flow_entry* e) const noexcept {
    return static_cast<std::uint32_t>(e - entries);
  }

  [[nodiscard]] name_list names_of(flow_entry& e) noexcept {
    return name_list(names + std::size_t{position_of(&e)} * name_slot_bytes, e.name_bytes);
  }

  // Judged message by message (a resolver's 5-tuple asks many names), unless pinned: see judge.
  [[nodiscard]] static bool per_message(const flow_entry& e) noexcept {
    return e.cls.protocol == flow::flow_protocol::dns_udp ||
           e.cls.protocol == flow::flow_protocol::ssdp;
  }

  // ---- policy ------------------------------------------------------------------------------

  // `looked_up`: e.internet's address group, already looked up (process_staged), or null.
  void refresh_groups(flow_entry& e, const burst_context& ctx,
                      const std::uint32_t* looked_up = nullptr) noexcept {
    e.generation = ctx.generation;
    e.verdict_cached = false;
    e.counted_n = 0;
    e.bucket_rule = no_rule;
    e.ip_group = no_group;
    e.name_group = no_group;
    if (e.impact != impact_state::done) {
      e.impact = impact_state::idle;
      e.impact_n = 0;
      e.impact_extra = 0;
    }
    if (ctx.policy == nullptr) return;
    if (looked_up != nullptr) {
      e.ip_group = *looked_up;
    } else if (auto g = ctx.policy->match_ip(e.internet)) {
      e.ip_group = *g;
    }
    if (e.name_bytes != 0) {
      // Re-decided from every name the flow revealed: the strongest under this policy decides.
      name_list l = names_of(e);
      const name_pick p = pick_strongest(*ctx.policy, opt_group(e.ip_group), l, ctx.now);
      if (p.index >= 0) {
        e.name_group = p.group;
        l.add(l.nth(static_cast<std::size_t>(p.index)), true);
      }
      // A pinned DNS/SSDP flow stays pinned while one of its names still enforces; a lift
      // returns it to per-message judging.
      if (per_message(e) && !(p.group != no_group && p.v.enforce())) {
        l.clear();
        e.name_group = no_group;
      }
    }
    // Every active rule the address matched, whatever its action (monitor = shadow mode).
    if (ctx.sketch != nullptr && e.impact == impact_state::idle && e.ip_group != no_group) {
      for (std::uint32_t r : ctx.policy->group(e.ip_group).rules) {
        if (!ctx.policy->rule_active(r, ctx.now)) continue;
        if (e.impact_n < impact_rules_per_flow) {
          e.impact_rules[e.impact_n++] = r;
        } else if (e.impact_extra < UINT8_MAX) {
          ++e.impact_extra;
        }
      }
      if (e.impact_n != 0 || e.impact_extra != 0) e.impact = impact_state::pending;
    }
  }

  // ---- impact sketches ---------------------------------------------------------------------

  // Records the flow once: `name` (null = unnamed) for each address rule it matched, and for
  // each active rule of `name_group` (a domain rule) not already among them. ctx.sketch and
  // ctx.policy are set, and e.generation == ctx.generation (the rule indices are ctx.policy's).
  void impact_record(flow_entry& e, const burst_context& ctx, std::string_view name,
                     bool named, std::uint32_t name_group) noexcept {
    sketch_set& s = *ctx.sketch;
    sketch_name n;
    if (named) n = normalise_name(name);
    auto add = [&](std::uint32_t r) {
      const match::compiled_rule& rule = ctx.policy->rule(r);
      if (rule_sketch* k = s.slot_for(r, rule.id, rule.directive)) {
        if (named) {
          k->add_name(n);
        } else {
          k->add_unnamed();
        }
      }
    };
    for (std::uint8_t i = 0; i < e.impact_n; ++i) add(e.impact_rules[i]);
    s.overflow_flows += e.impact_extra;
    if (named && name_group != no_group) {
      for (std::uint32_t r : ctx.policy->group(name_group).rules) {
        if (!ctx.policy->rule_active(r, ctx.now)) continue;
        const auto end = e.impact_rules.begin() + e.impact_n;
        if (std::find(e.impact_rules.begin(), end, r) == end) add(r);
      }
    }
    e.impact = impact_state::done;
  }

  // A flow leaving the table while its name was still awaited: recorded as unnamed, unless the
  // policy changed since its rules were captured (their indices may name other rules now).
  void impact_expire(flow_entry& e, const burst_context& ctx) noexcept {
    if (e.impact != impact_state::pending || ctx.sketch == nullptr) return;
    if (ctx.policy == nullptr || e.generation != ctx.generation) {
      ctx.sketch->swap_dropped_flows += 1;
      return;
    }
    impact_record(e, ctx, {}, false, no_group);
  }

  // Loads what one loop iteration reads from the shared state: the policy (RCU) and the impact
  // buffer. Both are held only until this iteration reports quiescence.
  void load_context(burst_context& ctx) noexcept {
    // Acquire pairs with the control thread's release store: the snapshot's contents are
    // visible before we use the pointer. We hold it only until the end of this burst, i.e.
    // before this loop iteration reports quiescence, so the grace period covers us.
    const active_policy* ap = shared.policy.load(std::memory_order_acquire);
    if (ap != nullptr) {
      ctx.policy = ap->policy.get();
      ctx.generation = ap->generation;
      if (ctx.policy != nullptr && ap->rule_counters != nullptr && cfg.id < ap->workers) {
        ctx.rules = ap->rule_counters.get() + std::size_t{cfg.id} * ctx.policy->rule_count();
      }
    }
    ctx.now = shared.clock != nullptr ? shared.clock() : system_seconds();
    if (sketches != nullptr && ctx.policy != nullptr) {
      // Same argument as the policy pointer: drain_impact flips the index, then waits for a
      // grace period before it reads the other buffer, and we write only the one we loaded
      // until we report quiescence.
      sketch_set& s = sketches[shared.impact_buffer.load(std::memory_order_acquire) & 1u];
      if (s.generation != ctx.generation) [[unlikely]] {
        const match::compiled_policy& p = *ctx.policy;
        s.retag(ctx.generation, [&p](std::uint32_t i) {
          return i < p.rule_count() ? std::string_view(p.rule(i).id) : std::string_view();
        });
      }
      ctx.sketch = &s;
    }
  }

  // Per-rule counters: packets always, flows once per (flow, rule) while the policy lasts.
  void count_rules(flow_entry* e, const burst_context& ctx, const match::verdict& v,
                   std::uint32_t ip_group, std::uint32_t name_group) noexcept {
    if (ctx.rules == nullptr) return;
    auto bump = [&](std::uint32_t r) {
      ++ctx.rules[r].packets;
      if (e == nullptr) return;
      for (std::uint8_t i = 0; i < e->counted_n; ++i) {
        if (e->counted[i] == r) return;
      }
      if (e->counted_n < counted_rules_per_flow) e->counted[e->counted_n++] = r;
      ++ctx.rules[r].flows;
    };
    if (v.enforce()) bump(v.rule);
    if (v.monitors == 0) return;
    const auto* pol = ctx.policy;
    if (ip_group != no_group) pol->for_each_active_monitor(pol->group(ip_group), ctx.now, bump);
    if (name_group != no_group && name_group != ip_group) {
      const auto ip_rules = ip_group != no_group ? pol->group(ip_group).rules
                                                 : std::span<const std::uint32_t>{};
      pol->for_each_active_monitor(pol->group(name_group), ctx.now, [&](std::uint32_t r) {
        if (!std::binary_search(ip_rules.begin(), ip_rules.end(), r)) bump(r);
      });
    }
  }

  // Applies a verdict to a packet (consumes it).
  void enforce(rte_mbuf* m, packet::bytes frame, const packet::frame_info& info, flow_entry* e,
               const burst_context& ctx, const match::verdict& v, std::uint16_t rx_port,
               bool from_client, burst_counts& c) noexcept {
    if (v.monitors != 0) c.add(engine_event::monitor_hits);
    if (!v.enforce()) {
      pass(m, rx_port, c);
      return;
    }
    switch (v.act) {
      case match::action::throttle: {
        if (e == nullptr) {  // no per-flow state (other_l4.hpp): fail open
          c.add(engine_event::throttle_flowless);
          pass(m, rx_port, c);
          return;
        }
        if (e->bucket_rule != v.rule) {
          const auto& r = ctx.policy->rule(v.rule);
          e->bucket = token_bucket(
              r.rate_bps, static_cast<std::uint32_t>(std::min<std::uint64_t>(r.burst_bytes,
                                                                             UINT32_MAX)));
          e->bucket_rule = v.rule;
        }
        if (e->bucket.admit(ctx.now_tsc, rte_pktmbuf_pkt_len(m), tsc_hz)) {
          pass(m, rx_port, c);
        } else {
          c.add(engine_event::throttled_drops);
          drop(m, c);
        }
        return;
      }
      case match::action::reset:
      case match::action::notice:
        answer(m, frame, info, e, ctx, v.act, v.rule, rx_port, from_client, c);
        return;
      case match::action::drop:
        // A mirror cannot drop: the copy's original has reached its receiver. It enforces a
        // drop the one way it can, as a reset (TCP) or NXDOMAIN (a DNS query); other UDP
        // (QUIC) goes unstopped, as for reset. Inline, the packet is dropped.
        if (cfg.mirror_mode) {
          answer(m, frame, info, e, ctx, v.act, v.rule, rx_port, from_client, c);
          return;
        }
        break;
      case match::action::monitor:
      case match::action::count:
        break;
    }
    drop(m, c);
  }

  // ---- packets -----------------------------------------------------------------------------

  // A fragment carries addresses, so an address rule stops it at once (drop/reset/notice; not
  // throttle, which needs a flow). Otherwise TCP/UDP/tunnel fragments are held until their
  // datagram is complete; anything else passes (fail open).
  void on_fragment(rte_mbuf* m, packet::bytes frame, const packet::frame_info& info,
                   port_role role, std::uint16_t rx_port, const burst_context& ctx,
                   burst_counts& c) noexcept {
    if (ctx.policy != nullptr && info.ip_version != 0) {
      const auto& internet = role == port_role::internet ? info.src : info.dst;
      if (auto g = ctx.policy->match_ip(internet)) {
        const match::verdict v = ctx.policy->decide(g, std::nullopt, ctx.now);
        if (v.enforce() && v.act != match::action::throttle) {
          count_rules(nullptr, ctx, v, *g, no_group);
          drop(m, c);
          return;
        }
      }
    }
    const bool reassemblable = info.l4_proto == IPPROTO_TCP || info.l4_proto == IPPROTO_UDP ||
                               info.l4_proto == IPPROTO_IPIP || info.l4_proto == IPPROTO_IPV6 ||
                               info.l4_proto == IPPROTO_GRE;
    frag_piece piece;
    piece.m = m;
    piece.rx_port = rx_port;
    if (frags == nullptr || !reassemblable || !locate_fragment(frame, info, piece) ||
        piece.offset + piece.data_len > frag_scratch_bytes) {
      c.add(engine_event::fragments_passed);
      pass(m, rx_port, c);
      return;
    }
    frag_key k;
    std::memset(&k, 0, sizeof k);
    k.src = info.src.bytes;
    k.dst = info.dst.bytes;
    k.id = info.frag_id;
    k.vlan = info.outer_vlan;
    k.proto = info.l4_proto;
    k.version = info.ip_version;
    k.tunnel = info.tunnel_id;
    const hash_sig_t sig = rte_hash_crc(&k, sizeof k, 0);
    std::int32_t pos = rte_hash_lookup_with_hash(frags, &k, sig);
    if (pos < 0) {
      pos = rte_hash_add_key_with_hash(frags, &k, sig);
      if (pos < 0 || static_cast<std::uint32_t>(pos) >= frag_capacity) [[unlikely]] {
        if (pos >= 0) rte_hash_del_key_with_hash(frags, &k, sig);
        c.add(engine_event::fragments_passed);  // table full: fail open
        pass(m, rx_port, c);
        return;
      }
      frag_slot& fresh = frag_slots[pos];
      fresh.key = k;
      fresh.first_tsc = ctx.now_tsc;
      fresh.n = 0;
      fresh.in_use = true;
      frag_bits.set(static_cast<std::uint32_t>(pos));
      ++frag_held_datagrams;
    }
    frag_slot& slot = frag_slots[pos];
    c.add(engine_event::fragments_held);
    if (slot.n == frag_max_pieces) {  // over the cap: the held ones and this one go on
      release_frags(slot, c);
      c.add(engine_event::fragments_passed);
      pass(m, rx_port, c);
      return;
    }
    slot.pieces[slot.n++] = piece;
    std::size_t len = 0;
    switch (reassemble(slot, std::span<std::uint8_t>(frag_scratch, frag_scratch_bytes), len)) {
      case reassembly::incomplete:
        return;
      case reassembly::invalid:
        release_frags(slot, c);
        return;
      case reassembly::complete:
        break;
    }
    judge_datagram(slot, len, info, ctx, c);
  }

  // The reassembled copy in frag_scratch is judged like any packet of its flow; the original
  // fragments then follow its verdict in arrival order.
  void judge_datagram(frag_slot& slot, std::size_t len, const packet::frame_info& frag_info,
                      const burst_context& ctx, burst_counts& c) noexcept {
    c.add(engine_event::fragments_reassembled);
    const frag_piece& first = *std::min_element(
        slot.pieces.begin(), slot.pieces.begin() + slot.n,
        [](const frag_piece& a, const frag_piece& b) { return a.offset < b.offset; });
    const std::uint16_t l3 = first.l3_at;
    const packet::bytes frame(frag_scratch, len);
    packet::frame_info info = packet::parse_ip(frame.subspan(l3));
    info.l3_offset = static_cast<std::uint16_t>(info.l3_offset + l3);
    info.l4_offset = static_cast<std::uint16_t>(info.l4_offset + l3);
    info.payload_offset = static_cast<std::uint16_t>(info.payload_offset + l3);
    // Fragments inside a tunnel: the datagram's tunnel is the fragments' (parse_ip saw none).
    if ((info.encap & packet::encap_udp_tunnels) == 0) {
      info.tunnel_id = frag_info.tunnel_id;
      info.tenant_id = frag_info.tenant_id;
    }
    info.encap = static_cast<std::uint16_t>(info.encap | frag_info.encap);
    info.outer_vlan = frag_info.outer_vlan;
    const std::uint16_t rx_port = slot.pieces[0].rx_port;
    const port_role role = rx_port < cfg.role_of_port.size() ? cfg.role_of_port[rx_port]
                                                             : port_role::subscriber;
    judgement j;
    const bool judged = info.outcome == packet::frame_outcome::ok && !info.is_fragment &&
                        judge(frame, info, false, role, ctx, c, j);
    for (std::uint8_t i = 0; i < slot.n; ++i) {
      const frag_piece& p = slot.pieces[i];
      if (judged) {
        enforce(p.m, frame, info, j.e, ctx, j.v, p.rx_port, j.from_client, c);
      } else {
        pass(p.m, p.rx_port, c);  // the datagram is not TCP/UDP we can key: fail open
      }
    }
    forget_frags(slot);
  }

  // Forwards every held fragment of the datagram unchanged (fail open) and frees the slot.
  void release_frags(frag_slot& slot, burst_counts& c) noexcept {
    for (std::uint8_t i = 0; i < slot.n; ++i) {
      c.add(engine_event::fragments_passed);
      pass(slot.pieces[i].m, slot.pieces[i].rx_port, c);
    }
    forget_frags(slot);
  }

  void forget_frags(frag_slot& slot) noexcept {
    frag_bits.clear(static_cast<std::uint32_t>(&slot - frag_slots));
    rte_hash_del_key(frags, &slot.key);
    slot.n = 0;
    slot.in_use = false;
    --frag_held_datagrams;
  }

  // Releases datagrams held past the timeout, a few held slots per call, resuming where the
  // last call stopped.
  void expire_frags(std::uint64_t now_tsc, burst_counts& c) noexcept {
    if (frags == nullptr || frag_held_datagrams == 0) return;
    // The fragment table is small (a bitmap word per 64 datagrams): one pass over all of it,
    // so a datagram past its timeout goes within one burst.
    frag_bits.walk(age_per_burst, frag_bits.words(), [&](std::uint32_t pos) {
      frag_slot& slot = frag_slots[pos];
      if (!slot.in_use || now_tsc <= slot.first_tsc ||
          now_tsc - slot.first_tsc <= frag_timeout_tsc) {
        return;
      }
      release_frags(slot, c);
    });
  }

  // Releases every held datagram (flush, stop).
  void release_all_frags(burst_counts& c) noexcept {
    if (frags == nullptr) return;
    for (std::uint32_t i = 0; i < frag_capacity && frag_held_datagrams != 0; ++i) {
      if (frag_slots[i].in_use) release_frags(frag_slots[i], c);
    }
  }

  void publish(const burst_counts& c) noexcept {
    for (std::size_t i = 0; i < c.events.size(); ++i) counters.events[i] += c.events[i];
    for (std::size_t i = 0; i < c.parse.size(); ++i) counters.parse[i] += c.parse[i];
    for (std::size_t i = 0; i < c.give_ups.size(); ++i) counters.give_ups[i] += c.give_ups[i];
    counters.packets += c.packets;
  }

  // Not TCP/UDP (other_l4.hpp): address rules, and for ICMP errors the flow or addresses they
  // quote. The quoted flow is looked up, never created, and its idle timer is left alone.
  void on_other_l4(rte_mbuf* m, packet::bytes frame, const packet::frame_info& info, port_role role,
                   std::uint16_t rx_port, const burst_context& ctx, burst_counts& c) noexcept {
    if (ctx.policy == nullptr) {
      pass(m, rx_port, c);
      return;
    }
    const sender_side side = role == port_role::internet ? sender_side::internet
                             : role == port_role::mirror ? sender_side::either
                                                         : sender_side::subscriber;
    const other_l4_judgement j =
        judge_other_l4(*ctx.policy, frame, info, side, ctx.now,
                       [&](const packet::frame_info& quoted) -> std::optional<quoted_flow> {
                         bool from_a = true;
                         flow_entry* e = find_or_create(quoted, role, from_a, ctx, c, false);
                         if (e == nullptr) return std::nullopt;
                         if (e->generation != ctx.generation) refresh_groups(*e, ctx);
                         return quoted_flow{e->ip_group, e->name_group};
                       });
    if (j.icmp_error) {
      c.add(j.quote_read ? engine_event::icmp_errors_quoted : engine_event::icmp_errors_unread);
    }
    if (j.v.enforce() || j.v.monitors != 0) {
      count_rules(nullptr, ctx, j.v, j.ip_group, j.name_group);
    }
    enforce(m, frame, info, nullptr, ctx, j.v, rx_port, false, c);
  }

  // The canonical key of a packet's flow and its hash; from_a: the packet travels from side a.
  // Built in registers and stored a 64-bit word at a time, and hashed from those words: the
  // parser's stores are still in flight, and a load that spans several narrower stores (a
  // memcmp over the addresses, rte_hash_crc over a key filled field by field) waits for them
  // to drain. The hash equals rte_hash_crc(&k, sizeof k, 0), which reads the same six words.
  static hash_sig_t make_key(const packet::frame_info& info, flow_key& k, bool& from_a) noexcept {
    std::uint64_t src[2] = {0, 0}, dst[2] = {0, 0};
    if (info.ip_version == 4) {
      std::uint32_t s4, d4;
      std::memcpy(&s4, info.src.bytes.data(), 4);
      std::memcpy(&d4, info.dst.bytes.data(), 4);
      src[0] = s4;
      dst[0] = d4;
    } else {
      std::memcpy(src, info.src.bytes.data(), 16);
      std::memcpy(dst, info.dst.bytes.data(), 16);
    }
    // Byte order of the addresses (big-endian words), then the ports: memcmp's order.
    const std::uint64_t s_hi = rte_be_to_cpu_64(src[0]), d_hi = rte_be_to_cpu_64(dst[0]);
    const std::uint64_t s_lo = rte_be_to_cpu_64(src[1]), d_lo = rte_be_to_cpu_64(dst[1]);
    from_a = s_hi != d_hi   ? s_hi < d_hi
             : s_lo != d_lo ? s_lo < d_lo
                            : info.src_port <= info.dst_port;
    const std::uint64_t* lo = from_a ? src : dst;
    const std::uint64_t* hi = from_a ? dst : src;
    const std::uint16_t port_a = from_a ? info.src_port : info.dst_port;
    const std::uint16_t port_b = from_a ? info.dst_port : info.src_port;
    static_assert(offsetof(flow_key, b) == 16 && offsetof(flow_key, port_a) == 32 &&
                  offsetof(flow_key, port_b) == 34 && offsetof(flow_key, vlan) == 36 &&
                  offsetof(flow_key, proto) == 38 && offsetof(flow_key, version) == 39 &&
                  offsetof(flow_key, tenant) == 40 && RTE_BYTE_ORDER == RTE_LITTLE_ENDIAN);
    const std::uint64_t words[6] = {
        lo[0],
        lo[1],
        hi[0],
        hi[1],
        std::uint64_t{port_a} | std::uint64_t{port_b} << 16 | std::uint64_t{info.outer_vlan} << 32 |
            std::uint64_t{info.l4_proto} << 48 | std::uint64_t{info.ip_version} << 56,
        std::uint64_t{info.tenant_id},  // reserved: zero
    };
    std::memcpy(&k, words, sizeof k);
    hash_sig_t sig = 0;
    for (const std::uint64_t w : words) sig = rte_hash_crc_8byte(w, sig);
    return sig;
  }

  // The internet side's address of the flow a packet would create: what prefix rules match.
  [[nodiscard]] static const packet::ip_address& internet_address(const packet::frame_info& info,
                                                                  port_role role) noexcept {
    const bool syn_ack = (info.tcp_flags & (packet::tcp_syn | packet::tcp_ack)) ==
                         (packet::tcp_syn | packet::tcp_ack);
    // Mirror ports carry both directions: take the server of the first packet we see.
    const bool src_is_internet =
        role == port_role::internet || (role == port_role::mirror && syn_ack);
    return src_is_internet ? info.src : info.dst;
  }

  // `create` false: lookup only (nullptr when the flow is not held). `pre`: the packet's key,
  // hash and bulk-lookup position from the burst's first stage (process), or null.
  flow_entry* find_or_create(const packet::frame_info& info, port_role role, bool& from_a,
                             const burst_context& ctx, burst_counts& c, bool create = true,
                             const staged* pre = nullptr) noexcept {
    flow_key local;
    const flow_key* kp = &local;
    hash_sig_t sig;
    if (pre != nullptr) {
      from_a = pre->from_a;
      if (pre->pos >= 0) [[likely]] {
        return &entries[pre->pos];  // nothing is deleted within a burst: still this flow's
      }
      kp = &pre->key;  // missed then, but an earlier packet of the burst may have created it
      sig = pre->sig;
    } else {
      sig = make_key(info, local, from_a);
    }
    const flow_key& k = *kp;
    std::int32_t pos = rte_hash_lookup_with_hash(flows, &k, sig);
    if (pos >= 0) [[likely]] {
      return &entries[pos];
    }
    if (!create) return nullptr;
    pos = rte_hash_add_key_with_hash(flows, &k, sig);
    if (pos < 0 || static_cast<std::uint32_t>(pos) >= capacity) [[unlikely]] {
      if (pos >= 0) rte_hash_del_key_with_hash(flows, &k, sig);
      c.add(engine_event::flow_table_full);
      return nullptr;
    }
    flow_entry& e = entries[pos];
    e = flow_entry{};
    e.in_use = true;
    e.internet = internet_address(info, role);
    flow_bits.set(static_cast<std::uint32_t>(pos));
    ++flow_count;
    c.add(engine_event::flows_created);
    (void)ctx;
    return &e;
  }

  void on_packet(rte_mbuf* m, std::uint16_t rx_port, port_role role, const burst_context& ctx,
                 burst_counts& c) noexcept {
    packet::bytes frame(rte_pktmbuf_mtod(m, const std::uint8_t*), m->data_len);
    if (m->nb_segs > 1) [[unlikely]] {
      // A chain (scattered rx, a jumbo frame) is judged whole: its first segment alone would
      // be a truncated ClientHello, i.e. a blocked name let through. The copy in `gather` lives
      // until the next packet, and everything below only reads it: answers are built into new
      // mbufs, the packet goes on (or is freed) as received, held fragments are read from
      // their own mbufs by reassemble().
      frame = whole_frame(m, std::span<std::uint8_t>(gather, gather_capacity));
      if (frame.empty()) {
        c.add(engine_event::multiseg_too_long);
        pass(m, rx_port, c);  // fail open
        return;
      }
      c.add(engine_event::multiseg_gathered);
    }
    const packet::frame_info info = packet::parse_frame(frame);
    on_parsed(m, frame, info, rx_port, role, ctx, c, nullptr);
  }

  // The rest of on_packet, for a parsed frame; `pre` as for find_or_create.
  void on_parsed(rte_mbuf* m, packet::bytes frame, const packet::frame_info& info,
                 std::uint16_t rx_port, port_role role, const burst_context& ctx, burst_counts& c,
                 const staged* pre) noexcept {
    ++c.parse[static_cast<std::size_t>(info.outcome)];
    // First fragments long enough for L4 parse `ok`: they too wait for their datagram.
    if (info.outcome == packet::frame_outcome::fragment ||
        (info.outcome == packet::frame_outcome::ok && info.is_fragment)) {
      on_fragment(m, frame, info, role, rx_port, ctx, c);
      return;
    }
    if (info.outcome == packet::frame_outcome::other_l4) {
      on_other_l4(m, frame, info, role, rx_port, ctx, c);
      return;
    }
    if (info.outcome != packet::frame_outcome::ok) {
      pass(m, rx_port, c);  // fail open
      return;
    }
    // The classifier ignores injected fakes (bad checksum, TTL below the handshake's); a
    // checksum the NIC verified is not computed again.
    const bool nic_checked =
        (m->ol_flags & RTE_MBUF_F_RX_L4_CKSUM_MASK) == RTE_MBUF_F_RX_L4_CKSUM_GOOD;
    judgement j;
    if (!judge(frame, info, nic_checked, role, ctx, c, j, pre)) {
      pass(m, rx_port, c);  // table full: unclassified, fail open
      return;
    }
    enforce(m, frame, info, j.e, ctx, j.v, rx_port, j.from_client, c);
  }

  struct judgement {
    flow_entry* e = nullptr;
    match::verdict v;
    bool from_client = false;
  };

  // Classifies one whole TCP/UDP packet (a received one, or a reassembled datagram) in its flow
  // and decides. False when the flow table is full (the caller passes it unclassified).
  [[nodiscard]] bool judge(packet::bytes frame, const packet::frame_info& info, bool nic_checked,
                           port_role role, const burst_context& ctx, burst_counts& c,
                           judgement& out, const staged* pre = nullptr) noexcept {
    bool from_a = true;
    flow_entry* e = find_or_create(info, role, from_a, ctx, c, true, pre);
    if (e == nullptr) return false;
    e->last_tsc = ctx.now_tsc;
    if (e->generation != ctx.generation) {
      // A flow this burst created: its address group was looked up in the burst's bulk stage.
      const bool looked =
          pre != nullptr && pre->ip_looked && e->internet == internet_address(info, role);
      refresh_groups(*e, ctx, looked ? &pre->ip_group : nullptr);
    }
    const bool tcp = info.l4_proto == IPPROTO_TCP;
    if (tcp && (info.tcp_flags & (packet::tcp_fin | packet::tcp_rst))) e->closing = true;

    const auto dir = from_a ? flow::direction::forward : flow::direction::reverse;
    const std::uint8_t dir_code = static_cast<std::uint8_t>(dir) + 1;
    const bool from_client =
        e->cls.client_dir != 0 ? e->cls.client_dir == dir_code : role != port_role::internet;

    std::uint32_t name_group = e->name_group;
    match::verdict v;
    bool judged = false;
    const bool was_final = e->cls.final();  // then the groups stay as they are for this packet
    if (!was_final) {
      {
        const flow::flow_status before = e->cls.status;
        const bool had_buffer = e->cls.stream.attached();
        const flow::classify_result r = cls.on_packet(e->cls, info, frame, dir, nic_checked);
        if (!had_buffer && e->cls.stream.attached()) e->buffer_tsc = ctx.now_tsc;
        if (r.ignored == flow::ignored_packet::bad_checksum) {
          c.add(engine_event::fake_ignored_checksum);
        } else if (r.ignored == flow::ignored_packet::low_ttl) {
          c.add(engine_event::fake_ignored_ttl);
        }
        if (r.status == flow::flow_status::gave_up && before != flow::flow_status::gave_up) {
          ++c.give_ups[static_cast<std::size_t>(e->cls.reason)];
        }
        if (r.name_count != 0) {
          const std::span<const std::string_view> revealed(r.names.data(), r.name_count);
          name_list held = names_of(*e);
          const names_outcome n = apply_names(ctx.policy, opt_group(e->ip_group), e->name_group,
                                              held, revealed, per_message(*e), ctx.now);
          if (n.pinned) c.add(engine_event::dns_flows_pinned);
          name_group = n.name_group;
          if (n.judged) {
            v = n.v;
            judged = true;
          }
          if (per_message(*e) && ctx.sketch != nullptr && e->impact != impact_state::done &&
              (e->impact == impact_state::pending || n.best_group != no_group)) {
            impact_record(*e, ctx, revealed[n.best], true, n.best_group);
          }
        }
      }
    }
    if (ctx.sketch != nullptr && e->impact != impact_state::done) {
      // Named now (stored above, or before a policy swap), or classification over without one.
      if (e->name_bytes != 0 && !per_message(*e) &&
          (e->impact == impact_state::pending || name_group != no_group)) {
        impact_record(*e, ctx, names_of(*e).first(), true, name_group);
      } else if (e->impact == impact_state::pending && e->cls.final() && e->name_bytes == 0) {
        impact_record(*e, ctx, {}, false, no_group);
      }
    }
    if (!judged && ctx.policy != nullptr) {
      const auto second = static_cast<std::uint32_t>(ctx.now);
      if (e->verdict_cached && e->verdict_second == second && e->verdict_name_group == name_group) {
        v = e->verdict;
      } else {
        v = ctx.policy->decide(opt_group(e->ip_group), opt_group(name_group), ctx.now);
        e->verdict = v;
        e->verdict_second = second;
        e->verdict_name_group = name_group;
        e->verdict_cached = true;
      }
    }
    if (v.enforce() || v.monitors != 0) {
      count_rules(e, ctx, v, e->ip_group, name_group);
    } else if (!e->unmatched_counted && e->cls.final()) {
      e->unmatched_counted = true;
      c.add(engine_event::policy_unmatched_flows);
    }
    out.e = e;
    out.v = v;
    out.from_client = from_client;
    return true;
  }

  // Expires idle flows, a few entries per call, resuming where the last call stopped. While the
  // reassembly pool is under pressure (over three quarters in use) it also takes buffers back
  // from requests unfinished for cfg.reassembly_hold_ms: only then, because a reclaimed flow
  // passes unread, and a client that merely waits between its ClientHello's segments must not
  // get through an idle pool.
  void age_some(std::uint64_t now_tsc, const burst_context& ctx, burst_counts& c) noexcept {
    const bool pool_pressure = pool.available() * 4 < pool.capacity();
    // At most age_per_burst held entries and age_scan_words bitmap words per call.
    flow_bits.walk(age_per_burst, age_scan_words, [&](std::uint32_t pos) {
      flow_entry& e = entries[pos];
      const std::uint64_t limit = e.closing ? closing_tsc : idle_tsc;
      if (now_tsc <= e.last_tsc || now_tsc - e.last_tsc <= limit) {
        if (pool_pressure && e.cls.stream.attached() && now_tsc > e.buffer_tsc &&
            now_tsc - e.buffer_tsc > hold_tsc) [[unlikely]] {
          cls.abandon(e.cls, flow::give_up_reason::held_too_long);
          ++c.give_ups[static_cast<std::size_t>(flow::give_up_reason::held_too_long)];
        }
        return;
      }
      void* key = nullptr;
      if (rte_hash_get_key_with_position(flows, static_cast<std::int32_t>(pos), &key) != 0) {
        return;  // cannot happen: the bit is set only while the key is held
      }
      flow_key k;
      std::memcpy(&k, key, sizeof k);
      impact_expire(e, ctx);
      cls.release(e.cls);
      e.in_use = false;
      flow_bits.clear(pos);
      rte_hash_del_key(flows, &k);
      --flow_count;
      c.add(engine_event::flows_expired);
    });
  }

  // A burst in three stages, so that one packet's cache misses overlap the others' (as DPDK's
  // bulk lookups do): 1. parse every frame (its bytes prefetched a few packets ahead) and build
  // the flow key of each plain TCP/UDP packet; 2. look all those keys up at once
  // (rte_hash_lookup_with_hash_bulk prefetches buckets and keys), prefetching each found entry;
  // 3. judge and enforce each packet in arrival order. Chains, fragments and other protocols
  // skip the staging and take on_packet's path in their turn.
  void process_staged(rte_mbuf** pkts, std::uint16_t n, std::uint16_t port, port_role role,
                      const burst_context& ctx, burst_counts& c) noexcept {
    const void* keys[max_burst];
    hash_sig_t sigs[max_burst];
    std::int32_t positions[max_burst];
    std::uint8_t keyed_of[max_burst];  // staged index -> index into keys
    std::uint16_t nk = 0;
    // Every mbuf header first (a driver's rx usually leaves them cached; if not, their misses
    // overlap here), then each packet's first bytes a few packets ahead of its parse.
    for (std::uint16_t i = 0; i < n; ++i) rte_prefetch0(pkts[i]);
    for (std::uint16_t i = 0; i < n && i < parse_ahead; ++i) {
      rte_prefetch0(rte_pktmbuf_mtod(pkts[i], void*));
    }
    for (std::uint16_t i = 0; i < n; ++i) {
      if (i + parse_ahead < n) rte_prefetch0(rte_pktmbuf_mtod(pkts[i + parse_ahead], void*));
      staged& st = stage[i];
      st.pos = -1;
      st.parsed = false;
      st.keyed = false;
      st.ip_looked = false;
      const rte_mbuf* m = pkts[i];
      if (m->nb_segs > 1) [[unlikely]] continue;
      st.parsed = true;
      // Parsed in place (the result is constructed in st.info): assigning it would copy a
      // just-written struct through loads wider than the parser's stores.
      ::new (&st.info) packet::frame_info(packet::parse_frame(
          packet::bytes(rte_pktmbuf_mtod(m, const std::uint8_t*), m->data_len)));
      if (st.info.outcome != packet::frame_outcome::ok || st.info.is_fragment) continue;
      st.keyed = true;
      st.sig = make_key(st.info, st.key, st.from_a);
      keys[nk] = &st.key;
      sigs[nk] = st.sig;
      keyed_of[i] = static_cast<std::uint8_t>(nk);
      ++nk;
    }
    if (nk != 0 && rte_hash_lookup_with_hash_bulk(flows, keys, sigs, nk, positions) == 0) {
      for (std::uint16_t i = 0; i < n; ++i) {
        staged& st = stage[i];
        if (!st.keyed) continue;
        st.pos = positions[keyed_of[i]];
        if (st.pos >= 0) {
          const auto* hot = reinterpret_cast<const char*>(&entries[st.pos]);
          for (std::size_t at = 0; at < hot_entry_bytes; at += RTE_CACHE_LINE_SIZE) {
            rte_prefetch0(hot + at);
          }
        }
      }
    }
    if (ctx.policy != nullptr) look_up_new_flow_addresses(n, role, *ctx.policy);
    for (std::uint16_t i = 0; i < n; ++i) {
      rte_mbuf* m = pkts[i];
      const staged& st = stage[i];
      if (!st.parsed) {
        on_packet(m, port, role, ctx, c);
        continue;
      }
      const packet::bytes frame(rte_pktmbuf_mtod(m, const std::uint8_t*), m->data_len);
      on_parsed(m, frame, st.info, port, role, ctx, c, st.keyed ? &st : nullptr);
    }
  }

  // The address groups of the flows the burst may create (keyed packets the bulk lookup
  // missed), looked up together: rte_fib's bulk lookups prefetch their tables, so the misses
  // of a burst's new flows overlap instead of each waiting in refresh_groups.
  void look_up_new_flow_addresses(std::uint16_t n, port_role role,
                                  const match::compiled_policy& policy) noexcept {
    std::uint32_t v4[max_burst], v4_group[max_burst];
    std::uint8_t v6[max_burst][16];
    std::uint32_t v6_group[max_burst];
    std::uint8_t v4_of[max_burst], v6_of[max_burst];
    unsigned n4 = 0, n6 = 0;
    for (std::uint16_t i = 0; i < n; ++i) {
      const staged& st = stage[i];
      if (!st.keyed || st.pos >= 0) continue;
      const packet::ip_address& a = internet_address(st.info, role);
      if (a.version == 4) {
        v4[n4] = a.v4();
        v4_of[n4++] = static_cast<std::uint8_t>(i);
      } else {
        std::memcpy(v6[n6], a.bytes.data(), 16);
        v6_of[n6++] = static_cast<std::uint8_t>(i);
      }
    }
    static_assert(match::prefix_set::none == no_group);
    if (n4 != 0) policy.prefixes().lookup_v4_bulk(v4, v4_group, n4);
    if (n6 != 0) policy.prefixes().lookup_v6_bulk(v6, v6_group, n6);
    for (unsigned k = 0; k < n4; ++k) {
      stage[v4_of[k]].ip_group = v4_group[k];
      stage[v4_of[k]].ip_looked = true;
    }
    for (unsigned k = 0; k < n6; ++k) {
      stage[v6_of[k]].ip_group = v6_group[k];
      stage[v6_of[k]].ip_looked = true;
    }
  }

  void process(rte_mbuf** pkts, std::uint16_t n, std::uint16_t port) noexcept {
    burst_context ctx;
    ctx.now_tsc = rte_rdtsc();
    load_context(ctx);

    burst_counts c;
    c.packets = n;
    const port_role role =
        port < cfg.role_of_port.size() ? cfg.role_of_port[port] : port_role::subscriber;
    if (role == port_role::subscriber) {
      c.add(engine_event::packets_in, n);
    } else if (role == port_role::internet) {
      c.add(engine_event::packets_out, n);
    }
    for (std::uint16_t done = 0; done < n; done += max_burst) {
      process_staged(pkts + done, std::min<std::uint16_t>(n - done, max_burst), port, role, ctx,
                     c);
    }
    age_some(ctx.now_tsc, ctx, c);
    expire_frags(ctx.now_tsc, c);
    publish(c);
    ++counters.bursts;
  }

  worker_config cfg;
  worker_shared& shared;
  flow::buffer_pool pool;
  flow::classifier cls;
  response_entropy entropy;
  rte_hash* flows = nullptr;
  flow_entry* entries = nullptr;
  rte_hash* frags = nullptr;          // null when cfg.frag_table_size == 0: fragments pass
  frag_slot* frag_slots = nullptr;
  std::uint8_t* frag_scratch = nullptr;  // the reassembled copy being judged
  std::array<staged, max_burst> stage;   // process_staged's per-packet state
  std::uint8_t* gather = nullptr;        // a chained mbuf's frame, copied whole (on_packet)
  std::uint32_t gather_capacity = 0;
  std::uint32_t frag_capacity = 0;
  held_positions frag_bits;             // frag_slots whose key the frags table holds
  std::uint32_t frag_held_datagrams = 0;
  std::uint64_t frag_timeout_tsc = 0;
  char* names = nullptr;
  sketch_set* sketches = nullptr;  // [2], the impact double buffer; null when off
  std::uint32_t capacity = 0;
  held_positions flow_bits;             // entries[] positions whose key the flows table holds
  std::uint64_t flow_count = 0;
  std::uint64_t tsc_hz = 0;
  std::uint64_t idle_tsc = 0;
  std::uint64_t closing_tsc = 0;
  std::uint64_t hold_tsc = 0;  // cfg.reassembly_hold_ms
  std::uint64_t drain_tsc = 0;
  std::uint16_t tx_ports = 0;
  std::uint16_t tx_burst = 32;
  worker_counters counters;
  std::array<tx_buffer, RTE_MAX_ETHPORTS> tx{};
};

worker::worker(const worker_config& cfg, worker_shared& shared)
    : impl_(std::make_unique<impl>(cfg, shared)) {
  impl& w = *impl_;
  w.tsc_hz = rte_get_tsc_hz();
  w.idle_tsc = w.tsc_hz * cfg.flow_idle_seconds;
  w.closing_tsc = w.tsc_hz * std::min(closing_idle_seconds, cfg.flow_idle_seconds);
  w.hold_tsc = w.tsc_hz * cfg.reassembly_hold_ms / 1000;
  w.drain_tsc = (w.tsc_hz + US_PER_S - 1) / US_PER_S * cfg.drain_us;
  w.tx_ports = static_cast<std::uint16_t>(
      std::min<std::size_t>(cfg.tx_queue_of_port.size(), RTE_MAX_ETHPORTS));
  w.tx_burst = std::clamp<std::uint16_t>(cfg.burst, 1, max_burst);
  w.cfg.burst = w.tx_burst;

  w.flows = create_table("sl_flows_", cfg, sizeof(flow_key), cfg.flow_table_size, "flow table");
  w.capacity = table_entries(cfg.flow_table_size);
  w.entries = socket_array<flow_entry>(w.capacity, cfg.socket, "sluice_flow_entries");
  w.flow_bits.attach(
      socket_array<std::uint64_t>((w.capacity + 63) / 64, cfg.socket, "sluice_flow_bits"),
      w.capacity);
  w.names = socket_array<char>(std::size_t{w.capacity} * name_slot_bytes, cfg.socket,
                               "sluice_flow_names");
  if (cfg.impact_sketch) {
    w.sketches = socket_array<sketch_set>(2, cfg.socket, "sluice_impact_sketches");
  }

  w.gather_capacity = std::min<std::uint32_t>(cfg.gather_bytes, UINT16_MAX);
  if (w.gather_capacity != 0) {
    w.gather = socket_array<std::uint8_t>(w.gather_capacity, cfg.socket, "sluice_gather");
  }

  w.frag_timeout_tsc = w.tsc_hz * cfg.frag_timeout_ms / 1000;
  if (cfg.frag_table_size != 0) {
    w.frags = create_table("sl_frags_", cfg, sizeof(frag_key), cfg.frag_table_size,
                           "fragment table");
    w.frag_capacity = table_entries(cfg.frag_table_size);
    w.frag_slots = socket_array<frag_slot>(w.frag_capacity, cfg.socket, "sluice_frag_slots");
    w.frag_bits.attach(
        socket_array<std::uint64_t>((w.frag_capacity + 63) / 64, cfg.socket, "sluice_frag_bits"),
        w.frag_capacity);
    w.frag_scratch =
        socket_array<std::uint8_t>(frag_scratch_bytes, cfg.socket, "sluice_frag_scratch");
  }
}

worker::~worker() = default;

void worker::process_burst(rte_mbuf** pkts, std::uint16_t n, std::uint16_t port) noexcept {
  impl_->process(pkts, n, port);
}

void worker::flush() noexcept {
  // Tests and shutdown: nothing stays held past a flush (fail open, fragments_passed).
  burst_counts c;
  impl_->release_all_frags(c);
  impl_->publish(c);
  impl_->flush_all();
}

const worker_counters& worker::counters() const noexcept { return impl_->counters; }

std::uint64_t worker::flow_entries() const noexcept { return impl_->flow_count; }

std::uint64_t worker::reassembly_buffers_in_use() const noexcept {
  return impl_->pool.capacity() - impl_->pool.available();
}

sketch_set* worker::impact_sketch(std::uint32_t buffer) noexcept {
  return impl_->sketches != nullptr ? &impl_->sketches[buffer & 1u] : nullptr;
}

std::optional<impact_window> drain_impact(worker_shared& shared, std::span<worker* const> workers,
                                          std::int64_t window_start, std::int64_t window_end,
                                          std::uint64_t revision, const std::atomic<bool>* stop) {
  const std::uint32_t old = shared.impact_buffer.load(std::memory_order_relaxed) & 1u;
  // The flip is stored before rte_rcu_qsbr_start (release). A worker that reports quiescence
  // with a counter at or past the token has seen the new token (acquire), hence the flip: its
  // later iterations fill the other buffer. rte_rcu_qsbr_check (acquire) seeing every worker
  // past the token also makes their writes to `old` visible here, so reading and clearing it
  // races with no one. Offline workers (stopped) count as quiescent.
  shared.impact_buffer.store(old ^ 1u, std::memory_order_release);
  if (shared.qsbr != nullptr) {
    const std::uint64_t token = rte_rcu_qsbr_start(shared.qsbr);
    while (rte_rcu_qsbr_check(shared.qsbr, token, false) != 1) {
      if (stop != nullptr && stop->load(std::memory_order_relaxed)) return std::nullopt;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  impact_merger merger;
  for (worker* w : workers) {
    if (sketch_set* s = w->impact_sketch(old)) {
      merger.add(*s);
      s->clear();
    }
  }
  return merger.finish(window_start, window_end, revision);
}

int worker::run() noexcept {
  impl& w = *impl_;
  rte_rcu_qsbr* qsbr = w.shared.qsbr;
  if (qsbr != nullptr) {
    rte_rcu_qsbr_thread_register(qsbr, w.cfg.id);
    rte_rcu_qsbr_thread_online(qsbr, w.cfg.id);
  }
  std::array<rte_mbuf*, max_burst> pkts{};
  std::uint64_t last_flush = rte_rdtsc();
  while (!w.shared.stop.load(std::memory_order_relaxed)) {
    while (w.shared.stall_worker_for_test.load(std::memory_order_relaxed) == w.cfg.id &&
           !w.shared.stop.load(std::memory_order_relaxed)) {
      rte_pause();  // test hook: no heartbeat, no quiescence
    }
    const std::uint64_t now = rte_rdtsc();
    w.counters.heartbeat_tsc = now;
    if (now - last_flush > w.drain_tsc) {
      w.flush_all();
      last_flush = now;
    }
    bool idle = true;
    for (const io_queue& q : w.cfg.rx) {
      const std::uint16_t n = rte_eth_rx_burst(q.port, q.queue, pkts.data(), w.tx_burst);
      if (n == 0) continue;
      idle = false;
      const std::uint64_t start = rte_rdtsc();
      w.process(pkts.data(), n, q.port);
      w.counters.busy_cycles += rte_rdtsc() - start;
    }
    if (w.cfg.rx_ring != nullptr) {
      const unsigned n = rte_ring_sc_dequeue_burst(w.cfg.rx_ring, reinterpret_cast<void**>(pkts.data()),
                                                   w.tx_burst, nullptr);
      if (n != 0) {
        idle = false;
        const std::uint64_t start = rte_rdtsc();
        // A distributed burst mixes rx ports: process each run of one port together.
        unsigned from = 0;
        for (unsigned i = 1; i <= n; ++i) {
          if (i == n || pkts[i]->port != pkts[from]->port) {
            w.process(pkts.data() + from, static_cast<std::uint16_t>(i - from), pkts[from]->port);
            from = i;
          }
        }
        w.counters.busy_cycles += rte_rdtsc() - start;
      }
    }
    if (idle) {
      burst_counts c;
      burst_context ctx;
      ctx.now_tsc = now;
      w.load_context(ctx);
      w.age_some(now, ctx, c);
      w.expire_frags(now, c);
      w.publish(c);
    }
    if (qsbr != nullptr) rte_rcu_qsbr_quiescent(qsbr, w.cfg.id);
  }
  {
    burst_counts c;
    w.release_all_frags(c);
    w.publish(c);
  }
  w.flush_all();
  if (qsbr != nullptr) {
    rte_rcu_qsbr_thread_offline(qsbr, w.cfg.id);
    rte_rcu_qsbr_thread_unregister(qsbr, w.cfg.id);
  }
  return 0;
}

}  // namespace sluice::engine
