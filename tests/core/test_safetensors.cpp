// Tests of einlm/core/safetensors.hpp: a file written by PyTorch's safetensors writer
// (tests/data/core/torch_written.safetensors, made by tools/make_safetensors_goldens.py) read back
// value for value; round trips of einlm's own files (every dtype, strided inputs, dynamic
// extents, metadata with escapes); every kind of malformed file rejected with a message naming the
// problem; typed loads that name the tensor and what was expected; and the atomic write: a write
// that fails (file size limit reached, as on a full disk) leaves the previous file intact.
#include <doctest/doctest.h>

#include <csignal>
#include <cstring>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/resource.h>

#include "einlm/core/safetensors.hpp"
#include "einlm/expr.hpp"
#include "support/check.hpp"

using namespace einlm;

namespace {

std::string data(const std::string& name) { return test::test_data_dir() + "/core/" + name; }

std::string temp_path(const std::string& name) {
  return std::string(std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp") + "/einlm_test_safetensors_" + name;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

/// A file made of a header (padded to 8 bytes) and `data_bytes` bytes of data.
std::string make_file(const std::string& header, std::size_t data_bytes) {
  std::string h = header;
  h.append((8 - h.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>((h.size() >> (8 * i)) & 0xff);
  return out + h + std::string(data_bytes, '\x01');
}

/// The message of the io_error that opening `bytes` as a safetensors file raises ("" if none).
std::string open_error(const std::string& bytes) {
  const std::string path = temp_path("malformed.safetensors");
  write_bytes(path, bytes);
  try {
    safetensors_file f(path);
  } catch (const io_error& e) {
    return e.what();
  }
  return "";
}

double float_formula(index_t i) { return static_cast<double>(i % 17) * 0.25 - 2; }

}  // namespace

TEST_CASE("a file written by PyTorch's safetensors is read value for value") {
  const safetensors_file f(data("torch_written.safetensors"));
  CHECK(f.size() == 12);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.metadata().at("unicode") == "\u00e9\u4e2d");

  // [snippet load]
  auto embeddings = f.load<float, extents<11, 8>>("token_embeddings.weight");  // (V, D)
  auto q_proj = f.load<bf16, extents<dyn, dyn>>("layers.0.attn.q_proj.weight");  // (D, D), shape from the file
  // [end snippet]
  for (index_t i = 0; i < embeddings.size(); ++i) CHECK(embeddings.data()[i] == float_formula(i));
  REQUIRE(q_proj.extent(0) == 8);
  for (index_t i = 0; i < q_proj.size(); ++i) CHECK(convert<double>(q_proj.data()[i]) == float_formula(i));
  const auto ln = f.load<fp16, extents<8>>("layers.0.ln1.weight");
  for (index_t i = 0; i < 8; ++i) CHECK(convert<double>(ln(i)) == float_formula(i));
  const auto head = f.load<double, extents<3, 4, 5>>("lm_head.weight");
  for (index_t i = 0; i < head.size(); ++i) CHECK(head.data()[i] == float_formula(i));
  CHECK(f.load<std::int64_t, extents<>>("step")() == 1200);
  const auto ids64 = f.load<std::int64_t, extents<2, 3>>("ids64");
  for (index_t i = 0; i < 6; ++i) CHECK(ids64.data()[i] == i * 1'000'003 - 7'000'000'000);
  const auto ids32 = f.load<std::int32_t, extents<7>>("ids32");
  for (index_t i = 0; i < 7; ++i) CHECK(ids32(i) == i * 7919 - 100'000);
  const auto i16 = f.load<std::int16_t, extents<5>>("i16");
  for (index_t i = 0; i < 5; ++i) CHECK(i16(i) == i * 31 - 1000);
  const auto i8 = f.load<std::int8_t, extents<9>>("i8");
  for (index_t i = 0; i < 9; ++i) CHECK(i8(i) == i * 3 - 100);
  const auto u8 = f.load<std::uint8_t, extents<300>>("u8");
  for (index_t i = 0; i < 300; ++i) CHECK(u8(i) == (i * 37) % 256);
  const auto mask = f.load<bool, extents<10>>("mask");
  for (index_t i = 0; i < 10; ++i) CHECK(mask(i) == (i % 3 == 0));
  CHECK(f.load<float, extents<dyn, 3>>("empty").size() == 0);
}

TEST_CASE("typed loads name the tensor and what was expected") {
  const safetensors_file f(data("torch_written.safetensors"));
  CHECK_THROWS_WITH_AS((f.load<float, extents<8, 8>>("layers.0.attn.q_proj.weight")),
                       doctest::Contains("tensor 'layers.0.attn.q_proj.weight' has dtype BF16, expected F32 (float32)"),
                       io_error);
  CHECK_THROWS_WITH_AS((f.load<float, extents<8, 11>>("token_embeddings.weight")),
                       doctest::Contains("shape (11, 8) does not match the static shape (8, 11)"), shape_error);
  CHECK_THROWS_WITH_AS((f.load<float, extents<11>>("token_embeddings.weight")),
                       doctest::Contains("expected a rank-1 shape"), shape_error);
  CHECK_THROWS_WITH_AS((f.load<float, extents<4>>("layers.0.attn.k_proj.weight")),
                       doctest::Contains("no tensor 'layers.0.attn.k_proj.weight' (the file has empty, i16, i8,"),
                       io_error);
  tensor<float, extents<11, 7>> wrong_shape;
  CHECK_THROWS_WITH_AS(f.load_into("token_embeddings.weight", wrong_shape),
                       doctest::Contains("tensor 'token_embeddings.weight' has shape (11, 8), expected (11, 7)"),
                       shape_error);
}

TEST_CASE("einlm's files round-trip: every dtype, strided inputs, dynamic extents, metadata") {
  const std::string path = temp_path("roundtrip.safetensors");
  tensor<float, extents<4, 6>> a = uniform<float>(extents<4, 6>{}, {1, 0}, -1.0, 1.0);  // (4, 6)
  tensor<bf16, dims<2>> b = cast<bf16>(uniform<float>(dims<2>(3, 5), {1, 1}, -1.0, 1.0));  // (3, 5), dynamic
  tensor<std::int64_t, extents<3>> c = arange<std::int64_t>(extents<3>{}, -5);               // (3,)
  // [snippet save]
  safetensors_writer w;
  w.add("a", a);
  w.add("a_transposed", transpose<1, 0>(a));  // a strided view is written in row-major order
  w.add("b", b);
  w.add("c", c);
  w.metadata["step"] = "42";
  w.write(path);  // atomically: a temporary file, fsync, rename
  // [end snippet]
  w.metadata["quote \" and \\ and \n"] = "tab\there";
  w.write(path);

  const safetensors_file f(path);
  CHECK(f.names() == std::vector<std::string>{"a", "a_transposed", "b", "c"});
  CHECK(f.metadata().at("step") == "42");
  CHECK(f.metadata().at("quote \" and \\ and \n") == "tab\there");
  CHECK(f.info("a_transposed").shape == std::vector<index_t>{6, 4});
  CHECK(f.info("b").dtype == "BF16");
  const auto a2 = f.load<float, extents<4, 6>>("a");
  const auto at = f.load<float, extents<6, 4>>("a_transposed");
  for (index_t i = 0; i < 4; ++i)
    for (index_t j = 0; j < 6; ++j) {
      CHECK(a2(i, j) == a(i, j));
      CHECK(at(j, i) == a(i, j));
    }
  const auto b2 = f.load<bf16, dims<2>>("b");
  REQUIRE(b2.extent(1) == 5);
  for (index_t i = 0; i < b.size(); ++i) CHECK(convert<float>(b2.data()[i]) == convert<float>(b.data()[i]));
  tensor<std::int64_t, extents<3>> c2;
  f.load_into("c", c2);
  CHECK(c2(0) == -5);
  CHECK(c2(2) == -3);
  // Into a strided destination.
  tensor<float, extents<6, 4>> back;
  f.load_into("a", transpose<1, 0>(back));
  CHECK(back(5, 3) == a(3, 5));
  std::filesystem::remove(path);
}

TEST_CASE("the writer rejects bad names and inconsistent raw bytes") {
  safetensors_writer w;
  tensor<float, extents<2>> x;
  x = 1.0f;
  w.add("x", x);
  CHECK_THROWS_WITH_AS(w.add("x", x), "safetensors: the tensor name 'x' is used twice", value_error);
  CHECK_THROWS_AS(w.add("", x), value_error);
  CHECK_THROWS_AS(w.add("__metadata__", x), value_error);
  CHECK_THROWS_WITH_AS(w.add_bytes("raw", "F32", {2, 3}, std::vector<std::uint8_t>(20)),
                       "safetensors: tensor 'raw' (F32, shape (2, 3)) needs 24 bytes, got 20", shape_error);
  CHECK_THROWS_AS(w.add_bytes("raw", "F12", {2}, std::vector<std::uint8_t>(8)), value_error);
  w.add_bytes("raw", "F8_E4M3", {4}, std::vector<std::uint8_t>{1, 2, 3, 4});
  const std::string path = temp_path("raw.safetensors");
  w.write(path);
  const safetensors_file f(path);
  CHECK(f.info("raw").dtype == "F8_E4M3");
  CHECK(f.bytes("raw")[3] == 4);
  std::filesystem::remove(path);
}

TEST_CASE("malformed files are rejected with the problem named") {
  const std::string good = read_bytes(data("torch_written.safetensors"));
  CHECK(open_error(good).empty());
  CHECK(open_error(good.substr(0, good.size() - 1)).find("the file is truncated") != std::string::npos);
  CHECK(open_error(good + "x").find("trailing bytes") != std::string::npos);
  CHECK(open_error(good.substr(0, 5)).find("fewer than the 8-byte header length") != std::string::npos);
  CHECK(open_error(good.substr(0, 100)).find("runs past the end of the file") != std::string::npos);
  std::string huge = good;
  huge[4] = '\x7f';  // a header length near 2^38
  CHECK(open_error(huge).find("exceeds 100,000,000 bytes") != std::string::npos);

  const auto entry = [](const std::string& name, const std::string& dtype, const std::string& shape, int b, int e) {
    return "\"" + name + "\":{\"dtype\":\"" + dtype + "\",\"shape\":" + shape + ",\"data_offsets\":[" +
           std::to_string(b) + "," + std::to_string(e) + "]}";
  };
  CHECK(open_error(make_file("{" + entry("a", "F32", "[2]", 0, 8) + "}", 8)).empty());
  CHECK(open_error(make_file("[1, 2]", 0)).find("expected '{'") != std::string::npos);
  CHECK(open_error(make_file("{\"a\":{\"dtype\":\"F32\"", 0)).find("malformed safetensors header") != std::string::npos);
  CHECK(open_error(make_file("{" + entry("a", "F31", "[2]", 0, 8) + "}", 8)).find("unknown dtype 'F31'") !=
        std::string::npos);
  CHECK(open_error(make_file("{" + entry("a", "F32", "[3]", 0, 8) + "}", 8))
            .find("tensor 'a' (F32, shape (3,)) needs 12 bytes but data_offsets [0, 8] give 8") != std::string::npos);
  CHECK(open_error(make_file("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 4, 12) + "}", 12))
            .find("overlaps the previous tensor") != std::string::npos);
  CHECK(open_error(make_file("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("b", "F32", "[2]", 12, 20) + "}", 20))
            .find("a hole precedes it") != std::string::npos);
  CHECK(open_error(make_file("{" + entry("a", "F32", "[2]", 0, 8) + "," + entry("a", "F32", "[2]", 8, 16) + "}", 16))
            .find("the tensor name 'a' appears twice") != std::string::npos);
  CHECK(open_error(make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 0)).find("tensor 'a' lacks data_offsets") !=
        std::string::npos);
  CHECK(open_error(make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,0]}}", 0))
            .find("expected a non-negative integer") != std::string::npos);
  CHECK(open_error(make_file("{\"__metadata__\":{\"k\":1}}", 0)).find("__metadata__ values must be strings") !=
        std::string::npos);
  CHECK(open_error(make_file("{} x", 0)).find("unexpected text after") != std::string::npos);
  CHECK_THROWS_WITH_AS(safetensors_file(temp_path("does_not_exist.safetensors")),
                       doctest::Contains("cannot open for reading"), io_error);
}

TEST_CASE("a failed write leaves the previous file intact") {
  const std::string path = temp_path("atomic.safetensors");
  tensor<float, extents<16>> small;
  small = 3.0f;
  safetensors_writer first;
  first.add("w", small);
  first.write(path);
  const std::string before = read_bytes(path);

  // A file size limit makes write() fail with EFBIG part way, as a full disk does.
  tensor<float, extents<4096>> large;
  large = 7.0f;
  safetensors_writer second;
  second.add("w", large);
  struct rlimit saved {};
  REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
  struct rlimit limited = saved;
  limited.rlim_cur = 4096;
  REQUIRE(setrlimit(RLIMIT_FSIZE, &limited) == 0);
  std::string message;
  try {
    second.write(path);
  } catch (const io_error& e) {
    message = e.what();
  }
  setrlimit(RLIMIT_FSIZE, &saved);
  std::signal(SIGXFSZ, old_handler);
  CHECK(message.find("the previous file, if any, is unchanged") != std::string::npos);
  CHECK(read_bytes(path) == before);
  CHECK(safetensors_file(path).load<float, extents<16>>("w")(15) == 3.0f);
  // No temporary file is left behind.
  const auto dir = std::filesystem::path(path).parent_path();
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    CHECK(entry.path().filename().string().find("einlm_test_safetensors_atomic.safetensors.tmp") == std::string::npos);
  std::filesystem::remove(path);

  CHECK_THROWS_WITH_AS(first.write("/nonexistent-dir/x.safetensors"),
                       doctest::Contains("cannot create a temporary file in /nonexistent-dir"), io_error);
}
