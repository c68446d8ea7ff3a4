// The largest absolute difference between two tensors (or anything with size() and data()) of the
// same number of elements, in double: the error measure of the nn tests.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

namespace einlm::test {

template <class A, class B>
double max_abs_diff(const A& a, const B& b) {
  REQUIRE(a.size() == b.size());
  double m = 0;
  for (decltype(a.size()) i = 0; i < a.size(); ++i)
    m = std::max(m, std::abs(static_cast<double>(a.data()[i]) - static_cast<double>(b.data()[i])));
  return m;
}

}  // namespace einlm::test
