#pragma once
// The two shapes of a verb that does several things, one type each:
// - ADD undoes what it did when a later step fails: a Rollback, whose steps run in reverse
//   order unless the ADD got to commit().
// - DEL and GC try every step whatever the others do (SPEC: "on error continue"), then report:
//   an ErrorList, whose attempt() records a failure instead of propagating it, and whose raise()
//   throws the first failure's code with every failure's text.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.h"

namespace cni {

class Rollback {
 public:
  Rollback() = default;
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  // Runs the steps unless commit() or run() came first. A step that throws is logged (naming
  // `what`) and the others still run: the failure that caused the rollback is the one to report.
  ~Rollback() { run(); }

  // `step` undoes something just done. Steps run newest first, so a step may rely on what the
  // steps added before it undo. A step outlives nothing it captures by reference only if the
  // Rollback is declared after what it refers to.
  void add(std::string what, std::function<void()> step);
  // The work is complete: nothing is undone.
  void commit() { steps_.clear(); }
  // Undoes now, instead of at destruction (when the caller must see the undone state before it
  // reports the failure); afterwards there is nothing left to undo.
  void run() noexcept;

 private:
  struct Step {
    std::string what;
    std::function<void()> fn;
  };
  std::vector<Step> steps_;
};

class ErrorList {
 public:
  // Runs `fn`; a cni::Error or std::exception it throws is logged and recorded, named `what`,
  // instead of propagating (a non-cni exception is recorded with code 999). True when `fn`
  // completed.
  bool attempt(std::string_view what, const std::function<void()>& fn);
  bool empty() const { return errors_.empty(); }
  // Records `later`'s failures after this list's own, in their order: steps that ran alongside
  // each other (bridge DEL's IPAM child and its own kernel work) report as if in sequence.
  void append(const ErrorList& later);
  const std::vector<Error>& errors() const { return errors_; }
  // Every recorded failure's text, "; "-separated.
  std::string joined() const;
  // Nothing when empty. Otherwise: the only failure as it was, or, when several, an Error with
  // the first one's code and message and all of them as details.
  void raise() const;
  // Nothing when empty; otherwise Error{first failure's code, msg, joined()}.
  void raise(const std::string& msg) const;

 private:
  std::vector<Error> errors_;
};

}  // namespace cni
