// TLS ClientHello reader: built hellos through 1-3 records and every truncation, the record
// walker's refusals, and real ClientHellos from ../shared/testdata/captures.
#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "dataplane/packet/tls.hpp"

using namespace sluice::packet;

namespace {

using buf = std::vector<std::uint8_t>;

void put16(buf& b, std::size_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 8));
  b.push_back(static_cast<std::uint8_t>(v));
}
void put24(buf& b, std::size_t v) {
  b.push_back(static_cast<std::uint8_t>(v >> 16));
  put16(b, v & 0xffff);
}
void append(buf& b, std::string_view s) { b.insert(b.end(), s.begin(), s.end()); }
void append(buf& b, const buf& s) { b.insert(b.end(), s.begin(), s.end()); }

struct ext {
  std::uint16_t type;
  buf data;
};

// server_name extension data with the given (type 0) host names.
buf sni_data(std::initializer_list<std::string_view> names) {
  buf list;
  for (auto n : names) {
    list.push_back(0);
    put16(list, n.size());
    append(list, n);
  }
  buf d;
  put16(d, list.size());
  append(d, list);
  return d;
}

buf alpn_data(std::initializer_list<std::string_view> protos) {
  buf list;
  for (auto p : protos) {
    list.push_back(static_cast<std::uint8_t>(p.size()));
    append(list, p);
  }
  buf d;
  put16(d, list.size());
  append(d, list);
  return d;
}

// A TLS 1.3-style ClientHello handshake message (type byte included). `exts` empty and
// `with_extensions` false gives a pre-extension hello.
buf build_hello(const std::vector<ext>& exts, bool with_extensions = true) {
  buf body;
  put16(body, 0x0303);
  for (int i = 0; i < 32; ++i) body.push_back(static_cast<std::uint8_t>(i * 7));  // random
  body.push_back(32);
  for (int i = 0; i < 32; ++i) body.push_back(static_cast<std::uint8_t>(0xa0 + i));
  put16(body, 6);  // GREASE, TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384
  put16(body, 0x2a2a);
  put16(body, 0x1301);
  put16(body, 0x1302);
  body.push_back(1);
  body.push_back(0);
  if (with_extensions) {
    buf block;
    for (const auto& e : exts) {
      put16(block, e.type);
      put16(block, e.data.size());
      append(block, e.data);
    }
    put16(body, block.size());
    append(body, block);
  }
  buf msg{1};
  put24(msg, body.size());
  append(msg, body);
  return msg;
}

// Wraps a handshake message into `n` records of near-equal size.
buf to_records(const buf& message, std::size_t n) {
  buf out;
  std::size_t pos = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const std::size_t len = (message.size() - pos) / (n - i);
    out.push_back(22);
    put16(out, i == 0 ? 0x0301 : 0x0303);
    put16(out, len);
    out.insert(out.end(), message.begin() + static_cast<std::ptrdiff_t>(pos),
               message.begin() + static_cast<std::ptrdiff_t>(pos + len));
    pos += len;
  }
  return out;
}

// Record header + fragment.
buf record(std::uint8_t type, const buf& fragment) {
  buf out{type, 3, 3};
  put16(out, fragment.size());
  append(out, fragment);
  return out;
}

// Built hellos that are typical of real clients: GREASE ext, key_share-ish filler, etc.
ext grease(std::uint16_t t) { return {t, {}}; }
ext filler(std::uint16_t t, std::size_t n) { return {t, buf(n, 0x11)}; }

struct hello_case {
  const char* description;
  buf message;
  tls_outcome outcome;
  std::string_view sni;
  std::string_view alpn;
  bool has_sni;
  bool has_ech;
  bool has_esni;
};

std::vector<hello_case> hello_cases() {
  const auto std_exts = [](std::vector<ext> mid) {
    std::vector<ext> v{grease(0x0a0a), filler(23, 0), filler(0xff01, 1)};
    v.insert(v.end(), mid.begin(), mid.end());
    v.push_back(filler(51, 38));  // key_share-sized
    v.push_back({0x1a1a, buf{0}});
    return v;
  };
  buf sni_bad_list = sni_data({"t.me"});
  sni_bad_list[1] += 1;  // list length says one byte more than the extension holds
  buf sni_short_list = sni_data({"t.me"});
  sni_short_list[1] -= 1;  // list length one short: entry overruns it
  buf sni_entry_over = sni_data({"t.me"});
  sni_entry_over[4] += 3;  // entry length past the list
  buf sni_other_type = sni_data({"t.me"});
  sni_other_type[2] = 1;  // an unknown name type only
  buf alpn_empty_proto = alpn_data({"h2", ""});
  buf sni_then_other{};
  {
    // an unknown-type entry then a host_name: the host_name is still found
    buf list{7};
    put16(list, 3);
    append(list, "abc");
    list.push_back(0);
    put16(list, 4);
    append(list, "t.me");
    put16(sni_then_other, list.size());
    append(sni_then_other, list);
  }

  return {
      {"SNI and ALPN", build_hello(std_exts({{0, sni_data({"web.telegram.org"})}, {16, alpn_data({"h2", "http/1.1"})}})),
       tls_outcome::client_hello, "web.telegram.org", "h2", true, false, false},
      {"no SNI", build_hello(std_exts({{16, alpn_data({"http/1.1"})}})), tls_outcome::client_hello, "",
       "http/1.1", false, false, false},
      {"no extensions at all (SSL 3.0 style)", build_hello({}, false), tls_outcome::client_hello, "", "",
       false, false, false},
      {"empty extension block", build_hello({}), tls_outcome::client_hello, "", "", false, false, false},
      {"ECH 0xfe0d with outer SNI", build_hello(std_exts({{0, sni_data({"cloudflare-ech.com"})}, filler(0xfe0d, 200)})),
       tls_outcome::client_hello, "cloudflare-ech.com", "", true, true, false},
      {"ESNI 0xffce without SNI", build_hello(std_exts({filler(0xffce, 100)})), tls_outcome::client_hello, "", "",
       false, false, true},
      {"uppercase SNI kept as sent", build_hello(std_exts({{0, sni_data({"T.ME"})}})), tls_outcome::client_hello,
       "T.ME", "", true, false, false},
      {"SNI with trailing dot kept as sent", build_hello(std_exts({{0, sni_data({"t.me."})}})),
       tls_outcome::client_hello, "t.me.", "", true, false, false},
      {"two host_name entries: first wins", build_hello(std_exts({{0, sni_data({"example.com", "t.me"})}})),
       tls_outcome::client_hello, "example.com", "", true, false, false},
      {"unknown name type before host_name", build_hello(std_exts({{0, sni_then_other}})),
       tls_outcome::client_hello, "t.me", "", true, false, false},
      {"only an unknown name type", build_hello(std_exts({{0, sni_other_type}})), tls_outcome::client_hello, "",
       "", false, false, false},
      {"SNI as the last extension", build_hello({grease(0x3a3a), {0, sni_data({"t.me"})}}),
       tls_outcome::client_hello, "t.me", "", true, false, false},
      {"zero-length host_name", build_hello(std_exts({{0, sni_data({""})}})), tls_outcome::malformed, "", "",
       false, false, false},
      {"empty server_name extension", build_hello(std_exts({{0, {}}})), tls_outcome::malformed, "", "", false,
       false, false},
      {"ServerNameList longer than extension", build_hello(std_exts({{0, sni_bad_list}})), tls_outcome::malformed,
       "", "", false, false, false},
      {"ServerNameList shorter than its entry", build_hello(std_exts({{0, sni_short_list}})),
       tls_outcome::malformed, "", "", false, false, false},
      {"host_name length past the list", build_hello(std_exts({{0, sni_entry_over}})), tls_outcome::malformed, "",
       "", false, false, false},
      {"duplicate server_name", build_hello(std_exts({{0, sni_data({"a.example"})}, {0, sni_data({"t.me"})}})),
       tls_outcome::malformed, "", "", false, false, false},
      {"duplicate GREASE extension", build_hello(std_exts({grease(0x0a0a)})), tls_outcome::malformed, "", "",
       false, false, false},
      {"empty ALPN protocol name", build_hello(std_exts({{16, alpn_empty_proto}})), tls_outcome::malformed, "", "",
       false, false, false},
  };
}

// Runs `stream` through the record walker, then the parser when a message was assembled.
struct full_result {
  tls_outcome records;
  tls_outcome hello = tls_outcome::need_more;
  client_hello_info info;
};
full_result run_stream(bytes stream) {
  static std::array<std::uint8_t, 16384> scratch;
  full_result r{};
  std::size_t len = 0;
  r.records = tls_handshake_from_records(stream, scratch, len);
  if (r.records == tls_outcome::client_hello) {
    r.hello = parse_client_hello(bytes{scratch.data(), len}, r.info);
  }
  return r;
}

// Payloads extracted with scapy from ../shared/testdata/captures (TCP payload, first packet
// carrying the ClientHello).
// tls_ech.pcapng frame 4, 584 bytes
constexpr std::uint8_t ech_record[] = {
    0x16, 0x03, 0x01, 0x02, 0x43, 0x01, 0x00, 0x02, 0x3f, 0x03, 0x03, 0x1d, 0x28, 0x66, 0x26, 0x1a,
    0x24, 0xcc, 0x0c, 0x15, 0xc6, 0xde, 0xba, 0x5b, 0x0e, 0x97, 0x1a, 0x19, 0xa2, 0x3b, 0x72, 0x52,
    0x4d, 0x3a, 0x1c, 0xa2, 0xac, 0xea, 0x56, 0xd0, 0x1f, 0xdb, 0xbe, 0x20, 0xe0, 0x9c, 0xa0, 0xae,
    0x22, 0x12, 0x3a, 0x16, 0x5f, 0x01, 0x00, 0xfa, 0xf2, 0x0d, 0xfb, 0x79, 0x2c, 0xf5, 0x18, 0xb9,
    0x40, 0x0a, 0x8b, 0xb5, 0x2e, 0xf8, 0x0b, 0x3c, 0x06, 0x05, 0x9c, 0xd9, 0x00, 0x20, 0xaa, 0xaa,
    0x13, 0x01, 0x13, 0x02, 0x13, 0x03, 0xc0, 0x2b, 0xc0, 0x2f, 0xc0, 0x2c, 0xc0, 0x30, 0xcc, 0xa9,
    0xcc, 0xa8, 0xc0, 0x13, 0xc0, 0x14, 0x00, 0x9c, 0x00, 0x9d, 0x00, 0x2f, 0x00, 0x35, 0x01, 0x00,
    0x01, 0xd6, 0x6a, 0x6a, 0x00, 0x00, 0x00, 0x33, 0x00, 0x2b, 0x00, 0x29, 0x1a, 0x1a, 0x00, 0x01,
    0x00, 0x00, 0x1d, 0x00, 0x20, 0x74, 0x49, 0x42, 0x88, 0xd7, 0xff, 0xc1, 0xfa, 0xa0, 0x46, 0x96,
    0x85, 0x56, 0xf6, 0x46, 0xb0, 0x24, 0xa8, 0x55, 0xfe, 0xed, 0x27, 0xc7, 0x93, 0xe8, 0x08, 0x54,
    0x13, 0xaa, 0x74, 0x11, 0x36, 0x00, 0x23, 0x00, 0x00, 0xff, 0x01, 0x00, 0x01, 0x00, 0x00, 0x2d,
    0x00, 0x02, 0x01, 0x01, 0x00, 0x1b, 0x00, 0x03, 0x02, 0x00, 0x02, 0x00, 0x0a, 0x00, 0x0a, 0x00,
    0x08, 0x1a, 0x1a, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18, 0x00, 0x17, 0x00, 0x00, 0x00, 0x05, 0x00,
    0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12, 0x00, 0x00, 0x00, 0x2b, 0x00, 0x07, 0x06, 0xda,
    0xda, 0x03, 0x04, 0x03, 0x03, 0x00, 0x0d, 0x00, 0x12, 0x00, 0x10, 0x04, 0x03, 0x08, 0x04, 0x04,
    0x01, 0x05, 0x03, 0x08, 0x05, 0x05, 0x01, 0x08, 0x06, 0x06, 0x01, 0x00, 0x10, 0x00, 0x0e, 0x00,
    0x0c, 0x02, 0x68, 0x32, 0x08, 0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x00, 0x00,
    0x25, 0x00, 0x23, 0x00, 0x00, 0x20, 0x70, 0x65, 0x72, 0x66, 0x6f, 0x72, 0x6d, 0x61, 0x6e, 0x63,
    0x65, 0x2e, 0x72, 0x61, 0x64, 0x61, 0x72, 0x2e, 0x63, 0x6c, 0x6f, 0x75, 0x64, 0x66, 0x6c, 0x61,
    0x72, 0x65, 0x2e, 0x63, 0x6f, 0x6d, 0xfe, 0x0d, 0x00, 0xfa, 0x00, 0x00, 0x01, 0x00, 0x01, 0xd8,
    0x00, 0x20, 0x95, 0x57, 0xc1, 0x00, 0xc7, 0x1b, 0xf7, 0x76, 0x92, 0x90, 0x56, 0xd0, 0x21, 0x59,
    0x1f, 0x65, 0x15, 0x00, 0x1d, 0xc1, 0xdf, 0x11, 0x25, 0xb9, 0x24, 0x08, 0xd9, 0x86, 0x81, 0xa5,
    0xa1, 0x67, 0x00, 0xd0, 0x0d, 0xf0, 0x97, 0x0d, 0x9f, 0x7c, 0xb4, 0x26, 0xc0, 0x59, 0xb1, 0xe0,
    0xfe, 0x95, 0xfd, 0x7c, 0x22, 0xf8, 0xa5, 0x44, 0x4d, 0x65, 0x32, 0x14, 0x96, 0xfa, 0x85, 0x78,
    0x1e, 0x4c, 0x5e, 0x31, 0x46, 0x5c, 0xc7, 0x03, 0xe3, 0x36, 0x8a, 0xdc, 0x8b, 0x46, 0xa6, 0xaa,
    0xb2, 0xd9, 0xd2, 0xbd, 0xee, 0x30, 0x04, 0xe5, 0xd5, 0xc0, 0x89, 0x8b, 0x03, 0x55, 0x31, 0x7f,
    0x32, 0x12, 0xd1, 0x60, 0xe1, 0xe8, 0x06, 0xaa, 0x45, 0xcc, 0x3e, 0x0a, 0x35, 0x15, 0x06, 0x07,
    0x18, 0xc9, 0x76, 0x02, 0x5a, 0xfd, 0x3f, 0x04, 0xb9, 0x6d, 0xbd, 0x03, 0x9a, 0x99, 0xf4, 0xa7,
    0xd9, 0x88, 0x21, 0xa9, 0xad, 0xaa, 0x37, 0x28, 0x29, 0xda, 0xb7, 0xbc, 0x99, 0x65, 0x95, 0x9a,
    0x5a, 0x8f, 0x4e, 0xe3, 0x65, 0x06, 0xcd, 0x1b, 0xab, 0xa0, 0x8b, 0xd2, 0x59, 0x7f, 0x46, 0x44,
    0x03, 0xdc, 0xfe, 0xed, 0x9a, 0x3c, 0x49, 0xf2, 0xb8, 0x2e, 0x53, 0xa5, 0xca, 0x8d, 0x09, 0xea,
    0x43, 0x15, 0x8b, 0x58, 0xc7, 0x87, 0x86, 0xa7, 0x2c, 0x6c, 0xfa, 0xbb, 0x99, 0x99, 0xfa, 0x31,
    0xaa, 0xae, 0x2a, 0x2f, 0x54, 0x14, 0x2f, 0x47, 0xbe, 0xfc, 0xf5, 0x42, 0xc8, 0x05, 0x30, 0x58,
    0x4e, 0x25, 0x83, 0xd6, 0x78, 0x32, 0x27, 0x00, 0xf6, 0x9c, 0xb2, 0x3b, 0xf6, 0xcc, 0xa0, 0x81,
    0x0c, 0x3d, 0xef, 0x3c, 0xa1, 0x64, 0xd3, 0xdf, 0xeb, 0x61, 0x7e, 0x7b, 0x64, 0xdb, 0xe7, 0x6e,
    0x64, 0x89, 0xc4, 0xda, 0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, 0x44, 0x69, 0x00, 0x05, 0x00, 0x03,
    0x02, 0x68, 0x32, 0xfa, 0xfa, 0x00, 0x01, 0x00,
};

// encrypted_sni.pcap frame 1, 716 bytes
constexpr std::uint8_t esni_record[] = {
    0x16, 0x03, 0x01, 0x02, 0xc7, 0x01, 0x00, 0x02, 0xc3, 0x03, 0x03, 0x93, 0xc0, 0xcf, 0x3a, 0x4c,
    0x47, 0x59, 0x69, 0x86, 0x71, 0xef, 0xb4, 0x22, 0x29, 0xe2, 0xda, 0x39, 0x4c, 0x88, 0xe8, 0x53,
    0xd2, 0xf8, 0x9d, 0xcb, 0xfb, 0x44, 0xb7, 0x30, 0x0d, 0xf5, 0x38, 0x20, 0xed, 0xad, 0x7c, 0xb6,
    0x02, 0x49, 0xa2, 0x0b, 0x91, 0x02, 0xf1, 0xa5, 0xc7, 0xf0, 0xd2, 0xac, 0xe5, 0x31, 0xb9, 0xa1,
    0xf4, 0xc6, 0xbe, 0x5b, 0x26, 0x21, 0x65, 0x1c, 0x4c, 0x59, 0x4e, 0x86, 0x00, 0x24, 0x13, 0x01,
    0x13, 0x03, 0x13, 0x02, 0xc0, 0x2b, 0xc0, 0x2f, 0xcc, 0xa9, 0xcc, 0xa8, 0xc0, 0x2c, 0xc0, 0x30,
    0xc0, 0x0a, 0xc0, 0x09, 0xc0, 0x13, 0xc0, 0x14, 0x00, 0x33, 0x00, 0x39, 0x00, 0x2f, 0x00, 0x35,
    0x00, 0x0a, 0x01, 0x00, 0x02, 0x56, 0x00, 0x17, 0x00, 0x00, 0xff, 0x01, 0x00, 0x01, 0x00, 0x00,
    0x0a, 0x00, 0x0e, 0x00, 0x0c, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x18, 0x00, 0x19, 0x01, 0x00, 0x01,
    0x01, 0x00, 0x0b, 0x00, 0x02, 0x01, 0x00, 0x00, 0x23, 0x00, 0x00, 0x00, 0x10, 0x00, 0x0e, 0x00,
    0x0c, 0x02, 0x68, 0x32, 0x08, 0x68, 0x74, 0x74, 0x70, 0x2f, 0x31, 0x2e, 0x31, 0x00, 0x05, 0x00,
    0x05, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x33, 0x00, 0x6b, 0x00, 0x69, 0x00, 0x1d, 0x00, 0x20,
    0xf4, 0x2f, 0x95, 0x5c, 0xb5, 0xf4, 0xa5, 0x40, 0x18, 0x72, 0xfc, 0x11, 0x32, 0x59, 0xb6, 0x05,
    0xf8, 0xcc, 0x14, 0xbf, 0x80, 0xd8, 0x76, 0xbe, 0xb5, 0xe1, 0xde, 0x62, 0x6f, 0x17, 0xb3, 0x30,
    0x00, 0x17, 0x00, 0x41, 0x04, 0xa8, 0x4f, 0xfb, 0x98, 0xff, 0x88, 0x8a, 0x8a, 0x50, 0xbb, 0x15,
    0x12, 0xfd, 0x71, 0x90, 0xb7, 0x60, 0x22, 0x8c, 0x70, 0x73, 0x30, 0x79, 0x11, 0x52, 0x9f, 0x4e,
    0xaf, 0xf4, 0x68, 0xb6, 0x88, 0x3a, 0xaa, 0x94, 0xc7, 0x6e, 0x79, 0x1a, 0x81, 0x88, 0x2b, 0x36,
    0x87, 0x19, 0xd6, 0x1e, 0x5a, 0xf8, 0x06, 0xd8, 0x54, 0xec, 0x72, 0x7b, 0x72, 0x9c, 0xe8, 0xcc,
    0x2a, 0x21, 0xfe, 0xd7, 0x13, 0x00, 0x2b, 0x00, 0x09, 0x08, 0x03, 0x04, 0x03, 0x03, 0x03, 0x02,
    0x03, 0x01, 0x00, 0x0d, 0x00, 0x18, 0x00, 0x16, 0x04, 0x03, 0x05, 0x03, 0x06, 0x03, 0x08, 0x04,
    0x08, 0x05, 0x08, 0x06, 0x04, 0x01, 0x05, 0x01, 0x06, 0x01, 0x02, 0x03, 0x02, 0x01, 0x00, 0x2d,
    0x00, 0x02, 0x01, 0x01, 0xff, 0xce, 0x01, 0x6e, 0x13, 0x01, 0x00, 0x1d, 0x00, 0x20, 0x28, 0x25,
    0xec, 0xbc, 0x77, 0xa2, 0x9d, 0x71, 0xc6, 0x92, 0x24, 0xed, 0xa5, 0x09, 0x8b, 0x76, 0xd2, 0x4c,
    0x34, 0x10, 0x46, 0x05, 0xca, 0x57, 0x55, 0x34, 0x4f, 0xdb, 0xfb, 0x05, 0x65, 0x2d, 0x00, 0x20,
    0x1f, 0x24, 0x12, 0xca, 0x65, 0x32, 0xa0, 0x16, 0x98, 0x36, 0xf1, 0x9b, 0x8c, 0xe2, 0x65, 0x3b,
    0x33, 0xdc, 0x5b, 0x8a, 0xfb, 0xca, 0x24, 0x5d, 0x4f, 0x11, 0x2b, 0x09, 0xbf, 0xaf, 0x52, 0xc8,
    0x01, 0x24, 0x96, 0x24, 0xcb, 0x3c, 0x4e, 0x23, 0x08, 0x27, 0xf7, 0x8c, 0xf5, 0xbf, 0x64, 0x0d,
    0x22, 0xde, 0xa3, 0x3f, 0xcc, 0x59, 0x8e, 0xa6, 0xa3, 0x2d, 0x93, 0x99, 0x05, 0x58, 0x6f, 0xbe,
    0x99, 0x7b, 0x9e, 0x68, 0x66, 0x1f, 0x89, 0x56, 0xd4, 0x89, 0x30, 0x72, 0xe1, 0x9d, 0xe2, 0x4c,
    0xd1, 0xfb, 0x88, 0xa9, 0xf7, 0x1f, 0xc4, 0xcc, 0x01, 0xba, 0xb5, 0xc9, 0x14, 0xfd, 0xf9, 0x6a,
    0x64, 0x7d, 0x67, 0x1b, 0x5e, 0x89, 0x85, 0x9b, 0xae, 0xea, 0xb1, 0x22, 0x21, 0x86, 0x88, 0x49,
    0x6d, 0xf4, 0xdf, 0x0c, 0x32, 0x8c, 0x3d, 0x5f, 0x94, 0x0b, 0x10, 0x9c, 0xeb, 0x2a, 0x27, 0x43,
    0xd5, 0xcb, 0xe3, 0x59, 0x42, 0x88, 0xa2, 0x29, 0xb8, 0xc7, 0xe2, 0xf8, 0x83, 0x03, 0xe3, 0xfe,
    0x1a, 0x26, 0xa8, 0x9e, 0x50, 0x01, 0xf2, 0xbd, 0x93, 0x68, 0x90, 0xfe, 0xf7, 0x8f, 0x06, 0xe0,
    0x5e, 0xcc, 0x06, 0x3a, 0x68, 0xbd, 0xb8, 0xc1, 0x8d, 0xfa, 0xc1, 0x14, 0xcf, 0x1f, 0xec, 0xdb,
    0x8b, 0xe1, 0xfc, 0x2f, 0xee, 0xcb, 0x23, 0x15, 0xd2, 0x79, 0x98, 0xd6, 0x82, 0xb1, 0x29, 0xfd,
    0x1e, 0x3e, 0xb5, 0xd7, 0x98, 0x5d, 0xcb, 0xdc, 0x45, 0x2a, 0x10, 0x82, 0xcc, 0xc0, 0x38, 0xe0,
    0xbf, 0x69, 0x57, 0x0f, 0xef, 0xac, 0x6b, 0xc6, 0xfb, 0x95, 0x1f, 0x89, 0xb6, 0x79, 0x2c, 0xad,
    0xa7, 0x64, 0x03, 0xc0, 0x2c, 0xeb, 0x5d, 0xce, 0x1c, 0xe6, 0xed, 0xdd, 0x16, 0xd5, 0xf7, 0xfb,
    0x6b, 0x85, 0xd2, 0xb9, 0x24, 0x85, 0x44, 0x8d, 0xe0, 0x08, 0x8e, 0x42, 0x1e, 0x83, 0xf1, 0xe2,
    0x8b, 0x26, 0x7f, 0xbe, 0x3b, 0x59, 0xae, 0x04, 0x96, 0xfb, 0x84, 0x52, 0x13, 0xc2, 0x71, 0xd4,
    0xc5, 0xac, 0x5e, 0x9e, 0x7e, 0x5f, 0x6a, 0x30, 0x72, 0x44, 0x53, 0x07, 0xfc, 0xce, 0xb7, 0x30,
    0x67, 0x10, 0x45, 0x99, 0x91, 0xc4, 0x0c, 0xc4, 0xdc, 0x1f, 0xc3, 0x25, 0x15, 0x4c, 0x79, 0x74,
    0xdd, 0x78, 0x03, 0x71, 0x39, 0x78, 0x05, 0x45, 0x6a, 0x19, 0xae, 0x23, 0xee, 0x88, 0x47, 0x5c,
    0x1d, 0xf0, 0x76, 0x97, 0xb6, 0x66, 0x00, 0x1c, 0x00, 0x02, 0x40, 0x01,
};

// 443-chrome.pcap frame 1 (first 12 bytes of the TCP payload)
constexpr std::uint8_t chrome_443_payload[] = {0x17, 0x03, 0x03, 0x05, 0x24, 0x1e, 0xd4, 0x2e, 0x46, 0x58, 0x4f, 0x7d};

}  // namespace

TEST_CASE("tls: to_string names every outcome") {
  CHECK(std::string_view{to_string(tls_outcome::client_hello)} == "client_hello");
  CHECK(std::string_view{to_string(tls_outcome::too_large)} == "too_large");
  CHECK(std::string_view{to_string(tls_outcome::count)} == "unknown");
}

TEST_CASE("tls: built ClientHellos, whole message") {
  for (const auto& c : hello_cases()) {
    CAPTURE(std::string{c.description});
    client_hello_info info;
    const tls_outcome o = parse_client_hello(c.message, info);
    CHECK(o == c.outcome);
    if (o != tls_outcome::client_hello) {
      CHECK(info.sni.empty());  // nothing seen before the fault leaks out
      CHECK_FALSE(info.has_sni);
      continue;
    }
    CHECK(info.sni == c.sni);
    CHECK(info.has_sni == c.has_sni);
    CHECK(info.alpn == c.alpn);
    CHECK(info.has_ech == c.has_ech);
    CHECK(info.has_esni == c.has_esni);
    CHECK(info.legacy_version == 0x0303);
  }
}

TEST_CASE("tls: every prefix of a message is need_more, never a name") {
  for (const auto& c : hello_cases()) {
    CAPTURE(std::string{c.description});
    for (std::size_t n = 0; n < c.message.size(); ++n) {
      CAPTURE(n);
      client_hello_info info;
      const tls_outcome o = parse_client_hello(bytes{c.message.data(), n}, info);
      CHECK(o == tls_outcome::need_more);
      CHECK(info.sni.empty());
    }
  }
}

TEST_CASE("tls: built hellos through 1, 2 and 3 records and every stream truncation") {
  for (const auto& c : hello_cases()) {
    for (std::size_t n_records : {1u, 2u, 3u}) {
      CAPTURE(std::string{c.description});
      CAPTURE(n_records);
      const buf stream = to_records(c.message, n_records);
      const full_result whole = run_stream(stream);
      REQUIRE(whole.records == tls_outcome::client_hello);
      CHECK(whole.hello == c.outcome);
      if (c.outcome == tls_outcome::client_hello) {
        CHECK(whole.info.sni == c.sni);
        CHECK(whole.info.alpn == c.alpn);
        CHECK(whole.info.has_ech == c.has_ech);
        CHECK(whole.info.has_esni == c.has_esni);
      }
      for (std::size_t n = 0; n < stream.size(); ++n) {
        const full_result r = run_stream(bytes{stream.data(), n});
        if (r.records != tls_outcome::need_more) {
          FAIL_CHECK("prefix ", n, " of ", stream.size(), " gave ", std::string{to_string(r.records)});
        }
      }
    }
  }
}

TEST_CASE("tls: trailing bytes after the message are ignored by the record walker") {
  const buf msg = build_hello({{0, sni_data({"t.me"})}});
  buf stream = to_records(msg, 1);
  // a second handshake message in the same record, then application data
  buf more = to_records(build_hello({{0, sni_data({"other.example"})}}), 1);
  append(stream, more);
  append(stream, record(23, buf(10, 0)));
  const full_result r = run_stream(stream);
  REQUIRE(r.records == tls_outcome::client_hello);
  REQUIRE(r.hello == tls_outcome::client_hello);
  CHECK(r.info.sni == "t.me");
}

TEST_CASE("tls: record walker refusals") {
  const buf msg = build_hello({{0, sni_data({"t.me"})}});
  const buf two = to_records(msg, 2);
  const std::size_t first_record = 5 + msg.size() / 2;

  buf ccs_first = record(20, buf{1});
  append(ccs_first, to_records(msg, 1));

  buf ccs_between(two.begin(), two.begin() + static_cast<std::ptrdiff_t>(first_record));
  append(ccs_between, record(20, buf{1}));

  buf alert_partial(two.begin(), two.begin() + static_cast<std::ptrdiff_t>(first_record));
  alert_partial.push_back(21);  // only the type byte of the next record: already wrong

  buf bad_version_next(two.begin(), two.begin() + static_cast<std::ptrdiff_t>(first_record));
  append(bad_version_next, buf{22, 0x7f});

  buf zero_record = record(22, {});
  append(zero_record, to_records(msg, 1));

  buf huge_record{22, 3, 1};
  put16(huge_record, (1u << 14) + 257);
  huge_record.resize(huge_record.size() + 100, 0);

  buf big_message{22, 3, 1, 0x40, 0x00, 1};
  put24(big_message, 40000);  // 40 KB ClientHello announced
  big_message.resize(big_message.size() + 100, 0);

  struct row {
    const char* description;
    buf stream;
    tls_outcome outcome;
  } rows[] = {
      {"empty stream", {}, tls_outcome::need_more},
      {"one byte 0x16", {22}, tls_outcome::need_more},
      {"HTTP request", buf{'G', 'E', 'T', ' ', '/', ' '}, tls_outcome::not_tls},
      {"SSL 2 style", buf{0x80, 0x2e, 0x01, 0x03, 0x01}, tls_outcome::not_tls},
      {"version major 2", buf{22, 2, 0, 0, 10}, tls_outcome::not_tls},
      {"version 3.5", buf{22, 3, 5, 0, 10}, tls_outcome::not_tls},
      {"ChangeCipherSpec first", ccs_first, tls_outcome::not_tls},
      {"ChangeCipherSpec between records", ccs_between, tls_outcome::malformed},
      {"alert type byte after first record", alert_partial, tls_outcome::malformed},
      {"bad version in next record header", bad_version_next, tls_outcome::malformed},
      {"zero-length handshake record", zero_record, tls_outcome::not_tls},
      {"record longer than 2^14+256", huge_record, tls_outcome::malformed},
      {"message larger than scratch", big_message, tls_outcome::too_large},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string{r.description});
    CHECK(run_stream(r.stream).records == r.outcome);
  }

  // A zero-length record after the first is malformed too (first one fails looks_like).
  buf zero_second(two.begin(), two.begin() + static_cast<std::ptrdiff_t>(first_record));
  append(zero_second, record(22, {}));
  CHECK(run_stream(zero_second).records == tls_outcome::malformed);

  // Scratch too small for a normal hello, and too small for the header itself.
  std::array<std::uint8_t, 64> small{};
  std::array<std::uint8_t, 3> tiny{};
  const buf one = to_records(msg, 1);
  std::size_t len = 99;
  CHECK(tls_handshake_from_records(one, small, len) == tls_outcome::too_large);
  CHECK(len == 0);
  CHECK(tls_handshake_from_records(one, tiny, len) == tls_outcome::too_large);
  // Exactly fitting scratch is enough.
  std::vector<std::uint8_t> exact(msg.size());
  CHECK(tls_handshake_from_records(one, exact, len) == tls_outcome::client_hello);
  CHECK(len == msg.size());
}

TEST_CASE("tls: parse_client_hello refusals") {
  buf server_hello = build_hello({{0, sni_data({"t.me"})}});
  server_hello[0] = 2;
  buf long_session = build_hello({});
  long_session[4 + 2 + 32] = 33;
  buf odd_suites = build_hello({});
  odd_suites[4 + 2 + 32 + 1 + 32 + 1] = 5;
  buf no_compression = build_hello({});
  no_compression[4 + 2 + 32 + 1 + 32 + 2 + 6] = 0;
  buf trailing = build_hello({{0, sni_data({"t.me"})}});
  trailing.push_back(0);  // body one byte longer than the extension block says
  trailing[3] += 1;
  buf one_byte_ext_len = build_hello({}, false);
  one_byte_ext_len.push_back(0);
  one_byte_ext_len[3] += 1;
  buf ext_overrun = build_hello({{0, sni_data({"t.me"})}});
  ext_overrun[ext_overrun.size() - sni_data({"t.me"}).size() - 1] += 1;  // ext length + 1

  struct row {
    const char* description;
    buf message;
    tls_outcome outcome;
  } rows[] = {
      {"ServerHello type", server_hello, tls_outcome::not_client_hello},
      {"type only", buf{2}, tls_outcome::not_client_hello},
      {"session id 33 bytes", long_session, tls_outcome::malformed},
      {"odd cipher suites length", odd_suites, tls_outcome::malformed},
      {"no compression methods", no_compression, tls_outcome::malformed},
      {"bytes after the extension block", trailing, tls_outcome::malformed},
      {"a single byte where the block length goes", one_byte_ext_len, tls_outcome::malformed},
      {"extension length past its block", ext_overrun, tls_outcome::malformed},
      {"header only, zero body", buf{1, 0, 0, 0}, tls_outcome::malformed},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string{r.description});
    client_hello_info info;
    CHECK(parse_client_hello(r.message, info) == r.outcome);
    CHECK(info.sni.empty());
  }
}

TEST_CASE("tls: looks_like_tls_handshake") {
  struct row {
    const char* description;
    buf prefix;
    bool expected;
  } rows[] = {
      {"TLS 1.0 record header", {22, 3, 1, 2, 0}, true},
      {"SSL 3.0 record header", {22, 3, 0, 0, 50}, true},
      {"version 3.4", {22, 3, 4, 0, 50}, true},
      {"largest record", {22, 3, 3, 0x48, 0x00}, true},
      {"record too long", {22, 3, 3, 0x48, 0x01}, false},
      {"zero length", {22, 3, 3, 0, 0}, false},
      {"application data", {23, 3, 3, 0, 50}, false},
      {"version 3.5", {22, 3, 5, 0, 50}, false},
      {"empty", {}, false},
      {"partial but consistent", {22, 3}, true},
      {"partial, wrong major", {22, 1}, false},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string{r.description});
    CHECK(looks_like_tls_handshake(r.prefix) == r.expected);
  }
}

TEST_CASE("tls: real ClientHellos from captures") {
  struct row {
    const char* description;
    bytes record;
    std::string_view sni;
    std::string_view alpn;
    bool has_ech;
    bool has_esni;
  } rows[] = {
      {"tls_ech.pcapng: Firefox ECH to Cloudflare", ech_record, "performance.radar.cloudflare.com", "h2", true,
       false},
      {"encrypted_sni.pcap: draft ESNI, no SNI", esni_record, "", "h2", false, true},
  };
  for (const auto& r : rows) {
    CAPTURE(std::string{r.description});
    const buf stream(r.record.begin(), r.record.end());
    const full_result whole = run_stream(stream);
    REQUIRE(whole.records == tls_outcome::client_hello);
    REQUIRE(whole.hello == tls_outcome::client_hello);
    CHECK(whole.info.sni == r.sni);
    CHECK(whole.info.has_sni == !r.sni.empty());
    CHECK(whole.info.alpn == r.alpn);
    CHECK(whole.info.has_ech == r.has_ech);
    CHECK(whole.info.has_esni == r.has_esni);

    // Re-record the message as two records split at every point: same answer each time.
    const buf message(stream.begin() + 5, stream.end());
    for (std::size_t split = 1; split < message.size(); ++split) {
      buf two = record(22, buf(message.begin(), message.begin() + static_cast<std::ptrdiff_t>(split)));
      append(two, record(22, buf(message.begin() + static_cast<std::ptrdiff_t>(split), message.end())));
      const full_result r2 = run_stream(two);
      if (r2.records != tls_outcome::client_hello || r2.hello != tls_outcome::client_hello ||
          r2.info.sni != r.sni) {
        FAIL_CHECK("split at ", split, " gave ", std::string{to_string(r2.records)}, "/", std::string{to_string(r2.hello)});
      }
    }
    // Every TCP-level truncation waits for more.
    for (std::size_t n = 0; n < stream.size(); ++n) {
      if (run_stream(bytes{stream.data(), n}).records != tls_outcome::need_more) {
        FAIL_CHECK("prefix ", n, " was not need_more");
      }
    }
  }
}

TEST_CASE("tls: 443-chrome.pcap holds server application data, not a ClientHello") {
  // Despite its name the capture's only packet is a server->client 0x17 record (tshark agrees).
  CHECK_FALSE(looks_like_tls_handshake(chrome_443_payload));
  std::array<std::uint8_t, 1024> scratch{};
  std::size_t len = 0;
  CHECK(tls_handshake_from_records(chrome_443_payload, scratch, len) == tls_outcome::not_tls);
}
