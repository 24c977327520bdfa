// outcome_diff: compares an outcome JSON (engine/clearing/outcome.h form, e.g. the PostgreSQL peer's) with
// the generator's oracle, using the same exact comparison as engine_throughput.
//
//   outcome_diff --expected oracle.json --actual peer_outcome.json
//
// Prints every difference (at most --lines-max) and `oracle=match` or `oracle=MISMATCH`.
// Exit 0 when equal, 1 when they differ, 2 when a file cannot be read or parsed.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "engine/clearing/outcome.h"
#include "nlohmann/json.hpp"

namespace yrd {
namespace {

absl::StatusOr<Outcome> Load(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot open " + path);
  nlohmann::json json = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return absl::InvalidArgumentError(path + " is not JSON");
  return OutcomeFromJson(json);
}

int Main(int argc, char** argv) {
  CLI::App app{"compare an outcome JSON with the generator's oracle"};
  std::string expected_path, actual_path;
  size_t lines_max = 50;
  app.add_option("--expected", expected_path, "the oracle JSON")->required();
  app.add_option("--actual", actual_path, "the outcome JSON to check")->required();
  app.add_option("--lines-max", lines_max, "differences printed at most");
  CLI11_PARSE(app, argc, argv);

  auto expected = Load(expected_path);
  if (!expected.ok()) return std::cerr << expected.status() << "\n", 2;
  auto actual = Load(actual_path);
  if (!actual.ok()) return std::cerr << actual.status() << "\n", 2;
  const std::vector<std::string> diff = DiffOutcomes(*expected, *actual, lines_max);
  for (const std::string& line : diff) std::printf("oracle mismatch: %s\n", line.c_str());
  std::printf("oracle=%s\n", diff.empty() ? "match" : "MISMATCH");
  return diff.empty() ? 0 : 1;
}

}  // namespace
}  // namespace yrd

int main(int argc, char** argv) { return yrd::Main(argc, argv); }
