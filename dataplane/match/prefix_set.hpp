#pragma once
// Immutable IPv4/IPv6 prefix sets on DPDK's rte_fib (DIR-24-8) and rte_fib6 (trie), each prefix
// carrying a uint32 value (the compiled policy stores a match-group id there). A lookup returns
// the value of the longest matching prefix.
//
// Construction is off the hot path: it needs an initialised EAL, allocates DPDK memory, and
// throws std::runtime_error (with rte_strerror text) when DPDK refuses, std::invalid_argument for
// a bad input (duplicate prefix, value too large). After construction the set is never modified,
// so any number of threads may look up concurrently; lookups do not allocate or throw.

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct rte_fib;
struct rte_fib6;

namespace sluice::match {

struct ip_prefix {
  std::array<std::uint8_t, 16> addr{};  // network order; IPv4 in addr[0..3], rest zero
  std::uint8_t version = 0;             // 4 or 6
  std::uint8_t length = 0;              // 0..32 or 0..128

  friend bool operator==(const ip_prefix&, const ip_prefix&) = default;
  friend auto operator<=>(const ip_prefix&, const ip_prefix&) = default;
  [[nodiscard]] std::uint32_t v4() const noexcept {
    return (std::uint32_t{addr[0]} << 24) | (std::uint32_t{addr[1]} << 16) |
           (std::uint32_t{addr[2]} << 8) | addr[3];
  }
  // True when `other` lies inside this prefix (same family, not shorter).
  [[nodiscard]] bool covers(const ip_prefix& other) const noexcept;
  [[nodiscard]] std::string text() const;
};

#define SLUICE_PREFIX_ERRORS(X)                                                   \
  X(ok, "ok")                                                                     \
  X(bad_address, "bad_address")       /* not an IPv4/IPv6 address */             \
  X(bad_length, "bad_length")         /* "/x" not a number in range */           \
  X(host_bits_set, "host_bits_set")   /* 10.0.0.1/8: would silently widen */

enum class prefix_error : std::uint8_t {
#define SLUICE_X(name, str) name,
  SLUICE_PREFIX_ERRORS(SLUICE_X)
#undef SLUICE_X
      count
};
[[nodiscard]] const char* to_string(prefix_error e) noexcept;

struct prefix_result {
  prefix_error error = prefix_error::ok;
  ip_prefix prefix;
  [[nodiscard]] explicit operator bool() const noexcept { return error == prefix_error::ok; }
};

// "a.b.c.d/len", "x:y::/len"; a bare address is a host route (/32, /128). Surrounding ASCII
// whitespace is ignored. Host bits set below the length are an error, never masked away.
[[nodiscard]] prefix_result parse_prefix(std::string_view text);

struct prefix_rule {
  ip_prefix prefix;
  std::uint32_t value = 0;
};

class prefix_set {
 public:
  // Values must be below max_value. Each (address, length) at most once.
  static constexpr std::uint32_t max_value = (1u << 30) - 1;

  prefix_set() = default;  // empty: finds nothing, allocates nothing
  explicit prefix_set(std::span<const prefix_rule> rules);
  ~prefix_set();
  prefix_set(prefix_set&& other) noexcept;
  prefix_set& operator=(prefix_set&& other) noexcept;
  prefix_set(const prefix_set&) = delete;
  prefix_set& operator=(const prefix_set&) = delete;

  [[nodiscard]] std::optional<std::uint32_t> lookup_v4(std::uint32_t host_order_addr) const noexcept;
  [[nodiscard]] std::optional<std::uint32_t> lookup_v6(const std::uint8_t addr[16]) const noexcept;

  // Bulk lookups for the burst loop: out[i] = value or `none` for each input. `ips` are
  // host-order IPv4 addresses. n is small (a burst); no allocation.
  static constexpr std::uint32_t none = UINT32_MAX;
  void lookup_v4_bulk(const std::uint32_t* ips, std::uint32_t* out, unsigned n) const noexcept;
  void lookup_v6_bulk(const std::uint8_t (*ips)[16], std::uint32_t* out, unsigned n) const noexcept;

  [[nodiscard]] std::size_t size_v4() const noexcept { return size_v4_; }
  [[nodiscard]] std::size_t size_v6() const noexcept { return size_v6_; }

 private:
  void reset() noexcept;

  rte_fib* fib4_ = nullptr;
  rte_fib6* fib6_ = nullptr;
  std::size_t size_v4_ = 0;
  std::size_t size_v6_ = 0;
};

}  // namespace sluice::match
