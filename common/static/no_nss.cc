// Name-service lookups in the fully static plugins (TETHER_STATIC_LIBC): none. glibc's NSS
// (getaddrinfo, getprotobyname, ...) loads shared modules at run time, so a static binary that
// links it warns at link time and may misbehave on another glibc. No tether plugin resolves a
// name: every address and protocol in a CNI config is numeric. libnl refers to these functions
// (nl_addr_info, nl_addr_resolve, nl_ip_proto2str and their inverses), which tether never calls;
// these definitions take glibc's place in the static link, and fail the way a lookup that finds
// nothing does, so a caller falls back to the numeric form.
#include <netdb.h>
#include <sys/socket.h>

#include <cerrno>

extern "C" {

int getaddrinfo(const char*, const char*, const addrinfo*, addrinfo** res) {
  if (res != nullptr) *res = nullptr;
  return EAI_NONAME;
}

void freeaddrinfo(addrinfo*) {}

int getnameinfo(const sockaddr*, socklen_t, char*, socklen_t, char*, socklen_t, int) {
  return EAI_NONAME;
}

protoent* getprotobyname(const char*) { return nullptr; }

protoent* getprotobynumber(int) { return nullptr; }

}  // extern "C"
