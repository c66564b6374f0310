// ESRGAN upscaling as a job: an RRDBNet file loaded on one device, images upscaled whole or in
// overlapping tiles whose seams are blended, so the compute buffers are those of one tile.
//
// Tiles overlap by `overlap` pixels. Each output pixel is a weighted mean of the tiles that
// cover it, the weights ramping (smootherstep) from one tile to the next across their overlap. Where the
// overlap is wider than twice the network's reach (RrdbNet::reach), the ramp runs only across
// the middle of it, where both tiles saw every input pixel the output depends on: the result
// equals the untiled pass up to rounding. Narrower overlaps (any full-size ESRGAN: 23 blocks
// reach about 350 pixels) ramp across the whole overlap: approximate, without visible seams.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "core/job_control.h"
#include "pipeline/backend.h"
#include "pipeline/image.h"

namespace sdn {

class RrdbNet;

struct UpscalerOptions {
  std::string path;
  std::string device = "cpu";
  int threads = 1;
  bool f16_weights = false;  // conv weights stored as f16
};

struct UpscalerInfo {
  int scale = 4;            // output pixels per input pixel along each side
  int features = 0;         // channels of the trunk
  int growth = 0;           // channels each dense-block conv adds
  int blocks = 0;           // RRDBs in the trunk
  int unshuffle = 1;        // pixel-unshuffle factor of the input (Real-ESRGAN x2plus: 2)
  double reach = 0;         // input pixels the network reads around each one it writes
  std::string convention;   // "basicsr" or "esrgan" (io/name_map_esrgan.h)
  std::string format;       // "safetensors", "gguf", "torch"
  std::string device;
  size_t weight_bytes = 0;
};

struct UpscaleParams {
  int tile = 0;      // input pixels per tile side; 0: the whole image in one pass
  int overlap = 0;   // pixels neighbouring tiles share, 0 … tile / 2
  int repeats = 1;   // the upscaler applied this many times, each on the last one's 8-bit result
};

class EsrganUpscaler {
 public:
  // Throws FileAccess, ModelFormat (malformed, or not an RRDBNet: names what does not fit),
  // Backend / InvalidArgument for the device, Resource. Progress, with a job: step 1 of 2 once
  // the file is read and its network known, 2 once the weights are on the device.
  explicit EsrganUpscaler(const UpscalerOptions& options, const JobControl* job = nullptr);
  ~EsrganUpscaler();

  const UpscalerInfo& info() const { return info_; }
  // RGB or RGBA (alpha dropped) 8-bit image -> RGB image `scale`^repeats times larger. Sides
  // that the unshuffle factor does not divide are reflect-padded first, the padding cropped
  // from the result (as Real-ESRGAN's inference does). Progress: one step per tile and repeat;
  // cancellation between tiles and inside each.
  Image upscale(const Image& image, const UpscaleParams& params, const JobControl& job);

 private:
  Latent upscale_planar(const Latent& rgb, const UpscaleParams& params, const JobControl& job, int& done, int steps);

  std::mutex mutex_;  // one computation at a time: the runtime's buffers are shared
  struct Loaded;
  std::unique_ptr<Loaded> loaded_;
  std::unique_ptr<Runtime> runtime_;
  UpscalerInfo info_;
};

}  // namespace sdn
