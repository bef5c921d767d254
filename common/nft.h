#pragma once
// nftables over libmnl + libnftnl: one batch per CNI call, committed atomically.
//
// nft::run() is how a plugin changes the ruleset. It takes tether's host-wide commit lock
// (common/nft_lock.h), reads what it needs through an NftTransaction, queues messages into one
// batch and commits it, then lets the lock go. The lock is what keeps the reads true until the
// commit: no other tether call can change tether's tables in between.
//
// Other programs (kube-proxy, firewalld, Docker, `nft -f`) commit whenever they like, to tables
// of their own. The batch therefore does not carry the ruleset's generation id: with it, every
// one of their commits between tether's reads and its commit would refuse tether's batch
// (ERESTART), and on a busy node a call could fail however often it retried. Without it, their
// commits to other tables cannot touch tether's. A commit that does touch tether's tables
// (someone deleting tether's table by hand) makes tether's batch refer to something that is gone
// or already there: the kernel refuses it (ENOENT, EEXIST, EBUSY), the transaction sees that the
// generation moved since its reads, and nft::run() reads again and rebuilds, with jittered
// backoff, for as long as its time budget lasts.
//
// Every ACK is drained, so a failed batch reports each failing message, with the kernel's
// extended-ACK text when it sends one.
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/nft_rule.h"

namespace cni::mnl {
class Socket;
}

namespace cni::nft {

class Batch;

// The nft CLI's datatype ids (nftables include/datatype.h). The kernel ignores them; they and
// the byte order in the set's userdata are what make `nft list` print keys readably.
struct DataType {
  uint32_t id{};
  uint32_t len{};        // bytes
  uint32_t byteorder{};  // 1 host, 2 big endian (nftables enum byteorder)
};
inline constexpr DataType kTypeInteger{4, 4, 1};
inline constexpr DataType kTypeIpv4Addr{7, 4, 2};
inline constexpr DataType kTypeIpv6Addr{8, 16, 2};
inline constexpr DataType kTypeEtherAddr{9, 6, 2};
inline constexpr DataType kTypeInetProto{12, 1, 2};
inline constexpr DataType kTypeInetService{13, 2, 2};
inline constexpr DataType kTypeMark{19, 4, 1};
inline constexpr DataType kTypeIfname{41, 16, 1};

struct SetSpec {
  std::string name{};
  std::vector<DataType> key{};   // more than one field: a concatenation
  std::vector<DataType> data{};  // non-empty: a map to (a concatenation of) these
  bool verdict_map = false;      // a map to verdicts (data must be empty)
  // NFT_SET_INTERVAL, NFT_SET_TIMEOUT, ...; MAP is implied, and so are NFT_SET_CONCAT and the
  // field lengths that an interval set with a concatenated key needs.
  uint32_t flags = 0;
};

struct Element {
  Bytes key{};
  Bytes data{};                      // for data maps
  std::optional<Verdict> verdict{};  // for verdict maps
  // Interval sets with a concatenated key (NFT_SET_INTERVAL and more than one key field, which
  // the kernel keeps in its pipapo backend): each field of the element is the range from its
  // value in `key` to its value in `key_end`, both inclusive. Empty for every other set. Last,
  // so that brace-initialised {key, data} elements keep their meaning.
  Bytes key_end{};
};

struct Hook {
  uint32_t hooknum{};                // NF_INET_PRE_ROUTING, NF_INET_FORWARD, ...
  int32_t priority{};                // NF_IP_PRI_NAT_DST (-100), 0 (filter), 100 (srcnat), ...
  std::string type = "filter";       // "filter", "nat", "route"
  std::optional<uint32_t> policy{};  // NF_ACCEPT or NF_DROP
};

struct ChainSpec {
  std::string name{};
  std::optional<Hook> hook{};  // none: a regular chain reached by jump/goto
};

struct ChainInfo {
  std::string name{};
  std::optional<Hook> hook{};
  uint64_t handle = 0;
};

struct RuleInfo {
  std::string chain{};
  uint64_t handle = 0;
  std::string comment{};  // empty when the rule has none
};

class NftTransaction {
 public:
  // A transaction on `sock`, which it works through (and in whose netns): reads the generation
  // id, which tells a refusal caused by someone else's commit from one of our own making. The
  // socket must outlive the transaction.
  explicit NftTransaction(mnl::Socket& sock);
  // As above, on a socket of its own opened in the current netns.
  static NftTransaction open();
  NftTransaction(NftTransaction&&) noexcept;
  NftTransaction& operator=(NftTransaction&&) noexcept;
  ~NftTransaction();

  uint32_t genid() const { return genid_; }
  size_t size() const;  // queued messages

  // Queueing. "add" creates or keeps what exists (NLM_F_CREATE without EXCL); "delete" of
  // something absent fails the whole batch, so check with the reads first.
  void add_table(Family family, const std::string& table);
  void delete_table(Family family, const std::string& table);
  void add_chain(Family family, const std::string& table, const ChainSpec& chain);
  void delete_chain(Family family, const std::string& table, const std::string& chain);
  void flush_chain(Family family, const std::string& table, const std::string& chain);
  void add_set(Family family, const std::string& table, const SetSpec& set);
  void delete_set(Family family, const std::string& table, const std::string& set);
  void add_elements(Family family, const std::string& table, const std::string& set,
                    const std::vector<Element>& elements);
  void delete_elements(Family family, const std::string& table, const std::string& set,
                       const std::vector<Element>& elements);
  void add_rule(const Rule& rule);  // appended to its chain
  void delete_rule(Family family, const std::string& table, const std::string& chain,
                   uint64_t handle);

  // Sends the batch and drains every ACK. When the kernel refuses it, throws
  // Error(kErrTryAgainLater) if a change since this transaction began can explain why (the
  // generation moved, and a message found something gone or already there), and
  // Error(kErrInternal) listing each failed message otherwise. Nothing of the batch is applied
  // when it throws. The transaction is spent afterwards. Takes no lock: nft::run() does.
  void commit();

  // Reads, answered from the live ruleset. nullopt when the table/set/chain does not exist.
  bool table_exists(Family family, const std::string& table);
  std::optional<std::vector<ChainInfo>> list_chains(Family family, const std::string& table);
  std::optional<std::vector<Element>> list_elements(Family family, const std::string& table,
                                                    const std::string& set);
  // One element by its key (and key_end for a concatenated interval set), without dumping the
  // set: nullopt when the element, the set or the table does not exist.
  std::optional<Element> get_element(Family family, const std::string& table,
                                     const std::string& set, const Element& probe);
  std::optional<std::vector<RuleInfo>> list_rules(Family family, const std::string& table,
                                                  const std::string& chain);

 private:
  NftTransaction(std::unique_ptr<mnl::Socket> owned, mnl::Socket& sock);
  Batch& batch();  // created with the first queued message
  void elements_msg(uint16_t type, Family family, const std::string& table, const std::string& set,
                    const std::vector<Element>& elements);

  std::unique_ptr<mnl::Socket> owned_;  // when open() made the socket
  mnl::Socket* sock_ = nullptr;
  std::unique_ptr<Batch> batch_;
  uint32_t genid_ = 0;
  bool spent_ = false;
};

// How long nft::run() keeps trying: waiting for the commit lock, and rebuilding after a refusal
// that another program's change explains. Seconds, because a CNI DEL that fails leaks or makes
// the runtime retry forever, while runtimes give a call minutes.
inline constexpr std::chrono::seconds kRunBudget{10};

// Under the commit lock, runs build() on a fresh transaction and commits it. When the commit
// throws Error(kErrTryAgainLater) it waits (jittered, growing) and starts over, reads included,
// until `budget` has passed; then it throws that error, saying how often it tried. build() must
// not take other locks, and should read only what it needs (by key: get_element) -- the lock is
// held while it runs. Other errors, build()'s own included, go straight to the caller.
void run(mnl::Socket& sock, const std::function<void(NftTransaction&)>& build,
         std::chrono::milliseconds budget = kRunBudget);
// As above on a socket of its own, released after the lock (a release can wait for an RCU grace
// period: common/mnl.h).
void run(const std::function<void(NftTransaction&)>& build,
         std::chrono::milliseconds budget = kRunBudget);

}  // namespace cni::nft
