#pragma once
// The one include of ldns, and owners for its C objects: a unique_ptr with a stateless deleter
// per type, so that every ldns allocation on every path (early returns on malformed input
// included) is freed.
//
// Without __bool_true_false_are_defined, ldns/common.h defines `true` and `false` as macros for
// 1 and 0, which silently turns C++ code included after it into ints (JSON `true` became 1).
// C++ has bool, true and false, which is exactly what the macro promises.
#ifndef __bool_true_false_are_defined
#define __bool_true_false_are_defined 1
#endif
#include <ldns/ldns.h>

#include <memory>

namespace cni::dns {

struct LdnsDeleter {
  void operator()(ldns_pkt* p) const { ldns_pkt_free(p); }
  void operator()(ldns_rr* p) const { ldns_rr_free(p); }
  void operator()(ldns_rdf* p) const { ldns_rdf_deep_free(p); }
  void operator()(ldns_buffer* p) const { ldns_buffer_free(p); }
};

using PktPtr = std::unique_ptr<ldns_pkt, LdnsDeleter>;
using RrPtr = std::unique_ptr<ldns_rr, LdnsDeleter>;
using RdfPtr = std::unique_ptr<ldns_rdf, LdnsDeleter>;
using BufferPtr = std::unique_ptr<ldns_buffer, LdnsDeleter>;

// Memory that ldns hands out with malloc (ldns_pkt2wire, ldns_rdf2str).
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <class T>
using MallocPtr = std::unique_ptr<T, FreeDeleter>;

}  // namespace cni::dns
