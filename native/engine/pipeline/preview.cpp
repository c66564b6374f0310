#include "pipeline/preview.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace sdn {

namespace {

// RGB in [-1, 1] per latent channel: rgb[c] = Σ_l latent[l] · weights[l][c] + bias[c].
struct LatentRgb {
  float weights[4][3];
  float bias[3];
};
// SD1.x/SD2.x: stable-diffusion-webui's "Approx cheap" preview (modules/sd_vae_approx.py,
// cheap_approximation), a least-squares fit of VAE-decoded colours on latents
// (discuss.huggingface.co/t/decoding-latents-to-rgb-without-upscaling/23204/2).
constexpr LatentRgb kSdLatentRgb = {{
                                        {0.298f, 0.207f, 0.208f},
                                        {0.187f, 0.286f, 0.173f},
                                        {-0.158f, 0.189f, 0.264f},
                                        {-0.184f, -0.271f, -0.473f},
                                    },
                                    {0.0f, 0.0f, 0.0f}};
// SDXL's VAE has its own latent space: stable-diffusion.cpp's SDXL projection with bias
// (latent-preview.h), fitted the same way.
constexpr LatentRgb kSdxlLatentRgb = {{
                                          {0.258303f, 0.277640f, 0.329699f},
                                          {-0.299701f, 0.105446f, 0.014194f},
                                          {0.050522f, 0.186163f, -0.143257f},
                                          {-0.211938f, -0.149892f, -0.080036f},
                                      },
                                      {0.144381f, -0.033313f, 0.007061f}};
constexpr int kScale = 8;  // pixels per latent cell along each side (the SD VAE's factor)

uint8_t to_byte(float v) {
  const float unit = (v + 1.0f) * 0.5f;
  if (!(unit > 0.0f)) return 0;  // NaN too
  if (unit >= 1.0f) return 255;
  return static_cast<uint8_t>(std::lround(unit * 255.0f));
}

std::shared_ptr<const ProgressImage> as_progress_image(Image&& image) {
  auto out = std::make_shared<ProgressImage>();
  out->width = image.width;
  out->height = image.height;
  out->channels = image.channels;
  out->data = std::move(image.data);
  return out;
}

}  // namespace

LatentFormat parse_latent_format(const std::string& name) {
  if (name.empty() || name == "sd") return LatentFormat::Sd;
  if (name == "sdxl") return LatentFormat::Sdxl;
  fail(ErrorCode::InvalidArgument, "latent format must be 'sd' or 'sdxl', got '" + name + "'");
}

Image latent2rgb(const Latent& latent, LatentFormat format) {
  const LatentRgb& f = format == LatentFormat::Sdxl ? kSdxlLatentRgb : kSdLatentRgb;
  if (latent.channels != 4)
    fail(ErrorCode::InvalidArgument, "latent2rgb takes 4-channel (SD1.x) latents, got " + std::to_string(latent.channels));
  const size_t cells = static_cast<size_t>(latent.width) * latent.height;
  if (latent.width <= 0 || latent.height <= 0 || latent.data.size() != cells * 4)
    fail(ErrorCode::InvalidArgument, "latent2rgb: the latent's data does not match its size");
  Image image;
  image.width = latent.width * kScale;
  image.height = latent.height * kScale;
  image.channels = 3;
  image.data.resize(static_cast<size_t>(image.width) * image.height * 3);
  const float* l = latent.data.data();
  for (int y = 0; y < latent.height; ++y) {
    // One latent row gives one pixel row, which the 8 image rows of the block repeat.
    uint8_t* row = image.data.data() + static_cast<size_t>(y) * kScale * image.width * 3;
    for (int x = 0; x < latent.width; ++x) {
      const size_t i = static_cast<size_t>(y) * latent.width + x;
      uint8_t rgb[3];
      for (int c = 0; c < 3; ++c) {
        float v = f.bias[c];
        for (int ch = 0; ch < 4; ++ch) v += l[ch * cells + i] * f.weights[ch][c];
        rgb[c] = to_byte(v);
      }
      for (int dx = 0; dx < kScale; ++dx) std::copy(rgb, rgb + 3, row + (static_cast<size_t>(x) * kScale + dx) * 3);
    }
    for (int dy = 1; dy < kScale; ++dy) std::copy(row, row + image.width * 3, row + static_cast<size_t>(dy) * image.width * 3);
  }
  return image;
}

PreviewMaker::PreviewMaker(const PreviewParams& params)
    : interval_(params.interval), format_(parse_latent_format(params.latent_format)), tae_(params.tae) {
  if (params.method.empty() || params.method == "none") {
    method_ = Method::None;
  } else if (params.method == "latent2rgb") {
    method_ = Method::Latent2Rgb;
  } else if (params.method == "tae") {
    method_ = Method::Tae;
    if (!tae_) fail(ErrorCode::InvalidArgument, "preview 'tae' needs a TAESD decoder");
  } else {
    fail(ErrorCode::InvalidArgument, "preview must be 'none', 'latent2rgb' or 'tae', got '" + params.method + "'");
  }
  if (interval_ < 1) fail(ErrorCode::InvalidArgument, "preview interval must be at least 1, got " + std::to_string(interval_));
}

std::shared_ptr<const ProgressImage> PreviewMaker::at(int step, int steps, const Latent& denoised, const JobControl& job) const {
  if (method_ == Method::None || (step % interval_ != 0 && step != steps)) return nullptr;
  if (method_ == Method::Latent2Rgb) return as_progress_image(latent2rgb(denoised, format_));
  return as_progress_image(tae_->decode(denoised, job));
}

}  // namespace sdn
