// tokenizer_tour — a walk through einlm's byte-level BPE tokenizer:
//   1. pre-tokenize a sentence the way GPT-2 does;
//   2. train a small vocabulary (CS336's rules) and show the first merges;
//   3. encode and decode, with and without special tokens;
//   4. stream a text in small chunks and get the same ids;
//   5. save the vocabulary as GPT-2, tiktoken and HF files and load it back;
//   6. with the CS336 fixtures (EINLM_FIXTURES_DIR), load GPT-2 itself.
// Usage: tokenizer_tour [TRAINING_TEXT_FILE]
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>

#include "einlm/tokenizer.hpp"

namespace tk = einlm::tokenizer;

namespace {

std::string show(std::string_view bytes) { return tk::detail::quote_bytes(bytes, 40); }

void print_ids(const char* what, const std::vector<tk::token_id>& ids) {
  std::printf("%s:", what);
  for (auto id : ids) std::printf(" %u", id);
  std::printf("\n");
}

const char* k_text =
    "Once upon a time there was a little tokenizer. It didn't know many words, so it learned "
    "them from the stories it read.<|endoftext|>The tokenizer's favourite story was about a lower "
    "and a lowest low, and it read it again and again.<|endoftext|>In the end, the little tokenizer "
    "knew every word in its stories, and it was happy.\n";

}  // namespace

int main(int argc, char** argv) {
  try {
    // 1. Pre-tokenization: the pieces BPE works on (GPT-2's pattern, hand-written).
    std::printf("1. pre-tokens of \"Hello, world! It's 2024.\":\n  ");
    for (auto piece : tk::pretokenize("Hello, world! It's 2024.")) std::printf("%s ", show(piece).c_str());
    std::printf("\n\n");

    // 2. Training: 256 bytes + merges + <|endoftext|> = 300 tokens.
    std::string corpus;
    if (argc > 1) corpus = tk::detail::read_file(argv[1]);
    else for (int i = 0; i < 20; ++i) corpus += k_text;
    tk::train_options options;
    options.vocab_size = 300;
    options.special_tokens = {"<|endoftext|>"};
    tk::bpe_trainer trainer(options);
    trainer.add_text(corpus);
    const tk::bpe_model model = trainer.train();
    std::printf("2. trained %zu tokens (%zu merges) from %zu bytes; the first merges:\n", model.vocab.size(),
                model.merges.size(), corpus.size());
    for (std::size_t i = 0; i < 8 && i < model.merges.size(); ++i)
      std::printf("  %zu: %s + %s\n", i + 1, show(model.merges[i].first).c_str(), show(model.merges[i].second).c_str());

    // 3. Encoding and decoding.
    const tk::bpe_tokenizer tok(model);
    const std::string text = "The little tokenizer read a story.<|endoftext|>";
    const auto ids = tok.encode(text);  // <|endoftext|> is one id
    std::printf("\n3. %s\n", show(text).c_str());
    print_ids("  encode", ids);
    std::printf("  tokens:");
    for (auto id : ids) std::printf(" %s", show(tok.token_bytes(id)).c_str());
    std::printf("\n  decode round-trips: %s\n", tok.decode(ids) == text ? "yes" : "NO");
    print_ids("  encode_ordinary (special token as text)", tok.encode_ordinary(text));
    try {
      tok.encode(text, {.allowed = tk::special_set::none(), .disallowed = tk::special_set::all()});
    } catch (const einlm::tokenizer_error& e) {
      std::printf("  tiktoken's defaults refuse it: %s\n", e.what());
    }

    // 4. Streaming: chunks of 7 bytes give the same ids as the whole text.
    std::istringstream in(corpus);
    std::vector<tk::token_id> streamed;
    tk::encode_stream(tok, in, [&](std::span<const tk::token_id> b) { streamed.insert(streamed.end(), b.begin(), b.end()); },
                      {}, 7);
    std::printf("\n4. streamed in 7-byte chunks: %zu ids, identical to encode(): %s\n", streamed.size(),
                streamed == tok.encode(corpus) ? "yes" : "NO");

    // 5. File formats.
    const auto dir = std::filesystem::temp_directory_path() / "einlm_tokenizer_tour";
    std::filesystem::create_directories(dir);
    tk::save_gpt2(model, (dir / "vocab.json").string(), (dir / "merges.txt").string());
    tk::save_tiktoken(model, (dir / "vocab.tiktoken").string());
    tk::save_hf_json(model, (dir / "tokenizer.json").string());
    const tk::bpe_tokenizer a(tk::load_gpt2((dir / "vocab.json").string(), (dir / "merges.txt").string(), {"<|endoftext|>"}));
    const tk::bpe_tokenizer b(tk::load_tiktoken((dir / "vocab.tiktoken").string(), {"<|endoftext|>"}));
    const tk::bpe_tokenizer c(tk::load_hf_json((dir / "tokenizer.json").string()));
    std::printf("\n5. saved to %s; GPT-2 / tiktoken / HF files encode identically: %s\n", dir.string().c_str(),
                a.encode(corpus) == tok.encode(corpus) && b.encode(corpus) == a.encode(corpus) &&
                        c.encode(corpus) == a.encode(corpus)
                    ? "yes"
                    : "NO");
    std::filesystem::remove_all(dir);

    // 6. GPT-2 itself.
    if (const char* fx = std::getenv("EINLM_FIXTURES_DIR"); fx && *fx) {
      const std::string base = std::string(fx) + "/cs336/";
      const tk::bpe_tokenizer gpt2(tk::load_gpt2(base + "gpt2_vocab.json", base + "gpt2_merges.txt", {"<|endoftext|>"}));
      print_ids("\n6. GPT-2 \"Hello, how are you?\"", gpt2.encode("Hello, how are you?"));
    } else {
      std::printf("\n6. set EINLM_FIXTURES_DIR to the directory holding cs336/ to load GPT-2's vocabulary\n");
    }
    return 0;
  } catch (const einlm::error& e) {
    std::fprintf(stderr, "tokenizer_tour: %s\n", e.what());
    return 1;
  }
}
