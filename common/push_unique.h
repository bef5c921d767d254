#pragma once
// Appending to a small list that must not repeat an entry (nameservers, search domains,
// addresses, upstreams), keeping the first occurrence's order: linear, for lists of a handful.
#include <algorithm>
#include <vector>

namespace cni {

// Appends `x` unless `v` holds it already.
template <class T>
void push_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

}  // namespace cni
