// libFuzzer target for the PyTorch zip checkpoint reader (zip index + pickle interpreter):
// every input either loads or fails with ModelFormat (Resource when memory runs out).
// The reader takes a path, so each input is written to one scratch file first.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unistd.h>

#include "core/error.h"
#include "io/torch_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/sdnode-fuzz-torch-" + std::to_string(getpid()) + ".pth";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  sdn::PickleBudget budget;
  budget.max_nodes = 1u << 16;  // keep each run small; budgets are tested separately
  budget.max_memo = 1u << 14;
  budget.max_stack = 1u << 14;
  try {
    sdn::TensorStore store = sdn::read_torch_checkpoint(path, budget);
    unsigned sum = 0;
    for (const sdn::TensorInfo& t : store.tensors()) {
      if (static_cast<uint64_t>(t.numel()) * sdn::dtype_size(t.dtype) != t.nbytes) std::abort();
      for (size_t k = 0; k < t.nbytes; ++k) sum += t.data[k];
    }
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const sdn::Error& e) {
    if (e.code() != sdn::ErrorCode::ModelFormat && e.code() != sdn::ErrorCode::Resource) std::abort();
  }
  return 0;
}
