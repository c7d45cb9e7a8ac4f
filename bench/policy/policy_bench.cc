// CompiledPolicySet::Capabilities for one policy of 100 rules, beside the
// floor it is judged against: an absl::flat_hash_map<std::string, uint16_t>
// lookup of the same paths (what an exact-path-only ACL would cost).
//
// The 100 rules mix the three kinds the way a real policy does: 40 exact
// paths, 40 prefix globs (at several depths, so several prefix lengths),
// 20 '+' patterns. The paths cycle over 64 lookups that hit each kind, and
// one that matches nothing.
#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "benchmark/benchmark.h"
#include "lib/policy/policy.h"
#include "lib/policy/policy_set.h"

namespace strongbox::policy {
namespace {

std::string HundredRuleDocument() {
  std::vector<std::string> rules;
  auto add = [&](const std::string& pattern, const char* caps) {
    rules.push_back(
        absl::StrCat("\"", pattern, "\":{\"capabilities\":[", caps, "]}"));
  };
  for (int i = 0; i < 40; ++i) {
    add(absl::StrCat("apps/app", i, "/config"), "\"read\"");
  }
  for (int i = 0; i < 40; ++i) {
    switch (i % 4) {
      case 0:
        add(absl::StrCat("team", i, "/*"), "\"read\",\"list\"");
        break;
      case 1:
        add(absl::StrCat("apps/app", i, "/*"), "\"read\",\"update\"");
        break;
      case 2:
        add(absl::StrCat("apps/app", i, "/db/*"), "\"deny\"");
        break;
      default:
        add(absl::StrCat("shared/env", i, "/keys/*"), "\"read\"");
    }
  }
  for (int i = 0; i < 20; ++i) {
    add(absl::StrCat("svc/+/env", i, "/creds"), "\"read\"");
  }
  return absl::StrCat("{\"path\":{", absl::StrJoin(rules, ","), "}}");
}

std::vector<std::string> Paths() {
  std::vector<std::string> paths;
  for (int i = 0; i < 64; ++i) {
    switch (i % 5) {
      case 0:
        paths.push_back(absl::StrCat("apps/app", i % 40, "/config"));
        break;
      case 1:
        paths.push_back(absl::StrCat("team", (i % 10) * 4, "/x/y"));
        break;
      case 2:
        paths.push_back(absl::StrCat("apps/app", (i % 10) * 4 + 2, "/db/pw"));
        break;
      case 3:
        paths.push_back(absl::StrCat("svc/api/env", i % 20, "/creds"));
        break;
      default:
        paths.push_back(absl::StrCat("nowhere/", i));
    }
  }
  return paths;
}

void BM_PolicyEval100Rules(benchmark::State& state) {
  const Policy policy = *ParsePolicy("bench", HundredRuleDocument());
  const Policy* ptr = &policy;
  const CompiledPolicySet set = CompiledPolicySet::Compile({&ptr, 1});
  if (set.rule_count() != 100) state.SkipWithError("expected 100 rules");
  const std::vector<std::string> paths = Paths();
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(set.Capabilities(paths[i]));
    i = (i + 1) & 63;
  }
}
BENCHMARK(BM_PolicyEval100Rules);

// The floor: one hash lookup per path, same paths, 100 entries.
void BM_FloorFlatHashMapLookup(benchmark::State& state) {
  absl::flat_hash_map<std::string, uint16_t> map;
  const std::vector<std::string> paths = Paths();
  for (int i = 0; i < 100; ++i) map[absl::StrCat("apps/app", i, "/config")] = 1;
  size_t i = 0;
  for (auto _ : state) {
    auto it = map.find(paths[i]);
    benchmark::DoNotOptimize(it == map.end() ? uint16_t{0} : it->second);
    i = (i + 1) & 63;
  }
}
BENCHMARK(BM_FloorFlatHashMapLookup);

void BM_PolicyCompile100Rules(benchmark::State& state) {
  const Policy policy = *ParsePolicy("bench", HundredRuleDocument());
  const Policy* ptr = &policy;
  for (auto _ : state) {
    benchmark::DoNotOptimize(CompiledPolicySet::Compile({&ptr, 1}));
  }
}
BENCHMARK(BM_PolicyCompile100Rules);

void BM_PolicyParse100Rules(benchmark::State& state) {
  const std::string doc = HundredRuleDocument();
  for (auto _ : state) benchmark::DoNotOptimize(ParsePolicy("bench", doc));
}
BENCHMARK(BM_PolicyParse100Rules);

}  // namespace
}  // namespace strongbox::policy

BENCHMARK_MAIN();
