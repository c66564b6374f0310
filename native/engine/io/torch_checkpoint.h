// PyTorch zip checkpoints (.pth, .ckpt, .bin): `<name>/data.pkl` plus `<name>/data/N` storages.
// The pickle is interpreted, never executed: only the opcodes and globals a state dict needs.
#pragma once

#include <string>

#include "io/tensor_store.h"

namespace sdn {

struct PickleBudget {
  size_t max_pickle_bytes = 64u << 20;  // data.pkl size
  size_t max_memo = 1u << 20;           // memo entries
  size_t max_stack = 1u << 20;          // values on the stack (all marks together)
  size_t max_depth = 64;                // nesting of containers
  size_t max_nodes = 8u << 20;          // values created in all
};

// Reads every tensor of the checkpoint. When the top-level dict wraps the weights (a
// "state_dict" entry holding a dict, as SD .ckpt files do), that dict is the state dict;
// tensors in nested dicts get "."-joined names; non-tensor values (step counts, strings) are
// skipped. Throws FileAccess / ModelFormat (the message names the offending part).
TensorStore read_torch_checkpoint(const std::string& path, const PickleBudget& budget = {});
// The same over bytes already in memory (tests, fuzzing); errors name `name_for_errors`.
TensorStore parse_torch_checkpoint(std::shared_ptr<ByteSource> bytes, const std::string& name_for_errors, const PickleBudget& budget = {});

}  // namespace sdn
