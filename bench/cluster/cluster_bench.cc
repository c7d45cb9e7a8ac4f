// Whole-cluster throughput. Three nodes (one active, two performance
// standbys) in one process on the in-memory backend (or, with
// --backend=lmdb, each through a backend of its own on one LMDB directory);
// N client threads spread over the nodes; three mixes:
//   kv       95% KvGet / 5% KvPut of 1 KiB secrets (1,000 paths)
//   kvread   100% KvGet (read scaling: 2 cores cap it at 2x)
//   transit  80% TransitEncrypt / 20% TransitDecrypt of 64-byte payloads
// A write or an encrypt that reaches a standby is forwarded to the active
// in-process (HandleSerialized), as a host's transport would carry it.
// Each row: operations per second and p50/p99 latency, beside the rate of a
// one-node cluster with one thread (the single-node rate), and operations
// per CPU-second of the process (user + system): on a shared, loaded
// machine that one still says what the code costs when wall-clock rates
// say mostly how much CPU the run was given.
//
// Not a test: it asserts nothing and is built by `bazel build //...`.
// Run: bazel run -c opt //bench/cluster:cluster_bench -- [--seconds=1]
//        [--threads=1,2,4,8] [--mixes=kvread,kv,transit]
//        [--backend=memory|lmdb] [--dir=/tmp/x]
//        [--processes]  (KV reads on three processes on one LMDB directory:
//                        this one the active, two perf standbys it starts)

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/in_memory_backend.h"
#include "strongbox/lmdb_backend.h"
#include "strongbox/secret_store.h"

namespace strongbox {
namespace {

constexpr size_t kSecretBytes = 1024;
constexpr int kPaths = 1000;
constexpr size_t kTransitBytes = 64;

using SteadyClock = std::chrono::steady_clock;

std::string SecretPath(int i) { return absl::StrCat("bench/s", i); }

// Carries a forwarded request to the active node's store in this process.
class LocalForwarder : public Forwarder {
 public:
  absl::StatusOr<std::string> Forward(absl::string_view leader,
                                      absl::string_view request) override {
    auto it = stores_.find(std::string(leader));
    if (it == stores_.end()) return absl::UnavailableError("no such node");
    return it->second->HandleSerialized(request);
  }
  void Add(const std::string& address, SecretStore* store) {
    stores_[address] = store;
  }

 private:
  std::map<std::string, SecretStore*> stores_;  // written before the run
};

struct Flags {
  double seconds = 1.0;
  std::vector<int> threads = {1, 2, 4, 8};
  // --mixes=a,b: the mixes to run (default: all three).
  std::vector<std::string> mixes = {"kvread", "kv", "transit"};
  bool lmdb = false;
  std::string dir;
  // --processes: the KV read mix on three processes on one LMDB directory.
  bool processes = false;
  // --child=<node index>: one perf-standby process of a --processes run
  // (reads its share and a "go" line on stdin).
  int child = -1;
};

// `size` nodes on one backend (in memory, or a backend of each node's own
// on one LMDB directory), elected and unsealed, each with a store.
class Cluster {
 public:
  Cluster(int size, const Flags& flags) {
    if (flags.lmdb) {
      for (int i = 0; i < size; ++i) backends_.push_back(OpenLmdb(flags.dir));
    } else {
      backends_.push_back(NewInMemoryBackend());
    }
    for (int i = 0; i < size; ++i) {
      nodes_.push_back(NewNode(backends_[flags.lmdb ? i : 0].get(), i));
    }
    std::vector<std::string> shares = *nodes_[0]->Initialize(1, 1);
    share_ = shares[0];
    for (auto& n : nodes_) (void)n->Unseal(share_);
    for (auto& n : nodes_) n->Poll();
    for (auto& n : nodes_) n->Poll();
    for (int i = 0; i < size; ++i) {
      if (nodes_[i]->state() == HaState::kActive) active_ = i;
      SecretStore::Options so;
      so.coordinator = nodes_[i].get();
      so.forwarder = &forwarder_;
      stores_.push_back(*SecretStore::Create(so));
      forwarder_.Add(Address(i), stores_.back().get());
    }
    SecretStore* active = stores_[active_].get();
    for (int i = 0; i < kPaths; ++i) {
      (void)active->KvPut(SecretPath(i),
                          {{"value", std::string(kSecretBytes, 's')}});
    }
    (void)active->TransitCreateKey("bench");
    ciphertext_ = *active->TransitEncrypt("bench", std::string(64, 't'));
  }

  // A --processes child: node `index` on the directory, unsealed with
  // `share`, not initializing and writing nothing.
  Cluster(const Flags& flags, int index, const std::string& share) {
    backends_.push_back(OpenLmdb(flags.dir));
    nodes_.push_back(NewNode(backends_[0].get(), index));
    (void)nodes_[0]->Unseal(share);
    nodes_[0]->Poll();
    SecretStore::Options so;
    so.coordinator = nodes_[0].get();
    stores_.push_back(*SecretStore::Create(so));
    active_ = -1;
  }

  const std::string& share() const { return share_; }

  static std::string Address(int i) { return absl::StrCat("node-", i, ":1"); }

  SecretStore* store(int i) { return stores_[i].get(); }
  int size() const { return static_cast<int>(stores_.size()); }
  int active() const { return active_; }
  const std::string& ciphertext() const { return ciphertext_; }
  HaState state(int i) const { return nodes_[i]->state(); }

 private:
  static std::unique_ptr<Backend> OpenLmdb(const std::string& dir) {
    LmdbBackendOptions o;
    o.durability = LmdbBackendOptions::Durability::kNoSync;
    absl::StatusOr<std::unique_ptr<LmdbBackend>> b = LmdbBackend::Open(dir, o);
    if (!b.ok()) {
      std::fprintf(stderr, "lmdb open: %s\n", b.status().ToString().c_str());
      std::exit(1);
    }
    return std::move(*b);
  }

  static std::unique_ptr<HaCoordinator> NewNode(Backend* backend, int i) {
    HaCoordinator::Options o;
    o.backend = backend;
    o.node_id = absl::StrCat("node-", i);
    o.advertise_address = Address(i);
    o.standby_mode = StandbyMode::kPerfStandby;
    o.lease_ttl = absl::Hours(10);
    o.renew_interval = absl::Hours(1);
    o.background_thread = false;
    return *HaCoordinator::Create(o);
  }

  std::vector<std::unique_ptr<Backend>> backends_;
  std::vector<std::unique_ptr<HaCoordinator>> nodes_;
  LocalForwarder forwarder_;
  std::vector<std::unique_ptr<SecretStore>> stores_;
  int active_ = 0;
  std::string share_;
  std::string ciphertext_;
};

// One per client thread, each on cache lines of its own: they were
// adjacent in a vector, and every operation's count and latency went to a
// line another client wrote too (false sharing, counted against every
// mix's scaling).
struct alignas(64) ThreadResult {
  uint64_t ops = 0;
  uint64_t errors = 0;
  std::vector<uint32_t> latency_ns;
};

// One client thread: `mix` operations on `store` until `stop`.
void Client(SecretStore* store, const std::string& mix,
            const std::string& ciphertext, uint64_t seed,
            const std::atomic<bool>* stop, ThreadResult* out) {
  std::mt19937_64 rng(seed);
  const std::string value(kSecretBytes, 'p');
  const std::string plaintext(kTransitBytes, 't');
  out->latency_ns.reserve(1 << 20);
  while (!stop->load(std::memory_order_relaxed)) {
    const int dice = static_cast<int>(rng() % 100);
    const SteadyClock::time_point t0 = SteadyClock::now();
    bool ok;
    if (mix == "kv" || mix == "kvread") {
      const std::string path = SecretPath(static_cast<int>(rng() % kPaths));
      if (dice < 95 || mix == "kvread") {
        ok = store->KvGet(path).ok();
      } else {
        ok = store->KvPut(path, {{"value", value}}).ok();
      }
    } else if (dice < 80) {
      ok = store->TransitEncrypt("bench", plaintext).ok();
    } else {
      ok = store->TransitDecrypt("bench", ciphertext).ok();
    }
    const SteadyClock::time_point t1 = SteadyClock::now();
    ++out->ops;
    if (!ok) ++out->errors;
    out->latency_ns.push_back(static_cast<uint32_t>(std::min<int64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count(),
        UINT32_MAX)));
  }
}

double ProcessCpuSeconds() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_stime.tv_sec +
         (u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

struct RunResult {
  double ops_per_second = 0;
  double ops_per_cpu_second = 0;
  double p50_us = 0;
  double p99_us = 0;
  uint64_t errors = 0;
};

RunResult Summarize(std::vector<ThreadResult>& results, double seconds) {
  RunResult r;
  std::vector<uint32_t> all;
  uint64_t ops = 0;
  for (ThreadResult& t : results) {
    ops += t.ops;
    r.errors += t.errors;
    all.insert(all.end(), t.latency_ns.begin(), t.latency_ns.end());
  }
  r.ops_per_second = ops / seconds;
  if (!all.empty()) {
    auto at = [&](double q) {
      const size_t k = static_cast<size_t>(q * (all.size() - 1));
      std::nth_element(all.begin(), all.begin() + k, all.end());
      return all[k] / 1000.0;
    };
    r.p50_us = at(0.50);
    r.p99_us = at(0.99);
  }
  return r;
}

// `threads` clients on the nodes `nodes` (round-robin) for `seconds`.
RunResult Run(Cluster& cluster, const std::vector<int>& nodes, int threads,
              const std::string& mix, double seconds) {
  std::atomic<bool> stop{false};
  std::vector<ThreadResult> results(threads);
  std::vector<std::thread> clients;
  for (int t = 0; t < threads; ++t) {
    SecretStore* store = cluster.store(nodes[t % nodes.size()]);
    clients.emplace_back(Client, store, mix, cluster.ciphertext(), 1000 + t,
                         &stop, &results[t]);
  }
  const SteadyClock::time_point start = SteadyClock::now();
  const double cpu_start = ProcessCpuSeconds();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (std::thread& c : clients) c.join();
  const double elapsed =
      std::chrono::duration<double>(SteadyClock::now() - start).count();
  const double cpu = ProcessCpuSeconds() - cpu_start;
  RunResult r = Summarize(results, elapsed);
  r.ops_per_cpu_second = cpu > 0 ? r.ops_per_second * elapsed / cpu : 0;
  return r;
}

void PrintRow(const char* mix, const char* layout, int threads,
              const RunResult& r, double single) {
  std::printf("%-8s %-24s %7d %10.0f %7.2fx %9.1f %9.1f %10.0f %6llu\n", mix,
              layout, threads, r.ops_per_second, r.ops_per_second / single,
              r.p50_us, r.p99_us, r.ops_per_cpu_second,
              static_cast<unsigned long long>(r.errors));
  std::fflush(stdout);
}

// --child: a perf standby of its own process; runs `threads` KV readers
// when the parent says "go", then prints its result on one line.
int ChildMain(const Flags& flags) {
  char line[512];
  if (std::fgets(line, sizeof(line), stdin) == nullptr) return 1;
  std::string share(line);
  if (!share.empty() && share.back() == '\n') share.pop_back();
  Cluster node(flags, flags.child, share);
  std::fill(share.begin(), share.end(), '\0');
  if (node.state(0) != HaState::kPerfStandby) {
    std::fprintf(stderr, "child %d is %s\n", flags.child,
                 HaStateName(node.state(0)));
    return 1;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  if (std::fgets(line, sizeof(line), stdin) == nullptr) return 1;
  const RunResult r =
      Run(node, {0}, flags.threads.at(0), "kvread", flags.seconds);
  std::printf("%f %f %f %llu %f\n", r.ops_per_second, r.p50_us, r.p99_us,
              static_cast<unsigned long long>(r.errors), r.ops_per_cpu_second);
  return 0;
}

// A child process of this binary for node `index`, with pipes to its
// stdin and stdout.
struct ChildProcess {
  pid_t pid = -1;
  FILE* to = nullptr;
  FILE* from = nullptr;
};

ChildProcess Spawn(const Flags& flags, int index, int threads) {
  int in[2], out[2];
  if (pipe(in) != 0 || pipe(out) != 0) std::exit(1);
  const std::string a0 = "/proc/self/exe";
  const std::string a1 = absl::StrCat("--child=", index);
  const std::string a2 = absl::StrCat("--dir=", flags.dir);
  const std::string a3 = absl::StrCat("--threads=", threads);
  const std::string a4 = absl::StrCat("--seconds=", flags.seconds);
  const std::string a5 = "--backend=lmdb";
  char* argv[] = {const_cast<char*>(a0.c_str()),
                  const_cast<char*>(a1.c_str()),
                  const_cast<char*>(a2.c_str()),
                  const_cast<char*>(a3.c_str()),
                  const_cast<char*>(a4.c_str()),
                  const_cast<char*>(a5.c_str()),
                  nullptr};
  ChildProcess c;
  c.pid = fork();
  if (c.pid < 0) std::exit(1);
  if (c.pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    close(in[0]);
    close(in[1]);
    close(out[0]);
    close(out[1]);
    execv(argv[0], argv);
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  c.to = fdopen(in[1], "w");
  c.from = fdopen(out[0], "r");
  return c;
}

// --processes: for each thread count, the active (this process) and two
// perf standbys (processes of their own) on one LMDB directory, each with
// that many KV reader threads. ops/s is the sum; p50/p99 the worst of the
// three processes.
void RunProcesses(const Flags& flags) {
  Flags active_flags = flags;
  Cluster active(1, active_flags);
  std::printf("%-8s %-24s %7s %10s %8s %9s %9s %10s %6s\n", "mix", "processes",
              "threads", "ops/s", "vs 1x1", "p50 us", "p99 us", "ops/cpu-s",
              "errors");
  double single = 0;
  for (int threads : flags.threads) {
    const RunResult alone = Run(active, {0}, threads, "kvread", flags.seconds);
    if (single == 0) single = alone.ops_per_second;
    PrintRow("kvread", "1 process (active)", threads, alone, single);
    std::vector<ChildProcess> children = {Spawn(flags, 1, threads),
                                          Spawn(flags, 2, threads)};
    char line[256];
    bool ready = true;
    for (ChildProcess& c : children) {
      std::fprintf(c.to, "%s\n", active.share().c_str());
      std::fflush(c.to);
      ready = ready && std::fgets(line, sizeof(line), c.from) != nullptr;
    }
    RunResult all;
    if (ready) {
      for (ChildProcess& c : children) {
        std::fprintf(c.to, "go\n");
        std::fflush(c.to);
      }
      all = Run(active, {0}, threads, "kvread", flags.seconds);
      for (ChildProcess& c : children) {
        double ops = 0, p50 = 0, p99 = 0, per_cpu = 0;
        unsigned long long errors = 0;
        if (std::fgets(line, sizeof(line), c.from) == nullptr ||
            std::sscanf(line, "%lf %lf %lf %llu %lf", &ops, &p50, &p99, &errors,
                        &per_cpu) != 5) {
          ready = false;
          continue;
        }
        all.ops_per_second += ops;
        all.p50_us = std::max(all.p50_us, p50);
        all.p99_us = std::max(all.p99_us, p99);
        all.errors += errors;
        all.ops_per_cpu_second = (all.ops_per_cpu_second + per_cpu) / 2;
      }
    }
    for (ChildProcess& c : children) {
      std::fclose(c.to);
      std::fclose(c.from);
      int status = 0;
      waitpid(c.pid, &status, 0);
    }
    if (!ready) {
      std::printf("a standby process failed; see stderr\n");
      return;
    }
    PrintRow("kvread", "3 processes", threads, all, single);
  }
}

std::string LoadAverage() {
  double load[3];
  if (getloadavg(load, 3) != 3) return "unknown";
  return absl::StrCat(load[0], " ", load[1], " ", load[2]);
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    absl::string_view a = argv[i];
    std::pair<std::string, std::string> kv =
        absl::StrSplit(a, absl::MaxSplits('=', 1));
    const std::string& k = kv.first;
    const std::string& v = kv.second;
    if (k == "--seconds") {
      (void)absl::SimpleAtod(v, &f.seconds);
    } else if (k == "--threads") {
      f.threads.clear();
      for (absl::string_view n : absl::StrSplit(v, ',')) {
        int t;
        if (absl::SimpleAtoi(n, &t) && t > 0) f.threads.push_back(t);
      }
    } else if (k == "--mixes") {
      f.mixes = absl::StrSplit(v, ',', absl::SkipEmpty());
      for (const std::string& m : f.mixes) {
        if (m != "kvread" && m != "kv" && m != "transit") {
          std::fprintf(stderr, "unknown mix %s (kvread, kv, transit)\n",
                       m.c_str());
          std::exit(2);
        }
      }
    } else if (k == "--backend") {
      f.lmdb = v == "lmdb";
    } else if (k == "--dir") {
      f.dir = v;
    } else if (k == "--processes") {
      f.processes = true;
      f.lmdb = true;
    } else if (k == "--child") {
      (void)absl::SimpleAtoi(v, &f.child);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", argv[i]);
      std::exit(2);
    }
  }
  if (f.lmdb && f.dir.empty()) {
    char tmpl[] = "/tmp/cluster_bench.XXXXXX";
    if (mkdtemp(tmpl) == nullptr) std::exit(1);
    f.dir = tmpl;
  }
  return f;
}

}  // namespace
}  // namespace strongbox

int main(int argc, char** argv) {
  using namespace strongbox;  // NOLINT: a benchmark's main
  Flags flags = ParseFlags(argc, argv);
  if (flags.child >= 0) return ChildMain(flags);

  std::printf(
      "backend: %s; %.1f s a row; 1 KiB KV secrets (%d paths), %zu-byte "
      "Transit payloads; %u hardware threads\n",
      flags.lmdb ? "lmdb (a backend per node, one directory, no sync)"
                 : "in-memory",
      flags.seconds, kPaths, kTransitBytes,
      std::thread::hardware_concurrency());
  std::printf("load average at start: %s\n", LoadAverage().c_str());
  if (flags.processes) {
    RunProcesses(flags);
    return 0;
  }
  std::printf("%-8s %-24s %7s %10s %8s %9s %9s %10s %6s\n", "mix", "nodes",
              "threads", "ops/s", "vs 1x1", "p50 us", "p99 us", "ops/cpu-s",
              "errors");
  for (const std::string& mix : flags.mixes) {
    Flags one = flags;
    if (one.lmdb) one.dir = flags.dir + "/single-" + mix;
    if (one.lmdb) (void)std::system(("mkdir -p " + one.dir).c_str());
    double single = 0;
    {
      Cluster solo(1, one);
      const RunResult base = Run(solo, {0}, 1, mix, flags.seconds);
      single = base.ops_per_second;
      for (int threads : flags.threads) {
        const RunResult r =
            threads == 1 ? base : Run(solo, {0}, threads, mix, flags.seconds);
        PrintRow(mix.c_str(), "1-node cluster", threads, r, single);
      }
    }
    Flags three = flags;
    if (three.lmdb) three.dir = flags.dir + "/three-" + mix;
    if (three.lmdb) (void)std::system(("mkdir -p " + three.dir).c_str());
    Cluster cluster(3, three);
    std::vector<int> standbys;
    for (int i = 0; i < 3; ++i) {
      if (i != cluster.active()) standbys.push_back(i);
    }
    for (int threads : flags.threads) {
      PrintRow(mix.c_str(), "3 nodes, all on active", threads,
               Run(cluster, {cluster.active()}, threads, mix, flags.seconds),
               single);
    }
    for (int threads : flags.threads) {
      PrintRow(mix.c_str(), "3 nodes, spread over 3", threads,
               Run(cluster, {cluster.active(), standbys[0], standbys[1]},
                   threads, mix, flags.seconds),
               single);
    }
  }
  return 0;
}
