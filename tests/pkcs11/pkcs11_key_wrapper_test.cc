// Pkcs11KeyWrapper against a real SoftHSM2 token made at test time, alone
// and under auto-unsealing coordinators. OpenSSL provider only (SoftHSM2
// links OpenSSL 3); tagged `pkcs11`, run in tools/test's openssl stages.
#include "strongbox/pkcs11_key_wrapper.h"

#include <dlfcn.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/pkcs11/pkcs11_errors.h"
#include "strongbox/testing/status_matchers.h"
#include "tests/ha/cluster.h"
#include "tests/pkcs11/softhsm.h"

namespace strongbox {
namespace {

using ::strongbox_testing::IsOk;
using ::strongbox_testing::StatusIs;
using ::testing::HasSubstr;
using testing_softhsm::kModulePath;
using testing_softhsm::SoftHsm;

constexpr char kToken[] = "strongbox-test";
constexpr char kKey[] = "root-kek";

class Pkcs11KeyWrapperTest : public ::testing::Test {
 protected:
  void SetUp() override {
    hsm_ = std::make_unique<SoftHsm>(
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_THAT(hsm_->InitToken(kToken), IsOk());
  }

  Pkcs11Options Options(bool generate = true) {
    Pkcs11Options o;
    o.module_path = kModulePath;
    o.token_label = kToken;
    o.pin_file = hsm_->pin_file();
    o.key_label = kKey;
    o.generate_key = generate;
    return o;
  }

  std::unique_ptr<Pkcs11KeyWrapper> Make(Pkcs11Options o) {
    absl::StatusOr<std::unique_ptr<Pkcs11KeyWrapper>> w =
        Pkcs11KeyWrapper::Create(std::move(o));
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *std::move(w) : nullptr;
  }

  // The module's own function list (the same instance the wrapper loaded),
  // to pull the rug from under the wrapper.
  CK_FUNCTION_LIST_PTR Module() {
    void* dl = dlopen(kModulePath, RTLD_NOW | RTLD_NOLOAD);
    if (dl == nullptr) return nullptr;
    auto get =
        reinterpret_cast<CK_C_GetFunctionList>(dlsym(dl, "C_GetFunctionList"));
    CK_FUNCTION_LIST_PTR fns = nullptr;
    if (get == nullptr || get(&fns) != CKR_OK) return nullptr;
    return fns;
  }

  std::unique_ptr<SoftHsm> hsm_;
};

TEST_F(Pkcs11KeyWrapperTest, WrapUnwrapAndRestart) {
  WrappedSecret blob;
  {
    auto wrapper = Make(Options(/*generate=*/true));
    EXPECT_EQ(wrapper->type(), "pkcs11");
    EXPECT_EQ(wrapper->current_key_id(), kKey);
    ASSERT_OK_AND_ASSIGN(blob, wrapper->Wrap("0123456789abcdef", "core/x"));
    EXPECT_EQ(blob.key_id, kKey);
    EXPECT_EQ(blob.ciphertext.size(), 12u + 16u + 16u);
    ASSERT_OK_AND_ASSIGN(SecretBytes plain, wrapper->Unwrap(blob, "core/x"));
    EXPECT_EQ(plain.view(), "0123456789abcdef");
    EXPECT_EQ(wrapper->initializations(), 1);
    EXPECT_THAT(wrapper->Unwrap(blob, "core/y").status(),
                StatusIs(absl::StatusCode::kDataLoss));
    WrappedSecret tampered = blob;
    tampered.ciphertext[20] ^= 1;
    EXPECT_THAT(wrapper->Unwrap(tampered, "core/x").status(),
                StatusIs(absl::StatusCode::kDataLoss));
    WrappedSecret other = blob;
    other.key_id = "some-other-key";
    EXPECT_THAT(wrapper->Unwrap(other, "core/x").status(),
                StatusIs(absl::StatusCode::kNotFound));
  }
  // A restarted process: the key is a token object, no generation needed.
  auto again = Make(Options(/*generate=*/false));
  ASSERT_OK_AND_ASSIGN(SecretBytes plain, again->Unwrap(blob, "core/x"));
  EXPECT_EQ(plain.view(), "0123456789abcdef");
}

TEST_F(Pkcs11KeyWrapperTest, GeneratedKeyIsNotExtractable) {
  auto wrapper = Make(Options(/*generate=*/true));
  ASSERT_THAT(wrapper->Check(), IsOk());
  CK_FUNCTION_LIST_PTR fns = Module();
  ASSERT_NE(fns, nullptr);
  // The wrapper's session keeps the module initialized and logged in.
  CK_SLOT_ID slots[8];
  CK_ULONG n = 8;
  ASSERT_EQ(fns->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
  CK_SESSION_HANDLE session;
  ASSERT_EQ(fns->C_OpenSession(slots[0], CKF_SERIAL_SESSION, nullptr, nullptr,
                               &session),
            CKR_OK);
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_ATTRIBUTE find[] = {{CKA_CLASS, &cls, sizeof(cls)},
                         {CKA_LABEL, const_cast<char*>(kKey), strlen(kKey)}};
  ASSERT_EQ(fns->C_FindObjectsInit(session, find, 2), CKR_OK);
  CK_OBJECT_HANDLE key;
  CK_ULONG count = 0;
  ASSERT_EQ(fns->C_FindObjects(session, &key, 1, &count), CKR_OK);
  fns->C_FindObjectsFinal(session);
  ASSERT_EQ(count, 1u);
  CK_BBOOL extractable = CK_TRUE, sensitive = CK_FALSE;
  CK_ULONG len = 0;
  CK_ATTRIBUTE get[] = {{CKA_EXTRACTABLE, &extractable, sizeof(extractable)},
                        {CKA_SENSITIVE, &sensitive, sizeof(sensitive)},
                        {CKA_VALUE_LEN, &len, sizeof(len)}};
  ASSERT_EQ(fns->C_GetAttributeValue(session, key, get, 3), CKR_OK);
  EXPECT_EQ(extractable, CK_FALSE);
  EXPECT_EQ(sensitive, CK_TRUE);
  EXPECT_EQ(len, 32u);
  fns->C_CloseSession(session);
}

TEST_F(Pkcs11KeyWrapperTest, WrongPinNamesTheCause) {
  Pkcs11Options o = Options();
  o.pin_file = hsm_->WritePinFile("wrong-pin", "9999\n");
  auto wrapper = Make(o);
  EXPECT_THAT(wrapper->Check(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("CKR_PIN_INCORRECT")));
  EXPECT_THAT(
      wrapper->Wrap("k", "ad").status(),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("wrong PIN")));
}

// A refused PIN is not offered again until the PIN file changes (a real
// token may lock the PIN); once it is fixed, the next call logs in.
TEST_F(Pkcs11KeyWrapperTest, RefusedPinIsNotRetriedUntilThePinFileChanges) {
  Pkcs11Options o = Options();
  o.pin_file = hsm_->WritePinFile("pin-to-fix", "9999\n");
  auto wrapper = Make(o);
  EXPECT_THAT(wrapper->Check(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                         HasSubstr("CKR_PIN_INCORRECT")));
  EXPECT_THAT(wrapper->Check(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not retried until the PIN file changes")));
  hsm_->WritePinFile("pin-to-fix",
                     std::string(testing_softhsm::kUserPin) + "\n");
  EXPECT_THAT(wrapper->Check(), IsOk());
}

TEST_F(Pkcs11KeyWrapperTest, MissingPinFileNamesTheCause) {
  Pkcs11Options o = Options();
  o.pin_file = hsm_->dir() + "/no-such-pin";
  auto wrapper = Make(o);
  EXPECT_THAT(wrapper->Check(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("cannot read the PIN file")));
}

TEST_F(Pkcs11KeyWrapperTest, MissingTokenNamesTheCause) {
  Pkcs11Options o = Options();
  o.token_label = "no-such-token";
  auto wrapper = Make(o);
  EXPECT_THAT(wrapper->Check(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no token labeled \"no-such-token\"")));
}

TEST_F(Pkcs11KeyWrapperTest, MissingKeyNamesTheCause) {
  auto wrapper = Make(Options(/*generate=*/false));
  EXPECT_THAT(wrapper->Check(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no secret key labeled \"root-kek\"")));
}

TEST_F(Pkcs11KeyWrapperTest, WrongModulePathNamesTheCause) {
  Pkcs11Options o = Options();
  o.module_path = "/nonexistent/libpkcs11.so";
  auto wrapper = Make(o);
  EXPECT_THAT(wrapper->Check(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("cannot load module /nonexistent")));
  // A library that is not a PKCS#11 module.
  o.module_path = "libz.so.1";
  auto not_pkcs11 = Make(o);
  EXPECT_THAT(not_pkcs11->Check(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("no C_GetFunctionList")));
}

TEST_F(Pkcs11KeyWrapperTest, CreateValidatesOptions) {
  Pkcs11Options o = Options();
  o.key_label.clear();
  EXPECT_THAT(Pkcs11KeyWrapper::Create(o).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
  o = Options();
  o.token_label.clear();
  EXPECT_THAT(Pkcs11KeyWrapper::Create(o).status(),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST_F(Pkcs11KeyWrapperTest, ReconnectsAfterSessionsClosedBehindItsBack) {
  auto wrapper = Make(Options());
  ASSERT_OK_AND_ASSIGN(WrappedSecret blob, wrapper->Wrap("secret", "ad"));
  CK_FUNCTION_LIST_PTR fns = Module();
  ASSERT_NE(fns, nullptr);
  CK_SLOT_ID slots[8];
  CK_ULONG n = 8;
  ASSERT_EQ(fns->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
  for (CK_ULONG i = 0; i < n; ++i) fns->C_CloseAllSessions(slots[i]);
  // CKR_SESSION_HANDLE_INVALID inside: the wrapper re-initializes and logs
  // in again, and the call succeeds.
  ASSERT_OK_AND_ASSIGN(SecretBytes plain, wrapper->Unwrap(blob, "ad"));
  EXPECT_EQ(plain.view(), "secret");
  EXPECT_EQ(wrapper->initializations(), 2);
}

TEST_F(Pkcs11KeyWrapperTest, ReinitializesAfterModuleFinalizedBehindItsBack) {
  auto wrapper = Make(Options());
  ASSERT_OK_AND_ASSIGN(WrappedSecret blob, wrapper->Wrap("secret", "ad"));
  CK_FUNCTION_LIST_PTR fns = Module();
  ASSERT_NE(fns, nullptr);
  ASSERT_EQ(fns->C_Finalize(nullptr), CKR_OK);
  // CKR_CRYPTOKI_NOT_INITIALIZED inside.
  ASSERT_OK_AND_ASSIGN(SecretBytes plain, wrapper->Unwrap(blob, "ad"));
  EXPECT_EQ(plain.view(), "secret");
  EXPECT_EQ(wrapper->initializations(), 2);
}

TEST_F(Pkcs11KeyWrapperTest, ConcurrentCallsShareThePool) {
  auto wrapper = Make(Options());
  ASSERT_THAT(wrapper->Check(), IsOk());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        absl::StatusOr<WrappedSecret> blob = wrapper->Wrap("value", "ad");
        ASSERT_TRUE(blob.ok()) << blob.status();
        absl::StatusOr<SecretBytes> plain = wrapper->Unwrap(*blob, "ad");
        ASSERT_TRUE(plain.ok()) << plain.status();
        EXPECT_EQ(plain->view(), "value");
      }
    });
  }
  for (std::thread& t : threads) t.join();
}

// End to end: coordinators auto-unsealing through SoftHSM2.
TEST_F(Pkcs11KeyWrapperTest, ClusterInitRestartAndTokenFilesGoneThenRestored) {
  auto wrapper = Make(Options(/*generate=*/true));
  testing_cluster::ClusterOptions options;
  options.key_wrapper = wrapper.get();
  testing_cluster::Cluster cluster(options);
  ASSERT_OK_AND_ASSIGN(std::vector<std::string> recovery,
                       cluster.nodes[0]->Initialize(3, 2));
  EXPECT_EQ(recovery.size(), 3u);
  cluster.Run(absl::Seconds(3));
  int active = cluster.Active();
  ASSERT_GE(active, 0);
  EXPECT_EQ(cluster.nodes[active]->Status().seal_type, "pkcs11");
  ASSERT_OK_AND_ASSIGN(FenceToken fence, cluster.nodes[active]->WriteFence());
  ASSERT_THAT(
      cluster.nodes[active]->barrier()->Put("app/x", "v1", fence).status(),
      IsOk());

  // The token's files disappear while the nodes run: unsealed nodes keep
  // serving (their keys are in memory) ...
  ASSERT_THAT(hsm_->HideTokens(), IsOk());
  // ... and a node that restarts now cannot unseal: it stays sealed with
  // the cause in its status, retrying; no crash. (The wrapper's sessions
  // are closed behind its back, so it re-initializes the module, as a
  // restarted process would, and finds no token.)
  const int restarted = (active + 1) % 3;
  cluster.Restart(restarted);
  CK_FUNCTION_LIST_PTR fns = Module();
  ASSERT_NE(fns, nullptr);
  CK_SLOT_ID slots[8];
  CK_ULONG n = 8;
  ASSERT_EQ(fns->C_GetSlotList(CK_TRUE, slots, &n), CKR_OK);
  for (CK_ULONG i = 0; i < n; ++i) fns->C_CloseAllSessions(slots[i]);
  cluster.Run(absl::Seconds(2));
  ASSERT_OK_AND_ASSIGN(Entry e, cluster.nodes[active]->barrier()->Get("app/x"));
  EXPECT_EQ(e.value, "v1");
  HaStatus st = cluster.nodes[restarted]->Status();
  EXPECT_TRUE(st.sealed);
  EXPECT_THAT(st.seal_error, HasSubstr("sealed: waiting for key wrapper: "));
  EXPECT_THAT(st.seal_error, HasSubstr("no token labeled"));

  ASSERT_THAT(hsm_->RestoreTokens(), IsOk());
  cluster.Run(absl::Seconds(15));
  st = cluster.nodes[restarted]->Status();
  EXPECT_FALSE(st.sealed) << st.seal_error;
  EXPECT_TRUE(st.seal_error.empty());
  ASSERT_OK_AND_ASSIGN(e, cluster.nodes[restarted]->barrier()->Get("app/x"));
  EXPECT_EQ(e.value, "v1");
}

}  // namespace
}  // namespace strongbox
