#pragma once
// Protected ranges and names (issue 8): address space and domains an operator must not block by
// accident (a CDN shared with the target, a bank, a government service). A directive whose
// targets overlap one is shown to its approvers with each overlap spelled out. Pure: no I/O.

#include <string>
#include <vector>

#include "control/directive/directive.hpp"
#include "control/fleet/compile.hpp"

namespace sluice::control::impact {

struct protected_entry {
  std::string name;                   // shown in messages; non-empty, unique in the set
  std::vector<std::string> prefixes;  // "149.154.167.0/24", "2001:db8::/32"
  std::vector<std::string> domains;   // "drive.google.com", "*.bank.example"
};

struct protected_set {
  std::vector<protected_entry> entries;
};

// True when every entry has a unique non-empty name and at least one prefix or domain, every
// prefix is valid (fleet::canonical_prefix) without host bits set, and every domain passes the
// rule normaliser (match::normalize_rule_name). Otherwise false with `error` naming the entry
// and item ("protected 'cdn-x': invalid prefix '10.0.0.1/8'"). Never throws (but bad_alloc).
[[nodiscard]] bool validate_protected(const protected_set& p, std::string& error);

struct overlap {
  std::string target;   // the directive's entry, canonical ("149.154.160.0/20", "google.com")
  std::string entry;    // protected_entry::name
  std::string item;     // the protected prefix or domain, canonical
  std::string message;  // "target 149.154.160.0/20 (app telegram) overlaps protected range
                        // 'cdn-x' (149.154.167.0/24)"
};

// Every (target, protected item) pair that overlaps. Prefixes overlap when their address ranges
// intersect (one contains the other; IPv4 never overlaps IPv6). Domains overlap when one's base
// (without "*.") equals the other's or is a parent of it at a label boundary ("google.com" and
// "drive.google.com" do; "t.co" and "microsoft.com" do not). Apps are expanded through `apps`
// (a profile missing there contributes nothing) and the message names the app. Order: the
// directive's apps (each app's prefixes then domains), then its own prefixes, then its own
// domains; within a target, protected entries and items in their order. A pair is reported once
// (the first source that names the target). Invalid protected items are skipped (validate first).
[[nodiscard]] std::vector<overlap> find_overlaps(const directive::directive& d,
                                                 const fleet::app_table& apps,
                                                 const protected_set& p);

}  // namespace sluice::control::impact
