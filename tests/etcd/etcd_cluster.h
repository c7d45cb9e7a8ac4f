// EtcdCluster: a real etcd cluster (Debian's /usr/bin/etcd) for tests —
// members on free loopback ports, data in a temporary directory, fast
// election timings (--heartbeat-interval=50 --election-timeout=250), and
// control of each member by pid (kill -9, SIGSTOP/SIGCONT, restart on its
// data directory). With `tls`, client URLs are https with certificates made
// at start by the openssl command-line tool (a CA, a server certificate for
// 127.0.0.1, a client certificate) and members require client certificates.
//
// Also a raw etcd client (RawKv) on the project's wire protos, for checks
// that must look past EtcdBackend (a key's etcd version count).
//
// Not thread-safe: one test thread drives it. Stops every member it started
// (SIGCONT, SIGTERM, then SIGKILL after 5 s) and removes its directory.
#ifndef STRONGBOX_TESTS_ETCD_ETCD_CLUSTER_H_
#define STRONGBOX_TESTS_ETCD_ETCD_CLUSTER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "lib/etcd/proto/rpc.grpc.pb.h"

namespace strongbox {
namespace testing_etcd {

struct ClusterOptions {
  int members = 3;
  bool tls = false;
  // etcd's --auth-token etc. are not used; auth is switched on through
  // EnableAuth() when a test wants it.
};

class EtcdCluster {
 public:
  // A cluster whose members do not agree on a leader in time (a member
  // that could not bind its port, taken by another process between the
  // pick and etcd's bind) is stopped and started again on fresh ports and
  // a fresh directory, up to 3 times; each failed attempt's reason and the
  // tail of each member's log go to stderr.
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> Start(
      const ClusterOptions& options = {});
  ~EtcdCluster();

  int size() const { return static_cast<int>(members_.size()); }
  // Client URLs of all members (or of member i).
  std::vector<std::string> endpoints() const;
  std::string endpoint(int i) const;
  pid_t pid(int i) const { return members_[i].pid; }
  bool running(int i) const { return members_[i].pid > 0; }
  const std::string& dir() const { return dir_; }

  // TLS material (files and PEM text), when started with tls.
  std::string ca_file() const { return dir_ + "/ca.pem"; }
  std::string client_cert_file() const { return dir_ + "/client.pem"; }
  std::string client_key_file() const { return dir_ + "/client-key.pem"; }
  // A second, unrelated CA (for wrong-CA tests).
  std::string other_ca_file() const { return dir_ + "/other-ca.pem"; }

  // kill -9 of member i, reaped.
  void Kill(int i);
  // SIGSTOP (returns once every thread of the member is stopped) /
  // SIGCONT.
  void Pause(int i);
  void Resume(int i);
  // Restarts a killed member on its data directory and waits until it
  // reports a leader.
  absl::Status Restart(int i);

  // The index of the member the live ones agree is leader, after waiting
  // up to `timeout` for one.
  absl::StatusOr<int> Leader(absl::Duration timeout = absl::Seconds(10));
  // Waits until every running member reports the same leader.
  absl::Status WaitHealthy(absl::Duration timeout);

  // A channel to member i (TLS credentials when needed).
  std::shared_ptr<grpc::Channel> Channel(int i) const;

 private:
  static absl::StatusOr<std::unique_ptr<EtcdCluster>> StartOnce(
      const ClusterOptions& options);
  // The last lines of each member's log, on stderr.
  void PrintLogTails() const;

  struct Member {
    std::string name;
    int client_port = 0;
    int peer_port = 0;
    std::string data_dir;
    pid_t pid = -1;
    bool paused = false;
    uint64_t id = 0;  // etcd member id, learned from Status
  };
  EtcdCluster() = default;
  absl::Status Spawn(int i, bool existing);
  absl::StatusOr<etcdserverpb::StatusResponse> Status(int i) const;
  absl::Status MakeCertificates();

  ClusterOptions options_;
  std::string dir_;
  std::string initial_cluster_;
  std::vector<Member> members_;
};

// The etcd version count (number of writes since creation) of `key`, read
// raw from member `member`; 0 if absent.
absl::StatusOr<int64_t> RawVersion(const EtcdCluster& cluster, int member,
                                   const std::string& key);

// Member `member`'s raft index (it grows with every proposal: writes, lease
// grants and revokes, failed Txns; not with reads).
absl::StatusOr<uint64_t> RaftIndex(const EtcdCluster& cluster, int member);

}  // namespace testing_etcd
}  // namespace strongbox

#endif  // STRONGBOX_TESTS_ETCD_ETCD_CLUSTER_H_
