// Resident memory of one node:
//   1. holding 100,000 1 KiB KV secrets in LMDB (written, then every one
//      read back): reads keep no plaintext, so anonymous memory stays flat
//      and what grows is the LMDB map in the OS page cache (RssFile);
//   2. with the Transit key cache holding 1,000 keys x 10 versions, and how
//      much of it is mlocked (VmLck) against RLIMIT_MEMLOCK.
// Not a test: it prints numbers. Built by `bazel build //...`.
// Run: bazel run -c opt //bench/cluster:memory_bench -- [--secrets=100000]
//        [--keys=1000] [--versions=10] [--dir=/tmp/x]

#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/lmdb_backend.h"
#include "strongbox/secret_bytes.h"
#include "strongbox/secret_store.h"

namespace strongbox {
namespace {

// kB values of /proc/self/status lines.
struct Rss {
  long rss = 0, anon = 0, file = 0, locked = 0;
};

Rss ReadRss() {
  Rss r;
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f =
        absl::StrSplit(line, absl::ByAnyChar(" \t"), absl::SkipWhitespace());
    if (f.size() < 2) continue;
    long kb = 0;
    (void)absl::SimpleAtoi(f[1], &kb);
    if (f[0] == "VmRSS:") r.rss = kb;
    if (f[0] == "RssAnon:") r.anon = kb;
    if (f[0] == "RssFile:") r.file = kb;
    if (f[0] == "VmLck:") r.locked = kb;
  }
  return r;
}

void Print(const char* what, const Rss& r) {
  std::printf(
      "%-52s RSS %8.1f MiB  anon %8.1f MiB  file %8.1f MiB  "
      "locked %6.1f MiB\n",
      what, r.rss / 1024.0, r.anon / 1024.0, r.file / 1024.0,
      r.locked / 1024.0);
  std::fflush(stdout);
}

struct Node {
  std::unique_ptr<Backend> backend;
  std::unique_ptr<HaCoordinator> coordinator;
  std::unique_ptr<SecretStore> store;
};

Node OpenNode(const std::string& dir) {
  Node n;
  LmdbBackendOptions lo;
  lo.durability = LmdbBackendOptions::Durability::kNoSync;
  absl::StatusOr<std::unique_ptr<LmdbBackend>> b = LmdbBackend::Open(dir, lo);
  if (!b.ok()) {
    std::fprintf(stderr, "lmdb: %s\n", b.status().ToString().c_str());
    std::exit(1);
  }
  n.backend = std::move(*b);
  HaCoordinator::Options o;
  o.backend = n.backend.get();
  o.node_id = "mem-0";
  o.advertise_address = "mem-0:1";
  o.lease_ttl = absl::Hours(10);
  o.renew_interval = absl::Hours(1);
  o.background_thread = false;
  n.coordinator = *HaCoordinator::Create(o);
  std::vector<std::string> shares = *n.coordinator->Initialize(1, 1);
  (void)n.coordinator->Unseal(shares[0]);
  n.coordinator->Poll();
  SecretStore::Options so;
  so.coordinator = n.coordinator.get();
  // Rotations below store reservations; keep them few.
  n.store = *SecretStore::Create(so);
  return n;
}

}  // namespace
}  // namespace strongbox

int main(int argc, char** argv) {
  using namespace strongbox;  // NOLINT: a benchmark's main
  int secrets = 100000, keys = 1000, versions = 10;
  std::string dir;
  for (int i = 1; i < argc; ++i) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(argv[i], absl::MaxSplits('=', 1));
    if (kv.first == "--secrets") (void)absl::SimpleAtoi(kv.second, &secrets);
    if (kv.first == "--keys") (void)absl::SimpleAtoi(kv.second, &keys);
    if (kv.first == "--versions") (void)absl::SimpleAtoi(kv.second, &versions);
    if (kv.first == "--dir") dir = kv.second;
  }
  if (dir.empty()) {
    char tmpl[] = "/tmp/memory_bench.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) return 1;
    dir = tmpl;
  }
  rlimit memlock;
  getrlimit(RLIMIT_MEMLOCK, &memlock);
  std::printf("LMDB directory %s; RLIMIT_MEMLOCK %s\n", dir.c_str(),
              memlock.rlim_cur == RLIM_INFINITY
                  ? "unlimited"
                  : absl::StrCat(memlock.rlim_cur >> 10, " KiB").c_str());
  Print("at start", ReadRss());
  Node node = OpenNode(dir);
  Print("node open, unsealed, active", ReadRss());

  const std::string value(1024, 'v');
  for (int i = 0; i < secrets; ++i) {
    absl::StatusOr<KvWriteResult> w =
        node.store->KvPut(absl::StrCat("mem/s", i), {{"value", value}});
    if (!w.ok()) {
      std::fprintf(stderr, "put %d: %s\n", i, w.status().ToString().c_str());
      return 1;
    }
  }
  Print(absl::StrCat(secrets, " x 1 KiB secrets written").c_str(), ReadRss());
  size_t bytes = 0;
  for (int i = 0; i < secrets; ++i) {
    absl::StatusOr<store::KvSecret> s =
        node.store->KvGet(absl::StrCat("mem/s", i));
    if (s.ok()) bytes += s->data().at("value").size();
  }
  Print(absl::StrCat("... and all read back (", bytes >> 20, " MiB)").c_str(),
        ReadRss());

  const Rss before_keys = ReadRss();
  for (int k = 0; k < keys; ++k) {
    const std::string name = absl::StrCat("key", k);
    if (!node.store->TransitCreateKey(name).ok()) return 1;
    for (int v = 1; v < versions; ++v) {
      if (!node.store->TransitRotateKey(name).ok()) return 1;
    }
    // Loads the key (every version) into the cache.
    if (!node.store->TransitEncrypt(name, "x").ok()) return 1;
  }
  const Rss after_keys = ReadRss();
  Print(absl::StrCat("Transit cache: ", keys, " keys x ", versions, " versions")
            .c_str(),
        after_keys);
  std::printf(
      "Transit cache growth: %.1f MiB anon (%.0f bytes per key version), "
      "%.1f MiB locked; SecretBytes mlock failures so far: %llu\n",
      (after_keys.anon - before_keys.anon) / 1024.0,
      (after_keys.anon - before_keys.anon) * 1024.0 / (keys * versions),
      (after_keys.locked - before_keys.locked) / 1024.0,
      static_cast<unsigned long long>(SecretBytesLockFailures()));
  return 0;
}
