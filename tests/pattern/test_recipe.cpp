// Tests of einlm/pattern/recipe.hpp and errors.hpp: recipes of rearrange, reduce and repeat
// (elementary axes, groups, inference), and einops' error sentences, each compared with the text
// einops 0.8.2 produces for the same pattern (captured from Python).
#include <doctest/doctest.h>

#include <string>

#include "einlm/pattern/errors.hpp"
#include "einlm/pattern/lower.hpp"
#include "einlm/pattern/recipe.hpp"

using namespace einlm::pattern;

namespace {

std::string sentence(std::string_view pattern, op_kind op, int ndim, std::initializer_list<given_axis> given = {},
                     const char* op_name = "sum") {
  const recipe r = make_recipe(pattern, op, ndim, given.begin(), static_cast<int>(given.size()));
  return error_sentence(r.error, r.error_text, r.error_a, r.error_b, r.error_names, r.error_lengths, r.n_error_names,
                        op_name);
}

std::string shape_sentence(std::string_view pattern, op_kind op, std::initializer_list<std::int64_t> shape,
                           std::initializer_list<given_axis> given = {}) {
  const recipe r = make_recipe(pattern, op, static_cast<int>(shape.size()), given.begin(), static_cast<int>(given.size()));
  REQUIRE(r.ok());
  std::int64_t lengths[8] = {};
  int g = 0;
  for (const auto& a : given) lengths[g++] = a.length;
  const resolved res = resolve(r, shape.begin(), lengths);
  return error_sentence(res.error, {}, res.error_a, res.error_b, nullptr, nullptr, 0, "rearrange");
}

}  // namespace

// A recipe is a constant expression.
constexpr recipe heads = make_recipe("b s (h d) -> b h s d", op_kind::rearrange, 3, nullptr, 0);
static_assert(!heads.ok() && heads.error == error_code::cannot_infer);  // h and d both unknown
constexpr given_axis h8[] = {{"h", 8}};
constexpr recipe heads8 = make_recipe("b s (h d) -> b h s d", op_kind::rearrange, 3, h8, 1);
static_assert(heads8.ok() && heads8.n_elem == 4 && heads8.n_in == 3 && heads8.n_out == 4);
static_assert(heads8.in_size[2] == 2 && heads8.in_unknown[2] == 3);  // d is inferred
constexpr std::int64_t in_shape[] = {2, 10, 512};
constexpr std::int64_t h8_length[] = {8};
constexpr resolved heads8_lengths = resolve(heads8, in_shape, h8_length);
static_assert(heads8_lengths.ok() && heads8_lengths.length[3] == 64 && heads8_lengths.out_extent[1] == 8 &&
              heads8_lengths.out_extent[2] == 10 && heads8_lengths.out_extent[3] == 64);

TEST_CASE("recipes: groups, reduced and repeated axes, ellipsis expansion") {
  const recipe r = make_recipe("b c (h1 2) (w1 2) -> b c h1 w1", op_kind::reduce, 4, nullptr, 0);
  REQUIRE(r.ok());
  CHECK(r.n_elem == 6);
  CHECK(r.reduced[3]);  // the first anonymous 2
  CHECK(r.reduced[5]);
  CHECK(!r.reduced[2]);
  CHECK(r.n_out == 4);

  const given_axis c3[] = {{"c", 3}};
  const recipe rep = make_recipe("h w -> h w c", op_kind::repeat, 2, c3, 1);
  REQUIRE(rep.ok());
  CHECK(rep.repeated[2]);
  CHECK(rep.given[2] == 0);

  const recipe e = make_recipe("a ... b -> b (...) a", op_kind::rearrange, 5, nullptr, 0);
  REQUIRE(e.ok());
  CHECK(e.n_in == 5);
  CHECK(e.n_out == 3);
  CHECK(e.out_size[1] == 3);  // the ellipsis' three axes merged
  const recipe e0 = make_recipe("a ... b -> b ... a", op_kind::rearrange, 2, nullptr, 0);
  REQUIRE(e0.ok());
  CHECK(e0.n_out == 2);  // an ellipsis may cover no dimension
  const recipe red = make_recipe("a ... -> ", op_kind::reduce, 3, nullptr, 0);
  REQUIRE(red.ok());
  CHECK(red.n_out == 0);
  CHECK(red.reduced[0]);
  CHECK(red.reduced[1]);
  CHECK(red.reduced[2]);
  const recipe keep = make_recipe("b c h w -> b c 1 1", op_kind::reduce, 4, nullptr, 0);
  REQUIRE(keep.ok());
  CHECK(keep.n_out == 4);
  CHECK(keep.out_size[2] == 0);

  const std::int64_t shape[] = {6, 4};
  const recipe split = make_recipe("(a b) c -> a b c", op_kind::rearrange, 2, h8, 0);
  CHECK(split.error == error_code::cannot_infer);
  const given_axis a2[] = {{"a", 2}};
  const recipe split2 = make_recipe("(a b) c -> a b c", op_kind::rearrange, 2, a2, 1);
  const std::int64_t two[] = {2};
  const resolved lengths = resolve(split2, shape, two);
  REQUIRE(lengths.ok());
  const index_map map = lower(split2, lengths);
  // Output index (1, 2, 3) is input (1·3 + 2, 3).
  einlm::index_t el[max_elementary] = {};
  map.decompose(einlm::index_array<3>{1, 2, 3}, el);
  CHECK(map.compose<2>(el) == einlm::index_array<2>{5, 3});
}

TEST_CASE("einops' sentences, word for word") {
  using o = op_kind;
  CHECK(sentence("a b c -> a b", o::rearrange, 3) == "Identifiers only on one side of expression (should be on both): {'c'}");
  CHECK(sentence("a b c -> a b c d", o::rearrange, 3) ==
        "Identifiers only on one side of expression (should be on both): {'d'}");
  CHECK(sentence("a b 3 -> a b", o::rearrange, 3) ==
        "Non-unitary anonymous axes are not supported in rearrange (exception is length 1)");
  CHECK(sentence("a b c d -> a b c d", o::rearrange, 3) == "Wrong shape: expected 4 dims. Received 3-dim tensor.");
  CHECK(sentence("a b c ... d -> a b c d", o::reduce, 3) == "Wrong shape: expected >=4 dims. Received 3-dim tensor.");
  CHECK(sentence("a b ... c -> a b c", o::rearrange, 3) ==
        "Identifiers only on one side of expression (should be on both): {'\xE2\x80\xA6'}");
  CHECK(sentence("a b -> a b ...", o::rearrange, 3) ==
        "Ellipsis found in right side, but not left side of a pattern a b -> a b ...");
  CHECK(sentence("a (b ...) -> a b ...", o::rearrange, 3) ==
        "Ellipsis inside parenthesis in the left side is not allowed: a (b ...) -> a b ...");
  CHECK(sentence("a (b1 b2) c -> a b1 b2 c", o::rearrange, 3) == "Could not infer sizes for {'b1', 'b2'}");
  CHECK(sentence("a b c -> a b c", o::rearrange, 3, {{"d", 2}}) == "Axis d is not used in transform");
  CHECK(sentence("a b c -> a b c", o::rearrange, 3, {{"_d", 2}}) == "('Invalid name for an axis', '_d')");
  CHECK(sentence("a b c -> a d", o::reduce, 3) == "Unexpected identifiers on the right side of reduce sum: {'d'}");
  CHECK(sentence("a b c -> a b c 2", o::reduce, 3, {}, "mean") ==
        "Unexpected identifiers on the right side of reduce mean: {2-axis}");
  CHECK(sentence("a b c -> a b c d", o::repeat, 3) == "Specify sizes for new axes in repeat: {'d'}");
  CHECK(sentence("a b c x -> a b c", o::repeat, 4) == "Unexpected identifiers on the left side of repeat: {'x'}");
  CHECK(sentence("a b c -> a (b c", o::rearrange, 3) == "Imbalanced parentheses in expression: \" a (b c\"");
  CHECK(sentence("a b c -> a b, c", o::rearrange, 3) == "Unknown character ','");
  CHECK(sentence("a b c -> a b c a", o::rearrange, 3) == "Indexing expression contains duplicate dimension \"a\"");
  CHECK(sentence("a (b c) -> a b c", o::rearrange, 2, {{"b", 2}, {"c", 0}}).empty());  // sizes are checked later

  CHECK(shape_sentence("a (b1 b2) c -> a b1 b2 c", o::rearrange, {2, 3, 4}, {{"b1", 2}}) ==
        "Shape mismatch, can't divide axis of length 3 in chunks of 2");
  CHECK(shape_sentence("a (b1 b2) c -> a b1 b2 c", o::rearrange, {2, 3, 4}, {{"b1", 3}, {"b2", 2}}) ==
        "Shape mismatch, 3 != 6");
  CHECK(shape_sentence("a b () -> a b", o::rearrange, {2, 3, 4}) == "Shape mismatch, 4 != 1");
}

TEST_CASE("the full message frames the sentence as einops does") {
  CHECK(operation_message("rearrange", "a (b1 b2) c -> a b1 b2 c", {2, 3, 4}, {{"b1", 3}, {"b2", 2}},
                          "Shape mismatch, 3 != 6") ==
        " Error while processing rearrange-reduction pattern \"a (b1 b2) c -> a b1 b2 c\".\n Input tensor shape: (2, 3, 4). "
        "Additional info: {'b1': 3, 'b2': 2}.\n Shape mismatch, 3 != 6");
}
