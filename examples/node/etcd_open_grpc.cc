// OpenNodeEtcdBackend() for the OpenSSL build: strongbox_node on etcd.
#include <algorithm>

#include "examples/node/node_host.h"
#include "strongbox/etcd_backend.h"

namespace strongbox {
namespace node {

absl::StatusOr<std::unique_ptr<Backend>> OpenNodeEtcdBackend(
    const NodeConfig& config) {
  EtcdBackendOptions options;
  options.endpoints = config.etcd_endpoints;
  options.prefix = config.etcd_prefix;
  options.ca_file = config.etcd_ca;
  options.cert_file = config.etcd_cert;
  options.key_file = config.etcd_key;
  // A write in flight when the etcd leader dies has an unknown outcome and
  // stalls its caller for this long; keep it near the lease's scale.
  options.request_timeout =
      std::clamp(config.lease_ttl / 2, absl::Seconds(1), absl::Seconds(3));
  absl::StatusOr<std::unique_ptr<EtcdBackend>> backend =
      EtcdBackend::Open(options);
  if (!backend.ok()) return backend.status();
  return std::unique_ptr<Backend>(*std::move(backend));
}

}  // namespace node
}  // namespace strongbox
