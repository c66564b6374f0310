// Engine failures as JS values: an Error with a stable `code` (lib/errors.ts picks the class).
#pragma once

#include <exception>
#include <string>

#include <napi.h>

namespace sdnode {

struct ErrorInfo {
  std::string code;
  std::string message;
};

// Describes the exception in flight; call inside a catch block. Never throws.
ErrorInfo describe_current_exception() noexcept;

Napi::Error make_error(Napi::Env env, const ErrorInfo& info);

}  // namespace sdnode
