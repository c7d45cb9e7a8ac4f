#include "examples/node/json.h"

#include <string>

#include "gtest/gtest.h"

namespace strongbox {
namespace node {
namespace {

TEST(JsonTest, WriterKeepsOrderAndEscapes) {
  EXPECT_EQ(JsonObjectWriter().Finish(), "{}");
  EXPECT_EQ(JsonObjectWriter()
                .Bool("ok", true)
                .Int("version", -3)
                .String("s", "a\"b\\c\n\t\x01\x7f")
                .StringArray("xs", {"1", "2"})
                .StringObject("data", {{"k", "v"}, {"a", ""}})
                .Finish(),
            R"({"ok":true,"version":-3,"s":"a\"b\\c\n\t\u0001\u007f",)"
            R"("xs":["1","2"],"data":{"k":"v","a":""}})");
}

TEST(JsonTest, WriterGrowsItsBufferAcrossManyAndLargeValues) {
  // The writer grows its buffer itself (wiping what it leaves behind):
  // the output is the same as quoting each value.
  JsonObjectWriter w;
  std::string expected = "{";
  for (int i = 0; i < 200; ++i) {
    const std::string value(i * 37 % 3000, static_cast<char>('a' + i % 26));
    const std::string key = "k" + std::to_string(i);
    w.String(key, value + "\n\xff");
    if (i > 0) expected += ",";
    expected += JsonQuote(key) + ":" + JsonQuote(value + "\n\xff");
  }
  expected += "}";
  EXPECT_EQ(w.Finish(), expected);
  EXPECT_EQ(w.Finish(), "{}");  // empty afterwards
  EXPECT_EQ(JsonQuote(std::string(1000, '"')).size(), 2002u);
}

TEST(JsonTest, InvalidUtf8BecomesReplacementCharacter) {
  EXPECT_EQ(JsonQuote("caf\xc3\xa9"), "\"caf\xc3\xa9\"");
  EXPECT_EQ(JsonQuote("\xff"
                      "a\xc3"),
            "\"\\ufffda\\ufffd\"");
  EXPECT_EQ(JsonQuote("\xed\xa0\x80"),
            "\"\\ufffd\\ufffd\\ufffd\"");                  // surrogate
  EXPECT_EQ(JsonQuote("\xc0\xaf"), "\"\\ufffd\\ufffd\"");  // overlong '/'
  EXPECT_TRUE(IsValidUtf8("\xf0\x9f\x94\x91"));
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
}

TEST(JsonTest, ParsesWhatTheWriterWrites) {
  const std::string text =
      JsonObjectWriter()
          .Bool("ok", false)
          .String("code", "UNAVAILABLE")
          .String("error", "quote \" backslash \\ nl \n ctl \x02 \xc3\xa9")
          .StringArray("shares", {"ab", "cd"})
          .StringObject("data", {{"K", "V"}})
          .Int("n", 42)
          .Finish();
  absl::StatusOr<JsonValue> v = ParseJson(text);
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(v->Keys(), (std::vector<std::string>{"ok", "code", "error",
                                                 "shares", "data", "n"}));
  EXPECT_FALSE(v->GetBool("ok", true));
  EXPECT_EQ(v->GetString("error"),
            "quote \" backslash \\ nl \n ctl \x02 \xc3\xa9");
  ASSERT_EQ(v->Find("shares")->array.size(), 2u);
  EXPECT_EQ(v->Find("shares")->array[1].string, "cd");
  EXPECT_EQ(v->Find("data")->GetString("K"), "V");
  EXPECT_EQ(v->GetInt("n"), 42);
}

TEST(JsonTest, ParserAcceptsJsonAndRejectsTheRest) {
  for (const char* good : {"{}", "[]", " [1, -2.5e3, true, false, null] ",
                           R"("\u00e9\ud83d\udd11")", R"({"a":{"b":[{}]}})"}) {
    EXPECT_TRUE(ParseJson(good).ok()) << good;
  }
  EXPECT_EQ(ParseJson(R"("\ud83d\udd11")")->string, "\xf0\x9f\x94\x91");
  for (const char* bad :
       {"", "{", "{\"a\"}", "{\"a\":}", "[1,]", "01", "\"\\x\"", "\"\x01\"",
        "\"\\ud800\"", "tru", "{} x", "\"\xff\"", "-", "1."}) {
    EXPECT_FALSE(ParseJson(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseJson(std::string(1000, '[') + std::string(1000, ']')).ok());
}

}  // namespace
}  // namespace node
}  // namespace strongbox
