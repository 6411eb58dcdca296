#include "dataplane/match/offline_eal.hpp"

#include <rte_eal.h>
#include <rte_errno.h>

#include <vector>

namespace sluice::match {

bool init_offline_eal(const char* program, std::size_t memory_mb, std::string& error,
                      bool hugepages) {
  // --in-memory would be implied, but 22.11 refuses it together with --no-huge.
  std::vector<std::string> args = {program, hugepages ? "--in-memory" : "--no-huge",
                                   "--no-pci", "--no-shconf",
                                   "-m", std::to_string(memory_mb), "-l", "0",
                                   "--log-level=error", "--no-telemetry"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  // rte_eal_init may permute argv; it keeps pointers into `args`, which outlive the call only
  // as long as needed (the EAL copies what it keeps).
  if (rte_eal_init(static_cast<int>(args.size()), argv.data()) < 0) {
    error = rte_strerror(rte_errno);
    return false;
  }
  return true;
}

}  // namespace sluice::match
