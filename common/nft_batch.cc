#include "common/nft_batch.h"

#include <linux/netlink.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/nft_obj.h"

namespace cni::nft {
namespace {

// A batch page holds several messages; one message may spill into the overrun area, so both
// bound the size of a single message (a rule, or one chunk of set elements).
constexpr uint32_t kBatchPage = 32 * 1024;
constexpr uint32_t kBatchOverrun = 32 * 1024;

struct Ack {
  int error = 0;  // positive errno, 0 for success
  std::string text;
};

// Reads an NLMSG_ERROR: error 0 is an ACK. With NETLINK_CAP_ACK the TLVs follow the header.
Ack parse_ack(const nlmsghdr* nlh) {
  if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) return {EBADMSG, "truncated ACK"};
  const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
  Ack out{-err->error, {}};
  if ((nlh->nlmsg_flags & NLM_F_ACK_TLVS) == 0) {
    return out;
  }
  size_t off = NLMSG_HDRLEN + sizeof(nlmsgerr);
  if ((nlh->nlmsg_flags & NLM_F_CAPPED) == 0) {
    off += err->msg.nlmsg_len - NLMSG_HDRLEN;
  }
  off = NLMSG_ALIGN(off);
  if (off >= nlh->nlmsg_len) {
    return out;
  }
  const char* end = reinterpret_cast<const char*>(nlh) + nlh->nlmsg_len;
  const char* p = reinterpret_cast<const char*>(nlh) + off;
  while (mnl_attr_ok(reinterpret_cast<const nlattr*>(p), static_cast<int>(end - p))) {
    const auto* attr = reinterpret_cast<const nlattr*>(p);
    if (mnl_attr_get_type(attr) == NLMSGERR_ATTR_MSG) {
      out.text = mnl_attr_get_str(attr);
    }
    p = reinterpret_cast<const char*>(mnl_attr_next(attr));
  }
  return out;
}

}  // namespace

bool Outcome::could_be_conflict() const {
  if (refused.empty()) return false;
  for (const Refusal& r : refused) {
    if (r.error != ENOENT && r.error != EEXIST && r.error != EBUSY && r.error != ERESTART) {
      return false;
    }
  }
  return true;
}

std::string Outcome::describe() const {
  std::string details;
  for (const Refusal& r : refused) {
    if (!details.empty()) details += "; ";
    details += r.what + ": " + std::strerror(r.error);
    if (!r.reason.empty()) details += " (" + r.reason + ")";
  }
  return details;
}

void Outcome::raise() const {
  if (!refused.empty()) {
    throw Error(kErrInternal, "nftables transaction failed", describe());
  }
  throw Error(kErrInternal, "nftables transaction: acknowledgements lost",
              "the outcome of " + std::to_string(messages) + " messages is unknown");
}

Batch::Batch(mnl::Socket& sock)
    : sock_(sock), batch_(non_null(nftnl_batch_alloc(kBatchPage, kBatchOverrun))) {
  begin_seq_ = sock_.next_seq();
  nftnl_batch_begin(buffer(), begin_seq_);
  done();
}

char* Batch::buffer() { return static_cast<char*>(nftnl_batch_buffer(batch_.get())); }

nlmsghdr* Batch::put(uint16_t type, Family family, uint16_t flags, std::string description) {
  if (end_seq_ != 0) {
    throw Error(kErrInternal, "nftables batch reused after commit");
  }
  seqs_.push_back(sock_.next_seq());
  descriptions_.push_back(std::move(description));
  return nftnl_nlmsg_build_hdr(buffer(), type, fam(family), flags | NLM_F_ACK, seqs_.back());
}

void Batch::done() {
  if (nftnl_batch_update(batch_.get()) < 0) {
    throw Error(kErrInternal, "out of memory building the nftables batch");
  }
}

Outcome Batch::commit() {
  end_seq_ = sock_.next_seq();
  nftnl_batch_end(buffer(), end_seq_);
  done();
  send();
  return drain();
}

void Batch::send() {
  std::vector<iovec> iov(static_cast<size_t>(nftnl_batch_iovec_len(batch_.get())));
  nftnl_batch_iovec(batch_.get(), iov.data(), static_cast<uint32_t>(iov.size()));
  size_t total = 0;
  for (const iovec& v : iov) total += v.iov_len;
  // The kernel takes the batch as one datagram and queues one ACK per message before sendmsg
  // returns; make room for both.
  sock_.reserve(total + 4096, descriptions_.size() * 1024 + 65536);
  sock_.send(iov);
}

const std::string& Batch::what(uint32_t seq) const {
  static const std::string batch = "batch";  // the begin or end message
  auto it = std::lower_bound(seqs_.begin(), seqs_.end(), seq);
  return it != seqs_.end() && *it == seq ? descriptions_[static_cast<size_t>(it - seqs_.begin())]
                                         : batch;
}

// Every ACK is queued by now: the kernel processes a batch synchronously, in sendmsg.
Outcome Batch::drain() {
  Outcome out;
  out.messages = descriptions_.size();
  const uint32_t last_seq = seqs_.empty() ? begin_seq_ : seqs_.back();
  bool last_acked = false;
  const bool complete = sock_.drain(begin_seq_, end_seq_, [&](const nlmsghdr* m) {
    if (m->nlmsg_type != NLMSG_ERROR) return;
    Ack ack = parse_ack(m);
    last_acked = last_acked || m->nlmsg_seq == last_seq;
    if (ack.error == 0) return;
    out.refused.push_back({what(m->nlmsg_seq), ack.error, std::move(ack.text)});
  });
  out.acks_lost = !complete || !last_acked;
  return out;
}

}  // namespace cni::nft
