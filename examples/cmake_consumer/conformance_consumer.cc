// A host's own test of a Backend, built against an installed strongbox:
// the contract suite (strongbox::backend_conformance) instantiated for
// InMemoryBackend, as a host would for its own backend.
#include <memory>

#include "strongbox/in_memory_backend.h"
#include "strongbox/testing/backend_conformance.h"

namespace {

using ::strongbox::BackendConformanceTest;
using ::strongbox::BackendFactory;

INSTANTIATE_TEST_SUITE_P(InstalledInMemory, BackendConformanceTest,
                         ::testing::Values(BackendFactory{
                             "InstalledInMemory",
                             [](strongbox::Clock* clock) {
                               strongbox::InMemoryBackendOptions options;
                               options.clock = clock;
                               return strongbox::NewInMemoryBackend(options);
                             }}),
                         strongbox::BackendFactoryName);

}  // namespace
