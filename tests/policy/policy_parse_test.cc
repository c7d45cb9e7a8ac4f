// The policy parser: valid documents, and every kind of bad document with
// the line its message names (D6: a clear INVALID_ARGUMENT, never a crash).
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "lib/policy/path_pattern.h"
#include "lib/policy/policy.h"
#include "strongbox/testing/status_matchers.h"

namespace strongbox::policy {
namespace {

using ::strongbox_testing::StatusIs;
using ::testing::HasSubstr;

TEST(PolicyParseTest, VaultJsonFormat) {
  absl::StatusOr<Policy> p =
      ParsePolicy("app", R"({"path":{"app/*":{"capabilities":["read","list"]},
                 "app/+/admin":{"capabilities":["deny"]}}})");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->name, "app");
  ASSERT_EQ(p->rules.size(), 2u);
  EXPECT_EQ(p->rules[0].pattern.text(), "app/*");
  EXPECT_EQ(p->rules[0].capabilities.ToString(), "read,list");
  EXPECT_EQ(p->rules[0].line, 1);
  EXPECT_EQ(p->rules[1].pattern.text(), "app/+/admin");
  EXPECT_EQ(p->rules[1].capabilities.ToString(), "deny");
  EXPECT_EQ(p->rules[1].line, 2);
}

TEST(PolicyParseTest, EveryCapabilityAndRepeats) {
  absl::StatusOr<Policy> p = ParsePolicy(
      "all", R"({"path":{"x":{"capabilities":["create","read","update",
        "patch","delete","list","sudo","deny","read"]}}})");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->rules[0].capabilities.ToString(),
            "create,read,update,patch,delete,list,sudo,deny");
}

TEST(PolicyParseTest, EmptyPathsAndEmptyCapabilitiesAreValid) {
  EXPECT_TRUE(ParsePolicy("p", R"({"path":{}})").ok());
  absl::StatusOr<Policy> p =
      ParsePolicy("p", R"({"path":{"a":{"capabilities":[]}}})");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->rules[0].capabilities.empty());
}

struct BadCase {
  const char* what;
  const char* json;
  const char* message;  // a substring of the status message
};

TEST(PolicyParseTest, BadDocumentsNameTheLine) {
  const BadCase cases[] = {
      {"unknown capability",
       "{\"path\":{\n\"a/*\":{\"capabilities\":\n[\"read\",\n\"reed\"]}}}",
       "policy \"doc\" line 4: unknown capability \"reed\""},
      {"'*' not at the end", "{\"path\":{\n\n\"a/*/b\":{\"capabilities\":[]}}}",
       "line 3: '*' is allowed only as the last character"},
      {"'+' inside a segment", "{\"path\":{\n\"a/b+c\":{\"capabilities\":[]}}}",
       "line 2: '+' must be a whole path segment"},
      {"pattern given twice",
       "{\"path\":{\"a\":{\"capabilities\":[]},\n\"/"
       "a\":{\"capabilities\":[]}}}",
       "line 2: path pattern \"/a\" given twice"},
      {"unsupported rule key",
       "{\"path\":{\"a\":{\n\"capabilities\":[],\n\"allowed_parameters\":{}}}}",
       "line 3: unknown key \"allowed_parameters\""},
      {"unknown top-level key", "{\n\"paths\":{}}",
       "line 2: unknown key \"paths\""},
      {"capabilities not a list",
       "{\"path\":{\"a\":{\"capabilities\":\"read\"}}}",
       "line 1: expected a list of capabilities, found a string"},
      {"rule not an object", "{\"path\":{\"a\":[\"read\"]}}",
       "expected a rule object"},
      {"number as capability", "{\"path\":{\"a\":{\"capabilities\":[1]}}}",
       "expected a capability name or ']', found a number"},
      {"rule without capabilities", "{\"path\":{\"a\":{}}}",
       "rule without \"capabilities\""},
      {"no path", "{}", "no \"path\" in the policy"},
      {"path twice", "{\"path\":{},\"path\":{}}", "\"path\" given twice"},
      {"capabilities twice",
       "{\"path\":{\"a\":{\"capabilities\":[],\"capabilities\":[]}}}",
       "\"capabilities\" given twice"},
      {"root is a list", "[]", "expected a policy object"},
      {"syntax error names the line",
       "{\"path\":{\n\"a\":{\"capabilities\":[\"read\"]}\n\"b\":{}}}",
       "line 3: invalid JSON"},
      {"trailing text", "{\"path\":{}} x", "invalid JSON"},
      {"empty text", "", "invalid JSON"},
      {"empty pattern", "{\"path\":{\"\":{\"capabilities\":[]}}}",
       "empty path pattern"},
      {"a lone '/' is an empty pattern",
       "{\"path\":{\"/\":{\"capabilities\":[]}}}", "empty path pattern"},
  };
  for (const BadCase& c : cases) {
    SCOPED_TRACE(c.what);
    EXPECT_THAT(
        ParsePolicy("doc", c.json),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }
}

TEST(PolicyParseTest, MessagesStayShort) {
  const std::string long_cap(10000, 'x');
  absl::StatusOr<Policy> p =
      ParsePolicy("p", absl::StrCat("{\"path\":{\"a\":{\"capabilities\":[\"",
                                    long_cap, "\"]}}}"));
  ASSERT_THAT(p, StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_LT(p.status().message().size(), 300u);
}

TEST(PolicyParseTest, Limits) {
  EXPECT_THAT(ParsePolicy("p", std::string(kMaxPolicyBytes + 1, ' ')),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("over")));
  const std::string long_pattern(PathPattern::kMaxBytes + 1, 'a');
  EXPECT_THAT(
      ParsePolicy("p", absl::StrCat("{\"path\":{\"", long_pattern,
                                    "\":{\"capabilities\":[]}}}")),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer")));
  // Deep nesting is refused at the first unexpected level, in constant
  // stack (the SAX parser keeps its own stack).
  EXPECT_THAT(ParsePolicy("p", std::string(100000, '[')),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

TEST(PolicyParseTest, PolicyNames) {
  EXPECT_TRUE(ValidatePolicyName("app-readers_1.v2").ok());
  EXPECT_THAT(ValidatePolicyName(""),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(
      ValidatePolicyName("root"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("reserved")));
  EXPECT_THAT(ValidatePolicyName("a/b"),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ValidatePolicyName(std::string(129, 'a')),
              StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(ParsePolicy("bad name", "{\"path\":{}}"),
              StatusIs(absl::StatusCode::kInvalidArgument));
}

}  // namespace
}  // namespace strongbox::policy
