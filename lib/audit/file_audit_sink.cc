// The built-in file sink (strongbox/audit_sink.h): JSON lines, one write(2)
// per batch, optional fsync, Reopen for rotation.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "lib/util/mutex.h"
#include "strongbox/audit_sink.h"

namespace strongbox {
namespace {

class FileAuditSink : public AuditSink {
 public:
  explicit FileAuditSink(const FileAuditSinkOptions& options)
      : options_(options) {}
  ~FileAuditSink() override {
    MutexLock lock(&mu_);
    if (fd_ >= 0) ::close(fd_);
  }

  absl::Status Open() {
    MutexLock lock(&mu_);
    return OpenLocked();
  }

  absl::Status Write(const AuditEntry& entry) override {
    const AuditEntry* one = &entry;
    return WriteBatch({&one, 1});
  }

  absl::Status WriteBatch(
      absl::Span<const AuditEntry* const> entries) override {
    std::string text;
    for (const AuditEntry* e : entries) {
      text += e->ToJsonLine();
      text += '\n';
    }
    MutexLock lock(&mu_);
    if (fd_ < 0) return absl::UnavailableError("audit file is not open");
    size_t done = 0;
    while (done < text.size()) {
      const ssize_t n = ::write(fd_, text.data() + done, text.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        return absl::UnavailableError(
            absl::StrCat("audit file: write failed: ", std::strerror(errno)));
      }
      done += static_cast<size_t>(n);
    }
    if (options_.fsync && ::fdatasync(fd_) != 0) {
      return absl::UnavailableError(
          absl::StrCat("audit file: fsync failed: ", std::strerror(errno)));
    }
    return absl::OkStatus();
  }

  bool blocking() const override {
    return options_.fsync || !options_.caller_thread_writes;
  }

  absl::Status Reopen() override {
    MutexLock lock(&mu_);
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
    return OpenLocked();
  }

 private:
  absl::Status OpenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    const int fd =
        ::open(options_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC,
               static_cast<mode_t>(options_.mode));
    if (fd < 0) {
      return absl::UnavailableError(
          absl::StrCat("audit file: cannot open: ", std::strerror(errno)));
    }
    // An existing regular file gets the mode too (never a device such as
    // /dev/full, whose mode is not ours to change).
    struct stat st;
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
        (st.st_mode & 07777) != options_.mode &&
        ::fchmod(fd, static_cast<mode_t>(options_.mode)) != 0) {
      const int err = errno;
      ::close(fd);
      return absl::UnavailableError(absl::StrCat(
          "audit file: cannot set its mode: ", std::strerror(err)));
    }
    fd_ = fd;
    return absl::OkStatus();
  }

  const FileAuditSinkOptions options_;
  Mutex mu_;
  int fd_ ABSL_GUARDED_BY(mu_) = -1;
};

}  // namespace

absl::StatusOr<std::unique_ptr<AuditSink>> NewFileAuditSink(
    const FileAuditSinkOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("audit file: no path given");
  }
  if ((options.mode & ~0777u) != 0) {
    return absl::InvalidArgumentError("audit file: mode must be within 0777");
  }
  auto sink = std::make_unique<FileAuditSink>(options);
  if (absl::Status s = sink->Open(); !s.ok()) return s;
  return sink;
}

}  // namespace strongbox
