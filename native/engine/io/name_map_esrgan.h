// ESRGAN (RRDBNet) file conventions onto one internal naming, BasicSR's:
//   conv_first, body.N.rdbK.convM, conv_body, conv_up1.., conv_hr, conv_last
// Files come as
//   "basicsr"  BasicSR / Real-ESRGAN state dicts, bare or inside a `params_ema` (preferred) or
//              `params` entry as Real-ESRGAN's .pth files hold them (the pickle reader joins
//              nested names with '.'), optionally under DataParallel's `module.`;
//   "esrgan"   the original ESRGAN repository's nn.Sequential ("old ESRGAN", as 4x-UltraSharp
//              and most community models): model.0 = conv_first,
//              model.1.sub.N.RDBK.convM.0 = body.N.rdbK.convM, model.1.sub.<last> = conv_body,
//              then the numbered convs after model.1: every one but the last two upsamples
//              (conv_up1, conv_up2, ...), the last two are conv_hr and conv_last.
#pragma once

#include <string>

#include "io/tensor_store.h"

namespace sdn {

struct EsrganNames {
  TensorStore store;       // internal names; views into the file's memory, kept alive
  std::string convention;  // "basicsr" or "esrgan"
};

// Throws ModelFormat when the names are not an RRDBNet's in either convention (naming a
// tensor that does not fit).
EsrganNames map_esrgan_names(TensorStore&& file);

}  // namespace sdn
