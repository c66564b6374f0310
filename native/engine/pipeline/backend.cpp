#include "pipeline/backend.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <unordered_set>

#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "ggml.h"
#include "pipeline/cpu_budget.h"
#include "pipeline/graph_work.h"

namespace sdn {

namespace {

std::once_flag g_load_once;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

const char* type_name(enum ggml_backend_dev_type t) {
  switch (t) {
    case GGML_BACKEND_DEVICE_TYPE_CPU: return "cpu";
    case GGML_BACKEND_DEVICE_TYPE_GPU: return "gpu";
    case GGML_BACKEND_DEVICE_TYPE_IGPU: return "igpu";
    default: return "accel";
  }
}

// Device ids are "<registry>:<index within registry>", lower-case; the CPU is just "cpu".
std::vector<std::pair<std::string, ggml_backend_dev_t>> enumerate() {
  std::vector<std::pair<std::string, ggml_backend_dev_t>> out;
  for (size_t r = 0; r < ggml_backend_reg_count(); ++r) {
    ggml_backend_reg_t reg = ggml_backend_reg_get(r);
    std::string reg_name = lower(ggml_backend_reg_name(reg));
    if (reg_name == "mtl") reg_name = "metal";  // ggml's Metal registry is called "MTL"
    for (size_t d = 0; d < ggml_backend_reg_dev_count(reg); ++d) {
      ggml_backend_dev_t dev = ggml_backend_reg_dev_get(reg, d);
      std::string id = ggml_backend_dev_type(dev) == GGML_BACKEND_DEVICE_TYPE_CPU && reg_name == "cpu"
                           ? std::string("cpu")
                           : reg_name + ":" + std::to_string(d);
      out.emplace_back(id, dev);
    }
  }
  return out;
}

template <typename Fn>
Fn proc(ggml_backend_t backend, const char* name) {
  ggml_backend_dev_t dev = ggml_backend_get_device(backend);
  if (!dev) return nullptr;
  ggml_backend_reg_t reg = ggml_backend_dev_backend_reg(dev);
  return reg ? reinterpret_cast<Fn>(ggml_backend_reg_get_proc_address(reg, name)) : nullptr;
}

}  // namespace

// ggml logs to stderr by default; a library must stay quiet unless asked (SDNODE_DEBUG=1).
static void log_to_stderr_if_debugging(ggml_log_level level, const char* text, void*) {
  static const bool debug = [] {
    const char* v = std::getenv("SDNODE_DEBUG");
    return v && *v && std::string(v) != "0";
  }();
  if (debug || level == GGML_LOG_LEVEL_ERROR) std::fputs(text, stderr);
}

void load_backends(const std::string& module_dir) {
  std::call_once(g_load_once, [&] {
    ggml_log_set(log_to_stderr_if_debugging, nullptr);
    ggml_backend_load_all_from_path(module_dir.empty() ? nullptr : module_dir.c_str());
  });
}

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out;
  for (auto& [id, dev] : enumerate()) {
    DeviceInfo info;
    info.id = id;
    info.backend = ggml_backend_reg_name(ggml_backend_dev_backend_reg(dev));
    info.name = ggml_backend_dev_name(dev);
    info.description = ggml_backend_dev_description(dev);
    info.type = type_name(ggml_backend_dev_type(dev));
    ggml_backend_dev_memory(dev, &info.memory_free, &info.memory_total);
    out.push_back(std::move(info));
  }
  return out;
}

SystemInfo system_info() {
  SystemInfo info;
  info.ggml_version = ggml_version();
  info.ggml_commit = SDNODE_GGML_COMMIT;  // from vendor/ggml's stamp: the source has no git metadata
  for (size_t r = 0; r < ggml_backend_reg_count(); ++r) {
    ggml_backend_reg_t reg = ggml_backend_reg_get(r);
    info.backends.emplace_back(ggml_backend_reg_name(reg));
    if (lower(ggml_backend_reg_name(reg)) != "cpu") continue;
    auto get_features = reinterpret_cast<ggml_backend_get_features_t>(
        ggml_backend_reg_get_proc_address(reg, "ggml_backend_get_features"));
    if (!get_features) continue;
    for (ggml_backend_feature* f = get_features(reg); f && f->name; ++f) info.cpu_features.emplace_back(f->name, f->value);
  }
  return info;
}

Runtime::Runtime(const std::string& device, int n_threads) : device_(device) {
  ggml_backend_dev_t chosen = nullptr;
  ggml_backend_dev_t cpu_dev = nullptr;
  for (auto& [id, dev] : enumerate()) {
    if (id == device) chosen = dev;
    if (id == "cpu") cpu_dev = dev;
  }
  if (!chosen) fail(ErrorCode::InvalidArgument, "unknown device '" + device + "' (see listDevices())");
  if (!cpu_dev) fail(ErrorCode::Backend, "no CPU backend was loaded: the package's CPU modules are missing");

  primary_dev_ = chosen;
  primary_ = ggml_backend_dev_init(chosen, nullptr);
  if (!primary_) fail(ErrorCode::Backend, "device '" + device + "' failed to start");
  cpu_ = chosen == cpu_dev ? primary_ : ggml_backend_dev_init(cpu_dev, nullptr);
  if (!cpu_) {
    ggml_backend_free(primary_);
    fail(ErrorCode::Backend, "the CPU backend failed to start");
  }
  n_threads_ = std::clamp(n_threads, 1, CpuBudget::process().size());
  if (auto set_threads = proc<ggml_backend_set_n_threads_t>(cpu_, "ggml_backend_set_n_threads")) {
    set_threads(cpu_, n_threads_);
    applied_threads_ = n_threads_;
  }
  renew_per_graph_ = lower(ggml_backend_reg_name(ggml_backend_dev_backend_reg(chosen))) == "vulkan";

  try {
    start_scheduler();
  } catch (...) {
    if (cpu_ != primary_) ggml_backend_free(cpu_);
    ggml_backend_free(primary_);
    throw;
  }
}

Runtime::~Runtime() {
  if (sched_) ggml_backend_sched_free(sched_);
  if (cpu_ && cpu_ != primary_) ggml_backend_free(cpu_);
  if (primary_) ggml_backend_free(primary_);
}

void Runtime::start_scheduler() {
  ggml_backend_t backends[2] = {primary_, cpu_};
  int n = cpu_ == primary_ ? 1 : 2;
  if (sched_graph_size_ == 0) sched_graph_size_ = GGML_DEFAULT_GRAPH_SIZE * 4;
  sched_ = ggml_backend_sched_new(backends, nullptr, n, sched_graph_size_, false, false);
  if (!sched_) fail(ErrorCode::Backend, "could not create the scheduler for '" + device_ + "'");
}

// ggml-vulkan keeps a pool of descriptor sets per backend context and reuses them from graph
// to graph, writing only the bindings each op's shader uses; the other bindings of a set keep
// the buffers an earlier op put there. Once the allocator frees a compute buffer to make a
// larger one, those leftovers name a destroyed VkBuffer. That is valid Vulkan (bindings a
// shader does not use need not be valid), but Mesa's lavapipe (22.x) binds every binding of a
// set and takes references on the freed buffer's resource: heap corruption a few graphs
// later. A new context has fresh descriptor sets and frees the old ones with it, so each
// graph gets one (about a millisecond). Weights live in device buffers, which outlive it.
void Runtime::renew_primary() {
  ggml_backend_sched_free(sched_);  // and the compute buffers, before the context that used them
  sched_ = nullptr;
  // The old context stays until a new one has started: backend() is never left dangling.
  ggml_backend_t fresh = ggml_backend_dev_init(primary_dev_, nullptr);
  if (!fresh) fail(ErrorCode::Backend, "device '" + device_ + "' failed to restart");
  ggml_backend_free(primary_);
  primary_ = fresh;
  primary_used_ = false;
  start_scheduler();
}

ggml_backend_buffer_type* Runtime::weight_buffer_type() const { return ggml_backend_get_default_buffer_type(primary_); }

ggml_backend_buffer_type* Runtime::compute_buffer_type() const { return ggml_backend_dev_buffer_type(primary_dev_); }

namespace {

// Nodes plus leafs (the tensors without an op the nodes read): what the scheduler's tables hold.
int nodes_and_leafs(ggml_cgraph* graph) {
  const int n = ggml_graph_n_nodes(graph);
  std::unordered_set<const ggml_tensor*> leafs;
  for (int i = 0; i < n; ++i) {
    const ggml_tensor* node = ggml_graph_node(graph, i);
    for (const ggml_tensor* src : node->src) {
      if (src && src->op == GGML_OP_NONE) leafs.insert(src);
    }
  }
  return n + static_cast<int>(leafs.size());
}

}  // namespace

// The scheduler's tables are sized when it is made, and ggml asserts (kills the process) when
// a graph outgrows them. Graphs whose large ops are split into pieces (nn/op_split.h) can,
// so a larger graph gets a larger scheduler.
void Runtime::fit_scheduler(ggml_cgraph* graph) {
  const int needed = nodes_and_leafs(graph);
  if (needed <= sched_graph_size_) return;
  if (sched_) ggml_backend_sched_free(sched_);
  sched_ = nullptr;
  sched_graph_size_ = std::max(needed, sched_graph_size_ * 2);
  start_scheduler();
}

size_t Runtime::planned_bytes(ggml_cgraph* graph) const {
  ggml_gallocr_t galloc = ggml_gallocr_new(compute_buffer_type());
  if (!galloc) fail(ErrorCode::Resource, "could not create a graph allocator");
  size_t bytes = 0;
  ggml_gallocr_reserve_n_size(galloc, graph, nullptr, nullptr, &bytes);
  ggml_gallocr_free(galloc);
  return bytes;
}

void Runtime::check_fits_device(ggml_cgraph* graph) {
  size_t free_bytes = 0, total_bytes = 0;
  ggml_backend_dev_memory(primary_dev_, &free_bytes, &total_bytes);
  if (free_bytes == 0) return;  // the device does not say
  // Every node planned on the device: at least what its share of the graph needs.
  const size_t planned = planned_bytes(graph);
  if (planned > free_bytes) {
    fail(ErrorCode::Resource, "not enough memory on '" + device_ + "' for the compute buffers: " +
                                  std::to_string(planned >> 20) + " MiB planned, " + std::to_string(free_bytes >> 20) +
                                  " MiB free");
  }
}

void Runtime::allocate(ggml_cgraph* graph) {
  if (renew_per_graph_ && (primary_used_ || !sched_)) renew_primary();
  if (!sched_) fail(ErrorCode::Backend, "device '" + device_ + "' has no scheduler: its restart failed");
  fit_scheduler(graph);
  primary_used_ = true;
  ggml_backend_sched_reset(sched_);
  // ggml_backend_sched_alloc_graph ignores a failed buffer allocation when it re-plans a graph
  // and then places tensors in the missing buffer (SIGSEGV: a 2048² TAE decode under
  // `ulimit -v`). So the buffers are made first, checked. On the CPU alone the scheduler's own
  // reservation does it (allocating the same graph then allocates nothing); with a GPU beside
  // the CPU, a reservation followed by the allocation of the same graph computed wrong results
  // on Vulkan (the split copies are made anew), so there the planned size is checked against
  // the device's free memory instead.
  if (cpu_ == primary_) {
    if (!ggml_backend_sched_reserve(sched_, graph)) {
      fail(ErrorCode::Resource, "not enough memory on '" + device_ + "' for the compute buffers");
    }
  } else {
    check_fits_device(graph);
  }
  if (!ggml_backend_sched_alloc_graph(sched_, graph)) {
    fail(ErrorCode::Resource, "not enough memory on '" + device_ + "' for the compute buffers");
  }
  graph_on_cpu_ = cpu_ == primary_;
  for (int i = 0, n = ggml_graph_n_nodes(graph); i < n && !graph_on_cpu_; ++i) {
    graph_on_cpu_ = ggml_backend_sched_get_tensor_backend(sched_, ggml_graph_node(graph, i)) == cpu_;
  }
  // A CPU graph of small nodes runs faster on one thread; a GPU graph's CPU nodes keep them all.
  graph_threads_ = cpu_ == primary_ ? threads_for_graph(graph, n_threads_) : n_threads_;
}

namespace {

struct ComputeState {
  const JobControl* job;
  int nodes_per_step;
  int steps;
  int nodes_seen = 0;
  int reported = 0;
  bool report = true;
};

bool on_abort_check(void* data) { return static_cast<const ComputeState*>(data)->job->cancelled(); }

// The scheduler asks at every node whether to stop there; stopping every `nodes_per_step`
// nodes gives a point to report progress and to honour a cancel request, whatever the device.
bool on_eval(ggml_tensor* t, bool ask, void* data) {
  auto* s = static_cast<ComputeState*>(data);
  if (ask) return ++s->nodes_seen % s->nodes_per_step == 0;
  if (s->job->cancelled()) return false;
  int step = std::min(s->steps, s->nodes_seen / s->nodes_per_step);
  if (s->report && step > s->reported) {
    s->reported = step;
    s->job->report(step, s->steps);
  }
  return true;
}

}  // namespace

void Runtime::compute(ggml_cgraph* graph, const JobControl& job, int progress_steps) {
  job.throw_if_cancelled();
  if (!sched_) fail(ErrorCode::Backend, "device '" + device_ + "' has no scheduler: its restart failed");
  ComputeState state;
  state.job = &job;
  state.report = progress_steps > 0;
  int n_nodes = ggml_graph_n_nodes(graph);
  state.steps = std::max(1, std::min(progress_steps, n_nodes));
  state.nodes_per_step = std::max(1, n_nodes / state.steps);
  state.steps = n_nodes / state.nodes_per_step;

  // A GPU graph leaves the CPU threads idle (ggml's CPU threads exist only during a CPU
  // compute), so it does not wait for them; one with nodes the GPU lacks takes them.
  CpuBudget::Lease lease;
  if (graph_on_cpu_) lease = CpuBudget::process().acquire(graph_threads_, job);
  if (graph_on_cpu_ && graph_threads_ != applied_threads_) {
    if (auto set_threads = proc<ggml_backend_set_n_threads_t>(cpu_, "ggml_backend_set_n_threads")) set_threads(cpu_, graph_threads_);
    applied_threads_ = graph_threads_;
  }

  auto set_abort = proc<ggml_backend_set_abort_callback_t>(cpu_, "ggml_backend_set_abort_callback");
  if (set_abort) set_abort(cpu_, on_abort_check, &state);
  ggml_backend_sched_set_eval_callback(sched_, on_eval, &state);
  ggml_status status = ggml_backend_sched_graph_compute(sched_, graph);
  ggml_backend_sched_synchronize(sched_);
  ggml_backend_sched_set_eval_callback(sched_, nullptr, nullptr);
  if (set_abort) set_abort(cpu_, nullptr, nullptr);

  job.throw_if_cancelled();
  if (status == GGML_STATUS_ALLOC_FAILED) fail(ErrorCode::Resource, "out of memory while computing on '" + device_ + "'");
  if (status != GGML_STATUS_SUCCESS) fail(ErrorCode::Backend, "compute failed on '" + device_ + "'");
  if (state.report && state.reported < state.steps) job.report(state.steps, state.steps);
}

void Runtime::reset() {
  if (sched_) ggml_backend_sched_reset(sched_);
}

}  // namespace sdn
