// The testonly strongbox_node_with_test_seams: stops the node at a point
// named in STRONGBOX_NODE_TEST_PAUSE_FILE (test_seams.h).
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "examples/node/test_seams.h"

namespace strongbox {
namespace node {
namespace {

// The pause file's words, or none when it is unset or absent.
std::vector<std::string> ReadPauseFile() {
  const char* path = std::getenv("STRONGBOX_NODE_TEST_PAUSE_FILE");
  if (path == nullptr || *path == '\0') return {};
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream text;
  text << in.rdbuf();
  return absl::StrSplit(text.str(), absl::ByAnyChar(" \t\n"),
                        absl::SkipEmpty());
}

// Fires the seam: one node, once (the rename is atomic), then this thread
// stops for good.
void Fire(const std::string& what) {
  const char* path = std::getenv("STRONGBOX_NODE_TEST_PAUSE_FILE");
  if (std::rename(path, absl::StrCat(path, ".fired").c_str()) != 0) return;
  std::fprintf(stderr, "strongbox_node: test seam: stopped %s\n", what.c_str());
  std::fflush(stderr);
  while (true) pause();
}

class PausingKeyWrapper : public KeyWrapper {
 public:
  explicit PausingKeyWrapper(std::unique_ptr<KeyWrapper> target)
      : target_(std::move(target)) {}
  std::string type() const override { return target_->type(); }
  std::string current_key_id() const override {
    return target_->current_key_id();
  }
  absl::StatusOr<WrappedSecret> Wrap(absl::string_view plaintext,
                                     absl::string_view ad) override {
    absl::StatusOr<WrappedSecret> out = target_->Wrap(plaintext, ad);
    std::vector<std::string> words = ReadPauseFile();
    int n = 0;
    if (words.size() == 2 && words[0] == "after-wrap" &&
        absl::SimpleAtoi(words[1], &n)) {
      if (wraps_seen_.fetch_add(1) + 1 == n)
        Fire(absl::StrCat("after wrap ", n));
    }
    return out;
  }
  absl::StatusOr<SecretBytes> Unwrap(const WrappedSecret& wrapped,
                                     absl::string_view ad) override {
    return target_->Unwrap(wrapped, ad);
  }

 private:
  const std::unique_ptr<KeyWrapper> target_;
  std::atomic<int> wraps_seen_{0};
};

class PausingBackend : public BackendWrapper {
 public:
  explicit PausingBackend(std::unique_ptr<Backend> target)
      : BackendWrapper(target.get()), owned_(std::move(target)) {}
  absl::StatusOr<uint64_t> Commit(absl::Span<const WriteOp> ops,
                                  FenceToken fence) override {
    absl::StatusOr<uint64_t> rev = BackendWrapper::Commit(ops, fence);
    if (!rev.ok()) return rev;
    std::vector<std::string> words = ReadPauseFile();
    if (words.size() == 2 && words[0] == "after-commit") {
      for (const WriteOp& op : ops) {
        if (op.key == words[1] && op.kind != WriteOp::Kind::kCheck) {
          Fire(absl::StrCat("after the commit writing ", words[1]));
        }
      }
    }
    return rev;
  }

 private:
  const std::unique_ptr<Backend> owned_;
};

}  // namespace

std::unique_ptr<KeyWrapper> KeyWrapperWithTestSeams(
    std::unique_ptr<KeyWrapper> wrapper) {
  return std::make_unique<PausingKeyWrapper>(std::move(wrapper));
}

std::unique_ptr<Backend> BackendWithTestSeams(
    std::unique_ptr<Backend> backend) {
  return std::make_unique<PausingBackend>(std::move(backend));
}

}  // namespace node
}  // namespace strongbox
