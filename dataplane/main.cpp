// sluice-dataplane [EAL options] -- [options]: see dataplane/README.md.

#include <cstring>
#include <vector>

#include "dataplane/engine/app.hpp"

int main(int argc, char** argv) {
  // Our options are parsed and validated before the EAL starts, so a typo costs no device.
  int split = argc;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--") == 0) {
      split = i;
      break;
    }
  }
  std::vector<char*> ours{argv[0]};
  for (int i = split + 1; i < argc; ++i) ours.push_back(argv[i]);
  sluice::engine::app_options opts;
  const int rc = sluice::engine::parse_app_options(static_cast<int>(ours.size()), ours.data(), opts);
  if (rc >= 0) return rc;

  std::vector<char*> eal(argv, argv + split);
  return sluice::engine::run_app(std::move(eal), opts);
}
