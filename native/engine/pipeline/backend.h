// Devices and the compute runtime: which ggml backends are loaded, which device a job runs
// on, and running a graph there with cancellation and progress.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/job_control.h"

struct ggml_backend;
struct ggml_backend_device;
struct ggml_backend_sched;
struct ggml_cgraph;
struct ggml_backend_buffer_type;

namespace sdn {

// Loads ggml's backend modules (CPU variants, GPU backends) found in `module_dir`. Call once,
// before anything else; later calls are no-ops.
void load_backends(const std::string& module_dir);

struct DeviceInfo {
  std::string id;           // what a caller passes as `device`: "cpu", "vulkan:0", "cuda:1", "metal:0"
  std::string backend;      // ggml registry name: "CPU", "Vulkan", "CUDA", "Metal"
  std::string name;         // ggml device name
  std::string description;  // e.g. the GPU model
  std::string type;         // "cpu" | "gpu" | "igpu" | "accel"
  size_t memory_free = 0;
  size_t memory_total = 0;
};

std::vector<DeviceInfo> list_devices();

struct SystemInfo {
  std::string ggml_version;
  std::string ggml_commit;
  std::vector<std::string> backends;                              // loaded registries
  std::vector<std::pair<std::string, std::string>> cpu_features;  // of the CPU variant in use
};

SystemInfo system_info();

// A device ready to compute: its backend, the CPU backend for ops it lacks, a scheduler.
class Runtime {
 public:
  // `device` is a DeviceInfo::id. Throws InvalidArgument for an unknown device and Backend
  // when it cannot start. `n_threads` is the most CPU threads one compute uses (clamped to the
  // process's CpuBudget): computes take them from that budget, sharing the cores with other
  // runtimes' computes, not adding to them.
  Runtime(const std::string& device, int n_threads);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  const std::string& device() const { return device_; }
  // The most CPU threads one compute uses.
  int threads() const { return n_threads_; }
  // The device is the CPU (not a GPU with the CPU for the ops it lacks).
  bool is_cpu() const { return cpu_ == primary_; }
  ggml_backend* backend() const { return primary_; }
  ggml_backend_buffer_type* weight_buffer_type() const;
  // The device's buffer type for compute buffers; stable across Vulkan context renewals, so
  // other threads may plan graphs with it while a job computes.
  ggml_backend_buffer_type* compute_buffer_type() const;
  // Compute-buffer bytes the allocator plans for `graph` on this device, measured without
  // allocating (weights live in their own buffers: not counted). Any thread may call it.
  size_t planned_bytes(ggml_cgraph* graph) const;

  // Allocates `graph` (its inputs must be set after this returns) — call before setting inputs.
  // On Vulkan this starts a new backend context first (see backend.cpp): backend() changes.
  void allocate(ggml_cgraph* graph);
  // Computes the allocated graph, reporting progress in about `progress_steps` steps (none when
  // it is 0: the caller reports its own, e.g. per sampler step) and stopping between chunks
  // (or inside the CPU kernels) when `job` is cancelled. A graph with nodes on the CPU first
  // waits for its threads from the process's CpuBudget (Aborted if cancelled meanwhile); one
  // wholly on a GPU does not.
  void compute(ggml_cgraph* graph, const JobControl& job, int progress_steps);
  // Frees the compute buffers of the last graph.
  void reset();

 private:
  void start_scheduler();
  // Resource unless the graph's planned compute buffers fit the device's free memory.
  void check_fits_device(ggml_cgraph* graph);
  void renew_primary();
  void fit_scheduler(ggml_cgraph* graph);

  std::string device_;
  ggml_backend_device* primary_dev_ = nullptr;
  ggml_backend* primary_ = nullptr;
  ggml_backend* cpu_ = nullptr;  // same as primary_ for the CPU device
  ggml_backend_sched* sched_ = nullptr;
  bool renew_per_graph_ = false;  // Vulkan: a fresh context for each graph
  bool primary_used_ = false;     // a graph has been allocated on the current primary_
  int n_threads_ = 1;             // per compute, within the CpuBudget
  int graph_threads_ = 1;         // for the allocated graph (pipeline/graph_work.h)
  int applied_threads_ = 0;       // last given to the CPU backend
  bool graph_on_cpu_ = true;      // the allocated graph has nodes on the CPU backend
  int sched_graph_size_ = 0;      // the most nodes + leafs sched_ was made for
};

}  // namespace sdn
