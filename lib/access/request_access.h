// What each store request needs from a policy, and what of it an audit
// entry may show.
//
// RequiredAccess(request): the capability and the policy path of every
// operation of strongbox/requests.proto, in one table (request_access.cc).
// Paths follow Vault's split, so a policy can grant reading data without
// reading metadata, or soft delete without destroy:
//
//   operation            capability  path
//   kv_put (cas unset)   update      <path>
//   kv_put (cas = 0)     create      <path>   (only-if-absent: a create-only
//   kv_put (cas > 0)     update      <path>    caller must send cas = 0)
//   kv_get               read        <path>
//   kv_delete            delete      <path>
//   kv_undelete          update      undelete/<path>
//   kv_destroy           update      destroy/<path>
//   kv_metadata_get      read        metadata/<path>
//   kv_metadata_put      update      metadata/<path>
//   kv_delete_all        delete      metadata/<path>
//   kv_list              list        metadata/<prefix>  (as Vault lists)
//   transit_create_key   create      transit/keys/<name>
//   transit_read_key     read        transit/keys/<name>
//   transit_delete_key   delete      transit/keys/<name>
//   transit_rotate_key   update      transit/keys/<name>/rotate
//   transit_config_key   update      transit/keys/<name>/config
//   transit_encrypt      update      transit/encrypt/<name>
//   transit_decrypt      update      transit/decrypt/<name>
//   transit_rewrap       update      transit/rewrap/<name>
//   policy_put/get/delete sudo       sys/policy/<name>   (kSysPolicyPrefix)
//   policy_list           sudo       sys/policy/
//
// KV paths are the secret paths as given (no "data/" prefix), so a KV
// secret whose path starts with "metadata/", "undelete/", "destroy/",
// "transit/" or "sys/" shares its policy path with those operations: a
// store that enforces policies refuses such secret paths
// (CheckKvPathOutsideReserved; SecretStore does, for every caller, while
// Options::enforce_policies is on).
//
// AuditFieldsOf(request / response): the request's and the response's
// details for an audit entry, each marked secret or not. Secret: every KV
// data value, every Transit plaintext, ciphertext and context. The views
// point into the message, which must outlive their use.
//
// Pure functions; thread-safe.
#ifndef STRONGBOX_LIB_ACCESS_REQUEST_ACCESS_H_
#define STRONGBOX_LIB_ACCESS_REQUEST_ACCESS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "lib/audit/audit_dispatcher.h"
#include "strongbox/call_context.h"
#include "strongbox/requests.pb.h"

namespace strongbox::access {

inline constexpr absl::string_view kSysPolicyPrefix = "sys/policy/";

struct Access {
  Capability capability = Capability::kRead;
  std::string path;
};

// INVALID_ARGUMENT for a request with no operation.
absl::StatusOr<Access> RequiredAccess(const store::Request& request);
// The same for operation `op` on `subject` (the path, prefix or key name
// the request names), without a request. `create_only`: a kv_put with
// cas = 0 (ignored for other operations).
absl::StatusOr<Access> RequiredAccess(store::Request::OpCase op,
                                      absl::string_view subject,
                                      bool create_only);
// Whether RequiredAccess(request) would succeed, without building the path.
bool NamesOperation(const store::Request& request);

// INVALID_ARGUMENT for a KV operation on a path whose first segment is
// "metadata", "undelete", "destroy", "transit" or "sys" (kv_list is not
// refused: its prefix is checked under "metadata/" anyway).
absl::Status CheckKvPathOutsideReserved(const store::Request& request);
// The same for operation `op` on `path`, without a request.
absl::Status CheckKvPathOutsideReserved(store::Request::OpCase op,
                                        absl::string_view path);

// Appends the details of `request` / `response` to `fields`.
void AuditFieldsOf(const store::Request& request,
                   std::vector<audit::AuditField>* fields);
void AuditFieldsOf(const store::Response& response,
                   std::vector<audit::AuditField>* fields);

}  // namespace strongbox::access

#endif  // STRONGBOX_LIB_ACCESS_REQUEST_ACCESS_H_
