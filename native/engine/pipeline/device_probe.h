// A device's self-test: one tiny graph computed there and checked against the host. The
// loader (lib/binary-loader.ts) runs it in a child process before it trusts a GPU module, so a
// broken driver fails a probe instead of the user's process.
#pragma once

#include <string>

namespace sdn {

struct ProbeResult {
  bool ok = false;
  std::string error;   // why not, when !ok
  double max_error = 0;  // largest |device − host| over the result
  double ms = 0;         // start, compute and read back
};

// Starts `device` (a DeviceInfo::id), computes relu(A·B + c) for small fixed A, B, c and
// compares it with the same sums done on the host. Never throws: failures are in the result.
ProbeResult probe_device(const std::string& device);

}  // namespace sdn
