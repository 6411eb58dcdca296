// match_snapshot_scope: the S of "sluice-snapshot revision=N scope=S" against a node's labels.

#include <doctest/doctest.h>

#include <string>

#include "control/agent/agent.hpp"

namespace agent = sluice::control::agent;

TEST_CASE("match_snapshot_scope: table") {
  using m = agent::scope_match;
  const agent::label_map site_a{{"site", "a"}, {"region", "north"}, {"group", "canary"}};
  const agent::label_map site_c{{"site", "c"}, {"region", "south"}};
  const agent::label_map no_site{{"region", "north"}};
  struct row {
    const char* desc;
    const char* scope;
    const agent::label_map& labels;
    m expected;
    const char* detail_part;
  };
  const row rows[] = {
      {"all", "all", site_a, m::in, ""},
      {"all, no labels", "all", no_site, m::in, ""},
      {"site listed", "+site:a|b", site_a, m::in, ""},
      {"site not listed", "+site:a|b", site_c, m::out, "+site:a|b"},
      {"no site label", "+site:a|b", no_site, m::out, "+site:a|b"},
      {"negated, site listed", "!site:a|b", site_a, m::out, "!site:a|b"},
      {"negated, site not listed", "!site:a|b", site_c, m::in, ""},
      {"negated, no site label", "!site:a", no_site, m::in, ""},
      {"label part", "+region=north", site_a, m::in, ""},
      {"label part, other value", "+region=north", site_c, m::out, "+region=north"},
      {"label part, label absent", "+group=canary", no_site, m::out, "+group=canary"},
      {"site and labels", "+site:a&region=north&group=canary", site_a, m::in, ""},
      {"site and a label it lacks", "+site:c&group=canary", site_c, m::out, "+site:c&group=canary"},
      {"site label as a part", "+site=a", site_a, m::in, ""},
      {"in one, not the other", "+region=north,!group=canary", site_a, m::out, "!group=canary"},
      {"in one, not the other (no canary)", "+region=north,!group=canary", no_site, m::in, ""},
      {"first failing term named", "+site:c,+region=east", site_a, m::out, "+site:c"},
      {"every term must hold", "+site:a,+region=south", site_a, m::out, "+region=south"},
      {"empty", "", site_a, m::malformed, "empty scope"},
      {"empty term", "+site:a,", site_a, m::malformed, "empty term"},
      {"empty term first", ",+site:a", site_a, m::malformed, "empty term"},
      {"missing sign", "site:a", site_a, m::malformed, "does not start with + or !"},
      {"all inside a list", "all,+site:a", site_a, m::malformed, "does not start with + or !"},
      {"sign alone", "+", site_a, m::malformed, "names no scope"},
      {"empty site list", "+site:", site_a, m::malformed, "empty site list"},
      {"empty site name", "+site:a||b", site_a, m::malformed, "site '' is not"},
      {"site: not first", "+region=north&site:a", site_a, m::malformed, "must be the first part"},
      {"empty part", "+site:a&&region=north", site_a, m::malformed, "empty part"},
      {"trailing &", "+region=north&", site_a, m::malformed, "empty part"},
      {"bad char in a value", "+region=no rth", site_a, m::malformed, "neither site:A|B nor key=value"},
      {"bad char in a site", "+site:a/b", site_a, m::malformed, "site 'a/b' is not"},
      {"no value", "+region=", site_a, m::malformed, "neither"},
      {"no key", "+=north", site_a, m::malformed, "neither"},
      {"bare word", "+north", site_a, m::malformed, "neither"},
      {"other prefix", "+region:north", site_a, m::malformed, "neither"},
      {"malformed after a failing term", "+site:c,+", site_a, m::malformed, "names no scope"},
  };
  for (const row& r : rows) {
    CAPTURE(r.desc);
    const agent::scope_result got = agent::match_snapshot_scope(r.scope, r.labels);
    CHECK(got.match == r.expected);
    CHECK_MESSAGE(got.detail.find(r.detail_part) != std::string::npos, got.detail);
    if (r.expected == m::in) CHECK(got.detail.empty());
  }
}
