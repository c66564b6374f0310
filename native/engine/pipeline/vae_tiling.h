// The VAE in tiles: the input cut into overlapping tiles, every tile through the same network,
// the pieces put back together, so the compute buffers are those of one tile. Positions are in
// latent cells: the decoder reads one value per cell and writes f×f pixels, the encoder the
// other way round.
//
// GroupNorm normalises with statistics over the whole image: a tile on its own would use its
// own, and every tile would come out with another tone (on the tiny test VAE a photo's latent
// decodes at 13 dB PSNR against the untiled decode that way). So the network runs in stages
// cut before its GroupNorms. Every tile runs one stage; the stage's outputs (the activations
// crossing the cut) go back into whole-image buffers, each tile keeping its share (neighbours
// split their overlap in the middle); the next GroupNorm's statistics come from those buffers,
// and the next stage's tiles are cut from them: a share plus the context the stage's
// convolutions reach into (at most half the overlap). So stages of convolutions come out as
// untiled, given an overlap of twice their reach (4 cells for SD's VAE). A stage with attention
// runs over the whole image, its queries in slices, when that fits in what one full tile pass
// needs, and is exact too; otherwise its tiles attend within themselves and are blended with
// weights that ramp linearly across each overlap (normalised by their sum), as a network
// without GroupNorm is. Host memory holds two cuts' activations over the whole image (f32).
#pragma once

#include <cstddef>
#include <vector>

#include "core/job_control.h"
#include "pipeline/backend.h"
#include "pipeline/graph.h"
#include "pipeline/image.h"
#include "pipeline/model.h"

namespace sdn {

// One tile along an axis, in latent cells.
struct TileSpan {
  int begin = 0;
  int size = 0;
};

// Throws InvalidArgument unless 1 <= tile <= 4096 and 0 <= overlap <= tile / 2 (so at most two
// tiles overlap anywhere along an axis).
void check_tiling(const VaeTiling& tiling);

// Tiles covering [0, length): `tile` long, every one overlapping the one before by `overlap`
// except the last, which is shifted inwards to end at `length` rather than shrunk (so it may
// overlap more). One tile of `length` when that is not longer than `tile`.
std::vector<TileSpan> tile_spans(int length, int tile, int overlap);

// Throws Resource when run_tiled would refuse an input of cells_w × cells_h latent cells (the
// whole-image activations it keeps would pass the size limit), InvalidArgument for tiling out
// of range; a job checks this before it spends minutes on what comes first.
void check_tiled_size(int cells_w, int cells_h, const VaeTiling& tiling, int in_per_cell, int channels,
                      const GraphBuild& build, const char* input_name, size_t max_nodes);

// The network `build` (as run_planar takes it: planar f32 input [c][h][w] named `input_name`,
// graphs of at most `max_nodes` nodes) over the tiles of `input`, which has `in_per_cell`
// values per latent cell along each side; the output has `out_per_cell` per cell. Progress:
// one step per tile per stage (one step in all when a single tile covers the input, which then
// runs once, exactly as untiled); cancellation between tiles and inside each. Throws what the
// network's passes throw, Resource as check_tiled_size does, Internal when the graph cannot be
// cut at a GroupNorm.
Latent run_tiled(Runtime& runtime, const Latent& input, const VaeTiling& tiling, int in_per_cell, int out_per_cell,
                 const GraphBuild& build, const char* input_name, size_t max_nodes, const JobControl& job);

}  // namespace sdn
