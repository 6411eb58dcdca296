#include "dataplane/match/prefix_set.hpp"

#include <arpa/inet.h>
#include <rte_errno.h>
#include <rte_fib.h>
#include <rte_fib6.h>
#include <rte_lcore.h>
#include <rte_memory.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <set>
#include <stdexcept>
#include <utility>

namespace sluice::match {

const char* to_string(prefix_error e) noexcept {
  switch (e) {
#define SLUICE_X(name, str) \
  case prefix_error::name:  \
    return str;
    SLUICE_PREFIX_ERRORS(SLUICE_X)
#undef SLUICE_X
    case prefix_error::count:
      break;
  }
  return "?";
}

namespace {

// Keeps bits [0, length) of a 16-byte big-endian address.
std::array<std::uint8_t, 16> mask_to(const std::array<std::uint8_t, 16>& a, unsigned length) {
  std::array<std::uint8_t, 16> out{};
  for (unsigned i = 0; i < 16; ++i) {
    if (length >= 8 * (i + 1)) {
      out[i] = a[i];
    } else if (length > 8 * i) {
      out[i] = static_cast<std::uint8_t>(a[i] & (0xff00u >> (length - 8 * i)));
    }
  }
  return out;
}

std::string rte_error_text(const char* what) {
  return std::string(what) + ": " + rte_strerror(rte_errno);
}

std::atomic<std::uint32_t> instance_counter{0};

}  // namespace

bool ip_prefix::covers(const ip_prefix& other) const noexcept {
  return version == other.version && length <= other.length &&
         mask_to(other.addr, length) == addr;
}

std::string ip_prefix::text() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(version == 4 ? AF_INET : AF_INET6, addr.data(), buf, sizeof buf);
  return std::string(buf) + "/" + std::to_string(length);
}

prefix_result parse_prefix(std::string_view text) {
  prefix_result r;
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  const auto slash = text.find('/');
  std::string addr(text.substr(0, slash));
  if (addr.size() > INET6_ADDRSTRLEN || addr.find('\0') != std::string::npos) {
    r.error = prefix_error::bad_address;
    return r;
  }
  ip_prefix& p = r.prefix;
  if (inet_pton(AF_INET, addr.c_str(), p.addr.data()) == 1) {
    p.version = 4;
  } else if (inet_pton(AF_INET6, addr.c_str(), p.addr.data()) == 1) {
    p.version = 6;
  } else {
    r.error = prefix_error::bad_address;
    return r;
  }
  const unsigned max_length = p.version == 4 ? 32 : 128;
  if (slash == std::string_view::npos) {
    p.length = static_cast<std::uint8_t>(max_length);
    return r;
  }
  std::string_view len = text.substr(slash + 1);
  if (len.empty() || len.size() > 3) {
    r.error = prefix_error::bad_length;
    return r;
  }
  unsigned value = 0;
  for (char c : len) {
    if (c < '0' || c > '9') {
      r.error = prefix_error::bad_length;
      return r;
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > max_length) {
    r.error = prefix_error::bad_length;
    return r;
  }
  p.length = static_cast<std::uint8_t>(value);
  if (mask_to(p.addr, p.length) != p.addr) r.error = prefix_error::host_bits_set;
  return r;
}

// ---------------------------------------------------------------------------------------------

namespace {

// Next-hop widths: the stored next hop is value + 1 (0 = no route, the FIB's default), and
// DIR-24-8 / trie keep one bit of each entry as the "extended" flag, so an n-byte entry holds
// up to 2^(8n-1) - 1.
rte_fib_dir24_8_nh_sz pick_nh4(std::uint64_t max_stored) {
  if (max_stored < (1u << 7)) return RTE_FIB_DIR24_8_1B;
  if (max_stored < (1u << 15)) return RTE_FIB_DIR24_8_2B;
  return RTE_FIB_DIR24_8_4B;
}
rte_fib_trie_nh_sz pick_nh6(std::uint64_t max_stored) {
  if (max_stored < (1u << 15)) return RTE_FIB6_TRIE_2B;
  return RTE_FIB6_TRIE_4B;
}

struct fib4_deleter {
  void operator()(rte_fib* f) const noexcept { rte_fib_free(f); }
};
struct fib6_deleter {
  void operator()(rte_fib6* f) const noexcept { rte_fib6_free(f); }
};

rte_fib* build_v4(const std::vector<prefix_rule>& rules, std::uint32_t max_stored) {
  // tbl8 groups: one per distinct /24 holding a longer prefix; doubled on ENOSPC.
  std::set<std::uint32_t> tbl8;
  for (const auto& r : rules) {
    if (r.prefix.length > 24) tbl8.insert(r.prefix.v4() >> 8);
  }
  std::uint32_t num_tbl8 = static_cast<std::uint32_t>(tbl8.size() + tbl8.size() / 8 + 32);
  for (int attempt = 0; attempt < 4; ++attempt, num_tbl8 *= 2) {
    char name[32];
    std::snprintf(name, sizeof name, "sl4_%u", instance_counter.fetch_add(1));
    rte_fib_conf conf{};
    conf.type = RTE_FIB_DIR24_8;
    conf.default_nh = 0;
    conf.max_routes = static_cast<int>(rules.size() + 1);
    conf.rib_ext_sz = 0;
    // tbl8 indexes live in next-hop entries too, so the width must hold both.
    conf.dir24_8.nh_sz = pick_nh4(std::max<std::uint64_t>(max_stored, num_tbl8));
    conf.dir24_8.num_tbl8 = num_tbl8;
    std::unique_ptr<rte_fib, fib4_deleter> fib(rte_fib_create(name, SOCKET_ID_ANY, &conf));
    if (!fib) throw std::runtime_error(rte_error_text("rte_fib_create"));
    int rc = 0;
    for (const auto& r : rules) {
      rc = rte_fib_add(fib.get(), r.prefix.v4(), r.prefix.length, std::uint64_t{r.value} + 1);
      if (rc != 0) break;
    }
    if (rc == 0) return fib.release();
    if (rc != -ENOSPC) {
      rte_errno = -rc;
      throw std::runtime_error(rte_error_text("rte_fib_add"));
    }
  }
  throw std::runtime_error("rte_fib_add: out of tbl8 groups");
}

rte_fib6* build_v6(const std::vector<prefix_rule>& rules, std::uint32_t max_stored) {
  // tbl8 groups: one per distinct (first L bits) for L = 24, 32, ... below each length.
  std::set<std::pair<unsigned, std::array<std::uint8_t, 16>>> tbl8;
  for (const auto& r : rules) {
    for (unsigned l = 24; l < r.prefix.length; l += 8) tbl8.emplace(l, mask_to(r.prefix.addr, l));
  }
  std::uint32_t num_tbl8 = static_cast<std::uint32_t>(tbl8.size() + tbl8.size() / 8 + 32);
  for (int attempt = 0; attempt < 4; ++attempt, num_tbl8 *= 2) {
    char name[32];
    std::snprintf(name, sizeof name, "sl6_%u", instance_counter.fetch_add(1));
    rte_fib6_conf conf{};
    conf.type = RTE_FIB6_TRIE;
    conf.default_nh = 0;
    conf.max_routes = static_cast<int>(rules.size() + 1);
    conf.rib_ext_sz = 0;
    conf.trie.nh_sz = pick_nh6(std::max<std::uint64_t>(max_stored, num_tbl8));
    conf.trie.num_tbl8 = num_tbl8;
    std::unique_ptr<rte_fib6, fib6_deleter> fib(rte_fib6_create(name, SOCKET_ID_ANY, &conf));
    if (!fib) throw std::runtime_error(rte_error_text("rte_fib6_create"));
    int rc = 0;
    for (const auto& r : rules) {
      rc = rte_fib6_add(fib.get(), r.prefix.addr.data(), r.prefix.length,
                        std::uint64_t{r.value} + 1);
      if (rc != 0) break;
    }
    if (rc == 0) return fib.release();
    if (rc != -ENOSPC) {
      rte_errno = -rc;
      throw std::runtime_error(rte_error_text("rte_fib6_add"));
    }
  }
  throw std::runtime_error("rte_fib6_add: out of tbl8 groups");
}

}  // namespace

prefix_set::prefix_set(std::span<const prefix_rule> rules) {
  std::vector<prefix_rule> v4, v6;
  std::uint32_t max4 = 0, max6 = 0;
  for (const auto& r : rules) {
    const ip_prefix& p = r.prefix;
    if ((p.version != 4 && p.version != 6) || p.length > (p.version == 4 ? 32 : 128)) {
      throw std::invalid_argument("prefix_set: malformed prefix");
    }
    if (mask_to(p.addr, p.length) != p.addr) {
      throw std::invalid_argument("prefix_set: host bits set in " + p.text());
    }
    if (r.value > max_value) throw std::invalid_argument("prefix_set: value too large");
    (p.version == 4 ? v4 : v6).push_back(r);
    (p.version == 4 ? max4 : max6) = std::max(p.version == 4 ? max4 : max6, r.value + 1);
  }
  for (auto* list : {&v4, &v6}) {
    std::sort(list->begin(), list->end(),
              [](const prefix_rule& a, const prefix_rule& b) { return a.prefix < b.prefix; });
    auto dup = std::adjacent_find(list->begin(), list->end(),
                                  [](const prefix_rule& a, const prefix_rule& b) {
                                    return a.prefix == b.prefix;
                                  });
    if (dup != list->end()) {
      throw std::invalid_argument("prefix_set: duplicate prefix " + dup->prefix.text());
    }
  }
  if ((!v4.empty() || !v6.empty()) && rte_lcore_count() == 0) {
    throw std::runtime_error("prefix_set: the DPDK EAL is not initialised");
  }
  std::unique_ptr<rte_fib, fib4_deleter> f4(v4.empty() ? nullptr : build_v4(v4, max4));
  std::unique_ptr<rte_fib6, fib6_deleter> f6(v6.empty() ? nullptr : build_v6(v6, max6));
  fib4_ = f4.release();
  fib6_ = f6.release();
  size_v4_ = v4.size();
  size_v6_ = v6.size();
}

void prefix_set::reset() noexcept {
  if (fib4_ != nullptr) rte_fib_free(fib4_);
  if (fib6_ != nullptr) rte_fib6_free(fib6_);
  fib4_ = nullptr;
  fib6_ = nullptr;
  size_v4_ = size_v6_ = 0;
}

prefix_set::~prefix_set() { reset(); }

prefix_set::prefix_set(prefix_set&& other) noexcept
    : fib4_(std::exchange(other.fib4_, nullptr)),
      fib6_(std::exchange(other.fib6_, nullptr)),
      size_v4_(std::exchange(other.size_v4_, 0)),
      size_v6_(std::exchange(other.size_v6_, 0)) {}

prefix_set& prefix_set::operator=(prefix_set&& other) noexcept {
  if (this != &other) {
    reset();
    fib4_ = std::exchange(other.fib4_, nullptr);
    fib6_ = std::exchange(other.fib6_, nullptr);
    size_v4_ = std::exchange(other.size_v4_, 0);
    size_v6_ = std::exchange(other.size_v6_, 0);
  }
  return *this;
}

std::optional<std::uint32_t> prefix_set::lookup_v4(std::uint32_t addr) const noexcept {
  if (fib4_ == nullptr) return std::nullopt;
  std::uint64_t nh = 0;
  // rte_fib_lookup_bulk only reads the addresses; its prototype is not const-correct.
  rte_fib_lookup_bulk(fib4_, &addr, &nh, 1);
  if (nh == 0) return std::nullopt;
  return static_cast<std::uint32_t>(nh - 1);
}

std::optional<std::uint32_t> prefix_set::lookup_v6(const std::uint8_t addr[16]) const noexcept {
  if (fib6_ == nullptr) return std::nullopt;
  std::uint64_t nh = 0;
  std::uint8_t ip[1][16];
  std::copy(addr, addr + 16, ip[0]);
  rte_fib6_lookup_bulk(fib6_, ip, &nh, 1);
  if (nh == 0) return std::nullopt;
  return static_cast<std::uint32_t>(nh - 1);
}

namespace {
constexpr unsigned bulk_chunk = 64;
}

void prefix_set::lookup_v4_bulk(const std::uint32_t* ips, std::uint32_t* out,
                                unsigned n) const noexcept {
  if (fib4_ == nullptr) {
    std::fill(out, out + n, none);
    return;
  }
  std::uint64_t nh[bulk_chunk];
  for (unsigned done = 0; done < n;) {
    const unsigned k = std::min(bulk_chunk, n - done);
    rte_fib_lookup_bulk(fib4_, const_cast<std::uint32_t*>(ips + done), nh, static_cast<int>(k));
    for (unsigned i = 0; i < k; ++i) out[done + i] = nh[i] == 0 ? none : static_cast<std::uint32_t>(nh[i] - 1);
    done += k;
  }
}

void prefix_set::lookup_v6_bulk(const std::uint8_t (*ips)[16], std::uint32_t* out,
                                unsigned n) const noexcept {
  if (fib6_ == nullptr) {
    std::fill(out, out + n, none);
    return;
  }
  std::uint64_t nh[bulk_chunk];
  for (unsigned done = 0; done < n;) {
    const unsigned k = std::min(bulk_chunk, n - done);
    rte_fib6_lookup_bulk(fib6_, const_cast<std::uint8_t(*)[16]>(ips + done), nh,
                         static_cast<int>(k));
    for (unsigned i = 0; i < k; ++i) out[done + i] = nh[i] == 0 ? none : static_cast<std::uint32_t>(nh[i] - 1);
    done += k;
  }
}

}  // namespace sluice::match
