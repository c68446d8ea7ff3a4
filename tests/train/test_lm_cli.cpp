// Tests of the einlm-lm command-line tool end to end: a tokenizer trained and a corpus encoded with
// einlm-tokenizer, then train (checkpoint files, unigram baseline, validation), resume, eval,
// logits (equal to the library's logits for the saved checkpoint), generate (deterministic with a
// seed; several prompts as one batch, each sample what its prompt alone gives), and errors (exit
// status 2 for usage, 1 with a message naming the problem otherwise); train and resume with
// --optimizer sgd and adagrad, and the optimizer's options checked; the static and the dynamic
// model types (--model) give the same checkpoints, logits, losses and tokens; a GPT-2 configuration
// (nn::blocks::gpt2_lm) trains, resumes bit for bit, evaluates, gives the library's logits and
// generates, and other architectures are rejected.
#include <doctest/doctest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "einlm/core/npy.hpp"
#include "einlm/core/safetensors.hpp"
#include "einlm/nn/accounting.hpp"
#include "einlm/nn/blocks.hpp"
#include "einlm/nn/transformer.hpp"
#include "einlm/train/checkpoint.hpp"

using namespace einlm;

namespace {

struct result {
  int status;
  std::string out;
  std::string model = {};  // einlm-lm's line saying which model type ran ("einlm-lm: model: …")
};

/// Runs a command through the shell; stdout and stderr are captured together, but for the line
/// saying which model type ran (kept apart, so that outputs of both types compare equal).
result run(const std::string& tool, const std::string& args) {
  const std::string cmd = tool + " " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p != nullptr);
  std::string out;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int st = ::pclose(p);
  std::string model;
  const std::string tag = "einlm-lm: model: ";
  if (const auto at = out.find(tag); at != std::string::npos && (at == 0 || out[at - 1] == '\n')) {
    const auto end = out.find('\n', at);
    model = out.substr(at, end == std::string::npos ? std::string::npos : end - at);
    out.erase(at, end == std::string::npos ? std::string::npos : end + 1 - at);
  }
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out, model};
}
result lm(const std::string& args) { return run(EINLM_LM_CLI, args); }

struct work_dir {
  std::filesystem::path path = std::filesystem::temp_directory_path() / ("einlm_lm_cli_" + std::to_string(::getpid()));
  work_dir() { std::filesystem::create_directories(path); }
  ~work_dir() { std::filesystem::remove_all(path); }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

std::string q(const std::string& s) { return "'" + s + "'"; }

/// The text under the header "=== sample i/n ===" of a batched generate's output, up to the next
/// header (empty when there is none).
std::string sample(const std::string& out, int i, int n) {
  const std::string header = "=== sample " + std::to_string(i) + "/" + std::to_string(n) + " ===\n";
  const auto start = out.find(header);
  if (start == std::string::npos) return {};
  const auto from = start + header.size();
  const auto next = out.find("=== sample ", from);
  return out.substr(from, next == std::string::npos ? std::string::npos : next - from);
}

void write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

/// Requires `written`, the (S, V) logits einlm-lm wrote for the ids 5 17 200 3, to equal `model`'s,
/// bit for bit.
template <class M>
void require_library_logits(const tensor<float, dims<2>>& written, M& model) {
  tensor<std::int64_t, dims<2>> ids(1, 4);  // (1, S)
  ids(0, 0) = 5, ids(0, 1) = 17, ids(0, 2) = 200, ids(0, 3) = 3;
  const auto expected = model.logits(ids);  // (1, S, V)
  for (index_t i = 0; i < written.size(); ++i) REQUIRE(written.data()[i] == expected.data()[i]);
}

/// The bytes of a file (empty when it cannot be read).
std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

/// The configuration of the compiled-in static shape "test" (apps/einlm-lm/static_models.hpp).
const char* const test_config =
    R"({"vocab_size": 300, "context_length": 32, "d_model": 32, "num_layers": 2, "num_heads": 4, "num_kv_heads": 2})";

/// Writes `text` to w/corpus.txt, trains a 300-token BPE tokenizer on it (w/tok) and encodes it as
/// uint16 ids (w/ids.u16); returns that tokenizer's "--vocab … --merges …" options.
std::string tokenized_corpus(const work_dir& w, const std::string& text) {
  write(w / "corpus.txt", text);
  auto r = run(EINLM_TOKENIZER_CLI, "train --vocab-size 300 --special '<|endoftext|>' --out " + q(w / "tok") + " " +
                                        q(w / "corpus.txt"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  const std::string tok = "--vocab " + q(w / "tok/vocab.json") + " --merges " + q(w / "tok/merges.txt");
  r = run(EINLM_TOKENIZER_CLI, "encode " + tok + " --special '<|endoftext|>' --format u16 --out " + q(w / "ids.u16") +
                                   " " + q(w / "corpus.txt"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  return tok;
}

}  // namespace

TEST_CASE("einlm-lm: --help documents every command") {
  const auto r = lm("--help");
  CHECK(r.status == 0);
  for (const char* word : {"train", "eval", "generate", "logits", "--data", "--val-fraction", "--config", "--out",
                           "--resume", "--checkpoint", "--prompt", "--temperature", "--top-p", "--top-k", "--seed",
                           "--ids", "--peak-tflops", "--optimizer", "--momentum", "--nesterov", "--lr-decay", "--model",
                           "Compiled-in static shapes", "  demo: vocab_size 2048"})
    CHECK(r.out.find(word) != std::string::npos);
}

TEST_CASE("einlm-lm: tokenizer, train, resume, eval, logits, generate") {
  const work_dir w;
  std::string text;
  for (int i = 0; i < 300; ++i)
    text += "Once upon a time there was a small model number " + std::to_string(i % 17) +
            ". It learned to count.<|endoftext|>";
  const std::string tok = tokenized_corpus(w, text);
  write(w / "config.json", test_config);
  result r{};

  const std::string common = "--data " + q(w / "ids.u16") + " --val-fraction 0.1 --config " + q(w / "config.json") +
                             " --batch 4 --lr 3e-3 --warmup 2 --eval-every 0 --eval-batches 2 --progress never";
  r = lm("train " + common + " --steps 6 --out " + q(w / "model"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("unigram baseline: ") != std::string::npos);
  CHECK(r.out.find("matrix products: " + cpu_gemm_description() + "\n") != std::string::npos);
  CHECK(r.out.find("step 6/6") != std::string::npos);
  CHECK(r.out.find("validation loss") != std::string::npos);
  for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "state.safetensors", "metrics.jsonl",
                        "loss.png"})
    CHECK(std::filesystem::exists(w / ("model/" + std::string(f))));

  // Resume to step 9 in the same directory.
  r = lm("train " + common + " --steps 9 --resume " + q(w / "model") + " --out " + q(w / "model"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("resumed from") != std::string::npos);
  CHECK(r.out.find("step 9/9") != std::string::npos);

  r = lm("eval --checkpoint " + q(w / "model") + " --data " + q(w / "ids.u16") + " --batches 2 --batch 2");
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("perplexity") != std::string::npos);

  // bf16 mixed precision: train, then evaluate the float checkpoint as it is and rounded to bf16.
  r = lm("train " + common + " --steps 3 --precision bf16 --out " + q(w / "bf16"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("bf16 mixed precision (float master weights)") != std::string::npos);
  CHECK(r.out.find("step 3/3") != std::string::npos);
  const std::string eval_bf16 = "eval --checkpoint " + q(w / "bf16") + " --data " + q(w / "ids.u16") + " --batches 2 --batch 2";
  const auto full = lm(eval_bf16), rounded = lm(eval_bf16 + " --precision bf16");
  REQUIRE_MESSAGE(rounded.status == 0, rounded.out);
  const double loss_full = std::stod(full.out.substr(full.out.find("loss ") + 5));
  const double loss_rounded = std::stod(rounded.out.substr(rounded.out.find("loss ") + 5));
  CHECK(loss_rounded == doctest::Approx(loss_full).epsilon(0.01));
  r = lm("train " + common + " --steps 1 --precision fp16 --out " + q(w / "fp16"));
  CHECK(r.status == 2);
  CHECK(r.out.find("--precision must be \"fp32\" or \"bf16\", got \"fp16\"") != std::string::npos);

  // logits equal the library's for the same checkpoint.
  r = lm("logits --checkpoint " + q(w / "model") + " --ids '5, 17 200 3' --out " + q(w / "logits.npy"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  const auto written = load_npy<float, dims<2>>(w / "logits.npy");  // (S, V)
  CHECK(written.extent(0) == 4);
  CHECK(written.extent(1) == 300);
  nn::transformer_lm<float> model(nn::transformer_config{.vocab_size = 300, .context_length = 32, .d_model = 32,
                                                         .num_layers = 2, .num_heads = 4, .num_kv_heads = 2});
  CHECK(train::load_checkpoint(w / "model", model).step == 9);
  require_library_logits(written, model);

  const std::string gen = "generate --checkpoint " + q(w / "model") + " " + tok + " --prompt 'Once upon' --max-tokens 12";
  const auto a = lm(gen + " --seed 3"), b = lm(gen + " --seed 3");
  REQUIRE_MESSAGE(a.status == 0, a.out);
  CHECK(a.out == b.out);
  CHECK(a.out.rfind("Once upon", 0) == 0);
  CHECK(lm(gen + " --seed 3 --cache off").out == a.out);  // the KV cache changes nothing but the speed
  CHECK(lm(gen + " --seed 3 --stats").out.find("tokens/s (KV cache on)") != std::string::npos);

  // Several prompts are one batch, each sample under a header: sample 1 is the first prompt alone
  // (the seed's stream 0), and greedy samples are each prompt alone.
  const std::string base = "generate --checkpoint " + q(w / "model") + " " + tok + " --max-tokens 12";
  const std::string three = " --prompt 'Once upon' --prompt 'It learned to' --prompt 'There'";
  const auto batch = lm(base + " --seed 3" + three);
  REQUIRE_MESSAGE(batch.status == 0, batch.out);
  CHECK(sample(batch.out, 1, 3) == a.out);
  CHECK(sample(batch.out, 2, 3).rfind("It learned to", 0) == 0);
  CHECK(sample(batch.out, 3, 3).rfind("There", 0) == 0);
  CHECK(batch.out.find("=== sample 4/3") == std::string::npos);
  CHECK(lm(base + " --seed 3 --cache off" + three).out == batch.out);
  const auto greedy = lm(base + " --temperature 0" + three);
  REQUIRE_MESSAGE(greedy.status == 0, greedy.out);
  int n = 1;
  for (const char* p : {"Once upon", "It learned to", "There"})
    CHECK(sample(greedy.out, n++, 3) == lm(base + " --temperature 0 --prompt '" + p + "'").out);
  // --prompts FILE: one prompt per line, empty lines skipped.
  write(w / "prompts.txt", "Once upon\n\nIt learned to\r\nThere\n");
  CHECK(lm(base + " --seed 3 --prompts " + q(w / "prompts.txt")).out == batch.out);
  CHECK(lm(base + " --seed 3 --stats" + three).out.find("3 prompts, ") != std::string::npos);
  r = lm(base + " --prompt 'Once' --prompts " + q(w / "prompts.txt"));
  CHECK(r.status == 2);
  CHECK(r.out.find("give --prompt or --prompts, not both") != std::string::npos);
  r = lm(base + " --prompt 'Once' --prompt ''");
  CHECK(r.status == 2);
  CHECK(r.out.find("prompt 2 is empty") != std::string::npos);
  r = lm(base + " --prompts " + q(w / "no_prompts.txt"));
  CHECK(r.status == 1);
  CHECK(r.out.find("no_prompts.txt: cannot open the prompts file") != std::string::npos);

  // Errors.
  // --device cuda: a usage error where einlm-lm was built without nvcc; where it was built with it,
  // an error naming the missing device before anything is written, or — on a machine with a
  // GPU — a run whose checkpoint the CPU resumes.
  r = lm("train " + common + " --steps 2 --out " + q(w / "m2") + " --device cuda");
  if (!EINLM_LM_CLI_CUDA) {
    CHECK(r.status == 2);
    CHECK(r.out.find("--device cuda: this einlm-lm was built without CUDA") != std::string::npos);
    CHECK(!std::filesystem::exists(w / "m2"));
  } else if (r.status != 0) {
    CHECK(r.status == 1);
    CHECK(r.out.find("--device cuda: no ") != std::string::npos);
    CHECK(!std::filesystem::exists(w / "m2"));
  } else {
    CHECK(r.out.find("device: ") != std::string::npos);
    CHECK(r.out.find("step 2/2") != std::string::npos);
    r = lm("train " + common + " --steps 4 --resume " + q(w / "m2") + " --out " + q(w / "m2"));
    CHECK_MESSAGE(r.status == 0, r.out);
    CHECK(r.out.find("resumed from ") != std::string::npos);
  }
  // eval and generate --device cuda: the same three outcomes; on a GPU, `same_as_cpu` compares
  // the result with the CPU's.
  const auto on_device = [&](const std::string& command, auto&& same_as_cpu) {
    INFO(command);
    const auto gpu = lm(command + " --device cuda");
    if (!EINLM_LM_CLI_CUDA) {
      CHECK(gpu.status == 2);
      CHECK(gpu.out.find("--device cuda: this einlm-lm was built without CUDA") != std::string::npos);
    } else if (gpu.status != 0) {
      CHECK(gpu.status == 1);
      CHECK(gpu.out.find("--device cuda: no ") != std::string::npos);
    } else {
      same_as_cpu(gpu.out, lm(command).out);
    }
  };
  const std::string eval_model = "eval --checkpoint " + q(w / "model") + " --data " + q(w / "ids.u16") + " --batches 2 --batch 2";
  on_device(eval_model, [](const std::string& gpu, const std::string& cpu) {  // the loss to rounding
    const auto loss_of = [](const std::string& out) { return std::stod(out.substr(out.find("loss ") + 5)); };
    CHECK(loss_of(gpu) == doctest::Approx(loss_of(cpu)).epsilon(1e-3));
  });
  on_device(gen + " --temperature 0", [](const std::string& gpu, const std::string& cpu) {  // the greedy text
    CHECK(gpu.find(cpu.substr(cpu.find("Once upon"))) != std::string::npos);
  });
  r = lm(eval_model + " --device tpu");
  CHECK(r.status == 2);
  CHECK(r.out.find("--device must be cpu or cuda, got 'tpu'") != std::string::npos);
  r = lm("logits --checkpoint " + q(w / "model") + " --ids '1 2 3' --out " + q(w / "l.npy") + " --device cuda");
  CHECK(r.status == 2);
  CHECK(r.out.find("--device is an option of train, eval and generate; logits runs on the CPU") != std::string::npos);
  r = lm("train " + common + " --steps 2 --out " + q(w / "m2") + " --device tpu");
  CHECK(r.status == 2);
  CHECK(r.out.find("--device must be cpu or cuda, got 'tpu'") != std::string::npos);
  if (EINLM_LM_CLI_CUDA) {
    r = lm("train " + common + " --steps 2 --out " + q(w / "m2") + " --device cuda --model static");
    CHECK(r.status == 2);
    CHECK(r.out.find("--device cuda runs the dynamic model type") != std::string::npos);
  }
  CHECK(lm("train " + common + " --stepz 2").status == 2);
  write(w / "bad.json", R"({"vocab_size": 300, "context_length": 32, "d_model": 30, "num_layers": 2, "num_heads": 4})");
  r = lm("train --data " + q(w / "ids.u16") + " --config " + q(w / "bad.json") + " --out " + q(w / "m3"));
  CHECK(r.status == 1);
  CHECK(r.out.find("d_model (30) is not divisible by num_heads (4)") != std::string::npos);
  r = lm("eval --checkpoint " + q(w / "nowhere") + " --data " + q(w / "ids.u16"));
  CHECK(r.status == 1);
  CHECK_MESSAGE(r.out.find("nowhere: no checkpoint there (no such directory)") != std::string::npos, r.out);
  std::filesystem::create_directories(w / "empty");
  r = lm("eval --checkpoint " + q(w / "empty") + " --data " + q(w / "ids.u16"));
  CHECK(r.status == 1);
  CHECK_MESSAGE(r.out.find("empty: no checkpoint there (no config.json; `einlm-lm train --out ") != std::string::npos,
                r.out);
  // --resume from a directory without a checkpoint fails before the model is built or --out written.
  r = lm("train " + common + " --steps 2 --resume " + q(w / "empty") + " --out " + q(w / "m5"));
  CHECK(r.status == 1);
  CHECK_MESSAGE(r.out.find("empty: no checkpoint there (no state.safetensors;") != std::string::npos, r.out);
  CHECK(r.out.find("model: ") == std::string::npos);
  CHECK(!std::filesystem::exists(w / "m5"));
  write(w / "small.json", R"({"vocab_size": 100, "context_length": 32, "d_model": 32, "num_layers": 2, "num_heads": 4})");
  // Options out of range are usage errors naming the option, before anything is loaded or written.
  for (const auto& [options, message] :
       {std::pair{" --val-fraction 1.5", "--val-fraction must be between 0 and 1 (exclusive), got 1.5"},
        std::pair{" --val-fraction 0", "--val-fraction must be between 0 and 1 (exclusive), got 0"},
        std::pair{" --batch 0", "--batch must be positive, got 0"},
        std::pair{" --lr -1", "--lr must be ≥ 0, got -1"}, std::pair{" --min-lr -0.5", "--min-lr must be ≥ 0, got -0.5"}}) {
    r = lm("train --data " + q(w / "ids.u16") + " --config " + q(w / "config.json") + " --out " + q(w / "m4") + options);
    CHECK_MESSAGE(r.status == 2, options);
    CHECK_MESSAGE(r.out.find(message) != std::string::npos, r.out);
  }
  for (const auto& [options, message] : {std::pair{" --temperature -1", "--temperature must be ≥ 0, got -1"},
                                         std::pair{" --top-p 0", "--top-p must be in (0, 1], got 0"},
                                         std::pair{" --top-p 1.5", "--top-p must be in (0, 1], got 1.5"}}) {
    r = lm("generate --checkpoint " + q(w / "nowhere") + " " + tok + " --prompt 'Once'" + options);
    CHECK_MESSAGE(r.status == 2, options);
    CHECK_MESSAGE(r.out.find(message) != std::string::npos, r.out);
  }
  CHECK(!std::filesystem::exists(w / "m4"));
  // Data the model cannot take: ids past its vocabulary (train and eval), a set too short; a
  // failed run leaves the checkpoint in --out as it was.
  const std::string config_before = file_bytes(w / "model/config.json"),
                    model_before = file_bytes(w / "model/model.safetensors");
  r = lm("train --data " + q(w / "ids.u16") + " --config " + q(w / "small.json") + " --steps 2 --out " + q(w / "model"));
  CHECK(r.status == 1);
  CHECK_MESSAGE(r.out.find("ids.u16: the token at position ") != std::string::npos, r.out);
  CHECK(r.out.find(", outside the model's vocabulary [0, 100)") != std::string::npos);
  write(w / "short.u16", std::string(40, '\x01'));
  r = lm("train --data " + q(w / "ids.u16") + " --val " + q(w / "short.u16") + " --config " + q(w / "config.json") +
         " --steps 2 --out " + q(w / "model"));
  CHECK(r.status == 1);
  CHECK_MESSAGE(r.out.find("short.u16: 20 tokens are too few for context length 32") != std::string::npos, r.out);
  CHECK(file_bytes(w / "model/config.json") == config_before);
  CHECK(file_bytes(w / "model/model.safetensors") == model_before);
  r = lm("eval --checkpoint " + q(w / "model") + " --data " + q(w / "short.u16"));
  CHECK(r.status == 1);
  CHECK(r.out.find("short.u16: 20 tokens are too few for context length 32") != std::string::npos);
  r = lm("eval --checkpoint " + q(w / "model") + " --data " + q(w / "ids.u16") + " --token-width u32");
  CHECK(r.status == 1);
  // Either the size is not a whole number of 32-bit ids, or the ids are past the vocabulary: both
  // errors ask about the token width.
  CHECK_MESSAGE(r.out.find("token width") != std::string::npos, r.out);
  r = lm("eval --checkpoint " + q(w / "model") + " --data " + q(w / "ids.u16") + " --batches 0");
  CHECK(r.status == 2);
  CHECK(r.out.find("--batches must be positive, got 0") != std::string::npos);
  std::filesystem::copy_file(w / "small.json", w / "model/config.json", std::filesystem::copy_options::overwrite_existing);
  r = lm("logits --checkpoint " + q(w / "model") + " --ids '1 2' --out " + q(w / "x.npy"));
  CHECK(r.status == 1);
  CHECK(r.out.find("tensor 'token_embeddings.weight' has shape (300, 32); config.json implies (100, 32)") !=
        std::string::npos);
}

TEST_CASE("einlm-lm: a mixture of experts trains, evaluates and generates; upcycle continues a dense model") {
  const work_dir w;
  std::vector<std::uint16_t> ids(4000);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::uint16_t>((i * 7 + i / 5) % 50);
  std::ofstream(w / "ids.u16", std::ios::binary)
      .write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids.size() * 2));
  const std::string dense_json =
      R"("vocab_size": 50, "context_length": 16, "d_model": 16, "num_layers": 2, "num_heads": 2, "d_ff": 32)";
  write(w / "moe.json", "{" + dense_json +
                            R"(, "num_experts": 4, "top_k": 2, "moe_d_ff": 16, "router": "sigmoid", "bias_update_rate": 0.001})");
  const std::string common = "--data " + q(w / "ids.u16") + " --val-fraction 0.1 --batch 4 --lr 3e-3 --warmup 1 " +
                             "--eval-every 0 --eval-batches 2 --progress never --log-every 1";
  auto r = lm("train " + common + " --config " + q(w / "moe.json") + " --steps 3 --out " + q(w / "moe"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("2 MoE layers of 4 experts (d_ff 16), top-2, 0 shared, sigmoid router") != std::string::npos);
  CHECK(r.out.find("aux ") != std::string::npos);
  CHECK(r.out.find("layer 1: tokens per expert in the last batch") != std::string::npos);
  r = lm("eval --checkpoint " + q(w / "moe") + " --data " + q(w / "ids.u16") + " --batches 2 --batch 2");
  REQUIRE_MESSAGE(r.status == 0, r.out);
  r = lm("logits --checkpoint " + q(w / "moe") + " --ids '1 2 3' --out " + q(w / "moe.npy"));
  REQUIRE_MESSAGE(r.status == 0, r.out);

  // A dense model, upcycled to the same MoE shape, then trained on from its step-0 checkpoint.
  write(w / "dense.json", "{" + dense_json + "}");
  r = lm("train " + common + " --config " + q(w / "dense.json") + " --steps 2 --out " + q(w / "dense"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  r = lm("upcycle --checkpoint " + q(w / "dense") + " --config " + q(w / "moe.json") + " --noise 0.01 --out " +
         q(w / "up"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("2 MoE layers of 4 experts; step-0 checkpoint") != std::string::npos);
  r = lm("train " + common + " --config " + q(w / "up/config.json") + " --steps 2 --resume " + q(w / "up") + " --out " +
         q(w / "up"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("resumed from") != std::string::npos);
  // Upcycled with another optimizer: its fresh state and settings are in the step-0 checkpoint,
  // and training resumes with it.
  r = lm("upcycle --checkpoint " + q(w / "dense") + " --config " + q(w / "moe.json") +
         " --optimizer sgd --momentum 0.9 --weight-decay 0.01 --out " + q(w / "up_sgd"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("step-0 checkpoint with a fresh sgd in") != std::string::npos);
  {
    const safetensors_file f(w / "up_sgd/optimizer.safetensors");
    CHECK(f.metadata().at("optimizer") == "sgd");
    CHECK(f.metadata().at("momentum") == "0.9");
    CHECK(f.metadata().at("weight_decay") == "0.01");
  }
  r = lm("train " + common + " --config " + q(w / "up_sgd/config.json") + " --optimizer sgd --momentum 0.9 --steps 2 --resume " +
         q(w / "up_sgd") + " --out " + q(w / "up_sgd"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("resumed from") != std::string::npos);
  r = lm("upcycle --checkpoint " + q(w / "dense") + " --config " + q(w / "moe.json") + " --momentum 0.9 --out " +
         q(w / "up_bad"));
  CHECK(r.status == 2);
  CHECK(r.out.find("--momentum is an option of --optimizer sgd, not of adamw") != std::string::npos);
  CHECK(!std::filesystem::exists(w / "up_bad"));
  // The MoE's dense fields must equal the dense model's.
  write(w / "other.json", R"({"vocab_size": 50, "context_length": 16, "d_model": 16, "num_layers": 2, "num_heads": 2,
                              "num_experts": 4, "top_k": 2})");
  r = lm("upcycle --checkpoint " + q(w / "dense") + " --config " + q(w / "other.json") + " --out " + q(w / "up2"));
  CHECK(r.status == 1);
  CHECK(r.out.find("the MoE configuration's base is not the dense model's shape") != std::string::npos);
}

TEST_CASE("einlm-lm: train and resume with --optimizer sgd and adagrad; bad optimizer options") {
  const work_dir w;
  std::vector<std::uint16_t> ids(4000);
  for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<std::uint16_t>((i * 7 + i / 5) % 50);
  std::ofstream(w / "ids.u16", std::ios::binary)
      .write(reinterpret_cast<const char*>(ids.data()), static_cast<std::streamsize>(ids.size() * 2));
  write(w / "config.json",
        R"({"vocab_size": 50, "context_length": 16, "d_model": 16, "num_layers": 2, "num_heads": 2, "d_ff": 32})");
  const std::string common = "--data " + q(w / "ids.u16") + " --val-fraction 0.1 --config " + q(w / "config.json") +
                             " --batch 4 --warmup 1 --eval-every 0 --eval-batches 2 --progress never";
  const std::string sgd = " --optimizer sgd --momentum 0.9 --lr 0.05";
  auto r = lm("train " + common + sgd + " --steps 3 --out " + q(w / "sgd"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("; optimizer sgd") != std::string::npos);
  {
    const safetensors_file f(w / "sgd/optimizer.safetensors");
    CHECK(f.metadata().at("optimizer") == "sgd");
    CHECK(f.metadata().at("momentum") == "0.9");
    CHECK(f.contains("layers.0.ffn.w1.weight.momentum_buffer"));
  }
  r = lm("train " + common + sgd + " --steps 5 --resume " + q(w / "sgd") + " --out " + q(w / "sgd"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("resumed from") != std::string::npos);
  CHECK(r.out.find("step 5/5") != std::string::npos);
  CHECK(safetensors_file(w / "sgd/optimizer.safetensors").metadata().at("optimizer_step") == "5");
  // Resuming with another optimizer names both.
  r = lm("train " + common + " --steps 6 --resume " + q(w / "sgd") + " --out " + q(w / "sgd"));
  CHECK(r.status == 1);
  CHECK(r.out.find("the checkpoint holds the state of the optimizer 'sgd', not of 'adamw'") != std::string::npos);

  r = lm("train " + common + " --optimizer adagrad --lr 0.05 --lr-decay 0.01 --initial-accumulator 0.1 --steps 2 --out " +
         q(w / "adagrad"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(safetensors_file(w / "adagrad/optimizer.safetensors").metadata().at("initial_accumulator_value") == "0.1");

  // Usage errors: exit status 2 and the option named.
  r = lm("train " + common + " --optimizer adam --steps 1 --out " + q(w / "bad"));
  CHECK(r.status == 2);
  CHECK(r.out.find("--optimizer must be \"adamw\", \"sgd\" or \"adagrad\", got \"adam\"") != std::string::npos);
  r = lm("train " + common + " --momentum 0.9 --steps 1 --out " + q(w / "bad"));
  CHECK(r.status == 2);
  CHECK(r.out.find("--momentum is an option of --optimizer sgd, not of adamw") != std::string::npos);
  r = lm("train " + common + " --optimizer sgd --momentum fast --steps 1 --out " + q(w / "bad"));
  CHECK(r.status == 2);
  CHECK(r.out.find("--momentum expects a number, got 'fast'") != std::string::npos);
  r = lm("train " + common + " --optimizer sgd --nesterov yes --steps 1 --out " + q(w / "bad"));
  CHECK(r.status == 2);
  CHECK(r.out.find("--nesterov must be on or off, got 'yes'") != std::string::npos);
  CHECK(!std::filesystem::exists(w / "bad"));
}

TEST_CASE("einlm-lm: --model static and dynamic give the same checkpoints, logits, loss and tokens") {
  // The configuration of the compiled-in shape "test" (apps/einlm-lm/static_models.hpp).
  const work_dir w;
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += "Once upon a time there was a small model number " + std::to_string(i % 13) + ". It learned.<|endoftext|>";
  const std::string tok = tokenized_corpus(w, text);
  write(w / "config.json", test_config);
  result r{};
  const std::string common = "--data " + q(w / "ids.u16") + " --config " + q(w / "config.json") +
                             " --batch 4 --lr 3e-3 --warmup 2 --eval-every 0 --progress never --steps 4";
  const std::string static_line = "einlm-lm: model: static (compiled-in shape 'test')";
  const std::string dynamic_line = "einlm-lm: model: dynamic (transformer_lm)";

  // train: auto takes the static type; both types write the same checkpoint.
  r = lm("train " + common + " --out " + q(w / "static"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.model == static_line);
  r = lm("train " + common + " --model dynamic --out " + q(w / "dynamic"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.model == dynamic_line);
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "config.json"})
    CHECK_MESSAGE(file_bytes(w / ("static/" + std::string(f))) == file_bytes(w / ("dynamic/" + std::string(f))), std::string(f));
  // The same in bf16 mixed precision, whose working copy is each type's rebind<bf16>.
  r = lm("train " + common + " --precision bf16 --out " + q(w / "static_bf16"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.model == static_line);
  r = lm("train " + common + " --precision bf16 --model dynamic --out " + q(w / "dynamic_bf16"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(file_bytes(w / "static_bf16/model.safetensors") == file_bytes(w / "dynamic_bf16/model.safetensors"));
  CHECK(file_bytes(w / "static_bf16/model.safetensors") != file_bytes(w / "static/model.safetensors"));  // not the fp32 run

  // Each type resumes the other's checkpoint, to the same state.
  r = lm("train " + common + " --steps 6 --model dynamic --resume " + q(w / "static") + " --out " + q(w / "static6"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  r = lm("train " + common + " --steps 6 --model static --resume " + q(w / "dynamic") + " --out " + q(w / "dynamic6"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("resumed from") != std::string::npos);
  CHECK(file_bytes(w / "static6/model.safetensors") == file_bytes(w / "dynamic6/model.safetensors"));

  // logits, eval and generate of each checkpoint on both types.
  for (const char* dir : {"static", "dynamic"}) {
    const std::string checkpoint = " --checkpoint " + q(w / dir);
    const std::string ids = " --ids '5 17 200 3 9 250 1'";
    const auto s = lm("logits" + checkpoint + ids + " --model static --out " + q(w / "s.npy"));
    const auto d = lm("logits" + checkpoint + ids + " --model dynamic --out " + q(w / "d.npy"));
    REQUIRE_MESSAGE(s.status == 0, s.out);
    REQUIRE_MESSAGE(d.status == 0, d.out);
    CHECK(s.model == static_line);
    CHECK(d.model == dynamic_line);
    const auto ls = load_npy<float, dims<2>>(w / "s.npy"), ld = load_npy<float, dims<2>>(w / "d.npy");  // (S, V)
    REQUIRE(ls.size() == ld.size());
    for (index_t i = 0; i < ls.size(); ++i) REQUIRE(ls.data()[i] == doctest::Approx(ld.data()[i]).epsilon(1e-6));

    const std::string eval = "eval" + checkpoint + " --data " + q(w / "ids.u16") + " --batches 3 --batch 2";
    const auto es = lm(eval + " --model static"), ed = lm(eval + " --model dynamic");
    REQUIRE_MESSAGE(es.status == 0, es.out);
    CHECK(es.model == static_line);
    CHECK(es.out == ed.out);

    const std::string gen = "generate" + checkpoint + " " + tok + " --max-tokens 10 --temperature 0";
    const std::string two = " --prompt 'Once upon' --prompt 'It learned'";
    for (const std::string& prompts : {std::string(" --prompt 'Once upon'"), two}) {
      const auto gs = lm(gen + prompts + " --model static"), gd = lm(gen + prompts + " --model dynamic");
      REQUIRE_MESSAGE(gs.status == 0, gs.out);
      CHECK(gs.model == static_line);
      CHECK(gd.model == dynamic_line);
      CHECK(gs.out == gd.out);
    }
    const auto sampled = lm(gen + " --prompt 'Once' --temperature 0.8 --seed 2 --model static");
    CHECK(sampled.out == lm(gen + " --prompt 'Once' --temperature 0.8 --seed 2 --model dynamic").out);
  }

  // --model static needs a compiled-in shape: the error names the configuration and lists them.
  write(w / "other.json",
        R"({"vocab_size": 300, "context_length": 32, "d_model": 32, "num_layers": 2, "num_heads": 4, "qk_norm": true})");
  r = lm("train " + common + " --config " + q(w / "other.json") + " --model static --out " + q(w / "other"));
  CHECK(r.status == 1);
  CHECK(r.out.find("--model static: no compiled-in static shape is the configuration of " + w / "other.json") !=
        std::string::npos);
  CHECK(r.out.find("\"qk_norm\": true") != std::string::npos);
  CHECK(r.out.find("  test: vocab_size 300, context_length 32, d_model 32") != std::string::npos);
  CHECK(r.out.find("  tinystories: vocab_size 10000, context_length 256, d_model 512") != std::string::npos);
  r = lm("train " + common + " --config " + q(w / "other.json") + " --steps 1 --out " + q(w / "other"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.model == dynamic_line);  // auto: no compiled-in shape, the dynamic type
  r = lm("eval --checkpoint " + q(w / "static") + " --data " + q(w / "ids.u16") + " --batches 1 --model fast");
  CHECK(r.status == 2);
  CHECK(r.out.find("--model must be auto, static or dynamic, got 'fast'") != std::string::npos);
  // eval with the weights rounded to bf16: the same loss on both types, not the float one.
  const std::string eval_bf16 = "eval --checkpoint " + q(w / "static") + " --data " + q(w / "ids.u16") + " --batches 2";
  const auto es = lm(eval_bf16 + " --precision bf16 --model static"), ed = lm(eval_bf16 + " --precision bf16 --model dynamic");
  REQUIRE_MESSAGE(es.status == 0, es.out);
  CHECK(es.model == static_line);
  CHECK(es.out == ed.out);
  CHECK(es.out != lm(eval_bf16 + " --model static").out);
}

TEST_CASE("einlm-lm: a GPT-2 configuration trains, resumes exactly, evaluates, gives the library's logits and generates") {
  const work_dir w;
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += "A small model number " + std::to_string(i % 13) + " learned to count.<|endoftext|>";
  const std::string tok = tokenized_corpus(w, text);
  write(w / "gpt2.json", R"({"vocab_size": 300, "context_length": 24, "d_model": 16, "num_layers": 2, "num_heads": 2,
                             "ffn": "gelu_mlp", "positions": "learned", "norm": "layer_norm", "linear_bias": true,
                             "tied_embeddings": true})");
  const std::string common = "--data " + q(w / "ids.u16") + " --val-fraction 0.1 --config " + q(w / "gpt2.json") +
                             " --batch 4 --lr 3e-3 --warmup 2 --eval-every 0 --eval-batches 2 --progress never";
  auto r = lm("train " + common + " --steps 6 --log-every 1 --out " + q(w / "six"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.model == "einlm-lm: model: dynamic GPT-2 (blocks::gpt2_lm)");
  CHECK(r.out.find("step 6/6") != std::string::npos);
  // GPT-2's initialisation: the tied head starts near zero logits, a loss near ln 300 = 5.70.
  const auto first = r.out.find("step 1/6  loss ");
  REQUIRE(first != std::string::npos);
  CHECK(std::stod(r.out.substr(first + 15)) == doctest::Approx(std::log(300.0)).epsilon(0.02));
  // 3 steps, then 3 more from the checkpoint: the same weights, bit for bit.
  r = lm("train " + common + " --steps 3 --out " + q(w / "three"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  r = lm("train " + common + " --steps 6 --resume " + q(w / "three") + " --out " + q(w / "three"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("resumed from") != std::string::npos);
  CHECK(file_bytes(w / "three/model.safetensors") == file_bytes(w / "six/model.safetensors"));

  r = lm("eval --checkpoint " + q(w / "six") + " --data " + q(w / "ids.u16") + " --batches 2 --batch 2");
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("perplexity") != std::string::npos);
  r = lm("train " + common + " --steps 2 --precision bf16 --out " + q(w / "bf16"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  CHECK(r.out.find("bf16 mixed precision (float master weights)") != std::string::npos);

  // logits equal those of the library's gpt2_lm with the checkpoint's weights.
  r = lm("logits --checkpoint " + q(w / "six") + " --ids '5 17 200 3' --out " + q(w / "logits.npy"));
  REQUIRE_MESSAGE(r.status == 0, r.out);
  const auto written = load_npy<float, dims<2>>(w / "logits.npy");  // (S, V)
  auto config = nn::presets::gpt2(16, 2, 2);
  config.vocab_size = 300;
  config.context_length = 24;
  nn::blocks::model<nn::blocks::gpt2_lm<dyn, dyn, dyn, dyn, dyn>, float> model(config);
  const safetensors_file f(w / "six/model.safetensors");
  model.for_each_parameter([&](const std::string& name, auto& weight) { f.load_into(name, weight); });
  REQUIRE(written.size() == 4 * 300);
  require_library_logits(written, model);

  const std::string gen = "generate --checkpoint " + q(w / "six") + " " + tok + " --prompt 'A small' --max-tokens 30";
  const auto a = lm(gen + " --seed 3");
  REQUIRE_MESSAGE(a.status == 0, a.out);
  CHECK(a.out.rfind("A small", 0) == 0);
  CHECK(lm(gen + " --seed 3").out == a.out);
  CHECK(lm(gen + " --seed 3 --cache off").out == a.out);  // past the context too (30 > 24 positions)

  // GPT-2 has no static shape; an architecture that is neither CS336's nor GPT-2's does not run.
  r = lm("train " + common + " --steps 1 --model static --out " + q(w / "static"));
  CHECK(r.status == 1);
  CHECK(r.out.find("--model static: no compiled-in static shape") != std::string::npos);
  write(w / "mixed.json", R"({"vocab_size": 300, "context_length": 24, "d_model": 16, "num_layers": 2, "num_heads": 2,
                              "ffn": "gelu_mlp"})");
  r = lm("train --data " + q(w / "ids.u16") + " --config " + q(w / "mixed.json") + " --out " + q(w / "mixed"));
  CHECK(r.status == 1);
  CHECK(r.out.find("mixed.json: einlm-lm runs CS336's architecture") != std::string::npos);
  CHECK(!std::filesystem::exists(w / "mixed"));
}
