// benchmarks/compile_time/einops_patterns.cpp — 50 distinct einops patterns, each applied and
// evaluated, for the compile-time benchmark (measure.py). einops_patterns.cu is the same source
// compiled by nvcc: there the inputs are device tensors and each evaluation instantiates a CUDA
// kernel. baseline.cpp does the same 50 operations without patterns, so the difference between
// the two is what parsing and planning the patterns costs the compiler.
//
// The operations: rearrange (permutations, splits, merges, ellipsis, unit axes, lazy inputs,
// strided views, static and run-time axis sizes), repeat, reduce with each of sum, mean, max, min,
// prod, any and all, pack, unpack, parse_shape (also as axis sizes), list inputs, and einsum (a
// GEMM, a batched GEMM, a trace, a permutation, a broadcast product).
#include <array>
#include <vector>

#include "common.hpp"

namespace compile_bench {

void run(const inputs& in) {
  // ---------------------------------------------------------------- rearrange (16)
  keep(1, rearrange<"b c h w -> b h w c">(in.x));                      // (2, 4, 6, 3)
  keep(2, rearrange<"b c h w -> b (c h w)">(in.x));                    // (2, 72) view
  keep(3, rearrange<"b c h w -> (b h) (w c)">(in.x_dynamic));          // (8, 18)
  keep(4, rearrange<"b s (h d) -> b h s d">(in.seq, axis<"h", 4>{}));  // (2, 4, 5, 6)
  keep(5, rearrange<"b s (heads d) -> (b heads) s d">(in.seq, axis_size<"heads">{4}));  // (8, 5, 6)
  keep(6, rearrange<"b c (h h2) (w w2) -> b (c h2 w2) h w">(in.x, axis<"h2", 2>{},
                                                            axis<"w2", 2>{}));  // (2, 12, 2, 3)
  keep(7, rearrange<"b (c h2 w2) h w -> b c (h h2) (w w2)">(in.deep, axis<"h2", 2>{},
                                                            axis<"w2", 2>{}));  // (2, 3, 4, 6)
  keep(8, rearrange<"... h w -> ... w h">(in.x));                               // (2, 3, 6, 4)
  keep(9, rearrange<"b ... -> b (...)">(in.x_dynamic));                         // (2, 72) view
  keep(10, rearrange<"b c h w -> b c h w 1">(in.x));                     // (2, 3, 4, 6, 1) view
  keep(11, rearrange<"b 1 d -> b d">(in.unit));                          // (2, 6) view
  keep(12, rearrange<"r c -> c r">(in.m));                               // (8, 6)
  keep(13, rearrange<"(r1 r2) c -> r2 (c r1)">(in.m, axis<"r1", 2>{}));  // (3, 16)
  keep(14, rearrange<"b c h w -> w (b c) h">(in.x * 2.0f));              // (6, 6, 4) lazy
  keep(15, rearrange<"c h w -> (h w) c">(
               slice(in.x, 1, full_extent, full_extent, full_extent)));              // (24, 3)
  keep(16, rearrange<"(a b c) -> c b a">(in.flat, axis<"a", 2>{}, axis<"b", 3>{}));  // (4, 3, 2)

  // ---------------------------------------------------------------- repeat (6)
  keep(17, repeat<"h w -> h w c">(in.m, axis<"c", 3>{}));                   // (6, 8, 3)
  keep(18, repeat<"h w -> (h 2) w">(in.m));                                 // (12, 8)
  keep(19, repeat<"h w -> (rep h) w">(in.m_dynamic, axis_size<"rep">{2}));  // (12, 8)
  keep(20, repeat<"b c h w -> b c (h h2) (w w2)">(in.x, axis<"h2", 2>{},
                                                  axis<"w2", 2>{}));    // (2, 3, 8, 12)
  keep(21, repeat<"b s d -> b s d k">(in.seq + 1.0f, axis<"k", 2>{}));  // (2, 5, 24, 2) lazy
  keep(22, repeat<"... -> ... r">(in.x, axis<"r", 2>{}));               // (2, 3, 4, 6, 2)

  // ---------------------------------------------------------------- reduce (13)
  keep(23, reduce<"b c h w -> b c", "sum">(in.x));       // (2, 3)
  keep(24, reduce<"b c h w -> b c 1 1", "mean">(in.x));  // (2, 3, 1, 1)
  keep(25, reduce<"b c (h h2) (w w2) -> b c h w", "max">(in.x, axis<"h2", 2>{},
                                                         axis<"w2", 2>{}));        // (2, 3, 2, 3)
  keep(26, reduce<"b c (h 2) (w 2) -> b c h w", "min">(in.x));                     // (2, 3, 2, 3)
  keep(27, reduce<"r c -> c", "prod">(in.m));                                      // (8,)
  keep(28, reduce<"r c -> r", "any">(in.m > 1.0f));                                // (6,) lazy
  keep(29, reduce<"i j -> j", "all">(in.m_dynamic > 0.6f));                        // (8,) lazy
  keep(30, reduce<"b ... -> b", "sum">(in.x_dynamic));                             // (2,)
  keep(31, reduce<"b s d -> b d", "mean">(exp(in.seq)));                           // (2, 24) lazy
  keep(32, reduce<"b s (h d) -> b h", "max">(in.seq, axis<"h", 4>{}));             // (2, 4)
  keep(33, reduce<"b s d -> s", "min">(in.seq));                                   // (5,)
  keep(34, reduce<"(b1 b2) d -> b2 d", "sum">(in.m_dynamic, axis_size<"b1">{2}));  // (3, 8)
  keep(35, reduce<"c h w -> c", "prod">(
               slice(in.x, 0, full_extent, range{0, 2, 1}, full_extent)));  // (3,)

  // ---------------------------------------------------------------- pack, unpack (4)
  {
    auto [p, shapes] = pack<"i *">(in.m, in.cube);  // (6, 14)
    keep(36, p);
  }
  {
    auto [p, shapes] = pack<"* d">(in.seq, in.flat);  // (11, 24)
    keep(37, p);
  }
  {
    auto [a, b] = unpack<"r *">(in.packed, extents<8>{}, extents<2, 3>{});  // (6, 8), (6, 2, 3)
    keep(38, a);
    keep(38, b);
  }
  {
    auto [a, b] =
        unpack<"* e">(in.packed_rows, extents<2, 5>{}, packed_shape<1>{-1});  // (2, 5, 24), (1, 24)
    keep(39, a);
    keep(39, b);
  }

  // ------------------------------------------- parse_shape (3), and its result as axis sizes (1)
  {
    const auto s = parse_shape<"b c h w">(in.x);
    keep_lengths(40, {s.get<"b">(), s.get<"c">(), s.get<"h">(), s.get<"w">()});
  }
  {
    const auto s = parse_shape<"b _ ...">(in.x_dynamic);
    keep_lengths(41, {s.get<"b">()});
  }
  {
    const auto s = parse_shape<"b _ h w">(in.x);
    keep_lengths(42, {s.get<"b">(), s.get<"h">(), s.get<"w">()});
    keep(43, rearrange<"(b c h w) -> b c h w">(in.flat144, s));  // (2, 3, 4, 6) view
  }

  // ---------------------------------------------------------------- list inputs (2)
  {
    const std::vector<view<const float, extents<6, 8>, cuda::std::layout_right, space>> list(
        3, in.m.view());
    keep(44, rearrange<"n h w -> h (n w)">(list));  // (6, 24)
    const std::array<view<const float, extents<6, 8>, cuda::std::layout_right, space>, 3> fixed{
        in.m.view(), in.m.view(), in.m.view()};
    keep(45, reduce<"n h w -> h w", "mean">(fixed));  // (6, 8)
  }

  // ---------------------------------------------------------------- einsum (5)
  keep(46, einsum<"b s d, d e -> b s e">(in.seq, in.weight));   // (2, 5, 8) GEMM
  keep(47, einsum<"b h i d, b h j d -> b h i j">(in.x, in.x));  // (2, 3, 4, 4) batched GEMM
  keep(48, einsum<"i i ->">(in.square));                        // () lazy trace
  keep(49, einsum<"i j k -> j i k">(in.cube));                  // (2, 6, 3) view
  keep(50, einsum<"r c, c -> r c">(in.m, in.scale));            // (6, 8) lazy product
}

}  // namespace compile_bench
