// einlm/pattern/fixed_string.hpp — a string usable as a template argument: rearrange<"a b -> b a">.
//
// fixed_string<N> is a structural type holding N characters (without the terminating zero), built
// from a string literal by class template argument deduction. Patterns are parsed from it by
// constexpr functions on the host; per ARCHITECTURE decision 3 a fixed_string never appears in the
// template arguments of a __global__ kernel (nvcc's host stubs re-spell class-type template
// arguments and fail): parsed patterns are lowered to integer packs first.
#pragma once

#include <cstddef>
#include <string_view>

namespace einlm {

template <std::size_t N>
struct fixed_string {
  char chars[N + 1] = {};

  constexpr fixed_string() = default;
  constexpr fixed_string(const char (&s)[N + 1]) {
    for (std::size_t i = 0; i <= N; ++i) chars[i] = s[i];
  }
  static constexpr std::size_t size() { return N; }
  constexpr std::string_view view() const { return std::string_view(chars, N); }
  constexpr char operator[](std::size_t i) const { return chars[i]; }
  template <std::size_t M>
  constexpr bool operator==(const fixed_string<M>& other) const {
    return view() == other.view();
  }
};

template <std::size_t N>
fixed_string(const char (&)[N]) -> fixed_string<N - 1>;

}  // namespace einlm
