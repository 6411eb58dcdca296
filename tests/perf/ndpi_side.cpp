#include "tests/perf/ndpi_side.hpp"

#include <arpa/inet.h>
#include <malloc.h>
#include <rte_hash_crc.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <unordered_set>

#include "tests/perf/traffic_mix.hpp"

extern "C" {
#include <ndpi_api.h>
}

namespace sluice::perf {

namespace {

// nDPI's own allocations (ndpi_malloc: dissector state inside flows, the module's tables),
// counted by usable size. Single-threaded benchmark: plain counters.
std::int64_t g_ndpi_live_bytes = 0;
void* counting_malloc(std::size_t n) {
  void* p = std::malloc(n);
  if (p != nullptr) g_ndpi_live_bytes += static_cast<std::int64_t>(malloc_usable_size(p));
  return p;
}
void counting_free(void* p) {
  if (p != nullptr) g_ndpi_live_bytes -= static_cast<std::int64_t>(malloc_usable_size(p));
  std::free(p);
}

// Direction-independent 5-tuple: the (address, port) that sorts first is side a.
struct flow_key {
  std::uint8_t a[16];
  std::uint8_t b[16];
  std::uint16_t port_a;
  std::uint16_t port_b;
  std::uint8_t proto;
  std::uint8_t version;
  std::uint8_t pad[2];
};
static_assert(sizeof(flow_key) == 40);

struct slot {
  flow_key key;
  std::uint32_t flow;  // index + 1; 0 = empty
  std::uint32_t pad;
};

enum class flow_state : std::uint8_t { inspecting, forward, block };

struct flow_rec {
  flow_state state = flow_state::inspecting;
  std::uint8_t packets = 0;
  bool named = false;
  std::uint32_t client = 0;
};

constexpr std::uint8_t give_up_packets = 32;

}  // namespace

struct ndpi_side::impl {
  ndpi_detection_module_struct* mod = nullptr;
  ndpi_ptree_t* ips = nullptr;
  std::vector<std::string> names;  // storage for the views below
  std::unordered_set<std::string_view> exact;
  std::unordered_set<std::string_view> under;  // "*.x" stored as "x"
  std::uint32_t max_flows = 0;
  std::uint32_t used = 0;
  std::size_t mask = 0;
  slot* slots = nullptr;
  ndpi_flow_struct* flows = nullptr;  // max_flows, zeroed
  flow_rec* recs = nullptr;
  ndpi_stats st;
  std::int64_t baseline_bytes = 0;
  double dynamic_per_flow = 0;

  [[nodiscard]] bool name_blocked(const char* host) const noexcept {
    char buf[96];
    std::size_t n = 0;
    for (; host[n] != 0 && n < sizeof buf; ++n) {
      const char c = host[n];
      buf[n] = c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
    }
    if (n != 0 && buf[n - 1] == '.') --n;
    const std::string_view name(buf, n);
    if (exact.contains(name)) return true;
    for (std::size_t dot = name.find('.'); dot != std::string_view::npos;
         dot = name.find('.', dot + 1)) {
      if (under.contains(name.substr(dot + 1))) return true;
    }
    return false;
  }

  [[nodiscard]] bool ip_blocked(const std::uint8_t* addr, int version) const noexcept {
    ndpi_ip_addr_t a;
    std::memset(&a, 0, sizeof a);
    std::memcpy(&a, addr, version == 4 ? 4 : 16);
    u_int64_t user = 0;
    return ndpi_ptree_match_addr(ips, &a, &user) == 0;
  }
};

ndpi_side::ndpi_side(const std::vector<std::string>& domains,
                     const std::vector<std::string>& prefixes, std::uint32_t max_flows)
    : impl_(std::make_unique<impl>()) {
  impl& m = *impl_;
  set_ndpi_malloc(counting_malloc);
  set_ndpi_free(counting_free);
  m.mod = ndpi_init_detection_module(ndpi_no_prefs);
  if (m.mod == nullptr) throw std::runtime_error("ndpi_init_detection_module failed");
  NDPI_PROTOCOL_BITMASK all;
  NDPI_BITMASK_SET_ALL(all);
  ndpi_set_protocol_detection_bitmask2(m.mod, &all);
  ndpi_finalize_initialization(m.mod);

  m.names.reserve(domains.size());
  for (const auto& d : domains) {
    std::string n = d.starts_with("*.") ? d.substr(2) : d;
    for (auto& c : n) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
    m.names.push_back(std::move(n));
  }
  for (std::size_t i = 0; i < domains.size(); ++i) {
    (domains[i].starts_with("*.") ? m.under : m.exact).insert(m.names[i]);
  }

  m.ips = ndpi_ptree_create();
  for (const auto& p : prefixes) {
    const std::size_t slash = p.find('/');
    const std::string addr = p.substr(0, slash);
    const int bits = slash == std::string::npos ? -1 : std::atoi(p.c_str() + slash + 1);
    ndpi_ip_addr_t a;
    std::memset(&a, 0, sizeof a);
    const bool six = addr.find(':') != std::string::npos;
    if (bits < 0 || inet_pton(six ? AF_INET6 : AF_INET, addr.c_str(), &a) != 1) {
      throw std::runtime_error("ndpi_side: bad prefix " + p);
    }
    if (ndpi_ptree_insert(m.ips, &a, static_cast<u_int8_t>(bits), 1) != 0) {
      throw std::runtime_error("ndpi_side: ndpi_ptree_insert refused " + p);
    }
  }

  m.max_flows = max_flows;
  std::size_t cap = 16;
  while (cap < std::size_t{max_flows} * 2) cap <<= 1;
  m.mask = cap - 1;
  m.slots = static_cast<slot*>(std::calloc(cap, sizeof(slot)));
  m.flows = static_cast<ndpi_flow_struct*>(std::calloc(max_flows, sizeof(ndpi_flow_struct)));
  m.recs = static_cast<flow_rec*>(std::calloc(max_flows, sizeof(flow_rec)));
  if (m.slots == nullptr || m.flows == nullptr || m.recs == nullptr) {
    throw std::bad_alloc();
  }
  // Touch everything now: page faults belong to set-up, not to the timed passes.
  std::memset(static_cast<void*>(m.slots), 0, cap * sizeof(slot));
  std::memset(static_cast<void*>(m.flows), 0, std::size_t{max_flows} * sizeof(ndpi_flow_struct));
  std::memset(static_cast<void*>(m.recs), 0, std::size_t{max_flows} * sizeof(flow_rec));
  m.baseline_bytes = g_ndpi_live_bytes;
}

ndpi_side::~ndpi_side() {
  reset();
  std::free(impl_->slots);
  std::free(impl_->flows);
  std::free(impl_->recs);
  ndpi_ptree_destroy(impl_->ips);
  ndpi_exit_detection_module(impl_->mod);
}

void ndpi_side::process(const std::uint8_t* frame, std::uint32_t len,
                        std::uint64_t time_ms) noexcept {
  impl& m = *impl_;
  ++m.st.packets;
  const l3_view v = locate_l3(frame, len);
  if (!v.ok) {
    ++m.st.unparsed;
    ++m.st.forwarded;
    return;
  }
  const std::uint8_t* ip = frame + v.l3;
  const std::uint8_t* src = ip + (v.version == 4 ? 12 : 8);
  const std::uint8_t* dst = ip + (v.version == 4 ? 16 : 24);
  const std::size_t alen = v.version == 4 ? 4 : 16;
  std::uint16_t sport = 0, dport = 0;
  if (v.l4 != 0 && (v.proto == 6 || v.proto == 17) && v.l4 + 4u <= len) {
    std::memcpy(&sport, frame + v.l4, 2);
    std::memcpy(&dport, frame + v.l4 + 2, 2);
  }
  flow_key k;
  std::memset(&k, 0, sizeof k);
  const int c = std::memcmp(src, dst, alen);
  const bool src_first = c < 0 || (c == 0 && sport <= dport);
  std::memcpy(k.a, src_first ? src : dst, alen);
  std::memcpy(k.b, src_first ? dst : src, alen);
  k.port_a = src_first ? sport : dport;
  k.port_b = src_first ? dport : sport;
  k.proto = v.proto;
  k.version = v.version;

  std::size_t i = rte_hash_crc(&k, sizeof k, 0) & m.mask;
  while (m.slots[i].flow != 0 && std::memcmp(&m.slots[i].key, &k, sizeof k) != 0) {
    i = (i + 1) & m.mask;
  }
  bool first = false;
  if (m.slots[i].flow == 0) {
    if (m.used == m.max_flows) {
      ++m.st.table_full;
      ++m.st.forwarded;
      return;
    }
    m.slots[i].key = k;
    m.slots[i].flow = ++m.used;
    ++m.st.flows;
    first = true;
  }
  const std::uint32_t fi = m.slots[i].flow - 1;
  flow_rec& r = m.recs[fi];
  if (first) {
    r.client = v.version == 4 ? (std::uint32_t{src[1]} << 16 | std::uint32_t{src[2]} << 8 | src[3])
                              : (std::uint32_t{src[12]} << 24 | std::uint32_t{src[13]} << 16 |
                                 std::uint32_t{src[14]} << 8 | src[15]);
    if (m.ip_blocked(dst, v.version)) {
      r.state = flow_state::block;
      ++m.st.flows_blocked;
      ++m.st.flows_blocked_ip;
    }
  }
  if (r.state == flow_state::inspecting) {
    ndpi_flow_struct* f = &m.flows[fi];
    const ndpi_protocol p = ndpi_detection_process_packet(
        m.mod, f, ip, static_cast<unsigned short>(len - v.l3), time_ms);
    ++m.st.dissected_packets;
    ++r.packets;
    if (f->host_server_name[0] != 0) {
      r.named = true;
      ++m.st.flows_named;
      if (m.name_blocked(f->host_server_name)) {
        r.state = flow_state::block;
        ++m.st.flows_blocked;
        ++m.st.flows_blocked_name;
      } else {
        r.state = flow_state::forward;
      }
    } else if ((p.app_protocol != NDPI_PROTOCOL_UNKNOWN ||
                p.master_protocol != NDPI_PROTOCOL_UNKNOWN) &&
               ndpi_extra_dissection_possible(m.mod, f) == 0) {
      r.state = flow_state::forward;
    } else if (r.packets >= give_up_packets) {
      u_int8_t guessed = 0;
      (void)ndpi_detection_giveup(m.mod, f, 0, &guessed);
      ++m.st.flows_gave_up;
      r.state = flow_state::forward;
    }
  }
  if (r.state == flow_state::block) {
    ++m.st.dropped;
  } else {
    ++m.st.forwarded;
  }
}

const ndpi_stats& ndpi_side::stats() const noexcept { return impl_->st; }

std::vector<ndpi_flow_summary> ndpi_side::summaries() const {
  std::vector<ndpi_flow_summary> out;
  out.reserve(impl_->used);
  for (std::uint32_t i = 0; i < impl_->used; ++i) {
    const flow_rec& r = impl_->recs[i];
    out.push_back({r.client, r.named, r.state == flow_state::block});
  }
  return out;
}

void ndpi_side::reset() {
  impl& m = *impl_;
  if (m.used != 0) {
    m.dynamic_per_flow =
        static_cast<double>(g_ndpi_live_bytes - m.baseline_bytes) / static_cast<double>(m.used);
  }
  for (std::uint32_t i = 0; i < m.used; ++i) ndpi_free_flow_data(&m.flows[i]);
  std::memset(static_cast<void*>(m.flows), 0, std::size_t{m.used} * sizeof(ndpi_flow_struct));
  std::memset(static_cast<void*>(m.recs), 0, std::size_t{m.used} * sizeof(flow_rec));
  std::memset(static_cast<void*>(m.slots), 0, (m.mask + 1) * sizeof(slot));
  m.used = 0;
  m.st = {};
}

std::size_t ndpi_side::flow_struct_bytes() noexcept { return sizeof(ndpi_flow_struct); }

double ndpi_side::table_bytes_per_flow() const noexcept {
  return static_cast<double>((impl_->mask + 1) * sizeof(slot) +
                             std::size_t{impl_->max_flows} * sizeof(flow_rec)) /
         impl_->max_flows;
}

double ndpi_side::dynamic_bytes_per_flow() const noexcept { return impl_->dynamic_per_flow; }

}  // namespace sluice::perf
