// Tests of einlm/pattern/invert.hpp: patterns with their sides exchanged, evaluated at compile time
// (static_assert) — the ellipsis written out as named axes whose prefix avoids the pattern's names,
// unit dimensions, anonymous axes, brackets — and the failures (a pattern that does not parse, an
// ellipsis longer than the rank allows).
#include <doctest/doctest.h>

#include <string_view>

#include "einlm/pattern/invert.hpp"

using namespace einlm::pattern;

namespace {

/// The swapped text of `pattern` for an input of rank `rank`, or "<failed>".
template <std::size_t Capacity = 256>
constexpr pattern_text<Capacity> swapped(std::string_view pattern, int rank) {
  return swap_sides<Capacity>(pattern, rank);
}

constexpr bool swaps_to(std::string_view pattern, int rank, std::string_view expected) {
  const auto s = swapped(pattern, rank);
  return s.ok && s.view() == expected;
}

}  // namespace

// Permutations, splits and merges: the right side's dimensions, " -> ", the left side's.
static_assert(swaps_to("b s (h d) -> b h s d", 3, "b h s d -> b s (h d)"));
static_assert(swaps_to("a b c -> (c a) b", 3, "(c a) b -> a b c"));
static_assert(swaps_to("a b -> a", 2, "a -> a b"));  // a reduce becomes a repeat
// Unit dimensions are written "()", anonymous axes keep their digits.
static_assert(swaps_to("a 1 c -> c () a", 3, "c () a -> a () c"));
static_assert(swaps_to("a b -> (a 3) b", 2, "(a 3) b -> a b"));
// The ellipsis becomes as many named axes as it covers, inside brackets too.
static_assert(swaps_to("b ... c -> c (b ...)", 4, "c (b ell0 ell1) -> b ell0 ell1 c"));
static_assert(swaps_to("... c -> c", 1, "c -> c"));  // an empty ellipsis
static_assert(swaps_to("b ... -> b", 3, "b -> b ell0 ell1"));
// The prefix is the shortest "el…l" that no name of the pattern starts with.
static_assert(ellipsis_prefix_length("a ... -> ...") == 3);
static_assert(ellipsis_prefix_length("ell ... -> ell ...") == 4);
static_assert(ellipsis_prefix_length("ell0 elll ... -> ...") == 5);
static_assert(swaps_to("ell ... -> ... ell", 3, "elll0 elll1 ell -> ell elll0 elll1"));
// Failures: no arrow, a side that does not parse, a rank too small for the named axes, an
// ellipsis on the right only, a capacity too small.
static_assert(!swapped("a b", 2).ok);
static_assert(!swapped("a (b -> a b", 2).ok);
static_assert(!swapped("a b c ... -> a b c ...", 2).ok);
static_assert(!swapped("a -> a ...", 1).ok);
static_assert(!swapped<8>("a b c -> c b a", 3).ok);

TEST_CASE("swap_sides at run time agrees with compile time") {
  const auto s = swap_sides<swapped_capacity(22, 4)>("b ... (h d) -> b h ... d", 4);
  REQUIRE(s.ok);
  CHECK(s.view() == "b h ell0 ell1 d -> b ell0 ell1 (h d)");
  char name[max_ellipsis_prefix + 12] = {};
  const int n = ellipsis_axis_name(name, 4, 12);
  CHECK(std::string_view(name, static_cast<std::size_t>(n)) == "elll12");
}
