#pragma once
// nftables over libmnl + libnftnl: one batch per CNI call, committed atomically.
//
// NftTransaction opens one NETLINK_NETFILTER socket in the calling thread's netns, reads the
// ruleset generation id and queues messages into one batch whose begin message carries that id.
// If anyone changed the ruleset since (another plugin, `nft -f`), the kernel refuses the whole
// batch with ERESTART; nft::run() then rebuilds and retries. Reads done inside the build
// function therefore see a ruleset that the commit is checked against (optimistic locking).
// Every ACK is drained, so a failed batch reports each failing message, with the kernel's
// extended-ACK text when it sends one.
// clang-format off
#include <netinet/in.h>  // first: libc-compat.h then keeps linux/in.h from redefining it
#include <linux/netfilter.h>
// clang-format on
#include <linux/netfilter/nf_tables.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

struct mnl_socket;
struct nftnl_batch;
struct nftnl_rule;

namespace cni::nft {

enum class Family : uint8_t {
  kInet = NFPROTO_INET,
  kIpv4 = NFPROTO_IPV4,
  kIpv6 = NFPROTO_IPV6,
  kBridge = NFPROTO_BRIDGE,
};

using Bytes = std::vector<uint8_t>;

// Value encoders for cmp data and set keys. Network-header fields are big endian; meta and ct
// values (mark, ct state, l4proto as u8) are host order, as the kernel loads them.
Bytes be16(uint16_t v);
Bytes be32(uint32_t v);
Bytes host32(uint32_t v);
Bytes u8(uint8_t v);
Bytes ipv4(const std::string& addr);  // "10.0.0.1"; throws on a bad address
Bytes ipv6(const std::string& addr);
Bytes ip(const std::string& addr);      // either family
Bytes ifname(const std::string& name);  // NUL padded to IFNAMSIZ, as `iifname "x"` compares
// A concatenated key or value: each field padded to 4 bytes, the layout of consecutive 32-bit
// registers (so `ip daddr . tcp dport` is concat({ipv4(a), be16(p)}), 8 bytes).
Bytes concat(const std::vector<Bytes>& fields);

// Registers. A concatenation loads its fields into consecutive 32-bit registers: reg32(0),
// reg32(ceil(len0/4)), ...; reg32(0) is the same storage as kReg1.
constexpr uint32_t kRegVerdict = NFT_REG_VERDICT;
constexpr uint32_t kReg1 = NFT_REG_1;
constexpr uint32_t reg32(unsigned word) { return NFT_REG32_00 + word; }

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

struct Verdict {
  int code = NF_ACCEPT;  // NF_ACCEPT, NF_DROP, NFT_RETURN, NFT_JUMP, NFT_GOTO, NFT_CONTINUE
  std::string chain{};   // for jump and goto
  static Verdict accept() { return {NF_ACCEPT, {}}; }
  static Verdict drop() { return {NF_DROP, {}}; }
  static Verdict ret() { return {NFT_RETURN, {}}; }
  static Verdict jump(std::string c) { return {NFT_JUMP, std::move(c)}; }
  static Verdict go_to(std::string c) { return {NFT_GOTO, std::move(c)}; }
  bool operator==(const Verdict&) const = default;
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

struct NatSpec {
  uint32_t type = NFT_NAT_DNAT;   // NFT_NAT_DNAT or NFT_NAT_SNAT
  Family family = Family::kIpv4;  // the address family of the registers (not of the table)
  std::optional<uint32_t> addr_min{}, addr_max{}, proto_min{}, proto_max{};  // source registers
  uint32_t flags = 0;  // NF_NAT_RANGE_*; MAP_IPS/PROTO_SPECIFIED follow from the registers
};

// Builds one rule from libnftnl expressions. Each method appends one expression (the short-hands
// a few) in the order the kernel evaluates them. Expressions that `nft` prints back as a
// statement must come in the shape nft itself emits: e.g. a transport-header match needs the
// `meta l4proto` dependency first, and in an inet table an IP header match needs `meta nfproto`.
class Rule {
 public:
  Rule(Family family, std::string table, std::string chain);
  Rule(Rule&&) noexcept;
  Rule& operator=(Rule&&) noexcept;
  ~Rule();

  Rule& meta(uint32_t key, uint32_t dreg = kReg1);  // NFT_META_IIFNAME, _L4PROTO, _MARK, ...
  Rule& payload(uint32_t base, uint32_t offset, uint32_t len, uint32_t dreg = kReg1);
  Rule& cmp(uint32_t op, const Bytes& data, uint32_t sreg = kReg1);  // NFT_CMP_EQ, _NEQ, ...
  Rule& bitwise(const Bytes& mask, const Bytes& xor_value, uint32_t sreg = kReg1,
                uint32_t dreg = kReg1);
  // Looks up sreg in a named set/map; dreg receives the mapped data (kRegVerdict for a vmap).
  Rule& lookup(const std::string& set, uint32_t sreg = kReg1,
               std::optional<uint32_t> dreg = std::nullopt, bool invert = false);
  Rule& immediate(const Bytes& data, uint32_t dreg = kReg1);
  Rule& verdict(const Verdict& v);
  Rule& counter();
  Rule& ct(uint32_t key, uint32_t dreg = kReg1);  // NFT_CT_STATE, ...
  Rule& nat(const NatSpec& spec);
  Rule& masquerade(uint32_t flags = 0);
  Rule& fib(uint32_t flags, uint32_t result, uint32_t dreg = kReg1);
  // Stored as the CLI stores it (userdata TLV NFTNL_UDATA_RULE_COMMENT), shown by `nft list`.
  Rule& comment(const std::string& text);

  // Short-hands for the matches the plugins use.
  Rule& iifname(const std::string& name, bool equal = true);
  Rule& oifname(const std::string& name, bool equal = true);
  Rule& nfproto(uint8_t proto);  // NFPROTO_IPV4/IPV6: needed before IP matches in inet tables
  Rule& l4proto(uint8_t proto);  // IPPROTO_TCP, ...
  // ip/ip6 saddr or daddr in prefix: addr must be 4 or 16 bytes.
  Rule& saddr(const Bytes& addr, int prefix_len, bool equal = true);
  Rule& daddr(const Bytes& addr, int prefix_len, bool equal = true);
  Rule& dport(uint8_t l4proto, uint16_t port);  // `tcp dport 80`
  Rule& ct_state(uint32_t mask);                // `ct state established,related` (NF_CT_STATE_*)
  Rule& fib_daddr_local();                      // `fib daddr type local`

  nftnl_rule* get() const { return rule_.get(); }
  Family family() const { return family_; }

 private:
  struct Deleter {
    void operator()(nftnl_rule* r) const;
  };
  Rule& addr_match(bool source, const Bytes& addr, int prefix_len, bool equal);
  Family family_;
  std::unique_ptr<nftnl_rule, Deleter> rule_;
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
  // Opens the socket in the current netns and reads the generation id.
  static NftTransaction open();
  NftTransaction(NftTransaction&&) noexcept;
  NftTransaction& operator=(NftTransaction&&) noexcept;
  ~NftTransaction();

  uint32_t genid() const { return genid_; }
  size_t size() const { return descriptions_.size(); }  // queued messages

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

  // Sends the batch and drains every ACK. Throws Error(kErrTryAgainLater) when the ruleset
  // changed since open() (ERESTART), Error(kErrInternal) listing each failed message otherwise.
  // Nothing of the batch is applied when it throws. The transaction is spent afterwards.
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
  struct SockDeleter {
    void operator()(mnl_socket* s) const;
  };
  struct BatchDeleter {
    void operator()(nftnl_batch* b) const;
  };
  NftTransaction() = default;
  char* next_msg(const std::string& description);  // buffer for the next batch message
  void msg_done();
  template <class Cb>
  int talk(char* buf, Cb&& cb);  // one request, every reply through cb; 0 or -errno
  void elements_msg(uint16_t type, Family family, const std::string& table, const std::string& set,
                    const std::vector<Element>& elements);

  std::unique_ptr<mnl_socket, SockDeleter> sock_;
  std::unique_ptr<nftnl_batch, BatchDeleter> batch_;
  uint32_t portid_ = 0;
  uint32_t genid_ = 0;
  uint32_t seq_ = 0;
  uint32_t first_seq_ = 0;  // seq of the first queued message, after batch begin
  uint32_t set_id_ = 0;
  bool spent_ = false;
  std::vector<std::string> descriptions_;  // per queued message, for error reports
};

// Runs build() on a fresh transaction and commits it; when the ruleset changed concurrently
// (ERESTART) it starts over, up to `attempts` times, then throws Error(kErrTryAgainLater).
void run(const std::function<void(NftTransaction&)>& build, int attempts = 5);

}  // namespace cni::nft
