// The shared backend conformance suite, run against LmdbBackend: once with
// the default (synced) durability and once with kNoSync.
#include "gtest/gtest.h"
#include "strongbox/lmdb_backend.h"
#include "strongbox/testing/backend_conformance.h"
#include "tests/lmdb/test_support.h"

namespace strongbox {
namespace {

std::unique_ptr<Backend> OpenFresh(Clock* clock,
                                   LmdbBackendOptions::Durability durability) {
  LmdbBackendOptions options;
  options.clock = clock;
  options.durability = durability;
  auto backend = LmdbBackend::Open(NewTestDir("conformance"), options);
  EXPECT_TRUE(backend.ok()) << backend.status();
  if (!backend.ok()) return nullptr;
  return *std::move(backend);
}

INSTANTIATE_TEST_SUITE_P(
    Lmdb, BackendConformanceTest,
    testing::Values(
        BackendFactory{"LmdbSynced",
                       [](Clock* clock) {
                         return OpenFresh(
                             clock, LmdbBackendOptions::Durability::kSynced);
                       }},
        BackendFactory{"LmdbNoSync",
                       [](Clock* clock) {
                         return OpenFresh(
                             clock, LmdbBackendOptions::Durability::kNoSync);
                       }}),
    BackendFactoryName);

}  // namespace
}  // namespace strongbox
