#pragma once
// Owners for C library objects (libnl's *_put, libnftnl's and ldns's *_free, ...): CPtr<T, fn>
// releases with fn through a stateless deleter, so it stays the size of a raw pointer and no
// caller ever frees by hand.
#include <memory>

namespace cni {

template <auto Release>
struct CDeleter {
  template <class T>
  void operator()(T* p) const {
    Release(p);
  }
};

template <class T, auto Release>
using CPtr = std::unique_ptr<T, CDeleter<Release>>;

}  // namespace cni
