// libmnl's API (libmnl/libmnl.h), for the fully static plugins (TETHER_STATIC_LIBC). Debian
// ships libmnl only as a shared library, and a static glibc link cannot take one; libnftnl.a
// and common/mnl.cc call these functions, so the static build links this file instead. It
// follows libmnl's documented behaviour, errno values included; tests/unit/mnl_abi_test.cc
// checks it, and passes against the real libmnl too (the sanitizer build links that one).
//
// Written for tether from the API's documentation; not derived from libmnl's source.
#include <libmnl/libmnl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace {

char* bytes(const void* p) { return static_cast<char*>(const_cast<void*>(p)); }

}  // namespace

struct mnl_socket {
  int fd;
  sockaddr_nl addr;
};

struct mnl_nlmsg_batch {
  char* buf;
  size_t limit;
  size_t len;
  char* cur;
  bool overflow;
};

extern "C" {

// Sockets.

mnl_socket* mnl_socket_open2(int bus, int flags) {
  auto* nl = static_cast<mnl_socket*>(std::calloc(1, sizeof(mnl_socket)));
  if (nl == nullptr) return nullptr;
  nl->fd = ::socket(AF_NETLINK, SOCK_RAW | flags, bus);
  if (nl->fd < 0) {
    std::free(nl);
    return nullptr;
  }
  return nl;
}

mnl_socket* mnl_socket_open(int bus) { return mnl_socket_open2(bus, 0); }

mnl_socket* mnl_socket_fdopen(int fd) {
  sockaddr_nl addr{};
  socklen_t len = sizeof(addr);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) return nullptr;
  auto* nl = static_cast<mnl_socket*>(std::calloc(1, sizeof(mnl_socket)));
  if (nl == nullptr) return nullptr;
  nl->fd = fd;
  nl->addr = addr;
  return nl;
}

int mnl_socket_bind(mnl_socket* nl, unsigned int groups, pid_t pid) {
  nl->addr = {};
  nl->addr.nl_family = AF_NETLINK;
  nl->addr.nl_groups = groups;
  nl->addr.nl_pid = static_cast<__u32>(pid);
  if (::bind(nl->fd, reinterpret_cast<sockaddr*>(&nl->addr), sizeof(nl->addr)) < 0) return -1;
  socklen_t len = sizeof(nl->addr);
  if (::getsockname(nl->fd, reinterpret_cast<sockaddr*>(&nl->addr), &len) < 0) return -1;
  if (len != sizeof(nl->addr) || nl->addr.nl_family != AF_NETLINK) {
    errno = EINVAL;
    return -1;
  }
  return 0;
}

int mnl_socket_close(mnl_socket* nl) {
  int ret = ::close(nl->fd);
  std::free(nl);
  return ret;
}

int mnl_socket_get_fd(const mnl_socket* nl) { return nl->fd; }

unsigned int mnl_socket_get_portid(const mnl_socket* nl) { return nl->addr.nl_pid; }

ssize_t mnl_socket_sendto(const mnl_socket* nl, const void* req, size_t siz) {
  sockaddr_nl to{};
  to.nl_family = AF_NETLINK;
  return ::sendto(nl->fd, req, siz, 0, reinterpret_cast<const sockaddr*>(&to), sizeof(to));
}

ssize_t mnl_socket_recvfrom(const mnl_socket* nl, void* buf, size_t siz) {
  sockaddr_nl from{};
  iovec iov{buf, siz};
  msghdr msg{};
  msg.msg_name = &from;
  msg.msg_namelen = sizeof(from);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  ssize_t n = ::recvmsg(nl->fd, &msg, 0);
  if (n < 0) return n;
  if ((msg.msg_flags & MSG_TRUNC) != 0) {
    errno = ENOSPC;
    return -1;
  }
  if (msg.msg_namelen != sizeof(from)) {
    errno = EINVAL;
    return -1;
  }
  return n;
}

int mnl_socket_setsockopt(const mnl_socket* nl, int type, void* buf, socklen_t len) {
  return ::setsockopt(nl->fd, SOL_NETLINK, type, buf, len);
}

int mnl_socket_getsockopt(const mnl_socket* nl, int type, void* buf, socklen_t* len) {
  return ::getsockopt(nl->fd, SOL_NETLINK, type, buf, len);
}

// Messages.

size_t mnl_nlmsg_size(size_t len) { return len + MNL_NLMSG_HDRLEN; }

size_t mnl_nlmsg_get_payload_len(const nlmsghdr* nlh) { return nlh->nlmsg_len - MNL_NLMSG_HDRLEN; }

nlmsghdr* mnl_nlmsg_put_header(void* buf) {
  std::memset(buf, 0, MNL_NLMSG_HDRLEN);
  auto* nlh = static_cast<nlmsghdr*>(buf);
  nlh->nlmsg_len = MNL_NLMSG_HDRLEN;
  return nlh;
}

void* mnl_nlmsg_put_extra_header(nlmsghdr* nlh, size_t size) {
  char* p = bytes(nlh) + nlh->nlmsg_len;
  nlh->nlmsg_len += MNL_ALIGN(size);
  std::memset(p, 0, size);
  return p;
}

void* mnl_nlmsg_get_payload(const nlmsghdr* nlh) { return bytes(nlh) + MNL_NLMSG_HDRLEN; }

void* mnl_nlmsg_get_payload_offset(const nlmsghdr* nlh, size_t offset) {
  return bytes(nlh) + MNL_NLMSG_HDRLEN + MNL_ALIGN(offset);
}

void* mnl_nlmsg_get_payload_tail(const nlmsghdr* nlh) {
  return bytes(nlh) + MNL_ALIGN(nlh->nlmsg_len);
}

bool mnl_nlmsg_ok(const nlmsghdr* nlh, int len) {
  return len >= static_cast<int>(sizeof(nlmsghdr)) && nlh->nlmsg_len >= sizeof(nlmsghdr) &&
         static_cast<int>(nlh->nlmsg_len) <= len;
}

nlmsghdr* mnl_nlmsg_next(const nlmsghdr* nlh, int* len) {
  *len -= static_cast<int>(MNL_ALIGN(nlh->nlmsg_len));
  return reinterpret_cast<nlmsghdr*>(bytes(nlh) + MNL_ALIGN(nlh->nlmsg_len));
}

bool mnl_nlmsg_seq_ok(const nlmsghdr* nlh, unsigned int seq) {
  return nlh->nlmsg_seq == 0 || seq == 0 || nlh->nlmsg_seq == seq;
}

bool mnl_nlmsg_portid_ok(const nlmsghdr* nlh, unsigned int portid) {
  return nlh->nlmsg_pid == 0 || portid == 0 || nlh->nlmsg_pid == portid;
}

// Batches: messages laid one after another in the caller's buffer, up to `limit` bytes.

mnl_nlmsg_batch* mnl_nlmsg_batch_start(void* buf, size_t limit) {
  auto* b = static_cast<mnl_nlmsg_batch*>(std::malloc(sizeof(mnl_nlmsg_batch)));
  if (b == nullptr) return nullptr;
  *b = {static_cast<char*>(buf), limit, 0, static_cast<char*>(buf), false};
  return b;
}

bool mnl_nlmsg_batch_next(mnl_nlmsg_batch* b) {
  auto* nlh = reinterpret_cast<nlmsghdr*>(b->cur);
  if (b->len + nlh->nlmsg_len > b->limit) {
    b->overflow = true;
    return false;
  }
  b->len += nlh->nlmsg_len;
  b->cur = b->buf + b->len;
  return true;
}

void mnl_nlmsg_batch_stop(mnl_nlmsg_batch* b) { std::free(b); }

size_t mnl_nlmsg_batch_size(mnl_nlmsg_batch* b) { return b->len; }

// Starts the batch again; a message that did not fit becomes its first.
void mnl_nlmsg_batch_reset(mnl_nlmsg_batch* b) {
  if (b->overflow) {
    auto* nlh = reinterpret_cast<nlmsghdr*>(b->cur);
    std::memmove(b->buf, b->cur, nlh->nlmsg_len);
    b->len = nlh->nlmsg_len;
    b->overflow = false;
  } else {
    b->len = 0;
  }
  b->cur = b->buf + b->len;
}

void* mnl_nlmsg_batch_head(mnl_nlmsg_batch* b) { return b->buf; }

void* mnl_nlmsg_batch_current(mnl_nlmsg_batch* b) { return b->cur; }

bool mnl_nlmsg_batch_is_empty(mnl_nlmsg_batch* b) { return b->len == 0; }

// Attributes.

uint16_t mnl_attr_get_type(const nlattr* attr) { return attr->nla_type & NLA_TYPE_MASK; }

uint16_t mnl_attr_get_len(const nlattr* attr) { return attr->nla_len; }

uint16_t mnl_attr_get_payload_len(const nlattr* attr) {
  return static_cast<uint16_t>(attr->nla_len - MNL_ATTR_HDRLEN);
}

void* mnl_attr_get_payload(const nlattr* attr) { return bytes(attr) + MNL_ATTR_HDRLEN; }

uint8_t mnl_attr_get_u8(const nlattr* attr) {
  return *static_cast<const uint8_t*>(mnl_attr_get_payload(attr));
}

uint16_t mnl_attr_get_u16(const nlattr* attr) {
  uint16_t v;
  std::memcpy(&v, mnl_attr_get_payload(attr), sizeof(v));
  return v;
}

uint32_t mnl_attr_get_u32(const nlattr* attr) {
  uint32_t v;
  std::memcpy(&v, mnl_attr_get_payload(attr), sizeof(v));
  return v;
}

uint64_t mnl_attr_get_u64(const nlattr* attr) {
  uint64_t v;
  std::memcpy(&v, mnl_attr_get_payload(attr), sizeof(v));
  return v;
}

const char* mnl_attr_get_str(const nlattr* attr) {
  return static_cast<const char*>(mnl_attr_get_payload(attr));
}

bool mnl_attr_ok(const nlattr* attr, int len) {
  return len >= static_cast<int>(sizeof(nlattr)) && attr->nla_len >= sizeof(nlattr) &&
         static_cast<int>(attr->nla_len) <= len;
}

nlattr* mnl_attr_next(const nlattr* attr) {
  return reinterpret_cast<nlattr*>(bytes(attr) + MNL_ALIGN(attr->nla_len));
}

int mnl_attr_type_valid(const nlattr* attr, uint16_t maxtype) {
  if (mnl_attr_get_type(attr) > maxtype) {
    errno = EOPNOTSUPP;
    return -1;
  }
  return 1;
}

namespace {

// The payload an attribute of each fixed-size type must have; 0: any length.
size_t fixed_len(mnl_attr_data_type type) {
  switch (type) {
    case MNL_TYPE_U8:
      return 1;
    case MNL_TYPE_U16:
      return 2;
    case MNL_TYPE_U32:
      return 4;
    case MNL_TYPE_U64:
    case MNL_TYPE_MSECS:
      return 8;
    default:
      return 0;
  }
}

int fail(int err) {
  errno = err;
  return -1;
}

int validate(const nlattr* attr, mnl_attr_data_type type, size_t want) {
  size_t len = mnl_attr_get_payload_len(attr);
  if (len < want) return fail(ERANGE);
  switch (type) {
    case MNL_TYPE_FLAG:
      if (len > 0) return fail(ERANGE);
      break;
    case MNL_TYPE_NUL_STRING:
      if (len == 0) return fail(ERANGE);
      if (mnl_attr_get_str(attr)[len - 1] != '\0') return fail(EINVAL);
      break;
    case MNL_TYPE_STRING:
      if (len == 0) return fail(ERANGE);
      break;
    case MNL_TYPE_NESTED:
      if (len != 0 && len < MNL_ATTR_HDRLEN) return fail(ERANGE);
      break;
    default:
      break;
  }
  if (want != 0 && len > want) return fail(ERANGE);
  return 0;
}

}  // namespace

int mnl_attr_validate(const nlattr* attr, mnl_attr_data_type type) {
  if (type >= MNL_TYPE_MAX) return fail(EINVAL);
  return validate(attr, type, fixed_len(type));
}

int mnl_attr_validate2(const nlattr* attr, mnl_attr_data_type type, size_t len) {
  if (type >= MNL_TYPE_MAX) return fail(EINVAL);
  return validate(attr, type, len);
}

int mnl_attr_parse_payload(const void* payload, size_t payload_len, mnl_attr_cb_t cb, void* data) {
  int ret = MNL_CB_OK;
  const char* end = static_cast<const char*>(payload) + payload_len;
  for (auto* a = static_cast<const nlattr*>(payload);
       mnl_attr_ok(a, static_cast<int>(end - reinterpret_cast<const char*>(a)));
       a = mnl_attr_next(a)) {
    ret = cb(a, data);
    if (ret <= MNL_CB_STOP) return ret;
  }
  return ret;
}

int mnl_attr_parse(const nlmsghdr* nlh, unsigned int offset, mnl_attr_cb_t cb, void* data) {
  const char* start = static_cast<const char*>(mnl_nlmsg_get_payload_offset(nlh, offset));
  const char* end = static_cast<const char*>(mnl_nlmsg_get_payload_tail(nlh));
  if (end < start) return MNL_CB_OK;
  return mnl_attr_parse_payload(start, static_cast<size_t>(end - start), cb, data);
}

int mnl_attr_parse_nested(const nlattr* nested, mnl_attr_cb_t cb, void* data) {
  return mnl_attr_parse_payload(mnl_attr_get_payload(nested), mnl_attr_get_payload_len(nested), cb,
                                data);
}

void mnl_attr_put(nlmsghdr* nlh, uint16_t type, size_t len, const void* data) {
  auto* attr = static_cast<nlattr*>(mnl_nlmsg_get_payload_tail(nlh));
  size_t total = MNL_ATTR_HDRLEN + len;
  attr->nla_type = type;
  attr->nla_len = static_cast<uint16_t>(total);
  char* payload = static_cast<char*>(mnl_attr_get_payload(attr));
  if (len > 0) std::memcpy(payload, data, len);
  std::memset(payload + len, 0, MNL_ALIGN(len) - len);
  nlh->nlmsg_len += MNL_ALIGN(total);
}

void mnl_attr_put_u8(nlmsghdr* nlh, uint16_t type, uint8_t data) {
  mnl_attr_put(nlh, type, sizeof(data), &data);
}

void mnl_attr_put_u16(nlmsghdr* nlh, uint16_t type, uint16_t data) {
  mnl_attr_put(nlh, type, sizeof(data), &data);
}

void mnl_attr_put_u32(nlmsghdr* nlh, uint16_t type, uint32_t data) {
  mnl_attr_put(nlh, type, sizeof(data), &data);
}

void mnl_attr_put_u64(nlmsghdr* nlh, uint16_t type, uint64_t data) {
  mnl_attr_put(nlh, type, sizeof(data), &data);
}

void mnl_attr_put_str(nlmsghdr* nlh, uint16_t type, const char* data) {
  mnl_attr_put(nlh, type, std::strlen(data), data);
}

void mnl_attr_put_strz(nlmsghdr* nlh, uint16_t type, const char* data) {
  mnl_attr_put(nlh, type, std::strlen(data) + 1, data);
}

bool mnl_attr_put_check(nlmsghdr* nlh, size_t buflen, uint16_t type, size_t len, const void* data) {
  if (nlh->nlmsg_len + MNL_ATTR_HDRLEN + MNL_ALIGN(len) > buflen) return false;
  mnl_attr_put(nlh, type, len, data);
  return true;
}

bool mnl_attr_put_u8_check(nlmsghdr* nlh, size_t buflen, uint16_t type, uint8_t data) {
  return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}

bool mnl_attr_put_u16_check(nlmsghdr* nlh, size_t buflen, uint16_t type, uint16_t data) {
  return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}

bool mnl_attr_put_u32_check(nlmsghdr* nlh, size_t buflen, uint16_t type, uint32_t data) {
  return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}

bool mnl_attr_put_u64_check(nlmsghdr* nlh, size_t buflen, uint16_t type, uint64_t data) {
  return mnl_attr_put_check(nlh, buflen, type, sizeof(data), &data);
}

bool mnl_attr_put_str_check(nlmsghdr* nlh, size_t buflen, uint16_t type, const char* data) {
  return mnl_attr_put_check(nlh, buflen, type, std::strlen(data), data);
}

bool mnl_attr_put_strz_check(nlmsghdr* nlh, size_t buflen, uint16_t type, const char* data) {
  return mnl_attr_put_check(nlh, buflen, type, std::strlen(data) + 1, data);
}

nlattr* mnl_attr_nest_start(nlmsghdr* nlh, uint16_t type) {
  auto* start = static_cast<nlattr*>(mnl_nlmsg_get_payload_tail(nlh));
  start->nla_type = static_cast<uint16_t>(NLA_F_NESTED | type);
  nlh->nlmsg_len += MNL_ATTR_HDRLEN;
  return start;
}

nlattr* mnl_attr_nest_start_check(nlmsghdr* nlh, size_t buflen, uint16_t type) {
  if (nlh->nlmsg_len + MNL_ATTR_HDRLEN > buflen) return nullptr;
  return mnl_attr_nest_start(nlh, type);
}

void mnl_attr_nest_end(nlmsghdr* nlh, nlattr* start) {
  start->nla_len = static_cast<uint16_t>(bytes(mnl_nlmsg_get_payload_tail(nlh)) - bytes(start));
}

void mnl_attr_nest_cancel(nlmsghdr* nlh, nlattr* start) {
  nlh->nlmsg_len -= static_cast<uint32_t>(bytes(mnl_nlmsg_get_payload_tail(nlh)) - bytes(start));
}

// Callbacks.

namespace {

// What a control message (type below NLMSG_MIN_TYPE) does with no callback of the caller's:
// an error carries errno (an acknowledgement, error 0, ends the run), DONE ends it, NOOP and
// OVERRUN are skipped.
int default_control(const nlmsghdr* nlh) {
  switch (nlh->nlmsg_type) {
    case NLMSG_ERROR: {
      if (nlh->nlmsg_len < mnl_nlmsg_size(sizeof(nlmsgerr))) {
        errno = EBADMSG;
        return MNL_CB_ERROR;
      }
      const auto* err = static_cast<const nlmsgerr*>(mnl_nlmsg_get_payload(nlh));
      errno = err->error < 0 ? -err->error : err->error;
      return err->error == 0 ? MNL_CB_STOP : MNL_CB_ERROR;
    }
    case NLMSG_DONE:
      return MNL_CB_STOP;
    default:
      return MNL_CB_OK;
  }
}

}  // namespace

int mnl_cb_run2(const void* buf, size_t numbytes, unsigned int seq, unsigned int portid,
                mnl_cb_t cb_data, void* data, mnl_cb_t* cb_ctl_array,
                unsigned int cb_ctl_array_len) {
  int ret = MNL_CB_OK;
  int len = static_cast<int>(numbytes);
  const auto* nlh = static_cast<const nlmsghdr*>(buf);
  while (mnl_nlmsg_ok(nlh, len)) {
    if (!mnl_nlmsg_portid_ok(nlh, portid)) return fail(ESRCH);
    if (!mnl_nlmsg_seq_ok(nlh, seq)) return fail(EPROTO);
    if ((nlh->nlmsg_flags & NLM_F_DUMP_INTR) != 0) return fail(EINTR);
    if (nlh->nlmsg_type >= NLMSG_MIN_TYPE) {
      if (cb_data != nullptr) ret = cb_data(nlh, data);
    } else if (nlh->nlmsg_type < cb_ctl_array_len) {
      if (cb_ctl_array != nullptr && cb_ctl_array[nlh->nlmsg_type] != nullptr) {
        ret = cb_ctl_array[nlh->nlmsg_type](nlh, data);
      }
    } else {
      ret = default_control(nlh);
    }
    if (ret <= MNL_CB_STOP) return ret;
    nlh = mnl_nlmsg_next(nlh, &len);
  }
  return ret;
}

int mnl_cb_run(const void* buf, size_t numbytes, unsigned int seq, unsigned int portid,
               mnl_cb_t cb_data, void* data) {
  return mnl_cb_run2(buf, numbytes, seq, portid, cb_data, data, nullptr, 0);
}

}  // extern "C"
