#include "common/undo.h"

#include <spdlog/spdlog.h>

namespace cni {

void Rollback::add(std::string what, std::function<void()> step) {
  steps_.push_back({std::move(what), std::move(step)});
}

void Rollback::run() noexcept {
  std::vector<Step> steps = std::move(steps_);
  steps_.clear();
  for (auto it = steps.rbegin(); it != steps.rend(); ++it) {
    try {
      it->fn();
    } catch (const std::exception& e) {
      spdlog::warn("rollback: {} failed: {}", it->what, e.what());
    }
  }
}

bool ErrorList::attempt(std::string_view what, const std::function<void()>& fn) {
  try {
    fn();
    return true;
  } catch (const Error& e) {
    spdlog::warn("{} failed: {}", what, e.what());
    errors_.push_back(e);
  } catch (const std::exception& e) {
    spdlog::warn("{} failed: {}", what, e.what());
    errors_.emplace_back(kErrInternal, std::string(what) + " failed", e.what());
  }
  return false;
}

void ErrorList::append(const ErrorList& later) {
  errors_.insert(errors_.end(), later.errors_.begin(), later.errors_.end());
}

std::string ErrorList::joined() const {
  std::string all;
  for (const Error& e : errors_) all += (all.empty() ? "" : "; ") + std::string(e.what());
  return all;
}

void ErrorList::raise() const {
  if (errors_.empty()) return;
  if (errors_.size() == 1) throw errors_.front();
  throw Error(errors_.front().code(), errors_.front().msg(), joined());
}

void ErrorList::raise(const std::string& msg) const {
  if (!errors_.empty()) throw Error(errors_.front().code(), msg, joined());
}

}  // namespace cni
