#pragma once
// A real etcd for the tests: started in a network namespace of its own (named with a per-run
// prefix), listening only on an address inside it, with a private data dir. The test process's
// main thread joins that namespace, so every client and thread the tests create reach etcd and
// nothing outside can. Everything (process, namespace, data dir) is removed by the destructor,
// which checks that it is gone.
#include <sys/types.h>

#include <string>

namespace tetcd {

class EtcdServer {
 public:
  // `name`: the per-run prefix ("tetc<pid>"), used for the namespace and the data dir.
  explicit EtcdServer(std::string name);
  ~EtcdServer();
  EtcdServer(const EtcdServer&) = delete;
  EtcdServer& operator=(const EtcdServer&) = delete;

  std::string url() const;  // "http://10.231.0.1:<port>"
  const std::string& address() const { return address_; }
  const std::string& netns() const { return netns_; }

  void start();  // waits until it answers; throws when it does not within 10 s
  void kill();   // SIGKILL, the way a crash looks to clients
  void restart() {
    kill();
    start();
  }
  bool running() const { return pid_ > 0; }

 private:
  std::string name_;
  std::string netns_;
  std::string address_ = "10.231.0.1";
  int port_ = 23790;
  std::string data_dir_;
  pid_t pid_ = -1;
  int saved_netns_ = -1;
};

// The one server of this test binary (created by main before the tests run).
EtcdServer& server();

}  // namespace tetcd
