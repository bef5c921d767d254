#include "common/control.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "common/crash_point.h"
#include "common/error.h"
#include "common/netconf.h"

namespace cni::control {

namespace {

sockaddr_un unix_addr(const std::string& path) {
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (path.size() >= sizeof(sa.sun_path)) {
    throw Error(kErrInvalidConfig, "socket path too long", path);
  }
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  return sa;
}

std::string dir_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
}

bool wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

}  // namespace

std::optional<Client> Client::connect(const std::string& path, const std::string& who) {
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket(AF_UNIX)");
  sockaddr_un sa = unix_addr(path);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    if (errno == ENOENT || errno == ECONNREFUSED) return std::nullopt;
    throw_errno("cannot connect to " + who + " at " + path, errno, kErrNotAvailable);
  }
  return Client(std::move(fd), who);
}

json Client::call(const json& request, int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  std::string out = request.dump() + "\n";
  for (size_t off = 0; off < out.size();) {
    ssize_t n = ::send(fd_.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Gone(who_ + " went away", std::strerror(errno));
    off += static_cast<size_t>(n);
  }
  std::string in;
  char buf[4096];
  while (in.find('\n') == std::string::npos) {
    if (!wait_for(fd_.get(), POLLIN, deadline)) {
      throw Gone(who_ + " did not answer", request.value("op", ""));
    }
    ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Gone(who_ + " went away", std::strerror(errno));
    if (n == 0) throw Gone(who_ + " closed the connection");
    in.append(buf, static_cast<size_t>(n));
  }
  json reply = parse_bounded(std::string_view(in).substr(0, in.find('\n')));
  if (!reply.is_object()) throw Error(kErrInternal, who_ + " sent an invalid reply", in);
  if (!reply.value("ok", false)) {
    // A daemon that names a CNI code speaks for itself; one that does not (the DNS daemon)
    // refused the request, and its words are the details.
    if (reply.contains("code")) {
      throw Error(reply.value("code", static_cast<int>(kErrInternal)),
                  reply.value("error", who_ + " refused the request"));
    }
    throw Error(kErrInternal, who_ + " refused the request", reply.value("error", ""));
  }
  crash_point("daemon-answered");
  return reply;
}

Fd listen(const std::string& path) {
  std::string dir = dir_of(path);
  ensure_dir(dir, 0700);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) throw_errno("stat " + dir, errno, kErrIo);
  if (st.st_uid != ::geteuid() || (st.st_mode & 022) != 0) {
    throw Error(kErrIo, "refusing the control socket directory",
                dir + " must be owned by uid " + std::to_string(::geteuid()) +
                    " and not writable by group or others");
  }
  Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket(AF_UNIX)");
  sockaddr_un sa = unix_addr(path);
  ::unlink(path.c_str());
  mode_t old = ::umask(0177);  // the socket is created 0600, never briefly wider
  int rc = ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof(sa));
  int err = errno;
  ::umask(old);
  if (rc != 0) throw_errno("cannot bind " + path, err, kErrIo);
  if (::chmod(path.c_str(), 0600) != 0) throw_errno("chmod " + path, errno, kErrIo);
  if (::listen(fd.get(), 128) != 0) throw_errno("listen " + path, errno, kErrIo);
  return fd;
}

bool peer_trusted(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  return cred.uid == 0 || cred.uid == ::geteuid();
}

json error_reply(int code, const std::string& message) {
  return {{"ok", false}, {"error", message}, {"code", code}};
}

}  // namespace cni::control
