#include "lib/grpc_transport/credentials.h"

#include <string>
#include <utility>

#include "strongbox/grpc_transport.h"
#include "strongbox/secret_bytes.h"

namespace strongbox::grpc_transport {

std::shared_ptr<grpc::ChannelCredentials> ClientCredentials(
    const ClusterCredentials& credentials) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = credentials.trust_bundle_pem;
  options.pem_cert_chain = credentials.certificate_chain_pem;
  options.pem_private_key = std::string(credentials.private_key_pem.view());
  std::shared_ptr<grpc::ChannelCredentials> out = grpc::SslCredentials(options);
  WipeString(options.pem_private_key);
  return out;
}

std::shared_ptr<grpc::ServerCredentials> ServerCredentialsFor(
    const ClusterCredentials& credentials) {
  grpc::SslServerCredentialsOptions options(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  options.pem_root_certs = credentials.trust_bundle_pem;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  pair.private_key = std::string(credentials.private_key_pem.view());
  pair.cert_chain = credentials.certificate_chain_pem;
  options.pem_key_cert_pairs.push_back(std::move(pair));
  std::shared_ptr<grpc::ServerCredentials> out =
      grpc::SslServerCredentials(options);
  for (auto& p : options.pem_key_cert_pairs) WipeString(p.private_key);
  return out;
}

grpc::ChannelArguments ChannelArgs(size_t max_message_bytes) {
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(std::string(kClusterServerName));
  args.SetMaxReceiveMessageSize(static_cast<int>(max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(max_message_bytes));
  // Fail fast and reconnect soon after a peer dies (failover).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return args;
}

}  // namespace strongbox::grpc_transport
