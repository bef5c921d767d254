#pragma once
// Kernel work a plugin's caller need not wait for, handed to a detached process.
//
// Some of what a plugin asks of the kernel is complete, as far as anyone can observe, long
// before the system call returns: a deleted veth is unregistered (gone from every listing, its
// name free) about a millisecond into RTM_DELLINK, and the rest of the call is the kernel
// waiting for its RCU callbacks (netdev_run_todo's rcu_barrier, most of the veth delete's time);
// the release of a netfilter socket after a deleting commit waits for that commit's deferred
// destroy (docs/nftables.md). A plugin that made the call itself would make its caller wait
// too. A grandchild made here makes it instead and exits once the kernel answers: it holds the
// descriptors it is given and nothing else (no stdio, no lock), and is nobody's child here, so
// no runtime waits for it or reaps it (init, or the nearest subreaper, does).
#include <span>

namespace cni {

// Runs `work(arg)` in such a grandchild, which then exits; `work` may make only
// async-signal-safe calls (the grandchild of a multi-threaded process). Every descriptor of the
// grandchild but `keep` (up to 8; negative ones are skipped) is closed first. Returns once the
// middle process is reaped, before or after `work` has run; false when no grandchild could be made
// (then `work` never runs).
bool run_detached(std::span<const int> keep, void (*work)(void*), void* arg);

}  // namespace cni
