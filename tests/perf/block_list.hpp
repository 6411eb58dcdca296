#pragma once
// A generated block list for the rule-count curves: `domains` names (a quarter of them
// "*.x" patterns, the rest exact names) and `prefixes` prefixes (90% IPv4 /24, /22, /20 spread
// over public space outside Telegram's ranges; 10% IPv6 /48), grouped into rules of at most
// `per_rule` targets. Deterministic for a seed. Both sides of bench_ndpi load the same list.

#include <cstdint>
#include <random>
#include <string>
#include <unordered_set>
#include <vector>

namespace sluice::perf {

struct block_list {
  std::vector<std::string> domains;   // as in a policy: "name" or "*.name"
  std::vector<std::string> prefixes;  // "a.b.c.d/len", "xxxx:xxxx:xxxx::/48"
  std::vector<std::string> sample;    // names that match it, for traffic (one per 64 domains)
};

// First octets a generated IPv4 server or prefix may use: public unicast, not Telegram's.
inline constexpr std::uint8_t public_octets[] = {
    2,   5,   13,  17,  23,  31,  34,  37,  45,  46,  50,  52,  54,  62,  63,  64,
    66,  69,  72,  74,  77,  78,  80,  81,  82,  83,  84,  85,  86,  87,  88,  89,
    92,  93,  94,  104, 107, 108, 109, 128, 130, 131, 134, 136, 138, 141, 142, 143,
    144, 146, 151, 152, 153, 157, 158, 159, 162, 164, 167, 170, 173, 176, 178, 184,
    188, 193, 194, 195, 199, 204, 206, 207, 208, 209, 212, 213, 216, 217};

inline std::string random_label(std::mt19937_64& rng, std::size_t min, std::size_t max) {
  const std::size_t n = min + rng() % (max - min + 1);
  std::string s;
  for (std::size_t i = 0; i < n; ++i) s += static_cast<char>('a' + rng() % 26);
  return s;
}

inline block_list generate_block_list(std::uint32_t domains, std::uint32_t prefixes,
                                      std::uint64_t seed) {
  static constexpr const char* tlds[] = {"com", "net", "org", "ru", "info", "xyz", "top", "io"};
  std::mt19937_64 rng(seed ^ 0xb10c);
  block_list out;
  std::unordered_set<std::string> seen;
  while (out.domains.size() < domains) {
    std::string base = "z" + random_label(rng, 7, 14) + "." + tlds[rng() % 8];
    if (!seen.insert(base).second) continue;
    const bool pattern = out.domains.size() % 4 == 3;
    if (out.domains.size() % 64 == 0 || (pattern && out.domains.size() % 64 == 3)) {
      out.sample.push_back(pattern ? "cdn." + base : base);
    }
    out.domains.push_back(pattern ? "*." + base : base);
  }
  seen.clear();
  const std::uint32_t v6 = prefixes / 10;
  while (out.prefixes.size() < prefixes - v6) {
    const std::uint8_t a = public_octets[rng() % std::size(public_octets)];
    const std::uint64_t r = rng();
    const int len = r % 20 == 0 ? 20 : (r % 20 < 4 ? 22 : 24);
    const auto mask = static_cast<std::uint8_t>(0xffu << (24 - len));
    std::string p = std::to_string(a) + "." + std::to_string((r >> 8) & 0xff) + "." +
                    std::to_string(((r >> 16) & 0xff) & mask) + ".0/" + std::to_string(len);
    if (seen.insert(p).second) out.prefixes.push_back(std::move(p));
  }
  char b[64];
  while (out.prefixes.size() < prefixes) {
    const std::uint64_t r = rng();
    // The third group is never 0: nDPI 4.2's ptree takes an IPv6 address whose bytes 4..15
    // are all zero for an IPv4 one (ndpi_is_ipv6), and would refuse or misfile the prefix.
    std::snprintf(b, sizeof b, "2a0%x:%x:%x::/48", static_cast<unsigned>(r % 8 + 1),
                  static_cast<unsigned>((r >> 8) & 0xffff),
                  static_cast<unsigned>((r >> 24) % 0xffff + 1));
    std::string p = b;
    if (seen.insert(p).second) out.prefixes.push_back(std::move(p));
  }
  return out;
}

}  // namespace sluice::perf
