// DNS question reader: built messages (labels, pointers, limits, every truncation), the TCP
// framing, and real messages from ../shared/testdata/captures.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/packet/dns.hpp"
#include "tests/unit/support/packet_builder.hpp"

using namespace sluice::packet;

namespace {

using buf = std::vector<std::uint8_t>;

void put16(buf& b, std::size_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}

buf header(std::uint16_t qdcount, bool response = false) {
  buf b{0x12, 0x34, static_cast<std::uint8_t>(response ? 0x81 : 0x01), 0x00};
  put16(b, qdcount);
  put16(b, 0);
  put16(b, 0);
  put16(b, 0);
  return b;
}

void put_question(buf& b, std::string_view dotted, std::uint16_t qtype = 1, std::uint16_t qclass = 1) {
  sluice::test::put_dns_name(b, dotted);
  put16(b, qtype);
  put16(b, qclass);
}

buf query(std::string_view dotted, std::uint16_t qtype = 1) {
  buf b = header(1);
  put_question(b, dotted, qtype);
  return b;
}

buf tcp(const buf& msg) {
  buf b(msg.size() + 2);
  b[0] = static_cast<std::uint8_t>(msg.size() >> 8);
  b[1] = static_cast<std::uint8_t>(msg.size());
  std::copy(msg.begin(), msg.end(), b.begin() + 2);
  return b;
}

std::string labels(std::size_t count, std::size_t len) {
  std::string s;
  for (std::size_t i = 0; i < count; ++i) {
    if (i != 0) s += '.';
    s += std::string(len, static_cast<char>('a' + i % 26));
  }
  return s;
}

struct expected_q {
  std::string name;
  std::uint16_t qtype;
  std::uint16_t qclass;
};

struct row {
  const char* description;
  buf message;
  dns_outcome outcome;
  std::vector<expected_q> questions;  // decoded ones, in order
  std::uint16_t qdcount;
  bool is_response;
};

void check_row(const row& r, dns_outcome o, const dns_questions& q) {
  CHECK(std::string{to_string(o)} == std::string{to_string(r.outcome)});
  CHECK(q.qdcount == r.qdcount);
  CHECK(q.is_response == r.is_response);
  REQUIRE(q.count == r.questions.size());
  for (std::size_t i = 0; i < r.questions.size(); ++i) {
    CHECK(std::string{q.names[i].view()} == r.questions[i].name);
    CHECK(q.names[i].qtype == r.questions[i].qtype);
    CHECK(q.names[i].qclass == r.questions[i].qclass);
  }
}

std::vector<row> rows() {
  std::vector<row> v;
  v.push_back({"simple A query", query("t.me"), dns_outcome::question, {{"t.me", 1, 1}}, 1, false});
  {
    buf b = header(1, true);
    put_question(b, "Web.Telegram.ORG", 28);
    v.push_back({"response, AAAA, case kept", b, dns_outcome::question, {{"Web.Telegram.ORG", 28, 1}}, 1, true});
  }
  {
    // mDNS-style: several questions, later names compressed against the first, QU bit set.
    buf b = header(3);
    put_question(b, "_services._dns-sd._udp.local", 12, 0x8001);
    b.push_back(4);
    b.insert(b.end(), {'_', 'i', 'p', 'p'});
    b.push_back(4);
    b.insert(b.end(), {'_', 't', 'c', 'p'});
    b.push_back(0xc0);
    b.push_back(12 + 10 + 8 + 5);  // -> "local" in the first name
    put16(b, 12);
    put16(b, 1);
    b.push_back(0xc0);
    b.push_back(12);  // the whole first name
    put16(b, 16);
    put16(b, 0x8001);
    v.push_back({"mDNS: three questions with pointers, unicast bit kept raw", b, dns_outcome::question,
                 {{"_services._dns-sd._udp.local", 12, 0x8001}, {"_ipp._tcp.local", 12, 1},
                  {"_services._dns-sd._udp.local", 16, 0x8001}},
                 3, false});
  }
  {
    buf b = header(1);
    sluice::test::put_dns_name(b, "");
    put16(b, 2);
    put16(b, 1);
    v.push_back({"root name (NS .)", b, dns_outcome::question, {{"", 2, 1}}, 1, false});
  }
  v.push_back({"qdcount 0", header(0), dns_outcome::no_question, {}, 0, false});
  {
    buf b = header(20);
    for (int i = 0; i < 20; ++i) put_question(b, "q" + std::to_string(i) + ".example");
    std::vector<expected_q> want;
    for (std::size_t i = 0; i < dns_questions::max_questions; ++i) {
      want.push_back({"q" + std::to_string(i) + ".example", 1, 1});
    }
    v.push_back({"more questions than max_questions", b, dns_outcome::question, want, 20, false});
  }
  {
    buf b = header(2);
    put_question(b, "t.me");
    v.push_back({"qdcount 2, one question present", b, dns_outcome::truncated, {{"t.me", 1, 1}}, 2, false});
  }
  v.push_back({"label of 63", query(labels(1, 63) + ".me"), dns_outcome::question,
               {{labels(1, 63) + ".me", 1, 1}}, 1, false});
  {
    buf b = header(1);
    b.push_back(64);
    b.insert(b.end(), 64, 'a');
    b.push_back(0);
    put16(b, 1);
    put16(b, 1);
    v.push_back({"label length 64 (0x40 type bits)", b, dns_outcome::malformed, {}, 1, false});
  }
  {
    buf b = header(1);
    b.push_back(0x80);
    b.push_back(0);
    put16(b, 1);
    put16(b, 1);
    v.push_back({"label type 0x80", b, dns_outcome::malformed, {}, 1, false});
  }
  // 4 x 62 + 3 dots = 251, + ".a" = 253: the longest allowed name; one more char is too long.
  const std::string n253 = labels(4, 62) + ".a";
  v.push_back({"name of 253 characters", query(n253), dns_outcome::question, {{n253, 1, 1}}, 1, false});
  v.push_back({"name of 254 characters", query(labels(4, 62) + ".ab"), dns_outcome::malformed, {}, 1, false});
  v.push_back({"name of 319 characters", query(labels(5, 63)), dns_outcome::malformed, {}, 1, false});
  {
    buf b = header(1);
    b.push_back(0xc0);
    b.push_back(12);  // points at itself
    put16(b, 1);
    put16(b, 1);
    v.push_back({"pointer loop (to itself)", b, dns_outcome::malformed, {}, 1, false});
  }
  {
    buf b = header(1);
    b.push_back(1);
    b.push_back('a');
    b.push_back(0xc0);
    b.push_back(12);  // back to "a" -> loop a.a.a...
    put16(b, 1);
    put16(b, 1);
    v.push_back({"pointer loop (two steps)", b, dns_outcome::malformed, {}, 1, false});
  }
  {
    buf b = header(1);
    b.push_back(0xc0);
    b.push_back(20);  // forward
    put16(b, 1);
    put16(b, 1);
    b.insert(b.end(), {1, 'x', 0});
    v.push_back({"forward pointer", b, dns_outcome::malformed, {}, 1, false});
  }
  {
    buf b = header(1);
    b.push_back(0xc0);
    b.push_back(2);  // into the header
    put16(b, 1);
    put16(b, 1);
    v.push_back({"pointer into the header", b, dns_outcome::malformed, {}, 1, false});
  }
  {
    buf b = header(1);
    b.insert(b.end(), {3, 'a', 0, 'b', 2, 'm', 'e', 0});
    put16(b, 1);
    put16(b, 1);
    v.push_back({"NUL byte inside a label", b, dns_outcome::malformed, {}, 1, false});
  }
  {
    buf b = header(2);
    put_question(b, "ok.example");
    b.push_back(0xc0);
    b.push_back(b.size() - 1);  // itself
    put16(b, 1);
    put16(b, 1);
    v.push_back({"second question malformed, first kept", b, dns_outcome::malformed, {{"ok.example", 1, 1}}, 2,
                 false});
  }
  v.push_back({"header only (11 bytes)", buf(11, 0), dns_outcome::truncated, {}, 0, false});
  return v;
}

// UDP payloads extracted with scapy from ../shared/testdata/captures.
// dns.pcap frame 4, 33 bytes
constexpr std::uint8_t dns_pcap_4[] = {
    0x78, 0x43, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x65, 0x37, 0x08,
    0x77, 0x68, 0x61, 0x74, 0x73, 0x61, 0x70, 0x70, 0x03, 0x6e, 0x65, 0x74, 0x00, 0x00, 0x01, 0x00,
    0x01,
};
// dns.pcap frame 5, 161 bytes
constexpr std::uint8_t dns_pcap_5[] = {
    0x78, 0x43, 0x81, 0x80, 0x00, 0x01, 0x00, 0x08, 0x00, 0x00, 0x00, 0x00, 0x02, 0x65, 0x37, 0x08,
    0x77, 0x68, 0x61, 0x74, 0x73, 0x61, 0x70, 0x70, 0x03, 0x6e, 0x65, 0x74, 0x00, 0x00, 0x01, 0x00,
    0x01, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0xeb, 0x00, 0x04, 0xa9, 0x2d, 0xdb,
    0xeb, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0xeb, 0x00, 0x04, 0xa9, 0x2f, 0x28,
    0x8e, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0xeb, 0x00, 0x04, 0xa9, 0x2d, 0xf8,
    0x79, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0xeb, 0x00, 0x04, 0x6c, 0xa8, 0xb0,
    0xea, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0xeb, 0x00, 0x04, 0xa9, 0x2d, 0xf8,
    0xbd, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0xeb, 0x00, 0x04, 0xa9, 0x2d, 0xf8,
    0xb4, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0xeb, 0x00, 0x04, 0xa9, 0x35, 0x51,
    0x4f, 0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0xeb, 0x00, 0x04, 0xa9, 0x2d, 0xdb,
    0xe8,
};
// punycode-idn.pcap frame 3, 39 bytes
constexpr std::uint8_t puny_3[] = {
    0xfb, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x77, 0x77, 0x77,
    0x0d, 0x78, 0x6e, 0x2d, 0x2d, 0x6d, 0x6e, 0x69, 0x63, 0x68, 0x2d, 0x6b, 0x76, 0x61, 0x03, 0x63,
    0x6f, 0x6d, 0x00, 0x00, 0x01, 0x00, 0x01,
};

}  // namespace

TEST_CASE("dns: to_string names every outcome") {
  CHECK(std::string_view{to_string(dns_outcome::question)} == "question");
  CHECK(std::string_view{to_string(dns_outcome::truncated)} == "truncated");
  CHECK(std::string_view{to_string(dns_outcome::count)} == "unknown");
}

TEST_CASE("dns: message table over UDP and over TCP") {
  for (const auto& r : rows()) {
    CAPTURE(std::string{r.description});
    dns_questions q;
    check_row(r, parse_dns_message(r.message, q), q);
    if (r.outcome != dns_outcome::truncated) {  // a whole TCP message reads the same
      dns_questions qt;
      check_row(r, parse_dns_tcp(tcp(r.message), qt), qt);
    }
  }
}

TEST_CASE("dns: every truncation of a query is truncated (UDP) or need_more (TCP)") {
  buf two = header(2);
  put_question(two, "www.example.com");
  put_question(two, "t.me", 28);
  const buf messages[] = {query("web.telegram.org"), two};
  for (const auto& m : messages) {
    const std::size_t first_end = 12 + 17 + 4;  // only meaningful for `two`
    for (std::size_t n = 0; n < m.size(); ++n) {
      CAPTURE(n);
      dns_questions q;
      CHECK(parse_dns_message(bytes{m.data(), n}, q) == dns_outcome::truncated);
      // Questions already whole are kept.
      CHECK(q.count == ((m.size() == two.size() && n >= first_end) ? 1u : 0u));

      const buf framed = tcp(m);
      dns_questions qt;
      CHECK(parse_dns_tcp(bytes{framed.data(), n + 2}, qt) == dns_outcome::need_more);
      CHECK(parse_dns_tcp(bytes{framed.data(), n < 2 ? n : 1}, qt) == dns_outcome::need_more);
    }
  }
}

TEST_CASE("dns: TCP framing") {
  buf msg = query("t.me");
  // An EDNS OPT record follows the question; the question section is whole before it arrives.
  msg[11] = 1;  // ARCOUNT 1
  msg.insert(msg.end(), {0, 0, 41, 0x10, 0, 0, 0, 0, 0, 0, 0});
  const buf framed = tcp(msg);
  const std::size_t question_end = 2 + 12 + 6 + 4;

  dns_questions q;
  CHECK(parse_dns_tcp(bytes{framed.data(), 0}, q) == dns_outcome::need_more);
  CHECK(parse_dns_tcp(bytes{framed.data(), 1}, q) == dns_outcome::need_more);
  CHECK(parse_dns_tcp(bytes{framed.data(), question_end - 1}, q) == dns_outcome::need_more);
  CHECK(q.count == 0);
  CHECK(parse_dns_tcp(bytes{framed.data(), question_end}, q) == dns_outcome::question);
  CHECK(q.names[0].view() == "t.me");
  CHECK(parse_dns_tcp(bytes{framed.data(), framed.size() - 1}, q) == dns_outcome::question);
  CHECK(parse_dns_tcp(framed, q) == dns_outcome::question);
  CHECK(q.count == 1);

  // The length bounds the message: a question past it is truncated, not read from the stream.
  buf short_len = framed;
  short_len[1] = static_cast<std::uint8_t>(12 + 3);
  CHECK(parse_dns_tcp(short_len, q) == dns_outcome::truncated);

  const buf zero{0, 0, 1, 2, 3};
  CHECK(parse_dns_tcp(zero, q) == dns_outcome::malformed);

  // Partial message with a malformed question is reported as soon as it is seen.
  buf bad = header(1);
  bad.insert(bad.end(), {0xc0, 12, 0, 1});
  buf bad_framed;
  put16(bad_framed, 100);
  bad_framed.insert(bad_framed.end(), bad.begin(), bad.end());
  CHECK(parse_dns_tcp(bad_framed, q) == dns_outcome::malformed);
}

TEST_CASE("dns: real messages from captures") {
  struct real_row {
    const char* description;
    bytes message;
    std::string_view name;
    std::uint16_t qtype;
    bool is_response;
  } rows[] = {
      {"dns.pcap frame 4 (query inside PPPoE/QinQ)", dns_pcap_4, "e7.whatsapp.net", 1, false},
      {"dns.pcap frame 5 (response, compressed answers)", dns_pcap_5, "e7.whatsapp.net", 1, true},
      {"punycode-idn.pcap frame 3", puny_3, "www.xn--mnich-kva.com", 1, false},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string{r.description});
    dns_questions q;
    REQUIRE(parse_dns_message(r.message, q) == dns_outcome::question);
    REQUIRE(q.count == 1);
    CHECK(q.qdcount == 1);
    CHECK(q.names[0].view() == r.name);
    CHECK(q.names[0].qtype == r.qtype);
    CHECK(q.names[0].qclass == 1);
    CHECK(q.is_response == r.is_response);
  }
}
