// Tests of einlm/core/error.hpp: the hierarchy and the message helpers.
#include <doctest/doctest.h>

#include <vector>

#include "einlm/core/error.hpp"

TEST_CASE("errors derive from einlm::error and std::runtime_error") {
  CHECK_THROWS_AS(throw einlm::shape_error("x"), einlm::error);
  CHECK_THROWS_AS(throw einlm::io_error("x"), std::runtime_error);
  CHECK_THROWS_AS(throw einlm::value_error("x"), einlm::error);
  CHECK_THROWS_AS(throw einlm::cuda_error(2, "x"), einlm::error);
  CHECK(einlm::cuda_error(2, "out of memory").code() == 2);
}

TEST_CASE("shapes print the NumPy way") {
  CHECK(einlm::detail::format_shape({}) == "()");
  CHECK(einlm::detail::format_shape({7}) == "(7,)");
  CHECK(einlm::detail::format_shape(std::vector<long>{2, 3, 4}) == "(2, 3, 4)");
  CHECK(einlm::detail::concat("add: ", 3, " and ", 4.5) == "add: 3 and 4.5");
}
