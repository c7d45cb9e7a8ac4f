// A freed-memory scanner for tests of invariant D5 (no secret left in freed
// memory). Linking this library replaces the global operator new / delete
// (every form): while a FreedScan is alive, every block handed back to
// operator delete is searched for the markers set with AddMarker(), and
// each block holding one counts as a hit — a copy of a secret that some
// code freed without wiping it. Blocks freed with free() directly are not
// seen (SecretBytes and BoringSSL wipe their own).
//
// Use it in a test binary of its own (it replaces operator delete), not
// under ASan or TSan, which replace the allocator themselves (tag the test
// no_asan and no_tsan). STRONGBOX_FREED_TRACE=1 prints a stack per hit.
//
// Thread-safe: hits from any thread count.
#ifndef STRONGBOX_TESTS_STORE_FREED_SCANNER_H_
#define STRONGBOX_TESTS_STORE_FREED_SCANNER_H_

#include "absl/strings/string_view.h"

namespace strongbox::testing_freed {

// 12 bytes that appear nowhere but in a test's secrets; short enough to
// fit a std::string's inline buffer, so inline copies (inside a freed map
// node or WriteOp) are found too. Always scanned for.
inline constexpr absl::string_view kMarker = "\x01sbxFREED\x7f\x02";

// Adds a marker (at most 64 bytes; at most 8 markers). Call before any
// FreedScan, from the test thread.
void AddMarker(absl::string_view marker);
// Forgets the markers AddMarker() added.
void ClearMarkers();

// Counts hits in blocks freed during its lifetime. One at a time.
class FreedScan {
 public:
  FreedScan();
  ~FreedScan();
  FreedScan(const FreedScan&) = delete;
  FreedScan& operator=(const FreedScan&) = delete;

  // Hits so far.
  int hits() const;
  // Hits since the last Take(): one phase's count.
  int Take();
};

}  // namespace strongbox::testing_freed

#endif  // STRONGBOX_TESTS_STORE_FREED_SCANNER_H_
