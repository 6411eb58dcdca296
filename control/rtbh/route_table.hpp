#pragma once
// The kernel side of sluice-rtbh behind a small interface: list our routes, add and remove them
// in batches. `netlink_route_table` is the rtnetlink implementation (libnl); tests use a fake.
//
// "Ours" means: in the configured table, with Sluice's route protocol number. Nothing here ever
// lists as ours, changes or deletes a route with another protocol or in another table (deletes
// carry table and protocol, which the kernel matches).
//
// Threads: one caller at a time (the enforcer serialises). Nothing throws except std::bad_alloc.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "control/rtbh/reconcile.hpp"

namespace sluice::control::rtbh {

// Sluice's route protocol number (rtm_protocol). 165 is unassigned in the kernel's
// include/uapi/linux/rtnetlink.h and in iproute2's rt_protos; `echo "165 sluice" >
// /etc/iproute2/rt_protos.d/sluice.conf` makes `ip route` print it by name.
inline constexpr std::uint8_t default_protocol = 165;
// Our own routing table, out of the way of main (254) and local (255); BIRD learns from it.
inline constexpr std::uint32_t default_table = 4242;

enum class route_kind : std::uint8_t { blackhole, unreachable };
[[nodiscard]] std::string_view to_string(route_kind k) noexcept;

struct route_table_config {
  std::uint32_t table = default_table;  // 1..0xffffffff except 253..255 (default/main/local)
  std::uint8_t protocol = default_protocol;
  route_kind kind = route_kind::blackhole;
};

struct list_result {
  bool ok = false;
  std::vector<found_route> routes;  // ours
  std::string error;
  int error_number = 0;  // errno of the failure (EPERM, ...), 0 when ok
};

struct batch_result {
  std::size_t done = 0;    // messages the kernel acknowledged
  std::size_t failed = 0;  // messages it refused
  std::string error;       // the first refusal: "add 10.0.0.0/8: Operation not permitted"
  int error_number = 0;    // errno of the first refusal

  [[nodiscard]] bool ok() const noexcept { return failed == 0 && error.empty(); }
};

class route_table {
 public:
  virtual ~route_table() = default;
  [[nodiscard]] virtual list_result list() = 0;
  // Each prefix as a route of the configured kind, table and protocol. A route already there
  // with another protocol is refused by the kernel (EEXIST) and left alone.
  [[nodiscard]] virtual batch_result add(std::span<const prefix> prefixes) = 0;
  // Our route for each prefix, whatever its kind; a prefix not there (ESRCH) counts as done.
  [[nodiscard]] virtual batch_result remove(std::span<const prefix> prefixes) = 0;
};

// rtnetlink through libnl-3: requests are pipelined (a window of messages in flight, each
// acknowledged), so 100,000 prefixes take about a second. nullptr and `error` when no netlink
// socket can be opened.
[[nodiscard]] std::unique_ptr<route_table> make_netlink_route_table(route_table_config config,
                                                                    std::string& error);

}  // namespace sluice::control::rtbh
