// The short names of strongbox's status macros, for the library's own
// code (lib/ and tests/): RETURN_IF_ERROR and ASSIGN_OR_RETURN behave as
// STRONGBOX_RETURN_IF_ERROR and STRONGBOX_ASSIGN_OR_RETURN, documented in
// include/strongbox/status_macros.h. Never included by a public header, so
// a host's own macros of the same names cannot clash with these.
#ifndef STRONGBOX_LIB_UTIL_STATUS_MACROS_H_
#define STRONGBOX_LIB_UTIL_STATUS_MACROS_H_

#include "strongbox/status_macros.h"

#define RETURN_IF_ERROR(expr) STRONGBOX_RETURN_IF_ERROR(expr)
#define ASSIGN_OR_RETURN(lhs, expr) STRONGBOX_ASSIGN_OR_RETURN(lhs, expr)

#endif  // STRONGBOX_LIB_UTIL_STATUS_MACROS_H_
