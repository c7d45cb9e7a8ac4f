// LmdbBackend against raw LMDB calls with the same environment settings
// (MDB_NOTLS, same sync flags, same record layout: an 8-byte version
// header before the value), in one binary and one run, so the ratio is
// what counts. Then the crash takeover time across real processes.
//
//   bazel run -c opt //bench/lmdb:lmdb_bench
//
// Goals (issue 6): Get <= 1.2x raw; synced Put <= 1.1x raw; crash takeover
// median < 50 ms. The binary re-executes itself as the lease contender.
#include <fcntl.h>
#include <lmdb.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "strongbox/lmdb_backend.h"

extern char** environ;

namespace strongbox {
namespace {

constexpr int kKeys = 10000;
constexpr size_t kValueBytes = 64;

std::string g_root;  // a fresh directory for this run

std::string Key(int i) { return absl::StrCat("kv/data/app/secret-", i); }

std::string Value(int i) {
  return std::string(kValueBytes, static_cast<char>('a' + i % 26));
}

unsigned int EnvFlags(LmdbBackendOptions::Durability d) {
  switch (d) {
    case LmdbBackendOptions::Durability::kSynced:
      return MDB_NOTLS;
    case LmdbBackendOptions::Durability::kNoMetaSync:
      return MDB_NOTLS | MDB_NOMETASYNC;
    case LmdbBackendOptions::Durability::kNoSync:
      return MDB_NOTLS | MDB_NOSYNC;
  }
  return MDB_NOTLS;
}

// ------------------------------------------------------------- raw LMDB

// A raw environment laid out as the backend lays out its own: one unnamed
// database, an 8-byte version before each value.
struct RawStore {
  MDB_env* env = nullptr;
  MDB_dbi dbi = 0;
  MDB_txn* reader = nullptr;  // reset/renewed, as the backend's pool does

  explicit RawStore(const std::string& dir,
                    LmdbBackendOptions::Durability durability) {
    mkdir(dir.c_str(), 0755);
    mdb_env_create(&env);
    mdb_env_set_mapsize(env, size_t{64} << 20);
    if (mdb_env_open(env, dir.c_str(), EnvFlags(durability), 0644) != 0) {
      std::abort();
    }
    MDB_txn* txn;
    mdb_txn_begin(env, nullptr, 0, &txn);
    mdb_dbi_open(txn, nullptr, 0, &dbi);
    mdb_txn_commit(txn);
    mdb_txn_begin(env, nullptr, MDB_RDONLY, &reader);
    mdb_txn_reset(reader);
  }
  ~RawStore() {
    mdb_txn_abort(reader);
    mdb_env_close(env);
  }

  void Put(const std::string& key, const std::string& value, uint64_t v) {
    MDB_txn* txn;
    mdb_txn_begin(env, nullptr, 0, &txn);
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val val{8 + value.size(), nullptr};
    mdb_put(txn, dbi, &k, &val, MDB_RESERVE);
    std::memcpy(val.mv_data, &v, 8);
    std::memcpy(static_cast<char*>(val.mv_data) + 8, value.data(),
                value.size());
    if (mdb_txn_commit(txn) != 0) std::abort();
  }

  // What any caller must do: copy the value out before the reset.
  bool Get(const std::string& key, std::string* out, uint64_t* version) {
    mdb_txn_renew(reader);
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v;
    bool found = mdb_get(reader, dbi, &k, &v) == 0;
    if (found) {
      std::memcpy(version, v.mv_data, 8);
      out->assign(static_cast<const char*>(v.mv_data) + 8, v.mv_size - 8);
    }
    mdb_txn_reset(reader);
    return found;
  }
};

std::vector<std::string> ShuffledKeys() {
  std::vector<std::string> keys;
  for (int i = 0; i < kKeys; ++i) keys.push_back(Key(i));
  std::shuffle(keys.begin(), keys.end(), std::mt19937(1));
  return keys;
}

RawStore& RawFor(LmdbBackendOptions::Durability d) {
  static RawStore* synced = nullptr;
  static RawStore* nosync = nullptr;
  RawStore*& slot =
      d == LmdbBackendOptions::Durability::kSynced ? synced : nosync;
  if (slot == nullptr) {
    slot = new RawStore(absl::StrCat(g_root, "/raw-", static_cast<int>(d)), d);
    for (int i = 0; i < kKeys; ++i) slot->Put(Key(i), Value(i), i + 1);
    sync();
  }
  return *slot;
}

LmdbBackend& BackendFor(LmdbBackendOptions::Durability d) {
  static LmdbBackend* synced = nullptr;
  static LmdbBackend* nosync = nullptr;
  LmdbBackend*& slot =
      d == LmdbBackendOptions::Durability::kSynced ? synced : nosync;
  if (slot == nullptr) {
    LmdbBackendOptions options;
    options.durability = d;
    auto opened = LmdbBackend::Open(
        absl::StrCat(g_root, "/backend-", static_cast<int>(d)), options);
    if (!opened.ok()) std::abort();
    slot = opened->release();
    std::vector<WriteOp> batch;
    for (int i = 0; i < kKeys; ++i)
      batch.push_back(WriteOp::Put(Key(i), Value(i)));
    if (!slot->Commit(batch).ok()) std::abort();
    sync();
  }
  return *slot;
}

void BM_RawGet(benchmark::State& state) {
  RawStore& raw = RawFor(LmdbBackendOptions::Durability::kSynced);
  const std::vector<std::string> keys = ShuffledKeys();
  std::string value;
  uint64_t version;
  size_t i = 0;
  for (auto _ : state) {
    if (!raw.Get(keys[i++ % kKeys], &value, &version)) std::abort();
    benchmark::DoNotOptimize(value);
  }
}
BENCHMARK(BM_RawGet);

void BM_BackendGet(benchmark::State& state) {
  LmdbBackend& backend = BackendFor(LmdbBackendOptions::Durability::kSynced);
  const std::vector<std::string> keys = ShuffledKeys();
  size_t i = 0;
  for (auto _ : state) {
    absl::StatusOr<Entry> e = backend.Get(keys[i++ % kKeys]);
    if (!e.ok()) std::abort();
    benchmark::DoNotOptimize(e);
  }
}
BENCHMARK(BM_BackendGet);
BENCHMARK(BM_BackendGet)->Threads(2);

void BM_RawPut(benchmark::State& state) {
  const auto d = static_cast<LmdbBackendOptions::Durability>(state.range(0));
  RawStore& raw = RawFor(d);
  uint64_t v = kKeys + 1;
  int i = 0;
  for (auto _ : state) {
    raw.Put(Key(i % kKeys), Value(i), v++);
    ++i;
  }
}
BENCHMARK(BM_RawPut)
    ->Arg(static_cast<int>(LmdbBackendOptions::Durability::kSynced))
    ->Arg(static_cast<int>(LmdbBackendOptions::Durability::kNoSync))
    ->MinTime(2);

void BM_BackendPut(benchmark::State& state) {
  const auto d = static_cast<LmdbBackendOptions::Durability>(state.range(0));
  LmdbBackend& backend = BackendFor(d);
  int i = 0;
  for (auto _ : state) {
    if (!backend.Put(Key(i % kKeys), Value(i)).ok()) std::abort();
    ++i;
  }
}
BENCHMARK(BM_BackendPut)
    ->Arg(static_cast<int>(LmdbBackendOptions::Durability::kSynced))
    ->Arg(static_cast<int>(LmdbBackendOptions::Durability::kNoSync))
    ->MinTime(2);

// ------------------------------------------------- paired measurements

// On a shared, loaded machine two separate benchmarks can run minutes apart
// under different load. These alternate short blocks of the raw call and
// the backend call and report both means and their ratio, measured under
// the same conditions (wall and thread-CPU time).
double ThreadCpuNs() {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}
double WallNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

template <typename Raw, typename Ours>
void Paired(benchmark::State& state, int block, int rounds, Raw raw,
            Ours ours) {
  for (auto _ : state) {
    double raw_wall = 0, raw_cpu = 0, our_wall = 0, our_cpu = 0;
    for (int r = 0; r < rounds; ++r) {
      double w = WallNs(), c = ThreadCpuNs();
      for (int i = 0; i < block; ++i) raw();
      raw_wall += WallNs() - w;
      raw_cpu += ThreadCpuNs() - c;
      w = WallNs();
      c = ThreadCpuNs();
      for (int i = 0; i < block; ++i) ours();
      our_wall += WallNs() - w;
      our_cpu += ThreadCpuNs() - c;
    }
    const double n = static_cast<double>(block) * rounds;
    state.counters["raw_ns"] = raw_wall / n;
    state.counters["backend_ns"] = our_wall / n;
    state.counters["ratio_wall"] = our_wall / raw_wall;
    state.counters["ratio_cpu"] = our_cpu / raw_cpu;
  }
}

// kFresh false: the raw side reuses one string buffer (the strict floor).
// kFresh true: it returns a fresh string per call, as Backend::Get's Entry
// does.
template <bool kFresh>
void BM_PairedGet(benchmark::State& state) {
  RawStore& raw = RawFor(LmdbBackendOptions::Durability::kSynced);
  LmdbBackend& backend = BackendFor(LmdbBackendOptions::Durability::kSynced);
  const std::vector<std::string> keys = ShuffledKeys();
  std::string value;
  uint64_t version;
  size_t i = 0, j = 0;
  Paired(
      state, 1000, 400,
      [&] {
        if constexpr (kFresh) {
          std::string out;
          if (!raw.Get(keys[i++ % kKeys], &out, &version)) std::abort();
          benchmark::DoNotOptimize(out);
        } else {
          if (!raw.Get(keys[i++ % kKeys], &value, &version)) std::abort();
          benchmark::DoNotOptimize(value);
        }
      },
      [&] {
        absl::StatusOr<Entry> e = backend.Get(keys[j++ % kKeys]);
        if (!e.ok()) std::abort();
        benchmark::DoNotOptimize(e);
      });
}
BENCHMARK_TEMPLATE(BM_PairedGet, false)->Iterations(1)->Repetitions(3);
BENCHMARK_TEMPLATE(BM_PairedGet, true)->Iterations(1)->Repetitions(3);

void BM_PairedPut(benchmark::State& state) {
  const auto d = static_cast<LmdbBackendOptions::Durability>(state.range(0));
  RawStore& raw = RawFor(d);
  LmdbBackend& backend = BackendFor(d);
  const bool synced = d == LmdbBackendOptions::Durability::kSynced;
  uint64_t v = 1u << 30;
  int i = 0, j = 0;
  Paired(
      state, synced ? 10 : 500, synced ? 40 : 20,
      [&] {
        raw.Put(Key(i % kKeys), Value(i), v++);
        ++i;
      },
      [&] {
        if (!backend.Put(Key(j % kKeys), Value(j)).ok()) std::abort();
        ++j;
      });
}
BENCHMARK(BM_PairedPut)
    ->Arg(static_cast<int>(LmdbBackendOptions::Durability::kSynced))
    ->Arg(static_cast<int>(LmdbBackendOptions::Durability::kNoSync))
    ->Iterations(1)
    ->Repetitions(3);

// ------------------------------------------------------- crash takeover

// The contender: prints CONTENDING, blocks in Acquire, prints GRANTED,
// then waits to be killed.
int RunContender(const std::string& dir) {
  auto backend = LmdbBackend::Open(dir);
  if (!backend.ok()) return 2;
  std::printf("CONTENDING\n");
  std::fflush(stdout);
  AcquireOptions options;
  options.holder = absl::StrCat("pid-", getpid());
  options.ttl = absl::Seconds(60);  // takeover must come from the file lock
  auto grant = (*backend)->ha()->Acquire(options);
  if (!grant.ok()) return 3;
  std::printf("GRANTED %llu\n",
              static_cast<unsigned long long>((*grant)->fence()));
  std::fflush(stdout);
  while (true) pause();
}

struct Proc {
  pid_t pid = -1;
  int fd = -1;
  std::string buffer;

  explicit Proc(const std::string& dir) {
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0) std::abort();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1);
    std::string self = "/proc/self/exe";
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) self.assign(exe, n);
    std::string flag = "--contender";
    std::string d = dir;
    char* argv[] = {self.data(), flag.data(), d.data(), nullptr};
    if (posix_spawn(&pid, self.c_str(), &actions, nullptr, argv, environ) !=
        0) {
      std::abort();
    }
    posix_spawn_file_actions_destroy(&actions);
    close(fds[1]);
    fd = fds[0];
  }
  ~Proc() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    close(fd);
  }

  // Waits for a line starting with `word`.
  bool Await(const char* word, absl::Duration timeout) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      size_t nl;
      while ((nl = buffer.find('\n')) != std::string::npos) {
        std::string line = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        if (line.rfind(word, 0) == 0) return true;
      }
      struct pollfd p = {fd, POLLIN, 0};
      if (poll(&p, 1, 1) > 0) {
        char chunk[512];
        ssize_t got = read(fd, chunk, sizeof(chunk));
        if (got <= 0) return false;
        buffer.append(chunk, got);
      }
    }
    return false;
  }
};

void MeasureCrashTakeover(int rounds) {
  std::vector<double> ms;
  for (int r = 0; r < rounds; ++r) {
    const std::string dir = absl::StrCat(g_root, "/takeover-", r);
    auto holder = std::make_unique<Proc>(dir);
    if (!holder->Await("GRANTED", absl::Seconds(10))) std::abort();
    Proc standby(dir);
    if (!standby.Await("CONTENDING", absl::Seconds(10))) std::abort();
    absl::SleepFor(absl::Milliseconds(30));  // let it settle into waiting
    const absl::Time killed = absl::Now();
    kill(holder->pid, SIGKILL);
    if (!standby.Await("GRANTED", absl::Seconds(10))) std::abort();
    ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - killed));
  }
  std::sort(ms.begin(), ms.end());
  std::printf(
      "crash takeover over %d runs (SIGKILL of the holder -> standby granted, "
      "TTL 60 s): median %.2f ms, p90 %.2f ms, min %.2f ms, max %.2f ms\n",
      rounds, ms[ms.size() / 2], ms[ms.size() * 9 / 10], ms.front(), ms.back());
}

}  // namespace
}  // namespace strongbox

int main(int argc, char** argv) {
  if (argc == 3 && std::strcmp(argv[1], "--contender") == 0) {
    return strongbox::RunContender(argv[2]);
  }
  char tmpl[] = "/tmp/strongbox-lmdb-bench-XXXXXX";
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string root_template =
      tmp != nullptr ? std::string(tmp) + "/lmdb-bench-XXXXXX" : tmpl;
  if (mkdtemp(root_template.data()) == nullptr) return 1;
  strongbox::g_root = root_template;
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  strongbox::MeasureCrashTakeover(21);
  benchmark::Shutdown();
  std::string cleanup = "rm -rf '" + strongbox::g_root + "'";
  return std::system(cleanup.c_str()) == 0 ? 0 : 1;
}
