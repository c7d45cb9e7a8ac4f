// gRPC credentials from a ClusterCredentials snapshot, for the forwarder
// (client) and the service (server). The key is copied into gRPC's own
// strings; our temporaries are wiped.
#ifndef STRONGBOX_LIB_GRPC_TRANSPORT_CREDENTIALS_H_
#define STRONGBOX_LIB_GRPC_TRANSPORT_CREDENTIALS_H_

#include <grpcpp/grpcpp.h>

#include <memory>

#include "absl/status/statusor.h"
#include "strongbox/cluster_credentials.h"

namespace strongbox::grpc_transport {

std::shared_ptr<grpc::ChannelCredentials> ClientCredentials(
    const ClusterCredentials& credentials);

std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(
    const ClusterCredentials& credentials);

// Channel arguments every forwarding channel uses: the cluster's server
// name, message limits.
grpc::ChannelArguments ChannelArgs(size_t max_message_bytes);

}  // namespace strongbox::grpc_transport

#endif  // STRONGBOX_LIB_GRPC_TRANSPORT_CREDENTIALS_H_
