// libFuzzer target for the PyTorch zip checkpoint reader (zip index + pickle interpreter):
// every input either loads, with each tensor's bytes inside the input, or fails with
// ModelFormat (Resource when memory runs out). The input is parsed in memory, as the other
// readers' targets do: writing each one to a file first held the run to a few hundred a second.
#include <cstdint>

#include "fuzz_support.h"
#include "io/torch_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  sdn::PickleBudget budget;
  budget.max_nodes = 1u << 16;  // keep each run small; budgets are tested separately
  budget.max_memo = 1u << 14;
  budget.max_stack = 1u << 14;
  return fuzz::run_one(
      data, size, [&](auto src) { return sdn::parse_torch_checkpoint(src, "fuzz", budget); },
      [](const sdn::TensorInfo& t) { return static_cast<uint64_t>(t.numel()) * sdn::dtype_size(t.dtype); });
}
