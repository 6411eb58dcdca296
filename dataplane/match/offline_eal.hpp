#pragma once
// Starts a DPDK EAL that only provides memory — no hugepages, no devices, no shared config — for
// the programs that need rte_fib but not ports: unit tests, benchmarks and offline tools. Runs
// unprivileged. Call once, from the main thread, before compiling a policy with prefixes.

#include <cstddef>
#include <string>

namespace sluice::match {

// `memory_mb` bounds the EAL's heap (the IPv4 DIR24-8 table alone takes 64 MiB). Returns false
// with rte_strerror's text in `error` when the EAL refuses to start.
//
// `hugepages`: back the heap with the machine's reserved 2 MiB hugepages instead (in memory:
// no hugetlbfs mount or files needed; root, and `memory_mb` of them reserved in
// /proc/sys/vm/nr_hugepages), for benchmarks that show what 4 KiB pages cost.
[[nodiscard]] bool init_offline_eal(const char* program, std::size_t memory_mb, std::string& error,
                                    bool hugepages = false);

}  // namespace sluice::match
