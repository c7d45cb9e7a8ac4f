#include "lib/etcd/client.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

namespace strongbox {
namespace etcd {
namespace {

// How long a failed endpoint is avoided while another one is READY.
constexpr absl::Duration kAvoidFor = absl::Seconds(5);

bool MessageHas(const grpc::Status& status, absl::string_view text) {
  return absl::StrContains(status.error_message(), text);
}

}  // namespace

bool IsEndpointFailure(const grpc::Status& status) {
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNKNOWN:
    case grpc::StatusCode::INTERNAL:
      return true;
    default:
      return false;
  }
}

Client::Client(const ClientOptions& options) : options_(options) {}

Client::~Client() = default;

absl::StatusOr<std::unique_ptr<Client>> Client::Create(
    const ClientOptions& options) {
  if (options.endpoints.empty()) {
    return absl::InvalidArgumentError("etcd: no endpoints given");
  }
  std::unique_ptr<Client> client(new Client(options));
  bool any_secure = false, any_plain = false;
  for (const std::string& url : options.endpoints) {
    absl::string_view rest = url;
    bool secure;
    if (absl::ConsumePrefix(&rest, "https://")) {
      secure = true;
    } else if (absl::ConsumePrefix(&rest, "http://")) {
      secure = false;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd endpoint \"", url,
          "\" must start with http:// or https:// (as etcd prints it)"));
    }
    absl::ConsumeSuffix(&rest, "/");
    const size_t colon = rest.rfind(':');
    int port = 0;
    if (colon == absl::string_view::npos || colon == 0 ||
        !absl::SimpleAtoi(rest.substr(colon + 1), &port) || port <= 0 ||
        port > 65535 || absl::StrContains(rest, "/")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "etcd endpoint \"", url, "\" is not scheme://host:port"));
    }
    (secure ? any_secure : any_plain) = true;
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (secure) {
      grpc::SslCredentialsOptions ssl;
      ssl.pem_root_certs = options.ca_pem;
      ssl.pem_private_key = options.key_pem;
      ssl.pem_cert_chain = options.cert_pem;
      creds = grpc::SslCredentials(ssl);
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    grpc::ChannelArguments args;
    // A member that comes back is found again within a second.
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetMaxReceiveMessageSize(-1);
    // Channels to different endpoints never share a connection.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto ep = std::make_unique<Endpoint>();
    ep->url = url;
    ep->channel = grpc::CreateCustomChannel(std::string(rest), creds, args);
    ep->kv = etcdserverpb::KV::NewStub(ep->channel);
    ep->lease = etcdserverpb::Lease::NewStub(ep->channel);
    ep->watch = etcdserverpb::Watch::NewStub(ep->channel);
    ep->maintenance = etcdserverpb::Maintenance::NewStub(ep->channel);
    ep->auth = etcdserverpb::Auth::NewStub(ep->channel);
    client->endpoints_.push_back(std::move(ep));
  }
  if (any_secure && any_plain) {
    return absl::InvalidArgumentError(
        "etcd endpoints mix http:// and https://; use one scheme");
  }
  if (!any_secure && (!options.ca_pem.empty() || !options.cert_pem.empty())) {
    return absl::InvalidArgumentError(
        "etcd TLS options given but the endpoints are http://; use https://");
  }
  if (options.cert_pem.empty() != options.key_pem.empty()) {
    return absl::InvalidArgumentError(
        "etcd client certificate and key must be given together");
  }
  if (options.username.empty() != options.password.empty()) {
    return absl::InvalidArgumentError(
        "etcd username and password must be given together");
  }
  {
    MutexLock lock(&client->mu_);
    client->avoid_until_.assign(client->endpoints_.size(),
                                absl::InfinitePast());
  }
  return client;
}

absl::Status Client::Connect() {
  const absl::Time deadline = absl::Now() + options_.dial_timeout;
  // Every channel starts connecting (a failover later finds them ready);
  // the first endpoint listed is preferred if it connects within half the
  // dial timeout, so the order given is the order used.
  for (auto& ep : endpoints_) ep->channel->GetState(/*try_to_connect=*/true);
  const absl::Time first_by = absl::Now() + options_.dial_timeout / 2;
  auto& first = endpoints_[0]->channel;
  for (grpc_connectivity_state state = first->GetState(true);
       (state == GRPC_CHANNEL_IDLE || state == GRPC_CHANNEL_CONNECTING) &&
       absl::Now() < first_by;
       state = first->GetState(true)) {
    first->WaitForStateChange(state, absl::ToChronoTime(first_by));
  }
  absl::StatusOr<int> ready = AwaitEndpoint(deadline);
  if (!ready.ok()) {
    // Ask gRPC why: a fail-fast call reports the last connection error.
    std::vector<std::string> reasons;
    for (auto& ep : endpoints_) {
      grpc::ClientContext context;
      context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
      context.set_wait_for_ready(false);
      etcdserverpb::StatusRequest request;
      etcdserverpb::StatusResponse response;
      grpc::Status s = ep->maintenance->Status(&context, request, &response);
      reasons.push_back(absl::StrCat(
          ep->url, ": ", s.ok() ? "connected late" : s.error_message()));
    }
    return absl::UnavailableError(
        absl::StrCat("etcd: no endpoint connected within the dial timeout (",
                     absl::FormatDuration(options_.dial_timeout),
                     "): ", absl::StrJoin(reasons, "; ")));
  }
  if (!options_.username.empty()) return Authenticate();
  return absl::OkStatus();
}

absl::Status Client::Authenticate() {
  etcdserverpb::AuthenticateRequest request;
  request.set_name(options_.username);
  request.set_password(options_.password);
  etcdserverpb::AuthenticateResponse response;
  absl::Status s =
      Call(Kind::kRead, "authenticate",
           [&](Endpoint& ep, grpc::ClientContext* context) {
             return ep.auth->Authenticate(context, request, &response);
           });
  if (!s.ok()) return s;
  MutexLock lock(&mu_);
  token_ = response.token();
  return absl::OkStatus();
}

absl::StatusOr<int> Client::AwaitEndpoint(absl::Time deadline) {
  const int n = endpoint_count();
  while (true) {
    const int start = preferred_.load(std::memory_order_relaxed);
    const absl::Time now = absl::Now();
    int avoided_ready = -1;
    for (int k = 0; k < n; ++k) {
      const int i = (start + k) % n;
      if (endpoints_[i]->channel->GetState(/*try_to_connect=*/true) !=
          GRPC_CHANNEL_READY) {
        continue;
      }
      bool avoided;
      {
        MutexLock lock(&mu_);
        avoided = now < avoid_until_[i];
      }
      if (avoided) {
        if (avoided_ready < 0) avoided_ready = i;
        continue;
      }
      if (i != start) preferred_.store(i, std::memory_order_relaxed);
      return i;
    }
    if (avoided_ready >= 0) return avoided_ready;
    if (now >= deadline) {
      return absl::UnavailableError("etcd: no endpoint is connected");
    }
    // Nothing READY: wait for a state change of the preferred channel, a
    // few milliseconds at a time so the others are looked at too.
    auto& channel = endpoints_[start]->channel;
    channel->WaitForStateChange(
        channel->GetState(false),
        absl::ToChronoTime(std::min(deadline, now + absl::Milliseconds(5))));
  }
}

void Client::PrepareContext(grpc::ClientContext* context, absl::Time deadline) {
  if (deadline != absl::InfiniteFuture()) {
    context->set_deadline(absl::ToChronoTime(deadline));
  }
  MutexLock lock(&mu_);
  if (!token_.empty()) context->AddMetadata("token", token_);
}

void Client::RegisterStream(int endpoint, grpc::ClientContext* context) {
  MutexLock lock(&mu_);
  streams_.emplace_back(endpoint, context);
}

void Client::UnregisterStream(grpc::ClientContext* context) {
  MutexLock lock(&mu_);
  streams_.erase(
      std::remove_if(streams_.begin(), streams_.end(),
                     [&](const auto& s) { return s.second == context; }),
      streams_.end());
}

void Client::EndpointFailed(int endpoint) {
  const int n = endpoint_count();
  int expected = endpoint;
  preferred_.compare_exchange_strong(expected, (endpoint + 1) % n);
  MutexLock lock(&mu_);
  avoid_until_[endpoint] = absl::Now() + kAvoidFor;
  for (auto& [ep, context] : streams_) {
    if (ep == endpoint) context->TryCancel();
  }
}

std::string Client::current_endpoint() const {
  return endpoints_[preferred_.load(std::memory_order_relaxed)]->url;
}

absl::Status Client::MapError(Kind kind, absl::string_view what,
                              const grpc::Status& status, int endpoint) const {
  const std::string where =
      absl::StrCat("etcd ", what, " at ", endpoints_[endpoint]->url, ": ");
  if (MessageHas(status, "authentication failed")) {
    return absl::UnauthenticatedError(
        absl::StrCat(where, "invalid username or password"));
  }
  switch (status.error_code()) {
    case grpc::StatusCode::INVALID_ARGUMENT:
      if (MessageHas(status, "user name is empty")) {
        return absl::UnauthenticatedError(
            absl::StrCat(where,
                         "the cluster requires authentication; give a username "
                         "and password"));
      }
      return absl::InvalidArgumentError(
          absl::StrCat(where, status.error_message()));
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::UnauthenticatedError(
          absl::StrCat(where, status.error_message()));
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::PermissionDeniedError(
          absl::StrCat(where, status.error_message()));
    case grpc::StatusCode::FAILED_PRECONDITION:
      return absl::FailedPreconditionError(
          absl::StrCat(where, status.error_message()));
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      if (MessageHas(status, "larger than max")) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, status.error_message()));
      }
      // "too many requests": refused before it was applied.
      return absl::UnavailableError(
          absl::StrCat(where, status.error_message(), " (not applied)"));
    default:
      break;
  }
  if (IsEndpointFailure(status)) {
    if (kind == Kind::kWrite) {
      return absl::UnavailableError(absl::StrCat(
          where,
          "write outcome unknown, not retried: ", status.error_message()));
    }
    return absl::UnavailableError(absl::StrCat(where, status.error_message()));
  }
  return absl::InternalError(absl::StrCat(where, status.error_message()));
}

absl::Status Client::CallOn(
    int endpoint, absl::string_view what,
    const std::function<grpc::Status(Endpoint&, grpc::ClientContext*)>& fn) {
  grpc::ClientContext context;
  PrepareContext(&context, absl::Now() + options_.request_timeout);
  grpc::Status s = fn(*endpoints_[endpoint], &context);
  if (s.ok()) return absl::OkStatus();
  if (IsEndpointFailure(s)) EndpointFailed(endpoint);
  return MapError(Kind::kRead, what, s, endpoint);
}

absl::Status Client::Call(
    Kind kind, absl::string_view what,
    const std::function<grpc::Status(Endpoint&, grpc::ClientContext*)>& fn) {
  const absl::Time deadline = absl::Now() + options_.request_timeout;
  const int n = endpoint_count();
  absl::Status last;
  for (int attempt = 0;; ++attempt) {
    absl::StatusOr<int> ep = AwaitEndpoint(deadline);
    if (!ep.ok()) {
      // Nothing was sent on this attempt: a write is known not applied.
      return absl::UnavailableError(absl::StrCat(
          "etcd ", what, ": no endpoint reachable within the request timeout",
          last.ok() ? "" : absl::StrCat(" (last error: ", last.message(), ")"),
          kind == Kind::kWrite && last.ok() ? " (not applied)" : ""));
    }
    // A read that may try another endpoint gives this one half the time
    // left, so a stopped member cannot eat the whole budget.
    absl::Time attempt_deadline = deadline;
    if (kind == Kind::kRead && attempt + 1 < n) {
      const absl::Time now = absl::Now();
      attempt_deadline =
          now + std::max((deadline - now) / 2, absl::Milliseconds(50));
    }
    grpc::ClientContext context;
    PrepareContext(&context, attempt_deadline);
    grpc::Status s = fn(*endpoints_[*ep], &context);
    if (s.ok()) return absl::OkStatus();
    if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED &&
        MessageHas(s, "invalid auth token") && !options_.username.empty() &&
        attempt == 0) {
      // The token expired: refused before anything was applied.
      absl::Status auth = Authenticate();
      if (!auth.ok()) return auth;
      continue;
    }
    if (IsEndpointFailure(s)) EndpointFailed(*ep);
    last = MapError(kind, what, s, *ep);
    if (kind == Kind::kWrite || !IsEndpointFailure(s) ||
        absl::Now() >= deadline) {
      return last;
    }
  }
}

}  // namespace etcd
}  // namespace strongbox
