#include "tests/etcd/etcd_cluster.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace strongbox {
namespace testing_etcd {
namespace {

absl::StatusOr<int> FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError("socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(fd);
    return absl::InternalError("bind");
  }
  close(fd);
  return ntohs(addr.sin_port);
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

absl::Status Run(const std::string& command) {
  int rc = system(command.c_str());
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("command failed (", rc, "): ", command));
  }
  return absl::OkStatus();
}

// Waits for `pid` to exit, up to `timeout`; true if reaped.
bool WaitGone(pid_t pid, absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  while (absl::Now() < end) {
    int status;
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid || (r < 0 && errno == ECHILD)) return true;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return false;
}

}  // namespace

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::Start(
    const ClusterOptions& options) {
  constexpr int kAttempts = 3;
  absl::Status last;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    absl::StatusOr<std::unique_ptr<EtcdCluster>> cluster = StartOnce(options);
    if (cluster.ok() ||
        cluster.status().code() != absl::StatusCode::kUnavailable) {
      return cluster;
    }
    last = cluster.status();
    std::fprintf(stderr, "etcd cluster start, attempt %d of %d: %s\n", attempt,
                 kAttempts, last.ToString().c_str());
  }
  return last;
}

void EtcdCluster::PrintLogTails() const {
  constexpr size_t kLines = 4;
  for (const Member& m : members_) {
    std::ifstream in(absl::StrCat(dir_, "/", m.name, ".log"));
    std::vector<std::string> tail;
    for (std::string line; std::getline(in, line);) {
      tail.push_back(line);
      if (tail.size() > kLines) tail.erase(tail.begin());
    }
    std::fprintf(stderr,
                 "member %s (client port %d, peer port %d), log tail:\n",
                 m.name.c_str(), m.client_port, m.peer_port);
    for (const std::string& line : tail) {
      std::fprintf(stderr, "  %s\n", line.c_str());
    }
  }
}

absl::StatusOr<std::unique_ptr<EtcdCluster>> EtcdCluster::StartOnce(
    const ClusterOptions& options) {
  std::unique_ptr<EtcdCluster> cluster(new EtcdCluster());
  cluster->options_ = options;
  const char* tmp = getenv("TEST_TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/etcd-cluster.XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError("mkdtemp failed");
  }
  cluster->dir_ = pattern;
  if (options.tls) {
    absl::Status s = cluster->MakeCertificates();
    if (!s.ok()) return s;
  }
  std::vector<std::string> peers;
  for (int i = 0; i < options.members; ++i) {
    Member m;
    m.name = absl::StrCat("e", i + 1);
    absl::StatusOr<int> c = FreePort();
    absl::StatusOr<int> p = FreePort();
    if (!c.ok()) return c.status();
    if (!p.ok()) return p.status();
    m.client_port = *c;
    m.peer_port = *p;
    m.data_dir = absl::StrCat(cluster->dir_, "/", m.name);
    peers.push_back(absl::StrCat(m.name, "=http://127.0.0.1:", m.peer_port));
    cluster->members_.push_back(m);
  }
  cluster->initial_cluster_ = absl::StrJoin(peers, ",");
  for (int i = 0; i < options.members; ++i) {
    absl::Status s = cluster->Spawn(i, /*existing=*/false);
    if (!s.ok()) return s;
  }
  absl::Status healthy = cluster->WaitHealthy(absl::Seconds(20));
  if (!healthy.ok()) {
    cluster->PrintLogTails();
    return healthy;
  }
  return cluster;
}

absl::Status EtcdCluster::MakeCertificates() {
  const std::string d = dir_;
  const std::string quiet = " >/dev/null 2>&1";
  auto ca = [&](const std::string& name) {
    return Run(absl::StrCat(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=", name,
        " -keyout ", d, "/", name, "-key.pem -out ", d, "/", name, ".pem",
        quiet));
  };
  auto leaf = [&](const std::string& name, const std::string& ext) {
    std::ofstream(absl::StrCat(d, "/", name, ".ext")) << ext;
    return Run(absl::StrCat("openssl req -newkey rsa:2048 -nodes -subj /CN=",
                            name, " -keyout ", d, "/", name, "-key.pem -out ",
                            d, "/", name, ".csr", quiet))
                   .ok()
               ? Run(absl::StrCat("openssl x509 -req -days 2 -in ", d, "/",
                                  name, ".csr -CA ", d, "/ca.pem -CAkey ", d,
                                  "/ca-key.pem -CAcreateserial -out ", d, "/",
                                  name, ".pem -extfile ", d, "/", name, ".ext",
                                  quiet))
               : absl::InternalError("openssl req failed");
  };
  absl::Status s = ca("ca");
  if (s.ok()) s = ca("other-ca");
  if (s.ok()) {
    s = leaf("server",
             "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
             "extendedKeyUsage=serverAuth,clientAuth\n");
  }
  if (s.ok()) s = leaf("client", "extendedKeyUsage=clientAuth\n");
  return s;
}

absl::Status EtcdCluster::Spawn(int i, bool existing) {
  Member& m = members_[i];
  const std::string scheme = options_.tls ? "https" : "http";
  const std::string client_url =
      absl::StrCat(scheme, "://127.0.0.1:", m.client_port);
  const std::string peer_url = absl::StrCat("http://127.0.0.1:", m.peer_port);
  std::vector<std::string> args = {
      "/usr/bin/etcd",
      "--name",
      m.name,
      "--data-dir",
      m.data_dir,
      "--listen-client-urls",
      client_url,
      "--advertise-client-urls",
      client_url,
      "--listen-peer-urls",
      peer_url,
      "--initial-advertise-peer-urls",
      peer_url,
      "--initial-cluster",
      initial_cluster_,
      "--initial-cluster-token",
      "strongbox-test",
      "--initial-cluster-state",
      existing ? "existing" : "new",
      "--heartbeat-interval",
      "50",
      "--election-timeout",
      "250",
      "--logger",
      "zap",
      "--log-level",
      "warn",
  };
  if (options_.tls) {
    for (const std::string& a :
         {std::string("--cert-file"), dir_ + "/server.pem",
          std::string("--key-file"), dir_ + "/server-key.pem",
          std::string("--trusted-ca-file"), dir_ + "/ca.pem",
          std::string("--client-cert-auth")}) {
      args.push_back(a);
    }
  }
  const std::string log = absl::StrCat(dir_, "/", m.name, ".log");
  pid_t pid = fork();
  if (pid < 0) return absl::InternalError("fork failed");
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    // Its own process group: a test's signal to it reaches only it.
    setpgid(0, 0);
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  m.pid = pid;
  m.paused = false;
  return absl::OkStatus();
}

EtcdCluster::~EtcdCluster() {
  for (Member& m : members_) {
    if (m.pid <= 0) continue;
    kill(m.pid, SIGCONT);
    kill(m.pid, SIGTERM);
  }
  for (Member& m : members_) {
    if (m.pid <= 0) continue;
    if (!WaitGone(m.pid, absl::Seconds(5))) {
      kill(m.pid, SIGKILL);
      WaitGone(m.pid, absl::Seconds(5));
    }
    m.pid = -1;
  }
  if (!dir_.empty() && getenv("KEEP_ETCD_DIR") == nullptr) {
    Run(absl::StrCat("rm -rf '", dir_, "'")).IgnoreError();
  }
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

std::string EtcdCluster::endpoint(int i) const {
  return absl::StrCat(options_.tls ? "https" : "http",
                      "://127.0.0.1:", members_[i].client_port);
}

void EtcdCluster::Kill(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return;
  kill(m.pid, SIGKILL);
  WaitGone(m.pid, absl::Seconds(10));
  m.pid = -1;
}

// True once every thread of `pid` is stopped ('T' in /proc/pid/task/*/stat):
// kill() returns before a running thread has actually stopped.
bool AllThreadsStopped(pid_t pid) {
  const std::string dir = absl::StrCat("/proc/", pid, "/task");
  std::unique_ptr<DIR, int (*)(DIR*)> tasks(opendir(dir.c_str()), closedir);
  if (tasks == nullptr) return false;
  int seen = 0;
  while (struct dirent* e = readdir(tasks.get())) {
    if (e->d_name[0] == '.') continue;
    const std::string stat =
        ReadFile(absl::StrCat(dir, "/", e->d_name, "/stat"));
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size()) return false;
    const char state = stat[paren + 2];
    if (state != 'T' && state != 't') return false;
    ++seen;
  }
  return seen > 0;
}

void EtcdCluster::Pause(int i) {
  if (members_[i].pid > 0) {
    kill(members_[i].pid, SIGSTOP);
    const absl::Time end = absl::Now() + absl::Seconds(2);
    while (!AllThreadsStopped(members_[i].pid) && absl::Now() < end) {
      absl::SleepFor(absl::Milliseconds(1));
    }
  }
  members_[i].paused = true;
}

void EtcdCluster::Resume(int i) {
  if (members_[i].pid > 0) kill(members_[i].pid, SIGCONT);
  members_[i].paused = false;
}

absl::Status EtcdCluster::Restart(int i) {
  if (members_[i].pid > 0) Kill(i);
  absl::Status s = Spawn(i, /*existing=*/true);
  if (!s.ok()) return s;
  return WaitHealthy(absl::Seconds(20));
}

std::shared_ptr<grpc::Channel> EtcdCluster::Channel(int i) const {
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (options_.tls) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = ReadFile(ca_file());
    ssl.pem_cert_chain = ReadFile(client_cert_file());
    ssl.pem_private_key = ReadFile(client_key_file());
    creds = grpc::SslCredentials(ssl);
  } else {
    creds = grpc::InsecureChannelCredentials();
  }
  return grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", members_[i].client_port), creds);
}

absl::StatusOr<etcdserverpb::StatusResponse> EtcdCluster::Status(int i) const {
  auto stub = etcdserverpb::Maintenance::NewStub(Channel(i));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
  etcdserverpb::StatusResponse response;
  grpc::Status s =
      stub->Status(&context, etcdserverpb::StatusRequest(), &response);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return response;
}

absl::Status EtcdCluster::WaitHealthy(absl::Duration timeout) {
  const absl::Time end = absl::Now() + timeout;
  std::string last = "no member answered";
  while (absl::Now() < end) {
    uint64_t leader = 0;
    bool agree = true;
    for (int i = 0; i < size() && agree; ++i) {
      if (members_[i].pid <= 0 || members_[i].paused) continue;
      absl::StatusOr<etcdserverpb::StatusResponse> st = Status(i);
      if (!st.ok()) {
        agree = false;
        last = st.status().ToString();
        break;
      }
      members_[i].id = st->header().member_id();
      if (st->leader() == 0 || (leader != 0 && st->leader() != leader)) {
        agree = false;
        last = "no agreed leader yet";
      }
      leader = st->leader();
    }
    // The leader must be one of the running members (the survivors of a
    // kill report the dead leader until they elect a new one).
    bool leader_runs = false;
    for (const Member& m : members_) {
      leader_runs |= m.pid > 0 && !m.paused && m.id == leader;
    }
    if (agree && leader != 0 && leader_runs) return absl::OkStatus();
    if (agree && leader != 0) last = "the leader is not running";
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::UnavailableError(absl::StrCat(
      "etcd cluster not healthy in time (", last, "); logs in ", dir_));
}

absl::StatusOr<int> EtcdCluster::Leader(absl::Duration timeout) {
  absl::Status healthy = WaitHealthy(timeout);
  if (!healthy.ok()) return healthy;
  for (int i = 0; i < size(); ++i) {
    if (members_[i].pid <= 0 || members_[i].paused) continue;
    absl::StatusOr<etcdserverpb::StatusResponse> st = Status(i);
    if (!st.ok()) continue;
    for (int j = 0; j < size(); ++j) {
      if (members_[j].id == st->leader()) return j;
    }
  }
  return absl::UnavailableError("leader is not a known member");
}

absl::StatusOr<int64_t> RawVersion(const EtcdCluster& cluster, int member,
                                   const std::string& key) {
  auto stub = etcdserverpb::KV::NewStub(cluster.Channel(member));
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (true) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    etcdserverpb::RangeRequest request;
    request.set_key(key);
    etcdserverpb::RangeResponse response;
    grpc::Status s = stub->Range(&context, request, &response);
    if (s.ok()) return response.kvs_size() == 0 ? 0 : response.kvs(0).version();
    // A linearizable read fails while the cluster elects a leader.
    if (absl::Now() >= end) return absl::UnavailableError(s.error_message());
    absl::SleepFor(absl::Milliseconds(20));
  }
}

absl::StatusOr<uint64_t> RaftIndex(const EtcdCluster& cluster, int member) {
  auto stub = etcdserverpb::Maintenance::NewStub(cluster.Channel(member));
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  etcdserverpb::StatusResponse response;
  grpc::Status s =
      stub->Status(&context, etcdserverpb::StatusRequest(), &response);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return response.raftindex();
}

}  // namespace testing_etcd
}  // namespace strongbox
