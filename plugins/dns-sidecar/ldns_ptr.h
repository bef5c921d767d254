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

#include "common/c_ptr.h"

namespace cni::dns {

using PktPtr = CPtr<ldns_pkt, ldns_pkt_free>;
using RrPtr = CPtr<ldns_rr, ldns_rr_free>;
using RdfPtr = CPtr<ldns_rdf, ldns_rdf_deep_free>;
using BufferPtr = CPtr<ldns_buffer, ldns_buffer_free>;

// Memory that ldns hands out with malloc (ldns_pkt2wire, ldns_rdf2str).
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
template <class T>
using MallocPtr = std::unique_ptr<T, FreeDeleter>;

}  // namespace cni::dns
