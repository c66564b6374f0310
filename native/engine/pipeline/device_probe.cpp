#include "pipeline/device_probe.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <vector>

#include "core/job_control.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "pipeline/backend.h"

namespace sdn {

namespace {

// Small enough to cost nothing, large enough that mul_mat takes a real kernel path (several
// rows and columns, a reduction longer than one SIMD lane on every backend).
constexpr int kInner = 64, kRows = 16, kCols = 8;

// Exactly representable values (multiples of 1/8 in ±1): f16 and f32 kernels agree exactly.
float pattern(int i, int salt) { return static_cast<float>(((i * 37 + salt * 11) % 17) - 8) / 8.0f; }

}  // namespace

ProbeResult probe_device(const std::string& device) {
  ProbeResult result;
  const auto start = std::chrono::steady_clock::now();
  ggml_context* ctx = nullptr;
  try {
    Runtime runtime(device, 1);
    ggml_init_params params{ggml_tensor_overhead() * 8 + ggml_graph_overhead(), nullptr, true};
    ctx = ggml_init(params);
    if (!ctx) fail(ErrorCode::Resource, "no memory for the probe's graph");
    // ggml's mul_mat(a, b): a is [inner, rows], b is [inner, cols], the result [rows, cols].
    ggml_tensor* a = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, kInner, kRows);
    ggml_tensor* b = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, kInner, kCols);
    ggml_tensor* c = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, kRows);
    ggml_format_name(a, "probe.a");
    ggml_format_name(b, "probe.b");
    ggml_format_name(c, "probe.c");
    ggml_tensor* product = ggml_mul_mat(ctx, a, b);
    ggml_format_name(product, "probe.product");
    ggml_tensor* out = ggml_relu(ctx, ggml_add(ctx, product, c));
    ggml_format_name(out, "probe.out");
    ggml_cgraph* graph = ggml_new_graph(ctx);
    ggml_build_forward_expand(graph, out);
    runtime.allocate(graph);

    std::vector<float> av(kInner * kRows), bv(kInner * kCols), cv(kRows);
    for (size_t i = 0; i < av.size(); ++i) av[i] = pattern(static_cast<int>(i), 1);
    for (size_t i = 0; i < bv.size(); ++i) bv[i] = pattern(static_cast<int>(i), 2);
    for (size_t i = 0; i < cv.size(); ++i) cv[i] = pattern(static_cast<int>(i), 3);
    ggml_backend_tensor_set(a, av.data(), 0, av.size() * sizeof(float));
    ggml_backend_tensor_set(b, bv.data(), 0, bv.size() * sizeof(float));
    ggml_backend_tensor_set(c, cv.data(), 0, cv.size() * sizeof(float));
    JobControl job;
    runtime.compute(graph, job, 0);
    std::vector<float> got(kRows * kCols);
    ggml_backend_tensor_get(out, got.data(), 0, got.size() * sizeof(float));

    for (int col = 0; col < kCols; ++col) {
      for (int row = 0; row < kRows; ++row) {
        double sum = cv[row];
        for (int k = 0; k < kInner; ++k) sum += double(av[row * kInner + k]) * bv[col * kInner + k];
        const double want = std::max(sum, 0.0);
        const double diff = std::fabs(double(got[col * kRows + row]) - want);
        // NaN compares false: a NaN result must count as the worst error, not as none.
        result.max_error = diff <= result.max_error ? result.max_error : (std::isnan(diff) ? INFINITY : diff);
      }
    }
    runtime.reset();
    // Sums of 64 products of eighths are exact in f32; an f16 accumulator may round a little.
    result.ok = result.max_error <= 1e-2;
    if (!result.ok) result.error = "device '" + device + "' computed a wrong result (largest error " + std::to_string(result.max_error) + ")";
  } catch (const std::exception& e) {
    result.ok = false;
    result.error = e.what();
  }
  if (ctx) ggml_free(ctx);
  result.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace sdn
