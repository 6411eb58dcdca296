#pragma once
// Names of the node protocol shared by both ends: the agent (control/agent) and the
// controller's API (control/api). What they carry: control/agent/agent.hpp, "Reports carried
// on the long poll", and control/README.md, "Node protocol".

#include <string_view>

namespace sluice::control {

// Request header of a snapshot poll: the status report it carries.
inline constexpr std::string_view status_header_name = "X-Sluice-Status";
// Answer header of a snapshot poll, "yes": this controller takes reports on polls (and took the
// one the poll carried, if any).
inline constexpr std::string_view status_carry_header_name = "X-Sluice-Status-Carry";

}  // namespace sluice::control
