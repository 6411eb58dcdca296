#include <doctest/doctest.h>
#include <arpa/inet.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "dataplane/match/prefix_set.hpp"

using sluice::match::parse_prefix;
using sluice::match::prefix_error;
using sluice::match::prefix_rule;
using sluice::match::prefix_set;

namespace {

std::uint32_t v4(const char* s) {
  in_addr a{};
  REQUIRE(inet_pton(AF_INET, s, &a) == 1);
  return ntohl(a.s_addr);
}
std::array<std::uint8_t, 16> v6(const char* s) {
  std::array<std::uint8_t, 16> a{};
  REQUIRE(inet_pton(AF_INET6, s, a.data()) == 1);
  return a;
}
prefix_set make(const std::vector<std::pair<const char*, std::uint32_t>>& rules) {
  std::vector<prefix_rule> v;
  for (const auto& [text, value] : rules) {
    const auto p = parse_prefix(text);
    REQUIRE(p);
    v.push_back({p.prefix, value});
  }
  return prefix_set(v);
}

}  // namespace

TEST_CASE("parse_prefix: table") {
  struct row {
    const char* text;
    prefix_error error;
    int version;
    int length;
  };
  const row rows[] = {
      {"91.108.4.0/22", prefix_error::ok, 4, 22},
      {"0.0.0.0/0", prefix_error::ok, 4, 0},
      {"8.8.8.8/32", prefix_error::ok, 4, 32},
      {"8.8.8.8", prefix_error::ok, 4, 32},
      {" 10.0.0.0/8 ", prefix_error::ok, 4, 8},
      {"2001:67c:4e8::/48", prefix_error::ok, 6, 48},
      {"::/0", prefix_error::ok, 6, 0},
      {"2001:db8::1/128", prefix_error::ok, 6, 128},
      {"2001:db8::1", prefix_error::ok, 6, 128},
      {"10.0.0.1/8", prefix_error::host_bits_set, 4, 8},
      {"91.108.4.0/21", prefix_error::host_bits_set, 4, 21},
      {"1.0.0.0/0", prefix_error::host_bits_set, 4, 0},
      {"2001:67c:4e8::1/48", prefix_error::host_bits_set, 6, 48},
      {"10.0.0.0/33", prefix_error::bad_length, 0, 0},
      {"2001:db8::/129", prefix_error::bad_length, 0, 0},
      {"10.0.0.0/", prefix_error::bad_length, 0, 0},
      {"10.0.0.0/x", prefix_error::bad_length, 0, 0},
      {"10.0.0.0/-1", prefix_error::bad_length, 0, 0},
      {"10.0.0.0/0008", prefix_error::bad_length, 0, 0},
      {"10.0.0/8", prefix_error::bad_address, 0, 0},
      {"256.0.0.0/8", prefix_error::bad_address, 0, 0},
      {"telegram.org", prefix_error::bad_address, 0, 0},
      {"", prefix_error::bad_address, 0, 0},
  };
  for (const auto& r : rows) {
    const std::string label = r.text;
    CAPTURE(label);
    const auto p = parse_prefix(r.text);
    CHECK(p.error == r.error);
    if (r.error == prefix_error::ok || r.error == prefix_error::host_bits_set) {
      CHECK(p.prefix.version == r.version);
      CHECK(p.prefix.length == r.length);
    }
  }
  CHECK(parse_prefix("91.108.4.0/22").prefix.text() == "91.108.4.0/22");
  CHECK(parse_prefix("2001:67c:4e8::/48").prefix.text() == "2001:67c:4e8::/48");
}

TEST_CASE("prefix_set: IPv4 longest match, /0, /32, bulk") {
  const prefix_set set = make({{"10.0.0.0/8", 1},
                               {"10.1.0.0/16", 2},
                               {"10.1.2.0/24", 3},
                               {"10.1.2.128/25", 4},
                               {"10.1.2.3/32", 5},
                               {"192.0.2.0/24", 6}});
  CHECK(set.size_v4() == 6);
  CHECK(set.size_v6() == 0);
  struct row {
    const char* addr;
    std::optional<std::uint32_t> value;
  };
  const row rows[] = {
      {"10.9.9.9", 1},       {"10.1.9.9", 2},      {"10.1.2.4", 3},   {"10.1.2.200", 4},
      {"10.1.2.3", 5},       {"10.1.2.2", 3},      {"192.0.2.255", 6}, {"192.0.3.0", std::nullopt},
      {"11.0.0.0", std::nullopt}, {"9.255.255.255", std::nullopt}, {"0.0.0.0", std::nullopt},
  };
  std::vector<std::uint32_t> ips;
  for (const auto& r : rows) {
    const std::string label = r.addr;
    CAPTURE(label);
    CHECK(set.lookup_v4(v4(r.addr)) == r.value);
    ips.push_back(v4(r.addr));
  }
  // Bulk, more than one internal chunk.
  std::vector<std::uint32_t> many, out(200);
  for (int i = 0; i < 200; ++i) many.push_back(ips[i % ips.size()]);
  set.lookup_v4_bulk(many.data(), out.data(), 200);
  for (int i = 0; i < 200; ++i) {
    const auto& expect = rows[i % std::size(rows)].value;
    CHECK(out[i] == (expect ? *expect : prefix_set::none));
  }
  // No IPv6 in the set: v6 lookups find nothing.
  CHECK_FALSE(set.lookup_v6(v6("::1").data()).has_value());

  const prefix_set all = make({{"0.0.0.0/0", 7}, {"8.8.8.8/32", 8}});
  CHECK(all.lookup_v4(v4("1.2.3.4")) == 7u);
  CHECK(all.lookup_v4(v4("255.255.255.255")) == 7u);
  CHECK(all.lookup_v4(v4("8.8.8.8")) == 8u);
  CHECK(all.lookup_v4(v4("8.8.8.9")) == 7u);
}

TEST_CASE("prefix_set: IPv6 longest match, /0, /128, bulk") {
  const prefix_set set = make({{"2001:67c:4e8::/48", 1},
                               {"2001:67c:4e8:f00d::/64", 2},
                               {"2001:67c:4e8:f00d::1/128", 3},
                               {"2001:b28:f23c::/47", 4}});
  CHECK(set.size_v6() == 4);
  struct row {
    const char* addr;
    std::optional<std::uint32_t> value;
  };
  const row rows[] = {
      {"2001:67c:4e8::1", 1},         {"2001:67c:4e8:f00d::2", 2},
      {"2001:67c:4e8:f00d::1", 3},    {"2001:b28:f23d:ffff::1", 4},
      {"2001:b28:f23e::1", std::nullopt}, {"2001:67c:4e9::1", std::nullopt},
      {"::", std::nullopt},
  };
  std::vector<std::array<std::uint8_t, 16>> ips;
  for (const auto& r : rows) {
    const std::string label = r.addr;
    CAPTURE(label);
    CHECK(set.lookup_v6(v6(r.addr).data()) == r.value);
    ips.push_back(v6(r.addr));
  }
  std::vector<std::uint32_t> out(ips.size());
  set.lookup_v6_bulk(reinterpret_cast<const std::uint8_t(*)[16]>(ips.data()), out.data(),
                     static_cast<unsigned>(ips.size()));
  for (std::size_t i = 0; i < ips.size(); ++i) {
    CHECK(out[i] == (rows[i].value ? *rows[i].value : prefix_set::none));
  }
  CHECK_FALSE(set.lookup_v4(v4("1.2.3.4")).has_value());

  const prefix_set all = make({{"::/0", 9}});
  CHECK(all.lookup_v6(v6("ffff::1").data()) == 9u);
}

TEST_CASE("prefix_set: bad input is refused, empty set finds nothing, moves") {
  sluice::match::ip_prefix widened = parse_prefix("10.0.0.0/8").prefix;
  widened.addr[3] = 1;  // 10.0.0.1/8: never silently widened
  std::vector<prefix_rule> bad = {{widened, 1}};
  CHECK_THROWS_AS(prefix_set{bad}, std::invalid_argument);
  std::vector<prefix_rule> dup = {{parse_prefix("10.0.0.0/8").prefix, 1},
                                  {parse_prefix("10.0.0.0/8").prefix, 2}};
  CHECK_THROWS_AS(prefix_set{dup}, std::invalid_argument);
  std::vector<prefix_rule> big = {{parse_prefix("10.0.0.0/8").prefix, prefix_set::max_value + 1}};
  CHECK_THROWS_AS(prefix_set{big}, std::invalid_argument);

  const prefix_set empty;
  CHECK_FALSE(empty.lookup_v4(v4("10.0.0.1")).has_value());
  std::uint32_t ip = v4("10.0.0.1"), out = 0;
  empty.lookup_v4_bulk(&ip, &out, 1);
  CHECK(out == prefix_set::none);

  prefix_set a = make({{"10.0.0.0/8", 1}});
  prefix_set b = std::move(a);
  CHECK(b.lookup_v4(v4("10.0.0.1")) == 1u);
  CHECK_FALSE(a.lookup_v4(v4("10.0.0.1")).has_value());  // NOLINT(bugprone-use-after-move)
  a = make({{"10.0.0.0/8", 2}});
  CHECK(a.lookup_v4(v4("10.0.0.1")) == 2u);
}

TEST_CASE("prefix_set: wide values pick wider next hops") {
  // 40000 > 2-byte next hop range: needs the 4-byte variant.
  const prefix_set set = make({{"10.0.0.0/8", 40000}, {"10.0.0.0/25", 5}, {"2001:db8::/32", 40001}});
  CHECK(set.lookup_v4(v4("10.200.0.1")) == 40000u);
  CHECK(set.lookup_v4(v4("10.0.0.1")) == 5u);
  CHECK(set.lookup_v6(v6("2001:db8::1").data()) == 40001u);
}
