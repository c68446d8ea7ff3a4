// benchmarks/compile_time/baseline.cpp — the 50 operations of einops_patterns.cpp without
// patterns, for the compile-time benchmark (measure.py): the same nodes (rearranged arrays, index
// map nodes, reductions, views) built from index maps written out by hand, einsum's GEMMs called
// directly on reshaped and transposed views, the same evaluations, and the same checksums
// (measure.py --verify compares the printed lines). What einops_patterns.cpp costs the compiler
// beyond this file is the parsing and planning of its patterns. baseline.cu is the same source
// compiled by nvcc (device inputs, CUDA kernels).
//
// An index map lists the elementary axes' lengths, which elementary axes compose each input
// dimension and each output dimension (row-major; {} is a dimension of length 1), and which axes
// are reduced or repeated (bit masks) — see einlm/pattern/lower.hpp.
#include <array>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "common.hpp"

namespace compile_bench {

namespace {

using groups = std::initializer_list<std::initializer_list<int>>;

pattern::index_map make_map(std::initializer_list<index_t> lengths, groups in, groups out,
                            std::uint32_t reduced = 0, std::uint32_t repeated = 0) {
  pattern::index_map m{};
  m.n_elem = static_cast<std::int8_t>(lengths.size());
  int e = 0;
  for (const index_t l : lengths) m.length[e++] = l;
  auto fill = [](groups g, std::int8_t& n, std::int8_t* first, std::int8_t* size,
                 std::int8_t* axes) {
    int cursor = 0;
    n = 0;
    for (const auto& dim : g) {
      first[n] = static_cast<std::int8_t>(cursor);
      size[n] = static_cast<std::int8_t>(dim.size());
      for (const int a : dim) axes[cursor++] = static_cast<std::int8_t>(a);
      ++n;
    }
  };
  fill(in, m.n_in, m.in_first, m.in_size, m.in_axes);
  fill(out, m.n_out, m.out_first, m.out_size, m.out_axes);
  m.reduced = reduced;
  m.repeated = repeated;
  return m;
}

/// A tensor or view seen through an index map (what rearrange and repeat return for arrays).
template <extents_like OutE, class X>
auto rearranged(X& x, const OutE& out, const pattern::index_map& map) {
  auto v = as_view(x);
  using V = decltype(v);
  const auto strides = strides_of(v.mapping());
  return rearranged_array<typename V::element_type, OutE, typename V::space>(
      v.data(), strides.data(), out, map);
}

/// A lazy expression seen through an index map.
template <extents_like OutE, class X>
auto rearranged_expression(const X& x, const OutE& out, const pattern::index_map& map) {
  auto child = as_expression(x);
  return rearrange_node<decltype(child), OutE>(child, out, map);
}

/// A reduction of a tensor, view or expression over the map's reduced axes.
template <class Op, extents_like OutE, class X>
auto reduced(const X& x, const OutE& out, const pattern::index_map& map) {
  auto child = as_expression(x);
  return reduce_node<decltype(child), OutE, Op>(child, out, map);
}

template <class E>
using strided = view<const float, E, layout_strided, space>;
template <class E>
using contiguous = view<const float, E, cuda::std::layout_right, space>;

}  // namespace

void run(const inputs& in) {
  const index_t xb = in.x_dynamic.extent(0), xc = in.x_dynamic.extent(1),
                xh = in.x_dynamic.extent(2), xw = in.x_dynamic.extent(3);
  const index_t mr = in.m_dynamic.extent(0), mc = in.m_dynamic.extent(1);

  // ---------------------------------------------------------------- rearrange (16)
  keep(1, rearranged(in.x, extents<2, 4, 6, 3>{},
                     make_map({2, 3, 4, 6}, {{0}, {1}, {2}, {3}}, {{0}, {2}, {3}, {1}})));
  keep(2, reshape<extents<2, 72>>(in.x));
  keep(3, rearranged(in.x_dynamic, dims<2>(xb * xh, xw * xc),
                     make_map({xb, xc, xh, xw}, {{0}, {1}, {2}, {3}}, {{0, 2}, {3, 1}})));
  keep(4, rearranged(in.seq, extents<2, 4, 5, 6>{},
                     make_map({2, 5, 4, 6}, {{0}, {1}, {2, 3}}, {{0}, {2}, {1}, {3}})));
  keep(5, rearranged(in.seq, extents<dyn, 5, dyn>(8, 6),
                     make_map({2, 5, 4, 6}, {{0}, {1}, {2, 3}}, {{0, 2}, {1}, {3}})));
  keep(6, rearranged(in.x, extents<2, 12, 2, 3>{},
                     make_map({2, 3, 2, 2, 3, 2}, {{0}, {1}, {2, 3}, {4, 5}},
                              {{0}, {1, 3, 5}, {2}, {4}})));
  keep(7, rearranged(in.deep, extents<2, 3, 4, 6>{},
                     make_map({2, 3, 2, 2, 2, 3}, {{0}, {1, 2, 3}, {4}, {5}},
                              {{0}, {1}, {4, 2}, {5, 3}})));
  keep(8, rearranged(in.x, extents<2, 3, 6, 4>{},
                     make_map({2, 3, 4, 6}, {{0}, {1}, {2}, {3}}, {{0}, {1}, {3}, {2}})));
  keep(9, reshape(in.x_dynamic, dims<2>(xb, xc * xh * xw)));
  keep(10, reshape<extents<2, 3, 4, 6, 1>>(in.x));
  keep(11, reshape<extents<2, 6>>(in.unit));
  keep(12, rearranged(in.m, extents<8, 6>{}, make_map({6, 8}, {{0}, {1}}, {{1}, {0}})));
  keep(13, rearranged(in.m, extents<3, 16>{}, make_map({2, 3, 8}, {{0, 1}, {2}}, {{1}, {2, 0}})));
  keep(14, rearranged_expression(in.x * 2.0f, extents<6, 6, 4>{},
                                 make_map({2, 3, 4, 6}, {{0}, {1}, {2}, {3}}, {{3}, {0, 1}, {2}})));
  const auto x1 = slice(in.x, 1, full_extent, full_extent, full_extent);  // (3, 4, 6)
  keep(15, rearranged(x1, extents<24, 3>{}, make_map({3, 4, 6}, {{0}, {1}, {2}}, {{1, 2}, {0}})));
  keep(16,
       rearranged(in.flat, extents<4, 3, 2>{}, make_map({2, 3, 4}, {{0, 1, 2}}, {{2}, {1}, {0}})));

  // ---------------------------------------------------------------- repeat (6)
  keep(17, rearranged(in.m, extents<6, 8, 3>{},
                      make_map({6, 8, 3}, {{0}, {1}}, {{0}, {1}, {2}}, 0, 1u << 2)));
  keep(18, rearranged(in.m, extents<12, 8>{},
                      make_map({6, 8, 2}, {{0}, {1}}, {{0, 2}, {1}}, 0, 1u << 2)));
  keep(19, rearranged(in.m_dynamic, dims<2>(2 * mr, mc),
                      make_map({mr, mc, 2}, {{0}, {1}}, {{2, 0}, {1}}, 0, 1u << 2)));
  keep(20, rearranged(in.x, extents<2, 3, 8, 12>{},
                      make_map({2, 3, 4, 6, 2, 2}, {{0}, {1}, {2}, {3}}, {{0}, {1}, {2, 4}, {3, 5}},
                               0, (1u << 4) | (1u << 5))));
  keep(21, rearranged_expression(
               in.seq + 1.0f, extents<2, 5, 24, 2>{},
               make_map({2, 5, 24, 2}, {{0}, {1}, {2}}, {{0}, {1}, {2}, {3}}, 0, 1u << 3)));
  keep(22, rearranged(in.x, extents<2, 3, 4, 6, 2>{},
                      make_map({2, 3, 4, 6, 2}, {{0}, {1}, {2}, {3}}, {{0}, {1}, {2}, {3}, {4}}, 0,
                               1u << 4)));

  // ---------------------------------------------------------------- reduce (13)
  const auto x_map = [](groups out, std::uint32_t reduced) {
    return make_map({2, 3, 4, 6}, {{0}, {1}, {2}, {3}}, out, reduced);
  };
  keep(23, reduced<reductions::sum>(in.x, extents<2, 3>{}, x_map({{0}, {1}}, 0b1100)));
  keep(24,
       reduced<reductions::mean>(in.x, extents<2, 3, 1, 1>{}, x_map({{0}, {1}, {}, {}}, 0b1100)));
  const auto pool =
      make_map({2, 3, 2, 2, 3, 2}, {{0}, {1}, {2, 3}, {4, 5}}, {{0}, {1}, {2}, {4}}, 0b101000);
  keep(25, reduced<reductions::max>(in.x, extents<2, 3, 2, 3>{}, pool));
  keep(26, reduced<reductions::min>(in.x, extents<2, 3, 2, 3>{}, pool));
  keep(27,
       reduced<reductions::prod>(in.m, extents<8>{}, make_map({6, 8}, {{0}, {1}}, {{1}}, 0b01)));
  keep(28, reduced<reductions::any>(in.m > 1.0f, extents<6>{},
                                    make_map({6, 8}, {{0}, {1}}, {{0}}, 0b10)));
  keep(29, reduced<reductions::all>(in.m_dynamic > 0.6f, dims<1>(mc),
                                    make_map({mr, mc}, {{0}, {1}}, {{1}}, 0b01)));
  keep(30,
       reduced<reductions::sum>(in.x_dynamic, dims<1>(xb),
                                make_map({xb, xc, xh, xw}, {{0}, {1}, {2}, {3}}, {{0}}, 0b1110)));
  keep(31, reduced<reductions::mean>(exp(in.seq), extents<2, 24>{},
                                     make_map({2, 5, 24}, {{0}, {1}, {2}}, {{0}, {2}}, 0b010)));
  keep(32,
       reduced<reductions::max>(in.seq, extents<2, 4>{},
                                make_map({2, 5, 4, 6}, {{0}, {1}, {2, 3}}, {{0}, {2}}, 0b1010)));
  keep(33, reduced<reductions::min>(in.seq, extents<5>{},
                                    make_map({2, 5, 24}, {{0}, {1}, {2}}, {{1}}, 0b101)));
  keep(34, reduced<reductions::sum>(in.m_dynamic, dims<2>(mr / 2, mc),
                                    make_map({2, mr / 2, mc}, {{0, 1}, {2}}, {{1}, {2}}, 0b001)));
  const auto x0 = slice(in.x, 0, full_extent, range{0, 2, 1}, full_extent);  // (3, 2, 6)
  keep(35, reduced<reductions::prod>(x0, extents<3>{},
                                     make_map({3, 2, 6}, {{0}, {1}, {2}}, {{0}}, 0b110)));

  // ---------------------------------------------------------------- pack, unpack (4)
  {
    tensor<float, extents<6, 14>, space> p;  // (6, 8 + 2·3)
    assign(slice(p, full_extent, range{0, 8, 1}), in.m);
    assign(slice(p, full_extent, range{8, 14, 1}), reshape<extents<6, 6>>(in.cube));
    keep(36, p);
  }
  {
    tensor<float, extents<11, 24>, space> p;  // (2·5 + 1, 24)
    assign(slice(p, range{0, 10, 1}, full_extent), reshape<extents<10, 24>>(in.seq));
    assign(slice(p, 10, full_extent), in.flat);
    keep(37, p);
  }
  {
    const strided<extents<6, 8>> a(
        in.packed.data(), layout_strided::mapping<extents<6, 8>>({}, index_array<2>{14, 1}));
    const strided<extents<6, 2, 3>> b(
        in.packed.data() + 8,
        layout_strided::mapping<extents<6, 2, 3>>({}, index_array<3>{14, 3, 1}));
    keep(38, a);
    keep(38, b);
  }
  {
    const contiguous<extents<2, 5, 24>> a(in.packed_rows.data(), extents<2, 5, 24>{});
    const auto b = slice(in.packed_rows, range{10, 11, 1}, full_extent);  // (1, 24)
    keep(39, a);
    keep(39, b);
  }

  // ------------------------------------------- parse_shape (3), and its result as axis sizes (1)
  keep_lengths(40, {in.x.extent(0), in.x.extent(1), in.x.extent(2), in.x.extent(3)});
  keep_lengths(41, {in.x_dynamic.extent(0)});
  {
    const index_t b = in.x.extent(0), h = in.x.extent(2), w = in.x.extent(3);
    keep_lengths(42, {b, h, w});
    keep(43, reshape(in.flat144, dims<4>(b, in.flat144.size() / (b * h * w), h, w)));
  }

  // ---------------------------------------------------------------- list inputs (2)
  {
    const std::vector<contiguous<extents<6, 8>>> list(3, in.m.view());
    auto stacked = stack(list);  // (3, 6, 8)
    const index_t n = stacked.extent(0);
    keep(44, eval(rearranged(stacked, extents<6, dyn>(n * 8),
                             make_map({n, 6, 8}, {{0}, {1}, {2}}, {{1}, {0, 2}}))));
    const std::array<contiguous<extents<6, 8>>, 3> fixed{in.m.view(), in.m.view(), in.m.view()};
    auto stacked_fixed = stack(fixed);  // (3, 6, 8)
    keep(45,
         eval(reduced<reductions::mean>(stacked_fixed, extents<6, 8>{},
                                        make_map({3, 6, 8}, {{0}, {1}, {2}}, {{1}, {2}}, 0b001))));
  }

  // ---------------------------------------------------------------- einsum (5)
  {
    tensor<float, extents<10, 8>, space> c;  // (B·S, E)
    gemm(reshape<extents<10, 24>>(in.seq), in.weight, c);
    keep(46, reshape<extents<2, 5, 8>>(c));
  }
  {
    const auto a = reshape<extents<6, 4, 6>>(in.x);  // (B·H, I, D)
    tensor<float, extents<6, 4, 4>, space> c;        // (B·H, I, J)
    gemm(a, transpose<0, 2, 1>(a), c);
    keep(47, reshape<extents<2, 3, 4, 4>>(c));
  }
  {
    const strided<extents<6>> diagonal(in.square.data(),
                                       layout_strided::mapping<extents<6>>({}, index_array<1>{7}));
    keep(48, reduced<reductions::sum>(diagonal, extents<>{}, make_map({6}, {{0}}, {}, 0b1)));
  }
  keep(49, transpose<1, 0, 2>(in.cube));
  keep(50,
       in.m * rearranged(in.scale, extents<6, 8>{}, make_map({6, 8}, {{1}}, {{0}, {1}}, 0, 0b01)));
}

}  // namespace compile_bench
