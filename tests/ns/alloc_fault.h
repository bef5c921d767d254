#pragma once
// Allocation failure on demand, for tests that need code to throw in the middle of parsing a
// kernel answer without any hook in the code under test: after fail_allocation_after(n), the
// next n allocations (operator new, this thread) succeed and the one after throws
// std::bad_alloc. The replacement operator new lives in mnl_test.cc.

namespace tnst {

void fail_allocation_after(long n);
void allocations_succeed();

}  // namespace tnst
