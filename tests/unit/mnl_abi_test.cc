// libmnl's API as tether links it: common/static/mnl.cc in the static builds, the real libmnl
// in the sanitizer build (TETHER_STATIC off). The same cases pass against both, which is how
// the static build's implementation is held to libmnl's behaviour: message and attribute
// layout, validation and its errno values, the callback runner's verdicts, batches, sockets.
#include <doctest/doctest.h>
#include <libmnl/libmnl.h>
#include <linux/rtnetlink.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Attrs {
  std::vector<uint16_t> types;
  std::vector<nlattr*> attrs;
};

int collect(const nlattr* attr, void* data) {
  auto* out = static_cast<Attrs*>(data);
  out->types.push_back(mnl_attr_get_type(attr));
  out->attrs.push_back(const_cast<nlattr*>(attr));
  return MNL_CB_OK;
}

int stop_at_second(const nlattr*, void* data) {
  return ++*static_cast<int*>(data) == 2 ? MNL_CB_STOP : MNL_CB_OK;
}

// A message of `type` with sequence number `seq` and port `pid`, appended to `buf`.
nlmsghdr* put_msg(std::vector<char>& buf, uint16_t type, uint32_t seq, uint32_t pid,
                  uint16_t flags = 0) {
  size_t at = buf.size();
  buf.resize(at + 256);
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data() + at);
  nlh->nlmsg_type = type;
  nlh->nlmsg_seq = seq;
  nlh->nlmsg_pid = pid;
  nlh->nlmsg_flags = flags;
  return nlh;
}

void finish(std::vector<char>& buf, size_t at) {
  auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data() + at);
  buf.resize(at + MNL_ALIGN(nlh->nlmsg_len));
}

nlmsghdr* put_error(std::vector<char>& buf, int error, uint32_t seq) {
  size_t at = buf.size();
  nlmsghdr* nlh = put_msg(buf, NLMSG_ERROR, seq, 0);
  auto* err = static_cast<nlmsgerr*>(mnl_nlmsg_put_extra_header(nlh, sizeof(nlmsgerr)));
  err->error = error;
  finish(buf, at);
  return reinterpret_cast<nlmsghdr*>(buf.data() + at);
}

int count_data(const nlmsghdr*, void* data) {
  ++*static_cast<int*>(data);
  return MNL_CB_OK;
}

}  // namespace

TEST_CASE("mnl: headers, attributes and nests are laid out aligned") {
  std::array<char, 512> buf{};
  buf.fill('\xff');
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  CHECK(nlh->nlmsg_len == MNL_NLMSG_HDRLEN);
  CHECK(nlh->nlmsg_type == 0);
  auto* ifm = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  CHECK(ifm->ifi_index == 0);
  CHECK(nlh->nlmsg_len == MNL_NLMSG_HDRLEN + MNL_ALIGN(sizeof(ifinfomsg)));
  CHECK(mnl_nlmsg_get_payload(nlh) == static_cast<void*>(ifm));

  mnl_attr_put_u8(nlh, 1, 7);
  mnl_attr_put_u16(nlh, 2, 0x1234);
  mnl_attr_put_u32(nlh, 3, 0xdeadbeef);
  mnl_attr_put_u64(nlh, 4, 0x0102030405060708ull);
  mnl_attr_put_str(nlh, 5, "abc");
  mnl_attr_put_strz(nlh, 6, "eth0");
  nlattr* nest = mnl_attr_nest_start(nlh, 7);
  mnl_attr_put_u32(nlh, 1, 42);
  mnl_attr_put(nlh, 2, 3, "xyz");
  mnl_attr_nest_end(nlh, nest);
  CHECK(nlh->nlmsg_len % MNL_ALIGNTO == 0);
  CHECK(nest->nla_type == (NLA_F_NESTED | 7));
  CHECK(mnl_attr_get_type(nest) == 7);
  CHECK(mnl_attr_get_len(nest) == MNL_ATTR_HDRLEN + 8 + MNL_ATTR_HDRLEN + 4);
  CHECK(mnl_nlmsg_get_payload_tail(nlh) == buf.data() + nlh->nlmsg_len);

  Attrs top;
  CHECK(mnl_attr_parse(nlh, sizeof(ifinfomsg), collect, &top) == MNL_CB_OK);
  REQUIRE(top.types == std::vector<uint16_t>{1, 2, 3, 4, 5, 6, 7});
  CHECK(mnl_attr_get_u8(top.attrs[0]) == 7);
  CHECK(mnl_attr_get_payload_len(top.attrs[0]) == 1);
  CHECK(mnl_attr_get_len(top.attrs[0]) == MNL_ATTR_HDRLEN + 1);
  CHECK(mnl_attr_get_u16(top.attrs[1]) == 0x1234);
  CHECK(mnl_attr_get_u32(top.attrs[2]) == 0xdeadbeef);
  CHECK(mnl_attr_get_u64(top.attrs[3]) == 0x0102030405060708ull);
  CHECK(mnl_attr_get_payload_len(top.attrs[4]) == 3);
  CHECK(std::string(mnl_attr_get_str(top.attrs[5])) == "eth0");
  CHECK(mnl_attr_get_payload_len(top.attrs[5]) == 5);

  Attrs inner;
  CHECK(mnl_attr_parse_nested(top.attrs[6], collect, &inner) == MNL_CB_OK);
  REQUIRE(inner.types == std::vector<uint16_t>{1, 2});
  CHECK(mnl_attr_get_u32(inner.attrs[0]) == 42);
  CHECK(std::memcmp(mnl_attr_get_payload(inner.attrs[1]), "xyz", 3) == 0);

  Attrs raw;
  CHECK(mnl_attr_parse_payload(mnl_attr_get_payload(top.attrs[6]),
                               mnl_attr_get_payload_len(top.attrs[6]), collect, &raw) == MNL_CB_OK);
  CHECK(raw.types == inner.types);

  // A callback's STOP ends the walk and is what parse returns.
  int seen = 0;
  CHECK(mnl_attr_parse(nlh, sizeof(ifinfomsg), stop_at_second, &seen) == MNL_CB_STOP);
  CHECK(seen == 2);

  // A cancelled nest leaves the message as it was.
  uint32_t before = nlh->nlmsg_len;
  nlattr* n2 = mnl_attr_nest_start(nlh, 8);
  mnl_attr_put_u32(nlh, 1, 1);
  mnl_attr_nest_cancel(nlh, n2);
  CHECK(nlh->nlmsg_len == before);
}

TEST_CASE("mnl: the _check puts refuse what does not fit and write nothing") {
  std::array<char, 64> buf{};
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  CHECK(mnl_attr_put_u32_check(nlh, buf.size(), 1, 5));
  CHECK(nlh->nlmsg_len == MNL_NLMSG_HDRLEN + 8);
  CHECK_FALSE(mnl_attr_put_check(nlh, buf.size(), 2, 40, buf.data()));
  CHECK(nlh->nlmsg_len == MNL_NLMSG_HDRLEN + 8);
  CHECK(mnl_attr_put_strz_check(nlh, buf.size(), 3, "0123456789"));
  CHECK(mnl_attr_nest_start_check(nlh, nlh->nlmsg_len + 2, 4) == nullptr);
  CHECK(mnl_attr_nest_start_check(nlh, buf.size(), 4) != nullptr);
}

TEST_CASE("mnl: validation by type, with libmnl's errno values") {
  std::array<char, 256> buf{};
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.data());
  mnl_attr_put_u32(nlh, 1, 9);         // u32, right length
  mnl_attr_put_u16(nlh, 2, 9);         // u16 where a u32 is wanted
  mnl_attr_put(nlh, 3, 0, nullptr);    // empty: a flag, not a string
  mnl_attr_put_str(nlh, 4, "no-nul");  // a string without its NUL
  mnl_attr_put_strz(nlh, 5, "nul");    // a NUL-terminated string
  mnl_attr_put_u64(nlh, 6, 1);         // u64 where a u32 is wanted: too long
  Attrs a;
  REQUIRE(mnl_attr_parse(nlh, 0, collect, &a) == MNL_CB_OK);
  REQUIRE(a.attrs.size() == 6);

  CHECK(mnl_attr_validate(a.attrs[0], MNL_TYPE_U32) == 0);
  errno = 0;
  CHECK(mnl_attr_validate(a.attrs[1], MNL_TYPE_U32) == -1);
  CHECK(errno == ERANGE);
  CHECK(mnl_attr_validate(a.attrs[2], MNL_TYPE_FLAG) == 0);
  errno = 0;
  CHECK(mnl_attr_validate(a.attrs[0], MNL_TYPE_FLAG) == -1);
  CHECK(errno == ERANGE);
  errno = 0;
  CHECK(mnl_attr_validate(a.attrs[2], MNL_TYPE_STRING) == -1);
  CHECK(errno == ERANGE);
  CHECK(mnl_attr_validate(a.attrs[3], MNL_TYPE_STRING) == 0);
  errno = 0;
  CHECK(mnl_attr_validate(a.attrs[3], MNL_TYPE_NUL_STRING) == -1);
  CHECK(errno == EINVAL);
  CHECK(mnl_attr_validate(a.attrs[4], MNL_TYPE_NUL_STRING) == 0);
  errno = 0;
  CHECK(mnl_attr_validate(a.attrs[5], MNL_TYPE_U32) == -1);
  CHECK(errno == ERANGE);
  CHECK(mnl_attr_validate(a.attrs[5], MNL_TYPE_U64) == 0);
  CHECK(mnl_attr_validate(a.attrs[5], MNL_TYPE_BINARY) == 0);
  CHECK(mnl_attr_validate2(a.attrs[5], MNL_TYPE_BINARY, 8) == 0);
  errno = 0;
  CHECK(mnl_attr_validate2(a.attrs[5], MNL_TYPE_BINARY, 16) == -1);
  CHECK(errno == ERANGE);
  errno = 0;
  CHECK(mnl_attr_validate(a.attrs[0], MNL_TYPE_MAX) == -1);
  CHECK(errno == EINVAL);

  CHECK(mnl_attr_type_valid(a.attrs[5], 6) == 1);
  errno = 0;
  CHECK(mnl_attr_type_valid(a.attrs[5], 5) == -1);
  CHECK(errno == EOPNOTSUPP);
}

TEST_CASE("mnl: walking messages stops at a short or overlong one") {
  std::vector<char> buf;
  put_msg(buf, RTM_NEWLINK, 1, 0);
  finish(buf, 0);
  auto* nlh = reinterpret_cast<nlmsghdr*>(buf.data());
  int len = static_cast<int>(buf.size());
  CHECK(mnl_nlmsg_ok(nlh, len));
  CHECK_FALSE(mnl_nlmsg_ok(nlh, len - 1));
  CHECK_FALSE(mnl_nlmsg_ok(nlh, 3));
  nlmsghdr* next = mnl_nlmsg_next(nlh, &len);
  CHECK(len == 0);
  CHECK(reinterpret_cast<char*>(next) == buf.data() + buf.size());
  CHECK(mnl_nlmsg_size(4) == MNL_NLMSG_HDRLEN + 4);
  CHECK(mnl_nlmsg_get_payload_len(nlh) == 0);
  CHECK(mnl_nlmsg_seq_ok(nlh, 1));
  CHECK(mnl_nlmsg_seq_ok(nlh, 0));
  CHECK_FALSE(mnl_nlmsg_seq_ok(nlh, 2));
  CHECK(mnl_nlmsg_portid_ok(nlh, 77));
}

TEST_CASE("mnl: the callback runner's verdicts") {
  SUBCASE("data messages go to the callback; an acknowledgement ends the run") {
    std::vector<char> buf;
    put_msg(buf, RTM_NEWLINK, 5, 9);
    finish(buf, 0);
    size_t second = buf.size();
    put_msg(buf, RTM_NEWLINK, 5, 9);
    finish(buf, second);
    put_error(buf, 0, 5);
    int n = 0;
    CHECK(mnl_cb_run(buf.data(), buf.size(), 5, 9, count_data, &n) == MNL_CB_STOP);
    CHECK(n == 2);
  }
  SUBCASE("an error reply sets errno and fails the run") {
    std::vector<char> buf;
    put_error(buf, -EEXIST, 3);
    errno = 0;
    CHECK(mnl_cb_run(buf.data(), buf.size(), 3, 0, nullptr, nullptr) == MNL_CB_ERROR);
    CHECK(errno == EEXIST);
  }
  SUBCASE("DONE ends a dump; NOOP is skipped") {
    std::vector<char> buf;
    put_msg(buf, NLMSG_NOOP, 0, 0);
    finish(buf, 0);
    size_t at = buf.size();
    put_msg(buf, NLMSG_DONE, 0, 0);
    buf.resize(at + MNL_NLMSG_HDRLEN + 4);
    reinterpret_cast<nlmsghdr*>(buf.data() + at)->nlmsg_len = MNL_NLMSG_HDRLEN + 4;
    int n = 0;
    CHECK(mnl_cb_run(buf.data(), buf.size(), 0, 0, count_data, &n) == MNL_CB_STOP);
    CHECK(n == 0);
  }
  SUBCASE("a reply to another sequence number or port is refused") {
    std::vector<char> buf;
    put_msg(buf, RTM_NEWLINK, 4, 9);
    finish(buf, 0);
    int n = 0;
    errno = 0;
    CHECK(mnl_cb_run(buf.data(), buf.size(), 5, 9, count_data, &n) == MNL_CB_ERROR);
    CHECK(errno == EPROTO);
    errno = 0;
    CHECK(mnl_cb_run(buf.data(), buf.size(), 4, 8, count_data, &n) == MNL_CB_ERROR);
    CHECK(errno == ESRCH);
    CHECK(n == 0);
  }
  SUBCASE("an interrupted dump fails with EINTR") {
    std::vector<char> buf;
    put_msg(buf, RTM_NEWLINK, 1, 0, NLM_F_DUMP_INTR);
    finish(buf, 0);
    errno = 0;
    CHECK(mnl_cb_run(buf.data(), buf.size(), 1, 0, nullptr, nullptr) == MNL_CB_ERROR);
    CHECK(errno == EINTR);
  }
  SUBCASE("an error message too short for its header is EBADMSG") {
    std::vector<char> buf;
    put_msg(buf, NLMSG_ERROR, 1, 0);
    finish(buf, 0);
    errno = 0;
    CHECK(mnl_cb_run(buf.data(), buf.size(), 1, 0, nullptr, nullptr) == MNL_CB_ERROR);
    CHECK(errno == EBADMSG);
  }
  SUBCASE("the caller's control callbacks take the place of the defaults") {
    std::vector<char> buf;
    put_error(buf, -ENOENT, 1);
    mnl_cb_t ctl[NLMSG_MIN_TYPE] = {};
    ctl[NLMSG_ERROR] = [](const nlmsghdr*, void* data) {
      ++*static_cast<int*>(data);
      return MNL_CB_OK;
    };
    int n = 0;
    CHECK(mnl_cb_run2(buf.data(), buf.size(), 1, 0, nullptr, &n, ctl, NLMSG_MIN_TYPE) == MNL_CB_OK);
    CHECK(n == 1);
  }
}

TEST_CASE("mnl: a batch takes messages up to its limit; the one that overflowed starts the next") {
  std::array<char, 64> buf{};
  mnl_nlmsg_batch* b = mnl_nlmsg_batch_start(buf.data(), 40);
  REQUIRE(b != nullptr);
  CHECK(mnl_nlmsg_batch_is_empty(b));
  CHECK(mnl_nlmsg_batch_head(b) == buf.data());
  nlmsghdr* a = mnl_nlmsg_put_header(mnl_nlmsg_batch_current(b));
  a->nlmsg_type = 100;
  mnl_attr_put_u32(a, 1, 1);  // 24 bytes
  CHECK(mnl_nlmsg_batch_next(b));
  CHECK(mnl_nlmsg_batch_size(b) == 24);
  CHECK(mnl_nlmsg_batch_current(b) == buf.data() + 24);
  nlmsghdr* c = mnl_nlmsg_put_header(mnl_nlmsg_batch_current(b));
  c->nlmsg_type = 101;
  mnl_attr_put_u32(c, 1, 2);  // 24 more: past the limit of 40
  CHECK_FALSE(mnl_nlmsg_batch_next(b));
  CHECK(mnl_nlmsg_batch_size(b) == 24);
  mnl_nlmsg_batch_reset(b);
  CHECK(mnl_nlmsg_batch_size(b) == 24);
  CHECK(reinterpret_cast<nlmsghdr*>(buf.data())->nlmsg_type == 101);
  CHECK(mnl_nlmsg_batch_current(b) == buf.data() + 24);
  mnl_nlmsg_batch_reset(b);
  CHECK(mnl_nlmsg_batch_is_empty(b));
  mnl_nlmsg_batch_stop(b);
}

TEST_CASE("mnl: a route socket dumps the links to the end; a short buffer is ENOSPC") {
  mnl_socket* nl = mnl_socket_open(NETLINK_ROUTE);
  REQUIRE(nl != nullptr);
  CHECK(mnl_socket_get_fd(nl) >= 0);
  REQUIRE(mnl_socket_bind(nl, 0, MNL_SOCKET_AUTOPID) == 0);
  unsigned int portid = mnl_socket_get_portid(nl);
  CHECK(portid != 0);
  int on = 1;
  CHECK(mnl_socket_setsockopt(nl, NETLINK_EXT_ACK, &on, sizeof(on)) == 0);
  int got = 0;
  socklen_t len = sizeof(got);
  CHECK(mnl_socket_getsockopt(nl, NETLINK_EXT_ACK, &got, &len) == 0);
  CHECK(got == 1);

  auto dump = [&](uint32_t seq) {
    std::array<char, 128> req{};
    nlmsghdr* nlh = mnl_nlmsg_put_header(req.data());
    nlh->nlmsg_type = RTM_GETLINK;
    nlh->nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    nlh->nlmsg_seq = seq;
    auto* rt = static_cast<rtgenmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtgenmsg)));
    rt->rtgen_family = AF_UNSPEC;
    REQUIRE(mnl_socket_sendto(nl, nlh, nlh->nlmsg_len) == static_cast<ssize_t>(nlh->nlmsg_len));
  };

  dump(1);
  std::vector<char> rx(65536);
  int links = 0;
  int ret = MNL_CB_OK;
  while (ret > MNL_CB_STOP) {
    ssize_t n = mnl_socket_recvfrom(nl, rx.data(), rx.size());
    REQUIRE(n > 0);
    ret = mnl_cb_run(rx.data(), static_cast<size_t>(n), 1, portid, count_data, &links);
  }
  CHECK(ret == MNL_CB_STOP);
  CHECK(links >= 1);  // lo, at least

  dump(2);
  std::array<char, 16> tiny{};
  errno = 0;
  CHECK(mnl_socket_recvfrom(nl, tiny.data(), tiny.size()) == -1);
  CHECK(errno == ENOSPC);
  CHECK(mnl_socket_close(nl) == 0);
}
