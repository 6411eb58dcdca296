// libFuzzer target for the enforcement answers: the input is parsed as a frame and, when it is a
// TCP segment, both resets and an HTTP notice are built into a fixed buffer; when it is UDP, the
// DNS answer. Every answer must re-parse as ok TCP (UDP) with a correct checksum, stay inside
// the buffer, and go the right way; a DNS answer is never longer than the query. The first input
// bytes also pick the notice's texts so escaping and truncation are exercised.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "dataplane/engine/response.hpp"
#include "dataplane/packet/frame.hpp"

namespace {

namespace pk = sluice::packet;
namespace en = sluice::engine;

void check(std::size_t n, const std::uint8_t* out, std::size_t room, const pk::frame_info& orig,
           bool reverse, std::size_t max_payload) {
  if (n == 0) return;
  if (n > room) std::abort();
  const pk::bytes answer{out, n};
  const pk::frame_info a = pk::parse_frame(answer);
  if (a.outcome != pk::frame_outcome::ok || a.l4_proto != 6) std::abort();
  if (!pk::l4_checksum_ok(answer, a)) std::abort();
  if (std::size_t{a.l3_offset} + a.l3_length != n) std::abort();
  if (a.payload_length > max_payload) std::abort();
  if (a.src != (reverse ? orig.dst : orig.src) || a.dst != (reverse ? orig.src : orig.dst)) {
    std::abort();
  }
  if (a.src_port != (reverse ? orig.dst_port : orig.src_port)) std::abort();
  if (a.ttl < en::response_ttl_min || a.ttl > en::response_ttl_max) std::abort();
  if (!(a.tcp_flags & (pk::tcp_rst | pk::tcp_fin))) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Layout: [legal_len][name_len][legal][name][frame]; short inputs are all frame.
  std::string_view legal = "Order 1";
  std::string_view name = "t.me";
  pk::bytes frame{data, size};
  if (size >= 2) {
    const std::size_t ll = data[0] * 8u;  // up to 2 KiB, past the notice's limit
    const std::size_t nl = data[1] * 4u;
    if (2 + ll + nl <= size) {
      legal = {reinterpret_cast<const char*>(data + 2), ll};
      name = {reinterpret_cast<const char*>(data + 2 + ll), nl};
      frame = frame.subspan(2 + ll + nl);
    }
  }
  const pk::frame_info fi = pk::parse_frame(frame);
  if (fi.outcome != pk::frame_outcome::ok) return 0;
  static std::uint8_t out[2048];
  en::response_entropy e{size};
  if (fi.l4_proto == 17) {
    const std::size_t n = en::build_dns_answer(frame, fi, en::dns_rcode::nxdomain, e, out);
    if (n == 0) return 0;
    if (n > sizeof out || n > frame.size()) std::abort();  // never more than the query
    const pk::bytes answer{out, n};
    const pk::frame_info a = pk::parse_frame(answer);
    if (a.outcome != pk::frame_outcome::ok || a.l4_proto != 17) std::abort();
    if (!pk::l4_checksum_ok(answer, a)) std::abort();
    if (a.src != fi.dst || a.dst != fi.src || a.src_port != fi.dst_port) std::abort();
    if (a.payload_length > fi.payload_length || a.payload_length < 12) std::abort();
    if ((out[a.payload_offset + 2] & 0x80) == 0) std::abort();  // QR: a response
    return 0;
  }
  if (fi.l4_proto != 6) return 0;

  check(en::build_tcp_reset(frame, fi, en::reset_target::to_sender, e, out), out, sizeof out, fi,
        true, 0);
  check(en::build_tcp_reset(frame, fi, en::reset_target::to_receiver, e, out), out, sizeof out, fi,
        false, 0);
  // A buffer just too small must be refused, not overrun (ASan sees the bound of `small`).
  std::uint8_t small[80];
  check(en::build_tcp_reset(frame, fi, en::reset_target::to_sender, e, small), small, sizeof small,
        fi, true, 0);
  check(en::build_http_notice(frame, fi, legal, name, e, out, "https://registry.example/1"), out,
        sizeof out, fi, true, en::notice_max_payload);
  return 0;
}
