// Tests of the einlm-tokenizer command-line tool: train -> encode -> decode round trips in every id
// format, convert, pretokenize, the u16 limit, and errors (non-zero status, message on stderr).
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "support.hpp"

using namespace einlm_test;

namespace {

struct result {
  int status;
  std::string out;
};

/// Runs the tool through the shell; stdout and stderr are captured together.
result run(const std::string& args) {
  const std::string cmd = std::string(EINLM_TOKENIZER_CLI) + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int st = ::pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

struct work_dir {
  std::filesystem::path path = std::filesystem::temp_directory_path() / ("einlm_cli_" + std::to_string(::getpid()));
  work_dir() { std::filesystem::create_directories(path); }
  ~work_dir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::string q(const std::string& s) { return "'" + s + "'"; }

}  // namespace

TEST_CASE("cli: --help documents every command") {
  const auto r = run("--help");
  CHECK(r.status == 0);
  for (const char* word : {"train", "encode", "decode", "convert", "pretokenize", "--vocab-size", "--special",
                           "--threads", "--tie-break", "--format", "u16", "u32", "--out", "--tiktoken", "--hf-json"})
    CHECK(r.out.find(word) != std::string::npos);
}

TEST_CASE("cli: train, then encode and decode round-trip in text, u16 and u32") {
  const work_dir w;
  const auto corpus = w / "corpus.txt";
  std::string text = read(data_dir() + "extra_text.txt");
  for (int i = 0; i < 20; ++i) text += "Once upon a time<|endoftext|>there was a tokenizer. " + std::to_string(i) + "\n";
  tk::detail::write_file(corpus, text);
  auto r = run("train --vocab-size 400 --special '<|endoftext|>' --threads 2 --out " + q(w / "model") + " " + q(corpus));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  const auto model = "--vocab " + q(w / "model/vocab.json") + " --merges " + q(w / "model/merges.txt");
  for (const char* f : {"text", "u16", "u32"}) {
    INFO("format ", std::string(f));
    r = run("encode " + model + " --special '<|endoftext|>' --format " + f + " --out " + q(w / "ids") + " " + q(corpus));
    REQUIRE_MESSAGE(r.status == 0, r.out);
    r = run("decode " + model + " --format " + f + " --out " + q(w / "back.txt") + " " + q(w / "ids"));
    REQUIRE_MESSAGE(r.status == 0, r.out);
    CHECK(read(w / "back.txt") == text);
  }
  // The ids are those of the library, and <|endoftext|> is one token (the last id).
  const tk::bpe_tokenizer tok(tk::load_gpt2(w / "model/vocab.json", w / "model/merges.txt", {"<|endoftext|>"}));
  r = run("encode " + model + " --special '<|endoftext|>' " + q(corpus));
  std::string want;
  for (auto id : tok.encode(text)) want += (want.empty() ? "" : " ") + std::to_string(id);
  CHECK(r.out == want + "\n");
  CHECK(r.out.find(" 399 ") != std::string::npos);
  // Several threads: the same ids.
  CHECK(run("encode " + model + " --special '<|endoftext|>' --threads 2 " + q(corpus)).out == r.out);
  // Standard input works too.
  CHECK(run("encode " + model + " --special '<|endoftext|>' < " + q(corpus)).out == r.out);
}

TEST_CASE("cli: convert writes tiktoken and HF files that load to the same encodings") {
  const work_dir w;
  const auto corpus = w / "corpus.txt";
  tk::detail::write_file(corpus, read(data_dir() + "extra_text.txt"));
  REQUIRE(run("train --vocab-size 350 --out " + q(w / "m") + " " + q(corpus)).status == 0);
  const auto model = "--vocab " + q(w / "m/vocab.json") + " --merges " + q(w / "m/merges.txt");
  REQUIRE(run("convert " + model + " --to tiktoken --out " + q(w / "m.tiktoken")).status == 0);
  REQUIRE(run("convert " + model + " --to hf --out " + q(w / "tokenizer.json")).status == 0);
  const auto a = run("encode " + model + " " + q(corpus));
  CHECK(run("encode --tiktoken " + q(w / "m.tiktoken") + " " + q(corpus)).out == a.out);
  CHECK(run("encode --hf-json " + q(w / "tokenizer.json") + " " + q(corpus)).out == a.out);
  REQUIRE(run("train --vocab-size 350 --format hf --tie-break hf --out " + q(w / "h") + " " + q(corpus)).status == 0);
  CHECK(std::filesystem::exists(w / "h/tokenizer.json"));
}

TEST_CASE("cli: pretokenize prints the pieces as JSON strings") {
  const work_dir w;
  tk::detail::write_file(w / "in.txt", "Hello, world!\n");
  const auto r = run("pretokenize " + q(w / "in.txt"));
  CHECK(r.status == 0);
  CHECK(r.out == "\"Hello\"\n\",\"\n\" world\"\n\"!\"\n\"\\n\"\n");
}

TEST_CASE("cli: errors exit non-zero with a message on stderr") {
  const work_dir w;
  auto r = run("frobnicate");
  CHECK(r.status == 2);
  CHECK(r.out.find("unknown command 'frobnicate'") != std::string::npos);
  r = run("train --out " + q(w / "x") + " input.txt");
  CHECK(r.status == 2);
  CHECK(r.out.find("--vocab-size") != std::string::npos);
  r = run("encode --vocab " + q(w / "none.json") + " --merges " + q(w / "none.txt"));
  CHECK(r.status == 1);
  CHECK(r.out.find("none.json: cannot open file for reading") != std::string::npos);
  // A vocabulary above 65,536 tokens cannot be written as u16.
  std::string ranks;
  for (int i = 0; i < 256; ++i) ranks += tk::detail::base64_encode(std::string(1, static_cast<char>(i))) + " " + std::to_string(i) + "\n";
  for (int i = 256; i < 65600; ++i) {
    const std::string tok = {'A', static_cast<char>('a' + i % 26), static_cast<char>('a' + i / 26 % 26), static_cast<char>('a' + i / 676 % 26),
                             static_cast<char>('a' + i / 17576)};
    ranks += tk::detail::base64_encode(tok) + " " + std::to_string(i) + "\n";
  }
  tk::detail::write_file(w / "big.tiktoken", ranks);
  r = run("encode --tiktoken " + q(w / "big.tiktoken") + " --format u16 /dev/null");
  CHECK(r.status == 1);
  CHECK(r.out.find("65600 tokens, more than 65,536; use --format u32") != std::string::npos);
  tk::detail::write_file(w / "ids.txt", "1 2 banana\n");
  r = run("decode --tiktoken " + q(w / "big.tiktoken") + " " + q(w / "ids.txt"));
  CHECK(r.status == 1);
  CHECK(r.out.find("ids.txt:1: 'banana' is not a token id\n") != std::string::npos);
  // Binary ids read as text: the bytes shown escaped and cut short, with the option to use.
  tk::detail::write_file(w / "ids.u16", std::string("\x05\x01\x41\x00\x07\x01\x08\x01\x09\x01\x0b\x01\x0c\x01"
                                                    "\x0e\x01\x0f\x01", 18));
  r = run("decode --tiktoken " + q(w / "big.tiktoken") + " " + q(w / "ids.u16"));
  CHECK(r.status == 1);
  CHECK_MESSAGE(r.out.find("ids.u16:1: '\\x05\\x01A\\x00\\x07\\x01\\x08…' is not a token id (binary ids? pass "
                           "--format u16 or u32)") != std::string::npos,
                r.out);
  tk::detail::write_file(w / "ids.txt", "1 99999\n");
  r = run("decode --tiktoken " + q(w / "big.tiktoken") + " " + q(w / "ids.txt"));
  CHECK(r.status == 1);
  CHECK(r.out.find("token id 99999") != std::string::npos);
}
