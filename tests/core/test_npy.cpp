// Tests of einlm/core/npy.hpp: files written by NumPy (tests/data/core, made by
// tools/make_core_goldens.py) in every accepted layout, round trips of einlm's own files, and the
// rejection of malformed or mismatched files with a message naming the problem.
#include <doctest/doctest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "einlm/core/npy.hpp"
#include "support/check.hpp"

using namespace einlm;

namespace {

std::string data(const std::string& name) { return test::test_data_dir() + "/core/" + name; }

std::string temp_path(const std::string& name) {
  return std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/einlm_test_npy_" + name;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("files written by NumPy load with their values") {
  const auto f4 = load_npy<float, extents<3, 4>>(data("f4_c.npy"));
  for (int i = 0; i < 12; ++i) CHECK(f4(i / 4, i % 4) == static_cast<float>(i * 0.5 - 3));

  // Fortran order is reordered to C order.
  const auto f8 = load_npy<double, dims<3>>(data("f8_fortran.npy"));
  CHECK(to_array(f8.extents()) == index_array<3>{2, 3, 4});
  for (int i = 0; i < 24; ++i) CHECK(f8(i / 12, (i / 4) % 3, i % 4) == i * 0.25 + 1);

  // Big-endian data is swapped.
  const auto be = load_npy<std::int64_t, extents<5>>(data("i8_big_endian.npy"));
  for (int i = 0; i < 5; ++i) CHECK(be(i) == i * 1000 - 2000);

  const auto b = load_npy<bool, extents<2, 3>>(data("b1.npy"));
  for (int i = 0; i < 6; ++i) CHECK(b(i / 3, i % 3) == (i % 2 == 1));

  const auto h = load_npy<fp16, extents<4>>(data("f2.npy"));
  for (int i = 0; i < 4; ++i) CHECK(convert<float>(h(i)) == convert<float>(convert<fp16>(i / 3.0)));

  const auto s = load_npy<std::uint16_t, extents<>>(data("u2_scalar.npy"));
  CHECK(s() == 513);

  const auto v2 = load_npy<float, extents<2, 2>>(data("f4_v2.npy"));
  CHECK(v2(1, 1) == 10.0f);
}

TEST_CASE("npz archives written by np.savez") {
  const auto members = read_npz(data("archive.npz"));
  REQUIRE(members.size() == 2);
  const auto w = to_tensor<float, extents<2, 3>>(members.at("weights"));
  CHECK(w(1, 2) == 4.0f);
  const auto ids = to_tensor<std::int32_t, extents<4>>(members.at("ids"));
  CHECK(ids(3) == 3);
  CHECK_THROWS_WITH_AS(read_npz(data("compressed.npz")),
                       doctest::Contains("is compressed (method 8); only uncompressed archives"), io_error);
}

TEST_CASE("the CS336 snapshot archives read") {
  const auto dir = test::fixtures_dir();
  if (!dir) {
    MESSAGE("EINLM_FIXTURES_DIR is not set: skipping the CS336 snapshot check");
    return;
  }
  const auto rope = read_npz(*dir + "/cs336/_snapshots/test_rope.npz");
  REQUIRE(rope.count("array") == 1);
  CHECK(rope.at("array").descr == "<f4");
  CHECK(rope.at("array").shape == std::vector<index_t>{4, 12, 64});
}

TEST_CASE("einlm's files round-trip, strided views included") {
  tensor<float, extents<3, 5>> t;
  for (int i = 0; i < 15; ++i) t(i / 5, i % 5) = static_cast<float>(i) * 1.5f;
  const auto path = temp_path("roundtrip.npy");
  // [snippet npy]
  save_npy(path, t);
  const auto back = load_npy<float, dims<2>>(path);
  for (int i = 0; i < 15; ++i) CHECK(back(i / 5, i % 5) == t(i / 5, i % 5));
  // [end snippet]
  // A transposed, reversed view is written in its logical order.
  save_npy(path, slice(transpose<1, 0>(t), range{none, none, -1}, full_extent));
  const auto tr = load_npy<float, extents<5, 3>>(path);
  for (int r = 0; r < 5; ++r)
    for (int c = 0; c < 3; ++c) CHECK(tr(r, c) == t(c, 4 - r));
  tensor<std::int32_t, extents<>> scalar;
  scalar() = -7;
  save_npy(path, scalar);
  CHECK(load_npy<std::int32_t, extents<>>(path)() == -7);
  std::remove(path.c_str());
}

TEST_CASE("malformed and mismatched files are rejected with a message") {
  const auto path = temp_path("bad.npy");
  const std::string good = read_bytes(data("f4_c.npy"));

  write_bytes(path, "PK\x03\x04 not numpy");
  CHECK_THROWS_WITH_AS(read_npy(path), doctest::Contains("not a .npy file"), io_error);

  std::string version = good;
  version[6] = 9;
  write_bytes(path, version);
  CHECK_THROWS_WITH_AS(read_npy(path), doctest::Contains("unsupported .npy format version 9.0"), io_error);

  write_bytes(path, good.substr(0, good.size() - 5));
  CHECK_THROWS_WITH_AS(read_npy(path), doctest::Contains("truncated data"), io_error);

  write_bytes(path, good + "xyz");
  CHECK_THROWS_WITH_AS(read_npy(path), doctest::Contains("3 unexpected bytes after the data"), io_error);

  write_bytes(path, good.substr(0, 20));
  CHECK_THROWS_WITH_AS(read_npy(path), doctest::Contains("truncated .npy header"), io_error);

  std::string header = good;
  header.replace(header.find("'shape'"), 7, "'shapf'");
  write_bytes(path, header);
  CHECK_THROWS_WITH_AS(read_npy(path), doctest::Contains("malformed .npy header (unexpected key 'shapf')"), io_error);

  CHECK_THROWS_WITH_AS(read_npy(data("c8_unsupported.npy")), doctest::Contains("unsupported dtype '<c8'"), io_error);
  CHECK_THROWS_WITH_AS((load_npy<double, extents<3, 4>>(data("f4_c.npy"))),
                       doctest::Contains("dtype '<f4' does not match the requested float64"), io_error);
  CHECK_THROWS_WITH_AS((load_npy<float, extents<4, 3>>(data("f4_c.npy"))),
                       doctest::Contains("shape (3, 4) does not match the static shape (4, 3)"), shape_error);
  CHECK_THROWS_WITH_AS((load_npy<float, dims<3>>(data("f4_c.npy"))), doctest::Contains("expected a rank-3 shape"),
                       shape_error);
  CHECK_THROWS_WITH_AS(read_npy(temp_path("missing.npy")), doctest::Contains("cannot open for reading"), io_error);
  std::remove(path.c_str());
}

TEST_CASE("a failed save leaves the previous file intact") {
  const auto path = temp_path("keep.npy");
  tensor<float, extents<2>> t;
  t(0) = 1;
  t(1) = 2;
  save_npy(path, t);
  // Saving into a directory that does not exist fails before anything is replaced.
  CHECK_THROWS_AS(save_npy(temp_path("no_such_dir/x.npy"), t), io_error);
  CHECK(load_npy<float, extents<2>>(path)(1) == 2.0f);
  std::remove(path.c_str());
}
