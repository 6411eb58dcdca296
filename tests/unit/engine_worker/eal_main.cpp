// doctest main for sluice_unit_engine_worker: workers need an EAL (mempools, rte_hash, rte_fib,
// net_ring ports). No hugepages, no PCI, no shared config: runs unprivileged.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>
#include <rte_eal.h>

#include <cstdio>
#include <string>

#include "dataplane/match/offline_eal.hpp"

int main(int argc, char** argv) {
  std::string error;
  if (!sluice::match::init_offline_eal("sluice_unit_engine_worker", 1024, error)) {
    std::fprintf(stderr, "rte_eal_init: %s\n", error.c_str());
    return 1;
  }
  doctest::Context context;
  context.applyCommandLine(argc, argv);
  const int rc = context.run();
  rte_eal_cleanup();
  return rc;
}
