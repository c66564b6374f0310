// Engine errors: every failure the engine reports carries a stable code that the addon
// turns into a JS error class (lib/errors.ts). Nothing under native/engine aborts on bad input.
#pragma once

#include <stdexcept>
#include <string>

namespace sdn {

enum class ErrorCode {
  FileAccess,          // ERR_FILE_ACCESS: missing, unreadable, a directory, not a regular file
  ModelFormat,         // ERR_MODEL_FORMAT: malformed file (names the field or tensor)
  ModelCompatibility,  // ERR_MODEL_COMPATIBILITY: well-formed, but the wrong or missing tensors
  InvalidArgument,     // ERR_INVALID_ARGUMENT: a value the JS layer should have refused
  Aborted,             // ABORT_ERR: the job's signal fired
  Resource,            // ERR_RESOURCE: out of memory, failed backend allocation
  Backend,             // ERR_BACKEND: a device failed to start or compute
  Internal,            // ERR_INTERNAL: a bug of ours
  OutputPath,          // ERR_OUTPUT_PATH: a destination that exists and is not a regular file
};

const char* error_code_name(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

[[noreturn]] inline void fail(ErrorCode code, const std::string& message) { throw Error(code, message); }

}  // namespace sdn
