// The part of ForwardingService (strongbox/grpc_transport.h) that a peer's
// bytes reach once TLS and gRPC are done with them: gRPC has verified the
// client's certificate and parsed the ForwardRequest; what is left is the
// node's state, the size limit, SecretStore::HandleSerialized() and the
// response. It links no gRPC, so //fuzz:forwarding_handler_fuzzer runs it
// under the default crypto provider (gRPC needs OpenSSL 3).
//
// Thread-safe (as the store and the coordinator are).
#ifndef STRONGBOX_LIB_GRPC_TRANSPORT_HANDLER_H_
#define STRONGBOX_LIB_GRPC_TRANSPORT_HANDLER_H_

#include <cstddef>

#include "absl/status/status.h"
#include "lib/grpc_transport/forwarding.pb.h"
#include "strongbox/ha_coordinator.h"
#include "strongbox/secret_store.h"

namespace strongbox::grpc_transport {

// FAILED_PRECONDITION while `coordinator`'s node is sealed or uninitialized
// (it serves no peer then); OK otherwise.
absl::Status NodeServesPeers(HaCoordinator& coordinator);

// Runs one forwarded request: NodeServesPeers(), then RESOURCE_EXHAUSTED
// when the request is above `max_message_bytes`, else OK with
// response->response() the store's serialized Response (a serialized
// INVALID_ARGUMENT Response for bytes that are no Request). Wipes *request
// on every path (it carries secrets).
absl::Status HandleForward(SecretStore& store, HaCoordinator& coordinator,
                           size_t max_message_bytes,
                           transport::ForwardRequest* request,
                           transport::ForwardResponse* response);

}  // namespace strongbox::grpc_transport

#endif  // STRONGBOX_LIB_GRPC_TRANSPORT_HANDLER_H_
