// Tests of einlm/pattern/parse.hpp: einops' test_parsing.py, transcribed — evaluated at compile time
// (static_assert) and at run time — plus the error codes of every malformed side.
#include <doctest/doctest.h>

#include <string_view>

#include "einlm/pattern/parse.hpp"

using namespace einlm::pattern;

namespace {

// Dimension g of a side as its axis names ("" for anonymous lengths printed as numbers).
constexpr bool group_is(const side& s, int g, std::initializer_list<std::string_view> names) {
  if (g >= s.n_groups || s.group_size[g] != static_cast<int>(names.size())) return false;
  int k = 0;
  for (auto n : names) {
    const axis_ref& a = s.axes[s.group_first[g] + k++];
    if (a.ellipsis ? n != "..." : a.name != n) return false;
  }
  return true;
}

}  // namespace

// test_elementary_axis_name
static_assert(check_axis_name("a") == error_code::none);
static_assert(check_axis_name("i9123") == error_code::none);
static_assert(check_axis_name("camelCase") == error_code::none);
static_assert(check_axis_name("u_n_d_e_r_score") == error_code::none);
static_assert(check_axis_name("unreasonablyLongAxisName") == error_code::none);
static_assert(check_axis_name("") == error_code::invalid_identifier);
static_assert(check_axis_name("2b") == error_code::invalid_identifier);
static_assert(check_axis_name("12") == error_code::invalid_identifier);
static_assert(check_axis_name("_startWithUnderscore") == error_code::underscore_identifier);
static_assert(check_axis_name("endWithUnderscore_") == error_code::underscore_identifier);
static_assert(check_axis_name("_") == error_code::underscore_identifier);
static_assert(check_axis_name("_", true) == error_code::none);
static_assert(check_axis_name("...") == error_code::invalid_identifier);
static_assert(check_axis_name("\xC3\x9F") == error_code::none);  // ß

// test_parse_expression, at compile time
constexpr side p1 = parse_side("a1  b1   c1    d1");
static_assert(p1.ok() && p1.n_groups == 4 && group_is(p1, 0, {"a1"}) && group_is(p1, 3, {"d1"}));
static_assert(!p1.has_anonymous && !p1.has_ellipsis);
constexpr side p2 = parse_side("() () () ()");
static_assert(p2.ok() && p2.n_groups == 4 && p2.n_axes == 0 && group_is(p2, 2, {}));
constexpr side p3 = parse_side("1 1 1 ()");
static_assert(p3.ok() && p3.n_groups == 4 && p3.n_axes == 0);
constexpr side p4 = parse_side("5 (3 4)");
static_assert(p4.ok() && p4.n_groups == 2 && p4.has_anonymous && p4.axes[0].length == 5 && p4.axes[1].length == 3 &&
              p4.axes[2].length == 4 && p4.group_size[1] == 2 && p4.has_composition);
constexpr side p5 = parse_side("5 1 (1 4) 1");
static_assert(p5.ok() && p5.n_groups == 4 && p5.group_size[1] == 0 && p5.group_size[2] == 1 &&
              p5.axes[p5.group_first[2]].length == 4 && p5.group_size[3] == 0);
constexpr side p6 = parse_side("name1 ... a1 12 (name2 14)");
static_assert(p6.ok() && p6.n_groups == 5 && p6.has_ellipsis && !p6.ellipsis_parenthesized && p6.ellipsis_group == 1 &&
              group_is(p6, 0, {"name1"}) && group_is(p6, 1, {"..."}) && group_is(p6, 2, {"a1"}) &&
              p6.axes[p6.group_first[3]].length == 12 && p6.group_size[4] == 2 && p6.has_anonymous);
constexpr side p7 = parse_side("(name1 ... a1 12) name2 14");
static_assert(p7.ok() && p7.n_groups == 3 && p7.has_ellipsis && p7.ellipsis_parenthesized && p7.group_size[0] == 4 &&
              group_is(p7, 1, {"name2"}));
// Unicode letters are identifier characters.
static_assert(parse_side("camelCase under_scored cApiTaLs \xC3\x9F ...").ok());

TEST_CASE("test_invalid_expressions: each malformed side fails with einops' error") {
  CHECK(parse_side("... a b c d").ok());
  CHECK(parse_side("... a b c d ...").error == error_code::more_than_one_ellipsis);
  CHECK(parse_side("... a b c (d ...)").error == error_code::more_than_one_ellipsis);
  CHECK(parse_side("(... a) b c (d ...)").error == error_code::more_than_one_ellipsis);
  CHECK(parse_side("(a) b c (d ...)").ok());
  CHECK(parse_side("(a)) b c (d ...)").error == error_code::unbalanced_brackets);
  CHECK(parse_side("(a b c (d ...)").error == error_code::nested_brackets);
  CHECK(parse_side("(a) (()) b c (d ...)").error == error_code::nested_brackets);
  CHECK(parse_side("(a) ((b c) (d ...))").error == error_code::nested_brackets);
  CHECK(parse_side("1a").error == error_code::invalid_identifier);
  CHECK(parse_side("_pre").error == error_code::underscore_identifier);
  CHECK(parse_side("...pre").error == error_code::invalid_identifier);
  CHECK(parse_side("pre...").error == error_code::invalid_identifier);
  CHECK(parse_side("a . b").error == error_code::dots_outside_ellipsis);
  CHECK(parse_side("a (b c").error == error_code::unclosed_bracket);
  CHECK(parse_side("a (b c").error_text == "a (b c");
  CHECK(parse_side("a b a").error == error_code::duplicate_axis);
  CHECK(parse_side("a b a").error_text == "a");
  CHECK(parse_side("a b a", false, true).ok());
  CHECK(parse_side("a 0").error == error_code::zero_anonymous_axis);
  CHECK(parse_side("a, b").error == error_code::unknown_character);
  CHECK(parse_side("a, b").error_char == ',');
  CHECK(parse_side("a - b").error == error_code::unknown_character);
  CHECK(parse_side("_ b _", true).ok());
}

TEST_CASE("splitting at the arrow") {
  static_assert(split_arrow("a b -> b a").ok);
  static_assert(split_arrow("a b -> b a").left == "a b ");
  static_assert(split_arrow("a b -> b a").right == " b a");
  CHECK(!split_arrow("a b").ok);
  CHECK(!split_arrow("a -> b -> c").ok);
}
