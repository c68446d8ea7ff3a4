// einlm-tokenizer — trains, runs and converts byte-level BPE tokenizers from the command line.
//
// Subcommands: train, encode, decode, convert, pretokenize (see usage() or --help). Errors go to
// stderr as "einlm-tokenizer: error: ..." with exit status 1; usage errors exit with 2.
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "einlm/tokenizer.hpp"

namespace tk = einlm::tokenizer;

namespace {

constexpr const char* k_usage = R"(usage: einlm-tokenizer COMMAND [OPTIONS]

Byte-level BPE tokenizers (GPT-2 pre-tokenization), compatible with tiktoken and HF tokenizers.

Commands:
  train --vocab-size N [--special TOKEN]... [--threads T] [--tie-break cs336|hf]
        [--progress auto|always|never] [--format gpt2|tiktoken|hf] --out DIR INPUT...
      Trains on the INPUT files and writes DIR/vocab.json and DIR/merges.txt (GPT-2 format;
      --format tiktoken writes DIR/vocab.tiktoken, --format hf DIR/tokenizer.json). N counts the
      256 bytes, the merges and the special tokens. Special tokens split the text and are never
      merged. --tie-break: cs336 (default) prefers the lexicographically greatest pair of byte
      strings among equally frequent pairs; hf the pair with the smallest ids, like HF tokenizers'
      BpeTrainer. Progress is drawn on stderr when it is a terminal (auto).

  encode MODEL [--special TOKEN]... [--format text|u16|u32] [--threads T] [--out FILE] [INPUT]
      Encodes INPUT (default: standard input) and writes the ids to FILE (default: standard
      output): space-separated decimal text, or raw little-endian uint16/uint32 (the nanoGPT/llm.c
      token-file convention; u16 is refused for vocabularies above 65,536 tokens). Only the
      --special tokens (and a tokenizer.json's added tokens) are recognised as special tokens;
      everything else is ordinary text. With one thread the input is streamed (memory does not
      grow with its size); with --threads T > 1 it is read whole and split across threads.

  decode MODEL [--format text|u16|u32] [--raw] [--out FILE] [INPUT]
      Reads ids (whitespace-separated decimal text, or raw uint16/uint32) and writes the text.
      Invalid UTF-8 in the result is replaced by U+FFFD (like Python's errors="replace") unless
      --raw is given, which writes the exact bytes.

  convert MODEL --to gpt2|tiktoken|hf --out PATH
      Writes the vocabulary in another format (gpt2: PATH is a directory that receives vocab.json
      and merges.txt).

  pretokenize [INPUT]
      Prints the GPT-2 pre-tokens of INPUT, one per line, as JSON strings.

MODEL is one of:
  --vocab vocab.json --merges merges.txt   GPT-2 format (merges.txt with or without "#version")
  --tiktoken FILE                           tiktoken rank file (base64 token, rank)
  --hf-json tokenizer.json                  HF tokenizers byte-level BPE

Options:
  -h, --help    this text
Exit status: 0 on success, 1 on an error (message on stderr), 2 on a usage error.
)";

struct usage_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct args {
  std::string command;
  std::vector<std::string> positional;
  std::vector<std::string> specials;
  std::optional<std::string> vocab, merges, tiktoken, hf_json, out, to;
  std::string format, tie_break = "cs336", progress = "auto";
  std::size_t vocab_size = 0;
  unsigned threads = 1;
  bool raw = false;
};

unsigned long long parse_number(const std::string& flag, const std::string& s) {
  unsigned long long v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size())
    throw usage_error(flag + " expects a non-negative integer, got '" + s + "'");
  return v;
}

args parse_args(int argc, char** argv) {
  args a;
  if (argc < 2) throw usage_error("no command given");
  a.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string f = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw usage_error(f + " needs a value");
      return argv[++i];
    };
    if (f == "-h" || f == "--help") {
      a.command = "help";
    } else if (f == "--vocab-size") {
      a.vocab_size = parse_number(f, value());
    } else if (f == "--special") {
      a.specials.push_back(value());
    } else if (f == "--threads") {
      a.threads = static_cast<unsigned>(parse_number(f, value()));
      if (a.threads == 0) throw usage_error("--threads must be at least 1");
    } else if (f == "--tie-break") {
      a.tie_break = value();
    } else if (f == "--progress") {
      a.progress = value();
    } else if (f == "--out" || f == "-o") {
      a.out = value();
    } else if (f == "--vocab") {
      a.vocab = value();
    } else if (f == "--merges") {
      a.merges = value();
    } else if (f == "--tiktoken") {
      a.tiktoken = value();
    } else if (f == "--hf-json") {
      a.hf_json = value();
    } else if (f == "--format") {
      a.format = value();
    } else if (f == "--to") {
      a.to = value();
    } else if (f == "--raw") {
      a.raw = true;
    } else if (f.size() > 1 && f[0] == '-' && f != "-") {
      throw usage_error("unknown option " + f);
    } else {
      a.positional.push_back(f);
    }
  }
  return a;
}

tk::bpe_tokenizer load_model(const args& a) {
  const int given = int(a.vocab.has_value() || a.merges.has_value()) + int(a.tiktoken.has_value()) +
                    int(a.hf_json.has_value());
  if (given != 1) throw usage_error("give one model: --vocab and --merges, --tiktoken, or --hf-json");
  tk::bpe_model m;
  if (a.vocab || a.merges) {
    if (!a.vocab || !a.merges) throw usage_error("--vocab and --merges go together");
    m = tk::load_gpt2(*a.vocab, *a.merges);
  } else if (a.tiktoken) {
    m = tk::load_tiktoken(*a.tiktoken);
  } else {
    m = tk::load_hf_json(*a.hf_json);
  }
  for (const auto& s : a.specials)
    if (std::find(m.special_tokens.begin(), m.special_tokens.end(), s) == m.special_tokens.end())
      m.special_tokens.push_back(s);
  return tk::bpe_tokenizer(std::move(m));
}

// Output: a file or standard output, binary.
class output {
 public:
  explicit output(const std::optional<std::string>& path) {
    if (path) {
      file_.open(*path, std::ios::binary | std::ios::trunc);
      if (!file_) throw einlm::tokenizer_error(*path + ": cannot open file for writing");
      out_ = &file_;
      name_ = *path;
    }
  }
  void write(std::string_view s) {
    out_->write(s.data(), static_cast<std::streamsize>(s.size()));
    if (!*out_) throw einlm::tokenizer_error(name_ + ": write error");
  }
  void flush() {
    out_->flush();
    if (!*out_) throw einlm::tokenizer_error(name_ + ": write error");
  }

 private:
  std::ofstream file_;
  std::ostream* out_ = &std::cout;
  std::string name_ = "standard output";
};

// Input: a file or standard input, binary.
class input {
 public:
  explicit input(const std::vector<std::string>& positional) {
    if (positional.size() > 1) throw usage_error("at most one INPUT file");
    if (!positional.empty() && positional[0] != "-") {
      file_.open(positional[0], std::ios::binary);
      if (!file_) throw einlm::tokenizer_error(positional[0] + ": cannot open file for reading");
      in_ = &file_;
      name_ = positional[0];
    }
  }
  std::istream& stream() { return *in_; }
  const std::string& name() const { return name_; }
  std::string read_all() {
    std::string s((std::istreambuf_iterator<char>(*in_)), std::istreambuf_iterator<char>());
    if (in_->bad()) throw einlm::tokenizer_error(name_ + ": read error");
    return s;
  }

 private:
  std::ifstream file_;
  std::istream* in_ = &std::cin;
  std::string name_ = "standard input";
};

enum class id_format { text, u16, u32 };

id_format parse_format(const std::string& f) {
  if (f.empty() || f == "text") return id_format::text;
  if (f == "u16") return id_format::u16;
  if (f == "u32") return id_format::u32;
  throw usage_error("--format must be text, u16 or u32 (got '" + f + "')");
}

// Writes ids in the chosen format; text: space-separated, a newline at the end.
class id_writer {
 public:
  id_writer(output& out, id_format f) : out_(out), f_(f) {}
  void write(std::span<const tk::token_id> ids) {
    buf_.clear();
    if (f_ == id_format::text) {
      char num[16];
      for (auto id : ids) {
        if (!first_) buf_ += ' ';
        first_ = false;
        const auto [p, ec] = std::to_chars(num, num + sizeof num, id);
        buf_.append(num, p);
      }
    } else if (f_ == id_format::u16) {
      for (auto id : ids) {
        const unsigned char b[2] = {static_cast<unsigned char>(id & 0xFF), static_cast<unsigned char>(id >> 8)};
        buf_.append(reinterpret_cast<const char*>(b), 2);
      }
    } else {
      for (auto id : ids) {
        const unsigned char b[4] = {static_cast<unsigned char>(id & 0xFF), static_cast<unsigned char>((id >> 8) & 0xFF),
                                    static_cast<unsigned char>((id >> 16) & 0xFF), static_cast<unsigned char>(id >> 24)};
        buf_.append(reinterpret_cast<const char*>(b), 4);
      }
    }
    out_.write(buf_);
  }
  void finish() {
    if (f_ == id_format::text) out_.write("\n");
    out_.flush();
  }

 private:
  output& out_;
  id_format f_;
  std::string buf_;
  bool first_ = true;
};

int cmd_train(const args& a) {
  if (a.vocab_size == 0) throw usage_error("train needs --vocab-size N");
  if (!a.out) throw usage_error("train needs --out DIR");
  if (a.positional.empty()) throw usage_error("train needs at least one INPUT file");
  tk::train_options o;
  o.vocab_size = a.vocab_size;
  o.special_tokens = a.specials;
  o.threads = a.threads;
  if (a.tie_break == "cs336") o.ties = tk::tie_break::cs336;
  else if (a.tie_break == "hf") o.ties = tk::tie_break::hf;
  else throw usage_error("--tie-break must be cs336 or hf");
  if (a.progress == "auto") o.progress = tk::progress_mode::automatic;
  else if (a.progress == "always") o.progress = tk::progress_mode::always;
  else if (a.progress == "never") o.progress = tk::progress_mode::never;
  else throw usage_error("--progress must be auto, always or never");
  const std::string format = a.format.empty() ? "gpt2" : a.format;
  if (format != "gpt2" && format != "tiktoken" && format != "hf")
    throw usage_error("train --format must be gpt2, tiktoken or hf");
  std::error_code ec;
  std::filesystem::create_directories(*a.out, ec);
  if (ec) throw einlm::tokenizer_error(*a.out + ": cannot create directory: " + ec.message());
  tk::train_stats st;
  const auto model = tk::train_bpe(a.positional, o, &st);
  const std::filesystem::path dir(*a.out);
  if (format == "gpt2") tk::save_gpt2(model, (dir / "vocab.json").string(), (dir / "merges.txt").string());
  else if (format == "tiktoken") tk::save_tiktoken(model, (dir / "vocab.tiktoken").string());
  else tk::save_hf_json(model, (dir / "tokenizer.json").string());
  const bool chatty = o.progress == tk::progress_mode::always ||
                      (o.progress == tk::progress_mode::automatic && tk::detail::stderr_is_terminal());
  if (chatty)
    std::fprintf(stderr,
                 "einlm-tokenizer: %zu tokens (%zu merges) from %llu bytes, %llu distinct words; "
                 "counting %.2f s, merging %.2f s\n",
                 model.vocab.size(), model.merges.size(), static_cast<unsigned long long>(st.bytes),
                 static_cast<unsigned long long>(st.words), st.count_seconds, st.merge_seconds);
  return 0;
}

int cmd_encode(const args& a) {
  const auto tok = load_model(a);
  const auto f = parse_format(a.format);
  if (f == id_format::u16 && tok.vocab_size() > 65536)
    throw einlm::tokenizer_error("--format u16: the vocabulary has " + std::to_string(tok.vocab_size()) +
                                 " tokens, more than 65,536; use --format u32");
  input in(a.positional);
  output out(a.out);
  id_writer w(out, f);
  if (a.threads > 1) {
    const auto text = in.read_all();
    tk::encode_options o;
    o.threads = a.threads;
    w.write(tok.encode(text, o));
  } else {
    tk::encode_stream(tok, in.stream(), [&](std::span<const tk::token_id> ids) { w.write(ids); });
  }
  w.finish();
  return 0;
}

/// A word from a text id file as an error shows it: bytes outside printable ASCII as \xHH, at most
/// 24 characters; `binary` tells whether any byte was outside printable ASCII.
std::string shown_word(std::string_view w, bool& binary) {
  static const char* const hex = "0123456789abcdef";
  std::string shown;
  binary = false;
  bool cut = false;
  for (const char c : w) {
    const auto b = static_cast<unsigned char>(c);
    const bool printable = b >= 0x20 && b < 0x7f;
    binary = binary || !printable;
    if (shown.size() >= 24) cut = true;
    else if (printable) shown += c;
    else shown += std::string{'\\', 'x', hex[b >> 4], hex[b & 15]};
  }
  return cut ? shown + "…" : shown;
}

int cmd_decode(const args& a) {
  const auto tok = load_model(a);
  const auto f = parse_format(a.format);
  input in(a.positional);
  output out(a.out);
  std::vector<tk::token_id> ids;
  std::string text;
  tk::stream_decoder decoder(tok);  // holds a character split across batches
  auto flush_ids = [&](bool last) {
    text.clear();
    if (a.raw) tok.decode_bytes_append(ids, text);
    else decoder.push(ids, text);
    if (last && !a.raw) decoder.finish(text);
    ids.clear();
    out.write(text);
  };
  if (f == id_format::text) {
    std::string line;
    std::size_t line_no = 0;
    while (std::getline(in.stream(), line)) {
      ++line_no;
      const char* p = line.data();
      const char* e = p + line.size();
      while (p < e) {
        while (p < e && std::isspace(static_cast<unsigned char>(*p))) ++p;
        if (p == e) break;
        const char* q = p;
        while (q < e && !std::isspace(static_cast<unsigned char>(*q))) ++q;
        unsigned long long v = 0;
        const auto [end, ec] = std::from_chars(p, q, v);
        if (ec != std::errc() || end != q || v > 0xFFFFFFFFull) {
          bool binary = false;
          const std::string shown = shown_word(std::string_view(p, static_cast<std::size_t>(q - p)), binary);
          throw einlm::tokenizer_error(in.name() + ":" + std::to_string(line_no) + ": '" + shown +
                                       "' is not a token id" +
                                       (binary ? " (binary ids? pass --format u16 or u32)" : ""));
        }
        ids.push_back(static_cast<tk::token_id>(v));
        p = q;
      }
      if (ids.size() >= (1u << 16)) flush_ids(false);
    }
  } else {
    const std::size_t width = f == id_format::u16 ? 2 : 4;
    std::vector<unsigned char> buf(width << 16);
    std::size_t offset = 0;
    while (in.stream()) {
      in.stream().read(reinterpret_cast<char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
      const auto got = static_cast<std::size_t>(in.stream().gcount());
      if (got % width != 0)
        throw einlm::tokenizer_error(in.name() + ": byte " + std::to_string(offset + got - got % width) +
                                     ": the file ends inside a " + std::to_string(width * 8) + "-bit id");
      for (std::size_t i = 0; i < got; i += width)
        ids.push_back(width == 2 ? tk::token_id(buf[i] | buf[i + 1] << 8)
                                 : tk::token_id(buf[i] | buf[i + 1] << 8 | buf[i + 2] << 16 |
                                                tk::token_id(buf[i + 3]) << 24));
      offset += got;
      flush_ids(false);
    }
  }
  if (in.stream().bad()) throw einlm::tokenizer_error(in.name() + ": read error");
  flush_ids(true);
  out.flush();
  return 0;
}

int cmd_convert(const args& a) {
  const auto tok = load_model(a);
  if (!a.to || !a.out) throw usage_error("convert needs --to FORMAT and --out PATH");
  if (*a.to == "gpt2") {
    std::error_code ec;
    std::filesystem::create_directories(*a.out, ec);
    const std::filesystem::path dir(*a.out);
    tk::save_gpt2(tok.model(), (dir / "vocab.json").string(), (dir / "merges.txt").string());
  } else if (*a.to == "tiktoken") {
    tk::save_tiktoken(tok.model(), *a.out);
  } else if (*a.to == "hf") {
    tk::save_hf_json(tok.model(), *a.out);
  } else {
    throw usage_error("--to must be gpt2, tiktoken or hf");
  }
  return 0;
}

int cmd_pretokenize(const args& a) {
  input in(a.positional);
  output out(a.out);
  const auto text = in.read_all();
  std::string buf;
  tk::for_each_piece(text, [&](std::string_view piece) {
    tk::detail::json::write_string(buf, tk::is_valid_utf8(piece) ? std::string(piece) : tk::to_valid_utf8(piece));
    buf += '\n';
    if (buf.size() > (1u << 16)) {
      out.write(buf);
      buf.clear();
    }
  });
  out.write(buf);
  out.flush();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  try {
    const args a = parse_args(argc, argv);
    if (a.command == "help" || a.command == "-h" || a.command == "--help") {
      std::fputs(k_usage, stdout);
      return 0;
    }
    if (a.command == "train") return cmd_train(a);
    if (a.command == "encode") return cmd_encode(a);
    if (a.command == "decode") return cmd_decode(a);
    if (a.command == "convert") return cmd_convert(a);
    if (a.command == "pretokenize") return cmd_pretokenize(a);
    throw usage_error("unknown command '" + a.command + "'");
  } catch (const usage_error& e) {
    std::fprintf(stderr, "einlm-tokenizer: %s\nRun 'einlm-tokenizer --help' for usage.\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "einlm-tokenizer: error: %s\n", e.what());
    return 1;
  }
}
