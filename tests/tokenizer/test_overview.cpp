// The overview of docs/tokenizer.md, compiled and run: train on a small corpus, save GPT-2 files,
// load them, encode and decode (in a scratch directory, since the overview uses relative paths).
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "einlm/tokenizer.hpp"

TEST_CASE("the documentation's overview runs") {
  namespace fs = std::filesystem;
  const fs::path previous = fs::current_path();
  const fs::path scratch = fs::temp_directory_path() / "einlm_tokenizer_overview";
  fs::create_directories(scratch);
  fs::current_path(scratch);
  {
    std::ofstream corpus("corpus.txt");
    for (int i = 0; i < 50; ++i) corpus << "Hello, world! low lower lowest newest widest<|endoftext|>";
  }
  // [snippet overview]
  namespace tk = einlm::tokenizer;

  // Train (CS336's train_bpe): 256 bytes + merges + special tokens = 10,000 tokens.
  tk::train_options opt{.vocab_size = 10'000, .special_tokens = {"<|endoftext|>"}};
  tk::bpe_model model = tk::train_bpe({"corpus.txt"}, opt);
  tk::save_gpt2(model, "vocab.json", "merges.txt");

  // Encode and decode (CS336's Tokenizer.from_files / encode / decode).
  tk::bpe_tokenizer tok(tk::load_gpt2("vocab.json", "merges.txt", {"<|endoftext|>"}));
  std::vector<tk::token_id> ids = tok.encode("Hello, world!<|endoftext|>");
  std::string text = tok.decode(ids);
  // [end snippet]
  CHECK(text == "Hello, world!<|endoftext|>");
  CHECK(ids.size() < 10);
  fs::current_path(previous);
  fs::remove_all(scratch);
}
