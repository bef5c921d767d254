#include <doctest/doctest.h>

#include <string>

#include "plugins/dns-sidecar/names.h"

using cni::dns::invalid_name_reason;

TEST_CASE("dns names: registrable names are DNS labels") {
  for (const char* ok : {"web1", "Web-1", "proj_web_1", "a.b.c", "db.", "x", "1abc"}) {
    CHECK_MESSAGE(!invalid_name_reason(ok), ok);
  }
  CHECK(invalid_name_reason("")->find("empty") != std::string::npos);
  CHECK(invalid_name_reason(".")->find("empty") != std::string::npos);
  CHECK(invalid_name_reason("a..b")->find("empty label") != std::string::npos);
  CHECK(invalid_name_reason("bad name")->find("' '") != std::string::npos);
  CHECK(invalid_name_reason("no/slash"));
  CHECK(invalid_name_reason("new\nline"));
  CHECK(invalid_name_reason(std::string(64, 'a'))->find("63") != std::string::npos);
  CHECK(!invalid_name_reason(std::string(63, 'a')));
  std::string long_name;
  for (int i = 0; i < 64; ++i) long_name += "abc.";
  CHECK(invalid_name_reason(long_name)->find("253") != std::string::npos);
}

TEST_CASE("dns names: normalized and compared without case and root dot") {
  CHECK(cni::dns::normalize_name("WeB1.Test.Internal.") == "web1.test.internal");
  CHECK(cni::dns::normalize_name("") == "");
  CHECK(cni::dns::strip_domain("web1.test.internal", "test.internal") == "web1");
  CHECK(!cni::dns::strip_domain("test.internal", "test.internal"));
  CHECK(!cni::dns::strip_domain("web1.xtest.internal", "test.internal"));
  CHECK(!cni::dns::strip_domain("web1", ""));
  CHECK(cni::dns::in_domain("test.internal", "test.internal"));
  CHECK(cni::dns::in_domain("a.b.test.internal", "test.internal"));
  CHECK(!cni::dns::in_domain("internal", "test.internal"));
}
