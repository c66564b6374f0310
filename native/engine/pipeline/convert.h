// Model conversion: any model the readers take (safetensors, GGUF, PyTorch zip, diffusers folder) to a GGUF
// file in one weight type, quantizing the tensors that can take it (rules in nn/weight_types.cpp).
#pragma once

#include <string>
#include <vector>

#include "core/job_control.h"

namespace sdn {

struct ConvertedTensor {
  std::string name;
  std::string from;  // stored type in the source, e.g. "F32", "Q8_0"
  std::string to;    // type written, e.g. "Q4_0"
};

struct ConvertResult {
  std::vector<ConvertedTensor> tensors;
  std::vector<std::string> dropped;  // source tensors no SD component uses (EMA copies, buffers)
};

// Writes `dst` as GGUF: the source's tensors in `weight_type` per tensor rule — a Stable
// Diffusion checkpoint or diffusers folder under the internal (LDM single-file) naming that
// stable-diffusion.cpp also reads, any other file's tensors with their names unchanged — its metadata under sdnode.meta.*, and general.architecture "sdnode",
// sdnode.family, sdnode.source, sdnode.version. A dst that exists and is not a regular file
// (directory, FIFO, socket, device, symlink) is refused with OutputPath before the source is
// opened, and again right before the rename. The data goes to a hidden file in dst's folder,
// ".<name>.partial-<pid>-<random>", created exclusively, fsynced, renamed into place on success
// and removed on error or cancel, so dst is either complete or untouched.
// One progress step per tensor; cancellation between tensors. Peak memory: a few MB of
// conversion buffers beyond the source's memory map. Throws FileAccess, ModelFormat,
// ModelCompatibility (a tensor GGUF cannot hold), InvalidArgument (unknown weight type), Aborted,
// OutputPath.
ConvertResult convert_model(const std::string& src_path, const std::string& dst_path,
                                           const std::string& weight_type, const std::string& version,
                                           JobControl& job);

}  // namespace sdn
