#include "core/error.h"

namespace sdn {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::FileAccess: return "ERR_FILE_ACCESS";
    case ErrorCode::ModelFormat: return "ERR_MODEL_FORMAT";
    case ErrorCode::ModelCompatibility: return "ERR_MODEL_COMPATIBILITY";
    case ErrorCode::InvalidArgument: return "ERR_INVALID_ARGUMENT";
    case ErrorCode::Aborted: return "ABORT_ERR";
    case ErrorCode::Resource: return "ERR_RESOURCE";
    case ErrorCode::Backend: return "ERR_BACKEND";
    case ErrorCode::Internal: return "ERR_INTERNAL";
    case ErrorCode::OutputPath: return "ERR_OUTPUT_PATH";
  }
  return "ERR_INTERNAL";
}

}  // namespace sdn
