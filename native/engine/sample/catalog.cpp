#include "sample/catalog.h"

#include "core/error.h"

namespace sdn {

namespace {

// The entry of `table` named `name`, or an InvalidArgument error that lists the table's names.
template <typename Entry, size_t N>
const Entry& find_named(const Entry (&table)[N], const std::string& name, const char* what) {
  for (const Entry& e : table) {
    if (name == e.name) return e;
  }
  std::string known;
  for (const Entry& e : table) known += std::string(known.empty() ? "" : ", ") + e.name;
  fail(ErrorCode::InvalidArgument, std::string("unknown ") + what + " '" + name + "' (expected one of: " + known + ")");
}

template <typename Entry, size_t N, typename Kind>
const Entry* find_kind(const Entry (&table)[N], Kind kind) {
  for (const Entry& e : table) {
    if (e.kind == kind) return &e;
  }
  return nullptr;
}

}  // namespace

SamplerKind parse_sampler(const std::string& name) { return find_named(kSamplers, name, "sampler").kind; }

const char* sampler_name(SamplerKind kind) {
  const SamplerInfo* e = find_kind(kSamplers, kind);
  return e ? e->name : "?";
}

SchedulerKind parse_scheduler(const std::string& name) { return find_named(kSchedulers, name, "scheduler").kind; }

const char* scheduler_name(SchedulerKind kind) {
  const SchedulerInfo* e = find_kind(kSchedulers, kind);
  return e ? e->name : "?";
}

SchedulerKind default_scheduler(SamplerKind kind) {
  const SamplerInfo* e = find_kind(kSamplers, kind);
  return e ? e->default_scheduler : SchedulerKind::Discrete;
}

}  // namespace sdn
