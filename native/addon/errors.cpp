#include "errors.h"

#include <new>

#include "core/error.h"

namespace sdnode {

ErrorInfo describe_current_exception() noexcept {
  try {
    throw;
  } catch (const sdn::Error& e) {
    return {sdn::error_code_name(e.code()), e.what()};
  } catch (const std::bad_alloc&) {
    return {"ERR_RESOURCE", "out of memory"};
  } catch (const std::exception& e) {
    return {"ERR_INTERNAL", std::string("internal error: ") + e.what()};
  } catch (...) {
    return {"ERR_INTERNAL", "internal error: unknown exception"};
  }
}

Napi::Error make_error(Napi::Env env, const ErrorInfo& info) {
  Napi::Error error = Napi::Error::New(env, info.message);
  error.Set("code", Napi::String::New(env, info.code));
  return error;
}

}  // namespace sdnode
