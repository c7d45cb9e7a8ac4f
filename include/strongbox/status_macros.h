// Status propagation macros for code that returns absl::Status or
// absl::StatusOr<T>: the library's own layers, and hosts that want the same
// idiom (Debian's Abseil ships neither these macros nor status matchers).
//
//   STRONGBOX_RETURN_IF_ERROR(expr);
//     Evaluates `expr` (an absl::Status) once; if it is not OK, returns it
//     from the enclosing function (which may return absl::Status or any
//     absl::StatusOr<T>).
//
//   STRONGBOX_ASSIGN_OR_RETURN(lhs, expr);
//     Evaluates `expr` (an absl::StatusOr<T>) once; if it is not OK,
//     returns its status; otherwise moves the value into `lhs`, which may
//     be a declaration (`std::string sealed`, `auto rev`) or an existing
//     variable. A statement, not an expression: it declares a hidden
//     variable, so use it at most once per line; `lhs` must not contain an
//     unparenthesized comma.
//
// Secrets: the hidden StatusOr lives to the end of the enclosing scope. A
// moved-from std::string that fit its inline buffer keeps its bytes there,
// unwiped, so do not pass secret bytes through ASSIGN_OR_RETURN as a
// StatusOr<std::string>: return SecretBytes (which a move empties) or wipe
// by hand.
//
// The messages are passed through untouched: these macros add no context
// and never log. Inside strongbox, lib/util/status_macros.h provides the
// short names RETURN_IF_ERROR and ASSIGN_OR_RETURN.
#ifndef STRONGBOX_STATUS_MACROS_H_
#define STRONGBOX_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define STRONGBOX_RETURN_IF_ERROR(expr)                  \
  do {                                                   \
    if (::absl::Status strongbox_status_macro_ = (expr); \
        !strongbox_status_macro_.ok()) {                 \
      return strongbox_status_macro_;                    \
    }                                                    \
  } while (false)

#define STRONGBOX_STATUS_MACROS_CONCAT_INNER_(a, b) a##b
#define STRONGBOX_STATUS_MACROS_CONCAT_(a, b) \
  STRONGBOX_STATUS_MACROS_CONCAT_INNER_(a, b)

#define STRONGBOX_ASSIGN_OR_RETURN(lhs, expr)                              \
  STRONGBOX_ASSIGN_OR_RETURN_IMPL_(                                        \
      STRONGBOX_STATUS_MACROS_CONCAT_(strongbox_statusor_, __LINE__), lhs, \
      expr)

#define STRONGBOX_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                     \
  if (!statusor.ok()) return std::move(statusor).status();    \
  lhs = *std::move(statusor)

#endif  // STRONGBOX_STATUS_MACROS_H_
