// HTTP/1.x request reader: request tables, byte-by-byte splits, caps, and real requests from
// ../shared/testdata/captures.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "dataplane/packet/http.hpp"

using namespace sluice::packet;

namespace {

bytes as_bytes(std::string_view s) { return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()}; }

struct row {
  const char* description;
  std::string input;
  http_outcome outcome;
  std::string_view method;
  std::string_view host;
  std::string_view target = {};
  std::string_view host2 = {};
};

}  // namespace

TEST_CASE("http: to_string names every outcome") {
  CHECK(std::string_view{to_string(http_outcome::host)} == "host");
  CHECK(std::string_view{to_string(http_outcome::no_host)} == "no_host");
  CHECK(std::string_view{to_string(http_outcome::count)} == "unknown");
}

TEST_CASE("http: request table") {
  const std::string long_target = "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: t.me\r\n\r\n";
  std::string long_headers = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 200; ++i) long_headers += "X-Filler-" + std::to_string(i) + ": " + std::string(40, 'x') + "\r\n";
  long_headers += "Host: t.me\r\n\r\n";
  const std::string binary("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
  const std::string nul_method("GE\0 / HTTP/1.1\r\n", 16);

  const row rows[] = {
      {"normal GET", "GET /index.html HTTP/1.1\r\nHost: t.me\r\nAccept: */*\r\n\r\n", http_outcome::host, "GET",
       "t.me"},
      {"Host after other headers", "POST /api HTTP/1.1\r\nUser-Agent: x\r\nContent-Length: 0\r\nHost: web.telegram.org\r\n\r\n",
       http_outcome::host, "POST", "web.telegram.org"},
      {"HOST: upper case", "GET / HTTP/1.1\r\nHOST: t.me\r\n\r\n", http_outcome::host, "GET", "t.me"},
      {"hOsT: mixed case", "GET / HTTP/1.1\r\nhOsT: t.me\r\n\r\n", http_outcome::host, "GET", "t.me"},
      {"spaces and tabs around the value", "GET / HTTP/1.1\r\nHost: \t  t.me \t \r\n\r\n", http_outcome::host, "GET",
       "t.me"},
      {"no space after colon", "GET / HTTP/1.1\r\nHost:t.me\r\n\r\n", http_outcome::host, "GET", "t.me"},
      {"port kept", "GET / HTTP/1.1\r\nHost: t.me:8080\r\n\r\n", http_outcome::host, "GET", "t.me:8080"},
      {"case kept as sent", "GET / HTTP/1.1\r\nHost: T.Me\r\n\r\n", http_outcome::host, "GET", "T.Me"},
      {"two different Host headers: both kept", "GET / HTTP/1.1\r\nHost: example.com\r\nHost: t.me\r\n\r\n",
       http_outcome::host, "GET", "example.com", "", "t.me"},
      {"a repeated equal Host is not a second name", "GET / HTTP/1.1\r\nHost: t.me\r\nHOST: T.ME\r\n\r\n",
       http_outcome::host, "GET", "t.me"},
      {"bare LF line endings", "GET / HTTP/1.1\nHost: t.me\n\n", http_outcome::host, "GET", "t.me"},
      {"Host line complete, headers not: wait for a second Host", "GET / HTTP/1.1\r\nHost: t.me\r\nAccept: te",
       http_outcome::need_more, "GET", "t.me"},
      {"empty Host value", "GET / HTTP/1.1\r\nHost:\r\n\r\n", http_outcome::host, "GET", ""},
      {"HTTP/1.0 without Host", "GET / HTTP/1.0\r\nUser-Agent: x\r\n\r\n", http_outcome::no_host, "GET", ""},
      {"no headers at all", "GET / HTTP/1.0\r\n\r\n", http_outcome::no_host, "GET", ""},
      {"obs-fold line is not a Host", "GET / HTTP/1.1\r\nX-A: 1\r\n Host: t.me\r\n\r\n", http_outcome::no_host, "GET",
       ""},
      {"X-Host is not Host", "GET / HTTP/1.1\r\nX-Host: t.me\r\nHostname: t.me\r\n\r\n", http_outcome::no_host, "GET",
       ""},
      {"absolute-form target and a different Host: both", "GET http://t.me/path HTTP/1.1\r\nHost: example.com\r\n\r\n",
       http_outcome::host, "GET", "example.com", "t.me"},
      {"absolute-form with userinfo and port", "GET HTTP://user:pw@t.me:81?x HTTP/1.1\r\n\r\n", http_outcome::host,
       "GET", "", "t.me:81"},
      {"absolute-form https", "GET https://t.me HTTP/1.1\r\nHost: t.me\r\n\r\n", http_outcome::host, "GET",
       "t.me", "t.me"},
      {"CONNECT authority-form", "CONNECT t.me:443 HTTP/1.1\r\nHost: t.me:443\r\n\r\n", http_outcome::host,
       "CONNECT", "t.me:443", "t.me:443"},
      {"CONNECT to one name, Host another", "CONNECT t.me:443 HTTP/1.1\r\nHost: example.com\r\n\r\n",
       http_outcome::host, "CONNECT", "example.com", "t.me:443"},
      {"CONNECT without headers yet", "CONNECT t.me:443 HTTP/1.1\r\n", http_outcome::need_more, "CONNECT", "",
       "t.me:443"},
      {"absolute-form, then a malformed header: the target still names it",
       "GET http://t.me/ HTTP/1.1\r\nBad : x\r\n\r\n", http_outcome::host, "GET", "", "t.me"},
      {"Host, then a header block past 8 KiB: the Host still names it",
       "GET / HTTP/1.1\r\nHost: t.me\r\nX: " + std::string(9000, 'x'), http_outcome::host, "GET", "t.me"},
      {"SSDP M-SEARCH", "M-SEARCH * HTTP/1.1\r\nHOST: 239.255.255.250:1900\r\nMAN: \"ssdp:discover\"\r\n\r\n",
       http_outcome::host, "M-SEARCH", "239.255.255.250:1900"},
      {"PROPFIND", "PROPFIND /dav HTTP/1.1\r\nHost: dav.example\r\n\r\n", http_outcome::host, "PROPFIND",
       "dav.example"},
      {"incomplete Host line", "GET / HTTP/1.1\r\nHost: t.m", http_outcome::need_more, "GET", ""},
      {"incomplete request line", "GET /index.ht", http_outcome::need_more, "GET", ""},
      {"incomplete method", "GE", http_outcome::need_more, "", ""},
      {"empty", "", http_outcome::need_more, "", ""},
      {"space before colon", "GET / HTTP/1.1\r\nHost : t.me\r\n\r\n", http_outcome::malformed, "GET", ""},
      {"header without colon", "GET / HTTP/1.1\r\nHost t.me\r\n\r\n", http_outcome::malformed, "GET", ""},
      {"request line over 8 KiB", long_target, http_outcome::malformed, "GET", ""},
      {"header block over 8 KiB before Host", long_headers, http_outcome::malformed, "GET", ""},
      {"unterminated 9 KiB line", "GET /" + std::string(9000, 'a'), http_outcome::malformed, "GET", ""},
      {"HTTP/2 version", "GET / HTTP/2.0\r\nHost: t.me\r\n\r\n", http_outcome::not_http, "GET", ""},
      {"HTTP/0.9 request", "GET /\r\n", http_outcome::not_http, "GET", ""},
      {"double space", "GET  / HTTP/1.1\r\nHost: t.me\r\n\r\n", http_outcome::not_http, "GET", ""},
      {"lower-case method", "get / HTTP/1.1\r\nHost: t.me\r\n\r\n", http_outcome::not_http, "", ""},
      {"17-char method", "ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n", http_outcome::not_http, "", ""},
      {"2-char method", "GO / HTTP/1.1\r\n", http_outcome::not_http, "", ""},
      {"response, not request", "HTTP/1.1 200 OK\r\n\r\n", http_outcome::not_http, "", ""},
      {"TLS record bytes", binary, http_outcome::not_http, "", ""},
      {"NUL inside method", nul_method, http_outcome::not_http, "", ""},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string{r.description});
    http_request_info info;
    const http_outcome o = parse_http_request(as_bytes(r.input), info);
    CHECK(std::string{to_string(o)} == std::string{to_string(r.outcome)});
    CHECK(std::string{info.method} == std::string{r.method});
    CHECK(std::string{info.host} == std::string{r.host});
    CHECK(std::string{info.target} == std::string{r.target});
    CHECK(std::string{info.host2} == std::string{r.host2});
  }
}

TEST_CASE("http: split at every byte: need_more until the header block is complete") {
  const std::string requests[] = {
      "GET /a HTTP/1.1\r\nUser-Agent: curl\r\nHost: t.me\r\nAccept: */*\r\n\r\n",
      "M-SEARCH * HTTP/1.1\nHOST: 239.255.255.250:1900\nMX: 1\n\n",
  };
  for (const auto& req : requests) {
    for (std::size_t n = 0; n <= req.size(); ++n) {
      CAPTURE(n);
      http_request_info info;
      const http_outcome o = parse_http_request(as_bytes(std::string_view{req}.substr(0, n)), info);
      if (n < req.size()) {
        CHECK(o == http_outcome::need_more);
        CHECK(info.head_length == 0);
      } else {
        CHECK(info.head_length == req.size());
        CHECK(o == http_outcome::host);
        CHECK((info.host == "t.me" || info.host == "239.255.255.250:1900"));
      }
    }
  }
  // Without a Host, every prefix before the blank line waits and the blank line ends it.
  const std::string no_host = "GET / HTTP/1.0\r\nAccept: */*\r\n\r\n";
  for (std::size_t n = 0; n < no_host.size(); ++n) {
    http_request_info info;
    CHECK(parse_http_request(as_bytes(std::string_view{no_host}.substr(0, n)), info) == http_outcome::need_more);
  }
  http_request_info info;
  CHECK(parse_http_request(as_bytes(no_host), info) == http_outcome::no_host);
}

TEST_CASE("http: looks_like_http_request") {
  struct lrow {
    const char* input;
    bool expected;
  } rows[] = {
      {"GET / HTTP/1.1", true}, {"POST ", true},     {"M-SEARCH * HTTP/1.1", true}, {"NOTIFY * HTTP/1.1", true},
      {"SUBSCRIBE /x", true},   {"GET", false},      {"get / ", false},             {"GO / ", false},
      {"GET\t/", false},        {"HTTP/1.1 200", false}, {"", false},               {"ABCDEFGHIJKLMNOPQ ", false},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string{r.input});
    CHECK(looks_like_http_request(as_bytes(r.input)) == r.expected);
  }
}

TEST_CASE("http: real requests from captures") {
  // http.pcapng frame 4 and punycode-idn.pcap frame 8 (TCP payloads; tshark names the hosts).
  const row rows[] = {
      {"http.pcapng", "GET / HTTP/1.1\r\nHost: google.com\r\nUser-Agent: curl/7.68.0\r\nAccept: */*\r\n\r\n",
       http_outcome::host, "GET", "google.com"},
      {"punycode-idn.pcap", "GET / HTTP/1.1\r\nHost: www.love.xn--55qx5d\r\nUser-Agent: curl/7.77.0\r\nAccept: */*\r\n\r\n",
       http_outcome::host, "GET", "www.love.xn--55qx5d"},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string{r.description});
    http_request_info info;
    CHECK(parse_http_request(as_bytes(r.input), info) == r.outcome);
    CHECK(std::string{info.host} == std::string{r.host});
    CHECK(std::string{info.method} == std::string{r.method});
  }
}

TEST_CASE("http: authority_host strips the port, and only a port") {
  const std::pair<std::string_view, std::string_view> rows[] = {
      {"telegram.org:443", "telegram.org"},
      {"telegram.org:", "telegram.org"},
      {"telegram.org", "telegram.org"},
      {"[2001:db8::1]:8080", "[2001:db8::1]"},
      {"[2001:db8::1]", "[2001:db8::1]"},
      {"239.255.255.250:1900", "239.255.255.250"},
      {"t.me:44x", "t.me:44x"},          // not a port: left as sent (matches nothing)
      {"a:1:2", "a:1:2"},
      {"[2001:db8::1", "[2001:db8::1"},  // unclosed bracket
      {":80", ""},
      {"", ""},
  };
  for (const auto& [in, want] : rows) {
    CAPTURE(std::string{in});
    CHECK(std::string{authority_host(in)} == std::string{want});
  }
}

TEST_CASE("http: names() lists every distinct host a request routes by") {
  struct nrow {
    const char* description;
    std::string input;
    std::vector<std::string> names;
  } rows[] = {
      {"Host with port", "GET / HTTP/1.1\r\nHost: telegram.org:443\r\n\r\n", {"telegram.org"}},
      {"absolute-form and Host disagree", "GET http://telegram.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n",
       {"telegram.org", "example.org"}},
      {"absolute-form and Host agree up to case and port",
       "GET http://Telegram.org:80/ HTTP/1.1\r\nHost: telegram.org\r\n\r\n", {"Telegram.org"}},
      {"CONNECT target and Host", "CONNECT telegram.org:443 HTTP/1.1\r\nHost: example.org:443\r\n\r\n",
       {"telegram.org", "example.org"}},
      {"two Host headers", "GET / HTTP/1.1\r\nHost: example.org\r\nHost: t.me\r\n\r\n", {"example.org", "t.me"}},
      {"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", {}},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string{r.description});
    http_request_info info;
    REQUIRE(parse_http_request(as_bytes(r.input), info) == http_outcome::host);
    std::string_view out[3];
    const std::size_t n = info.names(out);
    std::vector<std::string> got(out, out + n);
    CHECK(got == r.names);
  }
}
