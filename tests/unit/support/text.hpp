#pragma once
// Small text helpers for tests that read TSV files (ground truth, manifests).

#include <algorithm>
#include <cctype>
#include <sstream>
#include <string>
#include <vector>

namespace sluice::test {

inline std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in(s);
  while (std::getline(in, item, sep)) out.push_back(item);
  return out;
}

inline std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace sluice::test
