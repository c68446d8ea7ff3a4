// einlm/pattern/lower.hpp — a recipe lowered to integers: what kernels see of a pattern.
//
// index_map is a plain aggregate of small integer arrays (the grouping of elementary axes into
// input and output dimensions) and the elementary axes' lengths. Nodes and kernels carry an
// index_map and their extents types — never the pattern string (ARCHITECTURE decision 3). It maps
// an output index to elementary indices (row-major decomposition of each output dimension), and
// elementary indices to an input index (row-major composition of each input dimension).
//
// static_out_extent<R>(…) gives the output extents known at compile time, for the result type.
#pragma once

#include <cstdint>

#include "einlm/core/config.hpp"
#include "einlm/core/extents.hpp"
#include "einlm/pattern/recipe.hpp"

namespace einlm::pattern {

struct index_map {
  std::int8_t n_in = 0, n_out = 0, n_elem = 0;
  std::int8_t in_first[max_dims] = {}, in_size[max_dims] = {};
  std::int8_t in_axes[max_elementary] = {};
  std::int8_t out_first[max_dims] = {}, out_size[max_dims] = {};
  std::int8_t out_axes[max_elementary] = {};
  std::uint32_t reduced = 0;   // bit e: elementary axis e is reduced
  std::uint32_t repeated = 0;  // bit e: elementary axis e exists only in the output
  index_t length[max_elementary] = {};

  /// Elementary indices from an output index (reduced axes are left untouched).
  template <std::size_t R>
  EINLM_HD void decompose(const index_array<R>& out, index_t* el) const {
    for (int o = 0; o < n_out; ++o) {
      index_t i = out[static_cast<std::size_t>(o)];
      for (int k = out_size[o] - 1; k >= 0; --k) {
        const int e = out_axes[out_first[o] + k];
        if (k > 0) {
          el[e] = i % length[e];
          i /= length[e];
        } else {
          el[e] = i;
        }
      }
    }
  }

  /// An input index from elementary indices.
  template <std::size_t R>
  EINLM_HD index_array<R> compose(const index_t* el) const {
    index_array<R> in{};
    for (int d = 0; d < n_in; ++d) {
      index_t i = 0;
      for (int k = 0; k < in_size[d]; ++k) {
        const int e = in_axes[in_first[d] + k];
        i = i * length[e] + el[e];
      }
      in[static_cast<std::size_t>(d)] = i;
    }
    return in;
  }

  EINLM_HD bool is_reduced(int e) const { return (reduced >> e) & 1u; }
  EINLM_HD bool is_repeated(int e) const { return (repeated >> e) & 1u; }
};

/// Lowers a recipe and its resolved lengths.
constexpr index_map lower(const recipe& r, const resolved& lengths) {
  index_map m{};
  m.n_in = static_cast<std::int8_t>(r.n_in);
  m.n_out = static_cast<std::int8_t>(r.n_out);
  m.n_elem = static_cast<std::int8_t>(r.n_elem);
  for (int d = 0; d < r.n_in; ++d) {
    m.in_first[d] = static_cast<std::int8_t>(r.in_first[d]);
    m.in_size[d] = static_cast<std::int8_t>(r.in_size[d]);
  }
  for (int o = 0; o < r.n_out; ++o) {
    m.out_first[o] = static_cast<std::int8_t>(r.out_first[o]);
    m.out_size[o] = static_cast<std::int8_t>(r.out_size[o]);
  }
  for (int i = 0; i < max_elementary; ++i) {
    m.in_axes[i] = static_cast<std::int8_t>(r.in_axes[i]);
    m.out_axes[i] = static_cast<std::int8_t>(r.out_axes[i]);
  }
  for (int e = 0; e < r.n_elem; ++e) {
    if (r.reduced[e]) m.reduced |= 1u << e;
    if (r.repeated[e]) m.repeated |= 1u << e;
    m.length[e] = lengths.length[e];
  }
  return m;
}

}  // namespace einlm::pattern
