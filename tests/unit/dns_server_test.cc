// The DNS daemon's event loop, in-process and unprivileged: a control socket in a temp dir, no
// DNS listeners (nothing is registered).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "common/control.h"
#include "common/error.h"
#include "plugins/dns-sidecar/daemon.h"
#include "plugins/dns-sidecar/server.h"

namespace {

struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/tether-dns-server-unit-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path); }
};

// Consumes one byte of its pipe and then throws, and counts the calls.
class ThrowingWatch : public cni::dns::Watch {
 public:
  ThrowingWatch(int fd, std::atomic<int>& calls) : fd_(fd), calls_(calls) {}
  void on_event(uint32_t) override {
    char c;
    if (::read(fd_, &c, 1) != 1) return;
    ++calls_;
    throw std::runtime_error("injected failure \xff");
  }

 private:
  int fd_;
  std::atomic<int>& calls_;
};

}  // namespace

TEST_CASE("dns server: one event that throws is contained, counted, and the daemon serves on") {
  TempDir dir;
  cni::dns::ServerOptions opts;
  opts.state_dir = dir.path + "/state";
  opts.socket = dir.path + "/state/control.sock";
  opts.resolv_conf = dir.path + "/resolv.conf";
  cni::dns::Server server(opts);
  server.start();

  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
  std::atomic<int> calls{0};
  server.adopt_watch(fds[0], EPOLLIN, std::make_unique<ThrowingWatch>(fds[0], calls));
  REQUIRE(::write(fds[1], "x", 1) == 1);

  // Before the catch in the loop, this turn ended run() with the exception: the daemon died
  // for every network.
  CHECK_NOTHROW(server.run_once(1000));
  CHECK(calls == 1);
  CHECK(server.event_failures() == 1);

  // The loop keeps going: a second failing event, and a control client answered meanwhile.
  std::atomic<bool> done{false};
  std::thread loop([&] {
    while (!done) server.run_once(20);
  });
  REQUIRE(::write(fds[1], "y", 1) == 1);
  for (int i = 0; i < 1000 && calls < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  cni::dns::json reply;
  {
    auto client = cni::control::Client::connect(opts.socket, cni::dns::kDaemon);
    REQUIRE(client.has_value());
    reply = client->call({{"op", "list"}}, 5000);
  }
  done = true;
  loop.join();
  CHECK(reply["ok"] == true);
  CHECK(reply["eventFailures"] == 2);
  CHECK(server.event_failures() == 2);
  ::close(fds[0]);
  ::close(fds[1]);
}
