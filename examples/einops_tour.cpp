// examples/einops_tour.cpp — a tour of einlm's einops: attention scores with rearrange and einsum,
// space-to-depth and back, pooling with reduce, a CLS token packed in front of a sequence and
// unpacked again, and the errors a wrong shape gives. Each step checks its result against plain
// loops and the program exits 1 when one differs. The docs (docs/einops.md) quote its snippets.
#include <cmath>
#include <cstdio>
#include <iostream>

#include "einlm/einlm.hpp"

namespace {

int failures = 0;

void expect(bool ok, const char* what) {
  std::printf("  %-58s %s\n", what, ok ? "ok" : "MISMATCH");
  if (!ok) ++failures;
}

}  // namespace

int main() {
  using namespace einlm;
  

  std::printf("attention scores\n");
  {
    // [snippet attention]
    constexpr index_t B = 2, S = 16, H = 4, D = 8;
    tensor<float, extents<B, S, H * D>> x = normal<float>(extents<B, S, H * D>{}, random_stream{7, 0});  // (B, S, H*D)
    tensor<float, extents<H * D, H * D>> w_q = normal<float>(extents<H * D, H * D>{}, random_stream{7, 1});  // (H*D, H*D)
    tensor<float, extents<H * D, H * D>> w_k = normal<float>(extents<H * D, H * D>{}, random_stream{7, 2});  // (H*D, H*D)

    // Projections: einsum with named axes runs as a GEMM.
    auto q = einsum<"b s e, e f -> b s f">(x, w_q);                                     // (B, S, H*D)
    auto k = einsum<"b s e, e f -> b s f">(x, w_k);                                     // (B, S, H*D)
    // Split the heads: a strided view of q, no copy; the head count is a compile-time size.
    auto q_heads = rearrange<"b s (h d) -> b h s d">(q, axis<"h", H>{});                 // (B, H, S, D)
    auto k_heads = rearrange<"b s (h d) -> b h s d">(k, axis<"h", H>{});                 // (B, H, S, D)
    // Scores for every pair of positions, per head: a batched GEMM over (b, h).
    auto scores = einsum<"b h i d, b h j d -> b h i j">(q_heads, k_heads);             // (B, H, S, S)
    static_assert(std::is_same_v<decltype(scores)::extents_type, extents<B, H, S, S>>);
    // [end snippet]
    double worst = 0;
    for (index_t b = 0; b != B; ++b)
      for (index_t h = 0; h != H; ++h)
        for (index_t i = 0; i != S; ++i)
          for (index_t j = 0; j != S; ++j) {
            double s = 0;
            for (index_t d = 0; d != D; ++d) s += double(q(b, i, h * D + d)) * k(b, j, h * D + d);
            worst = std::max(worst, std::abs(s - scores(b, h, i, j)) / (1 + std::abs(s)));
          }
    expect(worst < 1e-4, "scores equal the loops' (relative error < 1e-4)");
    std::printf("  scores (%ld, %ld, %ld, %ld), scores[0, 0, 0, :4] = %.3f %.3f %.3f %.3f\n", long(B), long(H), long(S),
                long(S), scores(0, 0, 0, 0), scores(0, 0, 0, 1), scores(0, 0, 0, 2), scores(0, 0, 0, 3));
  }

  std::printf("space to depth, and back\n");
  {
    // [snippet space_to_depth]
    tensor<float, extents<2, 3, 8, 8>> image = normal<float>(extents<2, 3, 8, 8>{}, random_stream{7, 3});  // (B, C, H, W)
    // Each 2x2 block of pixels becomes 4 channels: one lazy gather, evaluated once.
    tensor<float, extents<2, 12, 4, 4>> depth =
        rearrange<"b c (h h2) (w w2) -> b (c h2 w2) h w">(image, axis<"h2", 2>{}, axis<"w2", 2>{});  // (B, 4C, H/2, W/2)
    // And back: the inverse pattern restores the image exactly.
    tensor<float, extents<2, 3, 8, 8>> restored =
        rearrange<"b (c h2 w2) h w -> b c (h h2) (w w2)">(depth, axis<"h2", 2>{}, axis<"w2", 2>{});  // (B, C, H, W)
    // [end snippet]
    bool same = true, moved = true;
    for (index_t b = 0; b != 2; ++b)
      for (index_t c = 0; c != 3; ++c)
        for (index_t h = 0; h != 8; ++h)
          for (index_t w = 0; w != 8; ++w) {
            same = same && restored(b, c, h, w) == image(b, c, h, w);
            moved = moved && depth(b, c * 4 + (h % 2) * 2 + (w % 2), h / 2, w / 2) == image(b, c, h, w);
          }
    expect(moved, "every pixel lands in channel c*4 + h2*2 + w2");
    expect(same, "depth to space restores the image bit for bit");
  }

  std::printf("pooling with reduce\n");
  {
    tensor<float, extents<2, 3, 8, 8>> image = normal<float>(extents<2, 3, 8, 8>{}, random_stream{7, 4});  // (B, C, H, W)
    // [snippet pooling]
    // 2x2 max pooling and global average pooling: reduce over the axes missing on the right.
    tensor<float, extents<2, 3, 4, 4>> pooled = reduce<"b c (h 2) (w 2) -> b c h w", "max">(image);  // (B, C, H/2, W/2)
    tensor<float, extents<2, 3>> average = reduce<"b c h w -> b c", "mean">(image);                  // (B, C)
    // Lazy inputs fuse: the square and the mean over pixels run in one pass.
    tensor<float, extents<2, 3>> energy = reduce<"b c h w -> b c", "mean">(image * image);          // (B, C)
    // [end snippet]
    bool max_ok = true;
    double mean_err = 0, energy_err = 0;
    for (index_t b = 0; b != 2; ++b)
      for (index_t c = 0; c != 3; ++c) {
        double s = 0, s2 = 0;
        for (index_t h = 0; h != 8; ++h)
          for (index_t w = 0; w != 8; ++w) {
            s += image(b, c, h, w);
            s2 += double(image(b, c, h, w)) * image(b, c, h, w);
          }
        mean_err = std::max(mean_err, std::abs(s / 64 - average(b, c)));
        energy_err = std::max(energy_err, std::abs(s2 / 64 - energy(b, c)));
        for (index_t h = 0; h != 4; ++h)
          for (index_t w = 0; w != 4; ++w) {
            const float m = std::max(std::max(image(b, c, 2 * h, 2 * w), image(b, c, 2 * h, 2 * w + 1)),
                                     std::max(image(b, c, 2 * h + 1, 2 * w), image(b, c, 2 * h + 1, 2 * w + 1)));
            max_ok = max_ok && pooled(b, c, h, w) == m;
          }
      }
    expect(max_ok, "2x2 max pooling equals the loops' maxima");
    expect(mean_err < 1e-5 && energy_err < 1e-5, "global means equal the loops' (error < 1e-5)");
  }

  std::printf("a CLS token, packed and unpacked\n");
  {
    // [snippet cls_token]
    constexpr index_t B = 2, S = 5, D = 4;
    tensor<float, extents<B, D>> cls = normal<float>(extents<B, D>{}, random_stream{7, 5});  // (B, D)
    tensor<float, extents<B, S, D>> tokens = normal<float>(extents<B, S, D>{}, random_stream{7, 6});  // (B, S, D)
    // Prepend the CLS token to every sequence: `*` stands for "no axis" in cls, "s" in tokens.
    auto [sequence, shapes] = pack<"b * d">(cls, tokens);                               // (B, 1+S, D)
    static_assert(std::is_same_v<decltype(sequence)::extents_type, extents<B, 1 + S, D>>);
    // ... a transformer runs over `sequence` ...
    // Split it again: views into `sequence`, the second length inferred.
    auto [cls_out, tokens_out] = unpack<"b * d">(sequence, extents<>{}, packed_shape<1>{-1});  // (B, D), (B, S, D)
    // [end snippet]
    bool ok = shapes.size() == 2 && shapes[0].empty() && shapes[1] == std::vector<index_t>{S};
    for (index_t b = 0; b != B; ++b)
      for (index_t d = 0; d != D; ++d) {
        ok = ok && sequence(b, 0, d) == cls(b, d) && cls_out(b, d) == cls(b, d);
        for (index_t s = 0; s != S; ++s)
          ok = ok && sequence(b, 1 + s, d) == tokens(b, s, d) && tokens_out(b, s, d) == tokens(b, s, d);
      }
    expect(ok, "packed sequence and unpacked pieces hold the inputs");
  }

  std::printf("errors name the pattern and the shape\n");
  {
    // [snippet runtime_error]
    tensor<float, extents<dyn, dyn>> m(extents<dyn, dyn>(6, 10));                      // (6, 10), sizes known at run time
    try {
      auto split = rearrange<"(h d) e -> h d e">(m, axis_size<"h">{4});                 // 6 is not a multiple of 4
      (void)split;
    } catch (const pattern_error& e) {
      std::cout << e.what() << "\n";
    }
    // With static extents the same mistake is a compile error carrying einops' sentence.
    // [end snippet]
    bool threw = false;
    try {
      auto split = rearrange<"(h d) e -> h d e">(m, axis_size<"h">{4});  // (?, ?, 10)
      (void)split;
    } catch (const pattern_error&) {
      threw = true;
    }
    expect(threw, "an indivisible split raises pattern_error");
  }

  if (failures != 0) {
    std::printf("einops_tour: %d check(s) failed\n", failures);
    return 1;
  }
  std::printf("einops_tour: all checks passed\n");
  return 0;
}
