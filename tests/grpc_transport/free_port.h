// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read
// it back, close): for tests that must name a listen address before the
// server starts. Another process may take it in between; tests on one
// machine's loopback accept that small race.
#ifndef STRONGBOX_TESTS_GRPC_TRANSPORT_FREE_PORT_H_
#define STRONGBOX_TESTS_GRPC_TRANSPORT_FREE_PORT_H_

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace strongbox::testing_transport {

inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_in addr = {};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  close(fd);
  return port;
}

}  // namespace strongbox::testing_transport

#endif  // STRONGBOX_TESTS_GRPC_TRANSPORT_FREE_PORT_H_
