#include "lib/grpc_transport/handler.h"

#include "absl/strings/str_cat.h"

namespace strongbox::grpc_transport {

absl::Status NodeServesPeers(HaCoordinator& coordinator) {
  const HaState state = coordinator.state();
  if (state == HaState::kSealed || state == HaState::kUninitialized) {
    return absl::FailedPreconditionError(
        absl::StrCat("this node is ", HaStateName(state)));
  }
  return absl::OkStatus();
}

absl::Status HandleForward(SecretStore& store, HaCoordinator& coordinator,
                           size_t max_message_bytes,
                           transport::ForwardRequest* request,
                           transport::ForwardResponse* response) {
  absl::Status status = NodeServesPeers(coordinator);
  if (status.ok() && request->request().size() > max_message_bytes) {
    status = absl::ResourceExhaustedError(absl::StrCat(
        "forwarded request is too large (", request->request().size(),
        " bytes, limit ", max_message_bytes, ")"));
  }
  if (status.ok()) {
    response->set_response(store.HandleSerialized(request->request()));
  }
  WipeMessage(request);
  return status;
}

}  // namespace strongbox::grpc_transport
