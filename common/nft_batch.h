#pragma once
// One nf_tables batch (internal to common/nft*): the messages between a batch begin and a batch
// end, sent as one datagram that the kernel applies all or nothing; and its commit: send, drain
// every ACK, raise what failed (the steps of nftables' mnl_batch_talk).
#include <libnftnl/batch.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/c_ptr.h"
#include "common/mnl.h"
#include "common/nft.h"

namespace cni::nft {

// The ruleset's generation id (NFT_MSG_GETGEN), the one a batch begin can carry. Throws Error.
uint32_t read_genid(mnl::Socket& sock);

// One message of a batch that the kernel refused.
struct Refusal {
  std::string what;    // the message, as queued: "add rule inet t forward"
  int error = 0;       // errno
  std::string reason;  // the kernel's extended-ACK text, when it sent one
};

// What became of a committed batch: applied when nothing was refused and every ACK arrived.
// The kernel applies all messages or none, so one refusal means nothing was applied.
struct Outcome {
  std::vector<Refusal> refused;
  bool acks_lost = false;  // the kernel dropped ACKs: whether it applied the batch is unknown
  size_t messages = 0;

  bool applied() const { return refused.empty() && !acks_lost; }
  // A refusal that someone else's commit in the meantime can explain: an object the batch
  // refers to vanished or appeared (ENOENT, EEXIST, EBUSY), or a generation check (ERESTART).
  bool could_be_conflict() const;
  std::string describe() const;  // each refused message and why
  // Error(kErrInternal) listing each refused message, or saying that the outcome is unknown.
  [[noreturn]] void raise() const;
};

class Batch {
 public:
  // The batch carries no generation id (common/nft.h says why).
  explicit Batch(mnl::Socket& sock);

  // Starts the next message and returns its header; build the payload into it, then done().
  // `description` names the message in error reports.
  nlmsghdr* put(uint16_t type, Family family, uint16_t flags, std::string description);
  void done();

  size_t size() const { return descriptions_.size(); }
  uint32_t next_set_id() { return ++set_id_; }

  // Ends the batch, sends it and drains the ACKs. The batch is spent afterwards.
  Outcome commit();

 private:
  char* buffer();
  void send();
  Outcome drain();
  const std::string& what(uint32_t seq) const;  // the description of message `seq`

  mnl::Socket& sock_;
  CPtr<nftnl_batch, nftnl_batch_free> batch_;
  uint32_t begin_seq_ = 0;
  uint32_t end_seq_ = 0;
  uint32_t set_id_ = 0;
  // Per message, in order. Reads on the same socket take sequence numbers too, so a message's
  // number is recorded rather than derived from its position.
  std::vector<uint32_t> seqs_;
  std::vector<std::string> descriptions_;
};

}  // namespace cni::nft
