#include "pipeline/conditioner.h"

#include <algorithm>
#include <string>

#include "core/error.h"
#include "nn/unet.h"

namespace sdn {

namespace {

// Applies a window's token weights as the webui does: scale each token's state by its weight,
// then rescale the window so its mean is what it was before weighting.
void weight_window(float* z, const float* weights, size_t positions, size_t width) {
  bool weighted = false;
  for (size_t t = 0; t < positions; ++t) weighted = weighted || weights[t] != 1.0f;
  if (!weighted) return;
  double before = 0, after = 0;
  for (size_t i = 0; i < positions * width; ++i) before += z[i];
  for (size_t t = 0; t < positions; ++t) {
    for (size_t c = 0; c < width; ++c) z[t * width + c] *= weights[t];
  }
  for (size_t i = 0; i < positions * width; ++i) after += z[i];
  if (after != 0) {
    const float k = static_cast<float>(before / after);
    for (size_t i = 0; i < positions * width; ++i) z[i] *= k;
  }
}

// A prompt through every text encoder: hidden states [windows][positions][width] with the
// encoders' widths joined per token, then weighted per window over the joined width (as
// stable-diffusion.cpp weights SDXL's 2048-wide states), and the pooled vector of the first
// window from the encoder that pools (empty when none does; never weighted).
struct PromptEncoding {
  std::vector<float> states;
  std::vector<float> pooled;
  size_t width = 0;
};

PromptEncoding encode_prompt(Model& model, const PromptTokens& p, const std::vector<TextEncoderParams>& encoders,
                             const JobControl& job) {
  if (p.windows <= 0 || p.ids.empty() || p.ids.size() % p.windows != 0 || p.weights.size() != p.ids.size() ||
      (!p.ids2.empty() && p.ids2.size() != p.ids.size()))
    fail(ErrorCode::InvalidArgument, "prompt tokens: ids and weights must fill whole windows");
  if (encoders.empty() || encoders.size() > 2) fail(ErrorCode::InvalidArgument, "one or two text encoders");
  const size_t positions = p.ids.size() / p.windows;
  std::vector<TextEncoding> outs;
  PromptEncoding e;
  for (size_t k = 0; k < encoders.size(); ++k) {
    const std::vector<int32_t>& ids = k == 1 && !p.ids2.empty() ? p.ids2 : p.ids;
    TextEncoding out = model.encode_tokens(ids, p.windows, encoders[k], job);
    if (!out.pooled.empty()) e.pooled.assign(out.pooled.begin(), out.pooled.begin() + out.pooled.size() / p.windows);
    e.width += out.hidden.size() / p.ids.size();
    outs.push_back(std::move(out));
  }
  if (outs.size() == 1) {
    e.states = std::move(outs[0].hidden);
  } else {  // joined per token: [encoder 1's width | encoder 2's width]
    e.states.resize(p.ids.size() * e.width);
    size_t offset = 0;
    for (const TextEncoding& out : outs) {
      const size_t width = out.hidden.size() / p.ids.size();
      for (size_t t = 0; t < p.ids.size(); ++t)
        std::copy_n(out.hidden.begin() + t * width, width, e.states.begin() + t * e.width + offset);
      offset += width;
    }
  }
  for (int w = 0; w < p.windows; ++w)
    weight_window(e.states.data() + w * positions * e.width, p.weights.data() + w * positions, positions, e.width);
  return e;
}

// Appends `pad` (one window's states) until `z` holds `windows` windows: the webui pads the
// shorter of prompt and negative prompt with the empty prompt's encoding.
void pad_windows(std::vector<float>& z, size_t window_floats, size_t windows, const std::vector<float>& pad) {
  while (z.size() < windows * window_floats) z.insert(z.end(), pad.begin(), pad.begin() + window_floats);
}

}  // namespace

TextContext encode_text(Model& model, const ConditionerParams& p, bool guided, const JobControl& job) {
  PromptEncoding cond = encode_prompt(model, p.prompt, p.text_encoders, job);
  TextContext c;
  c.tokens = static_cast<int>(p.prompt.ids.size() / p.prompt.windows) * std::max(p.prompt.windows, guided ? p.negative.windows : 0);
  if (!guided) {
    c.states = std::move(cond.states);
    c.pooled = std::move(cond.pooled);
    return c;
  }
  PromptEncoding uncond = encode_prompt(model, p.negative, p.text_encoders, job);
  // Hidden states only: the pooled vector of y stays the empty prompt's (stable-diffusion.cpp).
  if (p.zero_negative) std::fill(uncond.states.begin(), uncond.states.end(), 0.0f);
  if (p.prompt.windows != p.negative.windows) {
    const std::vector<float> empty = encode_prompt(model, p.empty, p.text_encoders, job).states;
    const size_t window_floats = empty.size() / p.empty.windows;
    const size_t windows = std::max(p.prompt.windows, p.negative.windows);
    pad_windows(cond.states, window_floats, windows, empty);
    pad_windows(uncond.states, window_floats, windows, p.zero_negative ? std::vector<float>(window_floats, 0.0f) : empty);
  }
  c.states = std::move(uncond.states);
  c.states.insert(c.states.end(), cond.states.begin(), cond.states.end());
  c.pooled = std::move(uncond.pooled);
  c.pooled.insert(c.pooled.end(), cond.pooled.begin(), cond.pooled.end());
  c.batch = 2;
  return c;
}

std::vector<float> vector_conditioning(const TextContext& text, const SizeConditioning& s, int adm) {
  if (adm == 0) return {};
  const size_t proj = text.pooled.size() / text.batch;
  // The refiner's five values, or the base's six, each embedded at the same width.
  const size_t rest = proj < size_t(adm) ? adm - proj : 0;
  const int values = rest > 0 && rest % 6 == 0 ? 6 : rest > 0 && rest % 5 == 0 ? 5 : 0;
  if (text.pooled.empty() || values == 0)
    fail(ErrorCode::ModelCompatibility, "the UNet takes a " + std::to_string(adm) + "-wide vector y; the text encoders pool " +
                                            std::to_string(proj) + " values, which leave no five or six equal size embeddings");
  const int64_t each = static_cast<int64_t>(rest / values);
  std::vector<float> y;
  y.reserve(size_t(adm) * text.batch);
  for (int b = 0; b < text.batch; ++b) {
    std::vector<float> v = {float(s.original_height), float(s.original_width), float(s.crop_top), float(s.crop_left)};
    if (values == 6) {
      v.insert(v.end(), {float(s.target_height), float(s.target_width)});
    } else {  // the unconditional half of a guided batch takes the negative score
      v.push_back(text.batch == 2 && b == 0 ? s.negative_aesthetic_score : s.aesthetic_score);
    }
    const std::vector<float> emb = sinusoidal_embedding(v, each);  // [values][each]
    y.insert(y.end(), text.pooled.begin() + b * proj, text.pooled.begin() + (b + 1) * proj);
    y.insert(y.end(), emb.begin(), emb.end());
  }
  return y;
}

}  // namespace sdn
