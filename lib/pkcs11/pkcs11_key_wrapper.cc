// Pkcs11KeyWrapper (strongbox/pkcs11_key_wrapper.h).
#include "strongbox/pkcs11_key_wrapper.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "lib/crypto/random.h"
#include "lib/pkcs11/pkcs11_errors.h"
#include "lib/util/mutex.h"
#include "lib/util/status_macros.h"

namespace strongbox {
namespace {

constexpr size_t kIvBytes = 12;
constexpr size_t kTagBytes = 16;
constexpr size_t kMaxPlaintext = 1024;

using pkcs11::RvName;
using pkcs11::RvNeedsReset;

// Trailing blanks, as PKCS#11 pads labels.
std::string TrimLabel(const unsigned char* label, size_t size) {
  std::string s(reinterpret_cast<const char*>(label), size);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

}  // namespace

class Pkcs11KeyWrapper::Impl {
 public:
  explicit Impl(Pkcs11Options options) : options_(std::move(options)) {}

  ~Impl() {
    WriterLock lock(&module_mu_);
    DisconnectLocked();
  }

  absl::Status Check() {
    return WithSession(options_.key_label,
                       [](CK_FUNCTION_LIST_PTR, CK_SESSION_HANDLE,
                          CK_OBJECT_HANDLE, bool) { return absl::OkStatus(); });
  }

  absl::StatusOr<WrappedSecret> Wrap(absl::string_view plaintext,
                                     absl::string_view ad) {
    if (plaintext.empty() || plaintext.size() > kMaxPlaintext) {
      return absl::InvalidArgumentError(
          "PKCS#11 key wrapper: plaintext must be 1 to 1024 bytes");
    }
    WrappedSecret out;
    out.key_id = options_.key_label;
    RETURN_IF_ERROR(WithSession(
        options_.key_label,
        [&](CK_FUNCTION_LIST_PTR fns, CK_SESSION_HANDLE session,
            CK_OBJECT_HANDLE key, bool last_attempt) -> absl::Status {
          std::string blob(kIvBytes + plaintext.size() + kTagBytes, '\0');
          uint8_t* bytes = reinterpret_cast<uint8_t*>(blob.data());
          RETURN_IF_ERROR(crypto::RandomBytes(absl::MakeSpan(bytes, kIvBytes)));
          CK_GCM_PARAMS params = GcmParams(bytes, ad);
          CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof(params)};
          CK_RV rv = fns->C_EncryptInit(session, &mech, key);
          if (rv != CKR_OK) return RvError("C_EncryptInit", rv);
          CK_ULONG out_len = plaintext.size() + kTagBytes;
          rv = fns->C_Encrypt(session,
                              reinterpret_cast<CK_BYTE_PTR>(
                                  const_cast<char*>(plaintext.data())),
                              plaintext.size(), bytes + kIvBytes, &out_len);
          if (rv != CKR_OK) return RvError("C_Encrypt", rv);
          if (out_len != plaintext.size() + kTagBytes) {
            return absl::InternalError(
                "PKCS#11: C_Encrypt returned an unexpected length");
          }
          out.ciphertext = std::move(blob);
          return absl::OkStatus();
        }));
    return out;
  }

  absl::StatusOr<SecretBytes> Unwrap(const WrappedSecret& wrapped,
                                     absl::string_view ad) {
    bool known = wrapped.key_id == options_.key_label;
    for (const std::string& old : options_.old_key_labels) {
      known = known || wrapped.key_id == old;
    }
    if (!known) {
      return absl::NotFoundError(
          absl::StrCat("PKCS#11 key wrapper: the blob's key \"", wrapped.key_id,
                       "\" is not configured"));
    }
    if (wrapped.ciphertext.size() < kIvBytes + kTagBytes + 1) {
      return absl::DataLossError("PKCS#11 key wrapper: blob is truncated");
    }
    SecretBytes result;
    RETURN_IF_ERROR(WithSession(
        wrapped.key_id,
        [&](CK_FUNCTION_LIST_PTR fns, CK_SESSION_HANDLE session,
            CK_OBJECT_HANDLE key, bool last_attempt) -> absl::Status {
          std::string iv = wrapped.ciphertext.substr(0, kIvBytes);
          CK_GCM_PARAMS params =
              GcmParams(reinterpret_cast<uint8_t*>(iv.data()), ad);
          CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof(params)};
          CK_RV rv = fns->C_DecryptInit(session, &mech, key);
          if (rv != CKR_OK) return RvError("C_DecryptInit", rv);
          const size_t sealed_len = wrapped.ciphertext.size() - kIvBytes;
          SecretBytes plain(sealed_len);  // room for what a module may want
          CK_ULONG out_len = sealed_len;
          rv = fns->C_Decrypt(session,
                              reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(
                                  wrapped.ciphertext.data() + kIvBytes)),
                              sealed_len, plain.data(), &out_len);
          // GCM's tag check failed: a wrong key, altered bytes or other
          // ad. SoftHSM2 reports that as CKR_GENERAL_ERROR, which could
          // also be a module in trouble: the first time it counts as such
          // (reset and retry), the second time as the blob's fault.
          const bool generic =
              rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED;
          if (rv == CKR_ENCRYPTED_DATA_INVALID ||
              rv == CKR_ENCRYPTED_DATA_LEN_RANGE || (generic && last_attempt)) {
            return absl::DataLossError(absl::StrCat(
                "PKCS#11 key wrapper: blob does not authenticate under key \"",
                wrapped.key_id, "\" (C_Decrypt: ", RvName(rv), ")"));
          }
          if (rv != CKR_OK) return RvError("C_Decrypt", rv);
          if (out_len != sealed_len - kTagBytes) {
            return absl::InternalError(
                "PKCS#11: C_Decrypt returned an unexpected length");
          }
          result = SecretBytes::Copy(plain.view().substr(0, out_len));
          return absl::OkStatus();
        }));
    return result;
  }

  const std::string& key_label() const { return options_.key_label; }

  int initializations() const {
    ReaderLock lock(&module_mu_);
    return initializations_;
  }

 private:
  // A reset-worthy failure of a call into the module.
  absl::Status RvError(const char* function, CK_RV rv) {
    return pkcs11::StatusFor(function, rv);
  }

  static CK_GCM_PARAMS GcmParams(uint8_t* iv, absl::string_view ad) {
    CK_GCM_PARAMS params;
    params.pIv = iv;
    params.ulIvLen = kIvBytes;
    params.ulIvBits = kIvBytes * 8;
    params.pAAD = reinterpret_cast<CK_BYTE_PTR>(const_cast<char*>(ad.data()));
    params.ulAADLen = ad.size();
    params.ulTagBits = kTagBytes * 8;
    return params;
  }

  // Runs `op` on a pooled session with the key labeled `label`. Connects
  // first if needed; on a failure that calls for it (RvNeedsReset: lost
  // session, login or device) drops everything, reconnects and runs `op`
  // once more.
  template <typename Op>
  absl::Status WithSession(const std::string& label, Op op) {
    absl::Status last;
    int runs = 0;  // `op` runs at most twice, with a reset between
    while (true) {
      uint64_t generation;
      {
        ReaderLock lock(&module_mu_);
        generation = generation_;
        if (fns_ != nullptr) {
          bool reset = false;
          last = RunLocked(label, op, /*last_attempt=*/runs == 1, &reset);
          if (!reset || ++runs == 2) return last;
        }
      }
      // Not connected, or the module asked for a reset: reconnect (once per
      // generation, however many callers saw the failure).
      WriterLock lock(&module_mu_);
      if (generation_ == generation) {
        DisconnectLocked();
        absl::Status connected = ConnectLocked();
        if (!connected.ok()) return connected;
      }
    }
  }

  template <typename Op>
  absl::Status RunLocked(const std::string& label, Op& op, bool last_attempt,
                         bool* reset) ABSL_SHARED_LOCKS_REQUIRED(module_mu_) {
    CK_SESSION_HANDLE session;
    {
      MutexLock lock(&pool_mu_);
      if (!idle_.empty()) {
        session = idle_.back();
        idle_.pop_back();
      } else {
        session = CK_INVALID_HANDLE;
      }
    }
    if (session == CK_INVALID_HANDLE) {
      CK_RV rv = fns_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                     nullptr, nullptr, &session);
      if (rv != CKR_OK) {
        *reset = RvNeedsReset(rv);
        return RvError("C_OpenSession", rv);
      }
    }
    absl::StatusOr<CK_OBJECT_HANDLE> key = KeyLocked(session, label);
    absl::Status status =
        key.ok() ? op(fns_, session, *key, last_attempt) : key.status();
    if (pkcs11::StatusWantsReset(status)) {
      *reset = true;
      return status;
    }
    MutexLock lock(&pool_mu_);
    if (static_cast<int>(idle_.size()) < options_.max_idle_sessions) {
      idle_.push_back(session);
    } else {
      fns_->C_CloseSession(session);
    }
    return status;
  }

  // The key labeled `label` (cached per connection).
  absl::StatusOr<CK_OBJECT_HANDLE> KeyLocked(CK_SESSION_HANDLE session,
                                             const std::string& label)
      ABSL_SHARED_LOCKS_REQUIRED(module_mu_) {
    {
      MutexLock lock(&pool_mu_);
      auto it = keys_.find(label);
      if (it != keys_.end()) return it->second;
    }
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_ATTRIBUTE find[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
    };
    CK_RV rv = fns_->C_FindObjectsInit(session, find, 2);
    if (rv != CKR_OK) return RvError("C_FindObjectsInit", rv);
    CK_OBJECT_HANDLE found[2];
    CK_ULONG count = 0;
    rv = fns_->C_FindObjects(session, found, 2, &count);
    fns_->C_FindObjectsFinal(session);
    if (rv != CKR_OK) return RvError("C_FindObjects", rv);
    if (count > 1) {
      return absl::FailedPreconditionError(
          absl::StrCat("PKCS#11: more than one secret key labeled \"", label,
                       "\" on token \"", token_name_, "\""));
    }
    CK_OBJECT_HANDLE key;
    if (count == 0) {
      if (!options_.generate_key || label != options_.key_label) {
        return absl::FailedPreconditionError(
            absl::StrCat("PKCS#11: no secret key labeled \"", label,
                         "\" on token \"", token_name_, "\""));
      }
      ASSIGN_OR_RETURN(key, GenerateKeyLocked(session, label));
    } else {
      key = found[0];
      CK_KEY_TYPE type = 0;
      CK_ATTRIBUTE get[] = {{CKA_KEY_TYPE, &type, sizeof(type)}};
      rv = fns_->C_GetAttributeValue(session, key, get, 1);
      if (rv != CKR_OK) return RvError("C_GetAttributeValue", rv);
      if (type != CKK_AES) {
        return absl::FailedPreconditionError(absl::StrCat(
            "PKCS#11: the key labeled \"", label, "\" is not an AES key"));
      }
    }
    MutexLock lock(&pool_mu_);
    keys_[label] = key;
    return key;
  }

  absl::StatusOr<CK_OBJECT_HANDLE> GenerateKeyLocked(CK_SESSION_HANDLE session,
                                                     const std::string& label)
      ABSL_SHARED_LOCKS_REQUIRED(module_mu_) {
    CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
    CK_KEY_TYPE type = CKK_AES;
    CK_ULONG len = 32;
    CK_BBOOL yes = CK_TRUE;
    CK_BBOOL no = CK_FALSE;
    CK_ATTRIBUTE tmpl[] = {
        {CKA_CLASS, &cls, sizeof(cls)},
        {CKA_KEY_TYPE, &type, sizeof(type)},
        {CKA_VALUE_LEN, &len, sizeof(len)},
        {CKA_TOKEN, &yes, sizeof(yes)},
        {CKA_PRIVATE, &yes, sizeof(yes)},
        {CKA_SENSITIVE, &yes, sizeof(yes)},
        {CKA_EXTRACTABLE, &no, sizeof(no)},
        {CKA_ENCRYPT, &yes, sizeof(yes)},
        {CKA_DECRYPT, &yes, sizeof(yes)},
        {CKA_LABEL, const_cast<char*>(label.data()), label.size()},
    };
    CK_MECHANISM mech = {CKM_AES_KEY_GEN, nullptr, 0};
    CK_OBJECT_HANDLE key;
    CK_RV rv = fns_->C_GenerateKey(session, &mech, tmpl,
                                   sizeof(tmpl) / sizeof(tmpl[0]), &key);
    if (rv != CKR_OK) return RvError("C_GenerateKey", rv);
    return key;
  }

  // The PIN file's identity (device, inode, size, mtime), to tell whether
  // it changed since a login was refused.
  static std::string PinFileStamp(const std::string& path) {
    struct stat st;
    if (stat(path.c_str(), &st) != 0) return "";
    return absl::StrCat(st.st_dev, ":", st.st_ino, ":", st.st_size, ":",
                        st.st_mtim.tv_sec, ".", st.st_mtim.tv_nsec);
  }

  // The PIN, read into a fixed buffer that is wiped (no stream copies).
  absl::StatusOr<SecretBytes> ReadPin() {
    FILE* f = std::fopen(options_.pin_file.c_str(), "rb");
    if (f == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "PKCS#11: cannot read the PIN file ", options_.pin_file));
    }
    char buffer[256];
    const size_t n = std::fread(buffer, 1, sizeof(buffer), f);
    std::fclose(f);
    absl::string_view pin =
        absl::StripAsciiWhitespace(absl::string_view(buffer, n));
    SecretBytes out = SecretBytes::Copy(pin);
    WipeMemory(buffer, sizeof(buffer));
    if (out.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "PKCS#11: the PIN file ", options_.pin_file, " is empty"));
    }
    return out;
  }

  // Load (once), initialize, find the token, log in, find (or make) the
  // key. On failure the module is left finalized, so the next attempt
  // starts afresh.
  absl::Status ConnectLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(module_mu_) {
    if (dl_ == nullptr) {
      dlerror();
      dl_ = dlopen(options_.module_path.c_str(), RTLD_NOW | RTLD_LOCAL);
      if (dl_ == nullptr) {
        const char* why = dlerror();
        return absl::FailedPreconditionError(
            absl::StrCat("PKCS#11: cannot load module ", options_.module_path,
                         ": ", why != nullptr ? why : "dlopen failed"));
      }
    }
    auto get_list =
        reinterpret_cast<CK_C_GetFunctionList>(dlsym(dl_, "C_GetFunctionList"));
    if (get_list == nullptr) {
      return absl::FailedPreconditionError(
          absl::StrCat("PKCS#11: ", options_.module_path,
                       " has no C_GetFunctionList (not a PKCS#11 module)"));
    }
    CK_FUNCTION_LIST_PTR fns = nullptr;
    CK_RV rv = get_list(&fns);
    if (rv != CKR_OK || fns == nullptr) {
      return pkcs11::StatusFor("C_GetFunctionList", rv);
    }
    CK_C_INITIALIZE_ARGS args = {};
    args.flags = CKF_OS_LOCKING_OK;
    rv = fns->C_Initialize(&args);
    if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
      return pkcs11::StatusFor("C_Initialize", rv);
    }
    initialized_ = rv == CKR_OK;
    fns_ = fns;
    absl::Status connected = FindTokenAndLogInLocked();
    if (!connected.ok()) {
      DisconnectLocked();
      return connected;
    }
    ++initializations_;
    ++generation_;
    return absl::OkStatus();
  }

  absl::Status FindTokenAndLogInLocked()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(module_mu_) {
    CK_ULONG count = 0;
    CK_RV rv = fns_->C_GetSlotList(CK_TRUE, nullptr, &count);
    if (rv != CKR_OK) return pkcs11::StatusFor("C_GetSlotList", rv);
    std::vector<CK_SLOT_ID> slots(count);
    rv = fns_->C_GetSlotList(CK_TRUE, slots.data(), &count);
    if (rv != CKR_OK) return pkcs11::StatusFor("C_GetSlotList", rv);
    slots.resize(count);
    bool found = false;
    for (CK_SLOT_ID slot : slots) {
      CK_TOKEN_INFO info;
      if (fns_->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
      const std::string label = TrimLabel(info.label, sizeof(info.label));
      if (options_.token_label.empty()
              ? slot == static_cast<CK_SLOT_ID>(options_.slot_id)
              : label == options_.token_label) {
        slot_ = slot;
        token_name_ = label;
        found = true;
        break;
      }
    }
    if (!found) {
      return absl::FailedPreconditionError(
          options_.token_label.empty()
              ? absl::StrCat("PKCS#11: no token in slot ", options_.slot_id,
                             " of module ", options_.module_path)
              : absl::StrCat("PKCS#11: no token labeled \"",
                             options_.token_label, "\" in module ",
                             options_.module_path));
    }
    CK_SESSION_HANDLE session;
    rv = fns_->C_OpenSession(slot_, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                             nullptr, nullptr, &session);
    if (rv != CKR_OK) return pkcs11::StatusFor("C_OpenSession", rv);
    // A PIN the token refused is not offered again until the PIN file
    // changes: real HSMs lock the user PIN after a few wrong tries, and
    // auto-unseal retries for as long as the node runs.
    const std::string stamp = PinFileStamp(options_.pin_file);
    if (!refused_pin_stamp_.empty() && stamp == refused_pin_stamp_) {
      fns_->C_CloseSession(session);
      return absl::FailedPreconditionError(absl::StrCat(
          refused_pin_error_,
          "; not retried until the PIN file changes (a token may lock "
          "the PIN after repeated wrong tries)"));
    }
    absl::StatusOr<SecretBytes> pin = ReadPin();
    if (!pin.ok()) {
      fns_->C_CloseSession(session);
      return pin.status();
    }
    rv = fns_->C_Login(session, CKU_USER, pin->data(), pin->size());
    pin->Clear();
    if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
      fns_->C_CloseSession(session);
      absl::Status refused = pkcs11::StatusFor(
          "C_Login", rv, absl::StrCat(" on token \"", token_name_, "\""));
      if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID ||
          rv == CKR_PIN_LEN_RANGE) {
        refused_pin_stamp_ = stamp;
        refused_pin_error_ = std::string(refused.message());
      }
      return refused;
    }
    refused_pin_stamp_.clear();
    {
      MutexLock lock(&pool_mu_);
      idle_.push_back(session);
    }
    // The current key now, so a missing key is reported at connect time.
    absl::StatusOr<CK_OBJECT_HANDLE> key =
        KeyLocked(session, options_.key_label);
    return key.status();
  }

  void DisconnectLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(module_mu_) {
    if (fns_ == nullptr) return;
    std::vector<CK_SESSION_HANDLE> sessions;
    {
      MutexLock lock(&pool_mu_);
      sessions.swap(idle_);
      keys_.clear();
    }
    for (CK_SESSION_HANDLE s : sessions) fns_->C_CloseSession(s);
    if (initialized_) fns_->C_Finalize(nullptr);
    initialized_ = false;
    fns_ = nullptr;
    ++generation_;
  }

  const Pkcs11Options options_;

  // Shared by calls into the module; exclusive to (re)connect.
  mutable SharedMutex module_mu_ ABSL_ACQUIRED_BEFORE(pool_mu_);
  void* dl_ ABSL_GUARDED_BY(module_mu_) = nullptr;  // never dlclose()d
  CK_FUNCTION_LIST_PTR fns_ ABSL_GUARDED_BY(module_mu_) = nullptr;
  bool initialized_ ABSL_GUARDED_BY(module_mu_) = false;  // by us
  CK_SLOT_ID slot_ ABSL_GUARDED_BY(module_mu_) = 0;
  std::string token_name_ ABSL_GUARDED_BY(module_mu_);
  uint64_t generation_ ABSL_GUARDED_BY(module_mu_) = 0;
  int initializations_ ABSL_GUARDED_BY(module_mu_) = 0;
  // The PIN file (PinFileStamp) whose PIN the token refused, and why.
  std::string refused_pin_stamp_ ABSL_GUARDED_BY(module_mu_);
  std::string refused_pin_error_ ABSL_GUARDED_BY(module_mu_);

  Mutex pool_mu_;
  std::vector<CK_SESSION_HANDLE> idle_ ABSL_GUARDED_BY(pool_mu_);
  std::map<std::string, CK_OBJECT_HANDLE> keys_ ABSL_GUARDED_BY(pool_mu_);
};

// ----------------------------------------------------------------- public

absl::StatusOr<std::unique_ptr<Pkcs11KeyWrapper>> Pkcs11KeyWrapper::Create(
    Pkcs11Options options) {
  if (options.module_path.empty()) {
    return absl::InvalidArgumentError("Pkcs11Options.module_path is required");
  }
  if (options.token_label.empty() && options.slot_id < 0) {
    return absl::InvalidArgumentError(
        "Pkcs11Options: token_label or slot_id is required");
  }
  if (options.pin_file.empty()) {
    return absl::InvalidArgumentError("Pkcs11Options.pin_file is required");
  }
  if (options.key_label.empty()) {
    return absl::InvalidArgumentError("Pkcs11Options.key_label is required");
  }
  if (options.max_idle_sessions < 1) {
    return absl::InvalidArgumentError(
        "Pkcs11Options.max_idle_sessions must be at least 1");
  }
  return std::unique_ptr<Pkcs11KeyWrapper>(
      new Pkcs11KeyWrapper(std::make_unique<Impl>(std::move(options))));
}

Pkcs11KeyWrapper::Pkcs11KeyWrapper(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)) {}
Pkcs11KeyWrapper::~Pkcs11KeyWrapper() = default;

absl::Status Pkcs11KeyWrapper::Check() { return impl_->Check(); }
std::string Pkcs11KeyWrapper::current_key_id() const {
  return impl_->key_label();
}
absl::StatusOr<WrappedSecret> Pkcs11KeyWrapper::Wrap(
    absl::string_view plaintext, absl::string_view ad) {
  return impl_->Wrap(plaintext, ad);
}
absl::StatusOr<SecretBytes> Pkcs11KeyWrapper::Unwrap(
    const WrappedSecret& wrapped, absl::string_view ad) {
  return impl_->Unwrap(wrapped, ad);
}
int Pkcs11KeyWrapper::initializations() const {
  return impl_->initializations();
}

}  // namespace strongbox
