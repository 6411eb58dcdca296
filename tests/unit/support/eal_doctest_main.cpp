// doctest main for the test programs that need an EAL (rte_fib prefix sets, mempools, rte_hash,
// net_ring ports): no hugepages, no PCI, no shared config, so they run unprivileged.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <rte_eal.h>

#include <cstdio>
#include <string>

#include "dataplane/match/offline_eal.hpp"

int main(int argc, char** argv) {
  std::string error;
  if (!sluice::match::init_offline_eal(argv[0], 1024, error)) {
    std::fprintf(stderr, "rte_eal_init: %s\n", error.c_str());
    return 1;
  }
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  const int rc = context.run();
  rte_eal_cleanup();
  return rc;
}
